"""Regression losses: MSELoss, L1Loss, SmoothL1Loss and HuberLoss (PyTorch's).

Each takes a prediction and a target of the same shape, caches ``pred - target``
(``ElementwiseLoss``) and has every reduction of ``Loss`` (``"none"``: per element).
"""
from __future__ import annotations

from .loss import Loss


class ElementwiseLoss(Loss):
    """A loss of one per-element function of ``d = pred - target`` (same shapes); caches d.
    Subclasses give ``_values(d)`` and ``_slopes(d)``, its derivative (a fresh array)."""

    def forward(self, pred, target):
        self._accept_pred(pred)
        target = self._accept_target(target, tuple(pred.shape), "values", pred.dtype)
        diff = pred - target
        self._cache = diff
        return self._reduce(self._values(diff))

    def backward(self, grad_output=None):
        grad = self._slopes(self._require_cache(self._cache))
        grad *= self._upstream(grad_output)
        return grad


class MSELoss(ElementwiseLoss):
    """Mean squared error over all elements; target has the prediction's shape."""

    def _values(self, diff):
        return diff * diff

    def _slopes(self, diff):
        return 2.0 * diff


class L1Loss(ElementwiseLoss):
    """Mean absolute error ``|pred - target|``; the gradient is ``sign(pred - target)``
    (0 where they are equal, as PyTorch)."""

    def _values(self, diff):
        return self.backend.xp.abs(diff)

    def _slopes(self, diff):
        return self.backend.xp.sign(diff)


def _huber(xp, diff, delta: float):
    """Huber's function: ``0.5 d^2`` for |d| < delta, ``delta (|d| - 0.5 delta)`` beyond."""
    magnitude = xp.abs(diff)
    # Square the clipped residual: where holds both branches, and d * d of a residual the
    # quadratic branch does not take overflows (float32: |d| > 1.8e19) with a warning.
    inside = xp.clip(diff, -delta, delta)
    return xp.where(magnitude < delta, 0.5 * (inside * inside), delta * (magnitude - 0.5 * delta))


def _huber_slopes(xp, diff, delta: float):
    """Its derivative: ``d`` inside, ``delta * sign(d)`` beyond."""
    return xp.clip(diff, -delta, delta)


class HuberLoss(ElementwiseLoss):
    """Huber loss (Huber 1964) with threshold ``delta`` > 0, as ``torch.nn.HuberLoss``:
    ``0.5 d^2`` for |d| < delta, else ``delta * (|d| - 0.5 * delta)``; d = pred - target."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0, check: bool | None = None):
        super().__init__(reduction, check)
        self.delta = float(delta)
        if not self.delta > 0.0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta!r}")

    def _values(self, diff):
        return _huber(self.backend.xp, diff, self.delta)

    def _slopes(self, diff):
        return _huber_slopes(self.backend.xp, diff, self.delta)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", delta={self.delta}"


class SmoothL1Loss(ElementwiseLoss):
    """Smooth L1 (Girshick 2015, Fast R-CNN), as ``torch.nn.SmoothL1Loss``: ``0.5 d^2 / beta``
    for |d| < beta, else ``|d| - 0.5 * beta``; i.e. HuberLoss(delta=beta) / beta, and
    L1Loss for ``beta = 0``."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0, check: bool | None = None):
        super().__init__(reduction, check)
        self.beta = float(beta)
        if not self.beta >= 0.0:
            raise ValueError(f"SmoothL1Loss: beta must be >= 0, got {beta!r}")

    def _values(self, diff):
        xp = self.backend.xp
        if self.beta == 0.0:
            return xp.abs(diff)
        return _huber(xp, diff, self.beta) * (1.0 / self.beta)

    def _slopes(self, diff):
        xp = self.backend.xp
        if self.beta == 0.0:
            return xp.sign(diff)
        return _huber_slopes(xp, diff, self.beta) * (1.0 / self.beta)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", beta={self.beta}"
