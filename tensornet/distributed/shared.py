"""The host all-reduce of ranks that all run on one machine, in an MPI-3 shared-memory
window (``MPI_Win_allocate_shared``) instead of ``MPI_Allreduce``.

MPICH's all-reduce copies each message through its own shared-memory cells; here every
rank writes its array once into a window all ranks map, and each rank sums one segment of
all of them (a reduce-scatter), so the array crosses memory fewer times. Arrays go through
in chunks of ``CHUNK_BYTES``, so the window ((ranks + 1) chunks: 1.5 MiB for two ranks)
stays in the cores' caches whatever the array's size. Measured on the 2-core VM with
``python -m benchmarks.allreduce`` (float32, medians of 400 calls after a barrier, four
runs; the ratio is ``MPI_Allreduce``'s time over this one's): two ranks, 0.94-1.07 at
64 KiB, 1.3-1.8 from 256 KiB to 4 MiB (the benchmark MLP's 960 KiB of gradients: 85-136
against 150-227 us), 1.0-1.3 at 16 MiB; three ranks on the two cores, 1.15 at 64 KiB and
1.8-2.6 from 128 KiB to 16 MiB. Chunks of 256 KiB or 1-4 MiB were slower at some of
these sizes; one pass per array was twice as slow as MPI at 16 MiB. In training,
``python -m benchmarks.distributed --mpi-allreduce`` (the MLP, five paired launches): two
ranks of batch 64 trained 5-15% more samples/s than with ``MPI_Allreduce`` in every pair;
two of batch 128, where the all-reduce is a smaller part of the step, -13% to +7% (median
+1.5%), within the VM's noise.

One chunk of ``n`` elements, ``size`` ranks, rank ``r`` owning the segment
``[n*r//size, n*(r+1)//size)``:

1. every rank copies its chunk into its slot of the window (with the first chunk, also its
   array's size and dtype, which every rank then compares: a mismatch raises on every
   rank); barrier;
2. every rank sums its segment over the slots in rank order (the same additions, in the
   same order, as one rank adding the arrays of ranks 0, 1, 2...), multiplies it by the
   call's ``scale`` if any (DataParallel's 1 / ranks), and writes it into its own array
   and into the window's result area; barrier;
3. every rank copies the other segments of the result into its array.

Every rank ends with the same bits. The next chunk's step 1 writes only the slots, which
nobody reads after the second barrier, and its step 2 writes the result area only after
its first barrier, which a rank reaches once it has finished step 3: two barriers a chunk.
The barriers are MPI's, on the world communicator, so the collective watchdog and MPI's
own failure handling see them as any other collective.

Used for float arrays of at least ``MIN_BYTES`` when every rank is on this host (below
that, MPI's small-message path is as fast). ``TENSORNET_ALLREDUCE=mpi`` turns it off. The
window is allocated (collectively) at the first such call; all ranks reduce the same
arrays in the same order, so they get there together.
"""
from __future__ import annotations

import os

import numpy as np

MIN_BYTES = 64 * 1024
CHUNK_BYTES = 512 * 1024
_FLOATS = frozenset("efdg")  # float16, float32, float64, long double (dtype.char)


def wanted(comm) -> bool:
    """Whether ``comm``'s host all-reduces should go through a shared window: more than
    one rank, all on this host, and not turned off by ``TENSORNET_ALLREDUCE=mpi``."""
    choice = os.environ.get("TENSORNET_ALLREDUCE", "").strip().lower()
    if choice not in ("", "shared", "mpi"):
        raise ValueError(f"TENSORNET_ALLREDUCE must be 'shared' (the default on one host) "
                         f"or 'mpi', got {choice!r}")
    return choice != "mpi" and comm.size > 1 and comm.local_size == comm.size


class SharedReducer:
    """In-place sum of host arrays over the ranks of ``mpi_comm`` (all on one host)."""

    def __init__(self, mpi_comm, mpi):
        self._comm, self._mpi = mpi_comm, mpi
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        self._window = None
        self._raw = None  # the window's bytes, as a NumPy uint8 array
        self._headers = None  # (size, 2) int64 in the window: each rank's bytes and dtype

    def handles(self, array: np.ndarray) -> bool:
        """True for a writeable, contiguous float array of at least ``MIN_BYTES`` (others
        go to ``MPI_Allreduce``, which also says what is wrong with a read-only or
        non-contiguous one, on every rank that passes one, before any rank waits)."""
        flags = array.flags
        return (array.dtype.char in _FLOATS and array.nbytes >= MIN_BYTES
                and flags.writeable and (flags.c_contiguous or flags.f_contiguous))

    def allreduce_(self, array: np.ndarray, scale: float | None = None) -> np.ndarray:
        """Sum ``array`` in place over the ranks (collective), times ``scale`` when given
        (applied to each segment right after its sum: the bits of ``array *= scale``
        after the sum, without that pass over the whole array); returns it. Raises
        ValueError on every rank, before any array changes, when the ranks' arrays differ
        in size or dtype (MPI_Allreduce reports that as a truncated message)."""
        flat = np.asarray(array).reshape(-1, order="A")  # a 1-D view, in memory order
        # (np.asarray: a subclass such as np.matrix would stay 2-D)
        if self._window is None:
            self._allocate()
        step = CHUNK_BYTES // flat.itemsize
        for start in range(0, flat.shape[0], step):
            self._reduce_chunk(flat[start:start + step], flat if start == 0 else None, scale)
        return array

    def _reduce_chunk(self, flat: np.ndarray, whole=None, scale=None) -> None:
        """One chunk; with ``whole`` (the first chunk) the ranks also compare the whole
        arrays' sizes and dtypes, each rank's written beside its slot."""
        nbytes = flat.nbytes
        n, size, rank = flat.shape[0], self.size, self.rank
        slots = [self._view(k, nbytes, flat.dtype) for k in range(size)]
        result = self._view(size, nbytes, flat.dtype)
        bounds = [n * k // size for k in range(size + 1)]
        np.copyto(slots[rank], flat)
        if whole is not None:
            self._headers[rank] = (whole.nbytes, whole.dtype.num)
        self._barrier()
        if whole is not None and (self._headers != self._headers[rank]).any():
            self._raise_mismatch()
        lo, hi = bounds[rank], bounds[rank + 1]
        mine = flat[lo:hi]
        np.add(slots[0][lo:hi], slots[1][lo:hi], out=mine)
        for k in range(2, size):
            np.add(mine, slots[k][lo:hi], out=mine)
        if scale is not None and scale != 1:
            np.multiply(mine, scale, out=mine)
        np.copyto(result[lo:hi], mine)
        self._barrier()
        for k in range(size):
            if k != rank:
                np.copyto(flat[bounds[k]:bounds[k + 1]], result[bounds[k]:bounds[k + 1]])

    def _raise_mismatch(self) -> None:
        """Every rank raises here together. The error means the program is wrong: catching
        it and reducing again at once could meet a slower rank still reading these sizes."""
        names = {np.dtype(t).num: np.dtype(t).name for t in "efdg"}
        parts = [f"rank {k} {int(b):,} bytes of {names.get(int(t), t)}"
                 for k, (b, t) in enumerate(self._headers)]
        raise ValueError(f"all-reduce: the ranks' arrays differ ({', '.join(parts)}); every "
                         f"rank must reduce an array of the same shape and dtype")

    def _view(self, index: int, nbytes: int, dtype) -> np.ndarray:
        start = index * CHUNK_BYTES
        return self._raw[start:start + nbytes].view(dtype)

    def _barrier(self) -> None:
        # Win_sync orders this rank's stores to the window before the barrier and its
        # loads after it: MPI-3's idiom for load/store access to a shared window from
        # inside a passive-target epoch (Lock_all).
        self._window.Sync()
        self._comm.Barrier()
        self._window.Sync()

    def _allocate(self) -> None:
        """The window: a slot per rank and a result area, ``CHUNK_BYTES`` each, and each
        rank's array size and dtype, in one block on rank 0's side that every rank maps
        (collective)."""
        mpi = self._mpi
        chunks = CHUNK_BYTES * (self.size + 1)
        total = chunks + 16 * self.size  # then (bytes, dtype number) per rank, int64
        window = mpi.Win.Allocate_shared(total if self.rank == 0 else 0, 1, comm=self._comm)
        memory, _ = window.Shared_query(0)
        window.Lock_all(mpi.MODE_NOCHECK)
        self._window = window
        self._raw = np.frombuffer(memory, dtype=np.uint8, count=total)
        self._headers = self._raw[chunks:].view(np.int64).reshape(self.size, 2)
