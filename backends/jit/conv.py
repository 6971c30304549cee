"""numba kernel of Conv2d's weight gradient when the columns have few rows: the product
g @ cols.T of ``backends/numpy_conv.py``'s backward, where it beats BLAS (the rule and
the figures are there).

There that product is a skinny GEMM, (rows x K) @ (K x C_out) with K = samples*OH*OW in
the tens of thousands; OpenBLAS runs it at a fraction of its speed (the benchmark CNN's
first conv, 9 x 58K @ 58K x 8 per block: 0.5-0.6 ms on one thread or two). Here a tile of
4 rows x 4 output channels keeps its 16 sums in registers over a contiguous run of K, which
LLVM vectorises (``reassoc``): 0.12 ms.

The kernel runs on one thread: splitting a block's ~0.1-1 ms over two threads was slower
on the VM (waking a pool thread costs as much as it saves), and staying on one thread
keeps the result independent of the thread count without partial sums. Each sum runs
over K in chunks of ``_CHUNK`` columns, adding each chunk's vectorised sum to the output
in order, so the order of the additions is fixed by the shapes alone.
"""
from __future__ import annotations

from numba import njit

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
_PRODUCTS = dict(_OPTIONS, fastmath={"reassoc", "contract"})

# Columns per sweep of the tiles: the chunk of every row and channel stays in cache
# while all tiles use it (4096 measured as fast as 1024-8192 on the shapes above).
_CHUNK = 4096


@njit(inline="always", **_PRODUCTS)
def _tile(cols, g, first, out, r, c, k0, k1, zero):
    """out[c:c+4, r:r+4] += (cols[r:r+4, k0:k1] @ g[c:c+4, first+k0:first+k1].T).T;
    past the last row or channel the tile repeats it and drops the sums."""
    rows, c_out = cols.shape[0], g.shape[0]
    a0, a1 = cols[min(r, rows - 1), k0:k1], cols[min(r + 1, rows - 1), k0:k1]
    a2, a3 = cols[min(r + 2, rows - 1), k0:k1], cols[min(r + 3, rows - 1), k0:k1]
    g0, g1 = first + k0, first + k1
    b0, b1 = g[min(c, c_out - 1), g0:g1], g[min(c + 1, c_out - 1), g0:g1]
    b2, b3 = g[min(c + 2, c_out - 1), g0:g1], g[min(c + 3, c_out - 1), g0:g1]
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for k in range(k1 - k0):
        x0, x1, x2, x3 = a0[k], a1[k], a2[k], a3[k]
        y0, y1, y2, y3 = b0[k], b1[k], b2[k], b3[k]
        s00 += x0 * y0
        s01 += x0 * y1
        s02 += x0 * y2
        s03 += x0 * y3
        s10 += x1 * y0
        s11 += x1 * y1
        s12 += x1 * y2
        s13 += x1 * y3
        s20 += x2 * y0
        s21 += x2 * y1
        s22 += x2 * y2
        s23 += x2 * y3
        s30 += x3 * y0
        s31 += x3 * y1
        s32 += x3 * y2
        s33 += x3 * y3
    sums = ((s00, s01, s02, s03), (s10, s11, s12, s13), (s20, s21, s22, s23),
            (s30, s31, s32, s33))
    for i in range(4):
        if r + i < rows:
            row = sums[i]
            for j in range(4):
                if c + j < c_out:
                    out[c + j, r + i] += row[j]


@njit(**_PRODUCTS)
def _add_weight_grad(cols, g, first, out, zero):
    rows, size = cols.shape
    c_out = g.shape[0]
    for k0 in range(0, size, _CHUNK):
        k1 = min(size, k0 + _CHUNK)
        for r in range(0, rows, 4):
            for c in range(0, c_out, 4):
                _tile(cols, g, first, out, r, c, k0, k1, zero)


def add_weight_grad(cols, g, first, out):
    """out (C_out, rows) += g[:, first:first+K] @ cols.T, for cols (rows, K) and g
    (C_out, >= first+K), both C-contiguous; out in the same dtype."""
    _add_weight_grad(cols, g, first, out, out.dtype.type(0))
