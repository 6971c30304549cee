"""Experiment of this folder's README (not kept); run from the repository root:

    GRACE_US=3 python benchmarks/results/issues-vm-2026-12-03-c/gemm_shapes.py
"""
import os, sys, time, numpy as np
HERE = os.path.dirname(os.path.abspath(__file__)); sys.path[:0] = [HERE, os.path.join(HERE, "..", "..", "..")]
import tensornet as tn
from tensornet.backends import threads as T
import spin_pool as pool, split_gemm as gemm
tn.set_num_threads(2)
def bench(f, reps=300):
    f(); ts=[]
    for _ in range(reps):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return np.median(ts)*1e6
sizes = [784, 256, 120, 64, 10]
r = np.random.rand
for i in range(4):
    k, m = sizes[i], sizes[i+1]
    x = r(128, k).astype(np.float32); w = r(m, k).astype(np.float32); g = r(128, m).astype(np.float32)
    for name, a, b in (("fwd", x, w.T), ("dx", g, w), ("dW", g.T, x)):
        b2 = bench(lambda: np.matmul(a, b))
        for c in T._blas_controllers(): c.set_num_threads(1)
        b1 = bench(lambda: np.matmul(a, b))
        for c in T._blas_controllers(): c.set_num_threads(2)
        sp = bench(lambda: gemm.split_matmul(None, a, b))
        print("%d->%d %s %s: blas2 %.0f blas1 %.0f split %.0f us" % (k, m, name, a.shape + b.shape[1:], b2, b1, sp))
