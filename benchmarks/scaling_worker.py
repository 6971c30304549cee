"""One point of ``python -m benchmarks.scaling``, in a process of its own (so that its
thread pools start with the point's thread count and its peak memory is its own):

    python -m benchmarks.scaling_worker '{"kind": "time", "model": "mlp", ...}'

prints the JSON result after ``RESULT `` on its last line. Configuration: ``model``
("mlp" or "cnn"), ``sizes`` (MLP layer sizes), ``channels`` (CNN), ``batch``, ``threads``,
``reps``, ``seconds`` (the target length of one timed run) and ``kind``:

- ``time``: tensornet, PyTorch (in a process of its own, ``benchmarks/torch_side.py``)
  and (MLP) the GEMM-only floor take turns, ``reps`` runs each of the same batches (a
  number chosen so that one tensornet run lasts about ``seconds``) after a warm-up; per
  side the median seconds per sample, scaled to a 60,000-sample epoch. Also the share of
  tensornet's step spent in its GEMMs (one extra run with a clock around every matrix
  product: its GEMM seconds over its own training seconds); for MLPs PyTorch's GEMM-only
  floor too, and for CNNs both frameworks' per-layer split (``cnn_cpu``'s, on
  ``SPLIT_BATCHES`` batches).
- ``memory`` (with ``framework``): imports and a warm-up of the same layers on a tiny
  model (compiled kernels, library code); then the data, the model and its optimizer
  (``build_mib``: the resident memory they add, initialisation transients included);
  then the baseline, and training on the batches: ``peak_mib``, the peak resident memory
  above that baseline (gradients, optimizer state, activations, workspace, allocator
  caches: what training needs beyond the weights). Before each baseline the C allocator
  returns its free memory to the OS (``malloc_trim``): otherwise memory freed while the
  model was built (the PyTorch twin copies a tensornet model's weights) would be reused
  by training without showing in the resident size.
"""
from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np

from benchmarks.common import (Clock, RssProbe, build_model, build_optimizer, epoch_order,
                               median, pin_threads, settle, synthetic_mnist, torch_epoch,
                               torch_twin)

EPOCH = 60000
SPLIT_BATCHES = 20  # batches of the per-layer split at CNN points (median per layer)


def _data(model: str, samples: int):
    x, y = synthetic_mnist(samples)
    if model == "mlp":
        x = np.ascontiguousarray(x.reshape(samples, -1))
    return x, y


def _shape(cfg) -> dict:
    return {"sizes": tuple(cfg.get("sizes") or (784, 256, 120, 64, 10)),
            "channels": int(cfg.get("channels") or 8)}


def _tensornet_build(cfg):
    import tensornet as tn
    model = build_model(cfg["model"], **_shape(cfg))
    return model, build_optimizer(cfg["model"], model.parameters()), tn.nn.CrossEntropyLoss()


def _tensornet_train(built, cfg, x, y, order):
    from benchmarks.cnn_cpu import tensornet_epoch
    clock = Clock()
    clock.start()
    tensornet_epoch(*built, x, y, order, cfg["batch"])
    return clock.stop()[0]


def _torch_build(cfg):
    model, opt = torch_twin(cfg["model"], build_model(cfg["model"], **_shape(cfg)),
                            **_shape(cfg))
    return model, opt


class _TorchInItsOwnProcess:
    """The PyTorch side of a timing run, in a process of its own (see
    ``benchmarks/torch_side.py``) that trains on the same samples."""

    def __init__(self, cfg, samples: int):
        from benchmarks.torch_side import TorchSide
        self.side = TorchSide({**cfg, "synthetic": True, "samples": samples})

    def __call__(self, cfg, x, y, order):
        return self.side.epoch(order)[0][0]


def _torch_train(built, cfg, x, y, order):
    import torch
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    clock = Clock()
    clock.start()
    torch_epoch(torch, *built, xt, yt, order, cfg["batch"])
    return clock.stop()[0]


def _tensornet_run(cfg, x, y, order):
    return _tensornet_train(_tensornet_build(cfg), cfg, x, y, order)


def _gemm_run(cfg, x, y, order):
    from benchmarks.mlp_cpu import gemm_only_epoch
    weights = [np.asarray(p.data) for p in build_model("mlp", **_shape(cfg)).parameters()][0::2]
    batches = [min(cfg["batch"], len(order) - s) for s in range(0, len(order), cfg["batch"])]
    clock = Clock()
    clock.start()
    gemm_only_epoch(weights, x, batches, cfg["batch"])
    return clock.stop()[0]


def _gemm_share(cfg, x, y, order) -> float:
    """The share of one run's training time spent inside tensornet's matrix products
    (every ``numpy.matmul`` call: the backend's matmul and its convolution blocks use it),
    both measured in that run: against the other runs' time a slow run's share could
    exceed 1."""
    matmul, spent = np.matmul, [0.0]

    def timed(*args, **kwargs):
        start = time.perf_counter()
        result = matmul(*args, **kwargs)
        spent[0] += time.perf_counter() - start
        return result

    np.matmul = timed
    try:
        seconds = _tensornet_run(cfg, x, y, order)
    finally:
        np.matmul = matmul
    return spent[0] / seconds


def _trim() -> None:
    """Give the allocator's free memory back to the OS (glibc), so that what one model's
    construction freed does not hide what training then allocates."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_time(cfg: dict) -> dict:
    batch = cfg["batch"]
    x, y = _data(cfg["model"], 2 * batch)
    probe_order = epoch_order(len(x), 0)
    _tensornet_run(cfg, x, y, probe_order)   # warm-up: compiled kernels, BLAS buffers
    per_batch = _tensornet_run(cfg, x, y, probe_order) / 2
    batches = int(min(60, max(3, round(cfg["seconds"] / max(per_batch, 1e-6)))))
    x, y = _data(cfg["model"], batches * batch)
    order = epoch_order(len(x), 0)
    sides = {"tensornet": _tensornet_run}
    if cfg.get("torch", True):
        sides["pytorch"] = _TorchInItsOwnProcess(cfg, len(x))
    if cfg["model"] == "mlp":
        sides["gemm_only"] = _gemm_run
        if "pytorch" in sides:  # the same products through PyTorch's BLAS, in its process
            torch_side = sides["pytorch"].side
            sides["pytorch_gemm_only"] = lambda cfg, x, y, order: torch_side.gemm(order)[0]
    for run in sides.values():   # warm-up of every side on these batches
        run(cfg, x, y, order)
    times = {name: [] for name in sides}
    names = list(sides)
    for rep in range(cfg["reps"]):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            settle()
            times[name].append(sides[name](cfg, x, y, order))
    scale = EPOCH / len(order)
    result = {"batches": batches, "samples": len(order),
              "seconds_per_epoch": {k: median(v) * scale for k, v in times.items()},
              "all_seconds": times}
    result["tensornet_gemm_share"] = _gemm_share(cfg, x, y, order)
    if "pytorch" in sides:
        if cfg["model"] == "cnn":  # which layers differ (``cnn_cpu``'s split, both sides)
            from benchmarks.cnn_cpu import layer_split
            result["split_ms"] = {
                "tensornet": layer_split(*_tensornet_build(cfg), x, y, order, SPLIT_BATCHES,
                                         batch),
                "pytorch": sides["pytorch"].side.split(SPLIT_BATCHES)}
        sides["pytorch"].side.close()
    return result


def measure_memory(cfg: dict) -> dict:
    framework, batch = cfg["framework"], cfg["batch"]
    build, train = ((_tensornet_build, _tensornet_train) if framework == "tensornet"
                    else (_torch_build, _torch_train))
    tiny = dict(cfg, batch=4, sizes=(784, 8, 8, 8, 10), channels=2)
    small_x, small_y = _data(cfg["model"], 8)
    train(build(tiny), tiny, small_x, small_y, epoch_order(8, 0))  # libraries, kernels
    probe = RssProbe()
    _trim()
    probe.start()
    x, y = _data(cfg["model"], 3 * batch)
    built = build(cfg)
    _trim()
    build_mib = probe.stop()["training_mib"]
    probe.start()
    train(built, cfg, x, y, epoch_order(len(x), 0))
    peak = probe.stop()
    return {"framework": framework, "peak_mib": peak["training_mib"], "build_mib": build_mib,
            "rss": peak}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cfg = {"reps": 3, "seconds": 0.5, "threads": 1, "batch": 128, **json.loads(argv[0])}
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        cfg["torch"] = False
        if cfg.get("framework") == "pytorch":
            print("RESULT " + json.dumps({**cfg, "skipped": "PyTorch is not installed"}))
            return 0
    elif cfg.get("framework") == "pytorch":
        import torch  # noqa: F401  (imported before pinning, so its pool is pinned too)
    pin_threads(cfg["threads"])
    try:
        result = measure_time(cfg) if cfg["kind"] == "time" else measure_memory(cfg)
    except Exception as exc:  # reported, not raised: the sweep goes on
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print("RESULT " + json.dumps({**cfg, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
