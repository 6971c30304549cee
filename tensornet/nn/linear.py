"""Linear, Bilinear and Identity."""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from .checks import check_flag
from .module import Module


def _positive_int(owner: str, name: str, value) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Linear(Module):
    """``y = x @ weight.T + bias``; weight ``(out_features, in_features)`` as in PyTorch.

    Shapes: x ``(*, in_features)`` -> y ``(*, out_features)``, as PyTorch: ``(N, in)``,
    an unbatched ``(in,)``, or ``(N, T, in)`` (a sequence: every position through the same
    weights, as one ``(N * T, in)`` GEMM). Forward caches ``x`` and the weight it used.
    Default init as PyTorch: weight and bias U(-1/sqrt(in), 1/sqrt(in)).

    ``backward(grad, input_grad=False)`` (see Module; for a first layer that reads data)
    still accumulates the weight and bias gradients but skips d loss / d x, a GEMM as large
    as the forward one (a quarter of an MLP's training step), and returns None. The weight
    gradient is written straight into the optimizer's flat gradient buffer when there is
    one (``Parameter.grad_buffer``).
    """

    _cache_attrs = ("_x", "_w")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        self.in_features = _positive_int("Linear", "in_features", in_features)
        self.out_features = _positive_int("Linear", "out_features", out_features)
        self.weight = self.new_parameter(np.zeros((self.out_features, self.in_features)))
        self.bias = self.new_parameter(np.zeros(self.out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5.0))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        self._check_features(x)
        w = self._forward_weight()
        self._x, self._w = x, w
        y = F.matmul(x if x.ndim == 2 else _rows(self.backend.xp, x), w.T)
        if self.bias is not None:
            y += self.bias.data
        return y if x.ndim == 2 else self.backend.xp.reshape(y, x.shape[:-1] + y.shape[-1:])

    def backward(self, grad_output, input_grad: bool = True):
        x = self._require_cache(self._x)
        xp = self.backend.xp
        if x.ndim != 2:  # (the grad's shape is checked by Module against the output's)
            grad_output, x = _rows(xp, grad_output), _rows(xp, x)
        grad = self._backward_rows(grad_output, x, input_grad)
        return grad if grad is None or self._x.ndim == 2 else xp.reshape(grad, self._x.shape)

    def _backward_rows(self, grad_output, x, input_grad: bool, bias_grad=None):
        """Backward on rows: ``grad_output`` (N, out), ``x`` (N, in). ``bias_grad``: the
        bias's gradient when the caller summed it already (``fusion.py``)."""
        if self.weight.requires_grad:
            self.weight.accumulate_grad(self._weight_grad(grad_output, x))
        if self.bias is not None and self.bias.requires_grad:
            if bias_grad is None:
                bias_grad = F.reduce_sum(grad_output, axis=0, out=self.bias.grad_buffer())
            self.bias.accumulate_grad(bias_grad)
        if not input_grad:
            return None
        return F.matmul(grad_output, self._w)

    def _check_features(self, x) -> None:
        """The input check of forward (also run by the Linear + ReLU fusion, fusion.py)."""
        self._check_input(x, features=self.in_features, expected=f"(*, {self.in_features})")

    def _forward_weight(self):
        """The weight forward multiplies by: ``weight`` itself (DropConnect masks it)."""
        return self.weight.data

    def _weight_grad(self, grad_output, x):
        """d loss / d weight = grad_output.T @ x (DropConnect masks it)."""
        return F.matmul(grad_output.T, x, out=self.weight.grad_buffer())

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")

    def _describe(self) -> str:
        return f"{type(self).__name__}({self.in_features} -> {self.out_features})"


def _rows(xp, x):
    """``x`` as a 2-D ``(rows, features)`` array (a view where it can be one)."""
    return x if x.ndim == 2 else xp.reshape(x, (-1, x.shape[-1]))


class Bilinear(Module):
    """``y_k = x1 @ weight[k] @ x2 + bias[k]``, as ``torch.nn.Bilinear(in1_features,
    in2_features, out_features, bias=True)``: x1 (N, in1), x2 (N, in2) -> (N, out); weight
    (out, in1, in2), bias (out,), both U(-1/sqrt(in1), 1/sqrt(in1)) as PyTorch.

    ``y = layer(x1, x2)``; ``backward(grad)`` returns d loss / d x1, leaves d loss / d x2 in
    ``input2_grad`` and accumulates the weight and bias gradients. Forward caches x1, x2
    and ``x1 @ weight`` (out, N, in2), which also gives d loss / d x2."""

    _cache_attrs = ("_cache",)

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        self.in1_features = _positive_int("Bilinear", "in1_features", in1_features)
        self.in2_features = _positive_int("Bilinear", "in2_features", in2_features)
        self.out_features = _positive_int("Bilinear", "out_features", out_features)
        self.weight = self.new_parameter(np.zeros((self.out_features, self.in1_features,
                                                   self.in2_features)))
        has_bias = check_flag("Bilinear", "bias", bias)
        self.bias = self.new_parameter(np.zeros(self.out_features)) if has_bias else None
        self.input2_grad = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in1_features)
        for param in self.parameters():
            init.uniform_(param, -bound, bound)

    def forward(self, x1, x2):
        self._check_input(x1, ndim=2, features=self.in1_features,
                          expected=f"(N, {self.in1_features})")
        self._check_input(x2, ndim=2, features=self.in2_features,
                          expected=f"(N, {self.in2_features})", name="x2")
        if x2.shape[0] != x1.shape[0]:
            raise ValueError(f"{self._describe()} got {x1.shape[0]} rows in x1 and "
                             f"{x2.shape[0]} in x2; they must match")
        xp = self.backend.xp
        left = F.matmul(x1, self.weight.data)  # (out, N, in2): x1 @ W_k for every k
        y = xp.matrix_transpose(xp.sum(left * x2, axis=-1))
        if self.bias is not None:
            y = y + self.bias.data
        self._cache = (x1, x2, left)
        return y

    def backward(self, grad_output):
        x1, x2, left = self._require_cache(self._cache)
        xp = self.backend.xp
        columns = xp.matrix_transpose(grad_output)[:, :, None]  # (out, N, 1)
        if self.weight.requires_grad:
            scaled = xp.matrix_transpose(columns * x1)  # (out, in1, N)
            self.weight.accumulate_grad(F.matmul(scaled, x2, out=self.weight.grad_buffer()))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(F.reduce_sum(grad_output, axis=0,
                                                   out=self.bias.grad_buffer()))
        self.input2_grad = xp.sum(columns * left, axis=0)
        right = F.matmul(x2, xp.matrix_transpose(self.weight.data))  # (out, N, in1)
        return xp.sum(columns * right, axis=0)

    def extra_repr(self) -> str:
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")

    def _describe(self) -> str:
        return (f"Bilinear({self.in1_features} x {self.in2_features} -> "
                f"{self.out_features})")


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed head)."""

    def forward(self, x):
        self._follow_device(x)
        return x

    def backward(self, grad_output):
        return grad_output
