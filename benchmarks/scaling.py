"""tensornet against PyTorch on the CPU as the work grows: time per epoch and peak memory
over MLP width, batch size, CNN channels and thread count.

    python -m benchmarks.scaling [--quick] [--threads N] [--sweeps width,batch,channels,threads]
                                 [--out DIR]

Sweeps (float32, synthetic MNIST-shaped data, SGD momentum for the MLPs, Adam for the CNNs):

- ``width``: MLP 784-W-W/2-W/4-10 for W = 256 ... 4096, batch 128;
- ``batch``: the benchmark MLP (784-256-120-64-10) and CNN at batch 32, 128, 512, 1024;
- ``channels``: the benchmark CNN with C = 8 ... 64 (conv 1->C, conv C->2C, fc 98C->128);
- ``threads``: both benchmark models at batch 128 on 1, 2, 4, ... threads and every core.

Every point runs in processes of its own (``benchmarks/scaling_worker.py``): one where
tensornet, PyTorch and, for MLPs, the GEMM-only floors (the step's matrix products alone,
through OpenBLAS and through PyTorch's BLAS) take turns on the same batches, and one per
framework for the peak resident memory of training. Times are medians over the turns,
scaled from the batches run to a 60,000-sample epoch. Writes ``results.md``,
``results.json`` and ``results.png`` into ``benchmarks/results/scaling-<host>-<date>/``
(or ``--out``); the table names every point where tensornet is slower or uses more memory
than PyTorch, with the share of its step spent in GEMMs (the part both frameworks hand to
a BLAS library) and, where both floors are measured, which part of the step is slower.
``--quick``: fewer points, shorter runs (about a minute).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import socket
import sys

from benchmarks import common
from benchmarks.common import format_load, load_average, machine_info

HERE = os.path.dirname(os.path.abspath(__file__))
SWEEPS = ("width", "batch", "channels", "threads")


def _thread_counts(cores: int) -> list[int]:
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [cores]


def points(sweep: str, quick: bool, threads: int) -> list[dict]:
    """The configurations of one sweep (``threads``: the default thread count)."""
    base = {"batch": 128, "threads": threads}
    if sweep == "width":
        widths = (256, 1024, 4096) if quick else (256, 512, 1024, 2048, 4096)
        return [{**base, "model": "mlp", "label": f"MLP W={w}",
                 "sizes": [784, w, w // 2, w // 4, 10], "x": w} for w in widths]
    if sweep == "batch":
        batches = (32, 1024) if quick else (32, 128, 512, 1024)
        return [{**base, "model": model, "label": f"{model.upper()} batch {b}", "batch": b,
                 "x": b} for model in ("mlp", "cnn") for b in batches]
    if sweep == "channels":
        channels = (8, 32) if quick else (8, 16, 32, 64)
        return [{**base, "model": "cnn", "label": f"CNN C={c}", "channels": c, "x": c}
                for c in channels]
    counts = _thread_counts(os.cpu_count() or 1)
    return [{**base, "model": model, "label": f"{model.upper()} {t} thread(s)", "threads": t,
             "x": t} for model in ("mlp", "cnn") for t in counts]


def run_worker(cfg: dict, timeout: float) -> dict:
    return common.run_worker("benchmarks.scaling_worker", cfg, cfg["threads"], timeout)


def measure_point(cfg: dict, quick: bool, timeout: float) -> dict:
    timing = run_worker({**cfg, "kind": "time", "reps": 2 if quick else 3,
                         "seconds": 0.2 if quick else 0.4}, timeout)
    point = {**cfg, "time": timing, "memory": {}}
    for framework in ("tensornet", "pytorch"):
        point["memory"][framework] = run_worker({**cfg, "kind": "memory",
                                                 "framework": framework}, timeout)
    return point


def _slower_layers(split: dict) -> str | None:
    """The layers where tensornet's per-batch time (forward + backward) exceeds PyTorch's,
    the largest gap first, and the other layers together. A pair tensornet runs as one step
    (its second row reads 0) is compared with PyTorch's two rows together; the first
    layer's backward is left out on both sides (PyTorch's hooks do not time it)."""
    tn, pt = split.get("tensornet"), split.get("pytorch")
    if not tn or not pt or set(tn) != set(pt):
        return None
    groups = []
    for name in tn:
        if groups and not any(tn[name]) and not name.startswith(("loss", "Adam")):
            groups[-1].append(name)
        else:
            groups.append([name])
    def total(side, group):
        return sum(side[n][0] + (side[n][1] if not n.startswith("0:") else 0.0)
                   for n in group)
    compared = []
    for group in groups:
        label = " + ".join(n.split(": ", 1)[-1] for n in group)
        first = group[0].split(":")[0]
        compared.append((f"{first}: {label}" if first.isdigit() else label,
                         total(tn, group), total(pt, group)))
    slower = sorted([c for c in compared if c[1] > c[2]], key=lambda c: c[2] - c[1])
    if not slower:
        return None
    others = [c for c in compared if c[1] <= c[2]]
    text = "; ".join(f"{name} {a:.2f} against {b:.2f} ms" for name, a, b in slower[:3])
    if len(slower) > 3:
        text += f" and {len(slower) - 3} more"
    if others:
        text += (f"; the other layers together {sum(c[1] for c in others):.2f} against "
                 f"{sum(c[2] for c in others):.2f} ms")
    return f"slower in {text} (a batch, forward + backward, per-layer split)"


def _why_slower(tn: float, pt: float, floor, share, pt_floor=None, split=None) -> str:
    """Only what the figures show. Where both GEMM-only floors are measured (the MLPs), the
    step is split alike on both sides, the GEMMs timed alone and the rest of the step, and
    each part that takes longer in tensornet is named; where both per-layer splits are
    (the CNNs), the layers that take longer. Elsewhere PyTorch's own split is not known, so
    a part of tensornet's step is named as the cause only when that part alone takes
    longer than PyTorch's whole step."""
    layers = _slower_layers(split) if split else None
    if layers:
        return layers
    if floor and pt_floor:
        rest, pt_rest = tn - floor, pt - pt_floor
        parts = []
        if floor > pt_floor:
            parts.append(f"the GEMMs take {floor:.2f} s with OpenBLAS against {pt_floor:.2f} s "
                         f"with PyTorch's BLAS")
        if rest > pt_rest:
            parts.append(f"the rest of the step takes {rest:.2f} against {pt_rest:.2f} s")
        return "slower: " + "; ".join(parts) + " (GEMMs timed alone, the rest the step less them)"
    gemm = share * tn if share is not None else None
    if (floor and floor > pt) or (gemm is not None and gemm > pt):
        return "slower: the GEMMs alone (OpenBLAS) take longer than PyTorch's whole step"
    if gemm is not None and tn - gemm > pt:
        return (f"slower: tensornet's step outside its GEMMs alone takes longer than "
                f"PyTorch's whole step (GEMMs {100 * share:.0f}% of it)")
    share_text = f"GEMMs {100 * share:.0f}% of tensornet's step; " if share is not None else ""
    return (f"slower ({share_text}PyTorch's split is not measured, so which part is "
            f"slower is not known)")


def summarize(point: dict) -> dict:
    """The row of one point: s/epoch, peak MiB, ratios, and why tensornet loses (if so)."""
    seconds = point["time"].get("seconds_per_epoch", {})
    memory = {k: v.get("peak_mib") for k, v in point["memory"].items()}
    tn, pt, floor = seconds.get("tensornet"), seconds.get("pytorch"), seconds.get("gemm_only")
    pt_floor = seconds.get("pytorch_gemm_only")
    row = {"sweep": point["sweep"], "label": point["label"], "x": point["x"],
           "tensornet_s": tn, "pytorch_s": pt, "gemm_only_s": floor,
           "pytorch_gemm_only_s": pt_floor,
           "time_ratio": tn / pt if tn and pt else None,
           "tensornet_over_gemm": tn / floor if tn and floor else None,
           "gemm_share": point["time"].get("tensornet_gemm_share"),
           "tensornet_mib": memory.get("tensornet"), "pytorch_mib": memory.get("pytorch")}
    mt, mp = row["tensornet_mib"], row["pytorch_mib"]
    row["memory_ratio"] = mt / mp if mt is not None and mp else None
    reasons = []
    if row["time_ratio"] is not None and row["time_ratio"] > 1.0:
        reasons.append(_why_slower(tn, pt, floor, row["gemm_share"], pt_floor,
                                   point["time"].get("split_ms")))
    # Resident-memory figures move by about a MiB between identical runs (pages the
    # allocator keeps or returns): a difference within max(1 MiB, 5%) is not counted
    # (such a point counts as <= PyTorch; the report says so, naming it).
    above = mt is not None and mp is not None and mt > mp
    beyond_noise = above and mt - mp > max(1.0, 0.05 * mp)
    if beyond_noise:
        reasons.append("more memory")
    row["memory_within_noise"] = above and not beyond_noise
    errors = [r.get("error") for r in [point["time"], *point["memory"].values()]
              if r.get("error")]
    row["notes"] = "; ".join(reasons + errors)
    # Both times and both memories measured: only then does the point count for or against.
    row["compared"] = row["time_ratio"] is not None and row["memory_ratio"] is not None
    if not row["compared"]:
        skipped = [r.get("skipped") for r in [point["time"], *point["memory"].values()]
                   if r.get("skipped")]
        row["not_compared"] = "; ".join(dict.fromkeys(skipped + errors)) or "a figure missing"
    return row


def _f(value, spec):
    return "—" if value is None else format(value, spec)


def markdown(rows: list[dict], info: dict, command: str) -> str:
    lines = [f"# Scaling: tensornet vs PyTorch {info['versions'].get('torch', '(absent)')} on "
             f"the CPU", "",
             f"`{command}` on {info['cpu']} ({info['logical_cores']} logical cores), "
             f"{'; '.join(info['blas']) or 'BLAS unknown'}, {info['date']}; load average "
             f"{format_load(info['load_before'])} before, {format_load(info['load_after'])} "
             f"after. Seconds per 60,000-sample epoch (extrapolated from the batches run), "
             f"peak resident memory of training (MiB above the resident size once libraries, "
             f"data, model and optimizer are in: gradients, optimizer state, activations, "
             f"workspace).", "",
             "| point | tensornet s | PyTorch s | tn / PyTorch | GEMM-only s | tn / GEMM | "
             "PyTorch GEMM-only s | tensornet MiB | PyTorch MiB | memory tn / PyTorch | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {_f(r['tensornet_s'], '.2f')} | "
                     f"{_f(r['pytorch_s'], '.2f')} | {_f(r['time_ratio'], '.2f')} | "
                     f"{_f(r['gemm_only_s'], '.2f')} | {_f(r['tensornet_over_gemm'], '.2f')} | "
                     f"{_f(r.get('pytorch_gemm_only_s'), '.2f')} | "
                     f"{_f(r['tensornet_mib'], '.0f')} | {_f(r['pytorch_mib'], '.0f')} | "
                     f"{_f(r['memory_ratio'], '.2f')} | {r['notes']} |")
    compared = [r for r in rows if r.get("compared", True)]
    losing = [r for r in compared if r["notes"]]
    lines += [""]
    if compared:
        lines += [f"tensornet <= PyTorch in time and memory at {len(compared) - len(losing)} "
                  f"of {len(compared)} points" + (" compared" if len(compared) < len(rows)
                                                  else "")
                  + (":" if not losing else "; not at:")]
        lines += [f"- {r['label']}: {r['notes']}" for r in losing]
        noisy = [r["label"] for r in compared if r.get("memory_within_noise")]
        if noisy:
            lines += ["", "counted as <= PyTorch in memory though above it by less than "
                      "max(1 MiB, 5%), the spread of the resident size between identical "
                      f"runs: {', '.join(noisy)}"]
    uncompared = [r for r in rows if not r.get("compared", True)]
    if uncompared:
        lines += [f"not compared with PyTorch at {len(uncompared)} of {len(rows)} points:"]
        lines += [f"- {r['label']}: not compared with PyTorch ({r['not_compared']})"
                  for r in uncompared]
    return "\n".join(lines) + "\n"


_SERIES = {"tensornet": ("tensornet", "tab:blue", "o"), "pytorch": ("PyTorch", "tab:orange", "s"),
           "gemm": ("GEMM only", "tab:green", "^")}


def plot(rows: list[dict], path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    sweeps = [s for s in SWEEPS if any(r["sweep"] == s for r in rows)]
    fig = Figure(figsize=(4.2 * len(sweeps), 7.0))
    FigureCanvasAgg(fig)
    for i, sweep in enumerate(sweeps):
        part = [r for r in rows if r["sweep"] == sweep]
        for row_index, (keys, ylabel) in enumerate(
                ((("tensornet_s", "pytorch_s", "gemm_only_s"), "s / epoch"),
                 (("tensornet_mib", "pytorch_mib"), "peak MiB"))):
            ax = fig.add_subplot(2, len(sweeps), row_index * len(sweeps) + i + 1)
            for model, line in (("mlp", "-"), ("cnn", "--")):
                model_rows = [r for r in part if r["label"].lower().startswith(model)]
                for key in keys:
                    xy = [(r["x"], r[key]) for r in model_rows if r[key] is not None]
                    if xy:
                        name, color, marker = _SERIES[key.split("_")[0]]
                        ax.plot(*zip(*xy), line, marker=marker, color=color, markersize=4,
                                label=f"{model.upper()} {name}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(sweep)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    fig.suptitle("tensornet vs PyTorch on the CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for the width, batch and channel sweeps (default: all)")
    parser.add_argument("--sweeps", default=",".join(SWEEPS),
                        help=f"comma-separated subset of {', '.join(SWEEPS)}")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sweeps = [s.strip() for s in args.sweeps.split(",") if s.strip()]
    unknown = [s for s in sweeps if s not in SWEEPS]
    if unknown or not sweeps:
        parser.error(f"unknown sweep(s) {unknown}; choose from {', '.join(SWEEPS)}")
    info = machine_info(args.threads)
    info["load_before"] = load_average()
    out = args.out or os.path.join(HERE, "results", f"scaling-{socket.gethostname()}-"
                                   f"{datetime.date.today().isoformat()}")
    results = []
    for sweep in sweeps:
        for cfg in points(sweep, args.quick, args.threads):
            print(f"[{sweep}] {cfg['label']} ...", end=" ", flush=True, file=sys.stderr)
            point = measure_point({**cfg, "sweep": sweep}, args.quick, args.timeout)
            results.append(point)
            row = summarize(point)
            print(f"tensornet {_f(row['tensornet_s'], '.2f')} s, PyTorch "
                  f"{_f(row['pytorch_s'], '.2f')} s, {_f(row['tensornet_mib'], '.0f')} vs "
                  f"{_f(row['pytorch_mib'], '.0f')} MiB {row['notes']}", file=sys.stderr)
    info["load_after"] = load_average()
    rows = [summarize(p) for p in results]
    command = "python -m benchmarks.scaling " + " ".join(shlex.quote(a) for a in argv)
    os.makedirs(out, exist_ok=True)
    text = markdown(rows, info, command.strip())
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"command": command.strip(), "machine": info, "rows": rows,
                   "points": results}, f, indent=1)
    plot(rows, os.path.join(out, "results.png"))
    print(text)
    print(f"written: {out}/results.md, results.json, results.png", file=sys.stderr)
    return 1 if any("error" in p["time"] for p in results) else 0


if __name__ == "__main__":
    sys.exit(main())
