"""The cuBLAS-free GEMM a CUDA-graph step multiplies with (CuPy refuses cuBLAS inside
graph capture): ``capture_safe_matmul``, a tiled RawKernel (``cuda_kernels.py``'s "gemm")
over broadcast batch dimensions, split along K when the tiles alone would not fill the GPU.
``CupyBackend.matmul`` calls it while ``cuda_graph.GraphedStep`` rehearses or captures.
"""
from __future__ import annotations

import numpy as np

from .base import dtype_name
from .cuda_kernels import (C_TYPES, FUSED_DTYPES, GEMM_SPLIT_K_SUM, GEMM_THREADS, GEMM_TILE_M,
                           GEMM_TILE_N, gemm_split_k)

GRID_YZ_LIMIT = 65535  # CUDA's largest gridDim.y and gridDim.z


def capture_safe_matmul(backend, a, b):
    """``a @ b`` by the tiled RawKernel GEMM (no cuBLAS, so it can be captured in a CUDA
    graph): operands of 2 or more dimensions whose leading (batch) dimensions broadcast as
    in ``matmul`` (AdaptiveAvgPool2d and Upsample multiply (OH, H) by (N, C, H, W)); any
    strides (transposed views need no copy; a batched operand that is no 3-D view is
    copied); float32 or float64, never TF32. Returns a C-contiguous array."""
    xp = backend.xp
    if a.ndim < 2 or b.ndim < 2:
        raise NotImplementedError(f"inside a CUDA-graph step matmul needs operands of 2 or "
                                  f"more dimensions, got {tuple(a.shape)} @ {tuple(b.shape)}")
    name = dtype_name(a.dtype)
    if a.dtype != b.dtype or name not in FUSED_DTYPES:
        raise TypeError(f"capture_safe_matmul needs two float32 or two float64 arrays, got "
                        f"{name} @ {dtype_name(b.dtype)}")
    (m, k), (k2, n) = a.shape[-2:], b.shape[-2:]
    try:
        batch_shape = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
    except ValueError:
        batch_shape = None
    if k != k2 or batch_shape is None:
        raise ValueError(f"matmul shapes {tuple(a.shape)} @ {tuple(b.shape)} do not fit")
    if b.ndim == 2 and a.ndim > 2 and a.size and k:  # one (prod(...) * M, K) @ (K, N)
        result = capture_safe_matmul(backend, xp.reshape(a, (-1, k)), b)
        return xp.reshape(result, batch_shape + (m, n))
    out = xp.empty(batch_shape + (m, n), dtype=a.dtype)
    if out.size == 0:
        return out
    if k == 0:
        out.fill(0)
        return out
    batch = int(np.prod(batch_shape, dtype=np.int64))
    a, b = (_as_batch(xp, x, batch_shape) for x in (a, b))
    tiles = -(-n // GEMM_TILE_N) * -(-m // GEMM_TILE_M)
    splits, chunk = gemm_split_k(tiles * batch, k)
    if -(-m // GEMM_TILE_M) > GRID_YZ_LIMIT:
        raise NotImplementedError(f"capture_safe_matmul: shape {tuple(out.shape)} exceeds "
                                  f"the kernel's grid")
    size = a.itemsize
    strides = [np.int64(s // size) for s in (*a.strides[-2:], *b.strides[-2:])]
    batch_strides = [np.int64(x.strides[0] // size if x.ndim == 3 else 0) for x in (a, b)]
    target = out if splits == 1 else xp.empty((batch * splits, m, n), dtype=a.dtype)
    kernel = backend._kernels.raw("gemm", C_TYPES[name])
    per_launch = max(1, GRID_YZ_LIMIT // splits)  # long batches take several launches
    for first in range(0, batch, per_launch):
        count = min(per_launch, batch - first)
        grid = (-(-n // GEMM_TILE_N), -(-m // GEMM_TILE_M), count * splits)
        operands = [x[first:first + count] if x.ndim == 3 else x for x in (a, b)]
        part = xp.reshape(target, (-1, m, n))[first * splits:(first + count) * splits]
        kernel(grid, (GEMM_THREADS,),
               (*operands, part, np.int32(m), np.int32(n), np.int32(k), *strides,
                *batch_strides, np.int32(splits), np.int64(chunk)))
    if splits > 1:
        backend._kernels.elementwise(GEMM_SPLIT_K_SUM)(target, np.int32(splits),
                                                       np.int64(m * n), out)
    return out


def _as_batch(xp, x, batch_shape):
    """``x`` as the GEMM kernel takes it: a 2-D matrix (the same for every batch entry:
    batch stride 0) or a (batch, rows, cols) array."""
    if x.ndim == 2:
        return x
    if x.ndim == 3 and tuple(x.shape[:1]) == batch_shape:
        return x
    return xp.reshape(xp.broadcast_to(x, batch_shape + tuple(x.shape[-2:])),
                      (-1,) + tuple(x.shape[-2:]))
