"""Compiled CPU kernels for the NumPy backend (numba; optional: ``pip install
'tensornet[fast]'``).

Where NumPy needs several passes over memory and temporaries for one layer kernel (the
2x2 max pool, col2im, BatchNorm's statistics, an optimizer update), a numba kernel does it
in one pass (numba, compiled without the GIL), split over tensornet's thread pool
(``backends.threads``) when the work is large. The NumPy overrides in
``backends/numpy.py`` call these when numba is importable and fall back to their pure-NumPy
code otherwise (or when ``TENSORNET_JIT=0`` is set, or inside ``disabled()``): a numba
that is installed but fails to import (a release that does not support this NumPy yet)
gives one RuntimeWarning naming its error, then the NumPy paths. Kernels are
compiled on first use and cached on disk (numba's ``cache=True``), so only the first run
on a machine pays the compile time. One kernel replaces a BLAS call instead: Conv2d's
weight gradient for few column rows (``conv.py``), a skinny product BLAS runs slowly;
and the direct 3x3 convolution of few channels (``direct.py``) replaces im2col + BLAS.

Every kernel here computes what the generic version in ``tensornet/nn/functional`` computes
(tests: ``tests/test_cpu_kernels.py``); each parallel loop runs over independent outputs,
and every reduction runs in a fixed order, so results do not depend on the thread count.

This file imports nothing heavy: the kernel files (``windows.py``, ``norm.py``,
``basic.py``, ``conv.py``, ``direct.py``, and ``spin.py``, the spin pool's flags) import
numba, and are imported by ``kernels(name)`` on first use.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import warnings

from ..threads import num_threads, run_chunks, spinning

# Work is split over the threads only in pieces of at least this many elements: waking a
# sleeping pool thread costs 10-60 us (far more when another process holds the core), as
# much as a serial pass over 100-500K float32. Measured on the 2-core VM: a ReLU over 800K
# float32 took 72 us on one thread and 109 us on two; over 4M, 697 us and 538 us.
CHUNK_MIN = 1 << 20
# With the spin pool (the default where OpenBLAS hands it its work, and
# ``tn.set_num_threads(n, blas=k < n)``: ``backends/threads.py``) a hand-off costs 6-11 us,
# and splitting from 64K elements up measured fastest for the CNN (2-core Zen 4 VM,
# ``benchmarks/results/issues-vm-2026-12-03-c/``).
SPIN_CHUNK_MIN = 1 << 16
# An optimizer's update streams three to five arrays once and is bound by memory, not by
# arithmetic: on the spin pool it is split in pieces of at least this many elements (from
# 512K parameters up). SGD with momentum on the 2-core Zen 4 VM, us a step, one thread
# against two, best of 3 rounds in two runs: 240K parameters 49-56 / 53-59 with the data
# in cache, 210-247 / 292-309 from memory, 137-152 / 148-155 inside the MLP's training
# step (three runs); 500K 82-101 / 77-78 and 445-456 / 440-496; 1M 199-255 / 136-150
# and 580-689 / 643-658 (``benchmarks/results/issues-vm-2026-12-04/``).
UPDATE_CHUNK_MIN = 1 << 18

_SWITCH = {"on": os.environ.get("TENSORNET_JIT", "1").strip().lower() not in
           ("0", "false", "no", "off")}
_MODULES: dict = {}


def available() -> bool:
    """True when numba kernels are in use: numba imports and is not switched off. The first
    call imports numba; one that is installed but fails to import (numba pins the NumPy
    versions it takes) gives one RuntimeWarning naming its error, and False from then on."""
    if not _SWITCH["on"]:
        return False
    if "available" not in _MODULES:
        _MODULES["available"] = _numba_imports()
    return _MODULES["available"]


def _numba_imports() -> bool:
    if importlib.util.find_spec("numba") is None:
        return False
    try:
        import numba  # noqa: F401
    except Exception as error:
        warnings.warn(f"tensornet: numba is installed but does not import "
                      f"({type(error).__name__}: {error}); the NumPy backend runs its "
                      f"pure-NumPy code instead of the compiled kernels", RuntimeWarning,
                      stacklevel=4)
        return False
    return True


@contextlib.contextmanager
def switched(on: bool):
    """Inside this block, use the numba kernels (when installed) or not, whatever
    ``TENSORNET_JIT`` says (tests compare both paths)."""
    before = _SWITCH["on"]
    _SWITCH["on"] = bool(on)
    try:
        yield
    finally:
        _SWITCH["on"] = before


def disabled():
    """Run the pure-NumPy paths inside this block."""
    return switched(False)


def kernels(name: str):
    """The kernel module ``backends/jit/<name>.py`` (imports numba), or None when numba
    kernels are not in use."""
    if not available():
        return None
    module = _MODULES.get(name)
    if module is None:
        module = _MODULES[name] = importlib.import_module(f"{__name__}.{name}")
    return module


def run_tasks(driver, tasks: int, size: int, *args, spin_chunk_min: int | None = None) -> None:
    """``driver(*args, lo, hi)`` over the tasks ``[0, tasks)``, split into contiguous
    ranges on ``num_threads()`` threads when the work (``size`` elements) is large
    enough: pieces of ``CHUNK_MIN`` elements at least, or on the spin pool
    ``spin_chunk_min`` (default ``SPIN_CHUNK_MIN``). Tasks write disjoint outputs, so the
    split never changes the results."""
    if spinning():
        chunk = min(CHUNK_MIN, SPIN_CHUNK_MIN if spin_chunk_min is None else spin_chunk_min)
    else:
        chunk = CHUNK_MIN
    pieces = min(tasks, size // chunk)
    if pieces > 1:  # asking for the thread count costs microseconds: only for large work
        pieces = min(pieces, num_threads())
    if pieces <= 1:
        driver(*args, 0, tasks)
        return
    bounds = [tasks * k // pieces for k in range(pieces + 1)]
    run_chunks(lambda k: driver(*args, bounds[k], bounds[k + 1]), list(range(pieces)))
