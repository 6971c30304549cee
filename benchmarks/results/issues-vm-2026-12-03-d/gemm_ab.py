"""Single products at the benchmark models' shapes, and the CPU the process uses in the
0.2 s after them. Run from the repository root, once per mode:

    python benchmarks/results/issues-vm-2026-12-03-d/gemm_ab.py pool  # tn.set_num_threads(2)
    TENSORNET_BLAS_POOL=0 python benchmarks/results/issues-vm-2026-12-03-d/gemm_ab.py own
    python benchmarks/results/issues-vm-2026-12-03-d/gemm_ab.py one   # OpenBLAS on 1 thread

"pool": OpenBLAS's threaded work on tensornet's spin pool; "own": OpenBLAS's own threads.
Each figure is the median of 7 rounds of 200 products, in us.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import tensornet as tn  # noqa: E402
from tensornet.backends import threads  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

mode = sys.argv[1]
shapes = {"784->256 fwd": ((128, 784), (784, 256)), "784->256 dx": ((128, 256), (256, 784)),
          "784->256 dw": ((784, 128), (128, 256)), "256->120 fwd": ((128, 256), (256, 120)),
          "120->64 fwd": ((128, 120), (120, 64)), "conv-like": ((8192, 72), (72, 16)),
          "sq512": ((512, 512), (512, 512))}
if mode == "one":
    threadpool_limits(1)
else:
    tn.set_num_threads(2)
    assert bool(threads._hooks) == (mode == "pool"), "TENSORNET_BLAS_POOL=0 is for 'own'"
rng = np.random.default_rng(0)
results = {}
for name, (shape_a, shape_b) in shapes.items():
    a = rng.standard_normal(shape_a, dtype=np.float32)
    b = rng.standard_normal(shape_b, dtype=np.float32)
    out = np.empty((shape_a[0], shape_b[1]), np.float32)
    for _ in range(50):
        np.matmul(a, b, out=out)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(200):
            np.matmul(a, b, out=out)
        times.append((time.perf_counter() - start) / 200 * 1e6)
    results[name] = sorted(times)[3]
start = time.process_time()
time.sleep(0.2)
idle = time.process_time() - start
print(f"{mode:4s} " + "  ".join(f"{k} {v:.1f}" for k, v in results.items())
      + f"  | process CPU in the 0.2 s after: {idle:.3f} s")
