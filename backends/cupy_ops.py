"""The CuPy backend's kernel overrides (``@CupyBackend.override``), each one launch where
the generic array-API code takes several: ReLU and its backward; softmax-cross-entropy
forward (one warp per row) and backward; im2col, col2im and max-pool forward and backward
(gathers: deterministic, no atomics); ``matmul`` (the cuBLAS-free GEMM inside CUDA-graph
captures); ``scatter_add`` and ``scatter_assign``. Registered on import by ``cupy.py``.
"""
from __future__ import annotations

import functools

import numpy as np

from .base import dtype_name
from .cuda_kernels import (BIAS_RELU, C_TYPES, CROSS_ENTROPY_BACKWARD,
                           CROSS_ENTROPY_BACKWARD_DIVIDED, CROSS_ENTROPY_MAX_BLOCKS,
                           CROSS_ENTROPY_WARPS_PER_BLOCK, FUSED_DTYPES, RELU, RELU_BACKWARD)
from .cuda_window_kernels import COL2IM, IM2COL, MAX_POOL, MAX_POOL_BACKWARD
from .cupy import CupyBackend
from .geometry import window_output_size


# ---------------------------------------------------------------------- kernel overrides
def fused_dtypes_only(kernel):
    """The kernels here are built for float32 and float64: for other dtypes of the first
    array argument, hand the call back to the generic version."""
    @functools.wraps(kernel)
    def guarded(backend, x, *args, **kwargs):
        if dtype_name(x.dtype) not in FUSED_DTYPES:
            return NotImplemented
        return kernel(backend, x, *args, **kwargs)
    return guarded


@CupyBackend.override
def scatter_add(backend, target, index, values):
    import cupyx  # atomics: float32 sums may differ in the last bits from run to run
    cupyx.scatter_add(target.reshape(-1), index.reshape(-1), values.reshape(-1))
    return target


@CupyBackend.override
def scatter_assign(backend, target, index, values):
    if not target.flags.c_contiguous:
        return NotImplemented
    target.reshape(-1)[index.reshape(-1)] = values.reshape(-1)  # a view: written in place
    return target


@CupyBackend.override
def matmul(backend, a, b, out=None):
    # cuBLAS is refused inside CUDA-graph capture, so graph steps use the tiled kernel.
    if backend._capture is not None and backend._capture.phase in ("rehearse", "capture"):
        from .cuda_matmul import capture_safe_matmul
        result = capture_safe_matmul(backend, a, b)
        if out is None:
            return result
        out[...] = result
        return out
    return backend.xp.matmul(a, b, out=out)


@CupyBackend.override
def reduce_sum(backend, x, axis=None, keepdims=False, out=None):
    return backend.xp.sum(x, axis=axis, keepdims=keepdims, out=out)


@CupyBackend.override
@fused_dtypes_only
def relu(backend, x):
    return backend._kernels.elementwise(RELU)(x)


@CupyBackend.override
@fused_dtypes_only
def relu_backward(backend, grad, y):
    return backend._kernels.elementwise(RELU_BACKWARD)(grad, y)


@CupyBackend.override
@fused_dtypes_only
def bias_relu(backend, y, bias):
    if bias.dtype != y.dtype or bias.shape != y.shape[1:]:  # (as the NumPy override)
        return NotImplemented
    return backend._kernels.elementwise(BIAS_RELU)(y, bias)


@CupyBackend.override
@fused_dtypes_only
def softmax_cross_entropy(backend, logits, labels, label_smoothing=0.0, ignore_index=None):
    xp = backend.xp
    n, c = logits.shape
    label_type = C_TYPES.get(dtype_name(labels.dtype))
    if label_type not in ("int", "long long"):
        labels, label_type = labels.astype(xp.int64), "long long"
    logits = xp.ascontiguousarray(logits)
    labels = xp.ascontiguousarray(labels)
    log_probs = xp.empty_like(logits)
    losses = xp.empty(n, dtype=logits.dtype)
    kept = xp.zeros((), dtype=logits.dtype)  # a memset, which CUDA graphs capture
    if n:
        t = logits.dtype.type
        warps = CROSS_ENTROPY_WARPS_PER_BLOCK
        kernel = backend._kernels.raw("cross_entropy", C_TYPES[dtype_name(logits.dtype)],
                                      label_type)
        ignoring = ignore_index is not None
        kernel((min(-(-n // warps), CROSS_ENTROPY_MAX_BLOCKS),), (32 * warps,),
               (logits, labels, np.int32(n), np.int32(c), t(1.0 - label_smoothing),
                t(label_smoothing / c), np.int64(ignore_index if ignoring else 0),
                np.int32(ignoring), log_probs, losses, kept))
    return (losses, log_probs) if ignore_index is None else (losses, log_probs, kept)


@CupyBackend.override
@fused_dtypes_only
def softmax_cross_entropy_backward(backend, log_probs, labels, scale, label_smoothing=0.0,
                                   ignore_index=None, divisor=None):
    c = log_probs.shape[1]
    t = log_probs.dtype.type
    ignoring = ignore_index is not None
    tail = (t(1.0 - label_smoothing), t(label_smoothing / c), np.int32(c),
            np.int64(ignore_index if ignoring else 0), np.int32(ignoring))
    if divisor is None:
        return backend._kernels.elementwise(CROSS_ENTROPY_BACKWARD)(
            log_probs, labels, t(scale), *tail)
    return backend._kernels.elementwise(CROSS_ENTROPY_BACKWARD_DIVIDED)(
        log_probs, labels, t(scale), backend.xp.reshape(divisor, (1,)), *tail)


# Window kernels: one launch each instead of one per kernel offset; same layouts and
# summation order as the generic functions (tensornet/nn/functional/windows.py), which stay
# the reference.
def _window_geometry(x_shape, kernel_size, stride, padding, dilation):
    """The int32 scalars of the window kernels (cuda_window_kernels.WINDOW_PARAMS order),
    and (OH, OW)."""
    (oh, ow) = window_output_size(x_shape, kernel_size, stride, padding, dilation)
    n, c, h, w = x_shape
    (top, _), (left, _) = padding
    values = (n, c, h, w, oh, ow, *kernel_size, *stride, top, left, *dilation)
    return tuple(np.int32(v) for v in values), (oh, ow)


@CupyBackend.override
@fused_dtypes_only
def im2col(backend, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
    geometry, (oh, ow) = _window_geometry(x.shape, kernel_size, stride, padding, dilation)
    n, c = x.shape[0], x.shape[1]
    cols = backend.xp.empty((c, kernel_size[0], kernel_size[1], n, oh, ow), dtype=x.dtype)
    if cols.size:
        backend._kernels.elementwise(IM2COL)(backend.xp.ascontiguousarray(x), *geometry, cols)
    return cols


@CupyBackend.override
@fused_dtypes_only
def col2im(backend, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
           dilation=(1, 1)):
    geometry, _ = _window_geometry(x_shape, kernel_size, stride, padding, dilation)
    dx = backend.xp.empty(tuple(x_shape), dtype=cols.dtype)
    if dx.size:
        flat = backend.xp.ascontiguousarray(cols).reshape(-1)
        backend._kernels.elementwise(COL2IM)(flat, *geometry, dx)
    return dx


@CupyBackend.override
@fused_dtypes_only
def max_pool2d(backend, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
    xp = backend.xp
    geometry, (oh, ow) = _window_geometry(x.shape, kernel_size, stride, padding, dilation)
    shape = (x.shape[0], x.shape[1], oh, ow)
    y = xp.empty(shape, dtype=x.dtype)
    argmax = xp.empty(shape, dtype=xp.int32)
    if y.size:
        backend._kernels.elementwise(MAX_POOL)(xp.ascontiguousarray(x), *geometry, y, argmax)
    return y, argmax


@CupyBackend.override
@fused_dtypes_only
def max_pool2d_backward(backend, grad, argmax, x_shape, kernel_size, stride,
                        padding=((0, 0), (0, 0)), dilation=(1, 1)):
    xp = backend.xp
    if argmax.dtype != xp.int32:
        return NotImplemented
    geometry, _ = _window_geometry(x_shape, kernel_size, stride, padding, dilation)
    dx = xp.empty(tuple(x_shape), dtype=grad.dtype)
    if dx.size:
        backend._kernels.elementwise(MAX_POOL_BACKWARD)(
            xp.ascontiguousarray(grad), xp.ascontiguousarray(argmax), *geometry, dx)
    return dx
