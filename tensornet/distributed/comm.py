"""The communicator: which process this is among how many, and the collectives that
data-parallel training needs, on MPI's world communicator (mpi4py).

``init()`` is called once per process, on every rank. Without ``mpiexec`` (MPI's singleton
start) it returns a communicator of size 1 whose collectives do nothing. Under ``mpiexec``
with more than one rank it also

- limits each rank's BLAS threads to (cores on the host / ranks on the host), unless the
  user set a thread count (``threads=``, OMP/OPENBLAS/MKL_NUM_THREADS or an earlier
  ``tn.set_num_threads``): two ranks with default threads on two cores run ten times
  slower than one (oversubscription);
- when every rank runs on this host, sums large host arrays in an MPI-3 shared-memory
  window instead of with ``MPI_Allreduce`` (``shared.py``; ``TENSORNET_ALLREDUCE=mpi``
  turns that off);
- makes an uncaught exception on any rank abort every rank (``MPI_Abort``) after printing
  it, instead of leaving the others waiting in a collective for ever;
- watches the collectives: a rank that has waited in one for longer than ``timeout``
  seconds (default 30 minutes, as PyTorch's process groups) says which and ends every rank,
  so a hung rank (a deadlock, an endless loop, a stalled file system) does not leave the
  others waiting for ever either;
- tells the other ranks when this one leaves the program (``sys.exit``, the end of its
  script): a rank waiting in a collective that the leaver can no longer join says so and
  ends every rank within seconds, instead of at the timeout (a rank that leaves normally
  waits in ``MPI_Finalize`` for the others, so its own exit would end nothing);
- notices ranks that wait in different collectives (one in fit's all-gather, the other in
  a gradient all-reduce, after a loop that took more steps on one rank): neither can ever
  finish, so after a few seconds every rank is ended with both calls named, instead of
  at the timeout.

The watchdog that does the last three lives in ``watchdog.py``.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time

import numpy as np

from tensornet.backends import get_backend
from tensornet.backends import threads as threads_module

from . import shared, watchdog

INSTALL_HINT = ("pip install 'tensornet[mpi]' (mpi4py and the MPICH library, which brings "
                "mpiexec)")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS")

_world = None        # the Communicator init() returned
_thread_limit = None  # threadpoolctl's limiter: the limit lasts as long as this object
DEFAULT_TIMEOUT = 1800.0  # seconds a rank may wait in one collective (PyTorch's default)


class Communicator:
    """``rank`` of ``size`` processes; ``local_rank`` of ``local_size`` on this host.

    Collectives must be called by every rank, in the same order. Built by ``init()``;
    ``Communicator()`` alone is the single-process one (size 1, collectives are no-ops).
    """

    def __init__(self, mpi_comm=None, mpi=None, local_rank: int = 0, local_size: int = 1):
        self._comm, self._mpi = mpi_comm, mpi
        self.rank = int(mpi_comm.Get_rank()) if mpi_comm is not None else 0
        self.size = int(mpi_comm.Get_size()) if mpi_comm is not None else 1
        self.local_rank, self.local_size = int(local_rank), int(local_size)
        self._reducers: dict = {}  # backend -> its in-place all-reduce
        self._shared = None  # shared.SharedReducer when every rank runs on this host
        # (what, since when, its number, the calling thread) while in a collective: the
        # watchdog reads it; collectives are numbered in call order, alike on every rank
        self._waiting = None
        self._made = 0  # collectives called so far
        self._numbered = True  # False once a collective raised (see _collective)
        self._timeout = None  # seconds the watchdog allows one collective (None: no limit)
        self._watchdog = None
        self._notices = None  # a duplicate of the world communicator for exit notices

    @property
    def timeout(self) -> float | None:
        """Seconds a rank may wait in one collective before every rank is ended (None: no
        limit). Set it with ``init(timeout=...)``, on the first call or a later one."""
        return self._timeout

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, size)``, as ``DataLoader(shard=...)`` takes it."""
        return self.rank, self.size

    def __repr__(self) -> str:
        return (f"Communicator(rank={self.rank}, size={self.size}, "
                f"local_rank={self.local_rank}, local_size={self.local_size})")

    # ------------------------------------------------------------------ arrays
    def allreduce_(self, array, scale: float | None = None):
        """Sum ``array`` (contiguous, of any backend) in place over all ranks, then multiply
        it by ``scale`` when given (``scale=1 / comm.size``: the mean); returns it. Host
        arrays go through MPI, CuPy arrays through NCCL where available."""
        if self.size == 1:
            if scale is not None and scale != 1:
                array *= scale
            return array
        backend = get_backend(array)
        reduce_ = self._reducers.get(backend)
        if reduce_ is None:
            reduce_ = self._reducers[backend] = backend.collective_allreduce(self)
        return reduce_(array, scale)

    def allreduce_host_(self, array: np.ndarray, scale: float | None = None) -> np.ndarray:
        """Sum a contiguous NumPy array in place over all ranks, then multiply it by
        ``scale`` when given; returns it. Large float arrays of ranks that all run on this
        host go through a shared-memory window (``shared.py``, which scales each segment
        as it sums it: the same bits, one pass over the array fewer), everything else
        through ``MPI_Allreduce``."""
        if self.size > 1:
            # the size in the name: ranks reducing different sizes (a program error, which
            # MPI may never report) are in different collectives for the watchdog
            what = f"an all-reduce of {array.nbytes:,} bytes"
            window = self._shared
            if window is not None and window.handles(array):
                self._collective(what, window.allreduce_, array, scale)
                return array
            self._collective(what, self._comm.Allreduce, self._mpi.IN_PLACE, array,
                             op=self._mpi.SUM)
        if scale is not None and scale != 1:
            array *= scale
        return array

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over ranks of a few host numbers (a float64 copy)."""
        return self.allreduce_host_(np.array(values, dtype=np.float64, ndmin=1))

    def all(self, flag: bool) -> bool:
        """True when ``flag`` is true on every rank."""
        return int(self.sum([0.0 if flag else 1.0])[0]) == 0

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is true on some rank."""
        return int(self.sum([1.0 if flag else 0.0])[0]) > 0

    def bcast_(self, array, root: int = 0):
        """Overwrite ``array`` (any backend) with ``root``'s values; returns it."""
        self.bcast_many_([array], root)
        return array

    def bcast_many_(self, arrays, root: int = 0) -> None:
        """``bcast_`` of several arrays (any backends and dtypes) in one message: their
        bytes packed on the host, one broadcast, unpacked in place (a model's buffers)."""
        arrays = list(arrays)
        if self.size == 1 or not arrays:
            return
        hosts = [np.ascontiguousarray(get_backend(a).to_numpy(a)) for a in arrays]
        flat = [h.reshape(-1).view(np.uint8) for h in hosts]
        packed = flat[0] if len(flat) == 1 else np.concatenate(flat)  # one: no copy
        self._collective("a broadcast", self._broadcast, self._comm.Bcast, packed, root=root)
        start = 0
        for array, host in zip(arrays, hosts):
            values = packed[start:start + host.nbytes].view(host.dtype).reshape(host.shape)
            array[...] = get_backend(array).asarray(values)
            start += host.nbytes

    # ------------------------------------------------------------------ Python objects
    # Pickled and unpickled outside the collective (with mpi4py's pickler): an object that
    # cannot be pickled raises before any rank's call is counted, and a long (un)pickling
    # is work between collectives, not a wait in one (see _collective).
    def bcast(self, obj, root: int = 0):
        if self.size == 1:
            return obj
        data = self._mpi.pickle.dumps(obj) if self.rank == root else None
        data = self._collective("a broadcast", self._broadcast, self._comm.bcast, data,
                                root=root)
        return self._mpi.pickle.loads(data)  # on the root too: a copy, as mpi4py's bcast

    def allgather(self, obj) -> list:
        if self.size == 1:
            return [obj]
        data = self._mpi.pickle.dumps(obj)
        return [self._mpi.pickle.loads(d)
                for d in self._collective("an all-gather", self._comm.allgather, data)]

    def barrier(self) -> None:
        if self.size > 1:
            self._collective("a barrier", self._comm.Barrier)

    def _collective(self, what: str, call, *args, **kwargs):
        """``call(*args, **kwargs)``, watched by the watchdog as ``what``. A call that raises
        may or may not have taken part on this rank, so from then on the ranks' numbers of
        calls may differ by one in a program that goes on: the watchdog stops comparing
        them (``_numbered``)."""
        self._made += 1
        self._waiting = (what, time.monotonic(), self._made, threading.get_ident())
        try:
            return call(*args, **kwargs)
        except BaseException:
            self._numbered = False
            raise
        finally:
            self._waiting = None

    def _broadcast(self, call, *args, **kwargs):
        """An MPI broadcast ``call``, then a barrier. MPI lets the root, and a rank whose
        part of the broadcast tree is done, leave before the others have even entered it;
        the watchdog takes a rank waiting in collective N while another waits in N + 1, or
        has left the program, for a deadlock, which is only true where no rank can leave
        a collective before every rank has entered it."""
        result = call(*args, **kwargs)
        self._comm.Barrier()
        return result

    def abort(self, code: int = 1) -> None:
        """End every rank now (``MPI_Abort``); with one process, exit with ``code``."""
        sys.stdout.flush()
        sys.stderr.flush()
        if self._comm is None:
            raise SystemExit(code)
        time.sleep(0.2)  # let mpiexec forward what was printed before the abort kills it
        self._comm.Abort(code)


_DEFAULT = object()  # init's timeout when the caller gives none


def init(threads: int | None = None, timeout: float | None = _DEFAULT) -> Communicator:
    """Start MPI (once per process; later calls return the same communicator).

    ``threads``: BLAS threads per rank; default (cores on this host / ranks on this host)
    unless an OMP/OPENBLAS/MKL/BLIS_NUM_THREADS variable is set or ``tn.set_num_threads``
    was called before. ``timeout``: seconds a
    rank may wait in one collective (all-reduce, broadcast, all-gather, barrier) before it
    prints which and ends every rank (default 1800, as PyTorch; None: wait for ever,
    though a rank that left the program is still noticed within seconds). GPU
    all-reduces through NCCL are not watched. A later call applies the ``threads`` and
    ``timeout`` it is given (``init(timeout=60)`` after a library called ``init()``, say) and
    leaves the others as they were. Raises ImportError naming
    ``pip install 'tensornet[mpi]'`` when mpi4py is missing.
    """
    global _world
    given = timeout is not _DEFAULT
    timeout = DEFAULT_TIMEOUT if not given else timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(
            timeout, (int, float)) or not timeout > 0):
        raise ValueError(f"tensornet.distributed.init: timeout must be a positive number of "
                         f"seconds or None, got {timeout!r}")
    if _world is not None:
        if _world.size > 1:
            if threads is not None:
                set_blas_threads(_world, threads)
            if given:
                _set_timeout(_world, timeout)
        return _world
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"tensornet.distributed needs mpi4py and an MPI library: "
                          f"{INSTALL_HINT}") from exc
    world = MPI.COMM_WORLD
    local = world.Split_type(MPI.COMM_TYPE_SHARED)
    comm = Communicator(world, MPI, local.Get_rank(), local.Get_size())
    local.Free()
    if comm.size > 1:
        _abort_on_uncaught_exceptions(comm)
        set_blas_threads(comm, threads)
        if shared.wanted(comm):
            comm._shared = shared.SharedReducer(world, MPI)
        if MPI.Query_thread() == MPI.THREAD_MULTIPLE:  # the watchdog thread reads notices
            comm._notices = world.Dup()
            atexit.register(watchdog.announce_exit, comm, os.getpid())
            comm._watchdog = watchdog.start(comm, True)
        _set_timeout(comm, timeout)
    _world = comm
    return comm


def world() -> Communicator | None:
    """The communicator ``init()`` returned in this process, or None before ``init()``."""
    return _world


def abort_if_distributed(code: int) -> int:
    """Where several ranks run, end them all now with ``code`` (a failure on one rank must
    not leave the others waiting); otherwise return ``code``."""
    if _world is not None and _world.size > 1:
        _world.abort(code)
    return code


def blas_threads_for(comm: Communicator, threads: int | None = None) -> int | None:
    """The BLAS thread count ``init`` gives each rank, or None to leave the user's."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"tensornet.distributed.init: threads must be a positive "
                             f"integer, got {threads!r}")
        return threads
    if any(os.environ.get(name) for name in THREAD_VARIABLES) or \
            threads_module.chosen_num_threads() is not None:  # tn.set_num_threads(n) before
        return None
    cores = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return max(1, min(usable, cores // comm.local_size))


def set_blas_threads(comm: Communicator, threads: int | None = None) -> int | None:
    """Limit this process's BLAS/OpenMP pools (threadpoolctl) to ``blas_threads_for``."""
    global _thread_limit
    count = blas_threads_for(comm, threads)
    if count is None:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if comm.rank == 0:
            print(f"tensornet.distributed: threadpoolctl is missing, so BLAS threads are not "
                  f"limited to {count} per rank ({INSTALL_HINT})", file=sys.stderr)
        return None
    _thread_limit = threadpool_limits(limits=count)
    return count


def _abort_on_uncaught_exceptions(comm: Communicator) -> None:
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        try:  # the one line first: the launcher may cut the traceback short
            sys.stderr.write(f"tensornet.distributed: rank {comm.rank} of {comm.size} stopped "
                             f"on an uncaught {exc_type.__name__} ({exc}); aborting every "
                             f"rank\n")
            sys.stderr.flush()
            previous(exc_type, exc, tb)
        finally:
            comm.abort(1)

    sys.excepthook = hook


def _set_timeout(comm: Communicator, timeout: float | None) -> None:
    """Watch ``comm``'s collectives with this limit (None: stop watching); the watchdog
    thread starts with the first limit and reads the current one on every round."""
    comm._timeout = None if timeout is None else float(timeout)
    if comm._timeout is not None and comm._watchdog is None:  # no notices: MPI not threaded
        comm._watchdog = watchdog.start(
            comm, comm._mpi.Query_thread() == comm._mpi.THREAD_MULTIPLE)
