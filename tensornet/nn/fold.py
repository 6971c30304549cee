"""Unfold and Fold, as PyTorch's: the sliding windows of an image as columns (im2col) and
back, summing overlaps (col2im). They are ``F.im2col`` and ``F.col2im``, the convolution's
own kernels, with the batch axis moved to the front."""
from __future__ import annotations

from tensornet.backends.geometry import window_output_size

from . import functional as F
from .conv import _format_pair, _pair, check_window_fits
from .module import Module


class _Windows(Module):
    """The window arguments shared by Unfold and Fold (ints or pairs, PyTorch's order of
    ``kernel_size, dilation, padding, stride``); padding is zeros on both sides."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(name, "kernel_size", kernel_size, 1)
        self.dilation = _pair(name, "dilation", dilation, 1)
        self.padding = _pair(name, "padding", padding, 0)
        self.stride = _pair(name, "stride", stride, 1)
        self._pads = tuple((p, p) for p in self.padding)

    def _blocks(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1]

    def extra_repr(self) -> str:
        return (f"kernel_size={_format_pair(self.kernel_size)}, dilation="
                f"{_format_pair(self.dilation)}, padding={_format_pair(self.padding)}, "
                f"stride={_format_pair(self.stride)}")


class Unfold(_Windows):
    """x (N, C, H, W) -> (N, C*kh*kw, L), L = OH*OW windows, as ``torch.nn.Unfold``: column
    l holds window l's pixels, channel by channel, each channel's kh x kw block in
    row-major order (``Fold`` sums them back). Caches the input shape."""

    _cache_attrs = ("_x_shape",)

    def forward(self, x):
        self._accept_floating(x, ndim=4, expected="(N, C, H, W)")
        oh, ow = check_window_fits(self, x, self.kernel_size, self.stride, self._pads,
                                   self.dilation)
        n, c = x.shape[:2]
        xp = self.backend.xp
        cols = F.im2col(x, self.kernel_size, self.stride, self._pads, self.dilation)
        self._x_shape = tuple(x.shape)
        return xp.permute_dims(xp.reshape(cols, (c * self._blocks(), n, oh * ow)), (1, 0, 2))

    def backward(self, grad_output):
        x_shape = self._require_cache(self._x_shape)
        return _fold(self, grad_output, x_shape)


class Fold(_Windows):
    """Columns (N, C*kh*kw, L) -> (N, C, H, W) with (H, W) = ``output_size``, summing where
    windows overlap, as ``torch.nn.Fold``: the adjoint of ``Unfold`` (L must be the number
    of windows over an ``output_size`` image). Caches nothing but shapes."""

    _cache_attrs = ("_x_shape",)

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__(kernel_size, dilation, padding, stride)
        self.output_size = _pair(type(self).__name__, "output_size", output_size, 1)

    def forward(self, x):
        expected = f"(N, C*{self.kernel_size[0] * self.kernel_size[1]}, L)"
        self._accept_floating(x, ndim=3, expected=expected)
        n, rows, length = x.shape
        blocks = self._blocks()
        image = (n, rows // blocks) + self.output_size
        oh, ow = window_output_size(image, self.kernel_size, self.stride, self._pads,
                                    self.dilation)
        if min(oh, ow) < 1:
            raise ValueError(f"{self._describe()}: the padded output_size is smaller than the "
                             f"(dilated) kernel, so there is no window to fold")
        if rows % blocks or rows == 0 or length != oh * ow:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}; expected "
                             f"(N, C*{blocks}, {oh * ow}): C times kh*kw = {blocks} rows and "
                             f"the {oh} x {ow} = {oh * ow} windows of a "
                             f"{self.output_size[0]} x {self.output_size[1]} output")
        self._x_shape = tuple(x.shape)
        return _fold(self, x, image)

    def backward(self, grad_output):
        n, rows, length = self._require_cache(self._x_shape)
        xp = self.backend.xp
        cols = F.im2col(grad_output, self.kernel_size, self.stride, self._pads, self.dilation)
        return xp.permute_dims(xp.reshape(cols, (rows, n, length)), (1, 0, 2))

    def extra_repr(self) -> str:
        return f"output_size={_format_pair(self.output_size)}, " + super().extra_repr()


def _fold(module: _Windows, columns, image_shape):
    """(N, C*kh*kw, L) columns -> the (N, C, H, W) image, overlaps summed (``F.col2im``)."""
    xp = module.backend.xp
    n, rows, length = columns.shape
    cols = xp.reshape(xp.permute_dims(columns, (1, 0, 2)), (rows, n * length))
    return F.col2im(cols, image_shape, module.kernel_size, module.stride, module._pads,
                    module.dilation)
