"""Losses: ``loss = loss_fn(pred, target)`` returns a 0-d array (per-element losses with
``reduction="none"``); ``loss_fn.backward()`` returns d loss / d pred. Each caches what its
gradient needs. This file holds the base class and the class-label losses CrossEntropyLoss
and NLLLoss; ``loss_regression.py`` (MSE, L1, SmoothL1, Huber) and
``loss_classification.py`` (BCEWithLogits, BCE, KLDiv, MultiMargin) hold the others.

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

import numpy as np

from tensornet.backends import DeviceError, SyncPolicy, asnumpy, device_of, dtype_name

from . import functional as F
from .module import Module

_REDUCTIONS = ("mean", "sum", "none", "batchmean")


class NonFiniteError(ValueError):
    """A loss (or a layer it checks) produced NaN or Inf."""


class Loss(Module):
    """Base class of the losses.

    ``reduction``:
      - ``"mean"`` (default): the mean of the per-element losses (a class-weighted mean for
        CrossEntropyLoss/NLLLoss with ``weight=``, as PyTorch);
      - ``"sum"``: their sum;
      - ``"none"``: the per-element (per-sample for class losses) losses themselves; then
        ``backward(grad_output)`` needs the gradient of that shape;
      - ``"batchmean"``: the sum divided by the batch size (axis 0): each sample's losses
        summed, then averaged over the batch, e.g. an autoencoder's reconstruction error
        ``MSELoss(reduction="batchmean")``. PyTorch offers it for KLDivLoss only; here every
        loss has it.
    ``backward(grad_output=None)`` returns d loss / d prediction, scaled by ``grad_output``
    (a number for the reductions, an array for ``"none"``).
    """

    _cache_attrs = ("_cache", "_divisor", "_loss_shape")  # what backward reads

    def __init__(self, reduction: str = "mean", check: bool | None = None):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction
        self.check = check
        self._constants = {}
        self._probed = False  # whether the first checked call looked at the input's values

    def _device_constant(self, name: str, host: np.ndarray, dtype):
        """A host constant (a class weight) on the predictions' device and dtype, kept."""
        key = (name, self.backend.device, dtype_name(dtype))
        if key not in self._constants:
            self._constants[key] = self.backend.asarray(host.astype(key[2]))
        return self._constants[key]

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

    def _accept_target(self, target, shape, kind: str, dtype=None, check_range: bool = True):
        """``kind`` is ``"labels"`` (integer class indices, whose range is checked when
        checks are on and ``check_range``) or ``"values"`` (the prediction's shape; real
        values of another dtype are cast to ``dtype``, the prediction's). Returns the target
        to compute with."""
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
            if check_range and self._checks_on() \
                    and not F.labels_in_range(target, shape[1]):
                self._label_range_error(target, shape[1])
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

    def _label_range_error(self, labels, num_classes, allowed: str = ""):
        low, high = int(self.backend.xp.min(labels)), int(self.backend.xp.max(labels))
        raise ValueError(f"{type(self).__name__}: labels must be in [0, {num_classes - 1}] for "
                         f"{num_classes} classes{allowed}; got labels from {low} to {high}")

    def _reduce(self, per_element, mean_divisor=None):
        """Per-element losses -> the loss. ``mean_divisor`` is what ``"mean"`` divides by
        (default: the number of elements; a device 0-d array for weighted class losses)."""
        self._loss_shape = tuple(per_element.shape)
        if self.reduction == "none":
            if self._checks_on() and not F.all_finite(per_element):
                self._non_finite("some per-element losses are not finite")
            return per_element
        total = self.backend.xp.sum(per_element)
        if self.reduction == "sum":
            self._divisor = 1.0
            loss = total
        else:
            if self.reduction == "batchmean":
                divisor = float(per_element.shape[0]) if per_element.ndim else 1.0
            else:
                divisor = float(math.prod(per_element.shape)) if mean_divisor is None \
                    else mean_divisor
            self._divisor = divisor
            loss = total / divisor
        # A 0-d loss: one float() read is the whole check (three array calls fewer per step).
        if self._checks_on() and not math.isfinite(float(loss)):
            if self.reduction == "mean" and float(self._divisor) == 0.0:
                self._empty_mean(float(loss))
            self._non_finite(f"the loss is {float(loss)}")
        return loss

    def _empty_mean(self, loss: float):
        """Raise for a ``"mean"`` that divided by 0 (a weighted class loss's weights)."""

    def _non_finite(self, what: str):
        raise NonFiniteError(f"{type(self).__name__}: {what}; the predictions hold non-finite "
                             f"values or are too large. The model probably diverged: lower "
                             f"the learning rate or check the inputs")

    def _upstream(self, grad_output):
        """d (the loss, times grad_output) / d (each per-element loss): a Python float (or a
        0-d array) after a reduction, ``grad_output`` itself for ``"none"``."""
        if self.reduction == "none":
            if grad_output is None or not hasattr(grad_output, "shape") \
                    or tuple(grad_output.shape) != self._loss_shape:
                got = tuple(grad_output.shape) if hasattr(grad_output, "shape") else grad_output
                raise ValueError(f"{type(self).__name__}(reduction='none').backward needs "
                                 f"grad_output of the per-element loss shape {self._loss_shape}"
                                 f", got {got!r}")
            return grad_output
        divisor = self._divisor
        if hasattr(divisor, "shape"):
            # A device divisor (summed class weights) of 0 leaves no sample to scale: the
            # gradient is 0, as PyTorch's, not 0 * (1 / 0) = NaN
            divisor = self.backend.xp.where(divisor == 0.0, math.inf, divisor)
        scale = 1.0 / divisor
        if grad_output is not None:
            scale = scale * float(grad_output)
        return scale

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def host_weight(owner: str, weight, per_class: bool, name: str = "weight"):
    """A user's ``weight=`` (or another ``name``: sequence, NumPy or device array) as a
    float64 host array of finite numbers (1-D when ``per_class``), or None."""
    if weight is None:
        return None
    host = np.asarray(asnumpy(weight) if hasattr(weight, "__array_namespace__") else weight,
                      dtype=np.float64)
    if (per_class and host.ndim != 1) or not np.all(np.isfinite(host)):
        raise ValueError(f"{owner}: {name} must be {'a 1-D sequence' if per_class else 'an array'}"
                         f" of finite numbers{', one per class' if per_class else ''}, got "
                         f"shape {host.shape}")
    return host


def per_sample(upstream):
    """``_upstream`` of a per-sample (N,) loss, shaped to scale (N, C) gradients."""
    return upstream[:, None] if hasattr(upstream, "shape") and upstream.ndim == 1 else upstream


class _ClassLoss(Loss):
    """Losses on (N, C) scores and integer labels with PyTorch's ``weight`` (a rescaling
    weight per class, length C) and ``ignore_index`` (labels equal to it add nothing, and
    leave the mean's divisor)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 check: bool | None = None):
        super().__init__(reduction, check)
        name = type(self).__name__
        self.weight = host_weight(name, weight, per_class=True)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        self._ignore_given = self.ignore_index != -100

    def _class_weights(self, num_classes: int, dtype):
        """The weight as a (C,) array of the predictions' device and dtype, or None."""
        if self.weight is None:
            return None
        if self.weight.shape[0] != num_classes:
            raise ValueError(f"{type(self).__name__}: weight has {self.weight.shape[0]} entries "
                             f"for predictions with {num_classes} classes")
        return self._device_constant("weight", self.weight, dtype)

    def _accept_labels(self, labels, shape) -> bool:
        """Check integer labels (N,). True when some may equal ``ignore_index``: when that
        is a class index, when a checked label is out of range but equal to it, or, for
        unchecked labels (GPU, ``check`` off), when ``ignore_index`` was given."""
        self._accept_target(labels, shape, "labels", check_range=False)
        in_classes = 0 <= self.ignore_index < shape[1]
        if not self._checks_on():
            return in_classes or self._ignore_given
        if F.labels_in_range(labels, shape[1]):
            return in_classes
        kept = self.backend.xp.where(self._ignored(labels), 0, labels)
        if not F.labels_in_range(kept, shape[1]):
            self._label_range_error(labels, shape[1], f" (or ignore_index={self.ignore_index})")
        return True

    def _empty_mean(self, loss: float):
        raise ValueError(
            f"{type(self).__name__}: reduction='mean' averages over no samples: every label "
            f"equals ignore_index={self.ignore_index} or has class weight 0, so the summed "
            f"weight it divides by is 0 (the loss is {loss}, as in PyTorch). Skip such "
            f"batches, or use reduction='sum'")

    def _ignored(self, labels):
        """Boolean (N,): which labels equal ``ignore_index``."""
        if self.ignore_index < 0 and dtype_name(labels.dtype).startswith("uint"):
            return self.backend.xp.zeros(labels.shape, dtype=self.backend.xp.bool)
        return labels == self.ignore_index

    def _target_matrix(self, labels, num_classes: int, dtype, label_smoothing: float = 0.0,
                       ignoring: bool = True):
        """(T, mean_divisor): per-sample losses are ``-sum(T * log_probs, axis=1)``.

        ``T[n, c] = keep_n * ((1 - eps) * w[y_n] * [c == y_n] + eps / C * w[c])`` with keep_n
        0 for ignored samples, w the class weights (1 without) and eps the label smoothing;
        the mean divides by ``sum(keep_n * w[y_n])`` (None: by N), as PyTorch."""
        xp = self.backend.xp
        onehot = F.one_hot(labels, num_classes, dtype)
        weights = self._class_weights(num_classes, dtype)
        if weights is None and not ignoring and not label_smoothing:
            return onehot, None
        sample_weight = (xp.sum(onehot * weights, axis=1) if weights is not None
                         else xp.ones(labels.shape, dtype=dtype))
        keep = None
        if ignoring:
            keep = xp.astype(~self._ignored(labels), dtype)
            sample_weight = sample_weight * keep
        target = onehot * ((1.0 - label_smoothing) * sample_weight)[:, None]
        if label_smoothing:
            spread = (label_smoothing / num_classes) * (
                weights[None, :] if weights is not None
                else xp.ones((1, num_classes), dtype=dtype))
            target = target + (spread if keep is None else keep[:, None] * spread)
        return target, xp.sum(sample_weight)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.weight is not None:
            text += f", weight={self.weight.tolist()}"
        if self.ignore_index != -100:
            text += f", ignore_index={self.ignore_index}"
        return text


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy on logits ``(N, C)``, as ``torch.nn.CrossEntropyLoss``.

    Targets: integer labels ``(N,)``, or class probabilities ``(N, C)`` (floating point;
    soft or one-hot targets, each row summing to 1): then the loss of sample n is
    ``-sum_c w_c * t_nc * log_softmax(x)_nc`` and ``"mean"`` divides by N.
    ``weight`` (C,): per-class rescaling; with labels ``"mean"`` divides by the summed weight
    of the samples' classes. ``ignore_index`` (labels only, default -100): such samples add
    nothing. ``label_smoothing`` eps mixes the target with the uniform one:
    ``(1 - eps) * target + eps / C``. Log-sum-exp keeps it stable for any logits.

    Plain labels without weights go through the backend's ``softmax_cross_entropy`` (one
    fused kernel on the GPU); weights, ignored labels and probability targets through the
    (N, C) target matrix. Caches the log-probabilities and the labels or that matrix.
    On devices that do not check labels (GPU, ``check`` off), labels equal to the default
    ``ignore_index=-100`` are only honoured when ``ignore_index`` or ``check=True`` is given.
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, check: bool | None = None):
        super().__init__(weight, ignore_index, reduction, check)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1), got "
                             f"{label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits, target):
        self._accept_pred(logits, ndim=2, expected="logits of shape (N, C)")
        shape = tuple(logits.shape)
        if getattr(target, "ndim", None) == 2 and dtype_name(target.dtype).startswith("float"):
            return self._forward_probabilities(logits, target, shape)
        ignoring = self._accept_labels(target, shape)
        if not self._probed and shape[1] > 1 and self._probe_once():
            _warn_if_probabilities(self, logits)
        if self.weight is None and not ignoring:
            losses, log_probs = F.softmax_cross_entropy(logits, target, self.label_smoothing)
            loss = self._reduce(losses, shape[0])
            self._cache = ("labels", log_probs, target)
            return loss
        log_probs = F.log_softmax(logits, axis=1)
        matrix, divisor = self._target_matrix(target, shape[1], logits.dtype,
                                              self.label_smoothing, ignoring)
        return self._matrix_loss(log_probs, matrix, divisor)

    def _forward_probabilities(self, logits, target, shape):
        target = self._accept_target(target, shape, "values", logits.dtype)
        eps = self.label_smoothing
        matrix = target * (1.0 - eps) + eps / shape[1] if eps else target
        weights = self._class_weights(shape[1], logits.dtype)
        if weights is not None:
            matrix = matrix * weights
        return self._matrix_loss(F.log_softmax(logits, axis=1), matrix, float(shape[0]))

    def _matrix_loss(self, log_probs, matrix, divisor):
        loss = self._reduce(-_weighted_sum(self.backend.xp, matrix, log_probs), divisor)
        self._cache = ("matrix", log_probs, matrix)
        return loss

    def backward(self, grad_output=None):
        kind, log_probs, target = self._require_cache(self._cache)
        upstream = per_sample(self._upstream(grad_output))
        if kind == "labels":
            scalar = not hasattr(upstream, "shape") or upstream.ndim == 0
            grad = F.softmax_cross_entropy_backward(
                log_probs, target, upstream if scalar else 1.0, self.label_smoothing)
            return grad if scalar else grad * upstream
        # d/dz of -sum(T * log_softmax(z)) = softmax(z) * rowsum(T) - T
        xp = self.backend.xp
        grad = xp.exp(log_probs) * xp.sum(target, axis=1, keepdims=True) - target
        grad *= upstream
        return grad

    def extra_repr(self) -> str:
        smooth = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + smooth


class NLLLoss(_ClassLoss):
    """Negative log-likelihood on log-probabilities ``(N, C)`` (e.g. from LogSoftmax) and
    integer labels ``(N,)``, as ``torch.nn.NLLLoss``: sample n's loss is
    ``-weight[y_n] * log_probs[n, y_n]``, picked, so ``-inf`` at the other classes (a
    probability of 0) leaves the loss finite, as in PyTorch; ``"mean"`` divides by the
    summed weights of the non-ignored samples. ``weight`` and ``ignore_index`` as in
    CrossEntropyLoss (and the same GPU caveat for the default ignore_index). Caches the
    (N, C) target matrix."""

    def forward(self, log_probs, labels):
        self._accept_pred(log_probs, ndim=2, expected="log-probabilities of shape (N, C)")
        shape = tuple(log_probs.shape)
        ignoring = self._accept_labels(labels, shape)
        if not self._probed and self._probe_once():
            _warn_if_not_log_probabilities(self, log_probs)
        matrix, divisor = self._target_matrix(labels, shape[1], log_probs.dtype, 0.0, ignoring)
        self._cache = matrix
        return self._reduce(-_weighted_sum(self.backend.xp, matrix, log_probs),
                            float(shape[0]) if divisor is None else divisor)

    def backward(self, grad_output=None):
        matrix = self._require_cache(self._cache)
        return matrix * -per_sample(self._upstream(grad_output))


def _weighted_sum(xp, matrix, log_probs):
    """``sum(matrix * log_probs, axis=1)`` where the matrix is non-zero only: a -inf
    log-probability at a class the target leaves out (weight 0) adds nothing, not NaN."""
    return xp.sum(xp.where(matrix != 0, log_probs, 0.0) * matrix, axis=1)


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
