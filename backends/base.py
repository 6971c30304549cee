"""The device interface every backend offers, written once against the array API standard.

A Backend is one device's plumbing: its array namespace ``xp``, moving data on and off the
device, its random generator, its memory, and what reading a value back costs
(``sync_policy``). The math is elsewhere:

- layer kernels are functions in ``tensornet.nn.functional`` whose generic versions use only
  the array API; a device overrides one by name (``@NumpyBackend.override``), and the device
  file lists only what it overrides;
- an optimizer's update rule lives in that optimizer's file, as a ``FusedUpdate``: the rule in
  array-API form, and beside it the same rule as a kernel body for devices that compile
  kernels. ``Backend.fused_update`` is the generic machinery that runs either; nothing here
  knows an optimizer by name.
"""
from __future__ import annotations

import enum
from typing import Callable, NamedTuple

import numpy as np

_DTYPE_NAMES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")


class DeviceError(RuntimeError):
    """An array lives on another device than the one a layer, loss or optimizer expects."""


class SyncPolicy(enum.Enum):
    """When code may read device values back to the host.

    ``EVERY_STEP``: reads are free (the CPU). Losses check labels and finiteness on every
    call; a training loop may read the loss after each step.
    ``PER_EPOCH``: a read stalls the device (a GPU). Figures stay on the device and are read
    once per epoch; data-dependent checks run only when asked for (``check=True``).
    """
    EVERY_STEP = "every_step"
    PER_EPOCH = "per_epoch"


class FusedUpdate(NamedTuple):
    """One elementwise, in-place update of a parameter and its state arrays (an optimizer
    step over one flat parameter buffer, or over one parameter).

    Attributes:
        name: identifies the rule (kernel caches and CUDA-graph bookkeeping key on it).
        states: names of the state arrays, in the order ``apply`` and ``body`` take them.
        scalars: names of the per-step scalars (Python floats on the host).
        apply: ``apply(xp, param, grad, *states, **scalars)``: the rule in array-API form;
            updates ``param`` and the states in place and never writes ``grad``.
        body: the same rule as CUDA C++ statements for an elementwise kernel over element
            type ``T``: they read ``grad`` and the scalars and assign ``param`` and the
            states; or None when the rule has no kernel form (devices then run ``apply``).
    """
    name: str
    states: tuple
    scalars: tuple
    apply: Callable
    body: str | None = None


class Backend:
    """One device: the array namespace and the plumbing layers and optimizers need.

    Attributes:
        xp: the array namespace (``numpy``, ``array_api_strict``, ``cupy``, ...).
        name: the backend family, ``"numpy"``, ``"strict"``, ``"torch"`` or ``"cupy"``.
        device: the device string users pass, e.g. ``"cpu"``, ``"strict"``, ``"cuda:0"``.
        sync_policy: a ``SyncPolicy``: whether reading values back is free here.
        kernels: name -> this device's override of a ``tensornet.nn.functional`` kernel.
    """

    xp = None
    name = "generic"
    device = "generic"
    sync_policy = SyncPolicy.EVERY_STEP
    kernels: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.kernels = dict(cls.kernels)  # a device inherits its parent's overrides

    @classmethod
    def override(cls, function):
        """Register ``function`` as this device's version of the functional kernel of the
        same name (a decorator). It is called as ``function(backend, *args, **kwargs)`` and
        may return ``NotImplemented`` to fall back to the generic version for that call."""
        cls.kernels[function.__name__] = function
        return function

    def __init__(self, seed: int | None = None):
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"Backend({self.device!r})"

    # ------------------------------------------------------------------ dtypes, arrays
    def dtype(self, dtype):
        """Resolve ``"float32"``, ``numpy.float32`` or any library's dtype to this backend's."""
        if dtype is None:
            return self.xp.float32
        name = dtype_name(dtype)
        if name not in _DTYPE_NAMES:
            raise TypeError(f"unsupported dtype {dtype!r}; expected one of "
                            f"{', '.join(_DTYPE_NAMES)}")
        return getattr(self.xp, name)

    def owns(self, x) -> bool:
        """True when ``x`` is an array of this backend (and device)."""
        raise NotImplementedError

    def asarray(self, x, dtype=None):
        """Host data (NumPy array, list, scalar) or an own array -> array on this device.

        Arrays of another device are refused: use ``tensornet.to_device`` to move them.
        """
        if hasattr(x, "__array_namespace__") or hasattr(x, "__cuda_array_interface__"):
            if not isinstance(x, np.ndarray) and not self.owns(x):
                raise DeviceError(
                    f"asarray on {self.device!r} got an array on {device_of(x)!r}; "
                    f"move it first with tensornet.to_device(x, {self.device!r})")
        if dtype is not None:
            dtype = self.dtype(dtype)
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        """Copy an array of this backend to a host NumPy array."""
        return np.asarray(x)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.dtype(dtype))

    def ones(self, shape, dtype=None):
        return self.xp.ones(shape, dtype=self.dtype(dtype))

    def empty(self, shape, dtype=None):
        return self.xp.empty(shape, dtype=self.dtype(dtype))

    def full(self, shape, value, dtype=None):
        return self.xp.full(shape, value, dtype=self.dtype(dtype))

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op on CPU backends."""

    # ------------------------------------------------------------------ random numbers
    def seed(self, seed: int | None) -> None:
        """Restart this device's generator from ``seed`` (``tensornet.manual_seed`` calls it).

        The generic RNG draws on the host with NumPy's Generator and transfers the result,
        so every backend without a generator of its own sees exactly NumPy's stream."""
        self._rng = np.random.default_rng(seed)

    def get_rng_state(self) -> dict:
        """The generator's state, JSON-serialisable (for checkpoints)."""
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
        """Restore a state from ``get_rng_state``; a malformed one raises."""
        self._rng.bit_generator.state = state

    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        dt = dtype_name(self.dtype(dtype))
        return self.asarray(self._rng.normal(mean, std, size=shape).astype(dt))

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        dt = dtype_name(self.dtype(dtype))
        return self.asarray(self._rng.uniform(low, high, size=shape).astype(dt))

    def bernoulli(self, shape, p, dtype=None):
        """0/1 array of ``dtype`` (float32 by default), each element 1 with probability ``p``."""
        dt = dtype_name(self.dtype(dtype))
        return self.asarray((self._rng.random(size=shape) < p).astype(dt))

    def permutation(self, n: int):
        """A random permutation of ``range(n)`` as an int64 array on this device."""
        return self.asarray(self._rng.permutation(n).astype(np.int64))

    # ------------------------------------------------------------------ optimizer updates
    def fused_update(self, update: FusedUpdate, param, grad, states, scalars: dict) -> None:
        """Run one optimizer rule in place over ``param`` and its ``states`` (flat group
        buffers or one parameter's arrays). Here: the rule's array-API form. Devices that
        compile kernels run ``update.body`` as one kernel instead."""
        update.apply(self.xp, param, grad, *states, **scalars)

    def graphed(self, step, model, optimizer):
        """``step(x, y) -> (loss, output)`` replayed as one captured device graph per call.
        Only the CUDA backend offers graphs."""
        raise ValueError(f"cuda_graph=True needs a model on device='cuda'; this one is on "
                         f"{self.device!r}")

    # ------------------------------------------------------------------ collectives
    def collective_allreduce(self, comm):
        """A function ``reduce_(flat, scale=None)`` that sums a contiguous array of this
        device in place across the ranks of ``comm`` (a
        ``tensornet.distributed.Communicator``), multiplies the sum by ``scale`` when given,
        and returns it. Generic: through a host copy and ``comm.allreduce_host_``; NumPy
        reduces its arrays directly, CuPy through NCCL."""
        def reduce_(flat, scale=None):
            host = np.array(self.to_numpy(flat), copy=True)
            comm.allreduce_host_(host, scale)
            flat[...] = self.asarray(host)
            return flat
        return reduce_

    # ------------------------------------------------------------------ memory, description
    def sample_memory(self) -> None:
        """Note the device memory in use, for the peak ``memory_info`` reports (CPU: no-op)."""

    def memory_info(self, reset_peak: bool = False) -> dict:
        """Device memory figures in bytes; empty on CPU backends (NumPy asks the OS)."""
        return {}

    def release_memory(self) -> None:
        """Give cached device memory back (a no-op where nothing is cached)."""

    def out_of_memory_error(self, exc, *, batch_size=None, where=None) -> MemoryError:
        """The error a training loop raises (``from exc``) when ``exc`` is a MemoryError:
        it names where it happened and suggests a smaller batch. GPU backends also release
        their cached memory first."""
        self.release_memory()
        smaller = f"a batch size below {batch_size}" if batch_size else "a smaller batch size"
        place = f" in {where}" if where else ""
        return MemoryError(f"out of memory on {self.device!r}{place}: {exc}. Try {smaller}")

    def describe(self) -> dict:
        """What ``tensornet info`` prints about this device: label -> text."""
        module = getattr(self.xp, "__name__", type(self.xp).__name__)
        version = getattr(self.xp, "__version__", "")
        return {"device": self.device, "library": f"{module} {version}".strip()}


def dtype_name(dtype) -> str:
    """Canonical name (``"float32"``) of a NumPy, strict, torch or CuPy dtype (or a NumPy
    scalar type such as ``numpy.float64``, or a dtype name)."""
    if isinstance(dtype, str):
        return dtype
    cached = _DTYPE_NAME_CACHE.get(id(dtype))
    if cached is not None and cached[0] is dtype:
        return cached[1]
    name = _resolve_dtype_name(dtype)
    if len(_DTYPE_NAME_CACHE) >= 256:
        _DTYPE_NAME_CACHE.clear()
    _DTYPE_NAME_CACHE[id(dtype)] = (dtype, name)
    return name


# dtype object id -> (the dtype, its name). Keyed by identity: equality between dtypes of
# different libraries warns (strict) or is loose (NumPy), and the lookup runs in every
# layer's input check, where resolving the name afresh costs ~10 us. Holding the dtype keeps
# its id from being reused; the size cap bounds what dynamically made dtypes can add.
_DTYPE_NAME_CACHE: dict = {}


def _resolve_dtype_name(dtype) -> str:
    if isinstance(dtype, (np.dtype, type)):
        try:
            return np.dtype(dtype).name
        except TypeError:
            pass
    name = getattr(dtype, "name", None)
    if not isinstance(name, str):
        name = str(dtype)
    name = name.rsplit(".", 1)[-1]  # 'array_api_strict.float32', 'torch.float32'
    try:
        return np.dtype(name).name
    except TypeError:
        return name


def device_of(x) -> str:
    """Best-effort device label of an array, for error messages."""
    from . import backend_of
    try:
        return backend_of(x).device
    except TypeError:
        return f"{type(x).__module__}.{type(x).__name__}"
