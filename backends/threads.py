"""How many threads tensornet's own CPU kernels use, and ``tn.set_num_threads``.

The matrix products run in the BLAS library NumPy links (OpenBLAS, MKL...), which takes
its thread count from ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
at start-up and from ``threadpoolctl.threadpool_limits`` later. Everything else of a CPU
training step (the compiled kernels of ``backends/jit/`` and the chunked NumPy optimizer
update) follows the same setting: ``num_threads()`` is the BLAS pool's current size, read
each time (a fraction of a microsecond), unless ``set_num_threads`` chose a number.

Results never depend on the thread count: parallel kernels split work into pieces whose
bounds do not depend on it, and reductions combine their partial sums in a fixed order.

Two pools run the split work. By default, a ``concurrent.futures.ThreadPoolExecutor``:
its idle threads sleep, and handing a chunk to one and back took 79-97 us on the 2-core
VM. ``set_num_threads(n, blas=k)`` with ``k < n`` (and numba installed) uses the spin pool,
``_SpinPool``, instead: its threads wait for work spinning on atomic flags
(``backends/jit/spin.py``) for ``SPIN_US`` before they sleep. Handing work over then takes
6-11 us, and work is split from ``jit.SPIN_CHUNK_MIN`` elements up, not ``jit.CHUNK_MIN``.
It pays only when the BLAS library leaves the cores free. After a two-thread product,
OpenBLAS's idle worker spins about 100 ms in user space without yielding, and a thread of
ours on its core gets a time slice of it. Measured on the 2-core Zen 4 VM, CNN training
step (``benchmarks/results/issues-vm-2026-12-03-c/``): 9.95-11.25 ms with ``blas=1`` and
the spin pool, against 12.2 ms with ``blas=1`` and the executor and 12.4-13.6 ms at the
default. With OpenBLAS on two threads, the spin pool made the step slower (13.9-16.2 ms).
"""
from __future__ import annotations

import numbers
import os
import threading
import time
import warnings

import numpy as np

_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")
_chosen: int | None = None   # set_num_threads' value; None: follow BLAS
_spinning = False            # set_num_threads(n, blas=k < n): the spin pool
_blas: list | None = None    # threadpoolctl's BLAS controllers, found once
_pool_state = None           # ((workers, spinning), pool) for work split in chunks
_pool_lock = threading.Lock()
_region = threading.local()  # .inside: this thread runs one chunk of run_chunks


def _blas_controllers() -> list:
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # not installed, or a BLAS threadpoolctl cannot read
            _blas = []
    return _blas


def _from_environment() -> int | None:
    for name in _ENV:
        value = os.environ.get(name, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


def num_threads() -> int:
    """Threads for tensornet's CPU kernels: ``set_num_threads``' choice, else the BLAS
    pool's current size (so ``OMP_NUM_THREADS=1`` or ``threadpool_limits(1)`` apply to
    them too), else the thread environment variables, else every logical core."""
    if getattr(_region, "inside", False):
        return 1  # already one of the threads of a split: no nested splits
    if _chosen is not None:
        return _chosen
    for controller in _blas_controllers():
        count = controller.get_num_threads()
        if count:
            return max(1, int(count))
    return _from_environment() or os.cpu_count() or 1


def set_num_threads(n: int, blas: int | None = None) -> None:
    """Use ``n`` threads for tensornet's own CPU kernels and ``blas`` (default ``n``) for
    the matrix products (the BLAS pool, through threadpoolctl). ``tn.set_num_threads(1)``
    makes a training step single-threaded.

    ``blas=1`` (any ``blas < n``) gives the other cores to tensornet's kernels, which then
    hand work to their threads through the spin pool (this module's docstring). That pays
    for models whose time goes to convolutions, BatchNorm and pooling, not to products:
    the CNN step of ``benchmarks/cnn_cpu.py`` on 2 cores took 9.95-11.25 ms with
    ``set_num_threads(2, blas=1)``, against 12.4-13.6 ms with ``set_num_threads(2)``. An
    MLP, whose products then run on one thread, gets slower. The spin pool's idle threads
    spin for ``SPIN_US`` after each piece of work, using that CPU time."""
    global _chosen, _spinning
    n = _positive("n", n)
    blas = n if blas is None else _positive("blas", blas)
    controllers = _blas_controllers()
    if not controllers:
        warnings.warn("tn.set_num_threads: threadpoolctl is not installed, so the BLAS "
                      "library keeps its own thread count (set OMP_NUM_THREADS before "
                      "starting Python, or pip install 'tensornet[fast]')", RuntimeWarning,
                      stacklevel=2)
    for controller in controllers:
        controller.set_num_threads(blas)
    _chosen = n
    _spinning = blas < n and _spin_kernels() is not None


def _positive(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_num_threads: {name} must be a positive integer, got {n!r}")
    return int(n)  # (a NumPy integer, e.g. from a config array, is one too)


def spinning() -> bool:
    """True when split work runs on the spin pool (``set_num_threads(n, blas=k < n)``)."""
    return _spinning


def _spin_kernels():
    from . import jit  # (jit imports this module)
    return jit.kernels("spin")


def chosen_num_threads() -> int | None:
    """The count ``set_num_threads`` was given (until ``reset_num_threads``), else None."""
    return _chosen


def reset_num_threads() -> None:
    """Follow the BLAS pool's size again (undo ``set_num_threads`` for tensornet's kernels)."""
    global _chosen, _spinning
    _chosen = None
    _spinning = False


class _ExecutorPool:
    """The default pool: a ``ThreadPoolExecutor`` whose idle threads sleep."""

    def __init__(self, workers: int):
        from concurrent.futures import ThreadPoolExecutor
        self._executor = ThreadPoolExecutor(workers, "tensornet-cpu")
        self.broken = False

    def run(self, function, chunks: list) -> None:
        futures = [self._executor.submit(_in_region, function, chunk) for chunk in chunks[1:]]
        try:
            _in_region(function, chunks[0])
        finally:
            for future in futures:
                future.exception()  # (waits for it)
        for future in futures:
            future.result()

    def close(self) -> None:
        self._executor.shutdown(wait=False)


SPIN_US = 300.0   # how long an idle spin-pool thread spins before it sleeps
_GRACE_US = 3.0   # how long a woken worker waits before it asks for the GIL


class _SpinPool:
    """``workers`` daemon threads that wait for work spinning on the flags of
    ``backends/jit/spin.py`` (without the GIL) for ``SPIN_US``, then on a semaphore.

    The caller hands work over while it holds the GIL, and a worker that sees it waits
    ``_GRACE_US`` before it asks for the GIL. By then the caller has usually entered its own
    chunk's compiled code, which lets go of the GIL, so neither thread sleeps on CPython's
    GIL condition variable (20-25 us on the 2-core VM, where an idle vCPU halts). Worker
    ``w`` runs chunks ``w + 1``, ``w + 1 + (workers + 1)``, ...; the caller the others."""

    def __init__(self, workers: int):
        spin = self._spin = _spin_kernels()
        self.workers = workers
        self.broken = False  # a wait was interrupted: the pool is not used again
        self._flags = np.zeros((workers, spin.ROW), dtype=np.int64)
        self._jobs: list = [None] * workers
        self._errors: list = [None] * workers
        self._wake = [threading.Semaphore(0) for _ in range(workers)]
        self._back = [threading.Semaphore(0) for _ in range(workers)]
        self._busy = threading.Lock()
        self._sequence = 0
        spin.spin(64)
        start = time.perf_counter()
        spin.spin(20_000)
        turns_per_us = 20_000 / max((time.perf_counter() - start) * 1e6, 1.0)
        self._turns = max(64, int(SPIN_US * turns_per_us))
        self._grace = int(_GRACE_US * turns_per_us)
        for w in range(workers):
            threading.Thread(target=self._serve, args=(w,), name=f"tensornet-cpu-{w}",
                             daemon=True).start()

    def _serve(self, w: int) -> None:
        _region.inside = True
        spin, row = self._spin, self._flags[w]
        seen = 0
        value = spin.wait_for_work(row, seen, self._turns, self._grace)
        while True:
            if value == seen:  # spun out: sleep until publish releases the semaphore
                self._sleep(row, spin.SLEEPING, lambda: spin.load(row, spin.GO) != seen,
                            self._wake[w])
                value = spin.load(row, spin.GO)
            if value < 0:
                return
            seen = value
            function, chunks = self._jobs[w]
            self._jobs[w] = None
            try:
                for chunk in chunks:
                    function(chunk)
            except BaseException as error:  # raised again on the caller's thread
                self._errors[w] = error
            waiting, value = spin.finish_and_wait(row, seen, self._turns, self._grace)
            if waiting:
                self._back[w].release()

    def run(self, function, chunks: list) -> None:
        if not self._busy.acquire(blocking=False):  # in use by another thread
            for chunk in chunks:
                function(chunk)
            return
        try:
            self._run(function, chunks)
        finally:
            self._busy.release()

    def _run(self, function, chunks: list) -> None:
        spin, stride = self._spin, self.workers + 1
        used = min(self.workers, len(chunks) - 1)
        self._sequence += 1
        sequence = self._sequence
        for w in range(used):
            self._jobs[w] = (function, chunks[w + 1::stride])
            if spin.publish(self._flags[w], sequence):
                self._wake[w].release()
        own = None
        _region.inside = True
        try:
            for chunk in chunks[::stride]:
                function(chunk)
        except BaseException as error:
            own = error
        finally:
            _region.inside = False
            self._wait(used, sequence)
        errors = [own] + self._errors[:used]
        self._errors[:used] = [None] * used
        for error in errors:
            if error is not None:
                raise error

    def _wait(self, used: int, sequence: int) -> None:
        spin = self._spin
        try:
            for w in range(used):
                row = self._flags[w]
                if not spin.wait_until_done(row, sequence, self._turns):
                    self._sleep(row, spin.WAITING,
                                lambda: spin.load(row, spin.DONE) == sequence, self._back[w])
        except BaseException:  # (KeyboardInterrupt in acquire) workers may still run
            self.broken = True
            raise

    def _sleep(self, row, flag: int, ready, semaphore) -> None:
        """Sleep on ``semaphore`` until the other side releases it, unless ``ready()``.
        Both sides go to sleep this way (the worker on SLEEPING, the caller on WAITING):
        raise the flag, then look once more; the other side swaps the flag back and
        releases the semaphore only when it was raised."""
        self._spin.store(row, flag, 1)
        if not ready():
            semaphore.acquire()
        elif self._spin.swap(row, flag, 0) == 0:
            semaphore.acquire()  # the other side saw the flag: take its release

    def close(self) -> None:
        for w in range(self.workers):
            if self._spin.publish(self._flags[w], -1):
                self._wake[w].release()


def _pool(workers: int, spinning: bool):
    """A pool of ``workers`` threads of the kind asked for (rebuilt when either changes,
    or when a wait on it was interrupted)."""
    global _pool_state
    key = (workers, spinning)
    current = _pool_state
    if current is not None and current[0] == key and not current[1].broken:
        return current[1]
    with _pool_lock:
        if _pool_state is None or _pool_state[0] != key or _pool_state[1].broken:
            old = _pool_state
            _pool_state = (key, (_SpinPool if spinning else _ExecutorPool)(workers))
            if old is not None:
                old[1].close()
        return _pool_state[1]


def _forget_pool_in_child() -> None:
    """After ``os.fork`` the child has none of the parent's pool threads, but the pool
    object still counts them as alive, so work handed to it would never run and
    ``run_chunks`` would wait forever (a forked data-loading worker, say). The child
    starts a pool of its own on first use instead."""
    global _pool_state, _pool_lock
    _pool_state = None
    _pool_lock = threading.Lock()  # the parent may have held it while forking


if hasattr(os, "register_at_fork"):  # (not on Windows, which cannot fork)
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _in_region(function, chunk):
    _region.inside = True
    try:
        return function(chunk)
    finally:
        _region.inside = False


def run_chunks(function, chunks: list, threads: int | None = None) -> None:
    """``function(chunk)`` for every chunk: some on the calling thread, the others on a
    pool of ``threads - 1`` threads (default ``num_threads()``; NumPy ufuncs and
    tensornet's compiled kernels release the GIL); in order on the calling thread when
    there is one thread. Inside a chunk ``num_threads()`` is 1, so work split again there
    runs on that thread. An exception in a chunk is raised here once every chunk has
    finished."""
    workers = (num_threads() if threads is None else threads) - 1
    if workers < 1 or len(chunks) == 1:
        for chunk in chunks:
            function(chunk)
        return
    # (the spin pool's flags are numba code: inside jit.disabled() the executor serves)
    _pool(workers, _spinning and _spin_kernels() is not None).run(function, chunks)
