"""CUDA kernels of the window operations (im2col, col2im, max pooling) for the CuPy backend.

Strings only, like ``cuda_kernels.py``; ``backends/cupy.py`` launches them.
"""
from __future__ import annotations

from .cuda_kernels import NUMERIC_HELPERS, ElementwiseSpec

# Geometry as in backends/layer_ops.py: x (N, C, H, W) unpadded; window (oh, ow) with kernel
# offset (ki, kj) reads padded row oh*s_h + ki*d_h, i.e. unpadded row that minus pad_t.
# One thread per output element, looping over the kh*kw offsets in the generic order, so
# sums come out in the same order as the generic code: deterministic, no atomics.
WINDOW_PARAMS = ("int32 batch, int32 channels, int32 height, int32 width, int32 out_h, "
                 "int32 out_w, int32 k_h, int32 k_w, int32 s_h, int32 s_w, int32 pad_t, "
                 "int32 pad_l, int32 d_h, int32 d_w")

_UNRAVEL_OUTPUT = (  # i over (batch, channels, out_h, out_w)
    "ptrdiff_t r = i;\n"
    "const int ow = r % out_w; r /= out_w;\n"
    "const int oh = r % out_h; r /= out_h;\n"
    "const int c = r % channels;\n"
    "const int n = r / channels;\n"
    "const ptrdiff_t plane = ((ptrdiff_t)n * channels + c) * height;\n")

# Visits the windows (oh, ow) that read unpadded position (h, w) at offset (ki, kj).
_FOR_WINDOWS_READING_HW = (
    "for (int ki = 0; ki < k_h; ++ki) {\n"
    "  const int th = h + pad_t - ki * d_h;\n"
    "  if (th < 0 || th % s_h != 0 || th / s_h >= out_h) continue;\n"
    "  const int oh = th / s_h;\n"
    "  for (int kj = 0; kj < k_w; ++kj) {\n"
    "    const int tw = w + pad_l - kj * d_w;\n"
    "    if (tw < 0 || tw % s_w != 0 || tw / s_w >= out_w) continue;\n"
    "    const int ow = tw / s_w;\n")
_UNRAVEL_INPUT = (  # i over (batch, channels, height, width)
    "ptrdiff_t r = i;\n"
    "const int w = r % width; r /= width;\n"
    "const int h = r % height; r /= height;\n"
    "const int c = r % channels;\n"
    "const int n = r / channels;\n")

IM2COL = ElementwiseSpec(  # cols (C, kh, kw, N, OH, OW)
    "raw T x, " + WINDOW_PARAMS, "T cols",
    "ptrdiff_t r = i;\n"
    "const int ow = r % out_w; r /= out_w;\n"
    "const int oh = r % out_h; r /= out_h;\n"
    "const int n = r % batch; r /= batch;\n"
    "const int kj = r % k_w; r /= k_w;\n"
    "const int ki = r % k_h;\n"
    "const int c = r / k_h;\n"
    "const int h = oh * s_h + ki * d_h - pad_t;\n"
    "const int w = ow * s_w + kj * d_w - pad_l;\n"
    "cols = (h >= 0 && h < height && w >= 0 && w < width)\n"
    "     ? x[(((ptrdiff_t)n * channels + c) * height + h) * width + w] : T(0);",
    "tn_im2col")

COL2IM = ElementwiseSpec(  # gathers into dx (N, C, H, W)
    "raw T cols, " + WINDOW_PARAMS, "T dx",
    _UNRAVEL_INPUT + "T sum = T(0);\n" + _FOR_WINDOWS_READING_HW +
    "    sum += cols[((((ptrdiff_t)c * k_h + ki) * k_w + kj) * batch + n) * out_h * out_w\n"
    "                + (ptrdiff_t)oh * out_w + ow];\n"
    "  }\n"
    "}\n"
    "dx = sum;",
    "tn_col2im")

# First maximum wins ties, a NaN wins (the last one, as the generic loop), padding is -inf
# but never wins: a window of -inf inputs picks its first input position, as PyTorch.
MAX_POOL = ElementwiseSpec(
    "raw T x, " + WINDOW_PARAMS, "T y, int32 argmax",
    _UNRAVEL_OUTPUT +
    "T best = tn_neg_inf<T>();\n"
    "int arg = -1;\n"
    "for (int ki = 0; ki < k_h; ++ki) {\n"
    "  const int h = oh * s_h + ki * d_h - pad_t;\n"
    "  for (int kj = 0; kj < k_w; ++kj) {\n"
    "    const int w = ow * s_w + kj * d_w - pad_l;\n"
    "    if (h < 0 || h >= height || w < 0 || w >= width) continue;\n"
    "    const T v = x[(plane + h) * width + w];\n"
    "    const int k = ki * k_w + kj;\n"
    "    if (arg < 0 || v > best || isnan(v)) { best = v; arg = k; }\n"
    "  }\n"
    "}\n"
    "y = best;\n"
    "argmax = arg < 0 ? 0 : arg;",
    "tn_max_pool", NUMERIC_HELPERS)

MAX_POOL_BACKWARD = ElementwiseSpec(  # gathers into dx (N, C, H, W)
    "raw T grad, raw int32 argmax, " + WINDOW_PARAMS, "T dx",
    _UNRAVEL_INPUT + "T sum = T(0);\n" + _FOR_WINDOWS_READING_HW +
    "    const ptrdiff_t o = (((ptrdiff_t)n * channels + c) * out_h + oh) * out_w + ow;\n"
    "    if (argmax[o] == ki * k_w + kj) sum += grad[o];\n"
    "  }\n"
    "}\n"
    "dx = sum;",
    "tn_max_pool_backward")

WINDOW_SPECS = (IM2COL, COL2IM, MAX_POOL, MAX_POOL_BACKWARD)
