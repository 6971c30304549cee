"""The NumPy backend's sliding-window overrides: im2col / col2im and the tiling max pool.

With numba (``backends/jit/windows.py``) each is one compiled pass over memory, split over
the threads, for any geometry (im2col, col2im) or any tiling pool; without it, NumPy code
for the common cases below, and the generic version for the rest.
"""
from __future__ import annotations

import numpy as np

from . import jit
from .geometry import window_output_size, windows_tile
from .layout import empty_in_order_of
from .numpy import _JIT_DTYPES, NumpyBackend


def _compiled(x):
    """The window kernels when numba is in use and ``x``'s dtype has them, else None."""
    if x.dtype not in _JIT_DTYPES:
        return None
    return jit.kernels("windows")


# ---------------------------------------------------------------------- im2col / col2im
# In general the generic slice loops: they measured as fast as a sliding_window_view plus
# one copy (conv 8->16 on 14x14, batch 128: 1.3 vs 1.4 ms). Their copies run W elements at a
# time, though, and NumPy's per-row overhead dominates on small images. When a stride-1
# convolution keeps the image size (padding "same", the common 3x3/p1), each kernel offset
# is one shift of the flattened H*W plane: the copies and adds then run over whole planes,
# and the few positions that wrap around a row edge are zeroed (im2col) or taken back
# (col2im). Measured (batch 128, 3x3/p1): im2col 1.27 -> 0.44 ms and col2im 2.67 -> 1.34 ms
# for 8 channels of 14x14.
@NumpyBackend.override
def im2col(backend, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
    kernels = _compiled(x)
    if kernels is not None:
        out_size = window_output_size(x.shape, kernel_size, stride, padding, dilation)
        return kernels.im2col(x, kernel_size, stride, padding, dilation, out_size)
    if not _keeps_size(x.shape, kernel_size, stride, padding, dilation):
        return NotImplemented
    n, c, h, w = x.shape
    plane = h * w
    flat = x.transpose(1, 0, 2, 3).reshape(c, n, plane)
    cols = np.empty((c, kernel_size[0], kernel_size[1], n, plane), dtype=x.dtype)
    for i, j, row_shift, column_shift in _offset_shifts(kernel_size, padding, dilation):
        shift = row_shift * w + column_shift
        lo, hi = max(0, -shift), min(plane, plane - shift)
        out = cols[:, i, j]
        out[..., lo:hi] = flat[..., lo + shift:hi + shift]
        out[..., :lo] = 0
        out[..., hi:] = 0
        rows = out.reshape(c, n, h, w)
        if column_shift > 0:      # read past the right edge: padding
            rows[..., w - column_shift:] = 0
        elif column_shift < 0:    # read before the left edge: padding
            rows[..., :-column_shift] = 0
    return cols.reshape(c, kernel_size[0], kernel_size[1], n, h, w)


@NumpyBackend.override
def col2im(backend, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
           dilation=(1, 1)):
    kernels = _compiled(cols)
    if kernels is not None:
        out_size = window_output_size(x_shape, kernel_size, stride, padding, dilation)
        return kernels.col2im(cols, x_shape, kernel_size, stride, padding, dilation, out_size)
    if not _keeps_size(x_shape, kernel_size, stride, padding, dilation):
        return NotImplemented
    n, c, h, w = x_shape
    plane = h * w
    cols = cols.reshape(c, kernel_size[0], kernel_size[1], n, plane)
    dx = np.zeros((c, n, plane), dtype=cols.dtype)
    dx_rows = dx.reshape(c, n, h, w)
    for i, j, row_shift, column_shift in _offset_shifts(kernel_size, padding, dilation):
        shift = row_shift * w + column_shift
        lo, hi = max(0, -shift), min(plane, plane - shift)
        part = cols[:, i, j]
        dx[..., lo + shift:hi + shift] += part[..., lo:hi]
        # Output columns whose input column lies in the padding were added to the
        # neighbouring row's other edge; take them back out.
        rows = part.reshape(c, n, h, w)
        if column_shift > 0:      # last columns landed on the next row's first ones
            first, last = max(0, -row_shift - 1), min(h, h - row_shift - 1)
            if last > first:
                dx_rows[:, :, first + row_shift + 1:last + row_shift + 1,
                        :column_shift] -= rows[:, :, first:last, w - column_shift:]
        elif column_shift < 0:    # first columns landed on the previous row's last ones
            first, last = max(0, 1 - row_shift), min(h, h + 1 - row_shift)
            if last > first:
                dx_rows[:, :, first + row_shift - 1:last + row_shift - 1,
                        w + column_shift:] -= rows[:, :, first:last, :-column_shift]
    return dx_rows.transpose(1, 0, 2, 3)


def _keeps_size(x_shape, kernel_size, stride, padding, dilation) -> bool:
    """True for a stride-1 window geometry whose output is as large as its input (and whose
    kernel is narrower than the image, so a shifted row wraps into one neighbour only, and
    shorter, so no shift moves past the whole plane)."""
    return (tuple(stride) == (1, 1) and x_shape[2] * x_shape[3] > 0
            and window_output_size(x_shape, kernel_size, stride, padding, dilation)
            == tuple(x_shape[2:])
            and (kernel_size[0] - 1) * dilation[0] < x_shape[2]
            and (kernel_size[1] - 1) * dilation[1] < x_shape[3])


def _offset_shifts(kernel_size, padding, dilation):
    """Yield ``(i, j, row_shift, column_shift)``: where kernel offset (i, j) reads the
    unpadded image relative to each output position."""
    (top, _), (left, _) = padding
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            yield i, j, i * dilation[0] - top, j * dilation[1] - left


# ---------------------------------------------------------------------- pooling
# The tiling pools (stride == kernel, no padding; the common 2x2) skip the generic padded
# buffers and write straight into strided views of one output array.
@NumpyBackend.override
def max_pool2d(backend, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
    kernels = _compiled(x)
    if kernels is not None and kernel_size[0] * kernel_size[1] <= 256 \
            and windows_tile(x.shape, kernel_size, stride, padding, dilation):
        return kernels.max_pool_tiles(x, kernel_size,
                                      lambda shape, dtype: empty_in_order_of(x, shape, dtype))
    if tuple(kernel_size) != (2, 2) or not windows_tile(x.shape, kernel_size, stride,
                                                        padding, dilation):
        return NotImplemented
    # A tree of three maxima over the four corners; the arg-max offset 2*row + column comes
    # from three comparisons as a uint8 (ties keep the earlier offset).
    top_left, top_right = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    bottom_left, bottom_right = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    top = np.maximum(top_left, top_right)
    bottom = np.maximum(bottom_left, bottom_right)
    row = np.greater(bottom, top)
    y = np.maximum(top, bottom, out=top)
    column = np.greater(top_right, top_left)
    column_bottom = np.greater(bottom_right, bottom_left)
    column_bottom ^= column          # column = row ? column_bottom : column, in place
    column_bottom &= row
    column ^= column_bottom
    argmax = np.left_shift(row.view(np.uint8), 1)
    argmax |= column.view(np.uint8)
    nan = np.isnan(y)
    if nan.any():  # a NaN wins, the last one (as the generic code and the CUDA kernel)
        for k, corner in enumerate((top_left, top_right, bottom_left, bottom_right)):
            argmax[nan & np.isnan(corner)] = k
    return y, argmax


@NumpyBackend.override
def max_pool2d_backward(backend, grad, argmax, x_shape, kernel_size, stride,
                        padding=((0, 0), (0, 0)), dilation=(1, 1)):
    if not windows_tile(x_shape, kernel_size, stride, padding, dilation):
        return NotImplemented
    kernels = _compiled(grad)
    if kernels is not None and argmax.dtype == np.uint8:
        return kernels.max_pool_tiles_backward(
            grad, argmax, x_shape, kernel_size,
            lambda shape, dtype: empty_in_order_of(grad, shape, dtype))
    kh, kw = kernel_size
    # dx and the mask take grad's memory order (channel-major when grad comes from Conv2d),
    # so the loop below and the next layer's backward stream through memory.
    dx = empty_in_order_of(grad, x_shape, grad.dtype)
    mask = empty_in_order_of(grad, argmax.shape, bool)
    for i in range(kh):
        for j in range(kw):
            np.equal(argmax, i * kw + j, out=mask)
            np.multiply(grad, mask, out=dx[:, :, i::kh, j::kw])
    return dx
