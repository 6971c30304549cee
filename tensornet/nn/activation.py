"""Activations. Each caches one array (its input or its output, whichever backward needs)."""
from __future__ import annotations

from . import functional as F
from .module import Module


class _Activation(Module):
    """Shared plumbing: the input check, one cached array (``_cache``)."""

    _cache_attrs = ("_cache",)

    def _accept(self, x):
        """Check ``x`` (a floating array) and return the namespace to compute with.

        Without parameters to pin it, an activation follows its input's device.
        """
        self._accept_floating(x)
        return self.backend.xp


class ReLU(_Activation):
    """``max(x, 0)``; caches the output."""

    def forward(self, x):
        self._accept(x)
        self._cache = y = F.relu(x)
        return y

    def backward(self, grad_output):
        return F.relu_backward(grad_output, self._require_cache(self._cache))


class LeakyReLU(_Activation):
    """``x`` for x > 0, ``negative_slope * x`` otherwise; caches the input."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.where(x > 0, x, self.negative_slope * x)

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        return self.backend.xp.where(x > 0, grad_output, self.negative_slope * grad_output)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(_Activation):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise; caches input and output."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x):
        xp = self._accept(x)
        y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0.0)))
        self._cache = (x, y)
        return y

    def backward(self, grad_output):
        x, y = self._require_cache(self._cache)
        return self.backend.xp.where(x > 0, grad_output, grad_output * (y + self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Tanh(_Activation):
    """``tanh(x)``; caches the output."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = y = xp.tanh(x)
        return y

    def backward(self, grad_output):
        y = self._require_cache(self._cache)
        return grad_output * (1.0 - y * y)


def _sigmoid(xp, x):
    # 0.5 * (1 + tanh(x / 2)) never overflows, unlike 1 / (1 + exp(-x)).
    return 0.5 * (xp.tanh(0.5 * x) + 1.0)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``; caches the output."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = y = _sigmoid(xp, x)
        return y

    def backward(self, grad_output):
        y = self._require_cache(self._cache)
        return grad_output * y * (1.0 - y)


class SoftPlus(_Activation):
    """``log(1 + exp(beta * x)) / beta``, linear above ``threshold`` (as PyTorch); caches input."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        bx = self.beta * x
        soft = (xp.log1p(xp.exp(-xp.abs(bx))) + xp.maximum(bx, 0.0)) / self.beta
        return xp.where(bx > self.threshold, x, soft)

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        bx = self.beta * x
        return xp.where(bx > self.threshold, grad_output, grad_output * _sigmoid(xp, bx))

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


Softplus = SoftPlus


class _SoftmaxBase(_Activation):
    """Softmax and LogSoftmax over ``dim`` (an int axis, checked against each input)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"{type(self).__name__}: dim must be an int, got {dim!r}")
        self.dim = dim

    def _accept(self, x):
        xp = super()._accept(x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}, which "
                             f"has no axis {self.dim}; dim must be in [{-x.ndim}, {x.ndim - 1}]")
        return xp

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """``exp(x - m) / sum(exp(x - m), dim)`` with ``m`` the maximum along ``dim``, so any
    row gives probabilities that sum to 1 (a uniform row gives exactly 1/C); caches the
    output."""

    def forward(self, x):
        self._accept(x)
        self._cache = y = F.softmax(x, axis=self.dim)
        return y

    def backward(self, grad_output):
        y = self._require_cache(self._cache)
        dot = self.backend.xp.sum(grad_output * y, axis=self.dim, keepdims=True)
        return y * (grad_output - dot)


class LogSoftmax(_SoftmaxBase):
    """``(x - m) - log(sum(exp(x - m), dim))`` with ``m`` the maximum along ``dim`` (never
    ``x - logsumexp(x)``, which loses the digits of ``x - m`` for large ``|x|``); caches
    the output."""

    def forward(self, x):
        self._accept(x)
        self._cache = y = F.log_softmax(x, axis=self.dim)
        return y

    def backward(self, grad_output):
        y = self._require_cache(self._cache)
        xp = self.backend.xp
        return grad_output - xp.exp(y) * xp.sum(grad_output, axis=self.dim, keepdims=True)
