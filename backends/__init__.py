"""Device backends: one small object per device that layers and optimizers compute through.

``get_backend(device)`` accepts ``"cpu"``/``"numpy"``, ``"strict"``, ``"cuda"``/``"cuda:N"``,
a Backend, or an array (returns the array's backend). Backends are cached: one per device.
"""
from __future__ import annotations

import numpy as np

from .base import Backend, DeviceError, device_of, dtype_name

__all__ = ["Backend", "DeviceError", "get_backend", "available_backends", "device_of",
           "dtype_name", "to_device", "asnumpy"]

_CACHE: dict[str, Backend] = {}


def _canonical(device: str) -> str:
    dev = device.strip().lower()
    if dev in ("cpu", "numpy"):
        return "cpu"
    if dev in ("strict", "array_api_strict", "array-api-strict"):
        return "strict"
    if dev in ("cuda", "gpu", "cupy"):
        return "cuda:0"
    if dev.startswith("cuda:") and dev[5:].isdigit():
        return f"cuda:{int(dev[5:])}"
    raise ValueError(f"unknown device {device!r}; expected 'cpu', 'numpy', 'strict', 'cuda' "
                     f"or 'cuda:N'")


def get_backend(device="cpu") -> Backend:
    """The Backend for a device string, a Backend, or an array (its own backend)."""
    if isinstance(device, Backend):
        return device
    if device is None:
        device = "cpu"
    if not isinstance(device, str):
        return _backend_of_array(device)
    key = _canonical(device)
    backend = _CACHE.get(key)
    if backend is None:
        if key == "cpu":
            from .numpy import NumpyBackend
            backend = NumpyBackend()
        elif key == "strict":
            from .strict import StrictBackend
            backend = StrictBackend()
        else:
            from .cupy import CupyBackend
            backend = CupyBackend(int(key[5:]))
        _CACHE[key] = backend
    return backend


def _backend_of_array(x) -> Backend:
    mod = type(x).__module__
    if mod.startswith("cupy"):  # first: the tests' emulated CuPy arrays subclass numpy.ndarray
        return get_backend(f"cuda:{x.device.id}")
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return get_backend("cpu")
    if mod.startswith("array_api_strict"):
        return get_backend("strict")
    raise TypeError(f"cannot tell the device of {type(x).__name__}; expected a NumPy, "
                    f"array-api-strict or CuPy array, or a device string such as 'cpu'")


def available_backends() -> dict[str, str]:
    """Which devices work here: name -> 'ok' or the reason it does not."""
    found = {"cpu": "ok"}
    for dev in ("strict", "cuda"):
        try:
            get_backend(dev)
            found[dev] = "ok"
        except Exception as exc:  # report, never raise: this feeds `tensornet info`
            found[dev] = str(exc)
    return found


def to_device(x, device):
    """Move an array to ``device`` (a copy; the same array when it is already there).

    Host <-> GPU needs a copy whatever the protocol, so it goes through a NumPy array;
    GPU <-> GPU copies on the target device.
    """
    target = get_backend(device)
    source = _backend_of_array(x)
    if source is target:
        return x
    if source.name == "cupy" and target.name == "cupy":
        with target._cuda_device:
            return x.copy()
    return target.asarray(source.to_numpy(x))


def asnumpy(x) -> np.ndarray:
    """Host NumPy copy (or view, on CPU) of an array of any backend."""
    return _backend_of_array(x).to_numpy(x)
