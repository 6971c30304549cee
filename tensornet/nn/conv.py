"""Conv2d: 2-D convolution as im2col + one GEMM (Caffe/Chainer style), on every backend;
the math is ``F.conv2d`` / ``F.conv2d_backward``."""
from __future__ import annotations

import math

import numpy as np

from tensornet.backends.geometry import window_output_size

from . import functional as F
from . import init
from .module import Module


def _pair(owner: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints -> (int, int), each at least ``minimum``."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if (len(pair) != 2 or any(not isinstance(v, (int, np.integer)) or isinstance(v, bool)
                              or v < minimum for v in pair)):
        raise ValueError(f"{owner}: {name} must be an int >= {minimum} or a pair of them, "
                         f"got {value!r}")
    return int(pair[0]), int(pair[1])


def _format_pair(pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else str(tuple(pair))


def check_window_fits(module: Module, x, kernel_size, stride, padding, dilation=(1, 1)):
    """(OH, OW) of ``module``'s windows over ``x``, or a clear error if the kernel does not fit."""
    out = window_output_size(tuple(x.shape), kernel_size, stride, padding, dilation)
    if min(out) < 1:
        raise ValueError(f"{module._describe()} got input of shape {tuple(x.shape)}: the padded "
                         f"spatial size is smaller than the kernel {tuple(kernel_size)}"
                         f"{' (dilated)' if tuple(dilation) != (1, 1) else ''}")
    return out


class Conv2d(Module):
    """2-D convolution (cross-correlation, as PyTorch) over x (N, C_in, H, W).

    Args:
        in_channels, out_channels: C_in and C_out; both divisible by ``groups``.
        kernel_size, stride, dilation: an int or an (h, w) pair.
        padding: an int, an (h, w) pair, ``"valid"`` (0) or ``"same"`` (stride 1 only; an
            odd total padding puts the extra row/column at the bottom/right, as PyTorch).
        groups: split channels into independent groups (``groups == in_channels`` is a
            depthwise convolution).
        bias: add a learnable bias per output channel.

    Weight ``(C_out, C_in/groups, kh, kw)`` and bias ``(C_out,)`` as in PyTorch, initialised
    like PyTorch: kaiming_uniform(a=sqrt(5)) and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    Output (N, C_out, OH, OW), OH = (H + pad_h - dilation_h*(kh-1) - 1) // stride_h + 1.

    Forward is ``F.conv2d``: im2col then one GEMM with the batch folded in (with groups,
    one batched matmul over the groups); it caches what ``F.conv2d_backward`` needs (the
    columns (C_in*kh*kw, N*OH*OW) in the generic version; the input where the device
    rebuilds the columns block by block, as the NumPy backend does). Backward is two GEMMs
    and ``F.col2im`` (with ``input_grad=False``, for a first layer reading data, only the
    weight GEMM: it then returns None). The output is returned as a transposed view of the
    GEMM result, whose memory is (C_out, N, OH, OW): copying it to (N, C_out, OH, OW)
    would cost a pass, and BatchNorm's per-channel sums that follow read contiguous memory
    this way. Any layer accepts it (it is an ordinary array).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        self.in_channels = _pair("Conv2d", "in_channels", in_channels, 1)[0]
        self.out_channels = _pair("Conv2d", "out_channels", out_channels, 1)[0]
        self.groups = _pair("Conv2d", "groups", groups, 1)[0]
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels ({self.in_channels}) and out_channels "
                             f"({self.out_channels}) must both be divisible by groups "
                             f"({self.groups})")
        self.kernel_size = _pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = _pair("Conv2d", "stride", stride, 1)
        self.dilation = _pair("Conv2d", "dilation", dilation, 1)
        self.padding = padding
        self._pads = self._resolve_padding(padding)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight = self.new_parameter(np.zeros((self.out_channels,
                                                   self.in_channels // self.groups)
                                                  + self.kernel_size))
        self.bias = self.new_parameter(np.zeros(self.out_channels)) if bias else None
        self._fan_in = fan_in
        self._cache = None
        self.reset_parameters()

    def _resolve_padding(self, padding):
        """``padding`` -> ((top, bottom), (left, right))."""
        if isinstance(padding, str):
            if padding == "valid":
                return (0, 0), (0, 0)
            if padding != "same":
                raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', "
                                 f"got {padding!r}")
            if self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride "
                                 f"{self.stride}")
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        ph, pw = _pair("Conv2d", "padding", padding, 0)
        return (ph, ph), (pw, pw)

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5.0))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self._fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        """x (N, C_in, H, W) -> y (N, C_out, OH, OW); caches what backward needs."""
        self._check_input(x, ndim=4, features=None,
                          expected=f"(N, {self.in_channels}, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; "
                             f"expected (N, {self.in_channels}, H, W)")
        check_window_fits(self, x, self.kernel_size, self.stride, self._pads, self.dilation)
        self._cache = None  # let the allocator reuse the previous batch's buffers
        bias = None if self.bias is None else self.bias.data
        y, self._cache = F.conv2d(x, self.weight.data, bias, self.stride, self._pads,
                                  self.dilation, self.groups)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        """grad_output (N, C_out, OH, OW) -> dx (N, C_in, H, W); adds weight/bias grads."""
        cache = self._require_cache(self._cache)
        xp = self.backend.xp
        weight_grad = self.weight.requires_grad
        # Written straight into the optimizer's flat gradient view when there is one.
        buffer = self.weight.grad_buffer() if weight_grad else None
        dx, dw = F.conv2d_backward(grad_output, cache, self.weight.data, self.stride,
                                   self._pads, self.dilation, self.groups,
                                   weight_grad=weight_grad, weight_grad_out=buffer,
                                   input_grad=input_grad)
        if weight_grad:
            self.weight.accumulate_grad(dw)
        if self.bias is not None and self.bias.requires_grad:
            grad = xp.permute_dims(grad_output, (1, 0, 2, 3))
            self.bias.accumulate_grad(xp.sum(xp.reshape(grad, (self.out_channels, -1)), axis=1))
        return dx

    def clear_cache(self) -> None:
        self._cache = None

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, "
                f"kernel_size={_format_pair(self.kernel_size)}")
        if self.stride != (1, 1):
            text += f", stride={_format_pair(self.stride)}"
        if self.padding not in (0, (0, 0), "valid"):
            text += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            text += f", dilation={_format_pair(self.dilation)}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text

    def _describe(self) -> str:
        return (f"Conv2d({self.in_channels} -> {self.out_channels}, "
                f"k={_format_pair(self.kernel_size)})")
