"""How many threads tensornet's own CPU kernels use, and ``tn.set_num_threads``.

The matrix products run in the BLAS library NumPy links (OpenBLAS, MKL...), which takes
its thread count from ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``
at start-up and from ``threadpoolctl.threadpool_limits`` later. Everything else of a CPU
training step (the compiled kernels of ``backends/jit/`` and the chunked NumPy optimizer
update) follows the same setting: ``num_threads()`` is the BLAS pool's current size, read
each time (a fraction of a microsecond), unless ``set_num_threads`` chose a number.

Results never depend on the thread count: parallel kernels split work into pieces whose
bounds do not depend on it, and reductions combine their partial sums in a fixed order.

Two pools run the split work. Where numba runs on Linux and NumPy's BLAS is OpenBLAS
0.3.27 or later on pthreads, the default is the spin pool, ``_SpinPool``: its threads wait
for work spinning on atomic flags (``backends/jit/spin.py``) for ``SPIN_US``, then sleep on
a futex, and they also run OpenBLAS's threaded work, which OpenBLAS hands to
``spin.blas_callback`` instead of to its own threads (``_OpenBLASHook``). Handing work over
takes 6-11 us, and work is split from ``jit.SPIN_CHUNK_MIN`` elements up. Elsewhere (or
with ``TENSORNET_BLAS_POOL=0``), a ``concurrent.futures.ThreadPoolExecutor`` serves: its
idle threads sleep, handing a chunk to one and back took 79-97 us on the 2-core VM, and work
is split from ``jit.CHUNK_MIN`` elements up.

Why one pool for both: after a two-thread product OpenBLAS's idle worker spins about
100 ms in user space without yielding, and a thread of tensornet's on its core gets a time
slice of it. With OpenBLAS's work on the spin pool, the products keep their threads and
tensornet's kernels get the cores back. Measured on the 2-core Zen 4 VM, training steps
alternating in one process (``benchmarks/results/issues-vm-2026-12-03-d/pool_ab.py``),
against the executor beside OpenBLAS's own threads: CNN 10.61 against 13.81 ms; the MLP
even within the VM's noise (1.87 against 1.69 ms, rounds from 1.3 to 3.2 ms on both).
``set_num_threads(n, blas=k)`` with ``k < n`` gives the BLAS fewer threads; split work runs
on the spin pool then even without the OpenBLAS hook.
"""
from __future__ import annotations

import atexit
import numbers
import os
import threading
import time
import warnings

import numpy as np

_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "BLIS_NUM_THREADS")
_chosen: int | None = None   # set_num_threads' value; None: follow BLAS
_spinning: bool | None = None  # split work on the spin pool; None: not decided yet
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


get_num_threads = num_threads  # PyTorch's name (``torch.get_num_threads``)


def set_num_threads(n: int, blas: int | None = None) -> None:
    """Use ``n`` threads for tensornet's own CPU kernels and ``blas`` (default ``n``) for
    the matrix products (the BLAS pool, through threadpoolctl). ``tn.set_num_threads(1)``
    makes a training step single-threaded.

    Both run on the spin pool where it can take OpenBLAS's work (this module's
    docstring), as by default. ``blas=1`` (any ``blas < n``) keeps the products on fewer
    threads and gives the other cores to tensornet's kernels, on the spin pool with any
    BLAS: that can pay for models whose time goes to convolutions, BatchNorm and pooling,
    not to products, where the BLAS cannot hand its work over. The spin pool's idle
    threads spin for ``SPIN_US`` after each piece of work, using that CPU time."""
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
    _spinning = (n > 1 and (blas < n or _OpenBLASHook.find() is not None)
                 and _spin_kernels() is not None)
    if _spinning:  # now, so that OpenBLAS's work runs on it from the first product on
        _pool(n - 1, True)


def _positive(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_num_threads: {name} must be a positive integer, got {n!r}")
    return int(n)  # (a NumPy integer, e.g. from a config array, is one too)


def spinning() -> bool:
    """True when split work runs on the spin pool (``set_num_threads(n, blas=k < n)``)."""
    if _spinning is None:
        return _decide()
    return _spinning


def _decide() -> bool:
    """The default, decided on first use: the spin pool when it can run OpenBLAS's work
    too (``_OpenBLASHook``), else the executor. The pool starts now, so that the products
    run on it from the first one on (``spinning()`` is asked before every compiled
    kernel, and a training step's first layer runs one before its first product)."""
    global _spinning
    _spinning = _spin_kernels() is not None and _OpenBLASHook.find() is not None
    count = num_threads()
    if _spinning and count > 1:
        _pool(count - 1, True)
    return _spinning


def _spin_kernels():
    from . import jit  # (jit imports this module)
    spin = jit.kernels("spin")
    return spin if spin is not None and spin.AVAILABLE else None


def chosen_num_threads() -> int | None:
    """The count ``set_num_threads`` was given (until ``reset_num_threads``), else None."""
    return _chosen


def reset_num_threads() -> None:
    """Follow the BLAS pool's size again (undo ``set_num_threads`` for tensornet's kernels)."""
    global _chosen, _spinning
    _chosen = None
    _spinning = None  # the default again, decided on first use


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
    ``backends/jit/spin.py`` (without the GIL) for ``SPIN_US``, then sleeping on a futex.

    The caller hands work over while it holds the GIL, and a worker that sees it waits
    ``_GRACE_US`` before it asks for the GIL. By then the caller has usually entered its own
    chunk's compiled code, which lets go of the GIL, so neither thread sleeps on CPython's
    GIL condition variable (20-25 us on the 2-core VM, where an idle vCPU halts). Worker
    ``w`` runs chunks ``w + 1``, ``w + 1 + (workers + 1)``, ...; the caller the others.

    When NumPy's BLAS is OpenBLAS 0.3.27 or later on pthreads, the pool also runs
    OpenBLAS's threaded work (``_OpenBLASHook``), so the products and tensornet's kernels
    share one set of threads instead of two that fight for the cores."""

    def __init__(self, workers: int):
        spin = self._spin = _spin_kernels()
        self.workers = workers
        self.broken = False  # (the executor's flag; this pool's waits cannot be broken)
        self._state = np.zeros(spin.HEADER + workers * spin.ROW, dtype=np.int64)
        self._state[spin.WORKERS] = workers
        self._rows = self._state[spin.HEADER:].reshape(workers, spin.ROW)
        self._jobs: list = [None] * workers
        self._errors: list = [None] * workers
        spin.spin(64)
        start = time.perf_counter()
        spin.spin(20_000)
        turns_per_us = 20_000 / max((time.perf_counter() - start) * 1e6, 1.0)
        self._turns = max(64, int(SPIN_US * turns_per_us))
        self._grace = int(_GRACE_US * turns_per_us)
        for w in range(workers):
            threading.Thread(target=self._serve, args=(w,), name=f"tensornet-cpu-{w}",
                             daemon=True).start()
        self._hook = _OpenBLASHook.find()
        if self._hook is not None:
            self._hook.install(self._state)

    def _serve(self, w: int) -> None:
        _region.inside = True
        spin, row = self._spin, self._rows[w]
        sequence = spin.serve(row, 0, self._turns, self._grace)
        while sequence >= 0:
            function, chunks = self._jobs[w]
            self._jobs[w] = None
            try:
                for chunk in chunks:
                    function(chunk)
            except BaseException as error:  # raised again on the caller's thread
                self._errors[w] = error
            sequence = spin.finish_and_serve(row, sequence, self._turns, self._grace)

    def run(self, function, chunks: list) -> None:
        spin = self._spin
        sequence = spin.acquire(self._state)
        if not sequence:  # in use by another thread, or by OpenBLAS
            for chunk in chunks:
                function(chunk)
            return
        try:
            self._run(function, chunks, sequence)
        finally:
            spin.release(self._state)

    def _run(self, function, chunks: list, sequence: int) -> None:
        spin, stride = self._spin, self.workers + 1
        used = min(self.workers, len(chunks) - 1)
        for w in range(used):
            self._jobs[w] = (function, chunks[w + 1::stride])
            spin.publish(self._rows[w], sequence)
        own = None
        _region.inside = True
        try:
            for chunk in chunks[::stride]:
                function(chunk)
        except BaseException as error:
            own = error
        finally:
            _region.inside = False
            for w in range(used):
                spin.wait_until_done(self._rows[w], sequence, self._turns)
        errors = [own] + self._errors[:used]
        self._errors[:used] = [None] * used
        for error in errors:
            if error is not None:
                raise error

    def close(self) -> None:
        if self._hook is not None:
            self._hook.uninstall()
        self._spin.close(self._state)  # (waits for OpenBLAS work on the pool to finish)
        _closed_states.append(self._state)  # a late OpenBLAS call may still read it


_closed_states: list = []


class _OpenBLASHook:
    """OpenBLAS's ``openblas_set_threads_callback_function`` (OpenBLAS 0.3.27 on): with it
    set, OpenBLAS hands its threaded work to ``backends/jit/spin.py``'s ``blas_callback``,
    which runs it on the spin pool's threads, instead of to its own threads. Those spin
    about 0.1 s after each product without yielding the core (``benchmarks/results/
    issues-vm-2026-12-03-c/``), where tensornet's kernels wanted to run; the pool's spin
    for ``SPIN_US``. Off with ``TENSORNET_BLAS_POOL=0``."""

    def __init__(self, controller, setter, fields: dict):
        self._controller, self._setter, self._fields = controller, setter, fields

    @classmethod
    def find(cls):
        if os.environ.get("TENSORNET_BLAS_POOL", "1").strip().lower() in ("0", "no", "off",
                                                                          "false"):
            return None
        for controller in _blas_controllers():
            hook = cls._from(controller)
            if hook is not None:
                return hook
        return None

    @classmethod
    def _from(cls, controller):
        import ctypes
        if (getattr(controller, "internal_api", "") != "openblas"
                or getattr(controller, "threading_layer", "") != "pthreads"):
            return None
        try:
            version = tuple(int(part) for part in controller.version.split(".")[:3])
            library = controller.dynlib
            prefix = getattr(controller, "_symbol_prefix", "")
            suffix = getattr(controller, "_symbol_suffix", "")
            setter = getattr(library, f"{prefix}openblas_set_threads_callback_function{suffix}")
            config = getattr(library, f"{prefix}openblas_get_config{suffix}")
            config.restype = ctypes.c_char_p
            slots = [int(word.split("=")[1]) for word in config().decode().split()
                     if word.startswith("MAX_THREADS=")]
            address = lambda name: ctypes.cast(getattr(library, name), ctypes.c_void_p).value
            fields = {"EXEC_ASYNC": address("exec_blas_async"),
                      "EXEC_WAIT": address("exec_blas_async_wait"),
                      "SERVER_THREADS": ctypes.addressof(
                          ctypes.c_int.in_dll(library, "blas_num_threads")),
                      "MAX_SLOTS": slots[0]}
        except (AttributeError, ValueError, IndexError, TypeError):
            return None  # an OpenBLAS without the callback, or that does not export them
        if version < (0, 3, 27):
            return None
        setter.argtypes = [ctypes.c_void_p]
        setter.restype = None
        return cls(controller, setter, fields)

    def install(self, state) -> None:
        spin = _spin_kernels()
        for name, value in self._fields.items():
            state[getattr(spin, name)] = value
        spin.STATE_ADDRESS.value = state.ctypes.data
        self._setter(spin.blas_callback_address())
        _hooks.append(self)

    def uninstall(self) -> None:
        self._setter(None)
        if self in _hooks:
            _hooks.remove(self)


_hooks: list = []  # installed hooks: removed in a forked child and at exit


def _uninstall_hooks() -> None:
    for hook in list(_hooks):
        hook.uninstall()


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
            if _pool_state is not None:  # first: closing a spin pool unhooks OpenBLAS
                _pool_state[1].close()
                _pool_state = None
            _pool_state = (key, (_SpinPool if spinning else _ExecutorPool)(workers))
        return _pool_state[1]


def _forget_pool_in_child() -> None:
    """After ``os.fork`` the child has none of the parent's pool threads, but the pool
    object still counts them as alive, so work handed to it would never run and
    ``run_chunks`` would wait forever (a forked data-loading worker, say). The child
    starts a pool of its own on first use instead."""
    global _pool_state, _pool_lock
    _uninstall_hooks()  # the child's OpenBLAS must not hand work to threads it lacks
    _pool_state = None
    _pool_lock = threading.Lock()  # the parent may have held it while forking


if hasattr(os, "register_at_fork"):  # (not on Windows, which cannot fork)
    os.register_at_fork(after_in_child=_forget_pool_in_child)
atexit.register(_uninstall_hooks)


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
    _pool(workers, spinning() and _spin_kernels() is not None).run(function, chunks)
