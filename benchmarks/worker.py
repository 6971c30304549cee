"""Measure one (model, mode) in a process of its own, so that its thread pools start pinned
and its peak memory is its own. ``python -m benchmarks`` starts one per row:

    python -m benchmarks.worker '{"model": "mlp", "mode": "vectorized", ...}'

and reads the JSON after ``RESULT `` on the last line of stdout.

Protocol: load the data and build the trainer (untimed); warm up on a throwaway model;
then ``reps`` repetitions, each a fresh model (same seed) trained ``epochs`` epochs, every
epoch timed with the device synchronised before each clock read. ``looped`` trains only
``looped_fraction`` of one epoch per repetition and the time is scaled to a full epoch.
Accuracy is measured on the test set after the last repetition. ``combine`` pools the
repetitions of several such runs (``python -m benchmarks`` runs one repetition per
process, modes taking turns, so that slow drifts of a shared machine hit every mode).
"""
from __future__ import annotations

import json
import sys
import traceback

from benchmarks.common import BATCH, Clock, RssProbe, load_data, median, pin_threads
from benchmarks.modes import DEVICE_OF_MODE, Skip, make_trainer

DEFAULTS = dict(epochs=1, reps=3, threads=1, synthetic=False, train_samples=None,
                looped_fraction=0.02, warmup_batches=10)


def measure(cfg: dict) -> dict:
    cfg = {**DEFAULTS, **cfg}
    model, mode = cfg["model"], cfg["mode"]
    result = {"model": model, "mode": mode, "device": DEVICE_OF_MODE[mode]}
    pin_threads(cfg["threads"])
    data = load_data(model, cfg["synthetic"], cfg["train_samples"])
    n = len(data.y_train)
    result.update(dataset=data.name, train_samples=n, test_samples=len(data.y_test))
    try:
        trainer = make_trainer(mode, model, data)
    except Skip as exc:
        return {**result, "skipped": str(exc)}
    pools = pin_threads(cfg["threads"])  # again: the trainer may have imported PyTorch
    result["thread_pools"] = [f"{p.get('internal_api')}: {p.get('num_threads')}" for p in pools]
    if mode.startswith("torch"):
        result["torch_build"] = _torch_build()

    looped = mode == "looped"
    # whole mini-batches, at least one
    limit = max(BATCH, round(cfg["looped_fraction"] * n / BATCH) * BATCH) if looped else None
    epochs = 1 if looped else cfg["epochs"]

    # Memory baseline: interpreter, libraries and (resident) data; what training adds
    # (model, optimizer state, activations, allocator caches) shows above it.
    probe, clock = RssProbe(), Clock(trainer.sync)
    probe.start()
    trainer.fresh()
    try:
        trainer.run(min(cfg["warmup_batches"] * BATCH, limit or n))
    except Exception as exc:
        refused = _graph_refusal(mode, exc)
        if refused:
            return {**result, "skipped": refused}
        raise
    trainer.sync()
    trainer.reset_device_memory()
    per_rep, cpu_per_rep, all_epochs = [], [], []
    for _ in range(cfg["reps"]):
        trainer.fresh()
        wall_total = cpu_total = 0.0
        for _ in range(epochs):
            clock.start()
            done = trainer.run(limit)
            wall, cpu = clock.stop()
            scale = n / done  # 1 except for the looped fraction
            all_epochs.append(wall * scale)
            wall_total += wall * scale
            cpu_total += cpu * scale
        per_rep.append(wall_total / epochs)
        cpu_per_rep.append(cpu_total / epochs)
    memory = trainer.device_memory() or probe.stop()
    accuracy = trainer.accuracy(data.x_test, data.y_test)
    result.update(
        seconds_per_epoch_reps=per_rep, cpu_seconds_per_epoch_reps=cpu_per_rep,
        epoch_seconds_all=all_epochs, epochs=epochs, accuracy=accuracy, memory=memory,
        trained_epochs=(done / n) if looped else epochs,
        extrapolated_from_samples=done if looped else None, threads=cfg["threads"])
    return combine([result])


def combine(runs: list[dict]) -> dict:
    """One row from one or more measurements of the same (model, mode): their repetitions
    pooled, the median and spread of seconds per epoch, the largest peak memory, and the
    accuracy of the last run."""
    if not runs or "seconds_per_epoch_reps" not in runs[0]:
        return runs[0]
    row = dict(runs[-1])
    per_rep = [t for r in runs for t in r["seconds_per_epoch_reps"]]
    cpu = [t for r in runs for t in r["cpu_seconds_per_epoch_reps"]]
    seconds = median(per_rep)
    row.update(
        seconds_per_epoch_reps=per_rep, cpu_seconds_per_epoch_reps=cpu,
        epoch_seconds_all=[t for r in runs for t in r["epoch_seconds_all"]],
        seconds_per_epoch=seconds, samples_per_s=row["train_samples"] / seconds,
        seconds_min=min(per_rep), seconds_max=max(per_rep), cpu_seconds_per_epoch=median(cpu),
        reps=len(per_rep),
        memory=max((r["memory"] for r in runs), key=lambda m: m.get("peak_mib") or 0.0))
    return row


def _torch_build() -> str:
    """PyTorch's own BLAS / oneDNN / SIMD level (it links its own, not NumPy's)."""
    import torch
    keys = ("Math Kernel Library", "MKL-DNN", "CPU capability", "OpenBLAS", "CUDA Runtime",
            "CuDNN")
    lines = [line.strip(" -") for line in torch.__config__.show().splitlines()
             if any(k in line for k in keys)]
    return "; ".join(lines) + f"; intra-op threads {torch.get_num_threads()}"


def _graph_refusal(mode: str, exc: Exception) -> str | None:
    """Why a CUDA-graph step cannot capture this model (e.g. Dropout's random draws)."""
    if mode != "gpu-graph":
        return None
    from tensornet.backends.cuda_graph import GraphCaptureError
    if isinstance(exc, GraphCaptureError):
        return f"CUDA graph capture refused this model's step: {exc}"
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(argv[0])
    try:
        result = measure(cfg)
    except Exception as exc:  # report the failure as a row, never lose the other rows
        result = {"model": cfg.get("model"), "mode": cfg.get("mode"),
                  "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=8)}
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
