"""Generic kernels of the dense layers, activations and losses: matmul, sums into a
buffer, scatter-add and scatter-assign, one-hot, log-sum-exp, softmax and log-softmax, ReLU
and softmax cross-entropy.

Each is the reference version: array-API-standard calls on ``backend.xp`` only; devices
override them by name (NumPy: ``backends/numpy.py``; CuPy: ``backends/cupy.py``).
"""
from __future__ import annotations

import numpy as np

from tensornet.backends import dtype_name

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
def scatter_assign(backend, target, index, values):
    """``target.flat[index[i]] = values[i]``: ``target`` updated in place and returned;
    ``index`` (integer) and ``values`` are flattened. Where an index repeats, which value
    lands is unspecified (callers repeat an index only with equal values: MaxUnpool2d).
    The standard has no scatter, so the generic version goes through the host."""
    host = backend.to_numpy(target).reshape(-1).copy()
    host[backend.to_numpy(index).reshape(-1)] = backend.to_numpy(values).reshape(-1)
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
def bias_relu(backend, y, bias):
    """``relu(y + bias)``: a Linear's bias and the ReLU after it, for the Linear's GEMM
    output ``y`` (N, C) and ``bias`` (C,). ``y`` is the caller's temporary: it may be
    overwritten (the NumPy backend's kernel does both in place, in one pass)."""
    y += bias
    return relu(y)


@kernel
def relu_backward_sum(backend, grad, y, out=None):
    """``(relu_backward(grad, y), its sum over axis 0)``: ReLU's backward through its
    output ``y`` (N, C) and the gradient of the bias of the Linear before it. ``out``: an
    array (C,) for the sum (a bias's gradient slot), or None."""
    masked = relu_backward(grad, y)
    return masked, reduce_sum(masked, axis=0, out=out)


@kernel
def softmax_cross_entropy(backend, logits, labels, label_smoothing=0.0, ignore_index=None):
    """Per-sample softmax cross-entropy. logits (N, C), integer labels (N,) ->
    ``(losses (N,), log_probs (N, C))``; the target is ``(1 - eps) * onehot + eps / C``
    for ``label_smoothing`` eps. ``log_probs`` is what the backward needs.

    With ``ignore_index`` given, rows whose label equals it get loss 0 (and a 0 gradient
    row from the backward), as PyTorch's, and the result is ``(losses, log_probs, kept)``:
    ``kept`` is the number of the other rows, a 0-d array of the logits' dtype on their
    device (what ``"mean"`` divides by; counted in the same pass where the device can, and
    never read back to the host). Any other label outside [0, C) (unchecked: the loss
    checks them unless its checks are off) gives its row a NaN loss, on every backend."""
    xp = backend.xp
    log_probs = log_softmax(logits, axis=1)
    target = _smoothed_one_hot(labels, logits.shape[1], logits.dtype, label_smoothing)
    losses = -xp.sum(target * log_probs, axis=1)
    losses = xp.where(_inside(xp, labels, logits.shape[1]), losses, xp.nan)
    if ignore_index is None:
        return losses, log_probs
    ignored = labels_equal(labels, ignore_index)
    kept = xp.sum(xp.astype(~ignored, logits.dtype))
    return xp.where(ignored, 0.0, losses), log_probs, kept


@kernel
def softmax_cross_entropy_backward(backend, log_probs, labels, scale, label_smoothing=0.0,
                                   ignore_index=None, divisor=None):
    """d(scale / divisor * sum of losses)/d logits = ``scale / divisor * (softmax -
    target)``, (N, C): 0 on rows whose label is ``ignore_index`` (when given), NaN on rows
    of any other label outside [0, C). ``divisor`` (a 0-d array: the forward's ``kept``, or
    None for 1) is divided by here, on the device, so the caller never reads it; when it
    is 0 every row is ignored and the gradient is 0."""
    xp = backend.xp
    grad = xp.exp(log_probs)
    grad -= _smoothed_one_hot(labels, log_probs.shape[1], log_probs.dtype, label_smoothing)
    grad *= scale
    if divisor is not None:
        grad /= xp.where(divisor == 0.0, 1.0, divisor)  # 0: no row is kept, any value does
    grad = xp.where(_inside(xp, labels, log_probs.shape[1])[:, None], grad, xp.nan)
    if ignore_index is None:
        return grad
    return xp.where(labels_equal(labels, ignore_index)[:, None], 0.0, grad)


@kernel
def labels_equal(backend, labels, value: int):
    """Boolean (N,): which integer labels equal ``value`` (none when the labels' dtype
    cannot hold it, -100 for uint8 labels say, which array-api-strict refuses to compare)."""
    xp = backend.xp
    limits = np.iinfo(dtype_name(labels.dtype))
    if not limits.min <= value <= limits.max:
        return xp.zeros(labels.shape, dtype=xp.bool)
    return labels == value


def _inside(xp, labels, num_classes):
    return (labels >= 0) & (labels < num_classes)


def _smoothed_one_hot(labels, num_classes, dtype, label_smoothing):
    target = one_hot(labels, num_classes, dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / num_classes
    return target
