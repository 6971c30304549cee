"""Generic kernels of the normalization layers (BatchNorm, LayerNorm): standardise over
some axes, and the backward of that through ``xhat``."""
from __future__ import annotations

import math

from .basic import reduce_sum
from .dispatch import kernel


@kernel
def normalize(backend, x, axes, eps):
    """Standardise ``x`` over ``axes`` (a tuple): returns ``(xhat, mean, var, invstd)``.

    ``mean``, ``var`` (biased, as used for normalising) and ``invstd = 1/sqrt(var+eps)``
    keep the reduced axes with size 1; ``xhat = (x - mean) * invstd`` has x's shape.
    """
    xp = backend.xp
    mean = xp.mean(x, axis=axes, keepdims=True)
    xhat = x - mean
    var = xp.mean(xhat * xhat, axis=axes, keepdims=True)
    invstd = 1.0 / xp.sqrt(var + eps)
    xhat *= invstd
    return xhat, mean, var, invstd


@kernel
def normalize_backward(backend, grad, xhat, scale, axes, sums_out=(None, None)):
    """Backward of ``normalize`` through ``xhat``, times ``scale``.

    With M the number of elements reduced over ``axes``:
    ``dx = scale * (grad - sum(grad)/M - xhat * sum(grad*xhat)/M)``. BatchNorm passes
    ``scale = weight*invstd`` (per channel) and the output gradient; LayerNorm passes
    ``scale = invstd`` and ``grad = dy*weight``. Returns ``(dx, sum(grad),
    sum(grad*xhat))``, the sums keeping the reduced axes with size 1 (BatchNorm's bias
    and weight gradients), written into ``sums_out`` (two arrays of that shape, or None)
    where given.
    """
    count = math.prod(grad.shape[axis] for axis in axes)
    sum_grad = reduce_sum(grad, axis=axes, keepdims=True, out=sums_out[0])
    sum_grad_xhat = reduce_sum(grad * xhat, axis=axes, keepdims=True, out=sums_out[1])
    dx = grad - sum_grad / count
    dx -= xhat * (sum_grad_xhat / count)
    dx *= scale
    return dx, sum_grad, sum_grad_xhat
