"""Regression losses: MSELoss, L1Loss, SmoothL1Loss, HuberLoss, PoissonNLLLoss and
GaussianNLLLoss (PyTorch's).

Each takes a prediction and a target of the same shape (GaussianNLLLoss also a variance)
and has every reduction of ``Loss`` (``"none"``: per element); MSE, L1, SmoothL1 and Huber
cache ``pred - target`` (``ElementwiseLoss``).
"""
from __future__ import annotations

import math
import numbers

from tensornet.backends import dtype_name

from .checks import check_flag, check_real
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
        name = "PoissonNLLLoss"
        self.log_input = check_flag(name, "log_input", log_input)
        self.full, self.eps = check_flag(name, "full", full), check_real(name, "eps", eps)

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


class GaussianNLLLoss(Loss):
    """Negative log-likelihood of targets under a Gaussian of mean ``pred`` and variance
    ``var``, as ``torch.nn.GaussianNLLLoss(*, full, eps, reduction)``: per element
    ``0.5 * (log(v) + (pred - target)^2 / v)`` with ``v = max(var, eps)``, plus
    ``0.5 * log(2 pi)`` with ``full``. Called as ``loss_fn(pred, target, var)``.

    ``var`` has the prediction's shape, or one axis fewer at the end (one variance per
    sample of a (N, D) prediction), or a 1 along one axis (shared along it), or is a
    float; negative entries raise (with checks on). ``backward(grad_output)`` returns
    d loss / d pred and leaves d loss / d var, of var's shape, in ``var_grad`` (None for a
    float var): the variance is usually a second head of the model. As in PyTorch the
    clamp at ``eps`` passes the gradient through, taken at the clamped value. Caches
    ``pred - target`` and the clamped variance."""

    _cache_attrs = Loss._cache_attrs + ("_var",)

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean",
                 check: bool | None = None):
        super().__init__(reduction, check)
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"GaussianNLLLoss: eps must be a positive number, got {eps!r}")
        self.full, self.eps = check_flag("GaussianNLLLoss", "full", full), float(eps)
        self.var_grad = None

    def forward(self, pred, target, var):
        self._accept_pred(pred)
        shape = tuple(pred.shape)
        target = self._accept_target(target, shape, "values", pred.dtype)
        xp = self.backend.xp
        var, var_shape = self._accept_var(var, shape, pred.dtype)
        if self._checks_on() and bool(xp.any(var < 0)):
            raise ValueError("GaussianNLLLoss: var has negative entries; a variance must be "
                             ">= 0")
        clamped = xp.maximum(var, self.eps)
        diff = pred - target
        per_element = 0.5 * (xp.log(clamped) + diff * diff / clamped)
        if self.full:
            per_element = per_element + 0.5 * math.log(2.0 * math.pi)
        self._cache, self._var = diff, (clamped, var_shape)
        return self._reduce(per_element)

    def _accept_var(self, var, shape, dtype):
        """``(var broadcastable to shape, the shape its gradient takes or None)``."""
        name = type(self).__name__
        if isinstance(var, (int, float)) and not isinstance(var, bool):
            if var < 0:
                raise ValueError(f"{name}: var has negative entries; a variance must be >= 0")
            return self.backend.full(shape, float(var), dtype_name(dtype)), None
        if not self.backend.owns(var):
            raise TypeError(f"{name} expected var as an array on {self.backend.device!r} or a "
                            f"float, got {type(var).__name__}")
        given = tuple(var.shape)
        if given != shape and given == shape[:-1]:  # (a 0-d var of a 0-d pred: same shape)
            var = self.backend.xp.reshape(var, given + (1,))
        elif given != shape and not (len(given) == len(shape) and sum(
                b for a, b in zip(shape, given) if a != b) == 1):
            raise ValueError(f"{name} got var of shape {given} for predictions of shape "
                             f"{shape}; expected {shape}, {shape[:-1]} or {shape} with one "
                             f"axis of size 1")
        if not dtype_name(var.dtype).startswith("float"):
            raise TypeError(f"{name} expected a floating var, got {dtype_name(var.dtype)}")
        if dtype_name(var.dtype) != dtype_name(dtype):
            var = self.backend.xp.astype(var, dtype)  # as a target: never float64 leaks
        return var, given

    def backward(self, grad_output=None):
        diff = self._require_cache(self._cache)
        clamped, var_shape = self._var
        xp = self.backend.xp
        upstream = self._upstream(grad_output)
        grad = diff / clamped * upstream
        if var_shape is None:
            self.var_grad = None
        else:
            d_var = 0.5 * (1.0 / clamped - diff * diff / (clamped * clamped)) * upstream
            shared = tuple(i for i, (a, b) in enumerate(zip(grad.shape, clamped.shape))
                           if a != b)
            if shared:
                d_var = xp.sum(d_var, axis=shared, keepdims=True)
            self.var_grad = xp.reshape(d_var, var_shape)
        return grad

    def extra_repr(self) -> str:
        return super().extra_repr() + f", full={self.full}, eps={self.eps}"
