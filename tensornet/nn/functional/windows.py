"""Generic kernels of the sliding-window layers: padding, im2col/col2im (convolution),
max and average pooling (adaptive max pooling too), forward and backward.

Geometry (``backends/geometry.py``): x (N, C, H, W); kernel_size (kh, kw); stride (sh, sw);
dilation (dh, dw); padding ((top, bottom), (left, right)). The loops here run over the
kh*kw kernel offsets only; each step moves whole arrays. Devices override single functions
for speed (``backends/numpy.py``: same-size convolutions, the 2x2 pool; ``backends/cupy.py``:
one kernel each).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from tensornet.backends.geometry import (adaptive_bounds, window_offsets, window_output_size,
                                         windows_overlap, windows_tile)

from .basic import scatter_add
from .dispatch import kernel


def _arange(backend, n: int):
    return backend.asarray(np.arange(n, dtype=np.int64))


@kernel
def pad2d(backend, x, padding, value=0.0):
    """``x`` (N, C, H, W) padded to (N, C, H+top+bottom, W+left+right) with ``value``;
    ``x`` itself (no copy) when the padding is all zero."""
    (top, bottom), (left, right) = padding
    if not (top or bottom or left or right):
        return x
    n, c, h, w = x.shape
    out = backend.full((n, c, h + top + bottom, w + left + right), value, x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


@kernel
def im2col(backend, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
    """Unfold the sliding windows of ``x`` into columns for a convolution GEMM.

    Args: x (N, C, H, W); kernel_size (kh, kw); stride (sh, sw); zero padding
    ((top, bottom), (left, right)); dilation (dh, dw).
    Returns ``cols`` of shape (C, kh, kw, N, OH, OW), C-contiguous, with
    ``cols[c, i, j, n, oh, ow] = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]``.
    ``reshape(cols, (C*kh*kw, N*OH*OW))`` is then the right operand of ONE GEMM with the
    weight as (O, C*kh*kw): the batch is folded into the GEMM's long axis, and channel
    groups are contiguous row blocks. Overrides must return this exact layout.
    """
    n, c = x.shape[0], x.shape[1]
    oh, ow = window_output_size(x.shape, kernel_size, stride, padding, dilation)
    xpad = backend.xp.permute_dims(pad2d(x, padding), (1, 0, 2, 3))
    cols = backend.empty((c, kernel_size[0], kernel_size[1], n, oh, ow), x.dtype)
    for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, (oh, ow)):
        cols[:, i, j, :, :, :] = xpad[:, :, rows, columns]
    return cols


@kernel
def col2im(backend, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
           dilation=(1, 1)):
    """Adjoint of ``im2col``: fold columns back into an image, summing overlaps.

    Args: cols (C, kh, kw, N, OH, OW) (or any shape with that many elements in that
    order, e.g. (C*kh*kw, N*OH*OW)); x_shape (N, C, H, W) of the unpadded image; the
    geometry as in ``im2col``. Returns dx (N, C, H, W) with
    ``dx[n, c, h, w] = sum of cols[c, i, j, n, oh, ow] over oh*sh + i*dh - top == h``
    (likewise for w); padding positions are dropped. The sums run in cols' own
    (C, N, H, W) order, so dx may be a transposed, cropped view of that buffer.
    """
    xp = backend.xp
    n, c, h, w = x_shape
    (top, bottom), (left, right) = padding
    oh, ow = window_output_size(x_shape, kernel_size, stride, padding, dilation)
    cols = xp.reshape(cols, (c, kernel_size[0], kernel_size[1], n, oh, ow))
    dx = backend.zeros((c, n, h + top + bottom, w + left + right), cols.dtype)
    for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, (oh, ow)):
        dx[:, :, rows, columns] += cols[:, i, j, :, :, :]
    return xp.permute_dims(dx[:, :, top:top + h, left:left + w], (1, 0, 2, 3))


@kernel
def max_pool2d(backend, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
    """Max over each window. x (N, C, H, W) -> (y, argmax), both (N, C, OH, OW).

    ``argmax`` (an integer array, int32 here; overrides may pick a narrower dtype) is
    the winning kernel offset ``i*kw + j`` of each window, the first one on ties, as
    PyTorch. NaNs propagate to ``y`` and win the arg-max (the last NaN of a window, as
    PyTorch and the CUDA kernel). Padding counts as -inf but never wins: a window of -inf
    inputs routes its gradient to its first input position, as PyTorch, not to the padding.
    Backward needs only ``argmax``, which is opaque to layers: it goes back to
    ``max_pool2d_backward``.
    """
    xp = backend.xp
    oh, ow = window_output_size(x.shape, kernel_size, stride, padding, dilation)
    xpad = pad2d(x, padding, value=-math.inf)
    first_inside = _first_inside(x.shape, kernel_size, stride, padding, dilation, (oh, ow))
    best = argmax = None
    for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, (oh, ow)):
        value = xpad[:, :, rows, columns]
        if best is None:
            best = value
            argmax = backend.zeros(value.shape, xp.int32)
            continue
        # A NaN wins, the last one (as the CUDA kernel and PyTorch): it is the maximum.
        wins = (value > best) | xp.isnan(value)
        if (i, j) in first_inside:  # the window's first input after padding: it takes over
            wins = wins | backend.asarray(first_inside[i, j])
        argmax = xp.where(wins, i * kernel_size[1] + j, argmax)
        best = xp.maximum(best, value)  # the standard's maximum propagates NaN
    return best, argmax


@kernel
def max_pool2d_indices(backend, argmax, x_shape, kernel_size, stride,
                       padding=((0, 0), (0, 0)), dilation=(1, 1)):
    """``max_pool2d``'s ``argmax`` (N, C, OH, OW), kernel offsets ``i*kw + j`` of any
    integer dtype, as PyTorch's ``return_indices``: int64 flat indices ``h * W + w`` into
    each (n, c) plane of the unpadded input (the winner is never a padded position)."""
    xp = backend.xp
    width = x_shape[3]
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    (top, _), (left, _) = padding
    oh, ow = argmax.shape[2], argmax.shape[3]
    arg = xp.astype(argmax, xp.int64)
    row = xp.reshape(_arange(backend, oh), (1, 1, oh, 1)) * sh + (arg // kw) * dh - top
    column = xp.reshape(_arange(backend, ow), (1, 1, 1, ow)) * sw + (arg % kw) * dw - left
    return row * width + column


def _first_inside(x_shape, kernel_size, stride, padding, dilation, out_size) -> dict:
    """{(i, j): (OH, OW) host bool mask} of the windows whose first kernel offset inside
    the unpadded image is (i, j) > (0, 0); empty without padding."""
    if not any(lo or hi for lo, hi in padding):
        return {}
    (top, _), (left, _) = padding
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    rows = np.arange(out_size[0])[None, :] * sh + np.arange(kh)[:, None] * dh - top
    columns = np.arange(out_size[1])[None, :] * sw + np.arange(kw)[:, None] * dw - left
    row_inside = (rows >= 0) & (rows < x_shape[2])            # (kh, OH)
    column_inside = (columns >= 0) & (columns < x_shape[3])   # (kw, OW)
    seen = np.zeros(tuple(out_size), dtype=bool)
    masks = {}
    for i in range(kh):
        for j in range(kw):
            inside = row_inside[i][:, None] & column_inside[j][None, :]
            first = inside & ~seen
            if (i or j) and first.any():
                masks[i, j] = first
            seen |= inside
    return masks


@kernel
def max_pool2d_backward(backend, grad, argmax, x_shape, kernel_size, stride,
                        padding=((0, 0), (0, 0)), dilation=(1, 1)):
    """Route ``grad`` (N, C, OH, OW) to each window's arg-max; returns dx (N, C, H, W).

    Non-overlapping windows write each input position at most once (a select per
    kernel offset); overlapping windows can route several gradients to one position,
    so they accumulate through ``scatter_add``.
    """
    xp = backend.xp
    n, c, h, w = x_shape
    kh, kw = kernel_size
    if windows_tile(x_shape, kernel_size, stride, padding, dilation):
        oh, ow = grad.shape[2], grad.shape[3]
        dx = backend.empty((n, c, oh, kh, ow, kw), grad.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, :, i, :, j] = xp.where(argmax == i * kw + j, grad, 0.0)
        return xp.reshape(dx, (n, c, h, w))
    (top, bottom), (left, right) = padding
    hp, wp = h + top + bottom, w + left + right
    if windows_overlap(kernel_size, stride, dilation):
        return _max_pool2d_scatter(backend, grad, argmax, x_shape, kernel_size, stride,
                                   padding, dilation)
    dx = backend.zeros((n, c, hp, wp), grad.dtype)
    for i, j, rows, columns in window_offsets(kernel_size, stride, dilation, grad.shape[2:]):
        dx[:, :, rows, columns] = xp.where(argmax == i * kw + j, grad, 0.0)
    return dx[:, :, top:top + h, left:left + w]


def _max_pool2d_scatter(backend, grad, argmax, x_shape, kernel_size, stride, padding,
                        dilation):
    xp = backend.xp
    n, c, h, w = x_shape
    (top, bottom), (left, right) = padding
    hp, wp = h + top + bottom, w + left + right
    oh, ow = grad.shape[2], grad.shape[3]
    arg = xp.astype(argmax, xp.int64)
    row = (xp.reshape(_arange(backend, oh), (1, 1, oh, 1)) * stride[0]
           + (arg // kernel_size[1]) * dilation[0])
    col = (xp.reshape(_arange(backend, ow), (1, 1, 1, ow)) * stride[1]
           + (arg % kernel_size[1]) * dilation[1])
    plane = xp.reshape(_arange(backend, n * c), (n, c, 1, 1)) * (hp * wp)
    dx = backend.zeros((n, c, hp, wp), grad.dtype)
    scatter_add(dx, plane + row * wp + col, grad)
    return dx[:, :, top:top + h, left:left + w]


@kernel
def avg_pool2d(backend, x, kernel_size, stride, padding=((0, 0), (0, 0)),
               count_include_pad=True):
    """Mean over each window. x (N, C, H, W) -> (N, C, OH, OW).

    Padding counts as zeros; with ``count_include_pad=False`` each window is divided
    by the number of real (unpadded) positions it covers, as PyTorch.
    """
    xp = backend.xp
    oh, ow = window_output_size(x.shape, kernel_size, stride, padding)
    xpad = pad2d(x, padding)
    total = None
    for _, _, rows, columns in window_offsets(kernel_size, stride, (1, 1), (oh, ow)):
        window = xpad[:, :, rows, columns]
        if total is None:
            total = xp.asarray(window, copy=True)
        else:
            total += window
    total *= _avg_pool_scale(backend, x.shape, kernel_size, stride, padding, count_include_pad,
                                  x.dtype)
    return total


@kernel
def avg_pool2d_backward(backend, grad, x_shape, kernel_size, stride,
                        padding=((0, 0), (0, 0)), count_include_pad=True):
    """Spread ``grad`` (N, C, OH, OW) evenly over each window; returns dx (N, C, H, W)."""
    n, c, h, w = x_shape
    (top, bottom), (left, right) = padding
    share = grad * _avg_pool_scale(backend, x_shape, kernel_size, stride, padding,
                                   count_include_pad, grad.dtype)
    dx = backend.zeros((n, c, h + top + bottom, w + left + right), grad.dtype)
    for _, _, rows, columns in window_offsets(kernel_size, stride, (1, 1), grad.shape[2:]):
        dx[:, :, rows, columns] += share
    return dx[:, :, top:top + h, left:left + w]


def _avg_pool_scale(backend, x_shape, kernel_size, stride, padding, count_include_pad, dtype):
    """1 / (positions per window): a Python float, or (OH, OW) when padding is excluded."""
    (top, bottom), (left, right) = padding
    if count_include_pad or not (top or bottom or left or right):
        return 1.0 / (kernel_size[0] * kernel_size[1])
    ones = pad2d(backend.ones((1, 1) + tuple(x_shape[2:]), dtype), padding)
    out_size = window_output_size(x_shape, kernel_size, stride, padding)
    count = None
    for _, _, rows, columns in window_offsets(kernel_size, stride, (1, 1), out_size):
        window = ones[0, 0, rows, columns]
        count = window if count is None else count + window
    return 1.0 / count


@functools.lru_cache(maxsize=64)
def _adaptive_windows(h: int, w: int, oh: int, ow: int) -> tuple:
    """``(index, k)``: host int64 (OH * OW * k,) flat positions ``row * W + column`` of every
    adaptive bin's pixels, each bin listed in row-major order and padded to k entries by
    repeating its last row and its last column (a maximum ignores repeats; a repeat comes
    after the pixel it copies)."""
    axes = []
    for size, out in ((h, oh), (w, ow)):
        bounds = adaptive_bounds(size, out)
        longest = max(end - start for start, end in bounds)
        axes.append(np.array([[min(start + t, end - 1) for t in range(longest)]
                              for start, end in bounds], dtype=np.int64))
    rows, columns = axes
    index = rows[:, None, :, None] * w + columns[None, :, None, :]  # (OH, OW, kh, kw)
    k = rows.shape[1] * columns.shape[1]
    return index.reshape(-1), k


@kernel
def adaptive_max_pool2d(backend, x, output_size):
    """Max over PyTorch's adaptive bins (``backends/geometry.adaptive_bounds``): x (N, C,
    H, W) -> ``(y, indices)``, both (N, C, OH, OW); ``indices`` int64, the flat ``h * W + w``
    of each maximum in its (n, c) plane. As PyTorch's CPU kernel: ties give the first
    maximum in row-major order, and a bin holding NaN gives NaN and its last NaN."""
    xp = backend.xp
    n, c, h, w = x.shape
    oh, ow = output_size
    host, k = _adaptive_windows(h, w, oh, ow)
    index = backend.asarray(host)
    values = xp.reshape(xp.take(xp.reshape(x, (n, c, h * w)), index, axis=2),
                        (n, c, oh, ow, k))
    nan = xp.isnan(values)
    first_max = xp.argmax(xp.where(nan, -xp.inf, values), axis=-1)
    last_nan = (k - 1) - xp.argmax(xp.astype(xp.flip(nan, axis=-1), xp.int8), axis=-1)
    slot = xp.where(xp.any(nan, axis=-1), last_nan, first_max)
    bins = xp.reshape(_arange(backend, oh * ow) * k, (1, 1, oh, ow))
    indices = xp.reshape(xp.take(index, xp.reshape(xp.astype(slot, xp.int64) + bins, (-1,))),
                         (n, c, oh, ow))
    return xp.max(values, axis=-1), indices


@kernel
def adaptive_max_pool2d_backward(backend, grad, indices, x_shape):
    """Route ``grad`` (N, C, OH, OW) to the input positions ``indices`` names (bins overlap,
    so gradients meeting at one position add up); returns dx (N, C, H, W)."""
    xp = backend.xp
    n, c, h, w = x_shape
    planes = xp.reshape(_arange(backend, n * c), (n, c, 1, 1)) * (h * w)
    dx = backend.zeros((n, c, h, w), grad.dtype)
    return scatter_add(dx, planes + indices, grad)
