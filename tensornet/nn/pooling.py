"""Pooling: MaxPool2d, AvgPool2d and GlobalAvgPool2d over (N, C, H, W), and MaxPool1d and
AvgPool1d over (N, C, L) (the 2-D pools on a height-1 view). The adaptive pools are in
``pooling_adaptive.py``; MaxUnpool2d, which takes MaxPool2d's indices, in ``unpooling.py``.

The window math lives in the backend (``max_pool2d``, ``avg_pool2d`` and their backwards),
so devices can override it; these layers check arguments and inputs and keep the caches.
"""
from __future__ import annotations

import math

import numpy as np

from tensornet.backends import dtype_name

from . import functional as F
from .conv import _format_pair, _pair, _single, check_window_fits, window_repr
from .module import Module


def _accept_image(module: Module, x) -> None:
    """Follow ``x``'s device (a pool has no parameters to pin it); require a floating
    (N, C, H, W) array."""
    module._accept_floating(x, ndim=4, expected="(N, C, H, W)")


class _Pool2d(Module):
    """Shared plumbing: argument parsing, the input check, following the input's device."""

    _cache_attrs = ("_x_shape",)

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        name = type(self).__name__
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise ValueError(f"{name}: ceil_mode must be True or False, got {ceil_mode!r}")
        self.ceil_mode = bool(ceil_mode)
        self.kernel_size = _pair(name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair(name, "stride", stride, 1)
        self.padding = _pair(name, "padding", padding, 0)
        self.dilation = _pair(name, "dilation", dilation, 1)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{name}: padding {self.padding} must be at most half the kernel "
                             f"size {self.kernel_size}")
        self._pads = tuple((p, p) for p in self.padding)

    def _accept(self, x):
        """Check ``x``; returns the padding its windows take: ``padding`` on every side, and
        with ``ceil_mode`` as much more at the bottom and right as the last, partial window
        needs."""
        _accept_image(self, x)
        pads = self.pads_for(tuple(x.shape[2:]))
        check_window_fits(self, x, self.kernel_size, self.stride, pads, self.dilation)
        return pads

    def pads_for(self, size: tuple) -> tuple:
        """((top, bottom), (left, right)) padding for an (H, W) input. ``ceil_mode``: as
        PyTorch, ``ceil((H + 2p - span) / s) + 1`` windows, less one that would start past
        the input and its leading padding; the rows the last one reads past the padding
        are extra padding (-inf for a max, left out of a mean's count)."""
        if not self.ceil_mode:
            return self._pads
        pads = []
        for n, k, s, p, d in zip(size, self.kernel_size, self.stride, self.padding,
                                 self.dilation):
            span = d * (k - 1) + 1
            out = (n + 2 * p - span + s - 1) // s + 1  # PyTorch's, floored below 0 too
            if out >= 1 and (out - 1) * s >= n + p:
                out -= 1
            if out < 1:  # no window at all: check_window_fits says so
                pads.append((p, p))
                continue
            pads.append((p, p + max(0, (out - 1) * s + span - (n + 2 * p))))
        return tuple(pads)

    def extra_repr(self) -> str:
        text = window_repr(self.kernel_size, self.stride, self.padding)
        if self.dilation != (1, 1):
            text += f", dilation={_format_pair(self.dilation)}"
        return text + (", ceil_mode=True" if self.ceil_mode else "")


class MaxPool2d(_Pool2d):
    """Max over ``kernel_size`` windows; ``stride`` defaults to the kernel size.

    x (N, C, H, W) -> (N, C, OH, OW). Padding counts as -inf (at most half the kernel, as
    PyTorch). Forward caches the arg-max offset of each window (an integer array,
    output-sized); backward routes the gradient there (ties: the first maximum, as PyTorch),
    accumulating through ``scatter_add`` where windows overlap.

    ``return_indices=True``: forward returns ``(y, indices)`` as PyTorch, ``indices`` int64
    (N, C, OH, OW), each the flat index ``h * W + w`` of its maximum in the (n, c) input plane
    (what ``MaxUnpool2d`` takes); backward still takes the gradient of ``y`` alone.
    """

    _cache_attrs = ("_x_shape", "_argmax", "_used_pads")

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        if not isinstance(return_indices, (bool, np.bool_)):
            raise ValueError(f"MaxPool2d: return_indices must be True or False, got "
                             f"{return_indices!r}")
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        pads = self._accept(x)
        self._argmax = None
        y, self._argmax = F.max_pool2d(x, self.kernel_size, self.stride, pads, self.dilation)
        self._x_shape, self._used_pads = tuple(x.shape), pads
        if not self.return_indices:
            return y
        return y, F.max_pool2d_indices(self._argmax, self._x_shape, self.kernel_size,
                                       self.stride, pads, self.dilation)

    def backward(self, grad_output):
        argmax = self._require_cache(self._argmax)
        return F.max_pool2d_backward(grad_output, argmax, self._x_shape,
                                                self.kernel_size, self.stride, self._used_pads,
                                                self.dilation)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", return_indices=True" if self.return_indices else "")


class AvgPool2d(_Pool2d):
    """Mean over ``kernel_size`` windows; ``stride`` defaults to the kernel size; the
    arguments in ``torch.nn.AvgPool2d``'s order.

    x (N, C, H, W) -> (N, C, OH, OW). Zero padding; with ``count_include_pad=False`` the
    padded positions are left out of each window's divisor (as PyTorch). ``ceil_mode``: a
    last, partial window where the floor would drop it, its rows past the padding counted
    by neither divisor (as PyTorch). ``divisor_override``: every window's sum divided by
    this number instead. Forward caches the input shape (and, for the last two, a per-window
    factor on the mean of the window's real pixels, kept per input size).
    """

    _cache_attrs = ("_x_shape", "_used")

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode)
        if divisor_override is not None and (isinstance(divisor_override, bool) or not
                                             isinstance(divisor_override, (int, np.integer))
                                             or divisor_override < 1):
            raise ValueError(f"AvgPool2d: divisor_override must be a positive integer or "
                             f"None, got {divisor_override!r}")
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise ValueError(f"{type(self).__name__}: count_include_pad must be True or False, "
                             f"got {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = None if divisor_override is None else int(divisor_override)
        self._plans = {}  # (input size, dtype, device) -> window_plan with a device factor

    def forward(self, x):
        self._accept(x)
        self._x_shape = tuple(x.shape)
        key = (tuple(x.shape[2:]), dtype_name(x.dtype), self.backend.device)
        if key not in self._plans:
            pads, include, factor = self.window_plan(key[0])
            self._plans[key] = (pads, include, None if factor is None else
                                self.backend.asarray(factor.astype(key[1])))
        pads, include, factor = self._used = self._plans[key]
        y = F.avg_pool2d(x, self.kernel_size, self.stride, pads, include)
        return y if factor is None else y * factor

    def backward(self, grad_output):
        x_shape = self._require_cache(self._x_shape)
        pads, include, factor = self._used
        if factor is not None:
            grad_output = grad_output * factor
        return F.avg_pool2d_backward(grad_output, x_shape, self.kernel_size,
                                                self.stride, pads, include)

    def window_plan(self, size: tuple):
        """For an (H, W) input: ``(pads, count_include_pad, factor)``, what the pool runs
        (the ONNX export too): the padding (ceil_mode's extra rows included) and, where the
        divisor is not the kernel's own (ceil_mode's extra rows, divisor_override), the mean
        of the real pixels times a host (OH, OW) float64 factor (None: 1 everywhere)."""
        pads = self.pads_for(size)
        if pads == self._pads and self.divisor_override is None:
            return pads, self.count_include_pad, None
        real, whole = [], []
        for n, k, s, (p, end_pad) in zip(size, self.kernel_size, self.stride, pads):
            start = np.arange((n + p + end_pad - k) // s + 1) * s - p
            end = np.minimum(start + k, n + p)  # PyTorch's window, clipped to the padding
            real.append(np.minimum(end, n) - np.maximum(start, 0))
            whole.append(end - start)
        if self.divisor_override is not None:
            return pads, False, np.outer(*real) / self.divisor_override
        return pads, False, np.outer(*real) / np.outer(*whole) if self.count_include_pad \
            else None

    def _forget_cache(self) -> None:
        super()._forget_cache()
        self._plans = {}  # on the old device after .to()

    def extra_repr(self) -> str:
        text = super().extra_repr()
        text += "" if self.count_include_pad else ", count_include_pad=False"
        return text + (f", divisor_override={self.divisor_override}"
                       if self.divisor_override is not None else "")


class GlobalAvgPool2d(Module):
    """Mean over all spatial positions: x (N, C, H, W) -> (N, C), or (N, C, 1, 1) with
    ``keepdims=True`` (PyTorch's ``AdaptiveAvgPool2d(1)``). Forward caches the input shape."""

    _cache_attrs = ("_x_shape",)

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        _accept_image(self, x)
        self._x_shape = tuple(x.shape)
        return self.backend.xp.mean(x, axis=(2, 3), keepdims=self.keepdims)

    def backward(self, grad_output):
        n, c, h, w = self._require_cache(self._x_shape)
        xp = self.backend.xp
        share = xp.reshape(grad_output * (1.0 / (h * w)), (n, c, 1, 1))
        return xp.asarray(xp.broadcast_to(share, (n, c, h, w)), copy=True)

    def extra_repr(self) -> str:
        return "keepdims=True" if self.keepdims else ""


class _SeparableResample2d(Module):
    """Layers whose output is one small matrix per spatial axis applied along that axis
    (an adaptive mean, an upsampling): for an image x (N, C, H, W) -> (N, C, OH, OW),
    ``A_h @ x @ A_w.T`` with ``A_h`` (OH, H) and ``A_w`` (OW, W); backward is
    ``A_h.T @ dy @ A_w``. The matrices are built on the host by ``_axis_matrix``
    (subclasses) and kept per input size, dtype and device; an axis whose matrix would be
    the identity is skipped. Forward caches the matrices it used. Subclasses that take
    other than (N, C, H, W) say so in ``_spatial_axes``."""

    _cache_attrs = ("_cache",)

    def __init__(self):
        super().__init__()
        self._matrices = {}

    def _axis_matrix(self, axis: int, in_size: int, axes: int = 2):
        """Host (out, in) float64 matrix for spatial axis ``axis`` of ``axes`` (0, 1: H, W
        of an image), or None for the identity."""
        raise NotImplementedError

    def _spatial_axes(self, x) -> int:
        """The input check; returns the number of spatial axes (an image's 2)."""
        _accept_image(self, x)
        if 0 in tuple(x.shape[2:]):
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: "
                             f"expected at least one pixel along H and W")
        return 2

    def forward(self, x):
        axes = self._spatial_axes(x)
        key = (tuple(x.shape[2:]), dtype_name(x.dtype), self.backend.device)
        if key not in self._matrices:
            self._matrices[key] = tuple(
                None if m is None else self.backend.asarray(m.astype(dtype_name(x.dtype)))
                for m in (self._axis_matrix(a, x.shape[2 + a], axes) for a in range(axes)))
        matrices = self._cache = self._matrices[key]
        for axis, matrix in enumerate(matrices):
            x = self._along(x, matrix, 2 + axis)
        return x

    def backward(self, grad_output):
        matrices = self._require_cache(self._cache)
        xp = self.backend.xp
        for axis in reversed(range(len(matrices))):
            matrix = matrices[axis]
            if matrix is not None:
                grad_output = self._along(grad_output, xp.matrix_transpose(matrix), 2 + axis)
        return grad_output

    def _along(self, x, matrix, axis: int):
        """``matrix`` (out, in) applied along ``axis`` of ``x``: the last axis times its
        transpose, any other as ``matrix @ x`` with the axes after it merged (a view)."""
        if matrix is None:
            return x
        xp = self.backend.xp
        if axis == x.ndim - 1:
            return F.matmul(x, xp.matrix_transpose(matrix))
        shape = tuple(x.shape)
        after = shape[axis + 1:]
        y = F.matmul(matrix, xp.reshape(x, shape[:axis + 1] + (math.prod(after),)))
        return xp.reshape(y, shape[:axis] + (matrix.shape[0],) + after)

    def _forget_cache(self) -> None:
        super()._forget_cache()
        self._matrices = {}  # on the old device after .to()


# ---------------------------------------------------------------------- 1-D pools
def _window_1d(owner: str, kernel_size, stride, padding, dilation=1):
    """The 1-D window arguments (ints or 1-tuples, as PyTorch's) as the 2-D pool's
    height-1 pairs: ``(1, k), (1, s), (0, p), (1, d)``."""
    k = _single("kernel_size", kernel_size, 1, owner)
    s = k if stride is None else _single("stride", stride, 1, owner)
    p = _single("padding", padding, 0, owner)
    d = _single("dilation", dilation, 1, owner)
    if 2 * p > k:
        raise ValueError(f"{owner}: padding {p} must be at most half the kernel size {k}")
    return (1, k), (1, s), (0, p), (1, d)


class _As1d(Module):
    """Base of the 1-D pools, listed before their 2-D pool: x (N, C, L) goes through it as
    (N, C, 1, L). A Module, so that its forward and backward are the tracked ones: backward
    checks the gradient against the 1-D output and hooks see the 1-D arrays."""

    def forward(self, x):
        self._accept_floating(x, ndim=3, expected="(N, C, L)")
        n, c, length = x.shape
        self._check_length(x)
        xp = self.backend.xp
        out = super().forward(xp.reshape(x, (n, c, 1, length)))
        if isinstance(out, tuple):  # MaxPool1d(return_indices=True): (y, indices)
            return tuple(xp.reshape(a, (n, c, a.shape[3])) for a in out)
        return xp.reshape(out, (n, c, out.shape[3]))

    def backward(self, grad_output):
        xp = self.backend.xp
        n, c, length = grad_output.shape
        dx = super().backward(xp.reshape(grad_output, (n, c, 1, length)))
        return xp.reshape(dx, (n, c, dx.shape[3]))

    def _check_length(self, x) -> None:
        k, d = self.kernel_size[1], self.dilation[1]
        before, after = self.pads_for((1, x.shape[2]))[1]  # ceil_mode's extra end included
        if x.shape[2] + before + after < d * (k - 1) + 1:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: L + "
                             f"padding is smaller than the (dilated) kernel {d * (k - 1) + 1}")

    def extra_repr(self) -> str:
        text = f"kernel_size={self.kernel_size[1]}"
        if self.stride[1] != self.kernel_size[1]:
            text += f", stride={self.stride[1]}"
        if self.padding[1]:
            text += f", padding={self.padding[1]}"
        if self.dilation[1] != 1:
            text += f", dilation={self.dilation[1]}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        if getattr(self, "return_indices", False):
            text += ", return_indices=True"
        if not getattr(self, "count_include_pad", True):
            text += ", count_include_pad=False"
        return text


class MaxPool1d(_As1d, MaxPool2d):
    """Max over ``kernel_size`` windows of x (N, C, L) -> (N, C, OL), as
    ``torch.nn.MaxPool1d(kernel_size, stride, padding, dilation, return_indices,
    ceil_mode)``: MaxPool2d on a height-1 view (the same padding, tie and ceil_mode
    rules). ``return_indices=True``: ``(y, indices)``, each index the position of its
    maximum along L, as PyTorch."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        k, s, p, d = _window_1d("MaxPool1d", kernel_size, stride, padding, dilation)
        if not isinstance(return_indices, (bool, np.bool_)):
            raise ValueError(f"MaxPool1d: return_indices must be True or False, got "
                             f"{return_indices!r}")
        super().__init__(k, s, p, d, return_indices, ceil_mode)


class AvgPool1d(_As1d, AvgPool2d):
    """Mean over ``kernel_size`` windows of x (N, C, L) -> (N, C, OL), as
    ``torch.nn.AvgPool1d(kernel_size, stride, padding, ceil_mode, count_include_pad)``:
    AvgPool2d on a height-1 view (the same padding and divisor rules)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad: bool = True):
        k, s, p, _ = _window_1d("AvgPool1d", kernel_size, stride, padding)
        super().__init__(k, s, p, ceil_mode, count_include_pad)
