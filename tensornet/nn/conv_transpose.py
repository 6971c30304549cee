"""ConvTranspose2d: the adjoint of Conv2d (a "deconvolution"), as one GEMM + col2im; and
ConvTranspose1d, the same on a height-1 view."""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init
from .conv import Convolution, HeightOne, _format_pair, _pair, _single


class ConvTranspose2d(Convolution):
    """Transposed 2-D convolution over x (N, C_in, H, W), as ``torch.nn.ConvTranspose2d``.

    Args:
        in_channels, out_channels: C_in and C_out; both divisible by ``groups``.
        kernel_size, stride, padding, dilation: an int or an (h, w) pair.
        output_padding: extra rows/columns added at the bottom/right of the output (to pick
            one of the sizes a strided Conv2d maps to the same input size); each must be
            smaller than the stride or the dilation, as PyTorch.
        groups: independent channel groups. bias: a learnable bias per output channel.

    Weight ``(C_in, C_out/groups, kh, kw)`` and bias ``(C_out,)`` as in PyTorch, with its
    default init (kaiming_uniform(a=sqrt(5)) on that layout, so fan_in = C_out/groups*kh*kw;
    bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))). Output (N, C_out, OH, OW) with
    OH = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1.

    It is the gradient of Conv2d with respect to its input: forward is one GEMM,
    ``weight^T @ x`` giving the columns (C_out*kh*kw, N*H*W), then ``F.col2im`` sums
    them into the output; backward is ``F.im2col`` of the output gradient, then one
    GEMM each for the weight and the input gradients. Forward caches x as (C_in, N*H*W).
    """

    _cache_attrs = ("_x", "_x_shape")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, *,
                 device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        name = "ConvTranspose2d"
        self._set_channels(in_channels, out_channels, groups)
        self.kernel_size = _pair(name, "kernel_size", kernel_size, 1)
        self.stride = _pair(name, "stride", stride, 1)
        self.padding = _pair(name, "padding", padding, 0)
        self.dilation = _pair(name, "dilation", dilation, 1)
        self.output_padding = _pair(name, "output_padding", output_padding, 0)
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller "
                                 f"than the stride {self.stride} or the dilation "
                                 f"{self.dilation}")
        self.weight = self.new_parameter(np.zeros(self._weight_shape()))
        self.bias = self.new_parameter(np.zeros(self.out_channels)) if bias else None
        self.reset_parameters()

    def _weight_shape(self) -> tuple:
        return (self.in_channels, self.out_channels // self.groups) + self.kernel_size

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5.0))
        if self.bias is not None:
            fan_in = init.fans(self.weight.shape)[0]
            init.uniform_(self.bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(OH, OW) for an input of spatial size (height, width)."""
        return tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1
                     for size, s, p, d, k, op in zip((height, width), self.stride, self.padding,
                                                     self.dilation, self.kernel_size,
                                                     self.output_padding))

    def _geometry(self, out_size):
        """How the output relates to the col2im canvas (the summed windows, ``out + 2*padding
        - output_padding`` long): the window padding ((top, bottom), (left, right)), the
        output rows/columns that lie past the canvas (``output_padding`` beyond ``padding``:
        no window reaches them, they are zeros) and the (rows, columns) left in between.
        A padding longer than the whole canvas crops all of it (the output is then zeros
        and the bias, as PyTorch's)."""
        pads, extra, core = [], [], []
        for out, p, op in zip(out_size, self.padding, self.output_padding):
            canvas = out + 2 * p - op
            pads.append((min(p, canvas), max(p - op, 0)))
            core.append(canvas - sum(pads[-1]))
            extra.append(out - core[-1])
        return tuple(pads), tuple(extra), tuple(core)

    def forward(self, x):
        """x (N, C_in, H, W) -> y (N, C_out, OH, OW); caches x."""
        expected = f"(N, {self.in_channels}, H, W)"
        self._check_input(x, ndim=4, expected=expected)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; "
                             f"expected {expected}")
        n, _, h, w = x.shape
        if 0 in (h, w):
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: expected "
                             f"at least one pixel along H and W")
        out_size = self.output_size(h, w)
        if min(out_size) < 1:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: the "
                             f"output would be {out_size}; use less padding")
        xp = self.backend.xp
        x_cols = xp.reshape(xp.permute_dims(x, (1, 0, 2, 3)),
                            self._grouped(self.in_channels, n * h * w))
        weight = xp.reshape(self.weight.data, self._grouped(self.in_channels, -1))
        cols = F.matmul(xp.matrix_transpose(weight), x_cols)
        pads, extra, core = self._geometry(out_size)
        y = F.col2im(cols, (n, self.out_channels) + core, self.kernel_size, self.stride,
                           pads, self.dilation)
        if extra != (0, 0):
            y = F.pad2d(y, ((0, extra[0]), (0, extra[1])))
        if self.bias is not None:
            y = y + xp.reshape(self.bias.data, (1, self.out_channels, 1, 1))
        self._x, self._x_shape = x_cols, tuple(x.shape)
        return y

    def backward(self, grad_output, input_grad: bool = True):
        """grad_output (N, C_out, OH, OW) -> dx (N, C_in, H, W); adds weight/bias grads
        (with ``input_grad=False`` the dx GEMM is skipped and None returned)."""
        x_cols = self._require_cache(self._x)
        xp = self.backend.xp
        n, _, h, w = self._x_shape
        pads, extra, core = self._geometry(tuple(grad_output.shape[2:]))
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(F.reduce_sum(grad_output, axis=(0, 2, 3),
                                                   out=self.bias.grad_buffer()))
        grad = grad_output[:, :, :core[0], :core[1]] if extra != (0, 0) else grad_output
        gcols = F.im2col(grad, self.kernel_size, self.stride, pads, self.dilation)
        gcols = xp.reshape(gcols, self._grouped(self.out_channels * self.kernel_size[0]
                                                * self.kernel_size[1], n * h * w))
        if self.weight.requires_grad:
            # Written straight into the optimizer's flat gradient view when there is one.
            buffer = self.weight.grad_buffer()
            out = None if buffer is None else xp.reshape(buffer,
                                                         self._grouped(self.in_channels, -1))
            dw = F.matmul(x_cols, xp.matrix_transpose(gcols), out=out)
            self.weight.accumulate_grad(xp.reshape(dw, self.weight.shape)
                                        if buffer is None else buffer)
        if not input_grad:
            return None
        weight = xp.reshape(self.weight.data, self._grouped(self.in_channels, -1))
        dx = xp.reshape(F.matmul(weight, gcols), (self.in_channels, n, h, w))
        return xp.permute_dims(dx, (1, 0, 2, 3))

    def _repr_items(self) -> list:
        return [f"{name}={_format_pair(value)}"
                for name, value, default in (("stride", self.stride, (1, 1)),
                                             ("padding", self.padding, (0, 0)),
                                             ("output_padding", self.output_padding, (0, 0)),
                                             ("dilation", self.dilation, (1, 1)))
                if value != default]


class ConvTranspose1d(HeightOne, ConvTranspose2d):
    """Transposed 1-D convolution over x (N, C_in, L), as ``torch.nn.ConvTranspose1d``
    (the same arguments, as ints; ``output_padding`` smaller than the stride or the
    dilation). Weight ``(C_in, C_out/groups, k)`` and bias ``(C_out,)``, PyTorch's layout
    and default init. Output (N, C_out, OL) with
    OL = (L - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1.

    It is ConvTranspose2d on a height-1 image: x is viewed as (N, C_in, 1, L) and the
    weight as (C_in, C_out/groups, 1, k).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, *,
                 device=None, dtype=None):
        name = "ConvTranspose1d"
        k, s, p = (_single(arg, value, least, name) for arg, value, least in (
            ("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0)))
        op = _single("output_padding", output_padding, 0, name)
        d = _single("dilation", dilation, 1, name)
        if op >= s and op >= d:
            raise ValueError(f"{name}: output_padding {op} must be smaller than the stride {s} "
                             f"or the dilation {d}")
        super().__init__(in_channels, out_channels, (1, k), (1, s), (0, p), (0, op), groups,
                         bias, (1, d), device=device, dtype=dtype)

    def _weight_shape(self) -> tuple:
        return self.in_channels, self.out_channels // self.groups, self.kernel_size[1]

    def forward(self, x):
        """x (N, C_in, L) -> y (N, C_out, OL); caches x."""
        expected = f"(N, {self.in_channels}, L)"
        self._check_input(x, ndim=3, expected=expected)
        n, c, length = x.shape
        if c != self.in_channels:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; "
                             f"expected {expected}")
        if length == 0:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: expected "
                             f"at least one position along L")
        out_length = self.output_size(1, length)[1]
        if out_length < 1:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: the "
                             f"output length would be {out_length}; use less padding")
        xp = self.backend.xp
        y = super().forward(xp.reshape(x, (n, c, 1, length)))
        return xp.reshape(y, (n, self.out_channels, out_length))

    def _repr_items(self) -> list:
        return [f"{name}={value[1]}"
                for name, value, default in (("stride", self.stride, 1),
                                             ("padding", self.padding, 0),
                                             ("output_padding", self.output_padding, 0),
                                             ("dilation", self.dilation, 1))
                if value[1] != default]
