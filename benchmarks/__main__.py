"""python -m benchmarks: looped vs vectorized vs GPU (vs PyTorch), seconds per epoch.

    python -m benchmarks --models mlp,cnn \\
        --modes looped,vectorized,gpu,gpu-graph,torch-cpu,torch-gpu --epochs 1 --reps 3

Each repetition of each (model, mode) runs in its own process (``benchmarks/worker.py``),
the modes taking turns repetition by repetition. Modes that cannot
run here (no GPU, no PyTorch) are listed as skipped with the reason. Writes
``results.md``, ``results.json`` and ``results.png`` into
``benchmarks/results/<host>-<date>/`` (or ``--out``) and prints the table.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import socket
import sys

from benchmarks import common
from benchmarks.common import machine_info
from benchmarks.modes import MODES
from benchmarks.report import write
from benchmarks.worker import combine

MODELS = ("mlp", "cnn")
HERE = os.path.dirname(os.path.abspath(__file__))


def _list(value: str, allowed: tuple, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(bad) or '(none)'}; "
                                          f"choose from {', '.join(allowed)}")
    return items


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mlp,cnn", type=lambda v: _list(v, MODELS, "model"))
    p.add_argument("--modes", default=",".join(MODES), type=lambda v: _list(v, MODES, "mode"))
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per repetition")
    p.add_argument("--reps", type=int, default=3, help="repetitions (median reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for every CPU library (default: all logical cores)")
    p.add_argument("--synthetic", action="store_true",
                   help="synthetic MNIST-shaped data instead of Fashion-MNIST")
    p.add_argument("--train-samples", type=int, default=None,
                   help="use only the first N training samples (quick runs)")
    p.add_argument("--looped-fraction", type=float, default=0.02,
                   help="fraction of an epoch the looped mode trains before extrapolating")
    p.add_argument("--warmup-batches", type=int, default=10)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per mode")
    p.add_argument("--out", default=None, help="output folder (default "
                   "benchmarks/results/<host>-<date>)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.reps < 1 or args.threads < 1:
        p.error("--epochs, --reps and --threads must be >= 1")
    if not 0.0 < args.looped_fraction <= 1.0:
        p.error("--looped-fraction must be in (0, 1]")
    return args


def run_worker(cfg: dict, threads: int, timeout: float) -> dict:
    return common.run_worker("benchmarks.worker", cfg, threads, timeout)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    info = machine_info(args.threads)
    info["load_before"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out = args.out or os.path.join(HERE, "results", f"{socket.gethostname()}-"
                                   f"{datetime.date.today().isoformat()}")
    results = []
    for model in args.models:
        # Repetition-major: every mode runs its first repetition, then its second..., each
        # in a fresh process, so a slow spell of a shared machine does not land on one mode.
        runs = {mode: [] for mode in args.modes}
        for rep in range(args.reps):
            for mode in args.modes:
                if runs[mode] and "seconds_per_epoch" not in runs[mode][0]:
                    continue  # skipped or failed: once is enough
                cfg = dict(model=model, mode=mode, epochs=args.epochs, reps=1,
                           threads=args.threads, synthetic=args.synthetic,
                           train_samples=args.train_samples,
                           looped_fraction=args.looped_fraction,
                           warmup_batches=args.warmup_batches)
                print(f"[{model} / {mode} / rep {rep + 1}] ...", end=" ", flush=True,
                      file=sys.stderr)
                r = run_worker(cfg, args.threads, args.timeout)
                runs[mode].append(r)
                if "seconds_per_epoch" in r:
                    print(f"{r['seconds_per_epoch']:.3f} s/epoch, accuracy "
                          f"{100 * r['accuracy']:.1f}%", file=sys.stderr)
                else:
                    print(r.get("skipped") or f"FAILED: {r.get('error')}", file=sys.stderr)
        results += [combine(runs[mode]) for mode in args.modes]
    info["load_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    measured = [r for r in results if "train_samples" in r]
    run = {"command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv),
           "epochs": args.epochs, "reps": args.reps,
           "dataset": measured[0]["dataset"] if measured else "?",
           "train_samples": measured[0]["train_samples"] if measured else "?",
           "looped_fraction": args.looped_fraction}
    written = write(results, info, run, out)
    print(written["text"])
    print("written: " + ", ".join(written["paths"].values()), file=sys.stderr)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
