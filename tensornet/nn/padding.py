"""Padding layers, as PyTorch's: ZeroPad1d/2d, ConstantPad1d/2d, ReflectionPad1d/2d and
ReplicationPad1d/2d over (N, C, L) and (N, C, H, W).

``padding`` is an int (every side) or PyTorch's tuple, last axis first: ``(left, right)``,
or ``(left, right, top, bottom)``. Forward pads one axis at a time (a concatenation with
the constant, or a gather of the reflected or repeated indices); backward sums the
gradient of every output position into the input position it was read from (slices of
the padded gradient added in place), so nothing is a Python loop over pixels.
"""
from __future__ import annotations

import numbers

import numpy as np

from .checks import check_real
from .module import Module

_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)"}


class _Pad(Module):
    """Shared plumbing; subclasses set ``_axes`` (1 or 2) and ``mode``."""

    _cache_attrs = ("_shape",)
    _axes = 1
    mode = "constant"

    def __init__(self, padding, value: float = 0.0):
        super().__init__()
        name, count = type(self).__name__, 2 * self._axes
        pads = (padding,) * count if isinstance(padding, numbers.Integral) and \
            not isinstance(padding, bool) else padding
        if (not isinstance(pads, (tuple, list)) or len(pads) != count
                or any(isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 0
                       for p in pads)):
            sides = "(left, right)" if self._axes == 1 else "(left, right, top, bottom)"
            raise ValueError(f"{name}: padding must be an int >= 0 or a tuple {sides} of them "
                             f"(negative padding, cropping, is not supported), got {padding!r}")
        self.padding = tuple(int(p) for p in pads)
        self.value = check_real(name, "value", value)

    def _pairs(self):
        """((axis, before, after), ...) from the last axis back, PyTorch's order."""
        return tuple((-1 - k, self.padding[2 * k], self.padding[2 * k + 1])
                     for k in range(self._axes))

    def forward(self, x):
        self._accept_floating(x, ndim=2 + self._axes, expected=_LAYOUTS[self._axes])
        shape = tuple(x.shape)
        for axis, before, after in self._pairs():
            if shape[axis] == 0 and (before or after) and self.mode != "constant":
                raise ValueError(f"{self._describe()} got input of shape {shape}: axis "
                                 f"{len(shape) + axis} is empty, so there is nothing to "
                                 f"{'reflect' if self.mode == 'reflect' else 'repeat'}")
            if self.mode == "reflect" and max(before, after) >= shape[axis]:
                raise ValueError(f"{self._describe()} got input of shape {shape}: reflection "
                                 f"padding ({before}, {after}) must be less than the size "
                                 f"{shape[axis]} of axis {len(shape) + axis} (as PyTorch)")
        self._shape = shape
        y = x
        for axis, before, after in self._pairs():
            y = self._pad(y, axis, before, after)
        return y

    def _pad(self, x, axis, before, after):
        if before == after == 0:
            return x
        xp, n = self.backend.xp, x.shape[axis]
        if self.mode == "constant":
            def block(count):
                shape = list(x.shape)
                shape[axis] = count
                return xp.full(tuple(shape), self.value, dtype=x.dtype)
            return xp.concat([block(before), x, block(after)], axis=axis)
        if self.mode == "reflect":
            index = np.concatenate([np.arange(before, 0, -1), np.arange(n),
                                    np.arange(n - 2, n - 2 - after, -1)])
        else:  # replicate
            index = np.concatenate([np.zeros(before, np.int64), np.arange(n),
                                    np.full(after, n - 1)])
        return xp.take(x, self.backend.asarray(index.astype(np.int64)), axis=axis % x.ndim)

    def backward(self, grad_output):
        shape = self._require_cache(self._shape)
        dx = grad_output
        for axis, before, after in self._pairs():
            dx = self._unpad(dx, axis % len(shape), before, after, shape[axis])
        return dx

    def _unpad(self, g, axis, before, after, n):
        """The gradient of ``_pad`` along ``axis``: the middle, plus what each padded
        position read."""
        if before == after == 0:
            return g
        xp = self.backend.xp

        def part(start, stop):
            index = [slice(None)] * g.ndim
            index[axis] = slice(start, stop)
            return tuple(index)
        dx = xp.asarray(g[part(before, before + n)], copy=True)
        if self.mode == "constant":
            return dx
        head, tail = g[part(0, before)], g[part(before + n, before + n + after)]
        if self.mode == "reflect":
            if before:
                dx[part(1, before + 1)] = dx[part(1, before + 1)] + xp.flip(head, axis=axis)
            if after:
                dx[part(n - 1 - after, n - 1)] = dx[part(n - 1 - after, n - 1)] + \
                    xp.flip(tail, axis=axis)
            return dx
        if before:  # replicate: the edge takes every copy of itself
            dx[part(0, 1)] = dx[part(0, 1)] + xp.sum(head, axis=axis, keepdims=True)
        if after:
            dx[part(n - 1, n)] = dx[part(n - 1, n)] + xp.sum(tail, axis=axis, keepdims=True)
        return dx

    def extra_repr(self) -> str:
        text = str(self.padding)
        return text + (f", value={self.value}" if type(self).__name__.startswith("Constant")
                       else "")


class ConstantPad1d(_Pad):
    """``torch.nn.ConstantPad1d(padding, value)``: (N, C, L) padded with ``value``."""

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ConstantPad2d(_Pad):
    """``torch.nn.ConstantPad2d(padding, value)``: (N, C, H, W) padded with ``value``."""

    _axes = 2

    def __init__(self, padding, value: float):
        super().__init__(padding, value)


class ZeroPad1d(_Pad):
    """``torch.nn.ZeroPad1d(padding)``: (N, C, L) padded with zeros."""


class ZeroPad2d(_Pad):
    """``torch.nn.ZeroPad2d(padding)``: (N, C, H, W) padded with zeros."""

    _axes = 2


class ReflectionPad1d(_Pad):
    """``torch.nn.ReflectionPad1d(padding)``: (N, C, L) padded with its reflection about the
    edge (``[a b c d]`` padded by 2: ``c b [a b c d] c b``); each side less than L."""

    mode = "reflect"


class ReflectionPad2d(_Pad):
    """``torch.nn.ReflectionPad2d(padding)``: (N, C, H, W) reflected about its edges (each
    side less than the axis's size)."""

    _axes, mode = 2, "reflect"


class ReplicationPad1d(_Pad):
    """``torch.nn.ReplicationPad1d(padding)``: (N, C, L) padded with copies of its edge
    values."""

    mode = "replicate"


class ReplicationPad2d(_Pad):
    """``torch.nn.ReplicationPad2d(padding)``: (N, C, H, W) padded with copies of its edge
    rows and columns (the corners with the corner value)."""

    _axes, mode = 2, "replicate"
