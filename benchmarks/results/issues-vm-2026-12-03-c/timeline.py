"""Experiment of this folder's README (the spin pool, not kept); run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-c/timeline.py [cnn]
"""
import os, sys, time, numpy as np
HERE = os.path.dirname(os.path.abspath(__file__)); sys.path[:0] = [HERE, os.path.join(HERE, "..", "..", "..")]
import tensornet as tn
from tensornet.backends import jit
import spin_pool as pool, spin_atomics as atom
pool.install(); pool.S = S = np.zeros(16, np.int64)
tn.set_num_threads(2)
atom.stamp(S, 0); atom.stamp_gil(S, 0)
def work(c):
    atom.stamp_gil(S, 2 + c)
def one():
    atom.stamp_gil(S, 0)
    jit.run_chunks(work, [0, 1])
    atom.stamp_gil(S, 1)
    return S.copy()
t=time.perf_counter(); a0=atom.rdtsc_py() if hasattr(atom,'rdtsc_py') else None
rows = np.array([one() for _ in range(2000)])
# cycles -> us: calibrate
atom.stamp(S, 10); time.sleep(0.1); atom.stamp(S, 11); hz = (S[11]-S[10])/0.1
r = (rows[:, :8] - rows[:, :1]) / hz * 1e6
print(np.round(np.median(r,axis=0),1), "[start end mainchunk workerchunk mainafterchunk mainafterwait workergotgil workersawGO]")
print("median us: end %.1f  main-chunk %.1f  worker-chunk %.1f" % tuple(np.median(r[:, 1:4], axis=0)))
