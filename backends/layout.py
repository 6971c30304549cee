"""Memory layouts of NumPy arrays: which axis order an array is contiguous in, and new
arrays laid out like another (a Conv2d output is a (N, C, H, W) view of (C, N, H, W)
memory; the layers after it keep that order, so their passes stream through memory)."""
from __future__ import annotations

import numpy as np


def memory_order(x) -> tuple:
    """x's axes from the outermost in memory to the innermost (largest stride first)."""
    return tuple(sorted(range(x.ndim), key=lambda axis: -abs(x.strides[axis])))


def empty_in_order_of(like, shape, dtype) -> np.ndarray:
    """An empty array of ``shape`` laid out in memory in the axis order of ``like``
    (e.g. a (N, C, H, W) view of a (C, N, H, W) buffer gives the same)."""
    order = memory_order(like)
    out = np.empty([shape[axis] for axis in order], dtype=dtype)
    return out.transpose(np.argsort(order))


def flat_in_order_of(x, like):
    """A 1-D view of ``x`` listing its elements in the memory order of ``like`` (both of
    one shape), or None when ``x`` is not contiguous in that order."""
    view = x.transpose(memory_order(like))
    if not view.flags.c_contiguous:
        return None
    return view.reshape(-1)
