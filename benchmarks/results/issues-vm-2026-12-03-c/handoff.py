"""Experiment of this folder's README (the spin pool, not kept); run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-c/handoff.py [cnn]
"""
import os, sys, time, numpy as np
HERE = os.path.dirname(os.path.abspath(__file__)); sys.path[:0] = [HERE, os.path.join(HERE, "..", "..", "..")]
import tensornet as tn
from tensornet.backends import jit
from numba import njit
import spin_pool as pool
@njit(nogil=True, fastmath=True)
def burn(a, reps):
    s = np.float32(0)
    for r in range(reps):
        for i in range(a.size):
            s += a[i] * a[i]
    return s
a = np.ones(4096, np.float32); burn(a, 1)
t=time.perf_counter(); burn(a, 1000); per = (time.perf_counter()-t)/1000
reps = int(250e-6 / per)
def bench(f, reps=400):
    f(); ts=[]
    for _ in range(reps):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return np.median(ts)*1e6, np.percentile(ts, 90)*1e6
old = jit.run_chunks
tn.set_num_threads(2)
work = lambda c: burn(a, reps)
print("serial 2 chunks: %.0f us (p90 %.0f)" % bench(lambda: (work(0), work(1))))
for name in ("old", "spin", "old", "spin"):
    if name == "spin": pool.install()
    else:
        import tensornet.backends.numpy as N; from tensornet.backends import threads as T
        T.run_chunks = N.run_chunks = jit.run_chunks = old
    print(name, "2 chunks: %.0f us (p90 %.0f)" % bench(lambda: jit.run_chunks(work, [0, 1])),
          " empty: %.1f us (p90 %.1f)" % bench(lambda: jit.run_chunks(lambda c: None, [0, 1])))
