"""numba kernels of BatchNorm's statistics and backward (``functional.normalize`` and
``normalize_backward`` over every axis but the channel axis 1), and of a BatchNorm followed
by a ReLU (``normalize_affine_relu``, ``normalize_relu_backward``: the affine transform
and the ReLU in the normalizing sweep; ReLU's mask applied row by row as the backward reads
the gradient).

Inputs are seen as (N, C, L) (L: the spatial positions), passed memory-major (see
``windows.memory_major``) so that each (sample, channel) row of L values is contiguous: a
Conv2d output, a (N, C, H, W) view of (C, N, H, W) memory, is read in place. Each channel
is one task: its sums run in float64, row by row, then the channel is written in a second
sweep while it is still in cache. The row sums are vectorised (numba's ``reassoc``: the
order of the additions is fixed by the row length alone), so a channel's values do not
depend on the thread count. The elementwise formulas are the generic ones, in the same
order, in the input's precision.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import run_tasks
from .windows import memory_major

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
_SUMS = dict(_OPTIONS, fastmath={"reassoc"})


@njit(**_SUMS)
def _row_sum(row):
    total = 0.0
    for k in range(row.shape[0]):
        total += row[k]
    return total


@njit(**_SUMS)
def _row_squared_deviations(row, mean):
    total = 0.0
    for k in range(row.shape[0]):
        d = row[k] - mean
        total += d * d
    return total


@njit(**_SUMS)
def _row_sum_and_dot(grad, xhat):
    total, dot = 0.0, 0.0
    for k in range(grad.shape[0]):
        g = grad[k]
        total += g
        dot += g * xhat[k]
    return total, dot


@njit(inline="always", **_OPTIONS)
def _row(x, channel_major, n, c):
    return x[c, n] if channel_major else x[n, c]


@njit(inline="always", **_OPTIONS)
def _statistics(x, channel_major, stats, eps, ci):
    """Channel ci's mean, biased variance and 1/sqrt(var + eps) into stats[:, ci]."""
    n = x.shape[1] if channel_major else x.shape[0]
    count = n * x.shape[2]
    total = 0.0
    for a in range(n):
        total += _row_sum(_row(x, channel_major, a, ci))
    stats[0, ci] = total / count     # stored (and read back) in x's precision
    mean = stats[0, ci]
    squares = 0.0
    for a in range(n):
        squares += _row_squared_deviations(_row(x, channel_major, a, ci), mean)
    stats[1, ci] = squares / count
    stats[2, ci] = eps               # eps in x's precision, as the generic var + eps
    stats[2, ci] = 1.0 / np.sqrt(stats[1, ci] + stats[2, ci])


@njit(inline="always", **_OPTIONS)
def _normalize_task(x, xhat, channel_major, stats, eps, ci):
    _statistics(x, channel_major, stats, eps, ci)
    mean, invstd = stats[0, ci], stats[2, ci]
    n = x.shape[1] if channel_major else x.shape[0]
    for a in range(n):
        source, target = _row(x, channel_major, a, ci), _row(xhat, channel_major, a, ci)
        for k in range(x.shape[2]):
            target[k] = (source[k] - mean) * invstd


@njit(**_OPTIONS)
def _normalize_tasks(x, xhat, channel_major, stats, eps, lo, hi):
    for ci in range(lo, hi):
        _normalize_task(x, xhat, channel_major, stats, eps, ci)


@njit(**_OPTIONS)
def _normalize_relu_tasks(x, xhat, y, weight, bias, channel_major, stats, eps, lo, hi):
    """As _normalize_tasks, and y = max(xhat * weight + bias, 0) in the same sweep (the
    generic steps' operations, in their order and precision)."""
    for ci in range(lo, hi):
        _statistics(x, channel_major, stats, eps, ci)
        stats[3, ci], stats[4, ci] = weight[ci], bias[ci]   # (what backward's FROM_XHAT needs)
        mean, invstd, w, b = stats[0, ci], stats[2, ci], stats[3, ci], stats[4, ci]
        n = x.shape[1] if channel_major else x.shape[0]
        for a in range(n):
            source, target = _row(x, channel_major, a, ci), _row(xhat, channel_major, a, ci)
            out = _row(y, channel_major, a, ci)
            for k in range(x.shape[2]):
                v = (source[k] - mean) * invstd
                target[k] = v
                v = v * w
                v = v + b
                out[k] = v if not v < 0 else 0   # max(v, 0), NaN kept, as np.maximum


# ReLU's mask in the fused backward: NO_MASK (a plain BatchNorm), FROM_OUTPUT (where(y > 0,
# grad, 0) through ReLU's output y) or FROM_XHAT (the same mask recomputed from xhat and the
# weight and bias that made y = max(xhat * weight + bias, 0): the same operations as the
# forward sweep give the same v, and v > 0 exactly where y > 0, NaN and -0 included, so
# y is not read at all).
NO_MASK, FROM_OUTPUT, FROM_XHAT = 0, 1, 2


@njit(inline="always", **_OPTIONS)
def _mask_from_output(grad, y, out):
    """out = where(y > 0, grad, 0): one row of ReLU's backward (FROM_OUTPUT)."""
    for k in range(grad.shape[0]):
        out[k] = grad[k] if y[k] > 0 else 0
    return out


@njit(inline="always", **_OPTIONS)
def _mask_from_xhat(grad, xh, w, b, out):
    """The same row from xhat (FROM_XHAT): v as the forward sweep computed it."""
    for k in range(grad.shape[0]):
        v = xh[k] * w
        v = v + b
        out[k] = grad[k] if v > 0 else 0
    return out


@njit(inline="always", **_OPTIONS)
def _backward_row(g, xh, out, mean_grad, mean_grad_xhat, s):
    for k in range(g.shape[0]):
        out[k] = (g[k] - mean_grad - xh[k] * mean_grad_xhat) * s


@njit(inline="always", **_OPTIONS)
def _normalize_backward_task(grad, grad_major, xhat, dx, channel_major, scale, sums, mask,
                             affine, mode, masked, ci):
    """Channel ci of normalize's backward. With a mask ``mode``, each gradient row is first
    masked as ReLU's backward does, into the row buffer ``masked``, then summed by the same
    code as an unmasked row (so the sums are those of the separate steps). ``grad_major``:
    grad's own layout flag (the others share ``channel_major``)."""
    n = xhat.shape[1] if channel_major else xhat.shape[0]
    count = n * xhat.shape[2]
    w, b = affine[0, ci], affine[1, ci]   # (zeros unless FROM_XHAT)
    sum_grad, sum_grad_xhat = 0.0, 0.0
    for a in range(n):
        g, xh = _row(grad, grad_major, a, ci), _row(xhat, channel_major, a, ci)
        if mode == NO_MASK:
            total, dot = _row_sum_and_dot(g, xh)
        elif mode == FROM_OUTPUT:
            total, dot = _row_sum_and_dot(
                _mask_from_output(g, _row(mask, channel_major, a, ci), masked), xh)
        else:
            total, dot = _row_sum_and_dot(_mask_from_xhat(g, xh, w, b, masked), xh)
        sum_grad += total
        sum_grad_xhat += dot
    sums[0, ci] = sum_grad            # stored (and read back) in grad's precision
    sums[1, ci] = sum_grad_xhat
    sums[2, ci] = sums[0, ci] / count
    sums[3, ci] = sums[1, ci] / count
    mean_grad, mean_grad_xhat, s = sums[2, ci], sums[3, ci], scale[ci]
    for a in range(n):
        g, xh = _row(grad, grad_major, a, ci), _row(xhat, channel_major, a, ci)
        out = _row(dx, channel_major, a, ci)
        if mode == NO_MASK:
            _backward_row(g, xh, out, mean_grad, mean_grad_xhat, s)
        elif mode == FROM_OUTPUT:
            _backward_row(_mask_from_output(g, _row(mask, channel_major, a, ci), masked), xh,
                          out, mean_grad, mean_grad_xhat, s)
        else:
            _backward_row(_mask_from_xhat(g, xh, w, b, masked), xh, out, mean_grad,
                          mean_grad_xhat, s)


@njit(inline="always", **_OPTIONS)
def _backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask, affine, mode,
                    lo, hi):
    masked = np.empty(grad.shape[2] if mode != NO_MASK else 0, dtype=grad.dtype)
    for ci in range(lo, hi):
        _normalize_backward_task(grad, grad_major, xhat, dx, channel_major, scale, sums, mask,
                                 affine, mode, masked, ci)


# One driver per mode: the mode is a constant inside each, so each compiles to the loops of
# its own case alone (a mode read at run time measured 1.3-1.6x slower).
@njit(**_OPTIONS)
def _plain_backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask, affine,
                          lo, hi):
    _backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask, affine,
                    NO_MASK, lo, hi)


@njit(**_OPTIONS)
def _output_masked_backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask,
                                  affine, lo, hi):
    _backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask, affine,
                    FROM_OUTPUT, lo, hi)


@njit(**_OPTIONS)
def _xhat_masked_backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask,
                                affine, lo, hi):
    _backward_tasks(grad, grad_major, xhat, dx, channel_major, scale, sums, mask, affine,
                    FROM_XHAT, lo, hi)


_BACKWARD_TASKS = {NO_MASK: _plain_backward_tasks, FROM_OUTPUT: _output_masked_backward_tasks,
                   FROM_XHAT: _xhat_masked_backward_tasks}


def channel_view(x):
    """x (N, C, ...) as a (N, C, L) view (no copy), or None when that needs a copy."""
    view = x.view()
    try:
        view.shape = (x.shape[0], x.shape[1], math.prod(x.shape[2:]))
    except AttributeError:  # NumPy: "incompatible shape for in-place modification"
        return None
    return view


def _alike(first, *others):
    """Memory-major forms of ``first`` and of the others, or None when they differ."""
    major, channel_major = memory_major(first)
    rest = [memory_major(a) for a in others]
    if any(flag != channel_major for _, flag in rest):
        return None
    return (major,) + tuple(a for a, _ in rest), channel_major


def normalize(x3, xhat3, eps, relu=None):
    """Fill ``xhat3`` (N, C, L, laid out as x3) from ``x3``; returns (mean, var, invstd),
    each (C,) in x's dtype. ``relu=(y3, weight, bias)``: also fill ``y3`` (laid out as x3)
    with ``max(xhat * weight + bias, 0)`` (weight, bias (C,) of x's dtype) and return a
    fourth item, the (2, C) weight and bias it used (for ``normalize_backward``'s
    ``affine``)."""
    if relu is None:
        stats = np.empty((3, x3.shape[1]), dtype=x3.dtype)
        (x, xhat), channel_major = _alike(x3, xhat3)
        run_tasks(_normalize_tasks, x3.shape[1], x3.size, x, xhat, channel_major, stats,
                  float(eps))
        return stats[0], stats[1], stats[2]
    stats = np.empty((5, x3.shape[1]), dtype=x3.dtype)
    y3, weight, bias = relu
    (x, xhat, y), channel_major = _alike(x3, xhat3, y3)
    run_tasks(_normalize_relu_tasks, x3.shape[1], x3.size, x, xhat, y, weight, bias,
              channel_major, stats, float(eps))
    return stats[0], stats[1], stats[2], stats[3:]


def normalize_backward(grad3, xhat3, scale, dx3, mask3=None, affine=None):
    """Fill ``dx3`` (N, C, L, laid out as xhat3); returns (sum(grad), sum(grad * xhat)),
    each (C,), or None when mask3's layout differs from xhat's, or grad's does and grad
    is not contiguous in its own (N, C, L) or (C, N, L) order (the gradient a MaxPool2d
    hands back is NCHW for channel-major activations: read in place). ``mask3``: ReLU's
    output (N, C, L), whose backward is applied to grad first; ``affine``: instead, the
    (2, C) weight and bias that made that output from xhat3 (``normalize``'s fourth item),
    from which the mask is recomputed without reading the output."""
    mode = NO_MASK if mask3 is None and affine is None else \
        FROM_XHAT if affine is not None else FROM_OUTPUT
    arrays = _alike(xhat3, dx3) if mode != FROM_OUTPUT else _alike(xhat3, dx3, mask3)
    grad, grad_major = memory_major(grad3)
    if arrays is None or (grad_major != arrays[1] and not grad.flags.c_contiguous):
        return None
    (xhat, dx, *mask), channel_major = arrays
    mask = mask[0] if mask else np.empty((0, 0, 0), dtype=grad.dtype)
    if affine is None:
        affine = np.zeros((2, grad3.shape[1]), dtype=grad.dtype)
    sums = np.empty((4, grad3.shape[1]), dtype=grad3.dtype)
    run_tasks(_BACKWARD_TASKS[mode], grad3.shape[1], grad3.size, grad, grad_major, xhat, dx,
              channel_major, scale, sums, mask, affine)
    return sums[0], sums[1]
