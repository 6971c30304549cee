"""Shared command line and helpers of the example scripts (not part of the library)."""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # scripts write PNGs; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import tensornet as tn  # noqa: E402


def parse_args(name: str, doc: str, argv=None) -> argparse.Namespace:
    """``--out DIR`` (default runs/<name>), ``--device``, ``--quick``, ``--seed``."""
    parser = argparse.ArgumentParser(prog=f"{name}.py", description=doc.strip().splitlines()[0],
                                     epilog="See the module docstring for what it shows.")
    parser.add_argument("--out", type=Path, default=Path("runs") / name,
                        help="folder for the PNGs (default: runs/%(prog)s without .py)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or strict")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run in seconds (the test suite's smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tn.manual_seed(args.seed)
    return args


def fashion(split: str, n: int | None = None, flat: bool = False, seed: int = 0):
    """Fashion-MNIST ``(x, y)`` on the host, optionally a random subset of ``n`` samples and
    flattened to ``(N, 784)``."""
    x, y = tn.data.fashion_mnist(split)
    if n is not None and n < len(x):
        idx = np.random.default_rng(seed).choice(len(x), n, replace=False)
        x, y = x[idx], y[idx]
    if flat:
        x = x.reshape(len(x), -1)
    return x, y


def loaders(x, y, *, batch_size: int, device: str, val_fraction: float = 0.0, seed: int = 0,
            shuffle: bool = True):
    """A shuffled training DataLoader (and a validation one when ``val_fraction`` > 0)."""
    data = tn.data.ArrayDataset(x, y)
    if not val_fraction:
        return tn.data.DataLoader(data, batch_size, shuffle=shuffle, seed=seed, device=device)
    train, val = tn.data.random_split(data, [1.0 - val_fraction, val_fraction], seed=seed)
    return (tn.data.DataLoader(train, batch_size, shuffle=shuffle, seed=seed, device=device),
            tn.data.DataLoader(val, 1024, device=device))


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


class StepLosses(tn.callbacks.Callback):
    """Every training step's loss, as host floats (read back once per epoch, and by
    ``flush()`` after a run that raised, so the steps before a divergence are kept)."""

    def __init__(self):
        self.losses: list[float] = []
        self._pending = []

    def on_batch_end(self, run, step, loss) -> None:
        self._pending.append(loss)

    def on_epoch_end(self, run, logs) -> None:
        self.flush()

    def flush(self) -> list[float]:
        self.losses += [float(loss) for loss in self._pending]
        self._pending = []
        return self.losses


def smooth(values, beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average, for readable per-step loss curves."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1.0 - beta) * v
        out.append(avg / (1.0 - beta ** i))
    return np.asarray(out)
