"""CuPy (NVIDIA GPU) backend: the device, and the functional kernels it runs as one launch.

All GPU-specific code lives here and in the files this module imports (``cuda_kernels.py``
and ``cuda_window_kernels.py``: kernel sources; ``cupy_ops.py``: the kernel overrides;
``cuda_graph.py`` and ``cuda_matmul.py``: CUDA-graph steps and their GEMM).
Importing this module never imports CuPy: ``CupyBackend()`` does, so the core runs on
machines without a GPU.

Overrides (``@CupyBackend.override``, in ``cupy_ops.py``, each one kernel where the generic
math takes several launches): ReLU and its backward; softmax-cross-entropy forward (one warp
per row) and backward; im2col, col2im (a gather: deterministic, no atomics), max-pool
forward and backward (a gather too); ``matmul`` (a cuBLAS-free GEMM inside CUDA-graph
captures); ``scatter_add``. Optimizer rules arrive through ``fused_update`` and run as one
kernel per flat parameter buffer. Everything else is the generic array-API code running on
``cupy``.

Precision: float32 matmuls are true FP32 by default. TF32 tensor cores (faster, ~10-bit
mantissa products) are opt-in: ``get_backend("cuda").set_tf32(True)`` or the environment
variable ``CUPY_TF32=1``. CuPy keeps this setting process-wide, for every device.
"""
from __future__ import annotations

import os

import numpy as np
from array_api_compat import is_cupy_array

from . import register_backend
from .base import Backend, DeviceError, SyncPolicy, dtype_name
from .cuda_kernels import (BERNOULLI_DRAW, FUSED_DTYPES, KEYS_DRAW, NORMAL_DRAW, UNIFORM_DRAW,
                           KernelCache, update_spec)

INSTALL_HINT = ("pip install 'tensornet[cuda12]' (CUDA 12 driver) or 'tensornet[cuda13]' "
                "(CUDA 13); nvidia-smi shows the driver's CUDA version")
_NEEDS = "device='cuda' needs CuPy and an NVIDIA GPU"


def _import_cupy():
    """Import CuPy and check a GPU is really there; one clear DeviceError otherwise."""
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"{_NEEDS}: CuPy is not installed. Install it with "
                          f"{INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, or a driver too old
        raise DeviceError(f"{_NEEDS}: CuPy is installed but no CUDA device is usable ({exc}). "
                          f"Check nvidia-smi, and that the CuPy wheel matches the driver: "
                          f"{INSTALL_HINT}") from exc
    if count == 0:
        raise DeviceError(f"{_NEEDS}: CuPy is installed but no CUDA device was found")
    return cupy, count


def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device answers."""
    try:
        _import_cupy()
    except DeviceError:
        return False
    return True


def _env_tf32() -> bool:
    try:
        return int(os.environ.get("CUPY_TF32", "0")) > 0
    except ValueError:
        return False


class CupyBackend(Backend):
    """Arrays are ``cupy.ndarray`` on one GPU; random numbers are drawn on the GPU by a
    counter-based generator whose state (a key and a counter) lives on the host.

    ``launches`` counts tensornet's own kernel launches (not CuPy's operations).
    """

    name = "cupy"
    sync_policy = SyncPolicy.PER_EPOCH

    def __init__(self, index: int = 0, seed=None, tf32: bool | None = None):
        cupy, count = _import_cupy()
        if not 0 <= index < count:
            raise DeviceError(f"device='cuda:{index}' does not exist; this machine has {count} "
                              f"CUDA device(s): cuda:0 .. cuda:{count - 1}")
        self.xp = cupy
        self.index = index
        self.device = f"cuda:{index}"
        self._cuda_device = cupy.cuda.Device(index)
        self._kernels = KernelCache(cupy)
        # The CUDA-graph step (cuda_graph.GraphedStep) whose rehearsal, capture or replay is
        # running now, or None: kernels consult it to record instead of launch.
        self._capture = None
        self._peak_bytes = 0
        super().__init__(seed)
        self.seed(seed)
        self.set_tf32(_env_tf32() if tf32 is None else tf32)

    @property
    def launches(self) -> int:
        return self._kernels.launches

    # ------------------------------------------------------------------ arrays
    def owns(self, x) -> bool:
        return isinstance(x, self.xp.ndarray) and x.device.id == self.index

    def asarray(self, x, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        with self._cuda_device:
            if isinstance(x, self.xp.ndarray) and not self.owns(x):
                raise DeviceError(f"asarray on {self.device!r} got an array on cuda:{x.device.id}; "
                                  f"move it with tensornet.to_device(x, {self.device!r})")
            return self.xp.asarray(x, dtype=dtype)

    def _copy_from_peer(self, x):
        with self._cuda_device:
            return x.copy()

    def to_numpy(self, x) -> np.ndarray:
        return self.xp.asnumpy(x)

    def zeros(self, shape, dtype=None):
        with self._cuda_device:
            return super().zeros(shape, dtype)

    def ones(self, shape, dtype=None):
        with self._cuda_device:
            return super().ones(shape, dtype)

    def empty(self, shape, dtype=None):
        with self._cuda_device:
            return super().empty(shape, dtype)

    def full(self, shape, value, dtype=None):
        with self._cuda_device:
            return super().full(shape, value, dtype)

    def synchronize(self) -> None:
        self._cuda_device.synchronize()

    def collective_allreduce(self, comm):
        """NCCL between the ranks' GPUs when every rank has it, else the generic path
        through host memory, said once (issue 18; see nccl.py)."""
        from .nccl import nccl_allreduce

        return nccl_allreduce(self, comm) or super().collective_allreduce(comm)

    # ------------------------------------------------------------------ random numbers
    # A counter-based generator (as Philox or JAX's): draw number ``counter`` under ``key``
    # is a hash of (key, counter, element index), computed by one kernel
    # (cuda_kernels.*_DRAW). Its whole state is two integers on the host: a checkpoint holds
    # it exactly (GPU resume is bit-identical), and a CUDA-graph step that reads the counter
    # from device memory draws the same masks as eager steps would.
    def seed(self, seed):
        super().seed(seed)
        self._key = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0])
        self._counter = 0

    def get_rng_state(self) -> dict:
        return {"host": super().get_rng_state(), "key": self._key, "counter": self._counter}

    def set_rng_state(self, state: dict) -> None:
        """Restore what ``get_rng_state`` returned; ValueError (nothing changed) when it is
        not such a state."""
        if not isinstance(state, dict) or set(state) != {"host", "key", "counter"}:
            raise ValueError(f"{self.device}: an RNG state is a dict with 'host', 'key' and "
                             f"'counter', got {state!r:.100}")
        key, counter = state["key"], state["counter"]
        for name, value in (("key", key), ("counter", counter)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                    or not 0 <= int(value) < 2**64:
                raise ValueError(f"{self.device}: RNG state {name!r} must be an integer in "
                                 f"[0, 2**64), got {value!r}")
        probe = np.random.default_rng()
        try:
            probe.bit_generator.state = state["host"]
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"{self.device}: damaged host RNG state ({exc})") from exc
        super().set_rng_state(state["host"])
        self._key, self._counter = int(key), int(counter)

    def _draw(self, spec, shape, dtype, *scalars):
        """One draw: ``spec`` over a new array, at the next counter."""
        counter = self._counter
        self._counter += 1
        with self._cuda_device:
            out = self.xp.empty(shape, dtype=dtype)
            if out.size:
                self._kernels.elementwise(spec)(np.uint64(self._key), np.uint64(counter),
                                                *scalars, out)
        return out

    def _no_rng_in_graph(self, what: str) -> None:
        if self._capture is not None and self._capture.phase == "capture":
            raise NotImplementedError(
                f"{what} inside a CUDA-graph step: only bernoulli() (Dropout, DropConnect) "
                f"draws random numbers in graph mode (the graph advances its counter in "
                f"device memory); train this model with cuda_graph=False")

    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        self._no_rng_in_graph("normal()")
        return self._draw(NORMAL_DRAW, shape, self.dtype(dtype), np.float64(mean),
                          np.float64(std))

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        self._no_rng_in_graph("uniform()")
        return self._draw(UNIFORM_DRAW, shape, self.dtype(dtype), np.float64(low),
                          np.float64(high - low))

    def bernoulli(self, shape, p, dtype=None):
        if self._capture is not None and self._capture.phase == "capture":
            return self._capture.bernoulli(shape, p, self.dtype(dtype))
        return self._draw(BERNOULLI_DRAW, shape, self.dtype(dtype), np.float64(p))

    def permutation(self, n: int):
        # argsort of 64-bit random keys (ties are vanishingly rare and would only make two
        # neighbours keep their order).
        self._no_rng_in_graph("permutation()")
        keys = self._draw(KEYS_DRAW, (int(n),), self.xp.uint64)
        with self._cuda_device:
            return self.xp.argsort(keys).astype(self.xp.int64, copy=False)

    # ------------------------------------------------------------------ optimizer updates
    def fused_update(self, update, param, grad, states, scalars: dict) -> None:
        """One kernel launch: ``update.body`` over the flat buffers, scalars in the
        parameter's dtype. Rules without a kernel body, and float16, run generically
        (refused inside CUDA-graph steps, where they would run eagerly at every replay)."""
        values = tuple(scalars[name] for name in update.scalars)
        if update.body is None or dtype_name(param.dtype) not in FUSED_DTYPES:
            if self._capture is not None:
                self._capture.refuse_generic_update(update, param)
            return super().fused_update(update, param, grad, states, scalars)
        if self._capture is not None:
            return self._capture.fused_update(update, param, grad, states, values)
        t = param.dtype.type
        self._kernels.elementwise(update_spec(update, device_scalars=False))(
            grad, *(t(v) for v in values), param, *states)

    def graphed(self, step, model, optimizer):
        """``step`` replayed as one CUDA graph per call (see ``backends/cuda_graph.py`` for
        what it captures, what it refuses and its limits)."""
        from .cuda_graph import GraphedStep
        return GraphedStep(self, step, model, optimizer)

    # ------------------------------------------------------------------ precision, memory
    def set_tf32(self, enabled: bool) -> None:
        """Allow (True) or forbid (False, the default) TF32 tensor cores in float32 cuBLAS
        matmuls. CuPy applies it process-wide; GPUs before Ampere ignore it with a warning.
        The graph-mode GEMM kernel always computes in full FP32."""
        try:
            from cupy._core import _routines_linalg as linalg
            tf32, default = linalg.COMPUTE_TYPE_TF32, linalg.COMPUTE_TYPE_DEFAULT
        except (ImportError, AttributeError):  # private names; their values in CuPy 13/14
            tf32, default = 7, 1
        with self._cuda_device:
            self.xp._core.set_compute_type(self.xp.float32, tf32 if enabled else default)
            # Below sm_80 CuPy warns and keeps DEFAULT: report what it really uses.
            self.tf32 = self.xp._core.get_compute_type(self.xp.float32) == tf32

    def sample_memory(self) -> None:
        used = self.xp.get_default_memory_pool().used_bytes()
        if used > self._peak_bytes:
            self._peak_bytes = used

    def memory_info(self, reset_peak: bool = False) -> dict:
        """Bytes: ``used`` (live arrays in CuPy's pool), ``peak_used`` (max over
        ``sample_memory`` calls: CuPy has no peak counter), ``pool`` (held by the pool,
        live or cached), ``device_free`` and ``device_total`` (the driver's view). CUDA-graph
        steps report their private pools themselves (``GraphedStep.pool_bytes``)."""
        self.sample_memory()
        pool = self.xp.get_default_memory_pool()
        with self._cuda_device:
            free, total = self.xp.cuda.runtime.memGetInfo()
        info = {"used": pool.used_bytes(), "peak_used": self._peak_bytes,
                "pool": pool.total_bytes(), "device_free": free, "device_total": total}
        if reset_peak:
            self._peak_bytes = info["used"]
        return info

    def release_memory(self) -> None:
        """Give CuPy's cached (free) blocks back to the driver."""
        self.synchronize()
        self.xp.get_default_memory_pool().free_all_blocks()
        self.xp.get_default_pinned_memory_pool().free_all_blocks()

    def out_of_memory_error(self, exc, *, batch_size=None, where=None) -> MemoryError:
        self.release_memory()
        with self._cuda_device:
            free, total = self.xp.cuda.runtime.memGetInfo()
        smaller = (f"a batch size below {batch_size}" if batch_size else "a smaller batch size")
        place = f" in {where}" if where else ""
        return MemoryError(
            f"out of GPU memory on {self.device}{place}: {exc}. Try {smaller} (or a smaller "
            f"model). CuPy's cached memory was released; {free / 2**20:.0f} of "
            f"{total / 2**20:.0f} MiB are free now")

    def describe(self) -> dict:
        runtime = self.xp.cuda.runtime
        props = runtime.getDeviceProperties(self.index)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else name
        def dotted(v: int) -> str:  # CUDA encodes 12.4 as 12040
            return f"{v // 1000}.{v % 1000 // 10}"

        return {"device": self.device, "library": f"cupy {self.xp.__version__}",
                "gpu": f"{name}, {props['totalGlobalMem'] / 2**30:.1f} GiB, compute capability "
                       f"{props['major']}.{props['minor']}",
                "cuda": f"runtime {dotted(runtime.runtimeGetVersion())}, driver "
                        f"{dotted(runtime.driverGetVersion())}",
                "tf32": "on" if self.tf32 else "off"}


def _parse(text: str):
    if text in ("cuda", "gpu", "cupy"):
        return "cuda:0"
    if text.startswith("cuda:") and text[5:].isdigit():
        return f"cuda:{int(text[5:])}"
    return None


register_backend("cupy", parse=_parse, build=lambda key: CupyBackend(int(key[5:])),
                 detect=lambda x: f"cuda:{x.device.id}" if is_cupy_array(x) else None,
                 examples=("cuda", "cuda:N"))


from . import cupy_ops  # noqa: E402,F401  (registers the kernel overrides)
