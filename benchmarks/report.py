"""Turn worker results into the report: a Markdown table, the same as JSON, a bar chart.

Columns per (model, mode): median seconds per epoch (with min-max over repetitions),
samples/s, speed-up vs ``looped`` and vs ``vectorized``, time ratio to PyTorch on the same
device (tensornet / PyTorch: below 1 is faster), test accuracy after the timed epochs,
peak memory. Skipped and failed modes are listed with the reason.
"""
from __future__ import annotations

import json
import os

TARGETS = (  # (label, model, numerator mode, denominator mode, comparison, bound)
    ("MLP vectorized speed-up over looped", "mlp", "looped", "vectorized", ">=", 30.0),
    ("MLP tensornet / PyTorch, CPU", "mlp", "vectorized", "torch-cpu", "<=", 0.9),
    ("CNN tensornet / PyTorch, CPU", "cnn", "vectorized", "torch-cpu", "<=", 1.5),
)
PEER = {"looped": "torch-cpu", "vectorized": "torch-cpu", "gpu": "torch-gpu",
        "gpu-graph": "torch-gpu"}


def _row_index(results):
    return {(r["model"], r["mode"]): r for r in results if "seconds_per_epoch" in r}


def derived(results) -> list[dict]:
    """Add speed-ups and PyTorch ratios to each measured row."""
    index = _row_index(results)
    for r in results:
        if "seconds_per_epoch" not in r:
            continue
        s = r["seconds_per_epoch"]
        for ref in ("looped", "vectorized"):
            base = index.get((r["model"], ref))
            r[f"speedup_vs_{ref}"] = base["seconds_per_epoch"] / s if base else None
        peer = index.get((r["model"], PEER.get(r["mode"], "")))
        r["ratio_to_torch"] = s / peer["seconds_per_epoch"] if peer else None
    return results


def target_checks(results) -> list[dict]:
    index = _row_index(results)
    checks = []
    for label, model, num, den, op, bound in TARGETS:
        a, b = index.get((model, num)), index.get((model, den))
        if not (a and b):
            checks.append({"target": label, "bound": f"{op} {bound}", "value": None,
                           "met": None})
            continue
        value = a["seconds_per_epoch"] / b["seconds_per_epoch"]
        met = value >= bound if op == ">=" else value <= bound
        checks.append({"target": label, "bound": f"{op} {bound}", "value": value, "met": met})
    return checks


def _fmt(value, spec, suffix=""):
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _seconds(r) -> str:
    s = r["seconds_per_epoch"]
    spread = f" ({r['seconds_min']:.3g}–{r['seconds_max']:.3g})" if r["reps"] > 1 else ""
    mark = " †" if r["mode"] == "looped" else ""
    return f"{s:.3g}{spread}{mark}"


def _memory(r) -> str:
    m = r.get("memory") or {}
    if "training_mib" in m and m.get("training_mib") is not None:
        return f"{m['peak_mib']:.0f} MiB RSS (+{m['training_mib']:.0f})"
    if "peak_mib" in m:
        return f"{m['peak_mib']:.0f} MiB {m.get('kind', '')}".strip()
    return "—"


def _accuracy(r) -> str:
    acc = r.get("accuracy")
    if acc is None:
        return "—"
    trained = r.get("trained_epochs", 1)
    note = f" (after {trained:.2g} epoch)" if trained < 1 else ""
    return f"{100 * acc:.1f}%{note}"


def header_lines(info: dict, args: dict) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    gpus = "; ".join(info["gpus"]) or "none"
    load, load_after = info.get("load_before"), info.get("load_after")
    after = f"; after: {', '.join(f'{x:.2f}' for x in load_after)}" if load_after else ""
    return [
        f"# tensornet benchmark — {info['host']}, {info['date']}",
        "",
        f"- **Machine**: {info['cpu']}, {info['physical_cores']} physical / "
        f"{info['logical_cores']} logical cores; GPU: {gpus}; {info['os']}",
        f"- **Threads**: {info['threads']} for every CPU mode (BLAS via threadpoolctl, "
        f"OMP/OPENBLAS/MKL_NUM_THREADS, torch.set_num_threads)",
        f"- **BLAS**: {'; '.join(info['blas']) or 'unknown'}",
        f"- **Versions**: Python {info['python']}, {versions}; tensornet commit "
        f"{info.get('commit') or '?'}",
        f"- **Load average (1, 5, 15 min) before the run**: "
        f"{', '.join(f'{x:.2f}' for x in load)}{after} — above the core count means other "
        f"jobs shared the CPU, and wall times are inflated (CPU times are in the JSON)"
        if load else "- **Load average**: unknown",
        f"- **Run**: `{args['command']}`",
        f"- **Data**: {args['dataset']}, {args['train_samples']} training samples per epoch, "
        f"batch 128; MLP 784-256-120-64-10 ReLU, SGD(lr 0.01, momentum 0.9); CNN "
        f"2×[Conv3×3, BN, ReLU, MaxPool2] → Linear(784,128) → ReLU → Dropout(0.3) → "
        f"Linear(128,10), Adam(lr 1e-3); float32",
        f"- **Protocol**: {args['epochs']} epoch(s) per repetition, median of {args['reps']} "
        f"repetitions, each a fresh process and a fresh model from the same seed, after an "
        f"untimed warm-up; the modes take turns repetition by repetition; device "
        f"synchronised before every clock read. Same initial weights and batch order in "
        f"every mode.",
    ]


def markdown(results, info: dict, args: dict) -> str:
    builds = sorted({r["torch_build"] for r in results if r.get("torch_build")})
    lines = header_lines(info, args) + [f"- **PyTorch build**: {b}" for b in builds] + [
        "",
        "| model | mode | s/epoch (min–max) | samples/s | × vs looped | × vs vectorized "
        "| time ÷ PyTorch | test accuracy | peak memory |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    skipped = []
    for r in results:
        if "seconds_per_epoch" not in r:
            why = r.get("skipped") or r.get("error", "unknown")
            skipped.append(f"- {r['model']} / {r['mode']}: "
                           f"{'skipped' if 'skipped' in r else 'FAILED'} — {why}")
            continue
        lines.append(
            f"| {r['model']} | {r['mode']} | {_seconds(r)} | {r['samples_per_s']:,.0f} | "
            f"{_fmt(r.get('speedup_vs_looped'), '.1f', '×')} | "
            f"{_fmt(r.get('speedup_vs_vectorized'), '.2f', '×')} | "
            f"{_fmt(r.get('ratio_to_torch'), '.2f')} | {_accuracy(r)} | {_memory(r)} |")
    if any(r.get("mode") == "looped" and "seconds_per_epoch" in r for r in results):
        looped = [r for r in results if r.get("mode") == "looped" and "seconds_per_epoch" in r]
        frac = ", ".join(f"{r['model']}: {r['extrapolated_from_samples']} samples"
                         for r in looped)
        lines += ["", f"† looped: timed on a fixed fraction of an epoch ({frac}) and "
                      f"extrapolated to the full epoch; its accuracy is after that fraction."]
    lines += ["", "Peak memory: CPU modes, the process's peak resident set during the timed "
              "repetitions (in brackets: above the resident set before them, i.e. what "
              "training added on top of interpreter, libraries and data); GPU modes, the "
              "allocator's pool."]
    if skipped:
        lines += ["", "Not measured:"] + skipped
    lines += ["", "Targets (from the table):", ""]
    for c in target_checks(results):
        verdict = {True: "met", False: "NOT met", None: "not measured"}[c["met"]]
        lines.append(f"- {c['target']} {c['bound']}: {_fmt(c['value'], '.2f')} — {verdict}")
    return "\n".join(lines) + "\n"


def chart(results, path: str, title: str) -> bool:
    """Horizontal log-scale bars of seconds per epoch, one panel per model."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    measured = [r for r in results if "seconds_per_epoch" in r]
    models = list(dict.fromkeys(r["model"] for r in measured))
    if not models:
        return False
    fig, axes = plt.subplots(len(models), 1, figsize=(8, 1.2 + 0.55 * max(
        sum(r["model"] == m for r in measured) for m in models) * len(models)), squeeze=False)
    colors = {"looped": "#b0b0b0", "vectorized": "#1f77b4", "gpu": "#2ca02c",
              "gpu-graph": "#17becf", "torch-cpu": "#ff7f0e", "torch-gpu": "#d62728"}
    for ax, model in zip(axes[:, 0], models):
        rows = [r for r in measured if r["model"] == model]
        names = [r["mode"] for r in rows]
        values = [r["seconds_per_epoch"] for r in rows]
        errors = [[v - r["seconds_min"] for v, r in zip(values, rows)],
                  [r["seconds_max"] - v for v, r in zip(values, rows)]]
        ax.barh(names, values, xerr=errors, color=[colors.get(n, "#777") for n in names])
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(f"{model.upper()}: seconds per epoch (log scale, lower is better)",
                     fontsize=10)
        for y, (v, r) in enumerate(zip(values, rows)):
            ax.text(r["seconds_max"] * 1.05, y, f"{v:.3g} s", va="center", fontsize=8)
        ax.set_xlim(min(values) / 2, max(values) * 4)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write(results, info: dict, args: dict, out_dir: str) -> dict:
    """Write ``results.md``, ``results.json`` and ``results.png`` into ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    results = derived(results)
    text = markdown(results, info, args)
    paths = {"markdown": os.path.join(out_dir, "results.md"),
             "json": os.path.join(out_dir, "results.json"),
             "chart": os.path.join(out_dir, "results.png")}
    with open(paths["markdown"], "w") as f:
        f.write(text)
    with open(paths["json"], "w") as f:
        json.dump({"machine": info, "args": args, "results": results,
                   "targets": target_checks(results)}, f, indent=2)
    if not chart(results, paths["chart"], f"{info['host']} {info['date'][:10]}, "
                 f"{info['threads']} thread(s), {info['cpu']}"):
        paths.pop("chart")
    return {"text": text, "paths": paths}
