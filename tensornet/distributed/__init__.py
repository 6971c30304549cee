"""Data-parallel training across processes and machines on MPI (mpi4py), NCCL for GPUs.

    # mpiexec -n 2 python train.py
    comm = tn.distributed.init()                     # rank, size, local_rank
    model = tn.distributed.DataParallel(model, comm)  # gradients averaged in backward
    loader = tn.data.DataLoader(train, 64, shuffle=True, seed=0, shard=comm.shard)
    tn.fit(model, loss_fn, opt, loader, epochs=5)    # global figures, rank 0 prints

Install with ``pip install 'tensornet[mpi]'`` (mpi4py and MPICH, which brings ``mpiexec``).
Importing this package never imports mpi4py: ``init()`` does.
"""
from tensornet.backends import parse_device

from .comm import (INSTALL_HINT, Communicator, abort_if_distributed, blas_threads_for, init,
                   set_blas_threads, world)
from .data_parallel import DataParallel, PeerFailureError


def rng_states(comm: Communicator) -> list:
    """Every rank's ``tn.get_rng_state()``, in rank order (collective: call it on every
    rank). For a checkpoint written by rank 0 alone: ``save_checkpoint(...,
    rng_per_rank=rng_states(comm))`` lets ``load_checkpoint`` give each rank back its own
    random streams (Dropout masks, augmentations) instead of rank 0's. ``fit``'s
    ``ModelCheckpoint`` does this itself."""
    from tensornet.random import get_rng_state
    return comm.allgather(get_rng_state())


def device_for(comm: Communicator, device: str) -> str:
    """One GPU per rank on each host: ``"cuda"`` becomes ``"cuda:<local_rank>"``; any
    other device (``"cpu"``, an explicit ``"cuda:N"``) is returned as given."""
    if isinstance(device, str) and comm.size > 1 and ":" not in device \
            and parse_device(device).startswith("cuda:"):
        return f"cuda:{comm.local_rank}"
    return device


__all__ = ["init", "world", "Communicator", "DataParallel", "PeerFailureError", "device_for",
           "rng_states",
           "abort_if_distributed", "blas_threads_for", "set_blas_threads", "INSTALL_HINT"]
