"""The NumPy backend's convolution: Conv2d's forward and backward a block of images at a
time (with the numba im2col / col2im of ``backends/jit/windows.py``).

The generic version unfolds the whole batch into columns (C_in*kh*kw x N*OH*OW values, 7 MB
for the benchmark CNN's second layer), multiplies, and keeps the columns until backward.
Here each block of images is unfolded into a buffer that stays in the core's cache
(``_BLOCK`` elements), multiplied straight into its slice of the output, and dropped:
backward unfolds the block again from the input it keeps instead. The weight gradient sums
the blocks' products in block order (a fixed split of the batch: results do not depend on
the thread count); for few rows (C_in*kh*kw) and channels a compiled kernel
(``backends/jit/conv.py``) computes them instead of BLAS. Groups, and NumPy without
numba, use the generic version.
"""
from __future__ import annotations

import threading

import numpy as np

from . import jit
from .geometry import window_output_size
from .numpy import NumpyBackend
from .numpy_windows import _compiled

# Columns per block: 512K elements (2 MB in float32) stay in the cache between im2col and
# the GEMMs. Measured on the 2-core VM, one thread, the benchmark CNN's second conv
# (8 -> 16 channels, 14x14, batch 128): backward 3.3 ms in blocks of 512K, 3.5 ms in blocks
# of 128K, 6.6 ms unblocked. Fewer, larger blocks also mean fewer GEMM calls, each of which
# can stall a few milliseconds when a second BLAS thread waits for a busy core.
_BLOCK = 1 << 19


def _blocks(n: int, per_sample: int) -> list:
    size = max(1, _BLOCK // max(per_sample, 1))
    return [(start, min(n, start + size)) for start in range(0, n, size)]


_scratch = threading.local()


def _buffer(name: str, size: int, dtype) -> np.ndarray:
    """A 1-D scratch array of ``size`` elements, kept per thread and reused from call to
    call: a block's columns live only within the block. Fresh 2 MB arrays per block cost
    more than the block's work: the C allocator hands such memory back to the OS and
    takes it again, ~3,000 page faults per backward of the benchmark CNN's second conv
    (8.5 ms instead of 3.2 ms, measured)."""
    buffers = getattr(_scratch, "buffers", None)
    if buffers is None:
        buffers = _scratch.buffers = {}
    key = (name, np.dtype(dtype))
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = np.empty(max(size, _BLOCK), dtype=dtype)
    return buffer[:size]


def _usable(x, weight, groups):
    if groups != 1 or weight.dtype != x.dtype:
        return None
    return _compiled(x)


@NumpyBackend.override
def conv2d(backend, x, weight, bias, stride, padding, dilation, groups):
    kernels = _usable(x, weight, groups)
    if kernels is None:
        return NotImplemented
    n, c_in = x.shape[:2]
    c_out, kernel_size = weight.shape[0], tuple(weight.shape[2:])
    out_size = window_output_size(x.shape, kernel_size, stride, padding, dilation)
    rows, plane = c_in * kernel_size[0] * kernel_size[1], out_size[0] * out_size[1]
    y = np.empty((c_out, n) + tuple(out_size), dtype=x.dtype)
    w = weight.reshape(c_out, rows)
    flat = kernels.flat_major(x)
    shift = None if bias is None else bias.reshape(c_out, 1, 1, 1)

    def block(k, samples):
        size = rows * plane * (samples[1] - samples[0])
        cols = kernels.im2col(x, kernel_size, stride, padding, dilation, out_size, samples,
                              flat, out=_buffer("cols", size, x.dtype))
        out = y[:, samples[0]:samples[1]]
        np.matmul(w, cols.reshape(rows, -1), out=out.reshape(c_out, -1))
        if shift is not None:
            out += shift
    for k, samples in enumerate(_blocks(n, rows * plane)):
        block(k, samples)
    return y.transpose(1, 0, 2, 3), ("input", x, tuple(x.shape))


@NumpyBackend.override
def conv2d_backward(backend, grad, cache, weight, stride, padding, dilation, groups,
                    weight_grad=True, weight_grad_out=None, input_grad=True):
    kind, x, x_shape = cache
    kernels = _usable(grad, weight, groups)
    if kernels is None or kind != "input":
        return NotImplemented
    n, c_in, h, w_in = x_shape
    c_out, kernel_size = weight.shape[0], tuple(weight.shape[2:])
    out_size = tuple(grad.shape[2:])
    rows, plane = c_in * kernel_size[0] * kernel_size[1], out_size[0] * out_size[1]
    g = grad.transpose(1, 0, 2, 3)
    if not g.flags.c_contiguous:
        g = np.ascontiguousarray(g)
    w = weight.reshape(c_out, rows)
    blocks = _blocks(n, rows * plane)
    # The weight gradient: with few rows (``backends/jit/conv.py``) a compiled kernel adds
    # each block's product into it; otherwise one part per block, summed in block order
    # afterwards. Each part is the (rows, c_out) product cols @ g.T, transposed when
    # summed: OpenBLAS runs that orientation of the skinny GEMM faster than g @ cols.T
    # (the benchmark CNN's second conv, a block of 37 images: 0.21 instead of 0.39 ms
    # with two threads, 0.31 instead of 0.51 ms with one).
    products = _few_rows_kernel(rows, c_out) if weight_grad else None
    dweight = parts = None
    if weight_grad:
        dweight = (np.empty((c_out, rows), dtype=grad.dtype) if weight_grad_out is None
                   else weight_grad_out.reshape(c_out, rows))
        if products is not None:
            dweight[...] = 0
        else:
            parts = np.empty((len(blocks), rows, c_out), dtype=grad.dtype)
    dx = np.empty((c_in, n, h, w_in), dtype=grad.dtype) if input_grad else None
    flat = kernels.flat_major(x) if weight_grad else None
    g_flat = g.reshape(c_out, -1)

    def block(k, samples):
        start, stop = samples
        g_block = g_flat[:, start * plane:stop * plane]
        size = rows * plane * (stop - start)
        if weight_grad:
            cols = kernels.im2col(x, kernel_size, stride, padding, dilation, out_size,
                                  samples, flat, out=_buffer("cols", size, grad.dtype))
            if products is not None:
                products.add_weight_grad(cols.reshape(rows, -1), g_flat, start * plane,
                                         dweight)
            else:
                np.matmul(cols.reshape(rows, -1), g_block.T, out=parts[k])
        if input_grad:
            dcols = _buffer("dcols", size, grad.dtype).reshape(rows, -1)
            np.matmul(w.T, g_block, out=dcols)
            kernels.col2im(dcols, (stop - start, c_in, h, w_in), kernel_size, stride,
                           padding, dilation, out_size, into=dx, first=start, overwrite=True)
    for k, samples in enumerate(blocks):
        block(k, samples)
    if parts is not None:
        np.copyto(dweight, parts[0].T)
        for part in parts[1:]:
            dweight += part.T
    if weight_grad:
        dweight = weight_grad_out if weight_grad_out is not None else \
            dweight.reshape(weight.shape)
    return (None if dx is None else dx.transpose(1, 0, 2, 3)), dweight


# The weight-gradient kernel of ``backends/jit/conv.py`` (on one thread) against OpenBLAS,
# per block of 512K column values, float32, medians of 60 interleaved runs on the 2-core
# VM (two processes; with two threads BLAS sometimes stalls for milliseconds waiting for a
# core another process holds), ms:
#   rows x C_out    kernel   BLAS 1 thread   BLAS 2 threads
#      9 x 8        0.12     0.49-0.55       0.49-0.52   (the benchmark CNN's first conv)
#     27 x 16       0.18     0.37-0.45       0.36-7.6
#     27 x 64       0.99     1.55-1.63       0.99-2.0
#     36 x 64       0.97     1.35-1.50       2.0-260
#     72 x 16       0.17     0.26-0.31       0.20-0.27   (its second conv)
#     72 x 64       0.75     0.95-0.99       0.93-7.5
#      9 x 128      3.3      5.8-5.9         12-14
# It is used up to 36 rows and 64 channels, where it was 1.35-4.2x faster than BLAS on
# one thread and as fast or faster (0.93-4x) on two. Beyond, the gain shrinks on one
# thread and goes on two in quiet runs (72 x 16, 72 x 64: 0.98-1.02x; 9 x 128: 1.07x in
# an earlier sweep). The rule looks at the shape alone, so the result never depends on
# the thread count.
_FEW_ROWS, _FEW_CHANNELS = 36, 64


def _few_rows_kernel(rows: int, c_out: int):
    """``backends/jit/conv.py`` where its weight-gradient kernel beats BLAS, else None."""
    if rows > _FEW_ROWS or c_out > _FEW_CHANNELS:
        return None
    return jit.kernels("conv")
