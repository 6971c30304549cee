"""Flatten."""
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
