"""Activations. Each caches one array (its input or its output, whichever backward needs)."""
from __future__ import annotations

from . import functional as F
from .module import Module


class _Activation(Module):
    """Shared plumbing: input check, one cached array, cache clearing."""

    def __init__(self):
        super().__init__()
        self._cache = None

    def _accept(self, x):
        """Check ``x`` and return the namespace to compute with.

        Without parameters to pin it, an activation follows its input's device.
        """
        self._follow_input_device(x)
        self._check_input(x, float_input=False)
        return self.backend.xp

    def clear_cache(self) -> None:
        self._cache = None


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


class Softmax(_Activation):
    """``exp(x) / sum(exp(x), dim)``; caches the output."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        xp = self._accept(x)
        self._cache = y = xp.exp(x - F.logsumexp(x, axis=self.dim, keepdims=True))
        return y

    def backward(self, grad_output):
        y = self._require_cache(self._cache)
        dot = self.backend.xp.sum(grad_output * y, axis=self.dim, keepdims=True)
        return y * (grad_output - dot)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(_Activation):
    """``x - logsumexp(x, dim)``; caches the output."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        self._accept(x)
        self._cache = y = x - F.logsumexp(x, axis=self.dim, keepdims=True)
        return y

    def backward(self, grad_output):
        y = self._require_cache(self._cache)
        xp = self.backend.xp
        return grad_output - xp.exp(y) * xp.sum(grad_output, axis=self.dim, keepdims=True)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
