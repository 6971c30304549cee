"""Gradient buckets: the gradients of many parameters averaged over the ranks in a few
large flat all-reduces instead of one per parameter (latency, not bandwidth, dominates
small messages).

Parameters are grouped in order, per device and dtype, into buckets of about
``bucket_bytes``. A bucket whose gradients already lie back to back in one buffer (as
when an optimizer keeps a group's gradients flat) is reduced in that buffer directly;
otherwise the gradients are copied into the bucket's own flat buffer, reduced there and
copied back into the gradient arrays (in place, so whatever storage they live in stays).
"""
from __future__ import annotations

import numpy as np

from tensornet.backends import dtype_name, get_backend
from tensornet.optim.flat import contiguous_span

DEFAULT_BUCKET_BYTES = 25 * 2**20  # PyTorch DDP's bucket_cap_mb


class Bucket:
    """Parameters of one device and dtype whose gradients are reduced together."""

    def __init__(self, params, backend, dtype: str):
        self.params, self.backend, self.dtype = list(params), backend, dtype
        self.sizes = [p.size for p in self.params]
        self.total = sum(self.sizes)
        self.buffer = None  # allocated at the first reduction that needs a copy
        self._span = (None, None)  # (the gradient arrays, the flat view they make up)

    def reduce_mean_(self, comm) -> None:
        """Average the gradients over ``comm``'s ranks (every gradient is set)."""
        grads = [p.grad for p in self.params]
        flat = self._flat_view(grads)
        if flat is None:
            flat = self._gather(grads)
        comm.allreduce_(flat, scale=1.0 / comm.size)
        if flat is self.buffer:
            self._scatter(grads)

    def _flat_view(self, grads):
        """``contiguous_span(grads)``, remembered while the gradient arrays are the same
        objects (an array's memory never moves, and finding the span costs ~50 us a step)."""
        known, flat = self._span
        if known is None or any(a is not b for a, b in zip(known, grads)):
            flat = contiguous_span(grads, self.total)
            self._span = (grads, flat)
        return flat

    def _gather(self, grads):
        xp = self.backend.xp
        if self.buffer is None:
            self.buffer = self.backend.empty((self.total,), self.dtype)
        offset = 0
        for grad, n in zip(grads, self.sizes):
            self.buffer[offset:offset + n] = xp.reshape(grad, (-1,))
            offset += n
        return self.buffer

    def _scatter(self, grads) -> None:
        xp = self.backend.xp
        offset = 0
        for grad, n in zip(grads, self.sizes):
            grad[...] = xp.reshape(self.buffer[offset:offset + n], tuple(grad.shape))
            offset += n


def make_buckets(params, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list[Bucket]:
    """Consecutive parameters of the same device and dtype, about ``bucket_bytes`` each
    (a parameter larger than that gets a bucket of its own)."""
    buckets, current, key, used = [], [], None, 0
    for param in params:
        backend = get_backend(param.data)
        this = (backend, dtype_name(param.data.dtype))
        nbytes = param.size * np.dtype(this[1]).itemsize
        if current and (this != key or used + nbytes > bucket_bytes):
            buckets.append(Bucket(current, *key))
            current, used = [], 0
        current.append(param)
        key, used = this, used + nbytes
    if current:
        buckets.append(Bucket(current, *key))
    return buckets
