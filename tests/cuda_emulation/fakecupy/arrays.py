"""The array half of the fake ``cupy``: a device array that is a NumPy array underneath, and
the namespace functions that make and combine such arrays.

``ndarray`` subclasses ``numpy.ndarray`` (so NumPy does the arithmetic) and adds what CuPy
arrays have and tensornet uses: ``.device.id``, ``.data.ptr``, ``.get()``/``.set()``, 0-d
arrays (never NumPy scalars) from indexing and reductions. Like CuPy it refuses to mix with
host arrays in arithmetic (``TypeError``), and ``empty`` hands out garbage (NaN / 0x7f...)
rather than zeros, so a kernel that leaves outputs unwritten is caught. The namespace offers a
NumPy function only where CuPy 14 has the same name (when the real CuPy is importable, its own
list decides), each returning device arrays.
"""
from __future__ import annotations

import functools
import inspect
import weakref

import numpy as np

OutOfMemoryError = type("OutOfMemoryError", (MemoryError,), {"__module__": "cupy.cuda.memory"})


class _State:
    """Process-wide emulated device state, reset by ``fakecupy.install``."""
    device_count = 1
    current = 0
    compute_capability = "90"
    total_memory = 8 * 2**30
    live: dict = {}      # id(buffer) -> nbytes, for the memory pool's used_bytes()
    launches: list = []  # (kind, kernel name, grid, block) of every kernel launch


STATE = _State()


class MemoryPointer:
    def __init__(self, ptr: int, device_id: int):
        self.ptr = ptr
        self.device_id = device_id


def _track(array) -> None:
    """Count each distinct buffer behind live device arrays once (the pool's used bytes)."""
    base = array
    while isinstance(getattr(base, "base", None), np.ndarray):
        base = base.base
    key = id(base)
    if key not in STATE.live:
        STATE.live[key] = base.nbytes
        weakref.finalize(base, STATE.live.pop, key, None)


def is_host_array(x) -> bool:
    return isinstance(x, np.ndarray) and not isinstance(x, ndarray)


def _refuse_host(what, values) -> None:
    for v in values:
        if is_host_array(v):
            raise TypeError(f"{what}: Unsupported type {type(v)} (a NumPy array mixed with "
                            f"cupy arrays; move it with cupy.asarray first)")
        if isinstance(v, (list, tuple)):
            _refuse_host(what, v)


def to_device(result):
    """NumPy results -> device arrays (numpy scalars become 0-d arrays, as CuPy returns)."""
    if isinstance(result, ndarray):
        return result
    if isinstance(result, np.ndarray):
        return result.view(ndarray)
    if isinstance(result, np.generic):
        return np.asarray(result).view(ndarray)
    if isinstance(result, tuple):
        return tuple(to_device(r) for r in result)
    if isinstance(result, list):
        return [to_device(r) for r in result]
    return result


class Device:
    def __init__(self, device=None):
        self.id = STATE.current if device is None else int(device)
        self._previous = []

    def __enter__(self):
        if not 0 <= self.id < STATE.device_count:
            raise RuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")
        self._previous.append(STATE.current)
        STATE.current = self.id
        return self

    def __exit__(self, *exc):
        STATE.current = self._previous.pop()

    def use(self):
        STATE.current = self.id

    def synchronize(self):
        pass

    @property
    def compute_capability(self) -> str:
        return STATE.compute_capability

    @property
    def mem_info(self):
        return memory_info()

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id} (emulated)>"


def memory_info() -> tuple:
    used = sum(STATE.live.values())
    return max(STATE.total_memory - used, 0), STATE.total_memory


class ndarray(np.ndarray):
    """A device array of the emulated GPU (see the module docstring)."""

    def __array_finalize__(self, obj):
        self._device_id = getattr(obj, "_device_id", STATE.current)
        _track(self)

    @property
    def device(self):
        return Device(self._device_id)

    @property
    def data(self):
        return MemoryPointer(self.__array_interface__["data"][0], self._device_id)

    @property
    def __cuda_array_interface__(self):
        interface = dict(self.__array_interface__)
        interface["version"] = 3
        return interface

    def get(self, stream=None, order="C", out=None, blocking=True):
        host = np.array(self.view(np.ndarray), order=order, copy=True)
        if out is not None:
            out[...] = host
            return out
        return host

    def set(self, arr, stream=None):
        self[...] = np.asarray(arr)

    def __getitem__(self, key):
        return to_device(super().__getitem__(key))

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _refuse_host(f"cupy.{ufunc.__name__}", inputs + tuple(kwargs.get("out", ())))
        inputs = tuple(x.view(np.ndarray) if isinstance(x, ndarray) else x for x in inputs)
        given = kwargs.get("out")
        if given is not None:
            kwargs["out"] = tuple(x.view(np.ndarray) if isinstance(x, ndarray) else x
                                  for x in given)
        with np.errstate(all="ignore"):  # a GPU raises no floating-point warnings
            result = getattr(ufunc, method)(*inputs, **kwargs)
        if given is not None and method != "at":
            # CuPy returns the out arrays themselves, not new views of them
            return given[0] if len(given) == 1 else tuple(given)
        return to_device(result)

    def __repr__(self):
        return "fakecupy." + np.array_repr(self.view(np.ndarray))

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")


ndarray.__module__ = "cupy"
ndarray.__qualname__ = ndarray.__name__ = "ndarray"

_GARBAGE = {"f": np.nan, "c": np.nan, "i": 0x7F, "u": 0x7F, "b": True}


def _fill_garbage(out: np.ndarray) -> None:
    kind = out.dtype.kind
    if kind in "iu":
        out.view(np.uint8)[...] = 0x7F
    else:
        out[...] = _GARBAGE.get(kind, 0)


def _check_memory(shape, dtype) -> None:
    count = int(np.prod(shape, dtype=np.int64)) if np.ndim(shape) else int(shape)
    nbytes = count * np.dtype(dtype).itemsize
    free, total = memory_info()
    if nbytes > free:
        raise OutOfMemoryError(f"Out of memory allocating {nbytes:,} bytes (allocated so far: "
                               f"{total - free:,} bytes).")


def empty(shape, dtype=float, order="C"):
    _check_memory(shape, dtype)
    out = np.empty(shape, dtype=dtype, order=order)
    _fill_garbage(out)
    return out.view(ndarray)


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    out = np.empty_like(a.view(np.ndarray), dtype=dtype, order=order, shape=shape)
    _fill_garbage(out)
    return out.view(ndarray)


def asarray(a, dtype=None, order=None, *, copy=None, blocking=False):
    if isinstance(a, ndarray):
        same = dtype is None or np.dtype(dtype) == a.dtype
        if copy is False and not same:
            raise ValueError("cupy.asarray(copy=False) needs a copy to change the dtype")
        if copy or not same:
            return a.astype(a.dtype if dtype is None else dtype, copy=True)
        return a
    if copy is False:
        raise ValueError("cupy.asarray(copy=False) of host data: a transfer is a copy")
    if hasattr(a, "__array_namespace__") and not isinstance(a, np.ndarray):
        raise TypeError(f"cupy.asarray: cannot convert {type(a).__module__}."
                        f"{type(a).__name__} (not a host or CuPy array)")
    return np.array(a, dtype=dtype, order=order or "K", copy=True).view(ndarray)


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    if isinstance(obj, ndarray):
        out = np.array(obj.view(np.ndarray), dtype=dtype, copy=copy, order=order, ndmin=ndmin)
        return out.view(ndarray)
    return np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin).view(ndarray)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    import sys
    return sys.modules["cupy"] if any(isinstance(a, ndarray) for a in args) else np


SPECIAL = {"empty": empty, "empty_like": empty_like, "asarray": asarray,
           "array": array, "asnumpy": asnumpy, "get_array_module": get_array_module}


def namespace_function(name: str, real):
    """``cupy.<name>``: NumPy's function of that name, on and to device arrays. ``real`` is the
    real CuPy module when it is importable: then only names it has exist, and each call must
    fit the real function's signature (CuPy's parameter names differ from NumPy's in places)."""
    if real is not None and not hasattr(real, name):
        raise AttributeError(f"module 'cupy' has no attribute {name!r} (CuPy 14 lacks it, so "
                             f"the emulation refuses it too)")
    if name == "ndarray":
        return ndarray
    if name in SPECIAL:
        return _checked(SPECIAL[name], name, real)
    value = getattr(np, name)
    if isinstance(value, type) or not callable(value):
        return value  # dtypes (cupy.float32 is numpy.float32), constants, finfo/iinfo

    @functools.wraps(value)
    def wrapper(*args, **kwargs):
        _refuse_host(f"cupy.{name}", args)
        with np.errstate(all="ignore"):
            return to_device(value(*args, **kwargs))
    return _checked(wrapper, name, real)


def _checked(function, name, real):
    try:
        signature = inspect.signature(getattr(real, name))
    except (TypeError, ValueError, AttributeError):  # no real CuPy, or a Cython function
        return function

    @functools.wraps(function)
    def checked(*args, **kwargs):
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"cupy.{name}{signature}: {exc}") from None
        return function(*args, **kwargs)
    return checked
