"""Adaptive pooling, as PyTorch's: AdaptiveAvgPool2d and AdaptiveMaxPool2d over (N, C, H, W),
AdaptiveAvgPool1d and AdaptiveMaxPool1d over (N, C, L) (the 2-D pools on a height-1 view).

The output size is fixed and the bins follow the input: bin i of ``out`` along an axis of
``n`` covers ``floor(i * n / out)`` to ``ceil((i + 1) * n / out)`` (exclusive), so bins
overlap when ``out`` does not divide ``n`` (``backends/geometry.adaptive_bounds``). The mean
is separable, one matrix per axis (``pooling._SeparableResample2d``); the maximum is the
backend's ``adaptive_max_pool2d`` (``functional/windows.py``).
"""
from __future__ import annotations

import numpy as np

from tensornet.backends.geometry import adaptive_bounds

from . import functional as F
from .checks import check_flag
from .conv import _single
from .module import Module
from .pooling import _accept_image, _As1d, _SeparableResample2d


def _adaptive_bins(in_size: int, out: int) -> np.ndarray:
    """Host (out, in) float64 matrix of PyTorch's adaptive average pooling along one axis:
    output i is the mean of inputs ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)``
    (exclusive). AdaptiveAvgPool2d and Upsample(mode='area') use it."""
    start, end = np.array(adaptive_bounds(in_size, out)).T[:, :, None]
    position = np.arange(in_size)[None, :]
    return ((position >= start) & (position < end)) / (end - start)


def _output_pair(owner: str, output_size) -> tuple:
    """An int or an (OH, OW) pair, None keeping that axis' size, as PyTorch's."""
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(sizes) != 2 or any(s is not None and (isinstance(s, bool) or not isinstance(
            s, (int, np.integer)) or s < 1) for s in sizes):
        raise ValueError(f"{owner}: output_size must be a positive int or a pair of positive "
                         f"ints (or None), got {output_size!r}")
    return tuple(None if s is None else int(s) for s in sizes)


def _check_pixels(module: Module, x) -> None:
    if 0 in tuple(x.shape[2:]):
        raise ValueError(f"{module._describe()} got input of shape {tuple(x.shape)}: "
                         f"expected at least one pixel along H and W")


class AdaptiveAvgPool2d(_SeparableResample2d):
    """Mean over ``output_size`` bins, as ``torch.nn.AdaptiveAvgPool2d``: x (N, C, H, W) ->
    (N, C, OH, OW). ``output_size`` is an int or an (OH, OW) pair, None keeping that size.

    Bin i along H covers rows ``floor(i*H/OH)`` to ``ceil((i+1)*H/OH) - 1`` (bins may
    overlap when OH does not divide H, as PyTorch). A bin's mean is separable, so the whole
    pool is ``A_h @ x @ A_w.T`` with A holding 1/bin-length inside each bin.
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_pair("AdaptiveAvgPool2d", output_size)

    def _axis_matrix(self, axis, in_size, axes=2):
        out = self.output_size[axis]
        if out is None or out == in_size:
            return None
        return _adaptive_bins(in_size, out)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max over ``output_size`` bins, as ``torch.nn.AdaptiveMaxPool2d(output_size,
    return_indices)``: x (N, C, H, W) -> (N, C, OH, OW); bins as AdaptiveAvgPool2d's
    (they overlap when OH does not divide H). Ties give the first maximum in row-major
    order and a bin holding NaN gives NaN, as PyTorch's CPU kernel.

    Forward caches the flat index ``h * W + w`` of each bin's maximum (int64, output-sized);
    backward routes the gradient there, adding where overlapping bins share a maximum.
    ``return_indices=True``: forward returns ``(y, indices)`` (what ``MaxUnpool2d`` takes);
    backward still takes the gradient of ``y`` alone.
    """

    _cache_attrs = ("_x_shape", "_indices")

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        name = type(self).__name__
        return_indices = check_flag(name, "return_indices", return_indices)
        self.output_size = _output_pair(name, output_size)
        self.return_indices = return_indices

    def _accept(self, x) -> tuple:
        """Check ``x``; returns the (OH, OW) it pools to."""
        _accept_image(self, x)
        _check_pixels(self, x)
        return tuple(n if out is None else out for n, out in zip(x.shape[2:], self.output_size))

    def forward(self, x):
        self._indices = None
        y, self._indices = F.adaptive_max_pool2d(x, self._accept(x))
        self._x_shape = tuple(x.shape)
        return (y, self._indices) if self.return_indices else y

    def backward(self, grad_output):
        indices = self._require_cache(self._indices)
        return F.adaptive_max_pool2d_backward(grad_output, indices, self._x_shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}" + (
            ", return_indices=True" if self.return_indices else "")


class _Adaptive1d(_As1d):
    """The 1-D adaptive pools: an ``output_size`` int, the 2-D pool's bins along L."""

    def _check_length(self, x) -> None:
        if x.shape[2] == 0:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: "
                             f"expected at least one value along L")

    def extra_repr(self) -> str:
        return f"output_size={self.output_size[1]}" + (
            ", return_indices=True" if getattr(self, "return_indices", False) else "")


class AdaptiveAvgPool1d(_Adaptive1d, AdaptiveAvgPool2d):
    """Mean over ``output_size`` bins of x (N, C, L) -> (N, C, output_size), as
    ``torch.nn.AdaptiveAvgPool1d`` (bins as AdaptiveAvgPool2d's along its width)."""

    def __init__(self, output_size):
        super().__init__((1, _single("output_size", output_size, 1, "AdaptiveAvgPool1d")))


class AdaptiveMaxPool1d(_Adaptive1d, AdaptiveMaxPool2d):
    """Max over ``output_size`` bins of x (N, C, L) -> (N, C, output_size), as
    ``torch.nn.AdaptiveMaxPool1d(output_size, return_indices)``: AdaptiveMaxPool2d on a
    height-1 view (the same bins, tie and NaN rules); ``return_indices=True`` gives
    ``(y, indices)``, each index the position of its maximum along L."""

    def __init__(self, output_size, return_indices: bool = False):
        size = _single("output_size", output_size, 1, "AdaptiveMaxPool1d")
        super().__init__((1, size), return_indices)  # (its checks name this class)
