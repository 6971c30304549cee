"""A fake ``cupy`` for the tests: NumPy arrays as device memory, kernels compiled with g++.

    from fakecupy import install
    cupy = install(monkeypatch)          # sys.modules['cupy'] (and cupy.*, cupyx) -> the fake

After ``install``, ``import cupy`` anywhere (tensornet's CuPy backend included) gets the
fake, until the monkeypatch is undone. What is emulated: arrays and the NumPy-named namespace
(arrays.py), ``ElementwiseKernel`` (elementwise.py), ``RawModule``/``RawKernel`` (raw.py),
``cuda.Device``, ``cuda.runtime`` (device count, memory, properties), the default memory pool's
counters, ``random.default_rng``, ``cupyx.scatter_add``, ``_core.set_compute_type``. What is
not: streams, events, CUDA graphs and private memory pools; touching them skips the test with
that reason (they need a real CUDA runtime).
"""
from __future__ import annotations

import sys
import types
import warnings
from functools import lru_cache

import numpy as np

from . import arrays
from .arrays import STATE
from .build import EmulatorCompileError, KernelFault, compiler  # noqa: F401
from .elementwise import ElementwiseKernel
from .raw import RawKernel, RawModule

NOT_EMULATED = ("Stream", "ExternalStream", "Event", "Graph", "MemoryPool", "PinnedMemoryPool",
                "using_allocator", "alloc_pinned_memory", "get_current_stream", "graph",
                "stream", "set_allocator", "get_elapsed_time")


@lru_cache(maxsize=None)
def real_cupy():
    """The real CuPy module (None when it is not installed): the fake offers only the names it
    has, with its signatures, so generic code calling what CuPy lacks fails here too."""
    current = sys.modules.get("cupy")
    if current is not None:
        return None if hasattr(current, "__fake_state__") else current
    try:
        import cupy
    except Exception:  # not installed (importing it needs no GPU)
        return None
    return cupy


class _Namespace(types.ModuleType):
    def __init__(self, name, resolve=None):
        super().__init__(name)
        self._resolve = resolve

    def __getattr__(self, name):
        if name.startswith("__") or self._resolve is None:
            raise AttributeError(name)
        value = self._resolve(name)
        setattr(self, name, value)
        return value


def _not_emulated(module: str):
    def resolve(name):
        if name in NOT_EMULATED:
            import pytest
            pytest.skip(f"{module}.{name}: streams, CUDA graphs and private memory pools need "
                        f"a real CUDA runtime (not emulated)")
        raise AttributeError(f"module {module!r} has no attribute {name!r} in the emulation")
    return resolve


class _Pool:
    def used_bytes(self):
        return sum(STATE.live.values())

    def total_bytes(self):
        return self.used_bytes()

    def free_bytes(self):
        return 0

    def free_all_blocks(self):
        pass

    def n_free_blocks(self):
        return 0


_POOL, _PINNED_POOL = _Pool(), _Pool()


class _Generator:
    """``cupy.random.Generator``: NumPy's generator, drawing device arrays."""

    def __init__(self, seed=None):
        self._rng = np.random.default_rng(seed)

    def __getattr__(self, name):
        method = getattr(self._rng, name)
        return lambda *a, **k: arrays.to_device(method(*a, **k))


def _runtime(cupy_cuda):
    runtime = _Namespace("cupy.cuda.runtime", _not_emulated("cupy.cuda.runtime"))
    runtime.getDeviceCount = lambda: STATE.device_count
    runtime.memGetInfo = arrays.memory_info
    runtime.runtimeGetVersion = lambda: 13000
    runtime.driverGetVersion = lambda: 13000
    runtime.deviceSynchronize = lambda: None
    runtime.getDevice = lambda: STATE.current
    runtime.getDeviceProperties = lambda i: {
        "name": b"CUDA emulation on the CPU", "totalGlobalMem": STATE.total_memory,
        "major": int(STATE.compute_capability[:-1]), "minor": int(STATE.compute_capability[-1]),
        "multiProcessorCount": 132, "maxThreadsPerBlock": 1024, "warpSize": 32}
    runtime.CUDARuntimeError = type("CUDARuntimeError", (RuntimeError,), {})
    return runtime


def _compute_types(core):
    """``cupy._core``'s cuBLAS compute-type switch, with CuPy's rule: TF32 needs sm_80 or
    later; below that it warns and keeps DEFAULT."""
    linalg = types.ModuleType("cupy._core._routines_linalg")
    linalg.COMPUTE_TYPE_TBD, linalg.COMPUTE_TYPE_DEFAULT, linalg.COMPUTE_TYPE_PEDANTIC = 0, 1, 2
    linalg.COMPUTE_TYPE_FP16, linalg.COMPUTE_TYPE_FP32, linalg.COMPUTE_TYPE_FP64 = 3, 4, 5
    linalg.COMPUTE_TYPE_BF16, linalg.COMPUTE_TYPE_TF32 = 6, 7
    chosen = {}

    def set_compute_type(dtype, compute_type):
        if compute_type in (6, 7) and int(STATE.compute_capability) < 80:
            warnings.warn("COMPUTE_TYPE_BF16 and COMPUTE_TYPE_TF32 are only available on GPUs "
                          "with compute capability 8.0 or higher. COMPUTE_TYPE_DEFAULT will be "
                          "used instead.")
            compute_type = 1
        chosen[np.dtype(dtype).char] = compute_type

    def get_compute_type(dtype):
        return chosen.get(np.dtype(dtype).char, 1)

    core.set_compute_type, core.get_compute_type = set_compute_type, get_compute_type
    core._routines_linalg = linalg
    return linalg


def build_modules() -> dict:
    """Fresh fake modules: {'cupy': ..., 'cupy.cuda': ..., ..., 'cupyx': ...}."""
    real = real_cupy()
    cupy = _Namespace("cupy", lambda name: arrays.namespace_function(name, real))
    cupy.__version__ = "14.2.0"
    cupy.ElementwiseKernel, cupy.RawModule, cupy.RawKernel = ElementwiseKernel, RawModule, RawKernel
    cupy.get_default_memory_pool = lambda: _POOL
    cupy.get_default_pinned_memory_pool = lambda: _PINNED_POOL
    cupy.is_available = lambda: STATE.device_count > 0
    names = sorted(n for n in dir(real or np) if not n.startswith("_") and hasattr(np, n))
    cupy.__all__ = [n for n in names if n not in ("cuda", "random", "linalg", "fft")]

    cuda = _Namespace("cupy.cuda", _not_emulated("cupy.cuda"))
    cuda.Device, cuda.runtime = arrays.Device, _runtime(cuda)
    cuda.is_available = cupy.is_available
    cuda.get_device_id = lambda: STATE.current
    memory = types.ModuleType("cupy.cuda.memory")
    memory.OutOfMemoryError = arrays.OutOfMemoryError
    device = types.ModuleType("cupy.cuda.device")
    device.Device = arrays.Device
    cuda.memory, cuda.device = memory, device

    random = _Namespace("cupy.random", lambda name: (
        lambda *a, **k: arrays.to_device(getattr(np.random, name)(*a, **k))))
    random.default_rng = _Generator
    random.Generator = _Generator
    core = types.ModuleType("cupy._core")
    linalg_types = _compute_types(core)
    submodules = {}
    for sub in ("linalg", "fft"):
        submodules[sub] = _Namespace(f"cupy.{sub}", lambda name, sub=sub: _wrap_sub(sub, name))
        submodules[sub].__all__ = [n for n in dir(getattr(np, sub)) if not n.startswith("_")]
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = _scatter_add
    cupy.cuda, cupy.random, cupy._core = cuda, random, core
    cupy.linalg, cupy.fft = submodules["linalg"], submodules["fft"]
    cupy.__fake_state__ = STATE
    return {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.runtime": cuda.runtime,
            "cupy.cuda.memory": memory, "cupy.cuda.device": device, "cupy.random": random,
            "cupy._core": core, "cupy._core._routines_linalg": linalg_types,
            "cupy.linalg": submodules["linalg"], "cupy.fft": submodules["fft"], "cupyx": cupyx}


def _wrap_sub(sub, name):
    fn = getattr(getattr(np, sub), name)
    return (lambda *a, **k: arrays.to_device(fn(*a, **k))) if callable(fn) else fn


def _scatter_add(a, slices, value):
    arrays._refuse_host("cupyx.scatter_add", (a, slices, value))
    host = [v.view(np.ndarray) if isinstance(v, arrays.ndarray) else v for v in (slices, value)]
    np.add.at(a.view(np.ndarray), *host)


def install(monkeypatch, *, device_count=1, compute_capability="90",
            total_memory=8 * 2**30):
    """Make ``import cupy`` return the fake for the rest of the test; returns it."""
    real_cupy()  # before the fake hides it
    STATE.device_count, STATE.current = device_count, 0
    STATE.compute_capability, STATE.total_memory = compute_capability, total_memory
    STATE.launches = []
    for name in list(sys.modules):
        if name.split(".")[0] in ("cupy", "cupyx", "cupy_backends") or \
                name.startswith("array_api_compat.cupy"):
            monkeypatch.delitem(sys.modules, name)
    modules = build_modules()
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return modules["cupy"]
