"""k-fold cross-validation splits."""
from __future__ import annotations

import numbers

import numpy as np

from tensornet.random import host_rng

from .loader import Subset


def kfold(dataset, k: int = 5, seed: int | None = None, shuffle: bool = True):
    """Yield ``(train, validation)`` Subsets of ``dataset``, one pair per fold.

    The samples are split into ``k`` disjoint folds (sizes differing by at most one, the
    larger first, as scikit-learn's KFold); round i validates on fold i and trains on the
    others, so every sample is validated exactly once. ``shuffle`` (default) permutes the
    samples first, with ``seed`` or, without one, the generator ``tn.manual_seed`` seeds
    (as ``random_split``)::

        for fold, (train, val) in enumerate(tn.data.kfold(data, k=5, seed=0)):
            model = build(); tn.fit(model, loss, opt(model), DataLoader(train, 128), ...)
    """
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"kfold expected a dataset (with len() and indexing, e.g. "
                        f"tn.data.ArrayDataset(x, y)), got {type(dataset).__name__}")
    n = len(dataset)
    if n == 0:
        raise ValueError("kfold: the dataset is empty; there is nothing to split")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n:
        raise ValueError(f"kfold: k must be an integer in [2, {n}] (the number of samples), "
                         f"got {k!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                             or seed < 0):
        raise ValueError(f"kfold: seed must be a non-negative integer or None, got {seed!r}")
    if seed is not None and not shuffle:
        raise ValueError(f"kfold: seed={seed!r} has no effect with shuffle=False (the folds "
                         f"are the samples in order); drop the seed or shuffle, as "
                         f"scikit-learn's KFold asks")
    # checked here, at the call; the folds are drawn lazily, one per iteration
    return _folds(dataset, n, int(k), seed, shuffle)


def _folds(dataset, n: int, k: int, seed, shuffle: bool):
    if shuffle:
        rng = np.random.default_rng(seed) if seed is not None else host_rng()
        order = rng.permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    sizes = np.full(k, n // k, dtype=np.int64)
    sizes[:n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for i in range(k):
        val = order[bounds[i]:bounds[i + 1]]
        train = np.concatenate([order[:bounds[i]], order[bounds[i + 1]:]])
        yield Subset(dataset, train), Subset(dataset, val)
