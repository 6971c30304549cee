"""Sliding-window geometry shared by the window kernels of every device and the generic ones.

Geometry of every window operation (convolution, pooling):
  x: (N, C, H, W); kernel_size (kh, kw); stride (sh, sw); dilation (dh, dw);
  padding ((top, bottom), (left, right)), zeros except for max pooling (-inf);
  OH = (H + top + bottom - dh*(kh-1) - 1) // sh + 1, likewise OW (see window_output_size);
  window (oh, ow), kernel offset (i, j) reads x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw].
Plain Python on shapes: the math itself is in ``tensornet/nn/functional/windows.py`` (generic)
and the device files (overrides).
"""
from __future__ import annotations


def window_output_size(x_shape, kernel_size, stride, padding, dilation=(1, 1)) -> tuple:
    """(OH, OW) of the sliding windows over an (N, C, H, W) input (see the geometry
    above); a size below 1 means the padded input is smaller than the dilated kernel."""
    return tuple((size + lo + hi - d * (k - 1) - 1) // s + 1
                 for size, k, s, (lo, hi), d in zip(x_shape[2:], kernel_size, stride, padding,
                                                    dilation))


def window_offsets(kernel_size, stride, dilation, out_size):
    """Yield ``(i, j, rows, columns)`` for each kernel offset: the strided slices of the
    padded image that offset (i, j) reads across all OH x OW windows."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_size, stride, dilation, out_size
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            yield i, j, rows, slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)


def windows_overlap(kernel_size, stride, dilation) -> bool:
    """True when an input position may lie in two windows (stride shorter than the dilated
    kernel along either axis); conservative for dilated kernels."""
    return any(s < d * (k - 1) + 1 for k, s, d in zip(kernel_size, stride, dilation))


def windows_tile(x_shape, kernel_size, stride, padding, dilation) -> bool:
    """True when the windows tile the unpadded input exactly (stride == kernel, e.g. the
    common 2x2 pool on even sizes): then (N, C, H, W) reshapes to (N, C, OH, kh, OW, kw)."""
    return (tuple(kernel_size) == tuple(stride) and tuple(dilation) == (1, 1)
            and not any(lo or hi for lo, hi in padding)
            and x_shape[2] % kernel_size[0] == 0 and x_shape[3] % kernel_size[1] == 0)


def adaptive_bounds(in_size: int, out: int) -> list:
    """``[(start, end), ...]``: the ``out`` bins of PyTorch's adaptive pooling along an axis
    of ``in_size``; bin i covers ``floor(i * in / out)`` to ``ceil((i + 1) * in / out)``
    (exclusive), so bins overlap when ``out`` does not divide ``in_size``."""
    return [(i * in_size // out, -(-(i + 1) * in_size // out)) for i in range(out)]
