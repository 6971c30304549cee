"""Global seeding.

Weight initialisation draws on the host with one NumPy Generator (so a seed gives the same
initial weights on every backend); each backend keeps its own generator for dropout masks
and shuffling. ``manual_seed`` seeds them all.
"""
from __future__ import annotations

import numpy as np

_host = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the host generator (weight init) and every backend's generator (dropout, shuffle)."""
    global _host
    _host = np.random.default_rng(seed)
    from tensornet.backends import _CACHE
    for i, backend in enumerate(_CACHE.values()):
        backend.seed(seed + 1 + i)


def host_rng() -> np.random.Generator:
    """The generator weight initialisers draw from."""
    return _host


def get_rng_state() -> dict:
    """Host and per-backend generator states (JSON-serialisable), for checkpoints."""
    from tensornet.backends import _CACHE
    return {"host": _host.bit_generator.state,
            "backends": {dev: b.get_rng_state() for dev, b in _CACHE.items()}}


def set_rng_state(state: dict) -> None:
    from tensornet.backends import get_backend
    _host.bit_generator.state = state["host"]
    for dev, backend_state in state.get("backends", {}).items():
        try:
            get_backend(dev).set_rng_state(backend_state)
        except Exception:  # a device saved elsewhere (a GPU) that this machine lacks
            pass
