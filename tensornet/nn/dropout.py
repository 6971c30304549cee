"""Dropout (drops activations), Dropout1d and Dropout2d (drop channels), AlphaDropout (drops
to SELU's saturation value, keeping mean and variance) and DropConnect (drops weights)."""
from __future__ import annotations

import math

from . import functional as F
from .checks import check_flag, check_real
from .linear import Linear
from .module import Module


def _probability(owner: str, p) -> float:
    p = check_real(owner, "p", p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{owner}: p must be a probability in [0, 1], got {p}")
    return p


def scaled_mask(backend, shape: tuple, p: float, dtype):
    """Inverted dropout's mask: 0 with probability ``p``, else ``1 / (1 - p)`` (all zeros at
    p = 1), drawn from the backend's generator (Dropout's, and the recurrent layers'
    between their stacked layers)."""
    if p == 1.0:
        return backend.zeros(shape, dtype)
    mask = backend.bernoulli(shape, 1.0 - p, dtype=dtype)
    mask *= 1.0 / (1.0 - p)
    return mask


class Dropout(Module):
    """Inverted dropout: in training each element is zeroed with probability ``p`` and the
    survivors are scaled by ``1 / (1 - p)``; in eval mode it is the identity.

    The mask comes from the backend's generator (seed it with ``tensornet.manual_seed``).
    Forward caches the scaled mask.
    """

    _cache_attrs = ("_mask",)

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = _probability(type(self).__name__, p)
        # accepted as PyTorch's (model code runs as written); the output is a new array
        self.inplace = check_flag(type(self).__name__, "inplace", inplace)

    def forward(self, x):
        self._accept_floating(x)
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        self._mask = mask = scaled_mask(self.backend, self._mask_shape(x), self.p, x.dtype)
        return x * mask

    def _mask_shape(self, x) -> tuple:
        """The mask broadcast against x: one draw per element."""
        return tuple(x.shape)

    def backward(self, grad_output):
        if not self.training or self.p == 0.0:
            return grad_output
        return grad_output * self._require_cache(self._mask)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")


class Dropout2d(Dropout):
    """Channel dropout (Tompson et al. 2015), as ``torch.nn.Dropout2d``: in training each
    channel of each sample of x (N, C, H, W) is zeroed as a whole with probability ``p``
    and the kept ones are scaled by ``1 / (1 - p)``; identity in eval mode. A 3-D input is
    read as (N, C, L), as PyTorch. Forward caches the (N, C, 1, 1) scaled mask."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__(p, inplace)

    def _mask_shape(self, x) -> tuple:
        if x.ndim not in (3, 4):
            raise ValueError(f"Dropout2d(p={self.p}) got input of shape {tuple(x.shape)}; "
                             f"expected (N, C, H, W) or (N, C, L)")
        return tuple(x.shape[:2]) + (1,) * (x.ndim - 2)


class Dropout1d(Dropout):
    """Channel dropout over x (N, C, L) (or one sample (C, L)), as ``torch.nn.Dropout1d``:
    in training each channel of each sample is zeroed as a whole with probability ``p`` and
    the kept ones are scaled by ``1 / (1 - p)``; identity in eval mode. Forward caches the
    (N, C, 1) (or (C, 1)) scaled mask."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__(p, inplace)

    def _mask_shape(self, x) -> tuple:
        if x.ndim not in (2, 3):
            raise ValueError(f"Dropout1d(p={self.p}) got input of shape {tuple(x.shape)}; "
                             f"expected (N, C, L) or (C, L)")
        return tuple(x.shape[:-1]) + (1,)


class AlphaDropout(Dropout):
    """Alpha dropout (Klambauer et al. 2017, for SELU networks), as ``torch.nn.AlphaDropout``:
    in training each element is set with probability ``p`` to SELU's negative saturation
    ``-alpha' = -1.7581``, then ``y = a * y + b`` restores zero mean and unit variance:
    ``a = ((1 - p) * (1 + p * alpha'^2))^-1/2``, ``b = a * alpha' * p``. Kept elements are
    ``a * x + b``, dropped ones ``b - a * alpha'``. Identity in eval mode; zeros at p = 1, as
    PyTorch. Forward caches ``a`` times the keep mask (backward's factor)."""

    ALPHA = 1.7580993408473766  # SELU's scale * alpha

    def forward(self, x):
        if not self.training or self.p in (0.0, 1.0):
            return super().forward(x)  # the identity, or zeros at p = 1
        self._accept_floating(x)
        a = 1.0 / math.sqrt((self.ALPHA * self.ALPHA * self.p + 1.0) * (1.0 - self.p))
        keep = self.backend.bernoulli(tuple(x.shape), 1.0 - self.p, dtype=x.dtype)
        shift = (keep - 1.0 + self.p) * (self.ALPHA * a)  # torch's b, element by element
        self._mask = keep * a  # Dropout.backward multiplies by it
        return x * self._mask + shift


class DropConnect(Linear):
    """A Linear layer whose weights are dropped (Wan et al., 2013).

    Training: each weight is kept with probability ``1 - p`` (one mask per batch, shared by
    its samples): ``y = x @ (W * M).T + b``. Eval: the expected weight ``(1 - p) * W``.
    The bias is never dropped. Forward caches ``x``, the mask and the effective weight
    (the Linear math is shared; only the weight used and its gradient differ).
    With ``backward(grad, input_grad=False)`` it skips d loss / d x and returns None.
    """

    _cache_attrs = Linear._cache_attrs + ("_mask",)

    def __init__(self, in_features: int, out_features: int, p: float = 0.5, bias: bool = True,
                 *, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.p = _probability("DropConnect", p)

    def _forward_weight(self):
        w = self.weight.data
        if not self.training:
            self._mask = None
            return (1.0 - self.p) * w
        self._mask = self.backend.bernoulli(tuple(w.shape), 1.0 - self.p, dtype=w.dtype)
        return w * self._mask

    def _weight_grad(self, grad_output, x):
        grad = F.matmul(grad_output.T, x, out=self.weight.grad_buffer())
        grad *= self._mask if self._mask is not None else 1.0 - self.p
        return grad

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"
