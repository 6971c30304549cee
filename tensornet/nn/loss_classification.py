"""More classification losses: BCEWithLogitsLoss, BCELoss (on probabilities), KLDivLoss,
MultiMarginLoss and MultiLabelSoftMarginLoss (PyTorch's). CrossEntropyLoss and NLLLoss
live in ``loss_labels.py``, the margin losses on -1/1 targets in ``loss_margin.py``.

Every reduction of ``Loss`` applies; KLDivLoss defaults to ``"batchmean"``.
"""
from __future__ import annotations

import numpy as np

from . import functional as F
from .activation import _sigmoid
from .loss import Loss, check_broadcast, host_weight, per_sample

# PyTorch clamps the BCE gradient's denominator at 1e-12 held as a float32
_BCE_GRAD_EPS = float(np.float32(1e-12))


def _weighted(loss: Loss, grad, weight, grad_output):
    """A binary cross-entropy's per-element gradient times its ``weight`` (or None) and the
    upstream scale of ``loss``'s reduction."""
    if weight is not None:
        grad = grad * weight
    grad *= loss._upstream(grad_output)
    return grad


def _logistic(xp, logits, target, softplus_neg):
    """The binary cross-entropy of logits x against targets t, ``-t log s(x) - (1 - t)
    log(1 - s(x))``, as ``max(x, 0) - x t + log(1 + exp(-|x|))`` (``softplus_neg``, the
    last term): finite for any x, and every digit kept where t is 0 or 1 (the first two
    terms cancel exactly before the small one is added)."""
    return xp.maximum(logits, 0.0) - logits * target + softplus_neg


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits; targets in [0, 1] of the logits' shape, as
    ``torch.nn.BCEWithLogitsLoss``.

    ``max(x, 0) - x * t + log(1 + exp(-|x|))`` stays finite for any logits. ``pos_weight``
    (e.g. one per class, shape (C,)) scales the positive term: ``-w * (pw * t * log s(x) +
    (1 - t) * log(1 - s(x)))``, computed as ``(1 - t) x + (1 + (pw - 1) t) softplus(-x)``;
    ``weight`` rescales each element. Both must broadcast to the logits' shape. The
    gradient is ``w * ((1 + (pw - 1) t) s(x) - pw t)``. Caches the logits, targets and
    the weights."""

    def __init__(self, reduction: str = "mean", check: bool | None = None, *, weight=None,
                 pos_weight=None):
        super().__init__(reduction, check)
        self.weight = host_weight("BCEWithLogitsLoss", weight, per_class=False)
        self.pos_weight = host_weight("BCEWithLogitsLoss", pos_weight, per_class=False,
                                      name="pos_weight")

    def _weight(self, name: str, shape, dtype):
        host = getattr(self, name)
        if host is None:
            return None
        check_broadcast("BCEWithLogitsLoss", name, host, shape)
        return self._device_constant(name, host, dtype)

    def forward(self, logits, target):
        self._accept_pred(logits)
        shape = tuple(logits.shape)
        target = self._accept_target(target, shape, "values", logits.dtype)
        weight = self._weight("weight", shape, logits.dtype)
        pos_weight = self._weight("pos_weight", shape, logits.dtype)
        xp = self.backend.xp
        softplus_neg = xp.log1p(xp.exp(-xp.abs(logits)))  # log(1 + exp(-|x|))
        if pos_weight is None:
            per_element = _logistic(xp, logits, target, softplus_neg)
        else:
            log_weight = 1.0 + (pos_weight - 1.0) * target
            per_element = ((1.0 - target) * logits
                           + log_weight * (softplus_neg + xp.maximum(-logits, 0.0)))
        if weight is not None:
            per_element = per_element * weight
        self._cache = (logits, target, weight, pos_weight)
        return self._reduce(per_element)

    def backward(self, grad_output=None):
        logits, target, weight, pos_weight = self._require_cache(self._cache)
        xp = self.backend.xp
        sigmoid = _sigmoid(xp, logits)  # every digit of the tail, as Sigmoid
        if pos_weight is None:
            grad = sigmoid - target
        else:
            grad = (1.0 + (pos_weight - 1.0) * target) * sigmoid - pos_weight * target
        return _weighted(self, grad, weight, grad_output)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        for name in ("weight", "pos_weight"):
            if getattr(self, name) is not None:
                text += f", {name}={getattr(self, name).tolist()}"
        return text


class BCELoss(Loss):
    """Binary cross-entropy on probabilities ``p`` in [0, 1], as ``torch.nn.BCELoss``:
    ``-w * (t * log(p) + (1 - t) * log(1 - p))`` with both logs clamped at -100, so p = 0
    or 1 gives a finite loss (PyTorch's choice). ``weight``: an array broadcasting against
    the predictions (e.g. one weight per sample, shape (N, 1)). The gradient is
    ``w * (p - t) / max(p (1 - p), 1e-12)``. Prefer BCEWithLogitsLoss on logits (stabler).
    On CPU, probabilities or targets outside [0, 1] raise an error (PyTorch checks the
    targets). Caches p, t and the weight.
    """

    def __init__(self, weight=None, reduction: str = "mean", check: bool | None = None):
        super().__init__(reduction, check)
        self.weight = host_weight("BCELoss", weight, per_class=False)

    def forward(self, probs, target):
        self._accept_pred(probs)
        target = self._accept_target(target, tuple(probs.shape), "values", probs.dtype)
        xp = self.backend.xp
        if self._checks_on() and not bool(xp.all((probs >= 0.0) & (probs <= 1.0))):
            raise ValueError(f"BCELoss expects probabilities in [0, 1] (e.g. after Sigmoid), "
                             f"got values from {float(xp.min(probs))} to {float(xp.max(probs))};"
                             f" for logits use BCEWithLogitsLoss")
        if self._checks_on() and not bool(xp.all((target >= 0.0) & (target <= 1.0))):
            raise ValueError(f"BCELoss expects targets in [0, 1], got values from "
                             f"{float(xp.min(target))} to {float(xp.max(target))}")
        weight = None
        if self.weight is not None:
            check_broadcast("BCELoss", "weight", self.weight, tuple(probs.shape))
            weight = self._device_constant("weight", self.weight, probs.dtype)
        # log(p) and log(1 - p) clamped at -100; where p is 0 (or 1) the log is not taken
        inside, below_one = probs > 0.0, probs < 1.0
        log_p = xp.where(inside, xp.maximum(xp.log(xp.where(inside, probs, 1.0)), -100.0),
                         -100.0)
        log_q = xp.where(below_one, xp.maximum(xp.log1p(xp.where(below_one, -probs, 0.0)),
                                               -100.0), -100.0)
        per_element = -(target * log_p + (1.0 - target) * log_q)
        if weight is not None:
            per_element = per_element * weight
        self._cache = (probs, target, weight)
        return self._reduce(per_element)

    def backward(self, grad_output=None):
        probs, target, weight = self._require_cache(self._cache)
        xp = self.backend.xp
        grad = (probs - target) / xp.maximum(probs * (1.0 - probs), _BCE_GRAD_EPS)
        return _weighted(self, grad, weight, grad_output)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.weight is None else text + f", weight={self.weight.tolist()}"


class KLDivLoss(Loss):
    """Kullback-Leibler divergence ``KL(target || input)``, as ``torch.nn.KLDivLoss``.

    ``input``: log-probabilities (e.g. LogSoftmax output). ``target``: probabilities, or
    log-probabilities with ``log_target=True``. Per element: ``t * (log t - input)`` (0
    where t = 0), or ``exp(t) * (t - input)`` for log targets. The default reduction is
    ``"batchmean"`` (the sum over a sample's classes, averaged over the batch: the true
    divergence per sample). PyTorch still defaults to ``"mean"`` (over every element) and
    warns that it will switch; pass ``reduction="mean"`` for that. Caches the target's
    weight ``t`` (or ``exp(t)``), which is minus the gradient.
    """

    def __init__(self, reduction: str = "batchmean", log_target: bool = False,
                 check: bool | None = None):
        super().__init__(reduction, check)
        self.log_target = bool(log_target)

    def forward(self, log_probs, target):
        self._accept_pred(log_probs)
        target = self._accept_target(target, tuple(log_probs.shape), "values",
                                     log_probs.dtype)
        xp = self.backend.xp
        if self.log_target:
            probs = xp.exp(target)
            per_element = probs * (target - log_probs)
        else:
            probs = target
            positive = target > 0
            log_target = xp.log(xp.where(positive, target, 1.0))
            per_element = xp.where(positive, target * log_target, 0.0) - target * log_probs
        self._cache = probs
        return self._reduce(per_element)

    def backward(self, grad_output=None):
        probs = self._require_cache(self._cache)
        return probs * -self._upstream(grad_output)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", log_target=True" if self.log_target else "")


class MultiMarginLoss(Loss):
    """The multiclass hinge (Weston & Watkins / Crammer-Singer style SVM loss), as
    ``torch.nn.MultiMarginLoss(p=1, margin=1.0, weight=None)``.

    Scores x (N, C), integer labels y (N,): sample n's loss is
    ``w[y_n] / C * sum_{i != y_n} max(0, margin - x[n, y_n] + x[n, i]) ** p`` with p 1 or 2
    and w the optional per-class weight (C,). ``"mean"`` averages over the N samples.
    Caches the one-hot target and the hinge slopes.
    """

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, reduction: str = "mean",
                 check: bool | None = None):
        super().__init__(reduction, check)
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"MultiMarginLoss: p must be 1 or 2, got {p!r}")
        self.p, self.margin = p, float(margin)
        self.weight = host_weight("MultiMarginLoss", weight, per_class=True)

    def forward(self, scores, labels):
        self._accept_pred(scores, ndim=2, expected="scores of shape (N, C)")
        shape = tuple(scores.shape)
        self._accept_target(labels, shape, "labels")
        xp = self.backend.xp
        n, c = shape
        onehot = F.one_hot(labels, c, scores.dtype)
        true_score = xp.sum(onehot * scores, axis=1, keepdims=True)
        hinge = xp.where(onehot > 0, 0.0, xp.maximum(self.margin - true_score + scores, 0.0))
        scale = xp.full((n, 1), 1.0 / c, dtype=scores.dtype)
        if self.weight is not None:
            if self.weight.shape != (c,):
                raise ValueError(f"MultiMarginLoss: weight has shape {self.weight.shape} for "
                                 f"{c} classes; expected ({c},)")
            weight = self._device_constant("weight", self.weight, scores.dtype)
            scale = scale * xp.sum(onehot * weight, axis=1, keepdims=True)
        if self.p == 1:
            slopes, per_class = xp.astype(hinge > 0, scores.dtype), hinge
        else:
            slopes, per_class = 2.0 * hinge, hinge * hinge
        slopes = slopes * scale
        # d/dx[i] is the slope of term i; d/dx[y] minus the sum of all of them
        self._cache = slopes - onehot * xp.sum(slopes, axis=1, keepdims=True)
        return self._reduce(xp.sum(per_class * scale, axis=1))

    def backward(self, grad_output=None):
        grad = self._require_cache(self._cache)
        return grad * per_sample(self._upstream(grad_output))

    def extra_repr(self) -> str:
        text = super().extra_repr() + f", p={self.p}, margin={self.margin}"
        return text if self.weight is None else text + f", weight={self.weight.tolist()}"


class MultiLabelSoftMarginLoss(Loss):
    """Multi-label one-versus-all logistic loss, as
    ``torch.nn.MultiLabelSoftMarginLoss(weight=None)``: logits x (N, C) (any (..., C): the
    last axis holds the classes, as PyTorch computes), targets y of x's shape (0/1, or soft
    labels in [0, 1]). Sample n's loss is
    ``-1/C * sum_c w_c (y log s(x) + (1 - y) log(1 - s(x)))``, the binary cross-entropy
    on logits averaged over the classes; ``"mean"`` averages over the samples. ``weight``:
    a per-class rescaling (C,) (any shape that broadcasts to x's). The gradient is
    ``w / C * ((1 - y) s(x) - y s(-x))``, each term exact in the tails. Caches x, y and
    the weight over C."""

    def __init__(self, weight=None, *, reduction: str = "mean", check: bool | None = None):
        super().__init__(reduction, check)
        self.weight = host_weight("MultiLabelSoftMarginLoss", weight, per_class=False)

    def forward(self, logits, target):
        self._accept_pred(logits)
        shape = tuple(logits.shape)
        if not shape:
            raise ValueError(f"{self._describe()} got input of shape (); expected logits of "
                             f"shape (N, C)")
        self._check_classes(shape)
        target = self._accept_target(target, shape, "values", logits.dtype)
        xp = self.backend.xp
        scale = 1.0 / shape[-1]
        if self.weight is not None:
            check_broadcast("MultiLabelSoftMarginLoss", "weight", self.weight, shape)
            scale = self._device_constant("weight", self.weight, logits.dtype) * scale
        per_element = _logistic(xp, logits, target, xp.log1p(xp.exp(-xp.abs(logits))))
        self._cache = (logits, target, scale)
        return self._reduce(xp.sum(per_element * scale, axis=-1))

    def backward(self, grad_output=None):
        logits, target, scale = self._require_cache(self._cache)
        xp = self.backend.xp
        grad = (1.0 - target) * _sigmoid(xp, logits) - target * _sigmoid(xp, -logits)
        grad *= scale * per_sample(self._upstream(grad_output))
        return grad

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.weight is None else text + f", weight={self.weight.tolist()}"
