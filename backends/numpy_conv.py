"""The NumPy backend's convolution: Conv2d's forward and backward a block of images at a
time (with the numba im2col / col2im of ``backends/jit/windows.py``), or, for a 3x3
stride-1 convolution of few channels, the direct kernels of ``backends/jit/direct.py``.

The generic version unfolds the whole batch into columns (C_in*kh*kw x N*OH*OW values, 7 MB
for the benchmark CNN's second layer), multiplies, and keeps the columns until backward.
Here each block of images is unfolded into a buffer that stays in the core's cache
(``_BLOCK`` elements), multiplied straight into its slice of the output, and dropped:
backward unfolds the block again from the input it keeps instead. The weight gradient sums
the blocks' products in block order (a fixed split of the batch: results do not depend on
the thread count); for few rows (C_in*kh*kw) and channels a compiled kernel
(``backends/jit/conv.py``) computes them instead of BLAS. The direct kernels (rule and
figures at ``_direct_kernels``) keep only the input too. Groups, and NumPy without numba,
use the generic version.
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
    direct = _direct_kernels(x.shape, weight, stride, padding, dilation)
    if direct is not None:
        return _direct_forward(direct, x, weight, bias, padding), ("input", x, tuple(x.shape))
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
    direct = _direct_kernels(x_shape, weight, stride, padding, dilation)
    if direct is not None:
        # Parts the direct kernels measured slower at stay with the blocks below: the
        # weight gradient of few rows (C_in <= 4: the few-rows kernel), and the input
        # gradient of fewer than 4 input channels (a tile of the forward kernel computes 4).
        c_in = x_shape[1]
        direct_dw = weight_grad and not _few_rows_kernel(c_in * 9, weight.shape[0])
        direct_dx = input_grad and c_in >= _DIRECT_DX_MIN
        dx, dweight = _direct_backward(direct, grad, x, weight, padding, direct_dw,
                                       weight_grad_out, direct_dx)
        rest_dw, rest_dx = weight_grad and not direct_dw, input_grad and not direct_dx
        if rest_dw or rest_dx:
            other_dx, other_dw = _blocked_backward(kernels, grad, x, x_shape, weight, stride,
                                                   padding, dilation, rest_dw,
                                                   weight_grad_out, rest_dx)
            dx = other_dx if rest_dx else dx
            dweight = other_dw if rest_dw else dweight
        return dx, dweight
    return _blocked_backward(kernels, grad, x, x_shape, weight, stride, padding, dilation,
                             weight_grad, weight_grad_out, input_grad)


def _weight_grad_target(weight_grad_out, weight, dtype, shape):
    """(dweight, target): the weight gradient to return (``weight_grad_out`` when given:
    an optimizer's flat gradient view) and a C-contiguous ``shape`` view of its memory for
    the kernels to write. A ``weight_grad_out`` that is not C-contiguous gets a scratch
    target instead, which ``_store_weight_grad`` copies in: a reshape of it could be a
    silent copy, and the kernels' writes would be lost."""
    dweight = np.empty(weight.shape, dtype=dtype) if weight_grad_out is None \
        else weight_grad_out
    memory = dweight if dweight.flags.c_contiguous else np.empty(dweight.shape, dtype=dtype)
    return dweight, memory.reshape(shape)


def _store_weight_grad(dweight, target):
    """Copy ``_weight_grad_target``'s scratch into ``dweight`` when it needed one."""
    if not dweight.flags.c_contiguous:
        dweight[...] = target.reshape(dweight.shape)


def _blocked_backward(kernels, grad, x, x_shape, weight, stride, padding, dilation,
                      weight_grad, weight_grad_out, input_grad):
    """The im2col path's backward, a block of images at a time."""
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
    dweight = target = parts = None
    if weight_grad:
        dweight, target = _weight_grad_target(weight_grad_out, weight, grad.dtype,
                                              (c_out, rows))
        if products is not None:
            target[...] = 0
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
                                         target)
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
        np.copyto(target, parts[0].T)
        for part in parts[1:]:
            target += part.T
    if weight_grad:
        _store_weight_grad(dweight, target)
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


# ---------------------------------------------------------------------- direct 3x3
# For few channels, a 3x3 stride-1 convolution runs as the direct kernels of
# ``backends/jit/direct.py`` instead of im2col + BLAS: no columns are written, no BLAS call
# is made, and the input gradient is the same kernel on the padded gradient. Measured on
# the 2-core Zen 4 VM, every part on the direct kernels (batch 128, float32, 1 thread,
# medians of 40 interleaved calls; ms, direct / im2col path;
# ``benchmarks/results/issues-vm-2026-12-03-b/direct-parts-forced.txt``):
#   layer (C_in -> C_out, image)   forward        weight grad    input grad
#   1 -> 8, 28x28                  0.40 / 0.61    0.65 / 0.54    1.66 / 1.08
#   8 -> 16, 14x14                 1.44 / 1.64    1.64 / 2.05    1.21 / 1.26
#   8 -> 8, 28x28                  2.81 / 4.38    3.03 / 5.19    2.43 / 3.90
#   16 -> 16, 14x14                3.09 / 3.49    2.87 / 3.59    2.51 / 2.72
#   16 -> 32, 14x14                5.77 / 5.18    4.70 / 4.51    5.73 / 5.08
#   32 -> 32, 14x14                10.7 / 8.77    9.47 / 8.99    10.5 / 9.24
# So: up to 16 channels each way; the weight gradient of C_in <= 4 stays with the few-rows
# kernel and the input gradient of C_in < 4 with im2col (both faster there). With two
# threads the ratios spread over 0.65-1.76: the direct kernels split over tensornet's pool,
# whose second thread competes with OpenBLAS's idle workers spinning on the other core after
# every BLAS call, while the im2col path's GEMMs run on OpenBLAS's own threads. Whole
# epochs of the benchmark CNN (``python -m benchmarks.cnn_cpu``, against the same run with
# this path off): with one thread 0.55x PyTorch against 0.63x; with two, 0.88x against
# 0.74x, where the epochs paired with PyTorch's give 0.91x against 0.90x (PyTorch itself
# ran 1.5x slower in the second run: the VM's speed drifts).
_DIRECT_IN, _DIRECT_OUT, _DIRECT_DX_MIN = 16, 16, 4


def _direct_kernels(x_shape, weight, stride, padding, dilation):
    """``backends/jit/direct.py`` when the direct kernels run this convolution, else None:
    3x3, stride 1, dilation 1, padding at most 2 a side (the input gradient pads the
    gradient by 2 - padding), at most ``_DIRECT_IN`` / ``_DIRECT_OUT`` channels."""
    if tuple(weight.shape[2:]) != (3, 3) or tuple(stride) != (1, 1) \
            or tuple(dilation) != (1, 1):
        return None
    (top, bottom), (left, right) = padding
    if not 0 <= min(top, bottom, left, right) <= max(top, bottom, left, right) <= 2:
        return None
    if x_shape[2] + top + bottom < 3 or x_shape[3] + left + right < 3:
        return None
    if weight.shape[1] > _DIRECT_IN or weight.shape[0] > _DIRECT_OUT:
        return None
    return jit.kernels("direct")


def _padded(direct, name, a, top, left, hp, wp):
    """``a`` (N, C, H, W) as ``direct.pad``'s channel-major buffer of zero-padded
    hp x wp planes, in the per-thread scratch ``name``."""
    n, c = a.shape[:2]
    src, channel_major = jit.kernels("windows").memory_major(a)
    if not src.flags.c_contiguous:
        src, channel_major = np.ascontiguousarray(a), False
    width = n * hp * wp + direct.slack(wp)
    dst = _buffer(name, c * width, a.dtype).reshape(c, width)
    jit.run_tasks(direct.pad, c * n, dst.size, src, channel_major, dst, hp, wp, top, left)
    return dst


def _direct_forward(direct, x, weight, bias, padding):
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    (top, bottom), (left, right) = padding
    hp, wp = h + top + bottom, w + left + right
    xe = _padded(direct, "padded", x, top, left, hp, wp)
    y = np.empty((c_out, n, hp - 2, wp - 2), dtype=x.dtype)
    taps = np.ascontiguousarray(weight).reshape(c_out, c_in, 9)
    shift = np.zeros(c_out, dtype=x.dtype) if bias is None else bias
    jit.run_tasks(direct.forward, n, y.size * c_in * 9, xe, hp, wp, taps, shift, y)
    return y.transpose(1, 0, 2, 3)


def _direct_backward(direct, grad, x, weight, padding, weight_grad, weight_grad_out,
                     input_grad):
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    (top, bottom), (left, right) = padding
    hp, wp = h + top + bottom, w + left + right
    work = grad.size * c_in * 9
    dweight = dx = None
    # The input gradient pads the gradient by 2 - padding on (h + 2, w + 2) planes. With
    # padding 1 on every side that is the input's grid, and the weight gradient reads the
    # same buffer from its element wp + 1 on: one pass over the gradient instead of two.
    gp = None
    if input_grad:
        gp = _padded(direct, "padded grad in", grad, 2 - top, 2 - left, h + 2, w + 2)
    if weight_grad:
        xe = _padded(direct, "padded", x, top, left, hp, wp)
        if gp is not None and top == bottom == left == right == 1:
            ge, g_first = gp, wp + 1
        else:
            ge, g_first = _padded(direct, "padded grad", grad, 0, 0, hp, wp), 0
        dweight, out = _weight_grad_target(weight_grad_out, weight, grad.dtype,
                                           (c_out, c_in, 9))
        out[...] = 0
        jit.run_tasks(direct.weight_grad, (c_out + 1) // 2 * c_in, work, xe, ge, g_first,
                      n * hp * wp, wp, out, grad.dtype.type(0))
        _store_weight_grad(dweight, out)
    if input_grad:
        # dx is the correlation of the padded gradient with the kernel flipped and its
        # channel axes swapped: the forward kernel on (h + 2, w + 2) planes.
        flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
        dx = np.empty((c_in, n, h, w), dtype=grad.dtype)
        jit.run_tasks(direct.forward, n, work, gp, h + 2, w + 2,
                      flipped.reshape(c_in, c_out, 9), np.zeros(c_in, dtype=grad.dtype), dx)
        dx = dx.transpose(1, 0, 2, 3)
    return dx, dweight
