"""NumPy (CPU) backend: the device, and the functional kernels it does faster than generic.

Each ``@NumpyBackend.override`` function replaces the generic kernel of the same name in
``tensornet.nn.functional`` for NumPy arrays; returning ``NotImplemented`` hands that call
back to the generic version.
"""
from __future__ import annotations

import numpy as np

from array_api_compat import is_numpy_array

from . import jit, register_backend
from .allocator import keep_freed_memory
from .base import Backend
from .layout import empty_in_order_of, flat_in_order_of
from .threads import num_threads, run_chunks


def _is_host_array(x) -> bool:
    # The tests' CUDA emulation makes its CuPy arrays NumPy subclasses; they stay GPU arrays.
    return type(x) is np.ndarray or (isinstance(x, np.ndarray)
                                     and not type(x).__module__.startswith("cupy"))


def _drawable(dtype):
    """The dtype NumPy's Generator draws for ``dtype`` (it has no float16)."""
    return np.float32 if dtype == np.float16 else dtype


class NumpyBackend(Backend):
    """CPU arrays are plain ``numpy.ndarray``; the RNG is NumPy's Generator."""

    xp = np
    name = "numpy"
    device = "cpu"

    def __init__(self, seed: int | None = None):
        super().__init__(seed)
        keep_freed_memory()  # the same large arrays every step: no page faults for them

    def owns(self, x) -> bool:
        return _is_host_array(x)

    def asarray(self, x, dtype=None):
        if dtype is not None:
            dtype = self.dtype(dtype)
        if _is_host_array(x):
            return x if dtype is None or x.dtype == dtype else x.astype(dtype)
        return super().asarray(x, dtype)

    def to_numpy(self, x) -> np.ndarray:
        return np.asarray(x)

    def collective_allreduce(self, comm):
        """Host arrays go to MPI as they are (issue 18)."""
        return comm.allreduce_host_

    # Draws need no transfer on the CPU. NumPy's Generator draws float32 and float64 only:
    # float16 is drawn in float32 and rounded at the end.
    def normal(self, shape, mean=0.0, std=1.0, dtype=None):
        dtype = self.dtype(dtype)
        out = self._rng.standard_normal(size=shape, dtype=_drawable(dtype))
        if std != 1.0:
            out *= std
        if mean != 0.0:
            out += mean
        return out.astype(dtype, copy=False)

    def uniform(self, shape, low=0.0, high=1.0, dtype=None):
        dtype = self.dtype(dtype)
        out = self._rng.random(size=shape, dtype=_drawable(dtype))
        if (low, high) != (0.0, 1.0):
            out *= high - low
            out += low
        return out.astype(dtype, copy=False)

    def bernoulli(self, shape, p, dtype=None):
        draw = self._rng.random(size=shape, dtype=np.float32)
        return np.less(draw, p).astype(self.dtype(dtype))

    def permutation(self, n: int):
        return self._rng.permutation(n).astype(np.int64)

    def fused_update(self, update, param, grad, states, scalars: dict) -> None:
        """One pass over the flat buffers: a compiled kernel generated from the rule
        (``backends/jit/update.py``, with numba); without numba, ``apply`` (large groups:
        in cache-sized chunks, spread over the threads). The same arithmetic either way,
        bit for bit."""
        arrays = [param, grad, *states]
        if not all(a.flags.c_contiguous for a in arrays):
            return super().fused_update(update, param, grad, states, scalars)
        flat = [a.reshape(-1) for a in arrays]
        kernels = jit.kernels("update")
        if kernels is not None and param.dtype in _JIT_DTYPES \
                and kernels.fused_update(update, flat[0], flat[1], flat[2:], scalars):
            return None
        size = flat[0].shape[0]
        if size < jit.CHUNK_MIN:  # measured: chunks do not pay below ~1M elements
            return super().fused_update(update, param, grad, states, scalars)

        def piece(bounds):
            lo, hi = bounds
            for start in range(lo, hi, _UPDATE_CHUNK):
                part = [a[start:min(hi, start + _UPDATE_CHUNK)] for a in flat]
                update.apply(np, part[0], part[1], *part[2:], **scalars)
        pieces = max(1, min(num_threads(), size // jit.CHUNK_MIN))
        edges = [size * k // pieces // _UPDATE_CHUNK * _UPDATE_CHUNK for k in range(pieces)]
        run_chunks(piece, list(zip(edges, edges[1:] + [size])))
        return None

    def describe(self) -> dict:
        threads = "numba kernels" if jit.available() else "NumPy only (no numba)"
        pools = _blas_pools()
        info = {"device": "cpu", "library": f"numpy {np.__version__}",
                "blas": _blas_info(pools), "threads": f"{num_threads()} ({threads})"}
        hint = blas_kernel_hint(pools, _cpu_flags())
        if hint:
            info["hint"] = hint
        return info


def _blas_pools() -> list:
    """threadpoolctl's description of each BLAS library loaded (empty without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [p for p in threadpool_info() if p.get("user_api") == "blas"]


def _blas_info(pools) -> str:
    if pools:
        return "; ".join(
            (f"{p['internal_api']} {p.get('version') or ''} ("
             + (f"{p['architecture']} kernels, " if p.get("architecture") else "")
             + f"{p['num_threads']} threads)").replace("  ", " ") for p in pools)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version', '')}".strip()
    except Exception:  # the layout of show_config differs across NumPy versions
        return "unknown"


# OpenBLAS's x86 kernel sets that do not use AVX-512 (AVX2 at most).
_NO_AVX512_KERNELS = {"haswell", "zen", "sandybridge", "nehalem", "core2", "prescott"}


def blas_kernel_hint(pools, cpu_flags) -> str | None:
    """A line for ``tensornet info`` when OpenBLAS runs kernels without AVX-512 on a CPU
    that has it (``cpu_flags``: the kernel's flag names, as in /proc/cpuinfo), else None.
    OpenBLAS 0.3.31 picks its Haswell kernels on AMD Zen 5 (family 26). Its SkylakeX
    (AVX-512) kernels, chosen with
    ``OPENBLAS_CORETYPE=SkylakeX`` before Python starts, measured 25-30% faster there on
    the benchmark MLP's and CNN's products (a 16x72 by 72x25088 product: 330-350 against
    437 us; 128x784 by 784x256: 196-202 against 275 us), and 1.55x on the larger products
    of a 64-channel CNN (128x576 by 576x25088: 12.6 against 19.4 ms with two threads; its
    training step 78 against 108 ms; ``benchmarks/results/issues-vm-2026-12-02-d/``)."""
    if "avx512f" not in cpu_flags:
        return None
    for pool in pools:
        arch = str(pool.get("architecture") or "").lower()
        if pool.get("internal_api") == "openblas" and arch in _NO_AVX512_KERNELS:
            return (f"OpenBLAS runs its {pool['architecture']} kernels, without AVX-512, on "
                    f"this CPU, which has it; its SkylakeX kernels may be faster: start Python "
                    f"with OPENBLAS_CORETYPE=SkylakeX set (1.3-1.55x faster matrix products "
                    f"measured on AMD Zen 5)")
    return None


def _cpu_flags() -> set:
    """The CPU feature flags the OS reports (Linux: /proc/cpuinfo; elsewhere none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Elements per chunk of the NumPy update: each temporary of apply (128 KB in float32)
# stays in the core's cache while the chunk's few operations run over it (measured on 4M
# float32: Adam's apply 38 ms whole, 28 ms in chunks; the numba kernel 7 ms).
_UPDATE_CHUNK = 1 << 15


register_backend(
    "numpy",
    parse=lambda text: "cpu" if text in ("cpu", "numpy") else None,
    build=lambda key: NumpyBackend(),
    detect=lambda x: "cpu" if is_numpy_array(x) else None,
    examples=("cpu", "numpy"),
    single_device=True,
)


# ---------------------------------------------------------------------- hatches
@NumpyBackend.override
def scatter_add(backend, target, index, values):
    # bincount sums in float64 and is far faster than np.add.at.
    flat = target.reshape(-1)
    summed = np.bincount(index.reshape(-1), weights=values.reshape(-1), minlength=flat.size)
    flat += summed.astype(target.dtype, copy=False)
    return target


@NumpyBackend.override
def scatter_assign(backend, target, index, values):
    np.put(target, index.reshape(-1), values.reshape(-1))  # target.flat[index] = values
    return target


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@NumpyBackend.override
def labels_in_range(backend, labels, num_classes: int) -> bool:
    # Seen as unsigned, a negative label is huge: one max() checks both ends.
    if labels.dtype.kind == "i":
        labels = labels.view(_UNSIGNED[labels.dtype.itemsize])
    return int(labels.max()) < num_classes


@NumpyBackend.override
def matmul(backend, a, b, out=None):
    return np.matmul(a, b, out=out)


def _streams(like, *inputs):
    """``(out, flat views of the inputs and of out)`` listing the elements in ``like``'s
    memory order (out is laid out like ``like``), or None when an input is not contiguous
    in that order."""
    if like.flags.c_contiguous and all(a.flags.c_contiguous for a in inputs):
        out = np.empty_like(like)
        return out, [a.reshape(-1) for a in inputs] + [out.reshape(-1)]
    flats = [flat_in_order_of(a, like) for a in inputs]
    if any(f is None for f in flats):
        return None
    out = empty_in_order_of(like, like.shape, like.dtype)
    return out, flats + [flat_in_order_of(out, like)]


@NumpyBackend.override
def reduce_sum(backend, x, axis=None, keepdims=False, out=None):
    return np.sum(x, axis=axis, keepdims=keepdims, out=out)


@NumpyBackend.override
def relu(backend, x):
    kernels = jit.kernels("basic")
    streams = _streams(x, x) if kernels is not None and x.dtype in _JIT_DTYPES else None
    if streams is None:
        return np.maximum(x, 0, dtype=x.dtype)
    kernels.relu(*streams[1])
    return streams[0]


@NumpyBackend.override
def relu_backward(backend, grad, y):
    kernels = jit.kernels("basic")
    if kernels is not None and y.dtype in _JIT_DTYPES and grad.dtype == y.dtype:
        streams = _streams(y, grad, y)
        if streams is not None:
            kernels.relu_backward(*streams[1])
            return streams[0]
    # where(y > 0, grad, 0), as the generic version, the kernels and PyTorch: a NaN or a
    # negative gradient where the ReLU was off gives +0 (a product with the mask would give
    # NaN and -0). As bits: grad AND (all ones where y > 0), branch-free and in y's layout
    # (np.where on a mixed mask measured 5x slower than the product).
    if grad.dtype.kind != "f":
        return NotImplemented
    bits = np.dtype(f"u{grad.dtype.itemsize}")
    out = np.greater(y, 0).astype(bits)
    np.negative(out, out=out)  # 1 -> all ones (unsigned wrap-around)
    np.bitwise_and(out, grad.view(bits), out=out)
    return out.view(grad.dtype)


def _jit_rows(*arrays) -> bool:
    """Whether the numba row kernels take these: C-contiguous arrays of one float dtype."""
    dtype = arrays[0].dtype
    if dtype not in _JIT_DTYPES:
        return False
    for a in arrays:
        if a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


@NumpyBackend.override
def bias_relu(backend, y, bias):
    kernels = jit.kernels("basic")
    # (a bias of another shape, user-assigned, broadcasts or raises as Linear's ``y += b``)
    if kernels is None or y.ndim != 2 or bias.shape != y.shape[1:] or not _jit_rows(y, bias):
        return NotImplemented
    return kernels.bias_relu(y, bias)


@NumpyBackend.override
def relu_backward_sum(backend, grad, y, out=None):
    kernels = jit.kernels("basic")
    # One column: NumPy's sum over axis 0 then runs along memory, pairwise, not in the
    # kernel's row order (other bits); the generic version is that sum.
    if kernels is None or y.ndim != 2 or not y.shape[0] or y.shape[1] < 2 \
            or grad.shape != y.shape or not _jit_rows(y, grad):
        return NotImplemented
    if out is None:
        out = np.empty_like(y, shape=y.shape[1:])  # (a subclass, as np.sum's)
    elif not _jit_rows(y, out) or out.shape != y.shape[1:]:
        return NotImplemented
    return kernels.relu_backward_sum(grad, y, out)


# Softmax cross-entropy: the generic versions build an (N, C) one-hot target and multiply
# it in; here the true class is picked (forward) or hit (backward) by index, and the
# uniform part of label smoothing is a scalar. Same math, ~20 array calls fewer per step.
# The loss checks the labels on CPU before it calls these, unless its checks are off: then
# a label outside [0, C) gives its row a NaN loss and a NaN gradient row (as the generic
# and CUDA versions), never an index that wraps around or fails; rows whose label is the
# ``ignore_index`` asked for get 0 in both. A row holding NaN or +inf, or only -inf, gets
# NaN log-probabilities (the generic version gives NaN or -inf there) and a non-finite
# loss either way, which the loss reports.
def _labels_outside(labels, classes: int):
    """(labels clipped into range, boolean rows outside [0, C) or None when none is)."""
    outside = (labels < 0) | (labels >= classes)
    if not outside.any():
        return labels, None
    return np.clip(labels, 0, classes - 1), outside


def _ignored_rows(labels, ignore_index):
    """Boolean rows whose label is ``ignore_index``, or None (none asked for, or none is)."""
    if ignore_index is None:
        return None
    ignored = labels == ignore_index
    return ignored if ignored.any() else None


@NumpyBackend.override
def softmax_cross_entropy(backend, logits, labels, label_smoothing=0.0, ignore_index=None):
    kernels = jit.kernels("basic")
    if kernels is not None and logits.dtype in _JIT_DTYPES:
        out = kernels.softmax_cross_entropy(logits, labels.astype(np.int64, copy=False),
                                            label_smoothing, ignore_index)
        return out if ignore_index is None else out[:2] + (logits.dtype.type(out[2]),)
    log_probs = np.subtract(logits, logits.max(axis=1, keepdims=True))
    shifted_lse = np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    log_probs -= shifted_lse
    ignored = _ignored_rows(labels, ignore_index)
    labels, outside = _labels_outside(labels, logits.shape[1])
    picked = log_probs[np.arange(len(labels)), labels]
    if not label_smoothing:
        losses = np.negative(picked)
    else:
        # target (1 - eps) * onehot + eps / C: loss = -(1 - eps) * lp[y] - eps / C * sum(lp)
        losses = log_probs.sum(axis=1)
        losses *= -label_smoothing / logits.shape[1]
        picked *= 1.0 - label_smoothing
        losses -= picked
    if outside is not None:
        losses[outside] = np.nan
    if ignore_index is None:
        return losses, log_probs
    if ignored is None:
        return losses, log_probs, logits.dtype.type(len(labels))
    losses[ignored] = 0.0
    return losses, log_probs, logits.dtype.type(len(labels) - np.count_nonzero(ignored))


@NumpyBackend.override
def softmax_cross_entropy_backward(backend, log_probs, labels, scale, label_smoothing=0.0,
                                   ignore_index=None, divisor=None):
    if divisor is not None:  # a host value here: the kept-row count (0: every row ignored)
        scale = scale / divisor if divisor else 0.0
    kernels = jit.kernels("basic")
    if kernels is not None and log_probs.dtype in _JIT_DTYPES:
        return kernels.softmax_cross_entropy_backward(
            log_probs, labels.astype(np.int64, copy=False), scale, label_smoothing, ignore_index)
    grad = np.exp(log_probs)
    ignored = _ignored_rows(labels, ignore_index)
    labels, outside = _labels_outside(labels, log_probs.shape[1])
    hit = (np.arange(len(labels)), labels)
    if label_smoothing:
        grad -= label_smoothing / log_probs.shape[1]
        grad[hit] -= 1.0 - label_smoothing
    else:
        grad[hit] -= 1.0
    grad *= scale
    if outside is not None:
        grad[outside] = np.nan
    if ignored is not None:
        grad[ignored] = 0.0
    return grad


from . import numpy_conv, numpy_norm, numpy_windows  # noqa: E402,F401  (their overrides)
