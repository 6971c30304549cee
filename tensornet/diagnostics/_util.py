"""Shared plumbing for the diagnostics: snapshots that let a probe leave no trace, and the
optional matplotlib import."""
from __future__ import annotations

import numpy as np

from tensornet.backends import get_backend, to_device
from tensornet.nn.grad_mode import cache_state, restore_cache


def figure(*, figsize):
    """A matplotlib Figure that needs no pyplot (no global state, no display).

    No layout engine: constrained/tight layout doubles the time to save a small panel; the
    callers place their axes with ``subplots_adjust``."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib, which is not installed; install it with "
                          "pip install 'tensornet[plot]'") from exc
    return Figure(figsize=figsize)


def is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def clone(x):
    """An independent copy of an array on its own device (a host round trip off NumPy)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    backend = get_backend(x)
    return backend.asarray(backend.to_numpy(x).copy())


def clone_tree(obj):
    """Copy nested dicts/lists/tuples, cloning every array in them (optimizer state dicts hold
    the very arrays that ``step`` updates in place, so a reference is no snapshot)."""
    if isinstance(obj, dict):
        return type(obj)((k, clone_tree(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_tree(v) for v in obj)
    if is_array(obj) and not np.isscalar(obj):
        return clone(obj)
    return obj


def on_device(x, backend):
    """Move host data (or another device's array) to ``backend``; own arrays pass through."""
    if backend.owns(x):
        return x
    if isinstance(x, np.ndarray) or not is_array(x):
        return backend.asarray(np.asarray(x))
    return to_device(x, backend)


class ModelSnapshot:
    """Parameters, buffers, gradients, train/eval flags, forward caches and generator states
    of a model, restorable exactly (gradients are cloned: a later backward may add into them
    in place). With the caches back, a probe run between a training forward and its
    backward leaves that backward's gradients exactly right.

    Parameter values are written back into the arrays the parameters hold then, not into
    new arrays: whatever keeps a reference to them (a captured CUDA graph, a user's
    variable) still sees the live weights."""

    def __init__(self, model, *others):
        """``others``: more modules whose forward caches to keep (the probe's loss)."""
        from tensornet.random import get_rng_state
        self.model = model
        self.params = [(p, p.data, clone(p.data)) for p in model.parameters()]
        self.buffers = [(m, name, clone(buf)) for m in model.modules()
                        for name, buf in m._buffers.items() if buf is not None]
        self.grads = [(p, None if p.grad is None else clone(p.grad)) for p in model.parameters()]
        self.modes = [(m, m.training) for m in model.modules()]
        self.caches = [(m, cache_state(m)) for m in model.modules()] + [
            (m, cache_state(m)) for m in others if hasattr(m, "_cache_attrs")]
        self.rng = get_rng_state()

    def restore(self) -> None:
        from tensornet.random import set_rng_state
        for param, array, value in self.params:
            array[...] = value
            param.data = array
        for module, name, value in self.buffers:
            setattr(module, name, value)  # a buffer: keeps it (non-)persistent
        for param, grad in self.grads:
            param.grad = grad
        for module, training in self.modes:
            object.__setattr__(module, "training", training)
        for module, cache in self.caches:
            restore_cache(module, cache)
        set_rng_state(self.rng)

