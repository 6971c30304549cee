"""Normalization of each sample over its last axes: LayerNorm (mean and variance) and
RMSNorm (root mean square only), as PyTorch's. LayerNorm's statistics and backward are
``F.normalize`` / ``F.normalize_backward`` (shared with BatchNorm and GroupNorm); RMSNorm's
few array calls are here."""
from __future__ import annotations

import numbers

import numpy as np

from tensornet.backends import dtype_name

from . import functional as F
from .checks import check_flag, check_real
from .linear import _positive_int
from .module import Module


def _normalized_shape(owner: str, normalized_shape) -> tuple:
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(normalized_shape)
    shape = tuple(_positive_int(owner, "normalized_shape", d) for d in shape)
    if not shape:
        raise ValueError(f"{owner}: normalized_shape must name at least one axis")
    return shape


def _check_trailing(module, x, normalized_shape) -> tuple:
    """The input check: x (..., *normalized_shape); returns the normalized axes."""
    k = len(normalized_shape)
    module._check_input(x, expected=f"(..., {', '.join(map(str, normalized_shape))})")
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != normalized_shape:
        raise ValueError(f"{module._describe()} got input of shape {tuple(x.shape)}; expected "
                         f"(N, ..., {', '.join(map(str, normalized_shape))})")
    return tuple(range(x.ndim - k, x.ndim))


class LayerNorm(Module):
    """Layer normalization (Ba et al. 2016) over the last ``len(normalized_shape)`` axes.

    x (..., *normalized_shape) -> y of the same shape, each sample standardised with its own
    mean and biased variance, then ``y = xhat * weight + bias`` (weight and bias of shape
    ``normalized_shape``) when ``elementwise_affine``. Same statistics in train and eval.
    Forward caches ``xhat`` (input-sized) and ``1/sqrt(var+eps)``.
    """

    _cache_attrs = ("_cache",)

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        self.normalized_shape = _normalized_shape("LayerNorm", normalized_shape)
        self.eps = check_real("LayerNorm", "eps", eps)
        self.elementwise_affine = check_flag("LayerNorm", "elementwise_affine",
                                             elementwise_affine)
        affine, bias = self.elementwise_affine, check_flag("LayerNorm", "bias", bias)
        self.weight = self.new_parameter(np.ones(self.normalized_shape)) if affine else None
        self.bias = (self.new_parameter(np.zeros(self.normalized_shape))
                     if affine and bias else None)

    def forward(self, x):
        axes = _check_trailing(self, x, self.normalized_shape)
        self._cache = None
        xhat, _, _, invstd = F.normalize(x, axes, self.eps)
        self._cache = (xhat, invstd, axes)
        if self.weight is None:
            return xhat
        y = xhat * self.weight.data
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad_output):
        xhat, invstd, axes = self._require_cache(self._cache)
        batch_axes = tuple(range(xhat.ndim - len(axes)))
        grad_xhat = grad_output
        if self.weight is not None:
            grad_xhat = grad_output * self.weight.data
            if self.weight.requires_grad:
                self.weight.accumulate_grad(F.reduce_sum(grad_output * xhat, axis=batch_axes,
                                                         out=self.weight.grad_buffer()))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(F.reduce_sum(grad_output, axis=batch_axes,
                                                   out=self.bias.grad_buffer()))
        dx, _, _ = F.normalize_backward(grad_xhat, xhat, invstd, axes)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

    def _describe(self) -> str:
        return f"LayerNorm({self.normalized_shape})"


class RMSNorm(Module):
    """Root-mean-square normalization (Zhang & Sennrich 2019), as ``torch.nn.RMSNorm(
    normalized_shape, eps=None, elementwise_affine=True)``: over the last
    ``len(normalized_shape)`` axes, ``y = x / sqrt(mean(x^2) + eps) * weight`` (weight of
    shape ``normalized_shape``, ones at first; no bias, no centring). float16 inputs take
    their statistics in float32, and ``eps=None`` is the machine epsilon of the dtype the
    statistics are taken in (float32's for float16: PyTorch's opmath type's). Forward
    caches ``xhat = x / rms`` and ``1 / rms``.

    Backward: ``dx = (dxhat - xhat * mean(dxhat * xhat)) / rms`` with ``dxhat = dy * weight``.
    """

    _cache_attrs = ("_cache",)

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        self.normalized_shape = _normalized_shape("RMSNorm", normalized_shape)
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, numbers.Real)
                                or not eps >= 0):
            raise ValueError(f"RMSNorm: eps must be a number >= 0 or None, got {eps!r}")
        self.eps = None if eps is None else float(eps)
        self.elementwise_affine = check_flag("RMSNorm", "elementwise_affine",
                                             elementwise_affine)
        self.weight = self.new_parameter(np.ones(self.normalized_shape)) \
            if self.elementwise_affine else None

    def forward(self, x):
        axes = _check_trailing(self, x, self.normalized_shape)
        xp = self.backend.xp
        work = xp.astype(x, xp.float32) if dtype_name(x.dtype) == "float16" else x
        eps = self.eps if self.eps is not None else float(np.finfo(dtype_name(work.dtype)).eps)
        inv_rms = 1.0 / xp.sqrt(xp.mean(work * work, axis=axes, keepdims=True) + eps)
        xhat = xp.astype(work * inv_rms, x.dtype)
        self._cache = (xhat, inv_rms, axes)
        return xhat if self.weight is None else xhat * self.weight.data

    def backward(self, grad_output):
        xhat, inv_rms, axes = self._require_cache(self._cache)
        xp = self.backend.xp
        grad_xhat = grad_output
        if self.weight is not None:
            grad_xhat = grad_output * self.weight.data
            if self.weight.requires_grad:
                batch_axes = tuple(range(xhat.ndim - len(axes)))
                self.weight.accumulate_grad(F.reduce_sum(grad_output * xhat, axis=batch_axes,
                                                         out=self.weight.grad_buffer()))
        work = [xp.astype(a, inv_rms.dtype) for a in (grad_xhat, xhat)]
        projection = xp.mean(work[0] * work[1], axis=axes, keepdims=True)
        dx = (work[0] - work[1] * projection) * inv_rms
        return xp.astype(dx, grad_output.dtype)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")

    def _describe(self) -> str:
        return f"RMSNorm({self.normalized_shape})"
