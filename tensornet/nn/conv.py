"""Conv2d and Conv1d: convolution as im2col + one GEMM (Caffe/Chainer style), on every
backend; the math is ``F.conv2d`` / ``F.conv2d_backward``. ``Convolution`` holds what they
and ConvTranspose2d share."""
from __future__ import annotations

import math

import numpy as np

from tensornet.backends.geometry import window_output_size

from . import functional as F
from .functional.conv import grouped_shape
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


def window_repr(kernel_size, stride, padding) -> str:
    """``kernel_size=k[, stride=s][, padding=p]`` as PyTorch prints a pool's window (the
    stride when it is not the kernel size, the padding when not 0)."""
    text = f"kernel_size={_format_pair(kernel_size)}"
    if stride != kernel_size:
        text += f", stride={_format_pair(stride)}"
    if padding != (0, 0):
        text += f", padding={_format_pair(padding)}"
    return text


def check_window_fits(module: Module, x, kernel_size, stride, padding, dilation=(1, 1)):
    """(OH, OW) of ``module``'s windows over ``x``, or a clear error if the kernel does not fit."""
    out = window_output_size(tuple(x.shape), kernel_size, stride, padding, dilation)
    if min(out) < 1:
        raise ValueError(f"{module._describe()} got input of shape {tuple(x.shape)}: the padded "
                         f"spatial size is smaller than the kernel {tuple(kernel_size)}"
                         f"{' (dilated)' if tuple(dilation) != (1, 1) else ''}")
    return out


class Convolution(Module):
    """What Conv1d, Conv2d and ConvTranspose2d share: the channel and group arguments,
    the grouped GEMM operand shapes, and the repr (subclasses list their geometry in
    ``_repr_items`` and give ``_kernel_text``)."""

    def _set_channels(self, in_channels, out_channels, groups) -> None:
        name = type(self).__name__
        self.in_channels = _pair(name, "in_channels", in_channels, 1)[0]
        self.out_channels = _pair(name, "out_channels", out_channels, 1)[0]
        self.groups = _pair(name, "groups", groups, 1)[0]
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{name}: in_channels ({self.in_channels}) and out_channels "
                             f"({self.out_channels}) must both be divisible by groups "
                             f"({self.groups})")

    def _grouped(self, rows: int, columns: int) -> tuple:
        """GEMM operand shape for this module's groups (``F.conv``'s ``grouped_shape``)."""
        return grouped_shape(self.groups, rows, columns)

    def _kernel_text(self) -> str:
        return _format_pair(self.kernel_size)

    def _repr_items(self) -> list:
        """``"name=value"`` texts of the geometry arguments that differ from the defaults."""
        return []

    def extra_repr(self) -> str:
        items = [f"{self.in_channels}", f"{self.out_channels}",
                 f"kernel_size={self._kernel_text()}"] + self._repr_items()
        if self.groups != 1:
            items.append(f"groups={self.groups}")
        if self.bias is None:
            items.append("bias=False")
        return ", ".join(items)

    def _describe(self) -> str:
        return (f"{type(self).__name__}({self.in_channels} -> {self.out_channels}, "
                f"k={self._kernel_text()})")


class Conv2d(Convolution):
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

    _cache_attrs = ("_cache",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        name = type(self).__name__
        self._set_channels(in_channels, out_channels, groups)
        self.kernel_size = _pair(name, "kernel_size", kernel_size, 1)
        self.stride = _pair(name, "stride", stride, 1)
        self.dilation = _pair(name, "dilation", dilation, 1)
        self.padding = padding
        self._pads = self._resolve_padding(padding)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        self.weight = self.new_parameter(np.zeros(self._weight_shape()))
        self.bias = self.new_parameter(np.zeros(self.out_channels)) if bias else None
        self._fan_in = fan_in
        self.reset_parameters()

    def _weight_shape(self) -> tuple:
        return (self.out_channels, self.in_channels // self.groups) + self.kernel_size

    def _resolve_padding(self, padding):
        """``padding`` -> ((top, bottom), (left, right))."""
        if isinstance(padding, str):
            if padding == "valid":
                return (0, 0), (0, 0)
            if padding != "same":
                raise ValueError(f"{type(self).__name__}: padding must be an int, a pair, "
                                 f"'valid' or 'same', got {padding!r}")
            if self.stride != (1, 1):
                raise ValueError(f"{type(self).__name__}: padding='same' needs stride 1, got "
                                 f"stride {self.stride}")
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        ph, pw = _pair(type(self).__name__, "padding", padding, 0)
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
        y, self._cache = F.conv2d(x, self._weight_4d(), bias, self.stride, self._pads,
                                  self.dilation, self.groups)
        return y

    def _weight_4d(self):
        """The weight as (C_out, C_in/groups, kh, kw) (a view: Conv1d keeps it 3-D)."""
        return self.backend.xp.reshape(
            self.weight.data, (self.out_channels, self.in_channels // self.groups)
            + self.kernel_size)

    def backward(self, grad_output, input_grad: bool = True):
        """grad_output (N, C_out, OH, OW) -> dx (N, C_in, H, W); adds weight/bias grads."""
        cache = self._require_cache(self._cache)
        xp = self.backend.xp
        weight_grad = self.weight.requires_grad
        # Written straight into the optimizer's flat gradient view when there is one.
        buffer = self.weight.grad_buffer() if weight_grad else None
        dx, dw = F.conv2d_backward(grad_output, cache, self._weight_4d(), self.stride,
                                   self._pads, self.dilation, self.groups,
                                   weight_grad=weight_grad, weight_grad_out=buffer,
                                   input_grad=input_grad)
        if weight_grad:
            self.weight.accumulate_grad(dw if buffer is not None
                                        else xp.reshape(dw, self.weight.shape))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(F.reduce_sum(
                xp.reshape(xp.permute_dims(grad_output, (1, 0, 2, 3)), (self.out_channels, -1)),
                axis=1, out=self.bias.grad_buffer()))
        return dx

    def _repr_items(self) -> list:
        items = []
        if self.stride != (1, 1):
            items.append(f"stride={_format_pair(self.stride)}")
        if self.padding not in (0, (0, 0), "valid"):
            items.append(f"padding={self.padding!r}")
        if self.dilation != (1, 1):
            items.append(f"dilation={_format_pair(self.dilation)}")
        return items


def _single(name: str, value, minimum: int, owner: str = "Conv1d") -> int:
    """An int or a 1-tuple -> int, at least ``minimum`` (errors name ``owner``)."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or value < minimum):
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class HeightOne(Module):
    """Base of the 1-D convolutions (Conv1d, ConvTranspose1d), listed before their 2-D
    layer, which they run on a height-1 view: backward and the kernel's text. A Module, so
    that its backward checks the gradient against the 1-D output (``tracked_backward``)."""

    def backward(self, grad_output, input_grad: bool = True):
        """grad_output (N, C_out, OL) -> dx (N, C_in, L); adds weight/bias grads."""
        xp = self.backend.xp
        n, c, length = grad_output.shape
        dx = super().backward(xp.reshape(grad_output, (n, c, 1, length)), input_grad=input_grad)
        return None if dx is None else xp.reshape(dx, (n, self.in_channels, dx.shape[3]))

    def _kernel_text(self) -> str:
        return str(self.kernel_size[1])


class Conv1d(HeightOne, Conv2d):
    """1-D convolution (cross-correlation, as PyTorch) over x (N, C_in, L).

    Args as ``torch.nn.Conv1d``: ``kernel_size``, ``stride``, ``dilation`` ints; ``padding``
    an int, ``"valid"`` or ``"same"``; ``groups``; ``bias``. Weight ``(C_out, C_in/groups,
    k)`` and bias ``(C_out,)``, PyTorch's layout and default init. Output (N, C_out, OL),
    OL = (L + 2*padding - dilation*(k-1) - 1) // stride + 1.

    It is Conv2d on a height-1 image: x is viewed as (N, C_in, 1, L) and the weight as
    (C_out, C_in/groups, 1, k), so forward and backward (``F.conv2d`` and
    ``F.conv2d_backward``) are Conv2d's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, *, device=None, dtype=None):
        k = _single("kernel_size", kernel_size, 1)
        pad = padding if isinstance(padding, str) else (0, _single("padding", padding, 0))
        super().__init__(in_channels, out_channels, (1, k), (1, _single("stride", stride, 1)),
                         pad, (1, _single("dilation", dilation, 1)), groups, bias,
                         device=device, dtype=dtype)
        self.padding = padding

    def _weight_shape(self) -> tuple:
        return self.out_channels, self.in_channels // self.groups, self.kernel_size[1]

    def forward(self, x):
        """x (N, C_in, L) -> y (N, C_out, OL)."""
        expected = f"(N, {self.in_channels}, L)"
        self._check_input(x, ndim=3, expected=expected)
        xp = self.backend.xp
        n, c, length = x.shape
        (_, (left, right)), k, d = self._pads, self.kernel_size[1], self.dilation[1]
        if c != self.in_channels or length + left + right < d * (k - 1) + 1:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; expected "
                             f"{expected} with L + padding at least the (dilated) kernel "
                             f"size {d * (k - 1) + 1}")
        y = super().forward(xp.reshape(x, (n, c, 1, length)))
        return xp.reshape(y, (n, self.out_channels, y.shape[3]))

    def _repr_items(self) -> list:
        items = [f"stride={self.stride[1]}"] if self.stride[1] != 1 else []
        if self.padding not in (0, (0,), "valid"):
            items.append(f"padding={self.padding!r}")
        if self.dilation[1] != 1:
            items.append(f"dilation={self.dilation[1]}")
        return items
