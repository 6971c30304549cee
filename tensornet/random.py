"""Global seeding.

Weight initialisation draws on the host with one NumPy Generator (so a seed gives the same
initial weights on every backend); each backend keeps its own generator for dropout masks
and shuffling. ``manual_seed`` seeds them all: the backends that exist, and every backend
created later, at its creation (as ``torch.manual_seed`` seeds CUDA lazily). So a
``manual_seed`` at the top of a script fixes its masks, shuffles and weights, whichever
device the script first touches afterwards.
"""
from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping

import numpy as np

from tensornet.backends import DeviceError, created_backends, get_backend, on_backend_created

_host = np.random.default_rng()
_seed: int | None = None  # the last manual_seed, applied to backends created later


def manual_seed(seed: int) -> None:
    """Seed the host generator (weight init) and every backend's generator (dropout,
    shuffling), the backends created later included. Every backend gets the same seed
    (``seed + 1``). Initial weights are drawn on the host, so they are the same on every
    backend, and so are shuffles (permutations); the strict and torch backends also draw
    alike (NumPy's Generator in float64, converted), but the NumPy backend draws float32
    directly, so its dropout masks and random transforms differ from theirs."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    global _host, _seed
    _seed = int(seed)
    _host = np.random.default_rng(_seed)
    for backend in created_backends().values():
        _seed_backend(backend)


def _seed_backend(backend) -> None:
    """Seed ``backend`` from the last ``manual_seed`` (nothing before the first one)."""
    if _seed is not None:
        backend.seed(_seed + 1)


on_backend_created(_seed_backend)


def host_rng() -> np.random.Generator:
    """The generator weight initialisers draw from."""
    return _host


def get_rng_state() -> dict:
    """Host and per-backend generator states and the last seed (JSON-serialisable), for
    checkpoints: ``set_rng_state`` in a fresh process continues the same random streams."""
    return {"host": _host.bit_generator.state, "seed": _seed,
            "backends": {dev: b.get_rng_state() for dev, b in created_backends().items()}}


def set_rng_state(state: dict) -> None:
    """Restore what ``get_rng_state`` returned, all or nothing.

    Backends the state does not name (made after it was taken) are seeded from its seed, as
    they would have been at their creation in the saved run. A device the state names that
    this machine lacks (a GPU checkpoint loaded on a laptop) is skipped with a
    ``RuntimeWarning`` naming it; anything else that does not fit (a damaged state for a
    device that is here, or for the host) raises ``ValueError`` and leaves every generator
    as it was.
    """
    if not isinstance(state, Mapping) or not isinstance(state.get("host"), Mapping):
        raise ValueError(f"set_rng_state: expected the dict get_rng_state() returns (with a "
                         f"'host' generator state), got {type(state).__name__}")
    saved = state.get("backends", {})
    seed = state.get("seed")
    if not isinstance(saved, Mapping):
        raise ValueError(f"set_rng_state: 'backends' must map devices to generator states, "
                         f"got {type(saved).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"set_rng_state: 'seed' must be an integer or None, got {seed!r}")
    present, missing = [], []
    for device, backend_state in saved.items():
        if not isinstance(device, str):
            raise ValueError(f"set_rng_state: 'backends' must be keyed by device names, got "
                             f"{device!r}")
        try:
            present.append((device, get_backend(device), backend_state))
        except (DeviceError, ValueError) as exc:  # no such device here, or an unknown kind
            missing.append(f"{device!r} ({exc})")
    global _seed
    named = [backend for _, backend, _ in present]
    unnamed = [b for b in created_backends().values() if all(b is not n for n in named)]
    backup = (_host.bit_generator.state, [(b, b.get_rng_state()) for b in named + unnamed])
    where = "the host generator"
    try:
        _host.bit_generator.state = dict(state["host"])
        for device, backend, backend_state in present:
            where = f"device {device!r}"
            backend.set_rng_state(backend_state)
    except Exception as exc:  # whatever a generator refuses: all is put back, then raised
        _host.bit_generator.state = backup[0]
        for backend, old in backup[1]:
            backend.set_rng_state(old)
        raise ValueError(f"set_rng_state: the saved state of {where} is damaged ({exc!r}); "
                         f"no generator was changed") from exc
    _seed = None if seed is None else int(seed)
    for backend in unnamed:
        _seed_backend(backend)
    if missing:
        warnings.warn(f"set_rng_state: this machine lacks {', '.join(missing)}; their saved "
                      f"generator states were skipped, so draws there will not repeat the "
                      f"saved run", RuntimeWarning, stacklevel=2)
