"""Flatten."""
from __future__ import annotations

import math

from .module import Module


class Flatten(Module):
    """Collapse dims ``start_dim..end_dim`` into one: ``(N, C, H, W)`` -> ``(N, C*H*W)``.

    Caches the input shape."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._shape = None

    def forward(self, x):
        self._follow_input_device(x, require_array=True)
        shape = tuple(x.shape)
        start = self.start_dim % len(shape)
        end = self.end_dim % len(shape)
        if start > end:
            raise ValueError(f"{self._describe()} cannot flatten an input of shape {shape}")
        merged = math.prod(shape[start:end + 1])
        self._shape = shape
        return self.backend.xp.reshape(x, shape[:start] + (merged,) + shape[end + 1:])

    def backward(self, grad_output):
        return self.backend.xp.reshape(grad_output, self._require_cache(self._shape))

    def clear_cache(self) -> None:
        self._shape = None

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
