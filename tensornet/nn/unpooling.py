"""MaxUnpool2d: the partial inverse of ``MaxPool2d(..., return_indices=True)``, as
``torch.nn.MaxUnpool2d`` (SegNet's decoder upsampling)."""
from __future__ import annotations

import numpy as np

from tensornet.backends import DeviceError, device_of, dtype_name

from . import functional as F
from .conv import _pair, window_repr
from .module import Module


class MaxUnpool2d(Module):
    """Put each value of ``x`` back where its pool's maximum came from; zeros elsewhere.

    ``forward(x, indices, output_size=None)``: x (N, C, H, W) floating; ``indices`` an
    integer array of x's shape and device, each a flat index ``h * OW + w`` into its (n, c)
    output plane (``MaxPool2d(..., return_indices=True)``'s second output) -> (N, C, OH, OW)
    with ``OH = (H - 1) * stride - 2 * padding + kernel_size`` (likewise OW), or
    ``output_size`` ((OH, OW), or (N, C, OH, OW) whose N, C are ignored, as PyTorch), which
    must lie strictly within ``stride`` of that default, as PyTorch checks. An index outside
    the output plane raises (one read of its minimum and maximum to the host). Where indices
    repeat (overlapping pool windows that chose one input), the values are equal and one
    lands. Forward caches the flat indices into the whole output; backward gathers
    ``grad_output`` there (d loss / d x; no parameters).
    """

    _cache_attrs = ("_flat_index", "_x_shape")

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = _pair(name, "kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else _pair(name, "stride", stride, 1)
        self.padding = _pair(name, "padding", padding, 0)

    def forward(self, x, indices, output_size=None):
        self._accept_floating(x, ndim=4, expected="(N, C, H, W)")
        self._check_indices(x, indices)
        n, c, oh, ow = shape = (x.shape[0], x.shape[1]) + self.output_size_for(
            tuple(x.shape[2:]), output_size)
        xp = self.backend.xp
        index = xp.astype(indices, xp.int64)
        if x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3]:
            low, high = int(xp.min(index)), int(xp.max(index))
            if low < 0 or high >= oh * ow:
                bad = low if low < 0 else high
                raise ValueError(f"{self._describe()}: found an invalid max index {bad}; "
                                 f"indices must lie in [0, {oh * ow}), the output planes "
                                 f"being {oh}x{ow}")
        planes = self.backend.asarray(np.arange(n * c, dtype=np.int64).reshape(n, c, 1, 1))
        self._flat_index = planes * (oh * ow) + index
        self._x_shape = tuple(x.shape)
        return F.scatter_assign(self.backend.zeros(shape, x.dtype), self._flat_index, x)

    def backward(self, grad_output):
        flat_index = self._require_cache(self._flat_index)
        xp = self.backend.xp
        picked = xp.take(xp.reshape(grad_output, (-1,)), xp.reshape(flat_index, (-1,)))
        return xp.reshape(picked, self._x_shape)

    def output_size_for(self, size: tuple, output_size=None) -> tuple:
        """(OH, OW) for an (H, W) input, checked as ``torch.nn.functional.max_unpool2d``."""
        name = self._describe()
        default = tuple((n - 1) * s - 2 * p + k for n, k, s, p in
                        zip(size, self.kernel_size, self.stride, self.padding))
        if output_size is None:
            if min(default) < 1:
                raise ValueError(f"{name} got input of spatial size {size}: the output size "
                                 f"{default} would be empty")
            return default
        sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else None
        if sizes is not None and len(sizes) == 4:
            sizes = sizes[2:]
        if sizes is None or len(sizes) != 2 or any(
                isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in sizes):
            raise ValueError(f"{name}: output_size must be (H, W) or (N, C, H, W) ints, got "
                             f"{output_size!r}")
        for axis, (want, base, s) in enumerate(zip(sizes, default, self.stride)):
            if not base - s < want < base + s:
                raise ValueError(f"{name}: invalid output_size {tuple(output_size)} (dim {axis} "
                                 f"must be between {base - s} and {base + s}, exclusive, for "
                                 f"input of spatial size {size})")
        return int(sizes[0]), int(sizes[1])

    def _check_indices(self, x, indices) -> None:
        name = self._describe()
        if not (hasattr(indices, "shape") and hasattr(indices, "dtype")):
            raise TypeError(f"{name} expected indices as an integer array of x's shape "
                            f"{tuple(x.shape)}, got {type(indices).__name__}")
        if not self.backend.owns(indices):
            raise DeviceError(f"{name}: x is on {self.backend.device!r} but indices are on "
                              f"{device_of(indices)!r}")
        kind = dtype_name(indices.dtype)
        if not kind.startswith(("int", "uint")):
            raise TypeError(f"{name} expected integer indices (int64, as MaxPool2d's "
                            f"return_indices gives), got {kind}")
        if tuple(indices.shape) != tuple(x.shape):
            raise ValueError(f"{name}: indices of shape {tuple(indices.shape)} do not match x "
                             f"of shape {tuple(x.shape)}; expected the same shape")

    def extra_repr(self) -> str:
        return window_repr(self.kernel_size, self.stride, self.padding)
