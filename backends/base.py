"""The generic Backend: array-API-standard math plus the hatches the standard lacks.

Every method here uses only ``self.xp`` calls from the Python array API standard, so it
runs unchanged on NumPy, array-api-strict and CuPy. Device backends subclass it and
override only the hot operations (see ``backends/numpy.py`` and ``backends/cupy.py``).
Layers and optimizers call these methods and never ask which device they are on.
"""
from __future__ import annotations

import math

import numpy as np

# The window helpers are re-exported: backends and tests import them from here.
from .layer_ops import (LayerOps, window_offsets, window_output_size,  # noqa: F401
                        windows_overlap, windows_tile)

_DTYPE_NAMES = ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool")


class DeviceError(RuntimeError):
    """An array lives on another device than the one a layer, loss or optimizer expects."""


class Backend(LayerOps):
    """One device's array namespace and the operations layers need beyond it.

    Attributes:
        xp: the array namespace (``numpy``, ``array_api_strict`` or ``cupy``).
        name: backend family, ``"numpy"``, ``"strict"`` or ``"cupy"``.
        device: the device string users pass, e.g. ``"cpu"``, ``"strict"``, ``"cuda:0"``.
        cheap_sync: True where reading a value back to the host costs nothing (CPU).
            Layers and losses use it to decide whether to run data-dependent checks
            (label range, finite loss) on every call.
    """

    xp = None
    name = "generic"
    device = "generic"
    cheap_sync = True

    def __init__(self, seed: int | None = None):
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"Backend({self.device!r})"

    # ------------------------------------------------------------------ dtypes, arrays
    def dtype(self, dtype):
        """Resolve ``"float32"``, ``numpy.float32`` or an xp dtype to this backend's dtype."""
        if dtype is None:
            return self.xp.float32
        if isinstance(dtype, str):
            name = dtype
        else:
            name = dtype_name(dtype)
        if name not in _DTYPE_NAMES:
            raise TypeError(f"unsupported dtype {dtype!r}; expected one of {', '.join(_DTYPE_NAMES)}")
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

    def is_finite_all(self, x) -> bool:
        """True when every element of ``x`` is finite (reads one value back to the host)."""
        return bool(self.xp.all(self.xp.isfinite(x)))

    # ------------------------------------------------------------------ random numbers
    # The generic RNG draws on the host with NumPy's Generator and transfers the result,
    # so that strict (a test backend) sees exactly NumPy's stream. CuPy draws on the GPU.
    def seed(self, seed: int | None) -> None:
        self._rng = np.random.default_rng(seed)

    def get_rng_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_rng_state(self, state: dict) -> None:
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

    # ------------------------------------------------------------------ hatches
    def scatter_add(self, target, index, values):
        """``target.flat[index[i]] += values[i]`` with repeated indices accumulating.

        ``target`` is updated in place and returned; ``index`` and ``values`` are flattened.
        The standard has no scatter, so the generic version goes through the host.
        """
        host = self.to_numpy(target).reshape(-1).copy()
        np.add.at(host, self.to_numpy(index).reshape(-1), self.to_numpy(values).reshape(-1))
        target[...] = self.xp.reshape(self.asarray(host), target.shape)
        return target

    def logsumexp(self, x, axis=-1, keepdims=False):
        """Numerically stable ``log(sum(exp(x), axis))``."""
        xp = self.xp
        m = xp.max(x, axis=axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0.0)
        out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
        if not keepdims:
            out = xp.squeeze(out, axis=axis)
        return out

    def one_hot(self, labels, num_classes: int, dtype):
        """``(N,)`` integer labels -> ``(N, num_classes)`` 0/1 array of ``dtype``."""
        xp = self.xp
        classes = xp.arange(num_classes, dtype=labels.dtype)
        return xp.astype(labels[:, None] == classes[None, :], dtype)

    def labels_in_range(self, labels, num_classes: int) -> bool:
        """True when every integer label is in ``[0, num_classes)`` (one read to the host)."""
        xp = self.xp
        return bool((xp.min(labels) >= 0) & (xp.max(labels) < num_classes))

    def relu(self, x):
        return self.xp.maximum(x, 0.0)

    def relu_backward(self, grad, y):
        """Gradient of ReLU given its output ``y``."""
        return self.xp.where(y > 0, grad, 0.0)

    def matmul(self, a, b):
        """``a @ b``. Layers call this rather than ``@`` so that a device can swap in its
        own GEMM (the CuPy backend needs a cuBLAS-free one inside CUDA graphs)."""
        return self.xp.matmul(a, b)

    def softmax_cross_entropy(self, logits, labels, label_smoothing=0.0):
        """Per-sample softmax cross-entropy. logits (N, C), integer labels (N,) ->
        ``(losses (N,), log_probs (N, C))``; the target is ``(1 - eps) * onehot + eps / C``
        for ``label_smoothing`` eps. ``log_probs`` is what the backward needs."""
        log_probs = logits - self.logsumexp(logits, axis=1, keepdims=True)
        target = self._smoothed_one_hot(labels, logits.shape[1], logits.dtype, label_smoothing)
        return -self.xp.sum(target * log_probs, axis=1), log_probs

    def softmax_cross_entropy_backward(self, log_probs, labels, scale, label_smoothing=0.0):
        """d(scale * sum of losses)/d logits = ``scale * (softmax - target)``, (N, C)."""
        grad = self.xp.exp(log_probs)
        grad -= self._smoothed_one_hot(labels, log_probs.shape[1], log_probs.dtype,
                                       label_smoothing)
        grad *= scale
        return grad

    def _smoothed_one_hot(self, labels, num_classes, dtype, label_smoothing):
        target = self.one_hot(labels, num_classes, dtype)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
        return target

    # ------------------------------------------------------------------ optimizer updates
    # Each update works in place on ``param`` and its state arrays. Hyper-parameters arrive
    # as Python floats (weak scalars: they never promote float32 arrays). Devices override
    # these with fused kernels; these generic versions are the reference.
    def sgd_update(self, param, grad, buf, *, lr, momentum, dampening, nesterov, weight_decay,
                   first_step):
        """PyTorch's SGD: ``buf = momentum*buf + (1-dampening)*g``; ``p -= lr*(g + momentum*buf)``
        with Nesterov, else ``p -= lr*buf``. ``buf`` may be None when momentum is 0."""
        if weight_decay:
            grad = grad + weight_decay * param
        if momentum:
            if first_step:
                buf[...] = grad
            else:
                buf *= momentum
                buf += (1.0 - dampening) * grad
            grad = grad + momentum * buf if nesterov else buf
        param -= lr * grad

    def adam_update(self, param, grad, m, v, *, lr, beta1, beta2, eps, step, weight_decay,
                    decoupled):
        """Adam (Kingma & Ba 2015) with bias correction; AdamW when ``decoupled``."""
        xp = self.xp
        grad = adam_weight_decay(param, grad, lr, weight_decay, decoupled)
        m *= beta1
        m += (1.0 - beta1) * grad
        v *= beta2
        v += (1.0 - beta2) * (grad * grad)
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
        param -= (lr / bc1) * m / (xp.sqrt(v) / math.sqrt(bc2) + eps)

    def rmsprop_update(self, param, grad, sq, buf, *, lr, alpha, eps, momentum, weight_decay):
        """PyTorch's RMSprop: ``sq = alpha*sq + (1-alpha)*g^2``; step ``g / (sqrt(sq)+eps)``;
        with momentum ``buf = momentum*buf + step`` and ``p -= lr*buf``. ``buf`` may be None
        when momentum is 0."""
        xp = self.xp
        if weight_decay:
            grad = grad + weight_decay * param
        sq *= alpha
        sq += (1.0 - alpha) * (grad * grad)
        step = grad / (xp.sqrt(sq) + eps)
        if momentum:
            buf *= momentum
            buf += step
            step = buf
        param -= lr * step

    def adagrad_update(self, param, grad, acc, *, lr, eps, weight_decay):
        """Adagrad (Duchi et al. 2011): ``acc += g^2``; ``p -= lr * g / (sqrt(acc) + eps)``.
        ``lr`` arrives already decayed by the optimizer (``lr_decay``)."""
        xp = self.xp
        if weight_decay:
            grad = grad + weight_decay * param
        acc += grad * grad
        param -= lr * grad / (xp.sqrt(acc) + eps)

    # ------------------------------------------------------------------ training steps, memory
    def compile_step(self, model, loss_fn, optimizer, *, cuda_graph: bool = False):
        """A function ``step(x, y) -> (loss, output)`` doing one training step: drop the old
        gradients, forward, loss, backward, ``optimizer.step()``. ``loss`` (0-d) and
        ``output`` stay on the device: reading them is the caller's (one) sync.

        Here it runs eagerly. ``cuda_graph=True`` (replay the step as one CUDA graph) needs
        the CuPy backend, which overrides this method."""
        if cuda_graph:
            raise ValueError(f"cuda_graph=True needs a model on device='cuda'; this one is on "
                             f"{self.device!r}")

        def step(x, y):
            return train_step(model, loss_fn, optimizer, x, y)
        return step

    # ------------------------------------------------------------------ collectives (issue 18)
    def collective_allreduce(self, comm):
        """A function ``reduce_(flat)`` that sums a contiguous array of this device in place
        across the ranks of ``comm`` (a ``tensornet.distributed.Communicator``) and returns
        it. Generic: through a host copy and ``comm.allreduce_host_``; NumPy reduces its
        arrays directly, CuPy through NCCL."""
        def reduce_(flat):
            host = np.array(self.to_numpy(flat), copy=True)
            comm.allreduce_host_(host)
            flat[...] = self.asarray(host)
            return flat
        return reduce_

    def sample_memory(self) -> None:
        """Note the device memory in use, for the peak ``memory_info`` reports (CPU: no-op)."""

    def memory_info(self, reset_peak: bool = False) -> dict:
        """Device memory figures in bytes; empty on CPU backends (NumPy asks the OS)."""
        return {}

    def out_of_memory_error(self, exc, *, batch_size=None, where=None) -> MemoryError:
        """The error a training loop raises (``from exc``) when ``exc`` is a MemoryError:
        it names where it happened and suggests a smaller batch. GPU backends also release
        their cached memory."""
        smaller = f"a batch size below {batch_size}" if batch_size else "a smaller batch size"
        place = f" in {where}" if where else ""
        return MemoryError(f"out of memory on {self.device!r}{place}: {exc}. Try {smaller}")


def adam_weight_decay(param, grad, lr, weight_decay, decoupled):
    """Adam's weight decay; returns the gradient to use.

    Decoupled (AdamW, Loshchilov & Hutter 2019): shrink ``param`` in place by
    ``1 - lr * weight_decay`` and keep the gradient. Otherwise (Adam): L2, a new gradient
    ``grad + weight_decay * param`` (the caller's ``grad`` is never written).
    """
    if not weight_decay:
        return grad
    if decoupled:
        param *= 1.0 - lr * weight_decay
        return grad
    return grad + weight_decay * param


def train_step(model, loss_fn, optimizer, x, y):
    """One eager training step; returns ``(loss, output)`` (device arrays).

    The gradient with respect to the data is never used here, so the model is asked not
    to compute it (``needs_input_grad = False`` for the backward pass; see Module).
    """
    model.zero_grad(set_to_none=True)
    output = model(x)
    loss = loss_fn(output, y)
    saved = model.needs_input_grad
    model.needs_input_grad = False
    try:
        model.backward(loss_fn.backward())
    finally:
        model.needs_input_grad = saved
    optimizer.step()
    return loss, output


# dtype object id -> (the dtype, its name). Keyed by identity: equality between dtypes of
# different libraries warns (strict) or is loose (NumPy), and the lookup runs in every
# layer's input check, where resolving the name afresh costs ~10 us. Holding the dtype keeps
# its id from being reused; the size cap bounds what dynamically made dtypes can add.
_DTYPE_NAME_CACHE: dict = {}


def dtype_name(dtype) -> str:
    """Canonical name (``"float32"``) of a NumPy, strict or CuPy dtype, or a dtype name."""
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


def _resolve_dtype_name(dtype) -> str:
    name = getattr(dtype, "name", None) or str(dtype)
    # array_api_strict dtypes print as 'array_api_strict.float32'
    name = name.rsplit(".", 1)[-1]
    try:
        return np.dtype(name).name
    except TypeError:
        return name


def device_of(x) -> str:
    """Best-effort device label of an array, for error messages."""
    mod = type(x).__module__
    if mod.startswith("numpy"):
        return "cpu"
    if mod.startswith("array_api_strict"):
        return "strict"
    if mod.startswith("cupy"):
        return f"cuda:{x.device.id}"
    return f"{mod}.{type(x).__name__}"
