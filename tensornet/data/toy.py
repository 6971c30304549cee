"""Small 2-D classification sets for debugging a model in seconds."""
from __future__ import annotations

import math

import numpy as np

from tensornet.random import host_rng


def _counts(n: int, classes: int, owner: str) -> list[int]:
    if n < classes or classes < 2:
        raise ValueError(f"{owner}: need classes >= 2 and n >= classes, got n={n}, "
                         f"classes={classes}")
    return [n // classes + (1 if k < n % classes else 0) for k in range(classes)]


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
    rng = np.random.default_rng(seed) if seed is not None else host_rng()
    xs, ys = [], []
    for k, count in enumerate(_counts(n, classes, "toy_spirals")):
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
    rng = np.random.default_rng(seed) if seed is not None else host_rng()
    xs, ys = [], []
    for k, count in enumerate(_counts(n, centers, "toy_blobs")):
        theta = 2.0 * math.pi * k / centers
        center = radius * np.array([math.cos(theta), math.sin(theta)])
        xs.append(center + rng.normal(0.0, std, (count, 2)))
        ys.append(np.full(count, k))
    return _shuffled(rng, np.concatenate(xs), np.concatenate(ys))
