"""Losses of two or three inputs, as PyTorch's: MarginRankingLoss (x1, x2, y),
CosineEmbeddingLoss (x1, x2, y) and TripletMarginLoss (anchor, positive, negative).

``backward(grad_output)`` returns the gradient of the first input, as every loss's; the
others' are left in attributes named after torch's arguments: ``input2_grad``, and
``positive_grad`` / ``negative_grad``. Every reduction of ``Loss`` applies; the per-element
losses are per element for MarginRankingLoss and per sample (a row of D features) for the
other two. With checks on (CPU backends) a -1/1 target that is neither raises.
"""
from __future__ import annotations

from tensornet.backends import dtype_name

from .checks import check_flag, check_real
from .distance import check_p, p_distance, p_distance_slope
from .loss_margin import _SignTargetLoss


def _same_as(loss, x, like, name: str):
    """``x`` checked to be an array of ``like``'s device and shape, cast to its dtype."""
    owner = type(loss).__name__
    if not loss.backend.owns(x):
        raise TypeError(f"{owner} expected {name} as an array on {loss.backend.device!r}, got "
                        f"{type(x).__name__}")
    if tuple(x.shape) != tuple(like.shape):
        raise ValueError(f"{owner} got {name} of shape {tuple(x.shape)} for input1 of shape "
                         f"{tuple(like.shape)}; they must match")
    got = dtype_name(x.dtype)
    if not got.startswith("float"):
        raise TypeError(f"{owner} expected a floating {name}, got {got}")
    return x if got == dtype_name(like.dtype) else loss.backend.xp.astype(x, like.dtype)


def _rows(loss, x, name: str):
    """A (N, D) input as itself, one unbatched (D,) sample as (1, D)."""
    if x.ndim not in (1, 2):
        raise ValueError(f"{type(loss).__name__} got {name} of shape {tuple(x.shape)}; "
                         f"expected (N, D) or (D,)")
    return x if x.ndim == 2 else loss.backend.xp.reshape(x, (1, x.shape[0]))


class _PerRowLoss(_SignTargetLoss):
    """A loss with one value per row of (N, D) inputs; one unbatched (D,) sample is computed
    as a row and its ``"none"`` loss, and gradients, given back unbatched."""

    def _reduce_rows(self, per_row, unbatched: bool):
        self._unbatched = unbatched
        loss = self._reduce(per_row)
        if unbatched and self.reduction == "none":
            self._loss_shape = ()
            return self.backend.xp.reshape(loss, ())
        return loss

    def _row_upstream(self, grad_output):
        """``_upstream`` as an (N, 1) column (a scalar after a reduction)."""
        upstream = self._upstream(grad_output)
        if hasattr(upstream, "shape") and upstream.ndim <= 1:
            upstream = self.backend.xp.reshape(upstream, (-1, 1))
        return upstream

    def _unrow(self, grad):
        return self.backend.xp.reshape(grad, (grad.shape[1],)) if self._unbatched else grad


class _PairLoss(_SignTargetLoss):
    """``loss_fn(x1, x2, y)`` with a ``margin``; d loss / d x2 goes to ``input2_grad``."""

    def __init__(self, margin: float = 0.0, *, reduction: str = "mean",
                 check: bool | None = None):
        super().__init__(reduction, check)
        self.margin = check_real(type(self).__name__, "margin", margin)
        self.input2_grad = None

    def extra_repr(self) -> str:
        return super().extra_repr() + f", margin={self.margin}"


class MarginRankingLoss(_PairLoss):
    """``max(0, -y * (x1 - x2) + margin)``, as ``torch.nn.MarginRankingLoss(margin=0.0)``:
    y = 1 asks for x1 ranked above x2, y = -1 below; x1, x2 and y of one shape.
    Called as ``loss_fn(x1, x2, y)``; ``backward`` returns d loss / d x1 and leaves
    d loss / d x2 (its negative) in ``input2_grad``. At the kink the gradient is taken as
    on the active side, as PyTorch's ``clamp_min``. Caches where the hinge is active."""

    def forward(self, input1, input2, target):
        target = self._accept_signs(input1, target)
        input2 = _same_as(self, input2, input1, "input2")
        hinge = self.margin - target * (input1 - input2)
        active = hinge >= 0.0
        self._cache = (active, target)
        return self._reduce(self.backend.xp.where(active, hinge, 0.0))

    def backward(self, grad_output=None):
        active, target = self._require_cache(self._cache)
        grad = self.backend.xp.where(active, -target, 0.0) * self._upstream(grad_output)
        self.input2_grad = -grad
        return grad


class CosineEmbeddingLoss(_PerRowLoss, _PairLoss):
    """``1 - cos(x1, x2)`` where y = 1, ``max(0, cos(x1, x2) - margin)`` where y = -1, as
    ``torch.nn.CosineEmbeddingLoss(margin=0.0)``: x1, x2 (N, D) (or (D,)), y (N,) (or a
    0-d array), ``cos = x1 . x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))`` (PyTorch's
    guard against zero vectors). Unchecked, a target that is neither gives 0, as PyTorch.
    Called as ``loss_fn(x1, x2, y)``; ``backward`` returns d loss / d x1 and leaves
    d loss / d x2 in ``input2_grad``. Caches both inputs, the cosines and their scales."""

    EPSILON = 1e-12

    def forward(self, input1, input2, target):
        self._accept_pred(input1)
        unbatched, rows = input1.ndim == 1, _rows(self, input1, "input1")
        input1, input2 = rows, _rows(self, _same_as(self, input2, input1, "input2"), "input2")
        xp = self.backend.xp
        if unbatched and hasattr(target, "shape") and tuple(target.shape) == ():
            target = xp.reshape(target, (1,))
        squares1 = xp.sum(input1 * input1, axis=1) + self.EPSILON
        squares2 = xp.sum(input2 * input2, axis=1) + self.EPSILON
        denominator = xp.sqrt(squares1 * squares2)
        cos = xp.sum(input1 * input2, axis=1) / denominator
        target = self._accept_signs(cos, target)  # one target per row
        similar, dissimilar = target == 1.0, target == -1.0
        hinge = cos - self.margin
        active = dissimilar & (hinge >= 0.0)
        per_row = xp.where(similar, 1.0 - cos, xp.where(active, hinge, 0.0))
        slope = xp.astype(active, cos.dtype) - xp.astype(similar, cos.dtype)  # d loss / d cos
        columns = [xp.reshape(a, (-1, 1)) for a in (cos, denominator, squares1, squares2,
                                                   slope)]
        self._cache = (input1, input2, *columns)
        return self._reduce_rows(per_row, unbatched)

    def backward(self, grad_output=None):
        x1, x2, cos, denominator, squares1, squares2, slope = self._require_cache(self._cache)
        scale = slope * self._row_upstream(grad_output)
        self.input2_grad = self._unrow(scale * (x1 / denominator - cos * x2 / squares2))
        return self._unrow(scale * (x2 / denominator - cos * x1 / squares1))


class TripletMarginLoss(_PerRowLoss):
    """``max(0, margin + d(a, p) - d(a, n))`` with ``d(u, v) = ||u - v + eps||_p``, as
    ``torch.nn.TripletMarginLoss(margin=1.0, p=2.0, eps=1e-6, swap=False)``: anchor,
    positive and negative (N, D) (or (D,)); ``swap`` uses ``min(d(a, n), d(p, n))`` as the
    negative distance (Balntas et al. 2016). Called as ``loss_fn(anchor, positive,
    negative)``; ``backward`` returns d loss / d anchor and leaves the others in
    ``positive_grad`` and ``negative_grad``. Caches the differences, distances and which
    terms are active."""

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6,
                 swap: bool = False, *, reduction: str = "mean", check: bool | None = None):
        super().__init__(reduction, check)
        name = "TripletMarginLoss"
        self.margin, self.p = check_real(name, "margin", margin), check_p(name, p)
        self.eps, self.swap = check_real(name, "eps", eps), check_flag(name, "swap", swap)
        self.positive_grad = self.negative_grad = None

    def _distance(self, u, v):
        return p_distance(self.backend.xp, u, v, self.p, self.eps)

    def _slope(self, distance, diff):
        return p_distance_slope(self.backend.xp, distance, diff, self.p)

    def forward(self, anchor, positive, negative):
        self._accept_pred(anchor)
        unbatched, rows = anchor.ndim == 1, _rows(self, anchor, "anchor")
        positive = _rows(self, _same_as(self, positive, anchor, "positive"), "positive")
        negative = _rows(self, _same_as(self, negative, anchor, "negative"), "negative")
        anchor = rows
        xp = self.backend.xp
        positive_term = self._distance(anchor, positive)
        negative_term = self._distance(anchor, negative)
        d_neg, swapped, swap_term = negative_term[0], None, None
        if self.swap:
            swap_term = self._distance(positive, negative)
            swapped = swap_term[0] < d_neg
            d_neg = xp.where(swapped, swap_term[0], d_neg)
        hinge = self.margin + positive_term[0] - d_neg
        active = hinge >= 0.0
        self._cache = (positive_term, negative_term, active, swapped, swap_term)
        return self._reduce_rows(xp.where(active, hinge, 0.0), unbatched)

    def backward(self, grad_output=None):
        positive_term, negative_term, active, swapped, swap_term = \
            self._require_cache(self._cache)
        xp = self.backend.xp
        live = xp.astype(xp.reshape(active, (-1, 1)), positive_term[1].dtype)
        scale = live * self._row_upstream(grad_output)
        u_pos = self._slope(*positive_term) * scale
        u_neg = self._slope(*negative_term) * scale
        if swapped is None:
            grads = (u_pos - u_neg, -u_pos, u_neg)
        else:
            took = xp.reshape(swapped, (-1, 1))
            u_swap = self._slope(*swap_term) * scale
            grads = (u_pos - xp.where(took, 0.0, u_neg), -u_pos - xp.where(took, u_swap, 0.0),
                     xp.where(took, u_swap, u_neg))
        anchor, self.positive_grad, self.negative_grad = (self._unrow(g) for g in grads)
        return anchor

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", margin={self.margin}, p={self.p}, eps={self.eps}, "
                f"swap={self.swap}")
