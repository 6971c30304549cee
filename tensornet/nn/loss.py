"""Losses: ``loss = loss_fn(pred, target)`` returns a 0-d array (per-element losses with
``reduction="none"``); ``loss_fn.backward()`` returns d loss / d pred. Each caches what its
gradient needs. This file holds the base class; ``loss_labels.py`` the class-label losses
CrossEntropyLoss and NLLLoss, ``loss_regression.py`` (MSE, L1, SmoothL1, Huber,
PoissonNLL, GaussianNLL), ``loss_classification.py`` (BCEWithLogits, BCE, KLDiv, MultiMargin,
MultiLabelSoftMargin), ``loss_margin.py`` (SoftMargin, HingeEmbedding,
MultiLabelMargin) and ``loss_pairs.py`` (MarginRanking, CosineEmbedding, TripletMargin: two
or three inputs) the others.

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
        ``backward(grad_output)`` needs the gradient of that shape (a number will do for
        a 0-d loss: one unbatched sample's);
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

    def _check_classes(self, shape) -> None:
        """Scores with the classes along their last axis must have one at least (a mean
        over 0 classes would divide by 0)."""
        if shape and shape[-1] == 0:
            raise ValueError(f"{self._describe()} got input of shape {shape}; expected at "
                             f"least one class")

    def _check_grad_output(self, grad_output, spec) -> None:
        """``backward(grad_output)`` takes None (d loss / d loss = 1), a real number or an
        array of the loss's shape."""
        if number_or_none(grad_output):
            return
        super()._check_grad_output(grad_output, spec)

    def _probe_once(self) -> bool:
        """True at the first call with checks on (a look at the input's values)."""
        if self._probed or not self._checks_on():
            return False
        self._probed = True
        return True

    def _accept_target(self, target, shape, kind: str, dtype=None, check_range: bool = True):
        """``kind`` is ``"labels"`` (integer class indices (N,), whose range is checked when
        checks are on and ``check_range``), ``"indices"`` (integers of the prediction's
        shape, their range left to the loss) or ``"values"`` (the prediction's shape; real
        values of another dtype are cast to ``dtype``, the prediction's). Returns the target
        to compute with."""
        name = type(self).__name__
        if not self.backend.owns(target):
            if hasattr(target, "shape"):
                raise DeviceError(f"{name}: predictions are on {self.backend.device!r} but the "
                                  f"target is on {device_of(target)!r}")
            raise TypeError(f"{name} expected the target as an array, got "
                            f"{type(target).__name__}")
        if kind in ("labels", "indices"):
            expected = (shape[0],) if kind == "labels" else shape
            if not dtype_name(target.dtype).startswith(("int", "uint")):
                raise TypeError(f"{name} expected integer class labels of shape {expected}, "
                                f"got {dtype_name(target.dtype)}; convert with astype('int64')")
            if tuple(target.shape) != expected:
                raise ValueError(f"{name} got labels of shape {tuple(target.shape)} for "
                                 f"predictions of shape {shape}; expected {expected}")
            if kind == "labels" and check_range and self._checks_on() \
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
            if self._loss_shape == () and number_or_none(grad_output):  # a 0-d loss
                return 1.0 if grad_output is None else float(grad_output)
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


def number_or_none(grad_output) -> bool:
    """Whether a loss's ``grad_output`` is None or a real number (Python's or NumPy's:
    callers take it as a Python float, since a NumPy float64 scalar would promote a float32
    gradient where a Python float does not)."""
    return grad_output is None or (isinstance(grad_output, numbers.Real)
                                   and not isinstance(grad_output, bool))


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


def check_broadcast(owner: str, name: str, host, shape) -> None:
    """A host weight must broadcast to the predictions' shape (not widen the loss), as
    PyTorch asks."""
    try:
        fits = np.broadcast_shapes(host.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{owner}: {name} of shape {host.shape} does not broadcast to the "
                         f"predictions' shape {shape}")


def per_sample(upstream):
    """``_upstream`` of a per-sample loss (N,) (or (N, d...)), shaped to scale the (N, C)
    (or (N, d..., C)) gradients."""
    return upstream[..., None] if hasattr(upstream, "shape") and upstream.ndim else upstream


def __getattr__(name):
    """CrossEntropyLoss and NLLLoss live in loss_labels.py (``tensornet.nn`` has them)."""
    if name in ("CrossEntropyLoss", "NLLLoss"):
        from . import loss_labels
        return getattr(loss_labels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
