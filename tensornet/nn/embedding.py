"""Embedding: a lookup table of learnable vectors indexed by integers."""
from __future__ import annotations

import numpy as np

from tensornet.backends import SyncPolicy, dtype_name

from . import functional as F
from . import init
from .linear import _positive_int
from .module import Module


class Embedding(Module):
    """``weight[indices]``, as ``torch.nn.Embedding(num_embeddings, embedding_dim,
    padding_idx=None)``.

    Input: integer indices of any shape (N, ...) in ``[0, num_embeddings)``; output
    (N, ..., embedding_dim). ``weight`` (num_embeddings, embedding_dim) starts N(0, 1), as
    PyTorch. The row ``padding_idx`` (negative counts from the end) starts at zero and gets
    no gradient, so it stays a constant padding vector.

    Forward caches the indices. Backward adds each output gradient row into its index's
    row of ``weight.grad`` (repeated indices accumulate, through ``F.scatter_add``)
    and returns None: integer indices have no gradient.
    """

    _cache_attrs = ("_indices",)

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 *, device=None, dtype=None):
        super().__init__(device=device, dtype=dtype)
        self.num_embeddings = _positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _positive_int("Embedding", "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if (isinstance(padding_idx, bool) or not isinstance(padding_idx, int)
                    or not -self.num_embeddings <= padding_idx < self.num_embeddings):
                raise ValueError(f"Embedding: padding_idx must be an int in "
                                 f"[-{self.num_embeddings}, {self.num_embeddings}), got "
                                 f"{padding_idx!r}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = self.new_parameter(np.zeros((self.num_embeddings, self.embedding_dim)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx, ...] = 0.0

    def forward(self, indices):
        """indices (N, ...) integers -> (N, ..., embedding_dim); caches the indices."""
        self._check_input(indices, expected="integer indices", dtype=None)
        if not dtype_name(indices.dtype).startswith(("int", "uint")):
            raise TypeError(f"{self._describe()} expected integer indices, got "
                            f"{dtype_name(indices.dtype)}; convert with astype('int64')")
        xp = self.backend.xp
        if self.backend.sync_policy is SyncPolicy.EVERY_STEP and not F.labels_in_range(indices,
                                                                        self.num_embeddings):
            raise ValueError(f"{self._describe()}: indices must be in [0, "
                             f"{self.num_embeddings - 1}]; got indices from "
                             f"{int(xp.min(indices))} to {int(xp.max(indices))}")
        self._indices = indices
        rows = xp.take(self.weight.data, xp.reshape(indices, (-1,)), axis=0)
        return xp.reshape(rows, tuple(indices.shape) + (self.embedding_dim,))

    def backward(self, grad_output):
        """grad_output (N, ..., embedding_dim) -> None; adds into ``weight.grad``."""
        indices = self._require_cache(self._indices)
        if not self.weight.requires_grad:
            return None
        xp = self.backend.xp
        dim = self.embedding_dim
        flat = xp.astype(xp.reshape(indices, (-1, 1)), xp.int64)
        grad = xp.reshape(grad_output, (-1, dim))
        if self.padding_idx is not None:
            grad = xp.where(flat == self.padding_idx, 0.0, grad)
        columns = self.backend.asarray(np.arange(dim, dtype=np.int64))
        positions = flat * dim + xp.reshape(columns, (1, dim))
        dw = self.weight.grad_buffer()  # the optimizer's flat buffer when there is one
        if dw is None:
            dw = self.backend.zeros(self.weight.shape, grad.dtype)
        else:
            dw[...] = 0.0
        self.weight.accumulate_grad(F.scatter_add(dw, positions, grad))
        return None

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}"
        return text if self.padding_idx is None else text + f", padding_idx={self.padding_idx}"
