"""Generic kernels of the normalization layers (BatchNorm, LayerNorm): standardise over
some axes, and the backward of that through ``xhat``."""
from __future__ import annotations

import math

from tensornet.backends import dtype_name

from .basic import reduce_sum, relu, relu_backward
from .dispatch import kernel


@kernel
def normalize(backend, x, axes, eps, allreduce=None, count=None):
    """Standardise ``x`` over ``axes`` (a tuple): returns ``(xhat, mean, var, invstd)``.

    ``mean``, ``var`` (biased, as used for normalising) and ``invstd = 1/sqrt(var+eps)``
    keep the reduced axes with size 1; ``xhat = (x - mean) * invstd`` has x's shape.
    SyncBatchNorm passes ``allreduce`` (sums an array in place over the ranks) and ``count``
    (the elements per channel on all ranks): the statistics are then those of every rank's
    input together (two passes, as here: sum, then squared deviations).
    """
    xp = backend.xp
    if dtype_name(x.dtype) == "float16":  # in float32, as PyTorch: its squares overflow past 256
        results = normalize(xp.astype(x, xp.float32), axes, eps, allreduce, count)
        return tuple(xp.astype(r, xp.float16) for r in results)

    def mean_over(values):
        if allreduce is None:
            return xp.mean(values, axis=axes, keepdims=True)
        return allreduce(xp.sum(values, axis=axes, keepdims=True)) / count

    mean = mean_over(x)
    xhat = x - mean
    var = mean_over(xhat * xhat)
    invstd = 1.0 / xp.sqrt(var + eps)
    xhat *= invstd
    return xhat, mean, var, invstd


@kernel
def normalize_backward(backend, grad, xhat, scale, axes, sums_out=(None, None),
                       allreduce=None, count=None):
    """Backward of ``normalize`` through ``xhat``, times ``scale``.

    With M the number of elements reduced over ``axes``:
    ``dx = scale * (grad - sum(grad)/M - xhat * sum(grad*xhat)/M)``. BatchNorm passes
    ``scale = weight*invstd`` (per channel) and the output gradient; LayerNorm passes
    ``scale = invstd`` and ``grad = dy*weight``. Returns ``(dx, sum(grad),
    sum(grad*xhat))``, the sums keeping the reduced axes with size 1 (BatchNorm's bias
    and weight gradients), written into ``sums_out`` (two arrays of that shape, or None)
    where given. With ``allreduce`` and ``count`` (SyncBatchNorm) the two sums in ``dx``
    and M are over all ranks; the returned sums stay this rank's own (its parameter
    gradients, which DataParallel averages).
    """
    xp = backend.xp
    if dtype_name(grad.dtype) == "float16":  # the sums in float32, as normalize's
        wide = [xp.astype(a, xp.float32) if hasattr(a, "dtype") and dtype_name(a.dtype) ==
                "float16" else a for a in (grad, xhat, scale)]
        results = normalize_backward(*wide, axes, allreduce=allreduce, count=count)
        results = tuple(xp.astype(r, xp.float16) for r in results)
        for out, value in zip(sums_out, results[1:]):
            if out is not None:
                out[...] = value
        return results[0], *(value if out is None else out
                             for out, value in zip(sums_out, results[1:]))
    if count is None:
        count = math.prod(grad.shape[axis] for axis in axes)
    sum_grad = reduce_sum(grad, axis=axes, keepdims=True, out=sums_out[0])
    sum_grad_xhat = reduce_sum(grad * xhat, axis=axes, keepdims=True, out=sums_out[1])
    total_grad, total_grad_xhat = sum_grad, sum_grad_xhat
    if allreduce is not None:
        both = allreduce(xp.stack([xp.reshape(sum_grad, (-1,)),
                                   xp.reshape(sum_grad_xhat, (-1,))]))
        total_grad = xp.reshape(both[0, ...], sum_grad.shape)
        total_grad_xhat = xp.reshape(both[1, ...], sum_grad.shape)
    dx = grad - total_grad / count
    dx -= xhat * (total_grad_xhat / count)
    dx *= scale
    return dx, sum_grad, sum_grad_xhat


@kernel
def normalize_affine_relu(backend, x, axes, eps, weight, bias):
    """A BatchNorm with batch statistics followed by a ReLU (``tensornet/nn/fusion.py``):
    ``normalize(x, axes, eps)``, then ``y = relu(xhat * weight + bias)`` with ``weight``
    and ``bias`` (C,) per channel (axis 1). Returns ``(xhat, y, mean, var, invstd,
    affine)``: ``affine`` is None, or (a backend's kernel) a (2, C) copy of the weight and
    bias that made ``y``, for ``normalize_relu_backward``. The NumPy backend does the affine
    transform and the ReLU in the normalizing sweep."""
    xhat, mean, var, invstd = normalize(x, axes, eps)
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    y = xhat * backend.xp.reshape(weight, shape)
    y += backend.xp.reshape(bias, shape)
    return xhat, relu(y), mean, var, invstd, None


@kernel
def normalize_relu_backward(backend, grad, y, xhat, scale, axes, sums_out=(None, None),
                            affine=None):
    """``normalize_backward(relu_backward(grad, y), xhat, scale, axes, sums_out)``: the
    backward of a ReLU with output ``y`` and of the BatchNorm before it, in one pass over
    the gradient on the NumPy backend. ``affine``: what ``normalize_affine_relu`` returned
    with this ``y`` and ``xhat`` (then the NumPy backend recomputes ReLU's mask from
    ``xhat`` instead of reading ``y``: the same mask), or None."""
    return normalize_backward(relu_backward(grad, y), xhat, scale, axes, sums_out=sums_out)
