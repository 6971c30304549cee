"""The MLP's 11 products of a training step and nothing else (``benchmarks.mlp_cpu``'s
GEMM-only floor, batch 128, 784-256-120-64-10), with OpenBLAS's threaded work on
tensornet's spin pool ("pool") and on OpenBLAS's own threads ("own"), alternating in one
process: 8 rounds of 300 steps each. Run from the repository root:

    python benchmarks/results/issues-vm-2026-12-03-d/gemm_step_ab.py
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import tensornet as tn  # noqa: E402
from tensornet.backends import threads  # noqa: E402
from tensornet.backends.jit import spin  # noqa: E402
from benchmarks.common import MLP_SIZES, synthetic_mnist  # noqa: E402
from benchmarks.mlp_cpu import gemm_only_epoch  # noqa: E402

tn.set_num_threads(2)
hook = threads._pool_state[1]._hook
address = spin.blas_callback_address()
rng = np.random.default_rng(0)
weights = [rng.standard_normal((n_out, n_in), dtype=np.float32) * 0.05
           for n_in, n_out in zip(MLP_SIZES, MLP_SIZES[1:])]
x, _ = synthetic_mnist(128, 0)
x = np.ascontiguousarray(x.reshape(len(x), -1))


def steps(n=300):
    start = time.perf_counter()
    gemm_only_epoch(weights, x, [128] * n)
    return (time.perf_counter() - start) / n * 1e6


times = {"pool": [], "own": []}
for r in range(8):
    for mode in (("pool", "own") if r % 2 == 0 else ("own", "pool")):
        hook._setter(address if mode == "pool" else None)  # None: OpenBLAS's own threads
        time.sleep(0.3)
        steps(30)
        times[mode].append(steps())
hook._setter(address)
for mode, values in times.items():
    print(f"{mode:4s} median {np.median(values):7.1f} us a step   rounds: "
          + ", ".join(f"{v:.0f}" for v in values))
print(f"pool / own = {np.median(times['pool']) / np.median(times['own']):.3f}")
