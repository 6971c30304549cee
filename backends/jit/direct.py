"""numba kernels of the direct 3x3 convolution (stride 1, dilation 1) that
``backends/numpy_conv.py`` runs for few channels instead of im2col + BLAS: forward, input
gradient (the same kernel on the padded gradient, with the kernel flipped) and weight
gradient.

Layout: every (channel, sample) plane is copied once into a zero-padded plane of
``hp x wp`` values (``pad``), stored channel-major and flat, (C, N*hp*wp + slack). On the
flattened padded plane, output position ``p = oy*wp + ox`` of a 3x3 correlation reads the
nine inputs ``p + i*wp + j``: one shifted contiguous run per tap, so the loops over ``p``
vectorise with plain loads (the columns ``ox >= OW`` of that grid are junk and dropped).

- Forward (``forward``): for each sample and each 4 output channels, the 36 taps of one
  input channel are applied in one pass over the plane, adding into 4 accumulator rows in
  L1 (9 loads feed 36 multiply-adds); input channels are added in order, then the valid
  columns plus the bias are stored. One task is one sample.
- Weight gradient (``weight_grad``): dW[co, ci, i, j] is the dot product of the gradient
  (placed at the origin of the same padded grid, zeros elsewhere) with the input shifted by
  ``i*wp + j``, over all samples at once. A task is 2 output channels x 1 input channel:
  18 sums kept in registers over a chunk of ``_CHUNK`` positions, each chunk's vectorised
  sum added to the output in chunk order.

Each output value is computed by one task in an order fixed by the shapes, so results do
not depend on how ``run_tasks`` splits the tasks over threads. One difference from im2col
remains for non-finite inputs: the weight gradient also multiplies the zeros of the
gradient's junk columns with the inputs beside them, so an inf in the input's last columns
or rows (0 * inf = nan) can make taps nan that im2col leaves finite. With finite inputs the
junk terms add exact zeros.

Measured on the 2-core Zen 4 VM against the im2col path: figures and the rule that picks
these kernels in ``backends/numpy_conv.py``.

Indices: numba checks signed indices for negative wrap-around, which turns shifted loads
into gathers; every shifted run is therefore a slice, indexed from 0 by the loop counter.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
_FMA = dict(_OPTIONS, fastmath={"contract"})
_SUMS = dict(_OPTIONS, fastmath={"reassoc", "contract"})

# Positions per sweep of the weight-gradient tasks: the chunk of every channel stays in
# cache while all tasks use it.
_CHUNK = 4096


def slack(wp: int) -> int:
    """Zeros after the last padded plane: the weight gradient's largest shift."""
    return 2 * wp + 2


# ---------------------------------------------------------------------- padding
@njit(**_OPTIONS)
def pad(src, channel_major, dst, hp, wp, top, left, lo, hi):
    """Planes [lo, hi) of dst (C, N*hp*wp + slack), task = c*N + n: zeros with the (n, c)
    plane of src at (top, left). src is (N, C, H, W), or its (C, N, H, W) transpose when
    ``channel_major``; its planes need not fit (rows and columns past hp, wp are cut)."""
    if channel_major:
        c_in, n_in = src.shape[0], src.shape[1]
    else:
        n_in, c_in = src.shape[0], src.shape[1]
    h, w = src.shape[2], src.shape[3]
    plane = hp * wp
    rows = min(h, hp - top)
    width = min(w, wp - left)
    for task in range(lo, hi):
        c, n = task // n_in, task % n_in
        out = dst[c, n * plane:(n + 1) * plane]
        out[:] = 0
        source = src[c, n] if channel_major else src[n, c]
        for r in range(rows):
            row = out[(top + r) * wp + left:]
            line = source[r]
            for q in range(width):
                row[q] = line[q]
        if n == n_in - 1:
            tail = dst[c, n_in * plane:]
            tail[:] = 0


# ---------------------------------------------------------------------- forward
@njit(inline="always", **_FMA)
def _taps(x, a0, a1, a2, a3, w0, w1, w2, w3, wp, size):
    """a_k[p] += sum over the 9 taps t of w_k[t] * x[p + shift_t], p in [0, size)."""
    b0, b1, b2, b3, b4, b5, b6, b7, b8 = w0[0], w0[1], w0[2], w0[3], w0[4], w0[5], w0[6], \
        w0[7], w0[8]
    c0, c1, c2, c3, c4, c5, c6, c7, c8 = w1[0], w1[1], w1[2], w1[3], w1[4], w1[5], w1[6], \
        w1[7], w1[8]
    d0, d1, d2, d3, d4, d5, d6, d7, d8 = w2[0], w2[1], w2[2], w2[3], w2[4], w2[5], w2[6], \
        w2[7], w2[8]
    e0, e1, e2, e3, e4, e5, e6, e7, e8 = w3[0], w3[1], w3[2], w3[3], w3[4], w3[5], w3[6], \
        w3[7], w3[8]
    y1 = x[wp:]
    y2 = x[2 * wp:]
    for p in range(size):
        q0, q1, q2 = x[p], x[p + 1], x[p + 2]
        q3, q4, q5 = y1[p], y1[p + 1], y1[p + 2]
        q6, q7, q8 = y2[p], y2[p + 1], y2[p + 2]
        a0[p] = (a0[p] + b0 * q0 + b1 * q1 + b2 * q2 + b3 * q3 + b4 * q4 + b5 * q5
                 + b6 * q6 + b7 * q7 + b8 * q8)
        a1[p] = (a1[p] + c0 * q0 + c1 * q1 + c2 * q2 + c3 * q3 + c4 * q4 + c5 * q5
                 + c6 * q6 + c7 * q7 + c8 * q8)
        a2[p] = (a2[p] + d0 * q0 + d1 * q1 + d2 * q2 + d3 * q3 + d4 * q4 + d5 * q5
                 + d6 * q6 + d7 * q7 + d8 * q8)
        a3[p] = (a3[p] + e0 * q0 + e1 * q1 + e2 * q2 + e3 * q3 + e4 * q4 + e5 * q5
                 + e6 * q6 + e7 * q7 + e8 * q8)


@njit(**_FMA)
def forward(xe, hp, wp, weights, bias, y, lo, hi):
    """y[co, n] = bias[co] + sum over ci, taps of weights[co, ci, t] * (padded input),
    for the samples n in [lo, hi). xe: ``pad``'s (C_in, ...) buffer of hp x wp planes;
    weights (C_out, C_in, 9); y (C_out, N, hp - 2, wp - 2)."""
    c_out, c_in = weights.shape[0], weights.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    plane, size = hp * wp, oh * wp
    acc = np.empty((4, size), dtype=y.dtype)
    for n in range(lo, hi):
        start = n * plane
        for co in range(0, c_out, 4):
            k1, k2, k3 = min(co + 1, c_out - 1), min(co + 2, c_out - 1), min(co + 3, c_out - 1)
            a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
            acc[:] = 0
            for ci in range(c_in):
                _taps(xe[ci, start:], a0, a1, a2, a3, weights[co, ci], weights[k1, ci],
                      weights[k2, ci], weights[k3, ci], wp, size)
            for k in range(min(4, c_out - co)):
                b, a = bias[co + k], acc[k]
                out = y[co + k, n]
                for r in range(oh):
                    row, line = out[r], a[r * wp:]
                    for q in range(ow):
                        row[q] = line[q] + b


# ---------------------------------------------------------------------- weight gradient
@njit(inline="always", **_SUMS)
def _tile(x, g0, g1, first, count, wp, zero, o0, o1, second):
    """o0[t] += sum_k g0[k] x[first + k + shift_t] (and o1 with g1 when ``second``), for k
    in [0, count)."""
    x0 = x[first:]
    x1 = x[first + wp:]
    x2 = x[first + 2 * wp:]
    h0 = g0[:count]
    h1 = g1[:count]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = zero
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = zero
    for k in range(count):
        a, b = h0[k], h1[k]
        q0, q1, q2 = x0[k], x0[k + 1], x0[k + 2]
        q3, q4, q5 = x1[k], x1[k + 1], x1[k + 2]
        q6, q7, q8 = x2[k], x2[k + 1], x2[k + 2]
        s0 += a * q0
        s1 += a * q1
        s2 += a * q2
        s3 += a * q3
        s4 += a * q4
        s5 += a * q5
        s6 += a * q6
        s7 += a * q7
        s8 += a * q8
        t0 += b * q0
        t1 += b * q1
        t2 += b * q2
        t3 += b * q3
        t4 += b * q4
        t5 += b * q5
        t6 += b * q6
        t7 += b * q7
        t8 += b * q8
    sums = (s0, s1, s2, s3, s4, s5, s6, s7, s8)
    for t in range(9):
        o0[t] += sums[t]
    if second:
        sums = (t0, t1, t2, t3, t4, t5, t6, t7, t8)
        for t in range(9):
            o1[t] += sums[t]


@njit(**_SUMS)
def weight_grad(xe, ge, g_first, size, wp, out, zero, lo, hi):
    """out[co, ci, t] += the weight gradient, for the tasks [lo, hi) (task = (co // 2) *
    C_in + ci). xe: ``pad``'s input buffer; ge: ``pad``'s buffer of the gradient's planes
    whose element ``g_first`` is the origin of the input's grid (zeros wherever the grid
    has no output: 0 for planes padded at the origin; wp + 1 for planes padded by one on
    every side, which the input gradient uses too); size: N*hp*wp; out (C_out, C_in, 9)."""
    c_in, c_out = xe.shape[0], ge.shape[0]
    for first in range(0, size, _CHUNK):
        count = min(size - first, _CHUNK)
        for task in range(lo, hi):
            pair, ci = task // c_in, task % c_in
            c0 = 2 * pair
            c1 = min(c0 + 1, c_out - 1)
            start = g_first + first
            _tile(xe[ci], ge[c0, start:], ge[c1, start:], first, count, wp, zero, out[c0, ci],
                  out[c1, ci], c1 != c0)

