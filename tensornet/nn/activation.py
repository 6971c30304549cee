"""Activations. Each caches one array (its input or its output, whichever backward needs)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from . import functional as F
from .checks import check_flag, check_real
from .module import Module
from .special import normal_cdf, normal_pdf
from .special import sigmoid as _sigmoid


class _Activation(Module):
    """Shared plumbing: the input check, one cached array (``_cache``)."""

    _cache_attrs = ("_cache",)

    def _accept(self, x):
        """Check ``x`` (a floating array) and return the namespace to compute with.

        Without parameters to pin it, an activation follows its input's device.
        """
        self._accept_floating(x)
        return self.backend.xp


class _InplaceActivation(_Activation):
    """The activations whose PyTorch layer takes ``inplace``. ``inplace=True`` is accepted,
    so PyTorch model code runs as written, and shown in the repr; the output is always a
    new array (backward may need the input, and the layer before may keep its output), so
    the results are those of ``inplace=False``."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = check_flag(type(self).__name__, "inplace", inplace)

    def __repr__(self) -> str:
        text = super().__repr__()
        if not self.inplace:
            return text
        return text[:-1] + (", " if self.extra_repr() else "") + "inplace=True)"


class ReLU(_InplaceActivation):
    """``max(x, 0)``; caches the output."""

    def forward(self, x):
        self._accept(x)
        self._cache = y = F.relu(x)
        return y

    def backward(self, grad_output):
        return F.relu_backward(grad_output, self._require_cache(self._cache))


class LeakyReLU(_InplaceActivation):
    """``x`` for x > 0, ``negative_slope * x`` otherwise; caches the input."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
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


class ELU(_InplaceActivation):
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise; caches the input."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = float(alpha)

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0.0)))

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        # alpha * exp(x), as PyTorch: y + alpha would cancel in the tail (float32: 0 below -17)
        slope = self.alpha * xp.exp(xp.minimum(x, 0.0))
        return xp.where(x > 0, grad_output, grad_output * slope)

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


class Softmin(Softmax):
    """``softmax(-x)`` along ``dim``, as ``torch.nn.Softmin``; caches the output."""

    def forward(self, x):
        self._accept(x)
        self._cache = y = F.softmax(-x, axis=self.dim)
        return y

    def backward(self, grad_output):
        return -super().backward(grad_output)


class GLU(_SoftmaxBase):
    """The gated linear unit (Dauphin et al. 2017), as ``torch.nn.GLU(dim)``: x split in
    halves ``a, b`` along ``dim`` (of even size), ``a * sigmoid(b)``; caches ``a`` and
    ``sigmoid(b)``."""

    def forward(self, x):
        xp = self._accept(x)
        size = x.shape[self.dim]
        if size % 2:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: axis "
                             f"{self.dim} has {size} values, which do not halve")
        axis = self.dim % x.ndim
        a, b = _halves(x, axis)
        s = _sigmoid(xp, b)
        self._cache = (a, s, axis)
        return a * s

    def backward(self, grad_output):
        a, s, axis = self._require_cache(self._cache)
        xp = self.backend.xp
        return xp.concat([grad_output * s, grad_output * a * s * (1.0 - s)], axis=axis)


def _halves(x, axis: int):
    """x's two halves along ``axis`` (views)."""
    half = x.shape[axis] // 2
    first, second = [slice(None)] * x.ndim, [slice(None)] * x.ndim
    first[axis], second[axis] = slice(0, half), slice(half, None)
    return x[tuple(first)], x[tuple(second)]


class Threshold(_InplaceActivation):
    """``x`` where ``x > threshold``, else ``value``, as ``torch.nn.Threshold(threshold,
    value)``; the gradient passes where ``x > threshold``. Caches the input."""

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        super().__init__(inplace)
        self.threshold = check_real("Threshold", "threshold", threshold)
        self.value = check_real("Threshold", "value", value)

    def forward(self, x):  # "value where x <= threshold", as torch: NaN stays NaN
        xp = self._accept(x)
        self._cache = x
        return xp.where(x <= self.threshold, self.value, x)

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        return self.backend.xp.where(x <= self.threshold, 0.0, grad_output)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}"


class _Shrink(_Activation):
    """Hardshrink and Softshrink: ``lambd`` >= 0, the gradient 1 where ``|x| > lambd``."""

    def __init__(self, lambd: float = 0.5):
        super().__init__()
        lambd = check_real(type(self).__name__, "lambd", lambd)
        if not lambd >= 0:
            raise ValueError(f"{type(self).__name__}: lambd must be >= 0, got {lambd!r}")
        self.lambd = lambd

    def _inside(self, x):
        """Where the output is 0: ``|x| <= lambd`` (so NaN passes through, as torch's)."""
        return self.backend.xp.abs(x) <= self.lambd

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        return self.backend.xp.where(self._inside(x), 0.0, grad_output)

    def extra_repr(self) -> str:
        return str(self.lambd)


class Hardshrink(_Shrink):
    """``x`` where ``|x| > lambd``, else 0, as ``torch.nn.Hardshrink``; caches the input."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.where(self._inside(x), 0.0, x)


class Softshrink(_Shrink):
    """``x - lambd * sign(x)`` where ``|x| > lambd``, else 0, as ``torch.nn.Softshrink``;
    caches the input."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.where(self._inside(x), 0.0, x - self.lambd * xp.sign(x))


class Tanhshrink(_Activation):
    """``x - tanh(x)``, as ``torch.nn.Tanhshrink``; caches ``tanh(x)``."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = t = xp.tanh(x)
        return x - t

    def backward(self, grad_output):
        t = self._require_cache(self._cache)
        return grad_output * (t * t)


class GELU(_Activation):
    """Gaussian error linear unit (Hendrycks & Gimpel 2016), as ``torch.nn.GELU``.

    ``approximate='none'``: ``x * Phi(x)`` with Phi the standard normal CDF (computed from
    standard array calls, see ``nn.special``); ``'tanh'``:
    ``0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))``. Caches the input.
    """

    _TANH_CUBIC = 0.044715
    _TANH_SATURATED = 10.0

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        if self.approximate == "tanh":
            return 0.5 * x * (1.0 + xp.tanh(self._tanh_argument(x)))
        return x * normal_cdf(xp, x)

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        if self.approximate == "tanh":
            th = xp.tanh(self._tanh_argument(x))
            near = self._saturated(x)
            du = math.sqrt(2.0 / math.pi) * (1.0 + (3.0 * self._TANH_CUBIC) * (near * near))
            return grad_output * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du)
        return grad_output * (normal_cdf(xp, x) + x * normal_pdf(xp, x))

    def _tanh_argument(self, x):
        x = self._saturated(x)
        return math.sqrt(2.0 / math.pi) * (x + self._TANH_CUBIC * (x * x * x))

    def _saturated(self, x):
        """``x`` clipped to [-10, 10]: tanh of the argument at 10 (43.6) is already +-1 in
        every dtype, and x^3 of a larger x overflows (float32: 7e12, with a warning; in
        backward 0 * inf = NaN where the slope is 1 or 0)."""
        return self.backend.xp.clip(x, -self._TANH_SATURATED, self._TANH_SATURATED)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(_InplaceActivation):
    """``x * sigmoid(x)`` (the swish of Ramachandran et al. 2017); caches input and sigmoid."""

    def forward(self, x):
        xp = self._accept(x)
        s = _sigmoid(xp, x)
        self._cache = (x, s)
        return x * s

    def backward(self, grad_output):
        x, s = self._require_cache(self._cache)
        return grad_output * (s * (1.0 + x * (1.0 - s)))


class Hardtanh(_InplaceActivation):
    """``clip(x, min_val, max_val)``; the gradient passes strictly inside the interval (as
    PyTorch). Caches the input."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.min_val, self.max_val = float(min_val), float(max_val)
        if not self.min_val < self.max_val:
            raise ValueError(f"Hardtanh: min_val ({self.min_val}) must be below max_val "
                             f"({self.max_val})")

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.clip(x, self.min_val, self.max_val)

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        inside = (x > self.min_val) & (x < self.max_val)
        return self.backend.xp.where(inside, grad_output, 0.0)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    """``min(max(x, 0), 6)`` (MobileNet's), as ``torch.nn.ReLU6``: Hardtanh(0, 6)."""

    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return ""


class Hardsigmoid(_InplaceActivation):
    """``relu6(x + 3) / 6``, as ``torch.nn.Hardsigmoid``: the gradient 1/6 strictly inside
    (-3, 3), 0 elsewhere (as PyTorch). Caches the input."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.clip(x + 3.0, 0.0, 6.0) / 6.0

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        inside = (x > -3.0) & (x < 3.0)
        return self.backend.xp.where(inside, grad_output / 6.0, 0.0)


class Hardswish(_InplaceActivation):
    """``x * relu6(x + 3) / 6`` (Howard et al. 2019), as ``torch.nn.Hardswish``: gradient 0
    up to -3, ``x / 3 + 1/2`` strictly between -3 and 3, 1 from 3 (PyTorch's choices at
    the two kinks). Caches the input."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return x * xp.clip(x + 3.0, 0.0, 6.0) / 6.0

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        slope = xp.where(x <= -3.0, 0.0, xp.where(x >= 3.0, 1.0, x / 3.0 + 0.5))  # NaN: NaN
        return grad_output * slope


class Mish(_InplaceActivation):
    """``x * tanh(softplus(x))`` (Misra 2019), as ``torch.nn.Mish``; caches the input and
    ``tanh(softplus(x))``."""

    def forward(self, x):
        xp = self._accept(x)
        t = xp.tanh(xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(x, 0.0))
        self._cache = (x, t)
        return x * t

    def backward(self, grad_output):
        x, t = self._require_cache(self._cache)
        xp = self.backend.xp
        return grad_output * (t + x * _sigmoid(xp, x) * (1.0 - t * t))


class CELU(_InplaceActivation):
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`` (Barron 2017), as
    ``torch.nn.CELU(alpha)``; caches the input."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        tiny, huge = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or \
                not tiny <= abs(alpha) <= huge:  # a float32 layer must hold it and 1/alpha
            raise ValueError(f"CELU: alpha must be a nonzero number within float32's range "
                             f"({tiny:.3g} to {huge:.3g} in size), got {alpha!r}")
        self.alpha = float(alpha)

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0.0) / self.alpha))

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        return xp.where(x > 0, grad_output,
                        grad_output * xp.exp(xp.minimum(x, 0.0) / self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(_InplaceActivation):
    """``scale * (max(0, x) + min(0, alpha * (exp(x) - 1)))`` with Klambauer et al.'s
    (2017) self-normalizing constants, as ``torch.nn.SELU``; caches the input."""

    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return self.SCALE * xp.where(x > 0, x, self.ALPHA * xp.expm1(xp.minimum(x, 0.0)))

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        slope = xp.where(x > 0, self.SCALE, self.SCALE * self.ALPHA * xp.exp(xp.minimum(x, 0.0)))
        return grad_output * slope


class Softsign(_Activation):
    """``x / (1 + |x|)``, as ``torch.nn.Softsign``; caches the input."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return x / (1.0 + xp.abs(x))

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        d = 1.0 + self.backend.xp.abs(x)
        return grad_output / (d * d)


class LogSigmoid(_Activation):
    """``log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|))`` (no overflow, no cancellation),
    as ``torch.nn.LogSigmoid``; caches the input."""

    def forward(self, x):
        xp = self._accept(x)
        self._cache = x
        return xp.minimum(x, 0.0) - xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        return grad_output * _sigmoid(self.backend.xp, -x)


class PReLU(Module):
    """``x`` for x > 0, ``a * x`` otherwise, with a learnable slope ``a`` (He et al. 2015).

    ``weight`` has shape ``(num_parameters,)``, filled with ``init``: one slope shared by
    every element, or one per channel (axis 1 of x (N, C, ...), ``num_parameters == C``).
    Caches the input.
    """

    _cache_attrs = ("_cache",)

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *, device=None,
                 dtype=None):
        super().__init__(device=device, dtype=dtype)
        if (isinstance(num_parameters, bool) or not isinstance(num_parameters, int)
                or num_parameters < 1):
            raise ValueError(f"PReLU: num_parameters must be a positive integer, got "
                             f"{num_parameters!r}")
        self.num_parameters = num_parameters
        self.init = float(init)
        self.weight = self.new_parameter(np.full(num_parameters, self.init))

    def _slope(self, ndim: int):
        """The weight shaped to broadcast against an ndim-dimensional input."""
        if self.num_parameters == 1:
            return self.weight.data
        return self.backend.xp.reshape(self.weight.data,
                                       (1, self.num_parameters) + (1,) * (ndim - 2))

    def forward(self, x):
        if self.num_parameters > 1:
            self._check_input(x, expected=f"(N, {self.num_parameters}, ...)")
            if x.ndim < 2 or x.shape[1] != self.num_parameters:
                raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; "
                                 f"expected (N, {self.num_parameters}, ...)")
        else:
            self._check_input(x)
        self._cache = x
        return self.backend.xp.where(x > 0, x, self._slope(x.ndim) * x)

    def backward(self, grad_output):
        x = self._require_cache(self._cache)
        xp = self.backend.xp
        positive = x > 0
        if self.weight.requires_grad:
            slope_grad = xp.where(positive, 0.0, x * grad_output)
            if self.num_parameters == 1:
                self.weight.accumulate_grad(xp.reshape(xp.sum(slope_grad), (1,)))
            else:
                axes = (0,) + tuple(range(2, x.ndim))
                self.weight.accumulate_grad(xp.sum(slope_grad, axis=axes))
        return xp.where(positive, grad_output, self._slope(x.ndim) * grad_output)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
