"""Shared helpers for the benchmarks: thread pinning, machine info, data, the two benchmark
models (tensornet and their PyTorch twins), batch order, clocks and memory probes.

Every mode of every benchmark builds its model here, from the same seed, so that the
compared implementations start from the same weights and see batches in the same order.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import socket
import subprocess
import time
from dataclasses import dataclass

import numpy as np

BATCH = 128
SEED = 0
MLP_SIZES = (784, 256, 120, 64, 10)
MLP_SGD = dict(lr=0.01, momentum=0.9)
CNN_ADAM = dict(lr=1e-3)
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")

_limits = None  # the live threadpoolctl limiter (a limit lasts as long as its object)


# ---------------------------------------------------------------------- threads
def thread_env(threads: int) -> dict:
    """Environment for a child process whose libraries must start with ``threads`` threads."""
    env = dict(os.environ)
    for name in THREAD_ENV:
        env[name] = str(threads)
    return env


def run_worker(module: str, cfg: dict, threads: int, timeout: float) -> dict:
    """Run ``python -m <module> '<cfg as JSON>'`` in a fresh process whose libraries start
    with ``threads`` threads; the JSON after ``RESULT `` on its last such line, or
    ``cfg`` with an ``error``."""
    import json
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = thread_env(threads)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, "-m", module, json.dumps(cfg)],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=root)
    except subprocess.TimeoutExpired:
        return {**cfg, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**cfg, "error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}


def pin_threads(threads: int) -> list[dict]:
    """Limit BLAS/OpenMP pools (threadpoolctl) and PyTorch, when imported, to ``threads``.

    Returns threadpoolctl's description of the pools after pinning.
    """
    global _limits
    threadpoolctl = _threadpoolctl()
    _limits = threadpoolctl.threadpool_limits(limits=threads)
    torch = _torch_if_imported()
    if torch is not None:
        torch.set_num_threads(threads)
    return threadpoolctl.threadpool_info()


def add_blas_threads_option(parser) -> None:
    """``--blas-threads K``: tensornet's side runs ``tn.set_num_threads(THREADS, blas=K)``."""
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="tensornet's side only: tn.set_num_threads(THREADS, blas=K); "
                             "K < THREADS runs its kernels on the spin pool with the BLAS "
                             "on K threads")


def apply_blas_threads(threads: int, blas_threads: int | None) -> str:
    """Apply ``--blas-threads`` after ``pin_threads``; returns the note for the header."""
    if blas_threads is None:
        return ""
    import tensornet as tn
    tn.set_num_threads(threads, blas=blas_threads)
    return f" (tensornet: tn.set_num_threads({threads}, blas={blas_threads}))"


def _threadpoolctl():
    """threadpoolctl, or an exit naming the extra: without it the thread counts the figures
    are labelled with would not hold."""
    try:
        import threadpoolctl
    except ImportError:
        raise SystemExit("the benchmarks set the BLAS threads with threadpoolctl, which is not "
                         "installed: pip install 'tensornet[fast]' (or pip install "
                         "threadpoolctl)") from None
    return threadpoolctl


def _torch_if_imported():
    import sys
    return sys.modules.get("torch")


# ---------------------------------------------------------------------- machine info
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> int | None:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores = set()
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        cores.add((fields.get("physical id"), fields.get("core id")))
    return len(cores) or None


def gpu_names() -> list[str]:
    """Names of the NVIDIA GPUs nvidia-smi sees (empty without a driver)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [f"{line.split(',')[0].strip()} (driver {line.split(',')[1].strip()})"
            for line in out.stdout.strip().splitlines() if "," in line]


def git_commit() -> str | None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_info(threads: int) -> dict:
    """CPU, cores, BLAS, GPU and library versions for a report header."""
    threadpool_info = _threadpoolctl().threadpool_info
    blas = [f"{p.get('internal_api')} {p.get('version') or ''} ({p.get('architecture') or '?'}, "
            f"{p.get('threading_layer') or p.get('user_api')})".replace("  ", " ")
            for p in threadpool_info() if p.get("user_api") == "blas"]
    return {
        "host": socket.gethostname(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "threads": threads,
        "blas": blas,
        "gpus": gpu_names(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(dist) for name, dist in
                     (("numpy", "numpy"), ("tensornet", "tensornet"), ("torch", "torch"),
                      ("cupy", "cupy-cuda12x"), ("cupy13", "cupy-cuda13x"))
                     if _version(dist)},
        "commit": git_commit(),
    }


# ---------------------------------------------------------------------- data
@dataclass
class Data:
    """Host arrays; ``x_*`` are ``(N, 1, 28, 28)`` float32 (``(N, 784)`` for the MLP)."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def synthetic_mnist(n: int, seed: int = SEED, classes: int = 10):
    """MNIST-shaped ``(x (n, 1, 28, 28) float32 in [0, 1], y int64)`` with learnable classes:
    each class is a random prototype image plus noise, so accuracy means something."""
    rng = np.random.default_rng([seed, 12345])
    prototypes = rng.random((classes, 28 * 28), dtype=np.float32)
    y = rng.integers(0, classes, n).astype(np.int64)
    x = rng.random((n, 28 * 28), dtype=np.float32)
    x *= 0.7
    x += 0.3 * prototypes[y]
    return x.reshape(n, 1, 28, 28), y


def load_data(model: str, synthetic: bool = False, train_samples: int | None = None) -> Data:
    """Fashion-MNIST (``tn.data.fashion_mnist``) or synthetic data, shaped for ``model``.

    ``train_samples`` keeps only the first that many training samples (quick runs).
    """
    if synthetic:
        x_train, y_train = synthetic_mnist(60000, SEED)
        x_test, y_test = synthetic_mnist(10000, SEED + 1)
        name = "synthetic (MNIST-shaped)"
    else:
        import tensornet as tn
        import tensornet.data  # noqa: F401  (tn.data)
        x_train, y_train = tn.data.fashion_mnist("train")
        x_test, y_test = tn.data.fashion_mnist("test")
        name = "Fashion-MNIST"
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    if model == "mlp":
        x_train = np.ascontiguousarray(x_train.reshape(len(x_train), -1))
        x_test = np.ascontiguousarray(x_test.reshape(len(x_test), -1))
    return Data(name, x_train, y_train, x_test, y_test)


def training_arrays(model: str, synthetic: bool, samples: int):
    """``(x, y, name)``: the training samples of a CPU benchmark whose PyTorch side runs in
    ``benchmarks/torch_side.py``; both processes call this, so they train on the same
    samples. Synthetic: ``synthetic_mnist(samples)``; else the first ``samples``
    Fashion-MNIST training images. ``x`` is ``(N, 784)`` for the MLP."""
    if synthetic:
        x, y = synthetic_mnist(samples, SEED)
        if model == "mlp":
            x = np.ascontiguousarray(x.reshape(samples, -1))
        return x, y, "synthetic (MNIST-shaped)"
    data = load_data(model, train_samples=samples)
    return data.x_train, data.y_train, data.name


def epoch_order(n: int, epoch: int, seed: int = SEED) -> np.ndarray:
    """The shuffled sample order of ``epoch``: the one ``tn.data.DataLoader(shuffle=True,
    seed=seed)`` uses, so hand-written and PyTorch loops see the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


# ---------------------------------------------------------------------- models
def _layers(nn, name: str, sizes=MLP_SIZES, channels: int = 8) -> list:
    """The benchmark model's layers from ``nn`` (tensornet's or PyTorch's: same names)."""
    if name == "mlp":
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(fan_in, fan_out))
        return layers
    if name == "cnn":
        c = channels
        return [nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * c * 49, 128), nn.ReLU(),
                nn.Dropout(0.3), nn.Linear(128, 10)]
    raise ValueError(f"unknown benchmark model {name!r}; expected 'mlp' or 'cnn'")


def build_model(name: str, device="cpu", seed: int = SEED, sizes=MLP_SIZES, channels: int = 8):
    """The benchmark model as a tensornet Sequential, initialised from ``seed``.

    mlp: Linear 784-256-120-64-10 with ReLU between (other ``sizes`` for the sweeps).
    cnn: [Conv2d(1,8,3,p=1), BN, ReLU, MaxPool2] -> [Conv2d(8,16,3,p=1), BN, ReLU, MaxPool2]
         -> Flatten -> Linear(784,128) -> ReLU -> Dropout(0.3) -> Linear(128,10)
         (``channels`` C instead of 8: C and 2C channels, Linear(2C*49, 128)).

    Training loops call ``model.backward(grad, input_grad=False)``: the first layer skips
    the gradient with respect to the data, as PyTorch does for inputs that do not require
    grad (``tn.train.train_step`` does the same).
    """
    import tensornet as tn
    tn.manual_seed(seed)
    return tn.nn.Sequential(*_layers(tn.nn, name, sizes, channels)).to(device)


def build_optimizer(name: str, params):
    """SGD(lr 0.01, momentum 0.9) for the MLP, Adam(lr 1e-3) for the CNN."""
    import tensornet as tn
    if name == "mlp":
        return tn.optim.SGD(params, **MLP_SGD)
    return tn.optim.Adam(params, **CNN_ADAM)


def readme_mlp_training(samples: int = 60000, sizes=MLP_SIZES):
    """``(model, opt, loss_fn, loader)`` for the README's training loop on the benchmark
    MLP (or one of layer ``sizes``): synthetic Fashion-MNIST-shaped data, flattened, batch
    ``BATCH``, shuffled."""
    import tensornet as tn
    x, y = synthetic_mnist(samples, 0)
    x = np.ascontiguousarray(x.reshape(len(x), -1))
    model = build_model("mlp", sizes=sizes)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), BATCH, shuffle=True)
    return model, build_optimizer("mlp", model.parameters()), tn.nn.CrossEntropyLoss(), loader


def torch_twin(name: str, tn_model, device: str = "cpu", sizes=MLP_SIZES, channels: int = 8):
    """The same model in PyTorch, with ``tn_model``'s weights copied in, and its optimizer."""
    import torch
    from torch import nn

    model = nn.Sequential(*_layers(nn, name, sizes, channels))
    import tensornet as tn
    state = {k: torch.from_numpy(np.array(tn.asnumpy(v))) for k, v in tn_model.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    leftover = [k for k in missing if not k.endswith("num_batches_tracked")]
    if leftover or unexpected:
        raise RuntimeError(f"torch twin of {name}: state mismatch, missing {leftover}, "
                           f"unexpected {unexpected}")
    model = model.to(device)
    if name == "mlp":
        opt = torch.optim.SGD(model.parameters(), **MLP_SGD)
    else:
        opt = torch.optim.Adam(model.parameters(), **CNN_ADAM)
    return model, opt


def torch_epoch(torch, model, opt, x, y, order, batch: int = BATCH):
    """One PyTorch epoch over ``order`` in batches of ``batch`` (x, y: torch tensors);
    returns the last loss."""
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    loss = None
    for start in range(0, len(order), batch):
        idx = torch.from_numpy(order[start:start + batch])
        opt.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return loss.item()



# ---------------------------------------------------------------------- clocks and memory
def settle(seconds: float = 0.3) -> None:
    """Wait (untimed) between two sides of a comparison: the BLAS and OpenMP workers the
    last side used spin for a while after its last call (OpenBLAS: up to ~0.1 s), on
    cores the next side's threads need, even from another process."""
    time.sleep(seconds)


def median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


class Clock:
    """Wall and process-CPU time between ``start()`` and ``stop()``; ``sync`` (the device's
    synchronize) runs before each read so queued GPU work is counted."""

    def __init__(self, sync=None):
        self.sync = sync or (lambda: None)

    def start(self) -> None:
        self.sync()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def stop(self) -> tuple[float, float]:
        self.sync()
        return time.perf_counter() - self._wall, time.process_time() - self._cpu


def load_average() -> list | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none), then, on Linux,
    the share of the last 10 s in which runnable tasks waited for a CPU (PSI "some")."""
    if not hasattr(os, "getloadavg"):
        return None
    figures = list(os.getloadavg())
    try:
        with open("/proc/pressure/cpu") as f:
            figures.append(float(f.readline().split()[1].split("=")[1]))
    except (OSError, IndexError, ValueError):
        pass
    return figures


def format_load(figures) -> str:
    """'1.23 (CPU pressure 45%)': the 1-minute load average and the CPU pressure."""
    if not figures:
        return "n/a"
    text = f"{figures[0]:.2f}"
    return text + (f" (CPU pressure {figures[3]:.0f}%)" if len(figures) > 3 else "")


def _proc_status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class RssProbe:
    """Peak resident memory of this process over a region (Linux: VmHWM reset through
    ``/proc/self/clear_refs``; elsewhere ``ru_maxrss``, a whole-process peak)."""

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.baseline = _proc_status_mib("VmRSS")

    def stop(self) -> dict:
        peak = _proc_status_mib("VmHWM")
        if peak is None:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return {"kind": "RSS" if self.resettable else "RSS (process lifetime)",
                "peak_mib": peak,
                "baseline_mib": self.baseline,
                "training_mib": None if self.baseline is None else max(peak - self.baseline, 0.0)}
