"""Reshaping layers: Flatten, Unflatten, PixelShuffle and PixelUnshuffle."""
from __future__ import annotations

import math

from .module import Module


class Flatten(Module):
    """Collapse dims ``start_dim..end_dim`` into one: ``(N, C, H, W)`` -> ``(N, C*H*W)``.

    Both dims must name axes of the input (as PyTorch): a 1-D input has no axis 1 to
    flatten from. Caches the input shape."""

    _cache_attrs = ("_shape",)

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
            if isinstance(dim, bool) or not isinstance(dim, int):
                raise TypeError(f"Flatten: {name} must be an int, got {dim!r}")
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        self._accept_floating(x)
        shape = tuple(x.shape)
        rank = len(shape)
        needed = max(d + 1 if d >= 0 else -d for d in (self.start_dim, self.end_dim))
        if rank < needed:
            raise ValueError(f"{self._describe()} got input of shape {shape}; flattening axes "
                             f"{self.start_dim}..{self.end_dim} needs at least {needed} dims")
        start, end = self.start_dim % rank, self.end_dim % rank
        if start > end:
            raise ValueError(f"{self._describe()} cannot flatten an input of shape {shape}: "
                             f"start_dim comes after end_dim")
        merged = math.prod(shape[start:end + 1])
        self._shape = shape
        return self.backend.xp.reshape(x, shape[:start] + (merged,) + shape[end + 1:])

    def backward(self, grad_output):
        return self.backend.xp.reshape(grad_output, self._require_cache(self._shape))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten(dim,
    unflattened_size)``: ``Unflatten(1, (C, H, W))`` turns (N, C*H*W) into (N, C, H, W),
    the inverse of ``Flatten``. One entry of ``unflattened_size`` may be -1 (inferred).
    Caches the input shape."""

    _cache_attrs = ("_shape",)

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"Unflatten: dim must be an int, got {dim!r}")
        sizes = tuple(unflattened_size) if isinstance(unflattened_size, (tuple, list)) else None
        if (not sizes or any(isinstance(s, bool) or not isinstance(s, int) or (s < 1 and s != -1)
                             for s in sizes) or sizes.count(-1) > 1):
            raise ValueError(f"Unflatten: unflattened_size must be a tuple of positive ints "
                             f"(one of them may be -1), got {unflattened_size!r}")
        self.dim, self.unflattened_size = dim, sizes

    def forward(self, x):
        self._accept_floating(x)
        shape = tuple(x.shape)
        if not -len(shape) <= self.dim < len(shape):
            raise ValueError(f"{self._describe()} got input of shape {shape}: it has no axis "
                             f"{self.dim}")
        dim = self.dim % len(shape)
        sizes, known = self.unflattened_size, math.prod(s for s in self.unflattened_size
                                                        if s != -1)
        if -1 in sizes and shape[dim] % known == 0:
            sizes = tuple(shape[dim] // known if s == -1 else s for s in sizes)
        if math.prod(sizes) != shape[dim]:
            raise ValueError(f"{self._describe()} got input of shape {shape}: axis {dim} has "
                             f"{shape[dim]} values, which do not split into "
                             f"{self.unflattened_size}")
        self._shape = shape
        return self.backend.xp.reshape(x, shape[:dim] + sizes + shape[dim + 1:])

    def backward(self, grad_output):
        return self.backend.xp.reshape(grad_output, self._require_cache(self._shape))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class PixelShuffle(Module):
    """``torch.nn.PixelShuffle(upscale_factor)``: (N, C * r^2, H, W) -> (N, C, H * r, W * r),
    each group of r^2 channels spread over an r x r block of pixels (Shi et al. 2016, the
    sub-pixel convolution). A reshape and a transpose; backward is the inverse
    (``PixelUnshuffle``'s). Caches nothing."""

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = _factor(type(self).__name__, "upscale_factor", upscale_factor)

    def forward(self, x):
        self._accept_floating(x, ndim=4, expected="(N, C * r^2, H, W)")
        r, c = self.upscale_factor, x.shape[1]
        if c % (r * r):
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: its "
                             f"{c} channels are not a multiple of upscale_factor^2 = {r * r}")
        return _shuffle(self.backend.xp, x, r)

    def backward(self, grad_output):
        return _unshuffle(self.backend.xp, grad_output, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """``torch.nn.PixelUnshuffle(downscale_factor)``: (N, C, H * r, W * r) ->
    (N, C * r^2, H, W), the inverse of ``PixelShuffle``. Caches nothing."""

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = _factor(type(self).__name__, "downscale_factor",
                                        downscale_factor)

    def forward(self, x):
        self._accept_floating(x, ndim=4, expected="(N, C, H * r, W * r)")
        r = self.downscale_factor
        if x.shape[2] % r or x.shape[3] % r:
            raise ValueError(f"{self._describe()} got input of shape {tuple(x.shape)}: H and "
                             f"W must be multiples of downscale_factor = {r}")
        return _unshuffle(self.backend.xp, x, r)

    def backward(self, grad_output):
        return _shuffle(self.backend.xp, grad_output, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


def _factor(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


def _shuffle(xp, x, r: int):
    """(N, C r^2, H, W) -> (N, C, H r, W r): channel c * r^2 + i * r + j goes to pixel
    (h * r + i, w * r + j) of channel c."""
    n, c, h, w = x.shape
    c //= r * r
    y = xp.permute_dims(xp.reshape(x, (n, c, r, r, h, w)), (0, 1, 4, 2, 5, 3))
    return xp.reshape(y, (n, c, h * r, w * r))


def _unshuffle(xp, x, r: int):
    """The inverse of ``_shuffle``: (N, C, H r, W r) -> (N, C r^2, H, W)."""
    n, c, h, w = x.shape
    h, w = h // r, w // r
    y = xp.permute_dims(xp.reshape(x, (n, c, h, r, w, r)), (0, 1, 3, 5, 2, 4))
    return xp.reshape(y, (n, c * r * r, h, w))
