"""Distances between two inputs, as PyTorch's: PairwiseDistance (``||x1 - x2 + eps||_p``)
and CosineSimilarity, and the p-distance math TripletMarginLoss shares.

``y = layer(x1, x2)``; ``layer.backward(grad)`` returns d loss / d x1 and leaves
d loss / d x2 in ``input2_grad`` (as the two-input losses of ``loss_pairs.py``)."""
from __future__ import annotations

import math

from tensornet.backends import dtype_name

from .checks import check_flag, check_real
from .module import Module


def check_p(owner: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < math.inf:
        raise ValueError(f"{owner}: p must be a positive finite number, got {p!r}")
    return float(p)


def p_distance(xp, u, v, p: float, eps: float):
    """``(||u - v + eps||_p over the last axis, u - v + eps)``."""
    diff = u - v + eps
    return xp.sum(xp.abs(diff) ** p, axis=-1) ** (1.0 / p), diff


def p_distance_slope(xp, distance, diff, p: float):
    """d ||diff||_p / d diff: ``sign(diff) (|diff| / ||diff||)^(p-1)``, 0 where the distance
    is 0 (as PyTorch's norm)."""
    distance = xp.reshape(distance, tuple(distance.shape) + (1,))
    safe = xp.where(distance > 0.0, distance, 1.0)
    slope = xp.sign(diff) * (xp.abs(diff) / safe) ** (p - 1.0)
    return xp.where(distance > 0.0, slope, 0.0)


class _TwoInputs(Module):
    """A layer of two arrays of one shape; d loss / d x2 goes to ``input2_grad``."""

    _cache_attrs = ("_cache",)

    def _accept_pair(self, x1, x2):
        self._accept_floating(x1)
        if not self.backend.owns(x2) or tuple(x2.shape) != tuple(x1.shape) \
                or dtype_name(x2.dtype) != dtype_name(x1.dtype):
            what = (f"{dtype_name(x2.dtype)} array of shape {tuple(x2.shape)}"
                    if hasattr(x2, "shape") and hasattr(x2, "dtype") else type(x2).__name__)
            raise ValueError(f"{self._describe()} got x2 as a {what} for x1 of shape "
                             f"{tuple(x1.shape)} ({dtype_name(x1.dtype)}); they must match in "
                             f"shape, dtype and device")


class PairwiseDistance(_TwoInputs):
    """``||x1 - x2 + eps||_p`` over the last axis, as ``torch.nn.PairwiseDistance(p=2.0,
    eps=1e-6, keepdim=False)``: x1, x2 (..., D) -> (...) (``keepdim``: (..., 1)). Caches
    the difference and the distances."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        super().__init__()
        name = "PairwiseDistance"
        self.norm, self.eps = check_p(name, p), check_real(name, "eps", eps)
        self.keepdim = check_flag(name, "keepdim", keepdim)
        self.input2_grad = None

    def forward(self, x1, x2):
        self._accept_pair(x1, x2)
        xp = self.backend.xp
        distance, diff = p_distance(xp, x1, x2, self.norm, self.eps)
        self._cache = (distance, diff)
        return xp.reshape(distance, tuple(distance.shape) + (1,)) if self.keepdim else distance

    def backward(self, grad_output):
        distance, diff = self._require_cache(self._cache)
        xp = self.backend.xp
        if not self.keepdim:
            grad_output = xp.reshape(grad_output, tuple(grad_output.shape) + (1,))
        grad = p_distance_slope(xp, distance, diff, self.norm) * grad_output
        self.input2_grad = -grad
        return grad

    def extra_repr(self) -> str:
        return f"p={self.norm}, eps={self.eps}, keepdim={self.keepdim}"


class CosineSimilarity(_TwoInputs):
    """``sum(x1 / n1 * x2 / n2)`` along ``dim`` with ``n = max(||x||, eps)``, as
    ``torch.nn.CosineSimilarity(dim=1, eps=1e-8)``. As PyTorch, the clamp at eps sets the
    value only: the gradient flows as through the norm itself (zero where the norm is 0).
    Caches both inputs scaled by their norms, and the norms."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise ValueError(f"CosineSimilarity: dim must be an int, got {dim!r}")
        self.dim, self.eps = dim, check_real("CosineSimilarity", "eps", eps)
        self.input2_grad = None

    def forward(self, x1, x2):
        self._accept_pair(x1, x2)
        if not -x1.ndim <= self.dim < x1.ndim:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x1.shape)}: no "
                             f"axis {self.dim}")
        xp = self.backend.xp
        axis = self.dim % x1.ndim
        norms = [xp.sqrt(xp.sum(x * x, axis=axis, keepdims=True)) for x in (x1, x2)]
        units = [x / xp.maximum(n, self.eps) for x, n in zip((x1, x2), norms)]
        cos = xp.sum(units[0] * units[1], axis=axis, keepdims=True)
        self._cache = (units, norms, [xp.maximum(n, self.eps) for n in norms], cos, axis)
        return xp.squeeze(cos, axis=axis)

    def backward(self, grad_output):
        (u1, u2), norms, clamped, cos, axis = self._require_cache(self._cache)
        xp = self.backend.xp
        grad_output = xp.expand_dims(grad_output, axis=axis)

        def through(unit_self, unit_other, norm, scale):
            # d cos / d x = other / n - cos * x / (n ||x||), the second 0 where ||x|| = 0
            inward = xp.where(norm > 0.0, unit_self * (scale / xp.where(norm > 0.0, norm, 1.0)),
                              0.0)
            return (unit_other - cos * inward) / scale * grad_output

        self.input2_grad = through(u2, u1, norms[1], clamped[1])
        return through(u1, u2, norms[0], clamped[0])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"
