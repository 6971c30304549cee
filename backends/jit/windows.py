"""numba kernels of the sliding-window layers: im2col, col2im, and the tiling max pool
(stride == kernel, no padding), forward and backward.

Geometry as in ``backends/geometry.py``. Each kernel is a task body (one image plane, or
one channel's columns) and a driver over a range of tasks, which ``run_tasks`` splits
over the threads. Tasks write
disjoint outputs, and col2im adds the kernel offsets in the generic version's order, so
the results equal ``functional``'s generic ones and do not depend on the thread count.

(N, C, H, W) arrays come in as ``memory_major(x)``: the array itself, or its (C, N, H, W)
transpose when that is the order of its memory (a Conv2d output), plus that flag; the
kernels then take (H, W) planes that numba knows are contiguous, so the inner loops
vectorise. An array contiguous in neither order still works, more slowly.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from . import run_tasks

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")


def memory_major(x):
    """(array, channel_major): x, or x with axes 0 and 1 swapped when that makes it
    C-contiguous."""
    if not x.flags.c_contiguous and abs(x.strides[1]) > abs(x.strides[0]):
        swapped = x.swapaxes(0, 1)
        if swapped.flags.c_contiguous:
            return swapped, True
    return x, False


_U = np.uint64   # see im2col below


@njit(inline="always", **_OPTIONS)
def _range_inside(size, count, stride, offset):
    """Output positions q in [0, count) whose input position q*stride + offset lies in
    [0, size): the half-open range (lo, hi)."""
    lo = 0
    if offset < 0:
        lo = (-offset + stride - 1) // stride
    hi = count
    if (count - 1) * stride + offset >= size:
        hi = (size - 1 - offset) // stride + 1 if size - 1 - offset >= 0 else 0
    return lo, max(lo, hi)


# ---------------------------------------------------------------------- im2col
# Arrays are handled flat, through element offsets (x made contiguous first, in its memory
# order: ``xs`` = (offset between samples, offset between channels)), and the indices of
# the copy loops as unsigned integers: numba checks every signed index for Python's
# negative wrap-around, which keeps these loops from vectorising (4x slower, measured).
# One im2col task is one (channel, kernel offset) for every sample: a long run of copies.
@njit(inline="always", **_OPTIONS)
def _im2col_task(x, xs, cols, task, shape, geometry, same):
    kh, kw, sh, sw, top, left, dh, dw = geometry
    n, h, w, oh, ow = shape
    j = task % kw
    i = (task // kw) % kh
    ci = task // (kw * kh)
    plane, out_plane = h * w, oh * ow
    row_shift, offset = i * dh - top, j * dw - left
    lo, hi = _range_inside(w, ow, sw, offset)
    for ni in range(n):
        source = _U((xs[2] + ni) * xs[0] + ci * xs[1])
        out = _U((task * n + ni) * out_plane)
        if same:   # stride 1, output the input's size: one shift of the flattened plane
            shift = row_shift * w + offset
            first, last = max(0, -shift), min(plane, plane - shift)
            for q in range(_U(first)):
                cols[out + q] = 0
            start = _U(first + shift)
            for q in range(_U(last - first)):
                cols[out + _U(first) + q] = x[source + start + q]
            for q in range(_U(last), _U(plane)):
                cols[out + q] = 0
            for r in range(_U(h)):   # positions that wrapped around a row edge: padding
                row = out + r * _U(w)
                for q in range(_U(w - offset) if offset > 0 else _U(0), _U(w) if offset > 0
                               else _U(-offset)):
                    cols[row + q] = 0
            continue
        for r in range(oh):
            row = r * sh + row_shift
            start = out + _U(r * ow)
            if row < 0 or row >= h:
                for q in range(_U(ow)):
                    cols[start + q] = 0
                continue
            for q in range(_U(lo)):
                cols[start + q] = 0
            first = source + _U(row * w + offset + lo * sw)
            if sw == 1:
                for q in range(_U(hi - lo)):
                    cols[start + _U(lo) + q] = x[first + q]
            else:
                for q in range(_U(hi - lo)):
                    cols[start + _U(lo) + q] = x[first + _U(sw) * q]
            for q in range(_U(hi), _U(ow)):
                cols[start + q] = 0


@njit(**_OPTIONS)
def _im2col_tasks(x, xs, cols, shape, geometry, same, lo, hi):
    for task in range(lo, hi):
        _im2col_task(x, xs, cols, task, shape, geometry, same)


def flat_major(x):
    """(x flat and contiguous in its memory order, (offset between samples, offset
    between channels)); a copy only when x is contiguous in neither order."""
    major, channel_major = memory_major(x)
    if not major.flags.c_contiguous:
        major, channel_major = np.ascontiguousarray(x), False
    n, c, h, w = x.shape
    offsets = (h * w, n * h * w) if channel_major else (c * h * w, h * w)
    return major.reshape(-1), offsets


def im2col(x, kernel_size, stride, padding, dilation, out_size, samples=None, flat=None,
           out=None):
    """cols (C, kh, kw, N, OH, OW), C-contiguous, from x (N, C, H, W) of any strides;
    only the samples ``range(*samples)`` when given (``flat``: ``flat_major(x)``, made
    once for many such calls); written into ``out`` (a 1-D buffer at least that large)
    when given."""
    n, c, h, w = x.shape
    first, stop = samples or (0, n)
    kh, kw = kernel_size
    shape = (c, kh, kw, stop - first) + tuple(out_size)
    cols = (np.empty(shape, dtype=x.dtype) if out is None
            else out[:math.prod(shape)].reshape(shape))
    # (A kernel taller than the image would shift rows past the whole plane: the general
    # loop then, as the unsigned plane-shift loops would write past the task's columns.)
    same = (tuple(stride) == (1, 1) and tuple(out_size) == (h, w)
            and (kh - 1) * dilation[0] < h and (kw - 1) * dilation[1] < w)
    flat, offsets = flat or flat_major(x)
    run_tasks(_im2col_tasks, c * kh * kw, cols.size, flat, offsets + (first,),
              cols.reshape(-1), (stop - first, h, w) + tuple(out_size),
              _geometry(kernel_size, stride, padding, dilation), same)
    return cols


# ---------------------------------------------------------------------- col2im
# One task is one (channel, sample) plane of dx, summing the kernel offsets in order.
# When the convolution keeps the image size at stride 1 (``same``, as in im2col) and the
# columns may be overwritten (the caller's scratch buffer), each kernel offset is one
# shifted add over the flattened plane instead of a short add per row (a row of 14 pixels
# is mostly loop overhead): the column values that would wrap around a row edge (their
# input position is padding) are set to 0 first, so they add +0.0, which leaves every sum
# bitwise as the row-by-row adds leave it (a sum that starts from +0 is never -0).
@njit(inline="always", **_OPTIONS)
def _col2im_task(cols, dx, task, shape, geometry, placement, same):
    kh, kw, sh, sw, top, left, dh, dw = geometry
    n, h, w, oh, ow = shape
    ci, ni = task // n, task % n
    plane = _U((ci * placement[0] + placement[1] + ni) * h * w)
    for q in range(_U(h * w)):
        dx[plane + q] = 0
    for i in range(kh):
        r_lo, r_hi = _range_inside(h, oh, sh, i * dh - top)
        for j in range(kw):
            offset = j * dw - left
            q_lo, q_hi = _range_inside(w, ow, sw, offset)
            count = _U(q_hi - q_lo)
            source = (((ci * kh + i) * kw + j) * n + ni) * oh * ow
            if same:
                for r in range(_U(h)):   # (q_lo, q_hi: the columns inside the image)
                    row = _U(source) + r * _U(w)
                    for q in range(_U(q_lo)):
                        cols[row + q] = 0
                    for q in range(_U(q_hi), _U(w)):
                        cols[row + q] = 0
                shift = (i * dh - top) * w + offset
                first, last = max(0, -shift), min(h * w, h * w - shift)
                target = plane + _U(first + shift)
                start = _U(source + first)
                for q in range(_U(last - first)):
                    dx[target + q] += cols[start + q]
                continue
            for r in range(r_lo, r_hi):
                start = _U(source + r * ow + q_lo)
                first = plane + _U((r * sh + i * dh - top) * w + offset + q_lo * sw)
                if sw == 1:
                    for q in range(count):
                        dx[first + q] += cols[start + q]
                else:
                    for q in range(count):
                        dx[first + _U(sw) * q] += cols[start + q]


@njit(**_OPTIONS)
def _col2im_tasks(cols, dx, shape, geometry, placement, same, lo, hi):
    for task in range(lo, hi):
        _col2im_task(cols, dx, task, shape, geometry, placement, same)


def col2im(cols, x_shape, kernel_size, stride, padding, dilation, out_size, into=None,
           first=0, overwrite=False):
    """dx (N, C, H, W), a transposed view of a C-contiguous (C, N, H, W) buffer, from
    cols holding (C, kh, kw, N, OH, OW) in C order (any shape with that many elements).
    With ``into`` (a C-contiguous (C, N_all, H, W) buffer) the N samples are written
    there from sample ``first`` on, and nothing is returned. ``overwrite``: cols is the
    caller's scratch (C-contiguous), which may be changed (the faster plane-shift adds)."""
    n, c, h, w = x_shape
    kh, kw = kernel_size
    same = (overwrite and cols.flags.c_contiguous and tuple(stride) == (1, 1)
            and tuple(out_size) == (h, w) and (kh - 1) * dilation[0] < h
            and (kw - 1) * dilation[1] < w)
    cols = np.ascontiguousarray(cols).reshape(-1)
    dx = np.empty((c, n, h, w), dtype=cols.dtype) if into is None else into
    run_tasks(_col2im_tasks, c * n, cols.size, cols, dx.reshape(-1),
              (n, h, w) + tuple(out_size), _geometry(kernel_size, stride, padding, dilation),
              (dx.shape[1], first), same)
    return None if into is not None else dx.transpose(1, 0, 2, 3)


def _geometry(kernel_size, stride, padding, dilation) -> tuple:
    (top, _), (left, _) = padding
    return (int(kernel_size[0]), int(kernel_size[1]), int(stride[0]), int(stride[1]),
            int(top), int(left), int(dilation[0]), int(dilation[1]))


# ---------------------------------------------------------------------- tiling max pool
# The first sweep of a plane assumes no NaN (a branch-light loop, unrolled for 2x2) and
# notes whether the plane holds one; a plane that does is swept again in the generic
# order, where a NaN wins both the maximum and the arg-max (the last NaN, as the generic
# code and the CUDA kernel). y and argmax are laid out like x, so all three share ``channel_major``.
@njit(inline="always", **_OPTIONS)
def _max_pool_plane(image, y, argmax, kh, kw):
    seen_nan = False
    for r in range(y.shape[0]):
        for q in range(y.shape[1]):
            if kh == 2 and kw == 2:
                a, b = image[2 * r, 2 * q], image[2 * r, 2 * q + 1]
                c, d = image[2 * r + 1, 2 * q], image[2 * r + 1, 2 * q + 1]
                best, k = a, 0
                if b > best:
                    best, k = b, 1
                if c > best:
                    best, k = c, 2
                if d > best:
                    best, k = d, 3
                seen_nan |= (a != a) | (b != b) | (c != c) | (d != d)
            else:
                best, k = image[r * kh, q * kw], 0
                for i in range(kh):
                    for j in range(kw):
                        v = image[r * kh + i, q * kw + j]
                        seen_nan |= v != v
                        if v > best:
                            best, k = v, i * kw + j
            y[r, q] = best
            argmax[r, q] = k
    return seen_nan


@njit(inline="always", **_OPTIONS)
def _max_pool_plane_with_nan(image, y, argmax, kh, kw):
    for r in range(y.shape[0]):
        for q in range(y.shape[1]):
            best, k = image[r * kh, q * kw], 0
            for i in range(kh):
                for j in range(kw):
                    v = image[r * kh + i, q * kw + j]
                    if v > best:        # strictly greater: ties keep the first offset
                        best, k = v, i * kw + j
                    elif v != v:        # a NaN wins, the last one (as the generic code)
                        best, k = v, i * kw + j
            y[r, q] = best
            argmax[r, q] = k


@njit(inline="always", **_OPTIONS)
def _max_pool_task(x, y, argmax, task, kh, kw):
    a, b = task // x.shape[1], task % x.shape[1]
    image, out, arg = x[a, b], y[a, b], argmax[a, b]
    if _max_pool_plane(image, out, arg, kh, kw):
        _max_pool_plane_with_nan(image, out, arg, kh, kw)


@njit(**_OPTIONS)
def _max_pool_tasks(x, y, argmax, kh, kw, lo, hi):
    for task in range(lo, hi):
        _max_pool_task(x, y, argmax, task, kh, kw)


@njit(inline="always", **_OPTIONS)
def _max_pool_backward_task(grad, argmax, dx, task, kh, kw):
    a, b = task // grad.shape[1], task % grad.shape[1]
    g, arg, out = grad[a, b], argmax[a, b], dx[a, b]
    for r in range(g.shape[0]):
        if kh == 2 and kw == 2:
            top, bottom = out[2 * r], out[2 * r + 1]
            for q in range(g.shape[1]):
                k, value = arg[r, q], g[r, q]
                top[2 * q] = value if k == 0 else 0
                top[2 * q + 1] = value if k == 1 else 0
                bottom[2 * q] = value if k == 2 else 0
                bottom[2 * q + 1] = value if k == 3 else 0
        else:
            for q in range(g.shape[1]):
                k, value = arg[r, q], g[r, q]
                for i in range(kh):
                    for j in range(kw):
                        out[r * kh + i, q * kw + j] = value if i * kw + j == k else 0


@njit(**_OPTIONS)
def _max_pool_backward_tasks(grad, argmax, dx, kh, kw, lo, hi):
    for task in range(lo, hi):
        _max_pool_backward_task(grad, argmax, dx, task, kh, kw)


def _swapped_like(first, *others):
    """``first`` in memory-major form and the others transposed alike."""
    major, channel_major = memory_major(first)
    if channel_major:
        return (major,) + tuple(a.swapaxes(0, 1) for a in others)
    return (first,) + others


def max_pool_tiles(x, kernel_size, empty_like_x):
    """(y, argmax uint8) of the windows tiling x (N, C, H, W); y and argmax are laid out
    in x's memory order (``empty_like_x(shape, dtype)`` makes such arrays)."""
    kh, kw = kernel_size
    n, c, h, w = x.shape
    y = empty_like_x((n, c, h // kh, w // kw), x.dtype)
    argmax = empty_like_x(y.shape, np.uint8)
    xs, ys, args = _swapped_like(x, y, argmax)
    run_tasks(_max_pool_tasks, xs.shape[0] * xs.shape[1], x.size, xs, ys, args, kh, kw)
    return y, argmax


def max_pool_tiles_backward(grad, argmax, x_shape, kernel_size, empty_like_grad):
    """dx (N, C, H, W), laid out in grad's memory order, from the tiling pool's argmax."""
    kh, kw = kernel_size
    dx = empty_like_grad(x_shape, grad.dtype)
    gs, args, dxs = _swapped_like(grad, argmax, dx)
    run_tasks(_max_pool_backward_tasks, gs.shape[0] * gs.shape[1], dx.size, gs, args, dxs,
              kh, kw)
    return dx
