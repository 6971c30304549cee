"""Transforms: callables applied to a batch of inputs on its own device.

A transform takes an array of any backend and returns one on the same device, so the same
object normalises host data once (``x = norm(x)``) or every batch inside a DataLoader
(``DataLoader(..., transform=norm)``).
"""
from __future__ import annotations

import numpy as np

from tensornet.backends import dtype_name, get_backend


class Normalize:
    """``(x - mean) / std``, per channel (axis 1) or with scalars.

    ``mean`` and ``std`` are floats or sequences of length C for inputs ``(N, C, ...)``.
    Constants are kept in the input's dtype (float32 stays float32), which must be
    floating point (integer images would get truncated constants and wrap around).
    """

    def __init__(self, mean, std):
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(f"Normalize: mean and std must be scalars or 1-D sequences of the "
                             f"same length, got {self.mean.shape} and {self.std.shape}")
        if np.any(self.std <= 0) or not np.all(np.isfinite(self.std)):
            raise ValueError(f"Normalize: std must be positive and finite, got {self.std}")
        if not np.all(np.isfinite(self.mean)):
            raise ValueError(f"Normalize: mean must be finite, got {self.mean}")
        self._constants = {}

    @classmethod
    def from_data(cls, x, per_channel: bool = False, chunk: int = 4096) -> "Normalize":
        """Mean and std of host data ``x`` (over everything, or per channel = axis 1).

        Sums run in float64 over ``chunk`` samples at a time, so a float32 dataset never
        gets a full-size float64 copy.
        """
        x = np.asarray(x)
        if x.size == 0:
            raise ValueError(f"Normalize.from_data: x holds no values (shape {x.shape})")
        axes = tuple(i for i in range(x.ndim) if i != 1) if per_channel else None
        total = total_sq = 0.0
        for start in range(0, x.shape[0], chunk):
            part = x[start:start + chunk].astype(np.float64)
            total = total + part.sum(axis=axes)
            total_sq = total_sq + np.square(part).sum(axis=axes)
        count = x.size / (x.shape[1] if per_channel else 1)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
        return cls(mean, np.maximum(std, 1e-12))

    def __call__(self, x):
        backend = get_backend(x)
        if not dtype_name(x.dtype).startswith("float"):
            raise TypeError(f"Normalize expects floating-point input, got {dtype_name(x.dtype)}; "
                            f"convert it first (e.g. x.astype('float32') / 255)")
        if self.mean.size > 1 and (len(x.shape) < 2 or x.shape[1] != self.mean.size):
            raise ValueError(f"Normalize with {self.mean.size} channels got input of shape "
                             f"{tuple(x.shape)}; expected (N, {self.mean.size}, ...)")
        key = (backend.device, dtype_name(x.dtype), len(x.shape))
        if key not in self._constants:
            shape = (1, self.mean.size) + (1,) * (len(x.shape) - 2) if self.mean.size > 1 \
                else (1,) * len(x.shape)
            dt = dtype_name(x.dtype)
            mean = backend.asarray(self.mean.reshape(shape).astype(dt))
            inv_std = backend.asarray((1.0 / self.std).reshape(shape).astype(dt))
            self._constants[key] = (mean, inv_std)
        mean, inv_std = self._constants[key]
        return (x - mean) * inv_std

    def state(self) -> dict:
        """JSON-friendly parameters (stored in checkpoint configs)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, *transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"
