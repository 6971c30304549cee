"""CuPy (NVIDIA GPU) backend.

All GPU-specific code lives here and in the files this module imports (``cuda_kernels.py``:
kernel sources; ``cuda_graph.py``: whole-step CUDA graphs). Importing this module never
imports CuPy: ``CupyBackend()`` does, so the core runs on machines without a GPU.

Overrides of the generic Backend, each one kernel where the generic math takes several
launches: ReLU and its backward; softmax-cross-entropy forward (one warp per row) and
backward; the optimizer updates (one in-place kernel per parameter, all its state at once);
im2col, col2im (a gather: deterministic, no atomics), max-pool forward and backward (a
gather too). ``matmul`` switches to a cuBLAS-free GEMM inside CUDA-graph steps. Everything
else is the generic array-API code running on ``cupy``; the generic methods are the
reference the GPU tests compare against.

Precision: float32 matmuls are true FP32 by default. TF32 tensor cores (faster, ~10-bit
mantissa products) are opt-in: ``get_backend("cuda").set_tf32(True)`` or the environment
variable ``CUPY_TF32=1``. CuPy keeps this setting process-wide, for every device.
"""
from __future__ import annotations

import os
import weakref

import numpy as np

from .base import Backend, DeviceError, dtype_name
from .cuda_kernels import (C_TYPES, CROSS_ENTROPY_BACKWARD, CROSS_ENTROPY_WARPS_PER_BLOCK,
                           FUSED_DTYPES, RELU, RELU_BACKWARD, KernelCache, pack_hyper)
from .cuda_window_kernels import COL2IM, IM2COL, MAX_POOL, MAX_POOL_BACKWARD
from .layer_ops import window_output_size

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


def _window_geometry(x_shape, kernel_size, stride, padding, dilation):
    """The int32 scalars of the window kernels (cuda_kernels.WINDOW_PARAMS order), and
    (OH, OW)."""
    (oh, ow) = window_output_size(x_shape, kernel_size, stride, padding, dilation)
    n, c, h, w = x_shape
    (top, _), (left, _) = padding
    values = (n, c, h, w, oh, ow, *kernel_size, *stride, top, left, *dilation)
    return tuple(np.int32(v) for v in values), (oh, ow)


class CupyBackend(Backend):
    """Arrays are ``cupy.ndarray`` on one GPU; random numbers are drawn on the GPU."""

    name = "cupy"
    cheap_sync = False

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
        # While a CUDA-graph step rehearses, captures or replays, the HyperTable it records
        # optimizer hyper-parameters into (see cuda_graph.py); None when eager.
        self._graph = None
        self._graph_steps = weakref.WeakSet()
        self._graph_rng = None  # device (key, counter) of dropout masks in graph steps
        self._peak_bytes = 0
        super().__init__(seed)
        with self._cuda_device:
            self._gpu_rng = cupy.random.default_rng(seed)
        self.set_tf32(_env_tf32() if tf32 is None else tf32)

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

    def to_numpy(self, x) -> np.ndarray:
        return self.xp.asnumpy(x)

    def synchronize(self) -> None:
        self._cuda_device.synchronize()

    def collective_allreduce(self, comm):
        """NCCL between the ranks' GPUs when every rank has it, else the generic path
        through host memory, said once (issue 18; see nccl.py)."""
        from .nccl import nccl_allreduce

        return nccl_allreduce(self, comm) or super().collective_allreduce(comm)

    # ------------------------------------------------------------------ random numbers
    def seed(self, seed):
        super().seed(seed)
        with self._cuda_device:
            self._gpu_rng = self.xp.random.default_rng(seed)

    def _no_rng_in_graph(self, what: str) -> None:
        if self._graph is not None:
            raise NotImplementedError(
                f"{what} inside a CUDA-graph step: only bernoulli() (Dropout, DropConnect) "
                f"draws random numbers in graph mode, because a captured draw from CuPy's "
                f"generator would repeat the same numbers every step. Use "
                f"compile_step(..., cuda_graph=False) for this model")

    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        self._no_rng_in_graph("normal()")
        with self._cuda_device:
            out = self._gpu_rng.standard_normal(size=shape, dtype=self.dtype(dtype))
            return out * std + mean if (mean, std) != (0.0, 1.0) else out

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        self._no_rng_in_graph("uniform()")
        with self._cuda_device:
            out = self._gpu_rng.random(size=shape, dtype=self.dtype(dtype))
            return out * (high - low) + low if (low, high) != (0.0, 1.0) else out

    def bernoulli(self, shape, p, dtype=None):
        if self._graph is not None:
            from .cuda_graph import bernoulli_in_graph
            return bernoulli_in_graph(self, shape, p, dtype)
        with self._cuda_device:
            draw = self._gpu_rng.random(size=shape, dtype=self.xp.float32)
            return (draw < p).astype(self.dtype(dtype))

    def permutation(self, n: int):
        # cupy's Generator has no permutation(): sort 53-bit uniform keys (ties are
        # vanishingly rare and would only make two neighbours keep their order).
        self._no_rng_in_graph("permutation()")
        with self._cuda_device:
            keys = self._gpu_rng.random(size=int(n), dtype=self.xp.float64)
            return self.xp.argsort(keys).astype(self.xp.int64, copy=False)

    # ------------------------------------------------------------------ hatches
    def scatter_add(self, target, index, values):
        import cupyx  # atomics: float32 sums may differ in the last bits from run to run
        cupyx.scatter_add(target.reshape(-1), index.reshape(-1), values.reshape(-1))
        return target

    def relu(self, x):
        return self._kernels.elementwise(RELU)(x)

    def relu_backward(self, grad, y):
        return self._kernels.elementwise(RELU_BACKWARD)(grad, y)

    def matmul(self, a, b):
        # cuBLAS is refused inside CUDA-graph capture, so graph steps use the tiled kernel.
        if self._graph is not None and self._graph.phase in ("rehearse", "capture"):
            return self.capture_safe_matmul(a, b)
        return a @ b

    def capture_safe_matmul(self, a, b):
        """``a @ b`` without cuBLAS (see ``cuda_graph.capture_safe_matmul``)."""
        from .cuda_graph import capture_safe_matmul
        return capture_safe_matmul(self, a, b)

    def softmax_cross_entropy(self, logits, labels, label_smoothing=0.0):
        name = dtype_name(logits.dtype)
        if name not in FUSED_DTYPES:
            return super().softmax_cross_entropy(logits, labels, label_smoothing)
        xp = self.xp
        n, c = logits.shape
        label_type = C_TYPES.get(dtype_name(labels.dtype))
        if label_type not in ("int", "long long"):
            labels, label_type = labels.astype(xp.int64), "long long"
        logits = xp.ascontiguousarray(logits)
        labels = xp.ascontiguousarray(labels)
        log_probs = xp.empty_like(logits)
        losses = xp.empty(n, dtype=logits.dtype)
        if n == 0:
            return losses, log_probs
        t = logits.dtype.type
        warps = CROSS_ENTROPY_WARPS_PER_BLOCK
        kernel = self._kernels.raw("cross_entropy", C_TYPES[name], label_type)
        kernel((-(-n // warps),), (32 * warps,),
               (logits, labels, np.int32(n), np.int32(c), t(1.0 - label_smoothing),
                t(label_smoothing / c), log_probs, losses))
        return losses, log_probs

    def softmax_cross_entropy_backward(self, log_probs, labels, scale, label_smoothing=0.0):
        if dtype_name(log_probs.dtype) not in FUSED_DTYPES:
            return super().softmax_cross_entropy_backward(log_probs, labels, scale,
                                                          label_smoothing)
        c = log_probs.shape[1]
        t = log_probs.dtype.type
        return self._kernels.elementwise(CROSS_ENTROPY_BACKWARD)(
            log_probs, labels, t(scale), t(1.0 - label_smoothing), t(label_smoothing / c),
            np.int32(c))

    # ------------------------------------------------------------------ windows: conv, pooling
    # One launch each instead of one per kernel offset; same layouts and summation order
    # as the generic methods (backends/base.py), which stay the reference.
    def im2col(self, x, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
        if dtype_name(x.dtype) not in FUSED_DTYPES:
            return super().im2col(x, kernel_size, stride, padding, dilation)
        geometry, (oh, ow) = _window_geometry(x.shape, kernel_size, stride, padding, dilation)
        n, c = x.shape[0], x.shape[1]
        cols = self.xp.empty((c, kernel_size[0], kernel_size[1], n, oh, ow), dtype=x.dtype)
        if cols.size:
            self._kernels.elementwise(IM2COL)(self.xp.ascontiguousarray(x), *geometry, cols)
        return cols

    def col2im(self, cols, x_shape, kernel_size, stride=(1, 1), padding=((0, 0), (0, 0)),
               dilation=(1, 1)):
        if dtype_name(cols.dtype) not in FUSED_DTYPES:
            return super().col2im(cols, x_shape, kernel_size, stride, padding, dilation)
        geometry, _ = _window_geometry(x_shape, kernel_size, stride, padding, dilation)
        dx = self.xp.empty(tuple(x_shape), dtype=cols.dtype)
        if dx.size:
            flat = self.xp.ascontiguousarray(cols).reshape(-1)
            self._kernels.elementwise(COL2IM)(flat, *geometry, dx)
        return dx

    def max_pool2d(self, x, kernel_size, stride, padding=((0, 0), (0, 0)), dilation=(1, 1)):
        if dtype_name(x.dtype) not in FUSED_DTYPES:
            return super().max_pool2d(x, kernel_size, stride, padding, dilation)
        geometry, (oh, ow) = _window_geometry(x.shape, kernel_size, stride, padding, dilation)
        shape = (x.shape[0], x.shape[1], oh, ow)
        y = self.xp.empty(shape, dtype=x.dtype)
        argmax = self.xp.empty(shape, dtype=self.xp.int32)
        if y.size:
            self._kernels.elementwise(MAX_POOL)(self.xp.ascontiguousarray(x), *geometry, y,
                                                argmax)
        return y, argmax

    def max_pool2d_backward(self, grad, argmax, x_shape, kernel_size, stride,
                            padding=((0, 0), (0, 0)), dilation=(1, 1)):
        if dtype_name(grad.dtype) not in FUSED_DTYPES or argmax.dtype != self.xp.int32:
            return super().max_pool2d_backward(grad, argmax, x_shape, kernel_size, stride,
                                               padding, dilation)
        geometry, _ = _window_geometry(x_shape, kernel_size, stride, padding, dilation)
        dx = self.xp.empty(tuple(x_shape), dtype=grad.dtype)
        if dx.size:
            xp = self.xp
            self._kernels.elementwise(MAX_POOL_BACKWARD)(
                xp.ascontiguousarray(grad), xp.ascontiguousarray(argmax), *geometry, dx)
        return dx

    # ------------------------------------------------------------------ optimizer updates
    # Same signatures as the generic Backend; float16 falls back to the generic code.
    def sgd_update(self, param, grad, buf, *, lr, momentum, dampening, nesterov, weight_decay,
                   first_step):
        if not self._fusable(param):
            self._no_generic_in_graph(param)
            return super().sgd_update(param, grad, buf, lr=lr, momentum=momentum,
                                      dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay, first_step=first_step)
        if momentum:
            self._update("sgd_momentum", param, grad, (buf,), lr=lr, momentum=momentum,
                         dampening=dampening, nesterov=nesterov, weight_decay=weight_decay,
                         first_step=first_step)
        else:
            self._update("sgd", param, grad, (), lr=lr, weight_decay=weight_decay)

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step, weight_decay,
                    decoupled):
        if not self._fusable(param):
            self._no_generic_in_graph(param)
            return super().adam_update(param, grad, m, v, lr=lr, beta1=beta1, beta2=beta2,
                                       eps=eps, step=step, weight_decay=weight_decay,
                                       decoupled=decoupled)
        self._update("adam", param, grad, (m, v), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                     step=step, weight_decay=weight_decay, decoupled=decoupled)

    def rmsprop_update(self, param, grad, sq, buf, *, lr, alpha, eps, momentum, weight_decay):
        if not self._fusable(param):
            self._no_generic_in_graph(param)
            return super().rmsprop_update(param, grad, sq, buf, lr=lr, alpha=alpha, eps=eps,
                                          momentum=momentum, weight_decay=weight_decay)
        if momentum:
            self._update("rmsprop_momentum", param, grad, (sq, buf), lr=lr, alpha=alpha,
                         eps=eps, momentum=momentum, weight_decay=weight_decay)
        else:
            self._update("rmsprop", param, grad, (sq,), lr=lr, alpha=alpha, eps=eps,
                         weight_decay=weight_decay)

    def adagrad_update(self, param, grad, acc, *, lr, eps, weight_decay):
        if not self._fusable(param):
            self._no_generic_in_graph(param)
            return super().adagrad_update(param, grad, acc, lr=lr, eps=eps,
                                          weight_decay=weight_decay)
        self._update("adagrad", param, grad, (acc,), lr=lr, eps=eps, weight_decay=weight_decay)

    @staticmethod
    def _fusable(param) -> bool:
        return dtype_name(param.dtype) in FUSED_DTYPES

    def _no_generic_in_graph(self, param) -> None:
        # The generic update would run eagerly while a graph step replays: a second update.
        if self._graph is not None:
            raise NotImplementedError(f"CUDA-graph steps fuse float32/float64 optimizer "
                                      f"updates only; got {dtype_name(param.dtype)} parameters")

    def _update(self, kind, param, grad, states, **hyper):
        values = pack_hyper(kind, **hyper)
        if self._graph is not None:
            return self._graph_update(kind, param, grad, states, values)
        t = param.dtype.type
        self._kernels.optimizer(kind)(grad, *(t(v) for v in values), param, *states)

    def _graph_update(self, kind, param, grad, states, values):
        """Record the call in the graph's HyperTable; launch the kernel that reads its
        scalars from device memory unless replaying (the graph then holds the launch)."""
        table = self._graph
        arrays = (param, grad) + tuple(states)
        row = table.record(kind, dtype_name(param.dtype), tuple(a.data.ptr for a in arrays),
                           values)
        if table.phase == "replay":
            return
        if table.phase == "rehearse":
            device_row = self.xp.asarray(np.asarray(values, dtype=param.dtype))
        else:
            device_row = table.device_row(row)
        self._kernels.optimizer(kind, device_hyper=True)(grad, device_row, param, *states)

    # ------------------------------------------------------------------ training steps
    def compile_step(self, model, loss_fn, optimizer, *, cuda_graph: bool = False):
        """Eager step, or with ``cuda_graph=True`` a whole-step CUDA graph (see
        ``backends/cuda_graph.py`` for what it captures and its limits)."""
        if not cuda_graph:
            return super().compile_step(model, loss_fn, optimizer)
        from .cuda_graph import GraphStep
        step = GraphStep(self, model, loss_fn, optimizer)
        self._graph_steps.add(step)
        return step

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
        self.tf32 = bool(enabled)

    def sample_memory(self) -> None:
        used = self.xp.get_default_memory_pool().used_bytes()
        if used > self._peak_bytes:
            self._peak_bytes = used

    def memory_info(self, reset_peak: bool = False) -> dict:
        """Bytes: ``used`` (live arrays in CuPy's pool), ``peak_used`` (max over
        ``sample_memory`` calls: CuPy has no peak counter), ``pool`` (held by the pool,
        live or cached), ``graph_pools`` (private pools of CUDA-graph steps), ``device_free``
        and ``device_total`` (the driver's view)."""
        self.sample_memory()
        pool = self.xp.get_default_memory_pool()
        with self._cuda_device:
            free, total = self.xp.cuda.runtime.memGetInfo()
        info = {"used": pool.used_bytes(), "peak_used": self._peak_bytes,
                "pool": pool.total_bytes(),
                "graph_pools": sum(s.pool_bytes() for s in list(self._graph_steps)),
                "device_free": free, "device_total": total}
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
