"""Upsample: nearest-neighbour, (bi/tri)linear and bicubic resizing of (N, C, L),
(N, C, H, W) and (N, C, D, H, W) arrays."""
from __future__ import annotations

import numbers

import numpy as np

from .pooling import _SeparableResample2d
from .pooling_adaptive import _adaptive_bins

# the number of spatial axes each mode takes (as PyTorch: linear 3-D inputs, bilinear and
# bicubic 4-D, trilinear 5-D, the two nearest modes and area any)
_MODE_AXES = {"nearest": (1, 2, 3), "nearest-exact": (1, 2, 3), "area": (1, 2, 3),
              "linear": (1,), "bilinear": (2,), "bicubic": (2,), "trilinear": (3,)}
_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


class Upsample(_SeparableResample2d):
    """Resize, as ``torch.nn.Upsample(size, scale_factor, mode, align_corners)``: x
    ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` with ``mode='nearest'`` (default),
    ``'nearest-exact'`` or ``'area'`` (any of them), ``'linear'`` (3-D), ``'bilinear'`` or
    ``'bicubic'`` (4-D), ``'trilinear'`` (5-D).

    Give either ``size`` (an int, or one per spatial axis) or ``scale_factor`` (a positive
    number, or one per axis; the output is ``floor(H * scale)`` rows). Per mode, with
    ``r = 1/scale_factor`` (or ``H/OH`` when ``size`` is given):

    - nearest: output pixel i reads input ``min(floor(i * r), H - 1)``, computed in float32
      as PyTorch does, so fractional factors pick the same pixels (and, as PyTorch's image
      kernel, an image axis that keeps its size is copied and one exactly twice the input
      reads ``i // 2``, whatever the factor; on 3-D and 5-D inputs, as PyTorch, neither);
    - nearest-exact: input ``min(floor((i + 0.5) * r), H - 1)``, the pixel whose centre is
      nearest (no shift towards the top-left), as PyTorch's;
    - area: PyTorch's adaptive average pooling to the output size (output i averages
      inputs ``floor(i * H / OH)`` to ``ceil((i + 1) * H / OH)``, exclusive), the usual way
      to shrink an image without aliasing;
    - linear, bilinear, trilinear: output pixel i sits at input coordinate
      ``(i + 0.5) * r - 0.5`` (clamped at 0) or, with ``align_corners=True``,
      ``i * (H - 1) / (OH - 1)``, and mixes the two pixels around it by distance along each
      axis, as PyTorch;
    - bicubic: the same coordinate without the clamp at 0, and the four pixels around it
      (indices clamped to the image) mixed by Keys' cubic convolution with ``a = -0.75``,
      as PyTorch (no antialiasing: downsizing samples, as PyTorch's default).

    ``recompute_scale_factor=True`` (with ``scale_factor``) takes the coordinates from
    ``in / out`` instead of the factor, as PyTorch. ``antialias=True`` (bilinear and
    bicubic; ``torch.nn.functional.interpolate``'s option, which ``torch.nn.Upsample``
    lacks) widens the filter by the shrink factor when shrinking, so every input pixel
    counts, as PIL's and torchvision's resizing (see ``_antialiased``).

    Every mode is separable: one small (out, in) matrix per spatial axis (one-hot, bin
    average, two-tap or four-tap rows), applied along its axis (``A_h @ x @ A_w.T`` for an
    image); backward sends each output gradient back with the same weights
    (``A_h.T @ dy @ A_w``).
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                 antialias: bool = False):
        super().__init__()
        if not isinstance(mode, str) or mode not in _MODE_AXES:
            raise ValueError(f"Upsample: mode must be 'nearest', 'nearest-exact', 'area', "
                             f"'linear', 'bilinear', 'bicubic' or 'trilinear', got {mode!r}")
        if align_corners is not None and mode in ("nearest", "nearest-exact", "area"):
            raise ValueError("Upsample: align_corners only applies to the modes 'linear', "
                             "'bilinear', 'bicubic' and 'trilinear' (as PyTorch)")
        if align_corners is not None and not isinstance(align_corners, bool):
            raise ValueError(f"Upsample: align_corners must be True, False or None, got "
                             f"{align_corners!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        for name, value in (("recompute_scale_factor", recompute_scale_factor),
                            ("antialias", antialias)):
            if value is not None and not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"Upsample: {name} must be True or False, got {value!r}")
        if recompute_scale_factor and size is not None:
            raise ValueError("Upsample: recompute_scale_factor=True needs scale_factor, not "
                             "size (as PyTorch: with a size there is no factor to recompute)")
        if antialias and mode not in ("bilinear", "bicubic"):
            raise ValueError(f"Upsample: antialias=True applies to the modes 'bilinear' and "
                             f"'bicubic' (as PyTorch's interpolate), not {mode!r}")
        self.recompute_scale_factor = bool(recompute_scale_factor)
        self.antialias = bool(antialias)
        self.mode, self.align_corners = mode, bool(align_corners)
        self.size = None if size is None else _positive("size", size, integer=True)
        self.scale_factor = None if scale_factor is None else _positive(
            "scale_factor", scale_factor, integer=False)

    def _spatial_axes(self, x) -> int:
        """The input check: a floating array with the mode's number of spatial axes
        (the base class applies one matrix per axis)."""
        allowed = _MODE_AXES[self.mode]
        self._accept_floating(x, ndim=tuple(2 + a for a in allowed),
                              expected=" or ".join(_LAYOUTS[a] for a in allowed))
        if x.shape[1] == 0:  # (PyTorch refuses it too, except in mode 'area')
            raise ValueError(f"{self._describe()}: the input {tuple(x.shape)} has no "
                             f"channels (C = 0); expected at least one")
        if 0 in tuple(x.shape[2:]):  # as PyTorch: no pixel to read an output from
            raise ValueError(f"{self._describe()}: the input {tuple(x.shape)} is empty along "
                             f"a spatial axis of {_LAYOUTS[x.ndim - 2]}; expected at least "
                             f"one pixel per axis")
        return x.ndim - 2

    # ------------------------------------------------------------------ the matrices
    def _per_axis(self, value, axes: int, name: str) -> tuple:
        """``size`` or ``scale_factor`` as one value per spatial axis (a single value
        repeated; a tuple must have one per axis)."""
        if not isinstance(value, tuple):
            return (value,) * axes
        if len(value) != axes:
            raise ValueError(f"{self._describe()}: {name} {value} has {len(value)} values for "
                             f"an input with {axes} spatial axes {_LAYOUTS[axes]}")
        return value

    def _axis_matrix(self, axis, in_size, axes: int = 2):
        """Host (out, in) float64 matrix for spatial ``axis`` of ``axes``, or None for the
        identity (ONNX export reads it too)."""
        if self.size is not None:
            out = self._per_axis(self.size, axes, "size")[axis]
            factor = None
        else:
            factor = self._per_axis(self.scale_factor, axes, "scale_factor")[axis]
            out = int(np.floor(in_size * factor))
            if self.recompute_scale_factor:  # as PyTorch: the coordinates from in / out
                factor = None
        if out < 1:
            raise ValueError(f"{self._describe()}: an input of size {in_size} along spatial "
                             f"axis {axis} of {_LAYOUTS[axes]} gives an empty output")
        if self.antialias:  # PyTorch's forward keeps an axis of the same size as it is
            return None if out == in_size else self._antialiased(factor, in_size, out)
        if self.mode == "bicubic":
            return self._bicubic(factor, in_size, out)
        if self.mode == "area":  # PyTorch: adaptive_avg_pool{1,2,3}d to the output size
            return None if out == in_size else _adaptive_bins(in_size, out)
        if not self.mode.startswith("nearest"):
            return self._linear(factor, in_size, out)
        ratio = np.float32(in_size) / np.float32(out) if factor is None else \
            np.float32(1.0 / factor)
        if self.mode == "nearest-exact":  # PyTorch: floorf((i + 0.5) * scale), no shortcut
            centres = ((np.arange(out) + 0.5) * np.float64(ratio)).astype(np.float32)
            source = np.minimum(np.floor(centres).astype(np.int64), in_size - 1)
            return _one_hot(source, in_size)
        if axes == 2 and out == in_size:  # PyTorch's image shortcuts, whatever the factor
            return None  # (its 1-D and 3-D kernels take neither)
        if axes == 2 and out == 2 * in_size:
            source = np.arange(out) // 2
        else:
            source = np.minimum(np.floor(np.arange(out, dtype=np.float32) * ratio)
                                .astype(np.int64), in_size - 1)
        return _one_hot(source, in_size)

    def _linear(self, factor, in_size, out):
        """(out, in) two-tap matrix: PyTorch's source coordinate of each output pixel (its
        area_pixel_compute_source_index), split between the pixels on either side."""
        if out == in_size:  # PyTorch keeps such an axis as it is, whatever scale_factor says
            return None
        source = self._source(factor, in_size, out, clamp=True)
        low = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
        high = np.minimum(low + 1, in_size - 1)
        weight_high = source - low
        matrix = np.zeros((out, in_size))
        rows = np.arange(out)
        np.add.at(matrix, (rows, low), 1.0 - weight_high)
        np.add.at(matrix, (rows, high), weight_high)
        return matrix

    def _source(self, factor, in_size, out, clamp: bool):
        """PyTorch's input coordinate of each output pixel (area_pixel_compute_source_index):
        ``i * (H-1)/(OH-1)`` with align_corners, else ``(i + 0.5) * r - 0.5`` with ``r`` the
        inverse of the axis's scale factor (``H/OH`` when ``size`` was given), clamped at 0
        for the linear modes but not for bicubic."""
        i = np.arange(out, dtype=np.float64)
        if self.align_corners:
            return i * ((in_size - 1) / (out - 1)) if out > 1 else np.zeros(out)
        ratio = in_size / out if factor is None else 1.0 / factor
        source = (i + 0.5) * ratio - 0.5
        return np.maximum(source, 0.0) if clamp else source

    def _bicubic(self, factor, in_size, out):
        """(out, in) four-tap matrix: Keys' cubic convolution (a = -0.75) over the pixels
        ``floor(s) - 1 .. floor(s) + 2`` around each source coordinate s, each index clamped
        to the image (PyTorch's upsample_bicubic2d: guard_index_and_lambda, then
        get_cubic_upsample_coefficients and upsample_get_value_bounded)."""
        if out == in_size and not self.align_corners and factor is None:
            return None  # the coordinates are the pixels themselves: the identity
        source = self._source(factor, in_size, out, clamp=False)
        base = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
        t = np.clip(source - base, 0.0, 1.0)
        weights = tuple(_keys(d, -0.75) for d in (t + 1.0, t, 1.0 - t, 2.0 - t))
        matrix = np.zeros((out, in_size))
        rows = np.arange(out)
        for offset, weight in zip((-1, 0, 1, 2), weights):
            np.add.at(matrix, (rows, np.clip(base + offset, 0, in_size - 1)), weight)
        return matrix

    def _antialiased(self, factor, in_size, out):
        """(out, in) matrix of PyTorch's interpolate(antialias=True) (its
        _compute_weights_aa, as PIL's resampling): output i centred at ``c = s * (i + 0.5)``
        with ``s`` the axis's scale (``in / out``, ``1 / scale_factor``, or with
        align_corners ``(in - 1) / (out - 1)``), weights ``f((j + 0.5 - c) / max(s, 1))``
        over the pixels j in ``[trunc(c - r + 0.5), trunc(c + r + 0.5))`` clipped to the
        image, ``r = max(s, 1)`` times the filter's half-width, normalized to sum to one.
        f: the triangle (bilinear, half-width 1) or Keys' cubic with a = -0.5 (bicubic,
        half-width 2). Shrinking widens the filter by s, so every input pixel counts."""
        if self.align_corners:
            scale = (in_size - 1) / (out - 1) if out > 1 else 0.0
        else:
            scale = in_size / out if factor is None else 1.0 / factor
        half = 1.0 if self.mode == "bilinear" else 2.0
        stretch = max(scale, 1.0)
        centre = scale * (np.arange(out) + 0.5)[:, None]
        low = np.maximum(np.trunc(centre - half * stretch + 0.5), 0)
        high = np.minimum(np.trunc(centre + half * stretch + 0.5), in_size)
        j = np.arange(in_size)[None, :]
        d = np.abs((j + 0.5 - centre) / stretch)
        weights = np.maximum(1.0 - d, 0.0) if self.mode == "bilinear" else _keys(d, -0.5)
        weights = np.where((j >= low) & (j < high), weights, 0.0)
        total = weights.sum(axis=1, keepdims=True)
        return np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        corners = ", align_corners=True" if self.align_corners else ""
        recompute = ", recompute_scale_factor=True" if self.recompute_scale_factor else ""
        antialias = ", antialias=True" if self.antialias else ""
        return f"{what}, mode={self.mode!r}{corners}{recompute}{antialias}"


def _keys(d, a: float):
    """Keys' cubic convolution kernel at distances ``d >= 0`` (an array): bicubic's, with
    ``a = -0.75`` (PyTorch's interpolation) or ``-0.5`` (its and PIL's antialiasing)."""
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0  # d <= 1
    far = ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a  # 1 < d < 2
    return np.where(d <= 1.0, near, np.where(d < 2.0, far, 0.0))


def _one_hot(source, in_size: int):
    """(out, in) matrix reading input ``source[i]`` into output i; None for the identity."""
    if source.shape[0] == in_size and (source == np.arange(in_size)).all():
        return None
    return (source[:, None] == np.arange(in_size)[None, :]).astype(np.float64)


def _positive(name: str, value, integer: bool):
    """A positive number (int when ``integer``), or a tuple of one to three of them (one per
    spatial axis; a list is taken as a tuple)."""
    kind = numbers.Integral if integer else numbers.Real
    many = isinstance(value, (tuple, list))
    values = tuple(value) if many else (value,)
    if not 1 <= len(values) <= 3 or any(isinstance(v, bool) or not isinstance(v, kind)
                                        or not v > 0 or not np.isfinite(v) for v in values):
        what = "a positive int" if integer else "a positive number"
        raise ValueError(f"Upsample: {name} must be {what} or one per spatial axis (up to "
                         f"three), got {value!r}")
    values = tuple(int(v) if integer else float(v) for v in values)
    return values if many else values[0]
