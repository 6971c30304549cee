"""The host all-reduce of ranks that all run on one machine, in an MPI-3 shared-memory
window (``MPI_Win_allocate_shared``) instead of ``MPI_Allreduce``.

MPICH's all-reduce copies each message through its own shared-memory cells; here every
rank writes its array once into a window all ranks map, and each rank sums one segment of
all of them (a reduce-scatter), so the array crosses memory fewer times. Arrays go through
in chunks of ``CHUNK_BYTES``, so the window ((ranks + 1) chunks: 1.5 MiB for two ranks)
stays in the cores' caches whatever the array's size. Measured on a 2-core Zen 5 VM with
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

Each call starts with every rank writing its array's size, dtype and place (below) beside
its slot, a barrier, and every rank comparing them: a mismatch raises on every rank. Then,
for one chunk of ``n`` elements, ``size`` ranks, rank ``r`` owning the segment
``[n*r//size, n*(r+1)//size)``:

1. every rank copies its chunk into its slot of the window; barrier;
2. every rank sums its segment over the slots in rank order (the same additions, in the
   same order, as one rank adding the arrays of ranks 0, 1, 2...), multiplies it by the
   call's ``scale`` if any (DataParallel's 1 / ranks), and writes it into its own array
   and into the window's result area; barrier;
3. every rank copies the other segments of the result into its array.

Every rank ends with the same bits. The next chunk's step 1 writes only the slots, which
nobody reads after the second barrier, and its step 2 writes the result area only after
its first barrier, which a rank reaches once it has finished step 3: two barriers a chunk.
The sizes of the next call are written after a rank's last barrier of this one, by which
time every rank has compared this call's. The barriers are MPI's, on the world
communicator, so the collective watchdog and MPI's own failure handling see them as any
other collective.

Used for float arrays of at least ``MIN_BYTES`` when every rank is on this host (below
that, MPI's small-message path is as fast). ``TENSORNET_ALLREDUCE=mpi`` turns it off. The
window is allocated (collectively) at the first such call; all ranks reduce the same
arrays in the same order, so they get there together.

Arrays that already live in shared memory skip the copies. ``share(nbytes)`` (collective)
gives each rank a block of a window every rank maps (freed by a later ``share`` once no
rank holds an array of it); ``DataParallel`` puts the gradients there (the optimizer's
flat gradient buffer then adopts that memory, ``optim/flat.py``).
An array inside such a block, at the same offset on every rank, is reduced where it lies:
after one barrier each rank sums its segment of the ranks' arrays in rank order, scales
it, and writes it into every rank's array; a second barrier ends the call. The additions
and the bits are those of the chunked path. Measured with ``python -m benchmarks.allreduce``
on a 2-core Intel VM (2026-12-03, two ranks): 68 us for 1 MiB in place, against 206-211
through the chunks and 174-199 for ``MPI_Allreduce``; 2.3-2.6x faster than MPI from
1 MiB to 16 MiB. (On that VM the chunked path was slower than MPI at every size,
0.56-0.94x, where the Zen 5 VM above measured it faster.) In training, the benchmark
MLP's gradient average took 137 instead of 280 us a step, and two ranks trained 1.73x
as many samples/s as one instead of 1.61x (``benchmarks/results/issues-vm-2026-12-03``).
Arrays in shared memory on some ranks only take the chunked path on all (the exchange of
sizes, dtypes and places that starts every call tells).
"""
from __future__ import annotations

import os
import weakref

import numpy as np

from tensornet.optim.flat import address

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
        # (size, 4) int64 in the window: each rank's array bytes, dtype number, and the
        # shared block and byte offset it lies at (-1, -1: its own memory)
        self._headers = None
        # share()'s: (window, every rank's block as a uint8 array, a weak reference to the
        # array whose memoryview share() returned: dead once nothing made from it is left)
        self._blocks = []
        self.in_place_calls = 0  # all-reduces that summed arrays where they lie
        self._scratch = None  # a private chunk for ranks past 1 summing in place

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
        place = self._place_of(flat)
        self._headers[self.rank] = (flat.nbytes, flat.dtype.num) + place
        self._barrier(self._blocks[place[0]][0] if place[0] >= 0 else None)
        if (self._headers[:, :2] != self._headers[self.rank, :2]).any():
            self._raise_mismatch()
        if place[0] >= 0 and (self._headers[:, 2:] == place).all():
            self._reduce_in_place(flat, place, scale)
            self.in_place_calls += 1
            return array
        step = CHUNK_BYTES // flat.itemsize
        for start in range(0, flat.shape[0], step):
            self._reduce_chunk(flat[start:start + step], scale)
        return array

    def can_share(self, nbytes: int) -> bool:
        """Whether a ``share(nbytes)`` block for every rank fits twice over in the free
        space of ``/dev/shm``, where MPICH maps its windows: containers often give it only
        64 MiB, and a window MPI cannot map would stop the program. True without a
        ``/dev/shm`` (MPI then maps files elsewhere)."""
        try:
            stats = os.statvfs("/dev/shm")
        except (OSError, AttributeError):
            return True
        return 2 * nbytes * self.size <= stats.f_bavail * stats.f_frsize

    def share(self, nbytes: int) -> memoryview:
        """A zeroed block of ``nbytes`` (a writable memoryview) in a new window that every
        rank maps, for arrays that ``allreduce_`` then sums where they lie (collective:
        every rank asks for the same size, in the same order). First frees the windows of
        earlier blocks that no rank still holds an array of (a dropped model's gradients)."""
        if self._window is None:
            self._allocate()
        self._free_unused()
        # MPICH lays the ranks' blocks back to back: a size rounded up to a cache line
        # starts every rank's block on one (rank 0's is page-aligned), as grad_layout
        # assumes, and no two ranks' blocks share a line.
        padded = -(-nbytes // 64) * 64
        window = self._mpi.Win.Allocate_shared(padded, 1, comm=self._comm)
        blocks = [np.frombuffer(window.Shared_query(k)[0], dtype=np.uint8, count=nbytes)
                  for k in range(self.size)]
        window.Lock_all(self._mpi.MODE_NOCHECK)
        blocks[self.rank][...] = 0
        mine = blocks[self.rank][:]  # what every array made from the memoryview holds
        self._blocks.append((window, blocks, weakref.ref(mine)))
        self._barrier(window)  # no rank reads a block before its owner zeroed it
        return memoryview(mine)

    def _free_unused(self) -> None:
        """Free (collectively) the windows of the blocks no array on any rank still uses;
        every rank drops the same ones, so a kept block has one index on every rank."""
        if not self._blocks:
            return
        unused = np.array([ref() is None for _, _, ref in self._blocks], dtype=np.int32)
        self._comm.Allreduce(self._mpi.IN_PLACE, unused, op=self._mpi.MIN)
        kept = []
        for entry, free in zip(self._blocks, unused):
            if free:
                entry[0].Unlock_all()
                entry[0].Free()
            else:
                kept.append(entry)
        self._blocks = kept

    def _place_of(self, flat: np.ndarray) -> tuple[int, int]:
        """``(block, byte offset)`` of a C-contiguous ``flat`` inside one of this rank's
        shared blocks, else ``(-1, -1)``."""
        if not flat.flags.c_contiguous:
            return -1, -1
        start = address(flat)
        for index, (_, blocks, _) in enumerate(self._blocks):
            mine = blocks[self.rank]
            base = address(mine)
            if base <= start and start + flat.nbytes <= base + mine.nbytes:
                return index, start - base
        return -1, -1

    def _reduce_in_place(self, flat: np.ndarray, place, scale=None) -> None:
        """Every rank's array lies at ``place`` of its block (the first barrier is
        behind): sum this rank's segment of them, in rank order and in cache-sized pieces,
        into every rank's array."""
        index, offset = place
        n, size, rank = flat.shape[0], self.size, self.rank
        arrays = [block[offset:offset + flat.nbytes].view(flat.dtype)
                  for block in self._blocks[index][1]]
        lo, hi = n * rank // size, n * (rank + 1) // size
        step = CHUNK_BYTES // flat.itemsize
        # Ranks 0 and 1 sum into their own array (an operand of the first addition); the
        # others into a private piece of memory, as their own array is added later.
        scratch = None
        if rank >= 2:
            if self._scratch is None:
                self._scratch = np.empty(CHUNK_BYTES, dtype=np.uint8)
            scratch = self._scratch.view(flat.dtype)
        for start in range(lo, hi, step):
            stop = min(hi, start + step)
            total = arrays[rank][start:stop] if scratch is None else scratch[:stop - start]
            _rank_order_sum([a[start:stop] for a in arrays], total, scale)
            for k in range(size):
                if k != rank or scratch is not None:
                    np.copyto(arrays[k][start:stop], total)
        self._barrier(self._blocks[index][0])

    def _reduce_chunk(self, flat: np.ndarray, scale=None) -> None:
        """One chunk of an array in this rank's own memory (the sizes were compared)."""
        nbytes = flat.nbytes
        n, size, rank = flat.shape[0], self.size, self.rank
        slots = [self._view(k, nbytes, flat.dtype) for k in range(size)]
        result = self._view(size, nbytes, flat.dtype)
        bounds = [n * k // size for k in range(size + 1)]
        np.copyto(slots[rank], flat)
        self._barrier()
        lo, hi = bounds[rank], bounds[rank + 1]
        mine = flat[lo:hi]
        _rank_order_sum([slot[lo:hi] for slot in slots], mine, scale)
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
                 for k, (b, t) in enumerate(self._headers[:, :2])]
        raise ValueError(f"all-reduce: the ranks' arrays differ ({', '.join(parts)}); every "
                         f"rank must reduce an array of the same shape and dtype")

    def _view(self, index: int, nbytes: int, dtype) -> np.ndarray:
        start = index * CHUNK_BYTES
        return self._raw[start:start + nbytes].view(dtype)

    def _barrier(self, block_window=None) -> None:
        # Win_sync orders this rank's stores to the window before the barrier and its
        # loads after it: MPI-3's idiom for load/store access to a shared window from
        # inside a passive-target epoch (Lock_all). A call that reads or writes a shared
        # block syncs the block's window too.
        windows = (self._window,) if block_window is None else (self._window, block_window)
        for window in windows:
            window.Sync()
        self._comm.Barrier()
        for window in windows:
            window.Sync()

    def _allocate(self) -> None:
        """The window: a slot per rank and a result area, ``CHUNK_BYTES`` each, and each
        rank's array size and dtype, in one block on rank 0's side that every rank maps
        (collective)."""
        mpi = self._mpi
        chunks = CHUNK_BYTES * (self.size + 1)
        total = chunks + 32 * self.size  # then each rank's header: 4 int64
        window = mpi.Win.Allocate_shared(total if self.rank == 0 else 0, 1, comm=self._comm)
        memory, _ = window.Shared_query(0)
        window.Lock_all(mpi.MODE_NOCHECK)
        self._window = window
        self._raw = np.frombuffer(memory, dtype=np.uint8, count=total)
        self._headers = self._raw[chunks:].view(np.int64).reshape(self.size, 4)


def _rank_order_sum(parts: list, out: np.ndarray, scale=None) -> None:
    """``out = (parts[0] + parts[1] + parts[2] + ...) * scale``, added in rank order (the
    same bits on every rank and in both paths); ``out`` may be ``parts[0]`` or
    ``parts[1]``, never a later one (it would be overwritten before it is added)."""
    np.add(parts[0], parts[1], out=out)
    for part in parts[2:]:
        np.add(out, part, out=out)
    if scale is not None and scale != 1:
        np.multiply(out, scale, out=out)
