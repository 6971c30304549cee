"""The split product of this folder's README (an experiment, not kept): the rows of a @ b
(or its columns, for few rows) over the spin pool, each piece on one BLAS thread."""
import os
import numpy as np
import tensornet.backends.numpy as NB
from tensornet.backends import threads as T
import spin_pool as pool
MIN_FLOPS = 1 << 21
def _blas():
    return T._blas_controllers()
def split_matmul(backend, a, b, out=None):
    n = T.num_threads()
    if n < 2 or a.ndim != 2 or b.ndim != 2 or a.shape[0] * a.shape[1] * b.shape[1] < MIN_FLOPS:
        return np.matmul(a, b, out=out)
    m, k = a.shape; cols = b.shape[1]
    if out is None:
        out = np.empty((m, cols), dtype=np.result_type(a, b))
    if m >= 2 * 8 and not os.environ.get("NSPLIT"):  # NSPLIT=1: always split the columns
        edges = [m * i // n for i in range(n + 1)]
        def piece(i): np.matmul(a[edges[i]:edges[i + 1]], b, out=out[edges[i]:edges[i + 1]])
    else:
        edges = [cols * i // n for i in range(n + 1)]
        def piece(i): np.matmul(a, b[:, edges[i]:edges[i + 1]], out=out[:, edges[i]:edges[i + 1]])
    ctl = _blas()
    for c in ctl: c.set_num_threads(1)
    try:
        pool.run_chunks(piece, list(range(n)))
    finally:
        for c in ctl: c.set_num_threads(n)
    return out
ORIGINAL = NB.NumpyBackend.kernels["matmul"]
def install(on):
    NB.NumpyBackend.kernels["matmul"] = split_matmul if on else ORIGINAL
