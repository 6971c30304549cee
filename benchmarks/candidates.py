"""Issue 17's "candidates to measure, not to assume" that tensornet does not use, measured
at the benchmark models' shapes against what it does use.

    python -m benchmarks.candidates [--threads 2] [--reps 7]

- numexpr (``pip install numexpr``; skipped when it is missing): ReLU, BatchNorm's
  affine + ReLU and the SGD-momentum update, on 1 and ``--threads`` threads, against
  tensornet's one-pass numba kernels (one thread) and plain NumPy.
- Channels-last convolution: the three GEMMs of the benchmark CNN's second conv
  (8 -> 16 channels, 14x14, 3x3, batch 128) with the columns laid out (K, M) as tensornet's
  im2col makes them (K = C_in*3*3 = 72 rows, M = N*H*W = 25,088 columns) against the
  (M, K) rows a channels-last (NHWC) layout gives, whole batch, on 1 and ``--threads``
  threads. The im2col/col2im passes and the other layers' kernels are not in these figures:
  a channels-last network would also need BatchNorm and pooling kernels for that layout.

Printed: the minimum and median microseconds of ``--reps`` timings of each.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _timed(fn, reps: int, calls: int = 20) -> tuple:
    fn()
    runs = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / calls * 1e6)
    return min(runs), float(np.median(runs))


def numexpr_rows(threads: int, reps: int) -> list:
    try:
        import numexpr as ne
    except ImportError:
        return [("numexpr", "not installed (pip install numexpr)", None)]
    import tensornet as tn
    from tensornet.nn import functional as F
    rng = np.random.default_rng(0)
    zero, rows = np.float32(0), []
    x = rng.standard_normal((128, 8, 28, 28)).astype(np.float32)  # the CNN's first activation
    w = rng.random((1, 8, 1, 1)).astype(np.float32)
    b = (rng.random((1, 8, 1, 1)) - 0.5).astype(np.float32)
    out = np.empty_like(x)
    n = 242_762  # the MLP's parameters
    p, g, v = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    mom, lr = np.float32(0.9), np.float32(0.01)

    def sgd():
        ne.evaluate("mom * v + g", local_dict={"mom": mom, "v": v, "g": g}, out=v)
        ne.evaluate("p - lr * v", local_dict={"p": p, "lr": lr, "v": v}, out=p)
    for count in sorted({1, threads}):
        ne.set_num_threads(count)
        who = f"numexpr, {count} thread(s)"
        rows += [(who, "ReLU (128, 8, 28, 28)", _timed(lambda: ne.evaluate(
                     "where(x < z, z, x)", local_dict={"x": x, "z": zero}, out=out), reps)),
                 (who, "affine + ReLU (128, 8, 28, 28)", _timed(lambda: ne.evaluate(
                     "where(x * w + b < z, z, x * w + b)",
                     local_dict={"x": x, "w": w, "b": b, "z": zero}, out=out), reps)),
                 (who, "SGD momentum, 242,762 values", _timed(sgd, reps))]
    tn.set_num_threads(1)
    param = tn.nn.Parameter(p.copy())
    param.grad = g.copy()
    opt = tn.optim.SGD([param], lr=0.01, momentum=0.9)

    def affine_relu():
        y = x * w
        y += b
        np.maximum(y, 0, out=y)
    rows += [("tensornet (numba), 1 thread", "ReLU (128, 8, 28, 28)",
              _timed(lambda: F.relu(x), reps)),
             ("NumPy", "ReLU (128, 8, 28, 28)", _timed(lambda: np.maximum(x, 0, out=out), reps)),
             ("NumPy (3 passes)", "affine + ReLU (128, 8, 28, 28)", _timed(affine_relu, reps)),
             ("tensornet (numba), 1 thread", "SGD momentum, 242,762 values",
              _timed(opt.step, reps))]
    return rows


def conv_rows(threads: int, reps: int) -> list:
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    m, k, c = 128 * 14 * 14, 8 * 3 * 3, 16
    weight = rng.standard_normal((c, k)).astype(np.float32)
    cols = rng.standard_normal((k, m)).astype(np.float32)          # tensornet's (K, M)
    rows_ = np.ascontiguousarray(cols.T)                           # channels-last (M, K)
    g = rng.standard_normal((c, m)).astype(np.float32)             # grad (C, M)
    g_last = np.ascontiguousarray(g.T)                             # channels-last (M, C)
    y, y_last = np.empty((c, m), np.float32), np.empty((m, c), np.float32)
    dw, dw_last = np.empty((k, c), np.float32), np.empty((c, k), np.float32)
    dx, dx_last = np.empty((k, m), np.float32), np.empty((m, k), np.float32)
    table = []
    for count in sorted({1, threads}):
        with threadpool_limits(count):
            for layout, fwd, wgrad, dgrad in (
                    ("(K, M) columns", lambda: np.matmul(weight, cols, out=y),
                     lambda: np.matmul(cols, g.T, out=dw),
                     lambda: np.matmul(weight.T, g, out=dx)),
                    ("(M, K) channels-last rows", lambda: np.matmul(rows_, weight.T, out=y_last),
                     lambda: np.matmul(g_last.T, rows_, out=dw_last),
                     lambda: np.matmul(g_last, weight, out=dx_last))):
                for name, fn in (("forward GEMM", fwd), ("weight-gradient GEMM", wgrad),
                                 ("input-gradient GEMM", dgrad)):
                    table.append((f"{layout}, {count} thread(s)", name, _timed(fn, reps)))
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.candidates", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    for title, rows in (("numexpr against tensornet's kernels", numexpr_rows),
                        ("the second conv's GEMMs by column layout", conv_rows)):
        print(title)
        for who, what, timing in rows(args.threads, args.reps):
            figures = "" if timing is None else \
                f"min {timing[0]:9.1f} us, median {timing[1]:9.1f}"
            print(f"  {what:32s} {who:40s} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
