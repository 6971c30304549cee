"""GPU benchmark (not a test): seconds per epoch and samples/s on one GPU, same run, for

    tensornet-CuPy eager | tensornet-CuPy CUDA graph | PyTorch-CUDA eager

on (a) MLP 784-256-120-64-10, batch 128, SGD momentum; (b) the small CNN of
``tensornet.models.cnn`` (issue 3), batch 128, Adam; (c) wide MLP 784-4096-4096-10, batch
1024, SGD momentum. Fashion-MNIST train (60000 images) when it is on disk, else random data
of the same shape (the output says which). The data stays on the GPU; each epoch shuffles
on the device. The device is synchronised before every clock read. The first epoch of each
run (kernel compilation, graph capture, cuDNN autotuning) is reported apart and excluded
from the per-epoch median. float32 without TF32 on both sides unless ``--tf32``.

    python benchmarks/gpu.py [--epochs 3] [--only mlp,cnn,wide] [--tf32]

Each run writes its raw output to its own file, benchmarks/results/<gpu-name>-<date>-<time>.txt.
A case that fails (a CUDA error, a graph that cannot be captured) is reported in its row and
the remaining cases still run; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import datetime
import io
import platform
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
CASES = {
    "mlp": dict(title="(a) MLP 784-256-120-64-10, batch 128, SGD momentum 0.9",
                sizes=(784, 256, 120, 64, 10), batch=128, optimizer="sgd"),
    "cnn": dict(title="(b) small CNN (tensornet.models.cnn), batch 128, Adam",
                sizes=None, batch=128, optimizer="adam"),
    "wide": dict(title="(c) wide MLP 784-4096-4096-10, batch 1024, SGD momentum 0.9",
                 sizes=(784, 4096, 4096, 10), batch=1024, optimizer="sgd"),
}
TARGETS = {
    "mlp": "targets: eager/PyTorch time <= 1.0, graph/PyTorch time <= 0.3",
    "cnn": "target: eager/PyTorch time <= 1.2",
    "wide": "target: tensornet samples/s >= 0.95 x PyTorch samples/s",
}


def _load_data():
    import tensornet as tn
    try:
        x, y = tn.data.fashion_mnist("train", download=False)
        return x, y, "Fashion-MNIST train"
    except (tn.data.DatasetError, OSError):
        rng = np.random.default_rng(0)
        x = rng.random((60000, 1, 28, 28), dtype=np.float32)
        return x, rng.integers(0, 10, 60000), "random data (Fashion-MNIST not found)"


def _time_epochs(run_epoch, synchronize, epochs: int):
    """(first-epoch seconds, [later epoch seconds]); synchronised around every clock read."""
    times = []
    for _ in range(epochs + 1):
        synchronize()
        start = time.perf_counter()
        run_epoch()
        synchronize()
        times.append(time.perf_counter() - start)
    return times[0], times[1:]


# ---------------------------------------------------------------------- tensornet
def _tensornet_run(case, x_host, y_host, epochs: int, graph: bool, tf32: bool):
    import tensornet as tn
    _fresh_pools()
    backend = tn.get_backend("cuda")
    backend.set_tf32(tf32)
    tn.manual_seed(0)
    if case["sizes"] is None:
        model = tn.models.cnn(device="cuda")
        opt = tn.optim.Adam(model.parameters(), lr=1e-3)
    else:
        model = tn.models.mlp(case["sizes"], device="cuda")
        opt = tn.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = tn.train.make_train_step(model, tn.nn.CrossEntropyLoss(), opt, cuda_graph=graph)
    xp, batch, n = backend.xp, case["batch"], len(x_host)
    x, y = backend.asarray(x_host), backend.asarray(y_host)

    def run_epoch():
        order = backend.permutation(n)
        total = None
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            loss, _ = step(xp.take(x, idx, axis=0), xp.take(y, idx, axis=0))
            total = loss if total is None else total + loss
        return total

    first, later = _time_epochs(run_epoch, backend.synchronize, epochs)
    graph_pool = step.pool_bytes() if hasattr(step, "pool_bytes") else 0
    return first, later, _held_bytes(backend.memory_info(), graph_pool)


def _held_bytes(info: dict, graph_pool: int = 0) -> int:
    """What CuPy's pool (and a CUDA-graph step's private pool) hold after the run: a pool
    only grows until it is emptied, so this is its peak, intra-step peaks included, as
    PyTorch's ``max_memory_reserved`` (both are emptied before each run: ``_fresh_pools``)."""
    return int(info["pool"]) + int(graph_pool)


def _fresh_pools() -> None:
    """Empty both frameworks' caching allocators, so that each run's figure is its own."""
    import tensornet as tn
    tn.get_backend("cuda").release_memory()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------- PyTorch
def _torch_model(torch, case):
    nn = torch.nn
    if case["sizes"] is None:  # the same layers as tensornet.models.cnn()
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                             nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(16 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(128, 10))
    layers = [nn.Flatten()]
    sizes = case["sizes"]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _torch_run(case, x_host, y_host, epochs: int, tf32: bool):
    import torch
    _fresh_pools()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(0)
    model = _torch_model(torch, case).cuda()
    if case["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.from_numpy(x_host).cuda()
    y = torch.from_numpy(y_host.astype(np.int64)).cuda()
    batch, n = case["batch"], len(x_host)
    loss_fn = torch.nn.CrossEntropyLoss()

    def run_epoch():
        order = torch.randperm(n, device="cuda")
        total = torch.zeros((), device="cuda")
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.detach()
        return total

    torch.cuda.reset_peak_memory_stats()
    first, later = _time_epochs(run_epoch, torch.cuda.synchronize, epochs)
    return first, later, torch.cuda.max_memory_reserved()


# ---------------------------------------------------------------------- report
def _row(name, result, n, out):
    if isinstance(result, str):
        print(f"  {name:<22} {result}", file=out)
        return None
    first, later, peak = result
    median = statistics.median(later)
    print(f"  {name:<22} {median:8.3f} s/epoch  {n / median:10.0f} samples/s   first epoch "
          f"{first:7.3f} s   pool peak {peak / 2**20:8.1f} MiB   epochs "
          f"{', '.join(f'{t:.3f}' for t in later)}", file=out)
    return median


def _try(run, *args):
    """The run's result, or a one-line reason: "n/a" (the mode does not apply here) or
    "FAILED" (anything else; the traceback goes to stderr and the other cases go on)."""
    try:
        return run(*args)
    except ImportError as exc:
        return f"n/a: {exc}"
    except NotImplementedError as exc:  # e.g. graph mode refusing Dropout or raw cuBLAS
        return f"n/a: {type(exc).__name__}: {str(exc)[:160]}"
    except Exception as exc:  # a CUDA error, out of memory, a bug: report it, keep going
        traceback.print_exc()
        return f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"


def _results_path(gpu_name: str) -> Path:
    """A new file for this run: <gpu>-<date>-<time>.txt (-2, -3, ... within one second)."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", gpu_name).strip("-")
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    path, n = RESULTS / f"{safe}-{stamp}.txt", 1
    while path.exists():
        n += 1
        path = RESULTS / f"{safe}-{stamp}-{n}.txt"
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the first")
    parser.add_argument("--only", default="mlp,cnn,wide", help="comma list of mlp, cnn, wide")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 on both sides")
    args = parser.parse_args(argv)
    from tensornet.backends.cupy import gpu_available
    if not gpu_available():
        print("benchmarks/gpu.py needs an NVIDIA GPU with CuPy (pip install "
              "'tensornet[cuda12]'); none is usable here, so nothing was measured.",
              file=sys.stderr)
        return 2
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    gpu_name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    x, y, source = _load_data()
    out = io.StringIO()

    class Tee:
        def write(self, text):
            sys.stdout.write(text)
            out.write(text)

        def flush(self):
            sys.stdout.flush()

    tee = Tee()
    print(f"tensornet GPU benchmark {datetime.datetime.now().isoformat(timespec='seconds')}",
          file=tee)
    print(f"GPU: {gpu_name}; CuPy {cupy.__version__}; Python {platform.python_version()}; "
          f"data: {source}; precision: {'TF32 allowed' if args.tf32 else 'FP32 (no TF32)'}; "
          f"median of {args.epochs} epochs", file=tee)
    failed = 0
    for key in args.only.split(","):
        case = CASES[key]
        print(f"\n{case['title']}", file=tee)
        results = [_try(_tensornet_run, case, x, y, args.epochs, False, args.tf32),
                   _try(_tensornet_run, case, x, y, args.epochs, True, args.tf32),
                   _try(_torch_run, case, x, y, args.epochs, args.tf32)]
        failed += sum(isinstance(r, str) and r.startswith("FAILED") for r in results)
        eager, graph, torch_ = (_row(name, result, len(x), tee) for name, result in zip(
            ("tensornet-CuPy eager", "tensornet-CuPy graph", "PyTorch-CUDA eager"), results))
        print(f"  {TARGETS[key]}", file=tee)
        if torch_:
            ratios = [f"{name}/PyTorch time = {value / torch_:.2f}"
                      for name, value in (("eager", eager), ("graph", graph)) if value]
            print(f"  measured: {'; '.join(ratios) or 'no tensornet figure'}", file=tee)
    if failed:
        print(f"\n{failed} run(s) FAILED (tracebacks above, on stderr)", file=tee)
    RESULTS.mkdir(exist_ok=True)
    path = _results_path(gpu_name)
    path.write_text(out.getvalue())
    print(f"\nraw output written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
