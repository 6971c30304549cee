"""NCCL all-reduce between the GPUs of a ``tensornet.distributed`` run (issue 18).

One NCCL communicator per (MPI communicator, GPU): rank 0 draws the NCCL unique id, MPI
broadcasts it, every rank joins with its own GPU. The sum runs in place on CuPy's current
stream, so nothing waits for the host. Used by ``CupyBackend.collective_allreduce``; when
NCCL is missing on any rank, every rank falls back to MPI through host memory (all ranks
must take the same path, or the collectives would not match) and rank 0 says so once; the
same when two ranks share a GPU, which NCCL refuses.

Not run on hardware yet: no GPU was available when this was written.
"""
from __future__ import annotations

import socket
import sys

from .base import dtype_name

_NOTICE_GIVEN = False


def _nccl_module():
    try:
        import cupy.cuda
        from cupy.cuda import nccl
    except ImportError:
        return None
    if not getattr(cupy.cuda, "nccl_enabled", True) or not getattr(nccl, "available", True):
        return None
    return nccl


def _fallback_notice(comm, reason: str) -> None:
    global _NOTICE_GIVEN
    if not _NOTICE_GIVEN and comm.rank == 0:
        print(f"tensornet.distributed: {reason}; GPU gradients are all-reduced by MPI through "
              f"host memory (slower). For GPU-to-GPU all-reduce, install NCCL where CuPy "
              f"finds it (CuPy's installation guide, 'Additional CUDA Libraries')",
              file=sys.stderr, flush=True)
    _NOTICE_GIVEN = True


def nccl_allreduce(backend, comm):
    """``reduce_(flat, scale=None)`` summing a CuPy array in place over NCCL (then
    multiplying it by ``scale`` when given), or None (after the one-time notice) when
    some rank cannot use NCCL. Collective: every rank calls it."""
    nccl = _nccl_module()
    if not comm.all(nccl is not None):
        _fallback_notice(comm, "NCCL is not available on every rank")
        return None
    gpus = comm.allgather((socket.gethostname(), backend.index))
    if len(set(gpus)) < len(gpus):  # NCCL refuses two ranks on one GPU
        _fallback_notice(comm, "some ranks share a GPU (start one rank per GPU)")
        return None
    types = {"float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
             "float64": nccl.NCCL_FLOAT64, "int64": nccl.NCCL_INT64}
    uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None)
    with backend._cuda_device:
        communicator = nccl.NcclCommunicator(comm.size, uid, comm.rank)
    stream = backend.xp.cuda.get_current_stream

    def reduce_(flat, scale=None):
        kind = types.get(dtype_name(flat.dtype))
        if kind is None or not flat.flags.c_contiguous:
            raise TypeError(f"NCCL all-reduce needs a contiguous array of {', '.join(types)}; "
                            f"got {dtype_name(flat.dtype)} of shape {tuple(flat.shape)}")
        with backend._cuda_device:
            communicator.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kind,
                                   nccl.NCCL_SUM, stream().ptr)
        if scale is not None and scale != 1:
            flat *= scale  # on the same stream, after the sum
        return flat

    return reduce_
