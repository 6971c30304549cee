"""Random augmentation of image batches, on their own device and vectorized over the batch.

Each transform takes x (N, C, H, W) (any backend) and returns a new batch on the same
device, drawing one random setting per sample from that backend's generator, so
``tn.manual_seed`` makes a run bit-reproducible. Use them as a DataLoader's ``transform``
(for the training loader only), composed with normalisation::

    augment = tn.data.Compose(tn.data.RandomCrop(28, padding=2),
                              tn.data.RandomHorizontalFlip(),
                              tn.data.RandomAffine(degrees=10, translate=(0.1, 0.1)),
                              normalize)
    train_loader = tn.data.DataLoader(train, 128, shuffle=True, transform=augment)

Crops, rotations and translations are one gather: every output pixel reads a source
pixel computed from its sample's parameters (positions outside the image read ``fill``).
"""
from __future__ import annotations

import math
import numbers

from tensornet.backends import dtype_name, get_backend


def _image_batch(owner: str, x):
    if not hasattr(x, "shape") or len(x.shape) != 4:
        got = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"{owner} expects an image batch (N, C, H, W), got {got}")
    if not dtype_name(x.dtype).startswith("float"):
        raise TypeError(f"{owner} expects floating-point images, got {dtype_name(x.dtype)}; "
                        f"convert them first (e.g. x.astype('float32') / 255)")
    return get_backend(x)


def _gather(backend, x, rows, cols, fill: float):
    """``out[n, c, i, j] = x[n, c, rows[n, i, j], cols[n, i, j]]``, ``fill`` where that
    position is outside the image. rows, cols: integer arrays (N, OH, OW)."""
    xp = backend.xp
    n, c, h, w = x.shape
    out_h, out_w = rows.shape[1], rows.shape[2]
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    sample = xp.reshape(xp.arange(n, dtype=xp.int64), (n, 1, 1))
    index = (sample * h + xp.where(inside, rows, 0)) * w + xp.where(inside, cols, 0)
    # one row of C values per pixel, so the index array is pixel-sized, not element-sized
    pixels = xp.reshape(xp.permute_dims(x, (0, 2, 3, 1)), (n * h * w, c))
    picked = xp.take(pixels, xp.reshape(index, (-1,)), axis=0)
    picked = xp.permute_dims(xp.reshape(picked, (n, out_h, out_w, c)), (0, 3, 1, 2))
    return xp.where(inside[:, None, :, :], picked, fill)


def _pair(owner: str, name: str, value, minimum) -> tuple:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Real)
                             or not math.isfinite(v) or v < minimum for v in pair):
        raise ValueError(f"{owner}: {name} must be a finite number >= {minimum} or a pair of "
                         f"them, got {value!r}")
    return pair


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, x):
        backend = _image_batch("RandomHorizontalFlip", x)
        flip = backend.bernoulli((x.shape[0], 1, 1, 1), self.p, dtype="bool")
        return backend.xp.where(flip, backend.xp.flip(x, axis=3), x)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """A random ``size`` (int or (h, w)) window of each image after zero-padding it by
    ``padding`` on every side (fill value ``fill``), as torchvision's
    ``RandomCrop(size, padding)``: every offset in the padded image is equally likely."""

    def __init__(self, size, padding: int = 0, fill: float = 0.0):
        self.size = tuple(int(v) for v in _pair("RandomCrop", "size", size, 1))
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an int >= 0, got {padding!r}")
        self.padding, self.fill = padding, float(fill)

    def __call__(self, x):
        backend = _image_batch("RandomCrop", x)
        xp = backend.xp
        n, _, h, w = x.shape
        (out_h, out_w), pad = self.size, self.padding
        spare_h, spare_w = h + 2 * pad - out_h, w + 2 * pad - out_w
        if spare_h < 0 or spare_w < 0:
            raise ValueError(f"{self!r}: the padded image ({h + 2 * pad}, {w + 2 * pad}) is "
                             f"smaller than the crop {self.size}")
        top = self._offsets(backend, n, spare_h) - pad
        left = self._offsets(backend, n, spare_w) - pad
        rows = top[:, None, None] + xp.reshape(xp.arange(out_h, dtype=xp.int64), (1, out_h, 1))
        cols = left[:, None, None] + xp.reshape(xp.arange(out_w, dtype=xp.int64), (1, 1, out_w))
        rows, cols = xp.broadcast_arrays(rows, cols)
        return _gather(backend, x, rows, cols, self.fill)

    @staticmethod
    def _offsets(backend, n: int, spare: int):
        """(N,) integers, each uniform over 0..spare."""
        xp = backend.xp
        draw = backend.uniform((n,), 0.0, float(spare + 1), dtype="float64")
        return xp.astype(xp.clip(xp.floor(draw), 0.0, float(spare)), xp.int64)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomAffine:
    """Random rotation and translation of each image (torchvision's ``RandomAffine``
    without scale and shear).

    ``degrees``: the angle is uniform in [-degrees, degrees] (or in a (min, max) pair);
    positive turns the picture counter-clockwise. ``translate`` (a, b): the shift is
    uniform within ``a * W`` columns and ``b * H`` rows, rounded to whole pixels, as
    torchvision. The rotation is about the image centre. Each output pixel samples the
    input at the inverse-transformed position: ``interpolation="nearest"`` (default, as
    torchvision) or ``"bilinear"``; positions outside the image read ``fill``.
    """

    def __init__(self, degrees=0.0, translate=None, fill: float = 0.0,
                 interpolation: str = "nearest"):
        if isinstance(degrees, (tuple, list)):
            low, high = _pair("RandomAffine", "degrees", degrees, -360.0)
        else:
            high = float(_pair("RandomAffine", "degrees", degrees, 0.0)[0])
            low = -high
        if low > high:
            raise ValueError(f"RandomAffine: degrees range {degrees!r} has min > max")
        self.degrees = (float(low), float(high))
        self.translate = None if translate is None else tuple(
            float(v) for v in _pair("RandomAffine", "translate", translate, 0.0))
        if self.translate is not None and max(self.translate) > 1.0:
            raise ValueError(f"RandomAffine: translate fractions must be in [0, 1], got "
                             f"{translate!r}")
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"RandomAffine: interpolation must be 'nearest' or 'bilinear', "
                             f"got {interpolation!r}")
        self.fill, self.interpolation = float(fill), interpolation

    def __call__(self, x):
        backend = _image_batch(type(self).__name__, x)
        xp = backend.xp
        n, _, h, w = x.shape
        # coordinates in float32 at least: float16 holds whole numbers only up to 2048, and
        # its rounding would move pixels of a wide image even at angle 0
        dt = "float64" if dtype_name(x.dtype) == "float64" else "float32"
        angle = backend.uniform((n,), *self.degrees, dtype=dt) * (math.pi / 180.0)
        shift_x = shift_y = 0.0
        if self.translate is not None:
            reach_x, reach_y = self.translate[0] * w, self.translate[1] * h
            shift_x = xp.round(backend.uniform((n,), -reach_x, reach_x, dtype=dt))[:, None, None]
            shift_y = xp.round(backend.uniform((n,), -reach_y, reach_y, dtype=dt))[:, None, None]
        # output pixel (i, j) relative to the centre, minus the shift, rotated back
        y = xp.reshape(xp.arange(h, dtype=angle.dtype), (1, h, 1)) - (h - 1) / 2.0 - shift_y
        x_ = xp.reshape(xp.arange(w, dtype=angle.dtype), (1, 1, w)) - (w - 1) / 2.0 - shift_x
        cos, sin = xp.cos(angle)[:, None, None], xp.sin(angle)[:, None, None]
        source_x = cos * x_ - sin * y + (w - 1) / 2.0
        source_y = sin * x_ + cos * y + (h - 1) / 2.0
        if self.interpolation == "nearest":
            rows = xp.astype(xp.round(source_y), xp.int64)
            cols = xp.astype(xp.round(source_x), xp.int64)
            return _gather(backend, x, rows, cols, self.fill)
        return self._bilinear(backend, x, source_y, source_x)

    def _bilinear(self, backend, x, source_y, source_x):
        xp = backend.xp
        top, left = xp.floor(source_y), xp.floor(source_x)
        dy, dx = (source_y - top)[:, None, ...], (source_x - left)[:, None, ...]
        top, left = xp.astype(top, xp.int64), xp.astype(left, xp.int64)
        out = None
        for row, col, weight in ((top, left, (1.0 - dy) * (1.0 - dx)),
                                 (top, left + 1, (1.0 - dy) * dx),
                                 (top + 1, left, dy * (1.0 - dx)),
                                 (top + 1, left + 1, dy * dx)):
            part = weight * _gather(backend, x, row, col, self.fill)
            out = part if out is None else out + part
        return xp.astype(out, x.dtype)  # the weights are float32 for a float16 batch

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(degrees={self.degrees}, translate={self.translate}, "
                f"interpolation={self.interpolation!r})")


class RandomRotation(RandomAffine):
    """``RandomAffine(degrees)``: a random rotation in [-degrees, degrees] per image."""

    def __init__(self, degrees, fill: float = 0.0, interpolation: str = "nearest"):
        super().__init__(degrees, None, fill, interpolation)
