"""Upsample: nearest-neighbour resizing of (N, C, H, W) images."""
from __future__ import annotations

import numbers

import numpy as np

from .pooling import _SeparableResample2d


class Upsample(_SeparableResample2d):
    """Nearest-neighbour resize, as ``torch.nn.Upsample(size, scale_factor, mode='nearest')``.

    Give either ``size`` (an int or an (OH, OW) pair) or ``scale_factor`` (a positive
    number or a pair; the output is ``floor(H * scale)`` rows). Output pixel i reads input
    ``min(floor(i * r), H - 1)`` with ``r = 1/scale_factor`` (or ``H/OH`` when ``size`` is
    given), computed in float32 as PyTorch does, so fractional factors pick the same pixels
    (and, as PyTorch, an output exactly twice the input reads ``i // 2`` whatever the factor).
    The resize is ``A_h @ x @ A_w.T`` with one-hot rows in A; backward sums each output
    gradient into its source pixel (``A_h.T @ dy @ A_w``). Only ``mode='nearest'``.
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.mode = mode
        self.size = None if size is None else _two("size", size, integer=True)
        self.scale_factor = None if scale_factor is None else _two("scale_factor", scale_factor,
                                                                   integer=False)

    def _axis_matrix(self, axis, in_size):
        if self.size is not None:
            out = self.size[axis]
            ratio = np.float32(in_size) / np.float32(out)
        else:
            out = int(np.floor(in_size * self.scale_factor[axis]))
            ratio = np.float32(1.0 / self.scale_factor[axis])
        if out < 1:
            raise ValueError(f"{self._describe()}: an input of size {in_size} along "
                             f"{'HW'[axis]} gives an empty output")
        if out == in_size:
            return None
        if out == 2 * in_size:  # PyTorch's shortcut, whatever the factor: i // 2
            source = np.arange(out) // 2
        else:
            source = np.minimum(np.floor(np.arange(out, dtype=np.float32) * ratio)
                                .astype(np.int64), in_size - 1)
        return (source[:, None] == np.arange(in_size)[None, :]).astype(np.float64)

    def extra_repr(self) -> str:
        if self.size is not None:
            return f"size={self.size}, mode={self.mode!r}"
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


def _two(name: str, value, integer: bool) -> tuple:
    """A number or a pair -> a pair of positive numbers (ints when ``integer``)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    kind = numbers.Integral if integer else numbers.Real
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, kind) or v <= 0
                             for v in pair):
        what = "a positive int" if integer else "a positive number"
        raise ValueError(f"Upsample: {name} must be {what} or a pair of them, got {value!r}")
    return tuple(int(v) if integer else float(v) for v in pair)
