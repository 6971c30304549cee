"""Device backends: one small object per device that layers and optimizers compute through.

``get_backend(device)`` accepts a device string (``"cpu"``/``"numpy"``, ``"strict"``,
``"torch"``, ``"torch:cuda[:N]"``, ``"cuda[:N]"``), a Backend, or an array (its backend).
Backends are cached: one per device.

Each device file registers its family with ``register_backend`` when imported: adding a
backend is one file in this folder, found here by name (``pkgutil``), no list to edit.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, NamedTuple

import numpy as np

from .base import Backend, DeviceError, FusedUpdate, SyncPolicy, device_of, dtype_name

__all__ = ["Backend", "DeviceError", "FusedUpdate", "SyncPolicy", "get_backend", "backend_of",
           "parse_device",
           "available_backends", "register_backend", "device_of", "dtype_name", "to_device",
           "asnumpy", "created_backends", "on_backend_created"]


class _Family(NamedTuple):
    parse: Callable   # device string (lower case) -> canonical key, or None if not ours
    build: Callable   # canonical key -> Backend
    detect: Callable  # array -> canonical key, or None if not ours
    examples: tuple   # device strings for error messages and available_backends()
    single_device: bool  # every array this family detects belongs to one backend


_FAMILIES: dict[str, _Family] = {}
_CACHE: dict[str, Backend] = {}
_CREATION_HOOKS: list[Callable] = []
_BY_TYPE: dict[type, Backend] = {}  # array types that always live on one device
_discovered = False


def register_backend(family: str, *, parse, build, detect, examples, single_device=False):
    """Make a device family known (called by each device file when it is imported).

    ``parse(text)`` maps a lower-cased device string to a canonical key (or None);
    ``build(key)`` makes the Backend; ``detect(x)`` gives an array's key (or None); probes
    should not import the array library (``array_api_compat.is_*_array`` do not).
    ``single_device``: the family has one device (NumPy, strict), so an array type once
    detected maps straight to its backend afterwards.
    """
    _FAMILIES[family] = _Family(parse, build, detect, tuple(examples), bool(single_device))


def _discover() -> None:
    """Import every device file of this folder once (each registers its family)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def _parse(device: str) -> str:
    text = device.strip().lower()
    for _ in range(2):
        for family in _FAMILIES.values():
            key = family.parse(text)
            if key is not None:
                return key
        _discover()
    known = ", ".join(repr(e) for f in _FAMILIES.values() for e in f.examples)
    raise ValueError(f"unknown device {device!r}; expected one of {known}")


def parse_device(device: str) -> str:
    """The canonical key of a device string (``"gpu"`` -> ``"cuda:0"``, ``"numpy"`` ->
    ``"cpu"``); ValueError naming the known devices for anything else."""
    return _parse(device)


def get_backend(device="cpu") -> Backend:
    """The Backend for a device string, a Backend, or an array (its own backend)."""
    if isinstance(device, Backend):
        return device
    if device is None:
        device = "cpu"
    if not isinstance(device, str):
        return backend_of(device)
    key = _parse(device)
    backend = _CACHE.get(key)
    if backend is None:
        family = next(f for f in _FAMILIES.values() if f.parse(key) == key)
        backend = family.build(key)
        for hook in _CREATION_HOOKS:
            hook(backend)
        _CACHE[key] = backend
    return backend


def on_backend_created(hook: Callable) -> None:
    """Call ``hook(backend)`` for each backend created from now on, before its first use.

    ``tensornet.random`` registers one: a ``manual_seed`` seeds the backends made after it
    too, as ``torch.manual_seed`` seeds CUDA lazily.
    """
    if hook not in _CREATION_HOOKS:
        _CREATION_HOOKS.append(hook)


def created_backends() -> dict[str, Backend]:
    """The backends made so far, by canonical device key (``"cpu"``, ``"cuda:0"``...)."""
    return dict(_CACHE)


def backend_of(x) -> Backend:
    """The Backend an array belongs to (TypeError for anything that is not an array)."""
    backend = _BY_TYPE.get(type(x))
    if backend is not None:
        return backend
    for _ in range(2):
        # Multi-device families first: their array types may subclass NumPy's (a test
        # double of CuPy does), and NumPy's probe accepts subclasses.
        for family in sorted(_FAMILIES.values(), key=lambda f: f.single_device):
            key = family.detect(x)
            if key is not None:
                backend = get_backend(key)
                if family.single_device:
                    _BY_TYPE[type(x)] = backend
                return backend
        _discover()
    raise TypeError(f"cannot tell the device of {type(x).__name__}; expected an array of a "
                    f"tensornet backend (NumPy, array-api-strict, PyTorch or CuPy) or a "
                    f"device string such as 'cpu'")


def available_backends() -> dict[str, str]:
    """Which device families work here: example device -> 'ok' or the reason it does not."""
    _discover()
    found = {}
    for family in _FAMILIES.values():
        for device in family.examples[:1]:
            try:
                get_backend(device)
                found[device] = "ok"
            except Exception as exc:  # report, never raise: this feeds `tensornet info`
                found[device] = str(exc)
    return found


def to_device(x, device):
    """Move an array to ``device`` (a copy; the same array when it is already there).

    Host <-> device goes through a NumPy array; between two arrays of one GPU library the
    copy stays on the devices (``Backend.asarray`` of a CuPy array on another GPU).
    """
    target = get_backend(device)
    source = backend_of(x)
    if source is target:
        return x
    if source.name == target.name and hasattr(target, "_copy_from_peer"):
        return target._copy_from_peer(x)
    return target.asarray(source.to_numpy(x))


def asnumpy(x) -> np.ndarray:
    """Host NumPy copy (or view, on CPU) of an array of any backend."""
    return backend_of(x).to_numpy(x)


from . import numpy as _numpy  # noqa: E402,F401  (the default device registers eagerly)
