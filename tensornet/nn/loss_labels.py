"""The class-label losses, as PyTorch's: CrossEntropyLoss (on logits) and NLLLoss (on
log-probabilities), over (N, C) scores, one unbatched sample (C,) or per-position classes
(N, C, d1, ...). The base class ``Loss`` and the reductions live in ``loss.py``.
"""
from __future__ import annotations

import warnings

import numpy as np

from tensornet.backends import dtype_name

from . import functional as F
from .loss import Loss, host_weight, number_or_none, per_sample


class _ClassLoss(Loss):
    """Losses on (N, C) scores and integer labels with PyTorch's ``weight`` (a rescaling
    weight per class, length C) and ``ignore_index`` (labels equal to it add nothing, and
    leave the mean's divisor).

    As PyTorch, the scores may also be one unbatched sample ``(C,)`` (labels a 0-d array)
    or ``(N, C, d1, d2, ...)`` with labels ``(N, d1, d2, ...)`` (per-pixel classes, e.g.
    segmentation): those are computed as the rows of an ``(M, C)`` matrix, ``"mean"``
    averaging over all M positions, and ``reduction="none"`` returns the labels' shape.
    Subclasses implement ``_forward_rows`` and ``_backward_rows`` on (M, C)."""

    _cache_attrs = Loss._cache_attrs + ("_layout",)

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 check: bool | None = None):
        super().__init__(reduction, check)
        name = type(self).__name__
        self.weight = host_weight(name, weight, per_class=True)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"{name}: ignore_index must be an int, got {ignore_index!r}")
        self.ignore_index = int(ignore_index)
        if not -2**63 <= self.ignore_index < 2**63:  # the kernels compare it as an int64
            raise ValueError(f"{name}: ignore_index must fit in int64 (as PyTorch's), got "
                             f"{ignore_index}")

    def forward(self, pred, target):
        layout = None
        if getattr(pred, "ndim", 2) != 2:
            pred, target, layout = self._as_rows(pred, target)
        self.__dict__["_layout"] = layout  # (Module.__setattr__ costs a microsecond)
        loss = self._forward_rows(pred, target)
        if layout is not None and self.reduction == "none":
            loss = self.backend.xp.reshape(loss, layout[1])
        return loss

    def backward(self, grad_output=None):
        layout = self._layout
        if layout is None:
            return self._backward_rows(grad_output)
        xp = self.backend.xp
        if self.reduction == "none" and layout[1] == () and number_or_none(grad_output):
            # one unbatched sample: its loss is 0-d, so a number (or None: 1) scales it
            value = 1.0 if grad_output is None else float(grad_output)
            grad_output = self.backend.asarray(np.full(1, value, dtype=layout[2]))
        elif self.reduction == "none" and hasattr(grad_output, "shape") \
                and tuple(grad_output.shape) == layout[1]:
            grad_output = xp.reshape(grad_output, (-1,))
        elif self.reduction == "none":
            got = tuple(grad_output.shape) if hasattr(grad_output, "shape") else grad_output
            raise ValueError(f"{type(self).__name__}(reduction='none').backward needs "
                             f"grad_output of the per-element loss shape {layout[1]}, got "
                             f"{got!r}")
        grad = self._backward_rows(grad_output)
        shape = layout[0]
        if len(shape) == 1:
            return xp.reshape(grad, shape)
        grad = xp.reshape(grad, (shape[0],) + shape[2:] + (shape[1],))
        return xp.moveaxis(grad, -1, 1)

    def _as_rows(self, pred, target):
        """``(rows (M, C), target as rows, (pred shape, per-element loss shape, dtype))``
        for (C,) or (N, C, d...) predictions."""
        name = type(self).__name__
        self._accept_pred(pred)
        xp, shape = self.backend.xp, tuple(pred.shape)
        soft = getattr(target, "ndim", None) == len(shape) and hasattr(target, "dtype") \
            and dtype_name(target.dtype).startswith("float")
        if len(shape) == 1:
            expected = shape if soft else ()
            loss_shape, rows = (), xp.reshape(pred, (1,) + shape)
        else:
            expected = shape if soft else (shape[0],) + shape[2:]
            loss_shape = (shape[0],) + shape[2:]
            rows = xp.reshape(xp.moveaxis(pred, 1, -1), (-1, shape[1]))
        layout = (shape, loss_shape, dtype_name(pred.dtype))
        if not hasattr(target, "shape"):
            return rows, target, layout  # _forward_rows names the problem
        if tuple(target.shape) != expected:
            what = "class probabilities" if soft else "labels"
            raise ValueError(f"{name} got {what} of shape {tuple(target.shape)} for "
                             f"predictions of shape {shape}; expected {expected}")
        if soft:
            target = xp.reshape(target, (1,) + shape) if len(shape) == 1 else \
                xp.reshape(xp.moveaxis(target, 1, -1), (-1, shape[1]))
        else:
            target = xp.reshape(target, (-1,))
        return rows, target, layout

    def _class_weights(self, num_classes: int, dtype):
        """The weight as a (C,) array of the predictions' device and dtype, or None."""
        if self.weight is None:
            return None
        if self.weight.shape[0] != num_classes:
            raise ValueError(f"{type(self).__name__}: weight has {self.weight.shape[0]} entries "
                             f"for predictions with {num_classes} classes")
        return self._device_constant("weight", self.weight, dtype)

    def _accept_labels(self, labels, shape) -> bool:
        """Check integer labels (N,). True when some may equal ``ignore_index``: always for
        unchecked labels (GPU, ``check`` off: they are never read on the host, so any may
        be -100 padding), else when it is a class index or a label out of range equals it."""
        self._accept_target(labels, shape, "labels", check_range=False)
        if not self._checks_on():
            return True
        in_classes = 0 <= self.ignore_index < shape[1]
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
        return F.labels_equal(labels, self.ignore_index)

    def _target_matrix(self, labels, num_classes: int, dtype, label_smoothing: float = 0.0,
                       ignoring: bool = True):
        """(T, mean_divisor): per-sample losses are ``-sum(T * log_probs, axis=1)``.

        ``T[n, c] = keep_n * ((1 - eps) * w[y_n] * [c == y_n] + eps / C * w[c])`` with keep_n
        0 for ignored samples, w the class weights (1 without) and eps the label smoothing;
        the mean divides by ``sum(keep_n * w[y_n])`` (None: by N), as PyTorch. Unchecked
        labels outside [0, C) other than ``ignore_index`` get NaN rows."""
        xp = self.backend.xp
        onehot = F.one_hot(labels, num_classes, dtype)
        weights = self._class_weights(num_classes, dtype)
        if weights is None and not ignoring and not label_smoothing:
            return onehot, None
        sample_weight = (xp.sum(onehot * weights, axis=1) if weights is not None
                         else xp.ones(labels.shape, dtype=dtype))
        keep = ignored = None
        if ignoring:
            ignored = self._ignored(labels)
            keep = xp.astype(~ignored, dtype)
            sample_weight = sample_weight * keep
        target = onehot * ((1.0 - label_smoothing) * sample_weight)[:, None]
        if label_smoothing:
            spread = (label_smoothing / num_classes) * (
                weights[None, :] if weights is not None
                else xp.ones((1, num_classes), dtype=dtype))
            target = target + (spread if keep is None else keep[:, None] * spread)
        if not self._checks_on():
            # unchecked labels outside [0, C), but for ignore_index: NaN rows (loss and
            # gradient), as the fused kernels give, never a row that silently adds nothing
            stray = (labels < 0) | (labels >= num_classes)
            stray = stray if ignored is None else stray & ~ignored
            target = xp.where(stray[:, None], xp.nan, target)
        return target, xp.sum(sample_weight)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.weight is not None:
            text += f", weight={self.weight.tolist()}"
        if self.ignore_index != -100:
            text += f", ignore_index={self.ignore_index}"
        return text


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy on logits ``(N, C)``, as ``torch.nn.CrossEntropyLoss`` (also
    ``(C,)`` and ``(N, C, d1, ...)``, see ``_ClassLoss``).

    Targets: integer labels ``(N,)``, or class probabilities ``(N, C)`` (floating point;
    soft or one-hot targets, each row summing to 1): then the loss of sample n is
    ``-sum_c w_c * t_nc * log_softmax(x)_nc`` and ``"mean"`` divides by N.
    ``weight`` (C,): per-class rescaling; with labels ``"mean"`` divides by the summed weight
    of the samples' classes. ``ignore_index`` (labels only, default -100): such samples add
    nothing. ``label_smoothing`` eps mixes the target with the uniform one:
    ``(1 - eps) * target + eps / C``. Log-sum-exp keeps it stable for any logits.

    Plain labels without weights, ignored ones among them, go through the backend's
    ``softmax_cross_entropy`` (one fused kernel on the GPU, which also counts the rows
    that are not ignored: the mean's divisor stays on the device); weights and probability
    targets through the (N, C) target matrix. Caches the log-probabilities and the labels
    or that matrix. Labels equal to ``ignore_index`` (the default -100 too) are skipped on
    every device, checked or not; with checks off (GPU, ``check=False``) any other label
    outside [0, C) gives its sample a NaN loss and NaN gradients instead of an error.
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0, check: bool | None = None):
        super().__init__(weight, ignore_index, reduction, check)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1), got "
                             f"{label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def _forward_rows(self, logits, target):
        self._accept_pred(logits, ndim=2, expected="logits of shape (N, C)")
        shape = tuple(logits.shape)
        if getattr(target, "ndim", None) == 2 and dtype_name(target.dtype).startswith("float"):
            return self._forward_probabilities(logits, target, shape)
        ignoring = self._accept_labels(target, shape)
        if not self._probed and shape[1] > 1 and self._probe_once():
            _warn_if_probabilities(self, logits)
        if self.weight is None:
            return self._fused_loss(logits, target, ignoring)
        log_probs = F.log_softmax(logits, axis=1)
        matrix, divisor = self._target_matrix(target, shape[1], logits.dtype,
                                              self.label_smoothing, ignoring)
        return self._matrix_loss(log_probs, matrix, divisor)

    def _fused_loss(self, logits, labels, ignoring: bool):
        """Plain labels: one pass of the backend's ``softmax_cross_entropy``. With
        ``ignoring``, rows labelled ``ignore_index`` add 0 and ``"mean"`` divides by the
        count of the others, which the kernel returns on the device (no host read)."""
        ignore_index = self.ignore_index if ignoring else None
        out = F.softmax_cross_entropy(logits, labels, self.label_smoothing, ignore_index)
        loss = self._reduce(out[0], out[2] if ignoring else logits.shape[0])
        self._cache = ("labels", out[1], (labels, ignore_index))
        return loss

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

    def _backward_rows(self, grad_output=None):
        kind, log_probs, target = self._require_cache(self._cache)
        if kind == "labels":
            return self._fused_backward(log_probs, *target, grad_output)
        upstream = per_sample(self._upstream(grad_output))
        # d/dz of -sum(T * log_softmax(z)) = softmax(z) * rowsum(T) - T
        xp = self.backend.xp
        grad = xp.exp(log_probs) * xp.sum(target, axis=1, keepdims=True) - target
        grad *= upstream
        return grad

    def _fused_backward(self, log_probs, labels, ignore_index, grad_output):
        """The backend's ``softmax_cross_entropy_backward``, scaled as the reduction says; a
        device divisor (the kept-row count) goes to the kernel, which divides by it, rather
        than through ``_upstream`` (a reciprocal and a zero test: launches of their own)."""
        eps = self.label_smoothing
        if self.reduction == "none":
            upstream = per_sample(self._upstream(grad_output))
            grad = F.softmax_cross_entropy_backward(log_probs, labels, 1.0, eps, ignore_index)
            return grad * upstream
        divisor = self._divisor
        scale = 1.0 if grad_output is None else float(grad_output)
        if hasattr(divisor, "shape"):  # the kept-row count: the kernel divides by it
            return F.softmax_cross_entropy_backward(log_probs, labels, scale, eps, ignore_index,
                                                    divisor)
        return F.softmax_cross_entropy_backward(log_probs, labels, 1.0 / divisor * scale, eps,
                                                ignore_index)

    def extra_repr(self) -> str:
        smooth = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + smooth


class NLLLoss(_ClassLoss):
    """Negative log-likelihood on log-probabilities ``(N, C)`` (e.g. from LogSoftmax) and
    integer labels ``(N,)``, as ``torch.nn.NLLLoss`` (also ``(C,)`` and ``(N, C, d1, ...)``
    with labels ``(N, d1, ...)``, see ``_ClassLoss``): sample n's loss is
    ``-weight[y_n] * log_probs[n, y_n]``, picked, so ``-inf`` at the other classes (a
    probability of 0) leaves the loss finite, as in PyTorch; ``"mean"`` divides by the
    summed weights of the non-ignored samples. ``weight`` and ``ignore_index`` as in
    CrossEntropyLoss (labels equal to it, -100 by default, are skipped on every device;
    with checks off other labels outside [0, C) give NaN rows). Caches the (N, C) target
    matrix."""

    def _forward_rows(self, log_probs, labels):
        self._accept_pred(log_probs, ndim=2, expected="log-probabilities of shape (N, C)")
        shape = tuple(log_probs.shape)
        ignoring = self._accept_labels(labels, shape)
        if not self._probed and self._probe_once():
            _warn_if_not_log_probabilities(self, log_probs)
        matrix, divisor = self._target_matrix(labels, shape[1], log_probs.dtype, 0.0, ignoring)
        self._cache = matrix
        return self._reduce(-_weighted_sum(self.backend.xp, matrix, log_probs),
                            float(shape[0]) if divisor is None else divisor)

    def _backward_rows(self, grad_output=None):
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
