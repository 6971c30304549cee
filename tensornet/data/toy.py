"""Small 2-D classification sets for debugging a model in seconds."""
from __future__ import annotations

import math
import numbers

import numpy as np

from tensornet.random import host_rng


def _counts(n: int, classes: int, owner: str, classes_name: str = "classes") -> list[int]:
    for name, value in (("n", n), (classes_name, classes)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{owner}: {name} must be an integer, got {value!r}")
    if n < classes or classes < 2:
        raise ValueError(f"{owner}: need {classes_name} >= 2 and n >= {classes_name}, got "
                         f"n={n}, {classes_name}={classes}")
    return [n // classes + (1 if k < n % classes else 0) for k in range(classes)]


def _real(owner: str, name: str, value, low: float | None = None) -> float:
    """``value`` as a finite float (>= ``low`` when given): NaN noise made every point NaN."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or (low is not None and value < low):
        bound = f" >= {low:g}" if low is not None else ""
        raise ValueError(f"{owner}: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def _shuffled(rng, x: np.ndarray, y: np.ndarray):
    order = rng.permutation(x.shape[0])
    return x[order].astype(np.float32), y[order].astype(np.int64)


def toy_spirals(n: int = 1500, classes: int = 3, noise: float = 0.1, turns: float = 0.75,
                seed=None):
    """Interleaved spiral arms (the CS231n set): ``(x float32 (n, 2), y int64 (n,))``.

    Arm ``k`` sweeps radius 0..1 while its angle turns ``turns`` of a circle from
    ``2*pi*k/classes``; ``noise`` is the standard deviation of the angle jitter (radians).
    Not linearly separable: a linear model stays near chance, a small MLP exceeds 95%.
    """
    counts = _counts(n, classes, "toy_spirals")
    noise = _real("toy_spirals", "noise", noise, 0.0)
    turns = _real("toy_spirals", "turns", turns)
    rng = np.random.default_rng(seed) if seed is not None else host_rng()
    xs, ys = [], []
    for k, count in enumerate(counts):
        radius = np.linspace(0.05, 1.0, count)
        angle = (2.0 * math.pi * k / classes + radius * 2.0 * math.pi * turns
                 + rng.normal(0.0, noise, count))
        xs.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
        ys.append(np.full(count, k))
    return _shuffled(rng, np.concatenate(xs), np.concatenate(ys))


def toy_blobs(n: int = 1000, centers: int = 4, std: float = 1.0, radius: float = 5.0,
              seed=None):
    """Gaussian blobs around ``centers`` points on a circle of ``radius``:
    ``(x float32 (n, 2), y int64 (n,))``. With the defaults the classes barely overlap."""
    counts = _counts(n, centers, "toy_blobs", "centers")
    std = _real("toy_blobs", "std", std, 0.0)
    radius = _real("toy_blobs", "radius", radius)
    rng = np.random.default_rng(seed) if seed is not None else host_rng()
    xs, ys = [], []
    for k, count in enumerate(counts):
        theta = 2.0 * math.pi * k / centers
        center = radius * np.array([math.cos(theta), math.sin(theta)])
        xs.append(center + rng.normal(0.0, std, (count, 2)))
        ys.append(np.full(count, k))
    return _shuffled(rng, np.concatenate(xs), np.concatenate(ys))
