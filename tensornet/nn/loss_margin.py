"""Margin losses on -1/1 targets and on label lists, as PyTorch's: SoftMarginLoss,
HingeEmbeddingLoss (targets -1 or 1, the prediction's shape) and MultiLabelMarginLoss
(scores (N, C), class indices padded by -1). MultiMarginLoss lives in
``loss_classification.py``.

Every reduction of ``Loss`` applies. With checks on (CPU backends) a -1/1 target that is
neither raises (PyTorch computes on with it; unchecked, tensornet does too, by PyTorch's
formula), and so does a class index outside [-1, C) (as in PyTorch).
"""
from __future__ import annotations

import math

from . import functional as F
from .activation import _sigmoid
from .checks import check_real
from .loss import Loss, per_sample


def _softplus(xp, z):
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log(1 + exp(-|z|))``."""
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


class _SignTargetLoss(Loss):
    """A loss of predictions and targets of -1 or 1 of the same shape (any shape)."""

    def _accept_signs(self, pred, target):
        """The target cast to the predictions' dtype; with checks on, only -1 and 1 pass."""
        self._accept_pred(pred)
        target = self._accept_target(target, tuple(pred.shape), "values", pred.dtype)
        if not self._checks_on():
            return target
        xp = self.backend.xp
        sign = (target == 1.0) | (target == -1.0)
        if not bool(xp.all(sign)):
            low = float(xp.min(xp.where(sign, math.inf, target)))
            high = float(xp.max(xp.where(sign, -math.inf, target)))
            count = int(xp.sum(xp.astype(~sign, xp.int64)))
            raise ValueError(f"{type(self).__name__} expects targets of -1 or 1, got {count} "
                             f"other values (from {low} to {high}); for 0/1 targets pass "
                             f"2 * t - 1")
        return target


class SoftMarginLoss(_SignTargetLoss):
    """The two-class logistic loss ``log(1 + exp(-y * x))`` for targets y of -1 or 1, as
    ``torch.nn.SoftMarginLoss``; ``"mean"`` averages over every element.

    Computed as ``softplus(-y x)``, finite for any x: PyTorch's ``log1p(exp(-y x))`` gives
    inf beyond -y x of 88.7 in float32 (709.8 in float64), and a NaN gradient there; here
    the value is ``-y x`` and the gradient ``-y``. The gradient is
    ``-y * sigmoid(-y x)``. Caches ``-y x`` and y."""

    def forward(self, pred, target):
        target = self._accept_signs(pred, target)
        margin = -(target * pred)
        self._cache = (margin, target)
        return self._reduce(_softplus(self.backend.xp, margin))

    def backward(self, grad_output=None):
        margin, target = self._require_cache(self._cache)
        grad = -target * _sigmoid(self.backend.xp, margin)
        grad *= self._upstream(grad_output)
        return grad


class HingeEmbeddingLoss(_SignTargetLoss):
    """``x`` where y is 1, ``max(0, margin - x)`` where y is -1, as
    ``torch.nn.HingeEmbeddingLoss(margin=1.0)`` (x typically a distance between two
    embeddings, y 1 for similar pairs, -1 for dissimilar ones); ``"mean"`` averages over
    every element.

    At x = margin the hinge's gradient is -1 (its slope left of the kink), as PyTorch's;
    unchecked, a target that is neither 1 nor -1 takes both terms, as in PyTorch. Caches
    the gradient."""

    def __init__(self, margin: float = 1.0, *, reduction: str = "mean",
                 check: bool | None = None):
        super().__init__(reduction, check)
        self.margin = check_real("HingeEmbeddingLoss", "margin", margin)

    def forward(self, pred, target):
        target = self._accept_signs(pred, target)
        xp = self.backend.xp
        below = self.margin - pred
        hinged, passed = target != 1.0, target != -1.0
        per_element = xp.where(hinged, xp.maximum(below, 0.0), 0.0) + xp.where(passed, pred, 0.0)
        self._cache = (xp.astype(passed, pred.dtype)
                       - xp.astype(hinged & (below >= 0.0), pred.dtype))
        return self._reduce(per_element)

    def backward(self, grad_output=None):
        return self._require_cache(self._cache) * self._upstream(grad_output)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", margin={self.margin}"


class MultiLabelMarginLoss(Loss):
    """The multi-label hinge, as ``torch.nn.MultiLabelMarginLoss``: scores x (N, C) (or one
    sample (C,)), targets y of the same shape holding each sample's class indices, then
    -1 as padding (only the indices before the first -1 count). Sample n's loss is
    ``sum_j sum_{i not a target} max(0, 1 - (x[n, y[n, j]] - x[n, i])) / C`` over its
    target indices j (a repeated index counts each time, as PyTorch). ``"mean"`` averages
    over the N samples. The hinge's gradient is 0 at its kink (PyTorch's).

    Integer targets of any width (PyTorch takes int64 only). With checks on, an index
    outside [-1, C) anywhere in the row raises, as PyTorch; unchecked, such a row gets a
    NaN loss and NaN gradients. Computed as an (N, C, C) array of every (target, other
    class) pair. Caches the gradient."""

    def forward(self, scores, target):
        self._accept_pred(scores, ndim=(1, 2), expected="scores of shape (N, C) or (C,)")
        shape = tuple(scores.shape)
        self._check_classes(shape)
        self._accept_target(target, shape, "indices")
        xp = self.backend.xp
        unbatched = len(shape) == 1
        if unbatched:
            scores, target = scores[None, :], target[None, :]
        n, c = scores.shape
        target = xp.astype(target, xp.int64)
        stray = (target < -1) | (target >= c)
        if self._checks_on() and bool(xp.any(stray)):
            raise ValueError(f"MultiLabelMarginLoss: targets must be class indices in "
                             f"[0, {c - 1}] or -1 (padding) for {c} classes; got values from "
                             f"{int(xp.min(target))} to {int(xp.max(target))}")
        # counts[n, j]: how often class j is listed before the row's first negative entry
        listed = xp.cumulative_sum(xp.astype(target < 0, xp.int64), axis=1) == 0
        onehot = F.one_hot(xp.reshape(target, (-1,)), c, scores.dtype)
        listed = xp.astype(listed, scores.dtype)[:, :, None]
        counts = xp.sum(xp.reshape(onehot, (n, c, c)) * listed, axis=1)
        others = xp.astype(counts == 0.0, scores.dtype)
        # pair (j, i): target class j against class i, weighted by j's count over C
        pairs = (counts * (1.0 / c))[:, :, None] * others[:, None, :]
        hinge = 1.0 - scores[:, :, None] + scores[:, None, :]
        per_sample_loss = xp.sum(xp.reshape(pairs * xp.maximum(hinge, 0.0), (n, c * c)), axis=1)
        slopes = pairs * xp.astype(hinge > 0.0, scores.dtype)
        grad = xp.sum(slopes, axis=1) - xp.sum(slopes, axis=2)
        if not self._checks_on():
            rows = xp.any(stray, axis=1)
            per_sample_loss = xp.where(rows, xp.nan, per_sample_loss)
            grad = xp.where(rows[:, None], xp.nan, grad)
        if unbatched:
            per_sample_loss, grad = xp.reshape(per_sample_loss, ()), xp.reshape(grad, (c,))
        self._cache = grad
        return self._reduce(per_sample_loss)

    def backward(self, grad_output=None):
        grad = self._require_cache(self._cache)
        return grad * per_sample(self._upstream(grad_output))
