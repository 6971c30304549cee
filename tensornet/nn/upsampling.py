"""Upsample: nearest-neighbour, bilinear and bicubic resizing of (N, C, H, W) images."""
from __future__ import annotations

import numbers

import numpy as np

from .pooling import _SeparableResample2d


class Upsample(_SeparableResample2d):
    """Resize, as ``torch.nn.Upsample(size, scale_factor, mode, align_corners)`` with
    ``mode='nearest'`` (default), ``'bilinear'`` or ``'bicubic'``.

    Give either ``size`` (an int or an (OH, OW) pair) or ``scale_factor`` (a positive
    number or a pair; the output is ``floor(H * scale)`` rows). Nearest: output pixel i
    reads input ``min(floor(i * r), H - 1)`` with ``r = 1/scale_factor`` (or ``H/OH`` when
    ``size`` is given), computed in float32 as PyTorch does, so fractional factors pick the
    same pixels (and, as PyTorch, an output exactly twice the input reads ``i // 2``
    whatever the factor). Bilinear: output pixel i sits at input coordinate
    ``(i + 0.5) * r - 0.5`` (clamped at 0) or, with ``align_corners=True``,
    ``i * (H - 1) / (OH - 1)``, and mixes the two pixels around it by distance, as
    PyTorch. Bicubic: the same coordinate without the clamp at 0, and the four pixels
    around it (indices clamped to the image) mixed by Keys' cubic convolution with
    ``a = -0.75``, as PyTorch (no antialiasing: downsizing samples, as PyTorch's default).
    Every mode is separable, ``A_h @ x @ A_w.T`` (one-hot, two-tap or four-tap rows in A);
    backward sends each output gradient back with the same weights (``A_h.T @ dy @ A_w``).
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: bool | None = None):
        super().__init__()
        if mode not in ("nearest", "bilinear", "bicubic"):
            raise ValueError(f"Upsample: mode must be 'nearest', 'bilinear' or 'bicubic' (for "
                             f"(N, C, H, W) images; 'linear' and 'trilinear' are not "
                             f"implemented), got {mode!r}")
        if align_corners is not None and mode == "nearest":
            raise ValueError("Upsample: align_corners only applies to mode='bilinear' and "
                             "'bicubic' (as PyTorch)")
        if align_corners is not None and not isinstance(align_corners, bool):
            raise ValueError(f"Upsample: align_corners must be True, False or None, got "
                             f"{align_corners!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.mode, self.align_corners = mode, bool(align_corners)
        self.size = None if size is None else _two("size", size, integer=True)
        self.scale_factor = None if scale_factor is None else _two("scale_factor", scale_factor,
                                                                   integer=False)

    def _axis_matrix(self, axis, in_size):
        if self.size is not None:
            out = self.size[axis]
        else:
            out = int(np.floor(in_size * self.scale_factor[axis]))
        if out < 1:
            raise ValueError(f"{self._describe()}: an input of size {in_size} along "
                             f"{'HW'[axis]} gives an empty output")
        if self.mode == "bilinear":
            return self._bilinear(axis, in_size, out)
        if self.mode == "bicubic":
            return self._bicubic(axis, in_size, out)
        ratio = np.float32(in_size) / np.float32(out) if self.size is not None else \
            np.float32(1.0 / self.scale_factor[axis])
        if out == in_size:
            return None
        if out == 2 * in_size:  # PyTorch's shortcut, whatever the factor: i // 2
            source = np.arange(out) // 2
        else:
            source = np.minimum(np.floor(np.arange(out, dtype=np.float32) * ratio)
                                .astype(np.int64), in_size - 1)
        return (source[:, None] == np.arange(in_size)[None, :]).astype(np.float64)

    def _bilinear(self, axis, in_size, out):
        """(out, in) two-tap matrix: PyTorch's source coordinate of each output pixel (its
        area_pixel_compute_source_index), split between the pixels on either side."""
        if out == in_size:  # PyTorch keeps such an axis as it is, whatever scale_factor says
            return None
        source = self._source(axis, in_size, out, clamp=True)
        low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
        high = np.minimum(low + 1, in_size - 1)
        weight_high = source - low
        matrix = np.zeros((out, in_size))
        rows = np.arange(out)
        np.add.at(matrix, (rows, low), 1.0 - weight_high)
        np.add.at(matrix, (rows, high), weight_high)
        return matrix

    def _source(self, axis, in_size, out, clamp: bool):
        """PyTorch's input coordinate of each output pixel (area_pixel_compute_source_index):
        ``i * (H-1)/(OH-1)`` with align_corners, else ``(i + 0.5) * r - 0.5``, clamped at 0
        for bilinear but not for bicubic."""
        i = np.arange(out, dtype=np.float64)
        if self.align_corners:
            return i * ((in_size - 1) / (out - 1)) if out > 1 else np.zeros(out)
        ratio = in_size / out if self.size is not None else 1.0 / self.scale_factor[axis]
        source = (i + 0.5) * ratio - 0.5
        return np.maximum(source, 0.0) if clamp else source

    def _bicubic(self, axis, in_size, out):
        """(out, in) four-tap matrix: Keys' cubic convolution (a = -0.75) over the pixels
        ``floor(s) - 1 .. floor(s) + 2`` around each source coordinate s, each index clamped
        to the image (PyTorch's upsample_bicubic2d: guard_index_and_lambda, then
        get_cubic_upsample_coefficients and upsample_get_value_bounded)."""
        if out == in_size and not self.align_corners and self.size is not None:
            return None  # the coordinates are the pixels themselves: the identity
        source = self._source(axis, in_size, out, clamp=False)
        base = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
        t = np.clip(source - base, 0.0, 1.0)
        a = -0.75

        def near(d):  # |d| <= 1
            return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0

        def far(d):  # 1 < |d| < 2
            return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
        weights = (far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t))
        matrix = np.zeros((out, in_size))
        rows = np.arange(out)
        for offset, weight in zip((-1, 0, 1, 2), weights):
            np.add.at(matrix, (rows, np.clip(base + offset, 0, in_size - 1)), weight)
        return matrix

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        corners = ", align_corners=True" if self.align_corners else ""
        return f"{what}, mode={self.mode!r}{corners}"


def _two(name: str, value, integer: bool) -> tuple:
    """A number or a pair -> a pair of positive numbers (ints when ``integer``)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    kind = numbers.Integral if integer else numbers.Real
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, kind) or v <= 0
                             for v in pair):
        what = "a positive int" if integer else "a positive number"
        raise ValueError(f"Upsample: {name} must be {what} or a pair of them, got {value!r}")
    return tuple(int(v) if integer else float(v) for v in pair)
