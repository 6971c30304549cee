"""How many threads tensornet's own CPU kernels use, and ``tn.set_num_threads``.

The matrix products run in the BLAS library NumPy links (OpenBLAS, MKL...), which takes
its thread count from ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
at start-up and from ``threadpoolctl.threadpool_limits`` later. Everything else of a CPU
training step (the compiled kernels of ``backends/jit/`` and the chunked NumPy optimizer
update) follows the same setting: ``num_threads()`` is the BLAS pool's current size, read
each time (a fraction of a microsecond), unless ``set_num_threads`` chose a number.

Results never depend on the thread count: parallel kernels split work into pieces whose
bounds do not depend on it, and reductions combine their partial sums in a fixed order.
"""
from __future__ import annotations

import numbers
import os
import threading
import warnings

_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")
_chosen: int | None = None   # set_num_threads' value; None: follow BLAS
_blas: list | None = None    # threadpoolctl's BLAS controllers, found once
_pool_state = None           # (workers, ThreadPoolExecutor) for work split in chunks
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


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the matrix products (the BLAS pool, through threadpoolctl)
    and for tensornet's own CPU kernels. ``tn.set_num_threads(1)`` makes a training step
    single-threaded."""
    global _chosen
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    n = int(n)  # (a NumPy integer, e.g. from a config array, is one too)
    controllers = _blas_controllers()
    if not controllers:
        warnings.warn("tn.set_num_threads: threadpoolctl is not installed, so the BLAS "
                      "library keeps its own thread count (set OMP_NUM_THREADS before "
                      "starting Python, or pip install 'tensornet[fast]')", RuntimeWarning,
                      stacklevel=2)
    for controller in controllers:
        controller.set_num_threads(n)
    _chosen = n


def chosen_num_threads() -> int | None:
    """The count ``set_num_threads`` was given (until ``reset_num_threads``), else None."""
    return _chosen


def reset_num_threads() -> None:
    """Follow the BLAS pool's size again (undo ``set_num_threads`` for tensornet's kernels)."""
    global _chosen
    _chosen = None


def _pool(workers: int):
    """A pool of ``workers`` threads (rebuilt when the thread count changes)."""
    global _pool_state
    current = _pool_state
    if current is not None and current[0] == workers:
        return current[1]
    with _pool_lock:
        if _pool_state is None or _pool_state[0] != workers:
            from concurrent.futures import ThreadPoolExecutor
            old, _pool_state = _pool_state, (workers, ThreadPoolExecutor(workers,
                                                                         "tensornet-cpu"))
            if old is not None:
                old[1].shutdown(wait=False)
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
    """``function(chunk)`` for every chunk: the first on the calling thread, the others on
    a pool of ``threads - 1`` threads (default ``num_threads()``; NumPy ufuncs and
    tensornet's compiled kernels release the GIL); in order on the calling thread when
    there is one thread. Inside a chunk ``num_threads()`` is 1, so work split again there
    runs on that thread."""
    workers = (num_threads() if threads is None else threads) - 1
    if workers < 1 or len(chunks) == 1:
        for chunk in chunks:
            function(chunk)
        return
    pool = _pool(workers)
    futures = [pool.submit(_in_region, function, chunk) for chunk in chunks[1:]]
    _in_region(function, chunks[0])
    for future in futures:
        future.result()
