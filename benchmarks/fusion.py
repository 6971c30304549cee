"""What Sequential's fusions (Linear + ReLU, BatchNorm + ReLU) save on a training step,
measured in interleaved blocks (on this shared VM whole epochs vary by +-10%, more than
the effect).

    python -m benchmarks.fusion [--model mlp|cnn] [--threads N] [--pairs 80] [--block 20]

One model, optimizer and DataLoader train on: the MLP benchmark's (784-256-120-64-10, SGD
momentum; its Linear + ReLU pairs are fused) or the CNN benchmark's (two conv-BN-ReLU-pool
blocks, Adam; its BatchNorm + ReLU pairs and the Linear + ReLU are fused), batch 128,
shuffled synthetic MNIST-shaped samples, float32. Every pair of
blocks runs ``--block`` steps with the fusion on and as many with it off
(``tensornet.nn.fusion.disabled()``), alternating which goes first. Both paths compute the
same bits, so the training itself is one run. Printed: the median microseconds per step
of each, and the median and quartiles of the per-pair difference. The clock is the main
thread's CPU time with one thread (steal time excluded) and wall time with more (the BLAS
threads' work is not on the main thread's clock).
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time

import numpy as np

from benchmarks.common import (BATCH, SEED, build_model, build_optimizer, format_load,
                               load_average, pin_threads, training_arrays)
from benchmarks.mlp_cpu import tensornet_epoch


def run(threads: int, pairs: int = 80, block: int = 20, samples: int = 60000,
        model_name: str = "mlp") -> dict:
    import tensornet as tn
    from tensornet.nn import fusion

    clock = time.thread_time if threads == 1 else time.perf_counter
    x, y, _ = training_arrays(model_name, True, samples)
    model = build_model(model_name)
    opt = build_optimizer(model_name, model.parameters())
    loss_fn = tn.nn.CrossEntropyLoss()
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), BATCH, shuffle=True, seed=SEED)

    def endless():
        while True:
            yield from loader
    batches = endless()

    def steps(fused: bool) -> float:
        start = clock()
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            tensornet_epoch(model, opt, loss_fn, itertools.islice(batches, block))
        return (clock() - start) / block * 1e6

    steps(True), steps(False)  # warm-up: compiled kernels, BLAS buffers
    on, off = [], []
    for k in range(pairs):
        order = (True, False) if k % 2 else (False, True)
        for fused in order:
            (on if fused else off).append(steps(fused))
    saved = [b - a for a, b in zip(on, off)]
    return {"fused_us": float(np.median(on)), "unfused_us": float(np.median(off)),
            "saved_us": float(np.median(saved)),
            "saved_quartiles_us": [float(np.percentile(saved, q)) for q in (25, 75)]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--pairs", type=int, default=80)
    parser.add_argument("--block", type=int, default=20, help="steps per block")
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    before = format_load(load_average())
    samples = 60000 if args.model == "mlp" else 12800
    r = run(args.threads, args.pairs, args.block, samples=samples, model_name=args.model)
    print(f"{args.model.upper()} training step, batch {BATCH}, {args.threads} thread(s), "
          f"{args.pairs} pairs of {args.block}-step blocks "
          f"({'CPU' if args.threads == 1 else 'wall'} clock); load average {before} before, "
          f"{format_load(load_average())} after")
    print(f"  fused   {r['fused_us']:7.0f} us/step (median)")
    print(f"  unfused {r['unfused_us']:7.0f} us/step (median)")
    low, high = r["saved_quartiles_us"]
    print(f"  saved   {r['saved_us']:7.0f} us/step (median of the pairs; quartiles {low:.0f} to "
          f"{high:.0f}): fused / unfused {r['fused_us'] / r['unfused_us']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
