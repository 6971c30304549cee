"""Where the MLP's training step goes: the README loop (DataLoader, Sequential, loss, SGD
momentum; batch 128, 60,000 synthetic samples) timed phase by phase. Each phase's figure is
the median over every step of 3 epochs (469 steps each), after one warm-up epoch. Run from
the repository root:

    python benchmarks/results/issues-vm-2026-12-03-d/mlp_phases.py [THREADS]
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import tensornet as tn  # noqa: E402
from benchmarks.common import readme_mlp_training  # noqa: E402

PHASES = ["load", "zero", "fwd", "loss", "lossbwd", "bwd", "step"]


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    tn.set_num_threads(threads)
    print(f"{threads} thread(s)")
    model, opt, loss_fn, loader = readme_mlp_training()
    times = {name: [] for name in PHASES}

    def epoch(record):
        batches = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                xb, yb = next(batches)
            except StopIteration:
                return
            t1 = time.perf_counter()
            opt.zero_grad()
            t2 = time.perf_counter()
            out = model(xb)
            t3 = time.perf_counter()
            loss_fn(out, yb)
            t4 = time.perf_counter()
            grad = loss_fn.backward()
            t5 = time.perf_counter()
            model.backward(grad, input_grad=False)
            t6 = time.perf_counter()
            opt.step()
            t7 = time.perf_counter()
            if record:
                stamps = (t0, t1, t2, t3, t4, t5, t6, t7)
                for name, start, end in zip(PHASES, stamps, stamps[1:]):
                    times[name].append(end - start)

    epoch(False)
    for _ in range(3):
        epoch(True)
    total = 0.0
    for name in PHASES:
        median = np.median(times[name]) * 1e6
        total += median
        print(f"{name:8s} {median:8.1f} us  mean {np.mean(times[name]) * 1e6:8.1f}")
    print(f"sum of medians {total:.1f} us; steps/epoch {len(loader)}")


if __name__ == "__main__":
    main()
