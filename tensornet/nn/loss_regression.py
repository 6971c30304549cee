"""Regression losses: MSELoss, L1Loss, SmoothL1Loss, HuberLoss and PoissonNLLLoss
(PyTorch's).

Each takes a prediction and a target of the same shape and has every reduction of
``Loss`` (``"none"``: per element); all but PoissonNLLLoss cache ``pred - target``
(``ElementwiseLoss``).
"""
from __future__ import annotations

import math

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


class PoissonNLLLoss(Loss):
    """Negative log-likelihood of targets y (counts) under a Poisson distribution of rate
    ``exp(x)`` (``log_input=True``: ``exp(x) - y x``) or of rate x itself (``x - y log(x +
    eps)``), as ``torch.nn.PoissonNLLLoss``. ``full`` adds ``log(y!)`` in Stirling's form,
    ``y log y - y + 0.5 log(2 pi y)``, where y > 1 only (0 elsewhere, as PyTorch). The
    gradient is ``exp(x) - y`` (or ``1 - y / (x + eps)``). A rate that overflows (``exp(x)``
    beyond x of 88.7 in float32) makes the loss inf: NonFiniteError with checks on, inf as
    in PyTorch without. Caches the rate and y."""

    def __init__(self, log_input: bool = True, full: bool = False, *, eps: float = 1e-8,
                 reduction: str = "mean", check: bool | None = None):
        super().__init__(reduction, check)
        self.log_input, self.full, self.eps = bool(log_input), bool(full), float(eps)

    def forward(self, pred, target):
        self._accept_pred(pred)
        target = self._accept_target(target, tuple(pred.shape), "values", pred.dtype)
        xp = self.backend.xp
        if self.log_input:
            rate = xp.exp(pred)
            per_element = rate - target * pred
        else:
            rate = pred + self.eps
            per_element = pred - target * xp.log(rate)
        if self.full:
            counted = target > 1.0
            y = xp.where(counted, target, 1.0)  # no log of 0 or of negative targets
            stirling = y * xp.log(y) - y + 0.5 * xp.log((2.0 * math.pi) * y)
            per_element = per_element + xp.where(counted, stirling, 0.0)
        self._cache = (rate, target)
        return self._reduce(per_element)

    def backward(self, grad_output=None):
        rate, target = self._require_cache(self._cache)
        grad = rate - target if self.log_input else 1.0 - target / rate
        grad *= self._upstream(grad_output)
        return grad

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", log_input={self.log_input}, full={self.full}, "
                f"eps={self.eps}")
