"""The NumPy backend's BatchNorm overrides: statistics and backward, alone or with the
ReLU after the BatchNorm (``tensornet/nn/fusion.py``).

With numba (``backends/jit/norm.py``), BatchNorm's statistics and backward over every axis
but the channel axis (an input of at least 3 dimensions) are one task per channel, read in
place in any layout whose spatial positions are contiguous; otherwise (LayerNorm,
BatchNorm1d on (N, C), SyncBatchNorm) the generic NumPy code. The results are bitwise
those of the generic steps one after the other for the elementwise parts; the sums run in
the kernels' own fixed order (``tests/test_cpu_kernels.py``).
"""
from __future__ import annotations

import math

import numpy as np

from . import jit
from .layout import empty_in_order_of
from .numpy import _JIT_DTYPES, NumpyBackend


def _norm_kernels(x, axes):
    if x.ndim < 3 or x.dtype not in _JIT_DTYPES or tuple(axes) != (0,) + tuple(range(2, x.ndim)):
        return None
    return jit.kernels("norm")


def _stat_shape(x) -> tuple:
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _per_channel(values, x):
    """values as a contiguous (C,) array of x's dtype, or None when it is not one already
    (another shape or dtype broadcasts or promotes as the generic steps do)."""
    if type(values) is not np.ndarray or values.shape != (x.shape[1],) or values.dtype != x.dtype:
        return None  # (a list, say, which the generic steps take too)
    return np.ascontiguousarray(values)


@NumpyBackend.override
def normalize(backend, x, axes, eps, allreduce=None, count=None):
    kernels = _norm_kernels(x, axes)
    if kernels is None or allreduce is not None or count is not None:  # SyncBatchNorm: generic
        return NotImplemented
    xhat = empty_in_order_of(x, x.shape, x.dtype)
    x3, xhat3 = kernels.channel_view(x), kernels.channel_view(xhat)
    if x3 is None or xhat3 is None:
        return NotImplemented
    return (xhat,) + tuple(s.reshape(_stat_shape(x)) for s in kernels.normalize(x3, xhat3, eps))


@NumpyBackend.override
def normalize_affine_relu(backend, x, axes, eps, weight, bias):
    kernels = _norm_kernels(x, axes)
    if kernels is None:
        return NotImplemented
    weight, bias = _per_channel(weight, x), _per_channel(bias, x)
    xhat, y = (empty_in_order_of(x, x.shape, x.dtype) for _ in range(2))
    x3, xhat3, y3 = (kernels.channel_view(a) for a in (x, xhat, y))
    if weight is None or bias is None or x3 is None or xhat3 is None or y3 is None:
        return NotImplemented
    *stats, affine = kernels.normalize(x3, xhat3, eps, relu=(y3, weight, bias))
    return (xhat, y) + tuple(s.reshape(_stat_shape(x)) for s in stats) + (affine,)


def _backward(grad, xhat, scale, axes, sums_out, relu_output, affine=None):
    """normalize_backward (with ``relu_output``: of ReLU's backward first; with ``affine``,
    its mask recomputed from xhat), or NotImplemented for the generic code."""
    kernels = _norm_kernels(xhat, axes)
    channels = xhat.shape[1]
    if kernels is None or grad.dtype != xhat.dtype or math.prod(np.shape(scale)) != channels:
        return NotImplemented
    mask3 = None
    if relu_output is not None:
        if relu_output.dtype != xhat.dtype or relu_output.shape != xhat.shape:
            return NotImplemented
        mask3 = kernels.channel_view(relu_output)
        if affine is not None and (affine.shape != (2, channels) or affine.dtype != xhat.dtype
                                   or type(affine) is not np.ndarray):
            affine = None
    dx = empty_in_order_of(xhat, xhat.shape, xhat.dtype)
    xhat3, dx3 = kernels.channel_view(xhat), kernels.channel_view(dx)
    if xhat3 is None or (relu_output is not None and mask3 is None):
        return NotImplemented
    scale = np.ascontiguousarray(np.reshape(scale, -1), dtype=xhat.dtype)
    grad3 = kernels.channel_view(grad)
    if grad3 is not None and grad3.shape[2] > 1 and grad3.strides[2] != grad3.itemsize:
        grad3 = None  # (rows of grad are summed, and must be contiguous as a masked row is)
    sums = None if grad3 is None else kernels.normalize_backward(grad3, xhat3, scale, dx3,
                                                                 mask3, affine)
    if sums is None:  # grad contiguous in neither order: one copy, with contiguous rows
        like = (empty_in_order_of(xhat, xhat.shape, xhat.dtype)
                if xhat3.shape[2] <= 1 or xhat3.strides[2] == xhat3.itemsize
                else np.empty(xhat.shape, dtype=xhat.dtype))  # (channels-last xhat: NCHW)
        np.copyto(like, grad)
        sums = kernels.normalize_backward(kernels.channel_view(like), xhat3, scale, dx3, mask3,
                                          affine)
        if sums is None:  # ReLU's output laid out unlike xhat
            return NotImplemented
    sums = [s.reshape(_stat_shape(xhat)) for s in sums]
    for k, out in enumerate(sums_out):  # the flat gradient buffers' views, when given
        if out is not None:
            np.copyto(out, sums[k])
            sums[k] = out
    return (dx,) + tuple(sums)


@NumpyBackend.override
def normalize_backward(backend, grad, xhat, scale, axes, sums_out=(None, None),
                       allreduce=None, count=None):
    if allreduce is not None or count is not None:  # SyncBatchNorm: the generic code
        return NotImplemented
    return _backward(grad, xhat, scale, axes, sums_out, None)


@NumpyBackend.override
def normalize_relu_backward(backend, grad, y, xhat, scale, axes, sums_out=(None, None),
                            affine=None):
    return _backward(grad, xhat, scale, axes, sums_out, y, affine)
