"""Losses: ``loss = loss_fn(pred, target)`` returns a 0-d array; ``loss_fn.backward()``
returns d loss / d pred. Each caches what its gradient needs.

On CPU backends every call also checks label range and that the loss is finite (a NaN loss
raises ``NonFiniteError`` naming the loss), and the first call of CrossEntropyLoss and
NLLLoss looks once at its input: probabilities fed to CrossEntropyLoss (a Softmax before
it) or to NLLLoss (which wants log-probabilities) warn, naming the fix. On the GPU those
checks would force a host sync, so they are off there by default (``check=True`` turns them
on).
"""
from __future__ import annotations

import math
import numbers
import warnings

from tensornet.backends import DeviceError, SyncPolicy, device_of, dtype_name

from . import functional as F
from .module import Module

_REDUCTIONS = ("mean", "sum")


class NonFiniteError(ValueError):
    """A loss (or a layer it checks) produced NaN or Inf."""


class Loss(Module):
    """Base class: ``reduction`` is ``"mean"`` (default) or ``"sum"``."""

    _cache_attrs = ("_cache",)

    def __init__(self, reduction: str = "mean", check: bool | None = None):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction
        self.check = check
        self._probed = False  # whether the first checked call looked at the input's values

    def _checks_on(self) -> bool:
        if self.check is None:
            return self.backend.sync_policy is SyncPolicy.EVERY_STEP
        return self.check

    def _accept_pred(self, pred, ndim=None, expected=""):
        self._accept_floating(pred, ndim=ndim, expected=expected)

    def _check_grad_output(self, grad_output, spec) -> None:
        """``backward(grad_output)`` takes None (d loss / d loss = 1), a real number or an
        array of the loss's shape."""
        if grad_output is None or (isinstance(grad_output, numbers.Real)
                                   and not isinstance(grad_output, bool)):
            return
        super()._check_grad_output(grad_output, spec)

    def _probe_once(self) -> bool:
        """True at the first call with checks on (a look at the input's values)."""
        if self._probed or not self._checks_on():
            return False
        self._probed = True
        return True

    def _accept_target(self, target, shape, kind: str, dtype=None):
        """``kind`` is ``"labels"`` (integer class indices) or ``"values"`` (the prediction's
        shape; real values of another dtype are cast to ``dtype``, the prediction's).
        Returns the target to compute with."""
        name = type(self).__name__
        if not self.backend.owns(target):
            if hasattr(target, "shape"):
                raise DeviceError(f"{name}: predictions are on {self.backend.device!r} but the "
                                  f"target is on {device_of(target)!r}")
            raise TypeError(f"{name} expected the target as an array, got "
                            f"{type(target).__name__}")
        if kind == "labels":
            if not dtype_name(target.dtype).startswith(("int", "uint")):
                raise TypeError(f"{name} expected integer class labels of shape ({shape[0]},), "
                                f"got {dtype_name(target.dtype)}; convert with astype('int64')")
            if tuple(target.shape) != (shape[0],):
                raise ValueError(f"{name} got labels of shape {tuple(target.shape)} for "
                                 f"predictions of shape {shape}; expected ({shape[0]},)")
            if self._checks_on() and not F.labels_in_range(target, shape[1]):
                low = int(self.backend.xp.min(target))
                high = int(self.backend.xp.max(target))
                raise ValueError(f"{name}: labels must be in [0, {shape[1] - 1}] for "
                                 f"{shape[1]} classes; got labels from {low} to {high}")
            return target
        if tuple(target.shape) != shape:
            raise ValueError(f"{name} got target of shape {tuple(target.shape)} for predictions "
                             f"of shape {shape}; they must match")
        got = dtype_name(target.dtype)
        if got == dtype_name(dtype):
            return target
        if not got.startswith(("float", "int", "uint", "bool")):
            raise TypeError(f"{name} expected a real-valued target, got {got}")
        # As PyTorch, a float64 (or integer) target trains a float32 model: computing in the
        # target's dtype would leak float64 gradients into the model.
        return self.backend.xp.astype(target, dtype)

    def _reduce(self, per_element, count: int):
        total = self.backend.xp.sum(per_element)
        loss = total / count if self.reduction == "mean" else total
        # A 0-d loss: one float() read is the whole check (three array calls fewer per step).
        if self._checks_on() and not math.isfinite(float(loss)):
            raise NonFiniteError(f"{type(self).__name__}: the loss is {float(loss)}; the "
                                 f"predictions hold non-finite values or are too large. The "
                                 f"model probably diverged: lower the learning rate or check "
                                 f"the inputs")
        return loss

    def _scale(self, count: int, grad_output):
        scale = 1.0 / count if self.reduction == "mean" else 1.0
        if grad_output is not None:
            scale *= float(grad_output)
        return scale

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits ``(N, C)`` and integer labels ``(N,)``.

    ``label_smoothing`` eps mixes the one-hot target with the uniform one:
    ``(1 - eps) * onehot + eps / C`` (as PyTorch). Log-sum-exp keeps it stable for any logits.
    Caches the log-probabilities and the labels. The math is
    ``tensornet.nn.functional.softmax_cross_entropy`` (one fused kernel on the GPU).
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0,
                 check: bool | None = None):
        super().__init__(reduction, check)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1), got "
                             f"{label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits, labels):
        self._accept_pred(logits, ndim=2, expected="logits of shape (N, C)")
        shape = tuple(logits.shape)
        self._accept_target(labels, shape, "labels")
        if not self._probed and shape[1] > 1 and self._probe_once():
            _warn_if_probabilities(self, logits)
        losses, log_probs = F.softmax_cross_entropy(logits, labels, self.label_smoothing)
        loss = self._reduce(losses, shape[0])
        self._cache = (log_probs, labels)
        return loss

    def backward(self, grad_output=None):
        log_probs, labels = self._require_cache(self._cache)
        return F.softmax_cross_entropy_backward(
            log_probs, labels, self._scale(log_probs.shape[0], grad_output), self.label_smoothing)

    def extra_repr(self) -> str:
        smooth = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + smooth


class NLLLoss(Loss):
    """Negative log-likelihood on log-probabilities ``(N, C)`` (e.g. from LogSoftmax) and
    integer labels ``(N,)``: ``-log_probs[i, labels[i]]``, picked, so ``-inf`` at the other
    classes (a probability of 0) leaves the loss finite, as in PyTorch. Caches the one-hot
    target."""

    def forward(self, log_probs, labels):
        self._accept_pred(log_probs, ndim=2, expected="log-probabilities of shape (N, C)")
        shape = tuple(log_probs.shape)
        self._accept_target(labels, shape, "labels")
        if not self._probed and self._probe_once():
            _warn_if_not_log_probabilities(self, log_probs)
        target = F.one_hot(labels, shape[1], log_probs.dtype)
        self._cache = target
        picked = self.backend.xp.where(target > 0, log_probs, 0.0)
        return self._reduce(-picked, shape[0])

    def backward(self, grad_output=None):
        target = self._require_cache(self._cache)
        return target * -self._scale(target.shape[0], grad_output)


class MSELoss(Loss):
    """Mean squared error over all elements; target has the prediction's shape.
    Caches ``pred - target``."""

    def forward(self, pred, target):
        self._accept_pred(pred)
        target = self._accept_target(target, tuple(pred.shape), "values", pred.dtype)
        diff = pred - target
        self._cache = diff
        return self._reduce(diff * diff, math.prod(pred.shape))

    def backward(self, grad_output=None):
        diff = self._require_cache(self._cache)
        return diff * (2.0 * self._scale(math.prod(diff.shape), grad_output))


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits; targets in [0, 1] of the logits' shape.

    ``max(x, 0) - x * t + log(1 + exp(-|x|))`` stays finite for any logits.
    Caches the logits and targets."""

    def forward(self, logits, target):
        self._accept_pred(logits)
        target = self._accept_target(target, tuple(logits.shape), "values", logits.dtype)
        xp = self.backend.xp
        per_element = (xp.maximum(logits, 0.0) - logits * target
                       + xp.log1p(xp.exp(-xp.abs(logits))))
        self._cache = (logits, target)
        return self._reduce(per_element, math.prod(logits.shape))

    def backward(self, grad_output=None):
        logits, target = self._require_cache(self._cache)
        xp = self.backend.xp
        grad = 0.5 * (xp.tanh(0.5 * logits) + 1.0) - target
        grad *= self._scale(math.prod(logits.shape), grad_output)
        return grad


def _warn_if_probabilities(loss, logits) -> None:
    """Warn when the logits look like probabilities: rows in [0, 1] summing to 1."""
    xp = loss.backend.xp
    if float(xp.min(logits)) < 0.0 or float(xp.max(logits)) > 1.0:
        return
    if bool(xp.all(xp.abs(xp.sum(logits, axis=1) - 1.0) < 1e-3)):
        warnings.warn(f"{loss._describe()}: its input looks like probabilities (each row in "
                      f"[0, 1], summing to 1), but CrossEntropyLoss takes raw logits and "
                      f"applies log-softmax itself. Remove the Softmax before it (or use "
                      f"LogSoftmax + NLLLoss)", UserWarning, stacklevel=5)


def _warn_if_not_log_probabilities(loss, log_probs) -> None:
    """Warn when the input of NLLLoss holds positive values, which no log-probability is."""
    high = float(loss.backend.xp.max(log_probs))
    if high > 1e-4:
        warnings.warn(f"{loss._describe()}: its input holds values up to {high:.3g}, but "
                      f"NLLLoss takes log-probabilities (<= 0). After a Softmax use LogSoftmax "
                      f"instead; on raw logits use CrossEntropyLoss", UserWarning, stacklevel=5)
