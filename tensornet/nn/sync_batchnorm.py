"""SyncBatchNorm: batch normalization whose statistics span every rank (issue 18).

In training, the per-channel mean and variance are those of the global batch (all ranks'
inputs together), and so are the two sums the input gradient needs: with DataParallel a
model trains exactly as one process would with the global batch. Without a communicator
of more than one rank (no ``tensornet.distributed.init()``, or size 1) it is BatchNorm.
Eval mode uses the running estimates, as BatchNorm does, or with
``track_running_stats=False`` this rank's batch statistics (as PyTorch): no communication.
"""
from __future__ import annotations

from . import functional as F
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, _BatchNorm


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over x (N, C, ...) (2 to 5 axes) with statistics over all ranks.

    Args are BatchNorm's, plus ``comm``: a ``tensornet.distributed.Communicator``
    (default: the one ``tensornet.distributed.init()`` returned, looked up at each call).
    Each training forward costs three small all-reduces (the counts, the sums, the squared
    deviations) and each backward one (and DataParallel's backward one more of 8 bytes
    before it, where the ranks agree that every rank's loss was finite); weight and bias
    gradients stay this rank's own, for DataParallel to average. Inside
    ``DataParallel.no_sync()`` it still communicates (as PyTorch's): each micro-batch is
    normalised over all ranks' micro-batches, so every rank must run as many. Caches what
    BatchNorm caches.
    """

    _layout = "(N, {0}, ...)"
    _ndims = (2, 3, 4, 5)
    _cache_attrs = _BatchNorm._cache_attrs + ("_global_count",)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, comm=None,
                 device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.comm = comm  # (_global_count: elements per channel over all ranks, for backward)

    @property
    def graph_unsafe_reason(self) -> str | None:
        """Training over several ranks all-reduces the statistics through MPI on the host,
        which a CUDA graph cannot capture; otherwise as BatchNorm."""
        if self.training and self._communicator() is not None:
            return ("its batch statistics are all-reduced over the ranks through MPI on the "
                    "host every step")
        return super().graph_unsafe_reason

    def _communicator(self):
        comm = self.comm
        if comm is None:
            from tensornet.distributed import world

            comm = world()
        return comm if comm is not None and comm.size > 1 else None

    def _batch_normalize(self, x, axes, count: int):
        # Eval with track_running_stats=False normalises with this rank's own batch, as
        # PyTorch's SyncBatchNorm: no collective, so ranks may evaluate different numbers
        # of batches (shard_tail="uneven").
        comm = self._communicator() if self.training else None
        self._global_count = None
        if comm is None:
            return super()._batch_normalize(x, axes, count)
        # The count that must exceed one is the global one: a rank may hold a single sample
        # (PyTorch alike), and every rank sees the same total, so all raise or none.
        total = int(comm.sum([count])[0])
        self._require_values(x, total, f" over all {comm.size} ranks")
        self._global_count = total
        return (*F.normalize(x, axes, self.eps, allreduce=comm.allreduce_, count=total),
                total)

    def _batch_normalize_backward(self, grad_output, xhat, scale, axes, sums_out):
        if self._global_count is None:
            return super()._batch_normalize_backward(grad_output, xhat, scale, axes, sums_out)
        return F.normalize_backward(grad_output, xhat, scale, axes, sums_out=sums_out,
                                    allreduce=self._communicator().allreduce_,
                                    count=self._global_count)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, comm=None) -> Module:
        """``module`` with every BatchNorm1d/BatchNorm2d replaced by a SyncBatchNorm holding
        the same parameters and buffers (in place for children; returns the module, or
        its replacement when ``module`` itself is a BatchNorm)."""
        if isinstance(module, (BatchNorm1d, BatchNorm2d)):
            sync = cls(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats, comm=comm, device=module.backend,
                       dtype=module.dtype)
            if module.affine:
                sync.weight, sync.bias = module.weight, module.bias
            if module.track_running_stats:
                for name in ("running_mean", "running_var", "num_batches_tracked"):
                    sync.register_buffer(name, getattr(module, name))
            sync.train(module.training)
            return sync
        for name, child in list(module.named_children()):
            replaced = cls.convert_sync_batchnorm(child, comm)
            if replaced is not child:
                setattr(module, name, replaced)
        return module
