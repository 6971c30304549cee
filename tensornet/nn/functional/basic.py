"""Generic kernels of the dense layers, activations and losses: matmul, sums into a
buffer, scatter-add, one-hot, log-sum-exp, softmax and log-softmax, ReLU and softmax
cross-entropy.

Each is the reference version: array-API-standard calls on ``backend.xp`` only; devices
override them by name (NumPy: ``backends/numpy.py``; CuPy: ``backends/cupy.py``).
"""
from __future__ import annotations

import numpy as np

from .dispatch import kernel


@kernel
def matmul(backend, a, b, out=None):
    """``a @ b``, written into ``out`` when given. Layers call this rather than ``@`` so a
    device can swap in its own GEMM (the CuPy backend needs a cuBLAS-free one inside CUDA
    graphs) and write results straight into preallocated buffers (flat gradient buffers)."""
    result = backend.xp.matmul(a, b)
    if out is None:
        return result
    out[...] = result
    return out


@kernel
def reduce_sum(backend, x, axis=None, keepdims=False, out=None):
    """``sum(x, axis)``, written into ``out`` when given (a gradient straight into the
    optimizer's flat buffer: ``Parameter.grad_buffer``)."""
    result = backend.xp.sum(x, axis=axis, keepdims=keepdims)
    if out is None:
        return result
    out[...] = result
    return out


@kernel
def scatter_add(backend, target, index, values):
    """``target.flat[index[i]] += values[i]`` with repeated indices accumulating.

    ``target`` is updated in place and returned; ``index`` and ``values`` are flattened.
    The standard has no scatter, so the generic version goes through the host.
    """
    host = backend.to_numpy(target).reshape(-1).copy()
    np.add.at(host, backend.to_numpy(index).reshape(-1), backend.to_numpy(values).reshape(-1))
    target[...] = backend.xp.reshape(backend.asarray(host), target.shape)
    return target


@kernel
def one_hot(backend, labels, num_classes: int, dtype):
    """``(N,)`` integer labels -> ``(N, num_classes)`` 0/1 array of ``dtype``."""
    xp = backend.xp
    classes = backend.asarray(np.arange(num_classes, dtype=np.int64))
    return xp.astype(xp.astype(labels, xp.int64)[:, None] == classes[None, :], dtype)


@kernel
def labels_in_range(backend, labels, num_classes: int) -> bool:
    """True when every integer label is in ``[0, num_classes)`` (one read to the host)."""
    xp = backend.xp
    return bool((xp.min(labels) >= 0) & (xp.max(labels) < num_classes))


@kernel
def all_finite(backend, x) -> bool:
    """True when every element of ``x`` is finite (reads one value back to the host)."""
    xp = backend.xp
    return bool(xp.all(xp.isfinite(x)))


def _shifted(xp, x, axis):
    """``(x - m, m)`` with ``m`` the maximum along ``axis`` (kept dims), taken as 0 where
    it is not finite, so rows of +-inf give inf/NaN rather than reading as finite."""
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0.0)
    return x - m, m


@kernel
def logsumexp(backend, x, axis=-1, keepdims=False):
    """Numerically stable ``log(sum(exp(x), axis))``: ``m + log(sum(exp(x - m)))``.

    For log-probabilities use ``log_softmax``, not ``x - logsumexp(x)``."""
    xp = backend.xp
    shifted, m = _shifted(xp, x, axis)
    out = xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = xp.squeeze(out, axis=axis)
    return out


@kernel
def log_softmax(backend, x, axis=-1):
    """``(x - m) - log(sum(exp(x - m), axis))``, ``m`` the maximum along ``axis``.

    Never ``x - logsumexp(x)``: at ``|x|`` of 1e4 in float32 that keeps only three digits
    of ``x - m`` (a uniform row of 5 at -1e4 gives -1.609375, not -1.609438)."""
    xp = backend.xp
    shifted, _ = _shifted(xp, x, axis)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))


@kernel
def softmax(backend, x, axis=-1):
    """``exp(x - m) / sum(exp(x - m), axis)``: every row sums to 1 at any magnitude, and a
    uniform row gives exactly 1/C."""
    xp = backend.xp
    shifted, _ = _shifted(xp, x, axis)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=axis, keepdims=True)


@kernel
def relu(backend, x):
    """``max(x, 0)``; NaN stays NaN."""
    return backend.xp.maximum(x, 0.0)


@kernel
def relu_backward(backend, grad, y):
    """Gradient of ReLU given its output ``y``."""
    return backend.xp.where(y > 0, grad, 0.0)


@kernel
def softmax_cross_entropy(backend, logits, labels, label_smoothing=0.0):
    """Per-sample softmax cross-entropy. logits (N, C), integer labels (N,) ->
    ``(losses (N,), log_probs (N, C))``; the target is ``(1 - eps) * onehot + eps / C``
    for ``label_smoothing`` eps. ``log_probs`` is what the backward needs. A label outside
    [0, C) (unchecked: the loss checks them unless its checks are off) gives its row a NaN
    loss, on every backend."""
    xp = backend.xp
    log_probs = log_softmax(logits, axis=1)
    target = _smoothed_one_hot(labels, logits.shape[1], logits.dtype, label_smoothing)
    losses = -xp.sum(target * log_probs, axis=1)
    return xp.where(_inside(xp, labels, logits.shape[1]), losses, xp.nan), log_probs


@kernel
def softmax_cross_entropy_backward(backend, log_probs, labels, scale, label_smoothing=0.0):
    """d(scale * sum of losses)/d logits = ``scale * (softmax - target)``, (N, C); NaN rows
    for labels outside [0, C)."""
    xp = backend.xp
    grad = xp.exp(log_probs)
    grad -= _smoothed_one_hot(labels, log_probs.shape[1], log_probs.dtype, label_smoothing)
    grad *= scale
    return xp.where(_inside(xp, labels, log_probs.shape[1])[:, None], grad, xp.nan)


def _inside(xp, labels, num_classes):
    return (labels >= 0) & (labels < num_classes)


def _smoothed_one_hot(labels, num_classes, dtype, label_smoothing):
    target = one_hot(labels, num_classes, dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    return target
