"""The flags of the spinning thread pool (``backends/threads.py``, ``_SpinPool``): atomic
loads, stores and exchanges of int64 flags, the waits its threads spin and sleep in without
the GIL, and ``blas_callback``, through which OpenBLAS runs its threads' work on the pool.

numba has no atomics of its own. ``_load``, ``_store`` and ``_swap`` emit LLVM's seq_cst
``load atomic`` / ``store atomic`` / ``atomicrmw xchg`` (a plain load in a loop could be
hoisted out of it). A waiting thread spins on one flag with the CPU's ``pause`` and calls
``sched_yield`` every 64 turns, so a thread that needs its core gets it.

The pool's state is one int64 array: a header (``LOCK``, held while OpenBLAS's work runs
on the pool; ``OWNER``, 1 while ``run_chunks`` uses the workers and 2 while OpenBLAS does;
``WORKERS``, 0 once the pool is closed; ``SEQUENCE``, the last work's number; and the
OpenBLAS addresses ``blas_callback`` needs), then one row per worker, every flag on its own
64-byte line: ``GO`` (the owner writes the sequence number of new work, -1 to stop),
``SLEEPING`` (the worker sleeps), ``DONE`` (the sequence number it finished), ``WAITING``
(the owner sleeps until ``DONE`` changes), and the work itself (``KIND``: Python chunks,
which the worker's Python code runs, or an OpenBLAS job, which it runs here).

A thread that has spun out sleeps on a futex (Linux's ``futex`` system call, through
libc's ``syscall``) on the flag it waits for: it raises its own flag (``SLEEPING`` or
``WAITING``), and sleeps only while the awaited flag still holds the value it saw; the
other side writes the awaited flag first, then wakes the sleeper when it swaps that raised
flag back to 0. With seq_cst operations one of the two always sees the other, so no
wake-up is lost, and no side needs the GIL: OpenBLAS calls ``blas_callback`` from C.

Functions that hold the GIL (``publish`` and the plain flag operations) are compiled
without ``nogil``: calling them never lets another thread take the GIL, which would make
the caller sleep on CPython's GIL condition variable (20-25 us on the 2-core VM).
"""
from __future__ import annotations

import ctypes
import platform
import sys

import llvmlite.binding
from llvmlite import ir
import numpy as np
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# A worker's row (int64 offsets; one 64-byte line each, the work's fields on the last).
GO, SLEEPING, DONE, WAITING, KIND, FUNCTION, DATA, ARGUMENT, SLOT = 0, 8, 16, 24, 32, 33, 34, 35, 36
ROW = 40
PYTHON, BLAS_JOB = 0, 1  # KIND
# The header of the state array, before the rows.
LOCK, OWNER, WORKERS, SEQUENCE = 0, 8, 16, 24
EXEC_ASYNC, EXEC_WAIT, SERVER_THREADS, MAX_SLOTS = 32, 33, 34, 35
HEADER = 40
RUN_CHUNKS, OPENBLAS = 1, 2  # OWNER

_OPTIONS = dict(cache=True, nogil=True)
_HOLDING_GIL = dict(cache=True)
_MACHINE = platform.machine().lower()
_X86 = _MACHINE in ("x86_64", "amd64", "i386", "i686", "x86")
_POSIX = sys.platform != "win32"
_FUTEX_CALL = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}.get(_MACHINE)
# The pool sleeps on futexes: Linux on x86-64 or 64-bit Arm only (elsewhere threads.py uses
# the executor pool).
AVAILABLE = sys.platform.startswith("linux") and _FUTEX_CALL is not None
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129  # FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE
_I64 = ir.IntType(64)

# Where ``blas_callback`` finds the pool's state: an int64 holding the state array's
# address, which compiled code reads through the symbol ``tensornet_spin_pool``.
STATE_ADDRESS = ctypes.c_int64(0)
llvmlite.binding.add_symbol("tensornet_spin_pool", ctypes.addressof(STATE_ADDRESS))


def _pointer(context, builder, array_type, array, index):
    array = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array, [index])


@intrinsic
def _load(typingctx, flags, index):
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], *args)
        return builder.load_atomic(pointer, "seq_cst", 8)
    return types.int64(flags, index), codegen


@intrinsic
def _store(typingctx, flags, index, value):
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(args[2], pointer, "seq_cst", 8)
        return context.get_dummy_value()
    return types.none(flags, index, value), codegen


@intrinsic
def _swap(typingctx, flags, index, value):
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("xchg", pointer, args[2], "seq_cst")
    return types.int64(flags, index, value), codegen


@intrinsic
def _pause(typingctx):
    def codegen(context, builder, signature, args):
        if _X86:
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(function, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def _yield(typingctx):
    def codegen(context, builder, signature, args):
        if _POSIX:  # libc's sched_yield, found by name when the code is linked
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(function, [])
        return context.get_dummy_value()
    return types.none(), codegen


@intrinsic
def _compare_swap(typingctx, flags, index, old, new):
    """Set flags[index] to ``new`` if it is ``old``; True when it was."""
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        pair = builder.cmpxchg(pointer, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return types.boolean(flags, index, old, new), codegen


@intrinsic
def _futex(typingctx, flags, index, operation, value):
    """Linux's futex call on the low 32 bits of flags[index] (little-endian machines)."""
    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature.args[0], args[0], args[1])
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I64, [_I64], var_arg=True), "syscall")
        return builder.call(function, [ir.Constant(_I64, _FUTEX_CALL or 0),
                                       builder.ptrtoint(pointer, _I64), args[2], args[3],
                                       ir.Constant(_I64, 0)])
    return types.int64(flags, index, operation, value), codegen


@intrinsic
def _state(typingctx):
    """A pointer to the pool's state array (``STATE_ADDRESS``)."""
    def codegen(context, builder, signature, args):
        slot = builder.module.globals.get("tensornet_spin_pool")
        if slot is None:
            slot = ir.GlobalVariable(builder.module, _I64, "tensornet_spin_pool")
            slot.linkage = "external"
        return builder.inttoptr(builder.load_atomic(slot, "seq_cst", 8), _I64.as_pointer())
    return types.CPointer(types.int64)(), codegen


@intrinsic
def _address(typingctx, pointer):
    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], _I64)
    return types.int64(pointer), codegen


@intrinsic
def _load_int(typingctx, address):
    """The C ``int`` at ``address``."""
    def codegen(context, builder, signature, args):
        pointer = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.sext(builder.load_atomic(pointer, "seq_cst", 4), _I64)
    return types.int64(address), codegen


@intrinsic
def _run_job(typingctx, function, slot, data, argument):
    """OpenBLAS's ``void dojob(int thread_num, void *jobdata, int dojob_data)``."""
    def codegen(context, builder, signature, args):
        i32, bytes_ = ir.IntType(32), ir.IntType(8).as_pointer()
        kind = ir.FunctionType(ir.VoidType(), [i32, bytes_, i32])
        builder.call(builder.inttoptr(args[0], kind.as_pointer()),
                     [builder.trunc(args[1], i32), builder.inttoptr(args[2], bytes_),
                      builder.trunc(args[3], i32)])
        return context.get_dummy_value()
    return types.none(function, slot, data, argument), codegen


@intrinsic
def _run_queue(typingctx, function, count, queue):
    """OpenBLAS's ``int exec_blas_async(BLASLONG, blas_queue_t *)`` or ``.._wait``."""
    def codegen(context, builder, signature, args):
        kind = ir.FunctionType(ir.IntType(32), [_I64, _I64])
        builder.call(builder.inttoptr(args[0], kind.as_pointer()), [args[1], args[2]])
        return context.get_dummy_value()
    return types.none(function, count, queue), codegen


@njit(inline="always", **_OPTIONS)
def _turn(k):
    if k & 63 == 63:
        _yield()
    else:
        _pause()


@njit(**_OPTIONS)
def spin(turns):
    """``turns`` turns of the waits' loop, doing nothing (to time them)."""
    for k in range(turns):
        _turn(k)


@njit(inline="always", **_OPTIONS)
def _wait_for(flags, index, seen, turns, flag):
    """Spin until flags[index] differs from ``seen``, at most ``turns`` turns, then sleep
    on a futex with ``flag`` raised (the module docstring); returns the new value."""
    for k in range(turns):
        value = _load(flags, index)
        if value != seen:
            return value
        _turn(k)
    _store(flags, flag, 1)
    value = _load(flags, index)
    while value == seen:
        _futex(flags, index, _FUTEX_WAIT, seen & 0xFFFFFFFF)
        value = _load(flags, index)
    _swap(flags, flag, 0)
    return value


@njit(inline="always", **_OPTIONS)
def _finish(row, sequence):
    _store(row, DONE, sequence)
    if _swap(row, WAITING, 0):
        _futex(row, DONE, _FUTEX_WAKE, 1)


@njit(inline="always", **_OPTIONS)
def _serve(row, seen, turns, grace):
    while True:
        value = _wait_for(row, GO, seen, turns, SLEEPING)
        if value < 0 or _load(row, KIND) != BLAS_JOB:
            # Let the caller reach its own chunk's compiled code, which lets go of the
            # GIL, before this thread asks for the GIL: asking while the caller holds it
            # puts this thread to sleep on CPython's condition variable.
            for g in range(grace):
                _pause()
            return value
        _run_job(_load(row, FUNCTION), _load(row, SLOT), _load(row, DATA),
                 _load(row, ARGUMENT))
        _finish(row, value)
        seen = value


@njit(**_OPTIONS)
def serve(row, seen, turns, grace):
    """(a worker, without the GIL) Wait for work after ``seen``, running OpenBLAS's jobs
    as they come; returns the sequence number of Python chunks to run, or -1 to stop."""
    return _serve(row, seen, turns, grace)


@njit(**_OPTIONS)
def finish_and_serve(row, sequence, turns, grace):
    """(a worker, without the GIL) Mark Python work ``sequence`` done (waking the owner if
    it sleeps), then ``serve``."""
    _finish(row, sequence)
    return _serve(row, sequence, turns, grace)


@njit(**_OPTIONS)
def wait_until_done(row, sequence, turns):
    """(the owner, without the GIL) Wait until the row's worker has finished ``sequence``:
    spin ``turns`` turns, then sleep."""
    value = _load(row, DONE)
    while value != sequence:
        value = _wait_for(row, DONE, value, turns, WAITING)


@njit(inline="always", **_HOLDING_GIL)
def _publish(row, sequence, kind):
    _store(row, KIND, kind)
    _store(row, GO, sequence)
    if _swap(row, SLEEPING, 0):
        _futex(row, GO, _FUTEX_WAKE, 1)


@njit(**_HOLDING_GIL)
def publish(row, sequence):
    """(the owner, holding the GIL) Hand Python work ``sequence`` to the row's worker,
    waking it if it sleeps."""
    _publish(row, sequence, PYTHON)


@njit(**_HOLDING_GIL)
def acquire(state):
    """(``run_chunks``, holding the GIL) Take the workers if no one uses them; returns the
    new work's sequence number, or 0 when they are in use."""
    if not _compare_swap(state, OWNER, 0, RUN_CHUNKS):
        return 0
    sequence = _load(state, SEQUENCE) + 1
    _store(state, SEQUENCE, sequence)
    return sequence


@njit(**_HOLDING_GIL)
def release(state):
    _store(state, OWNER, 0)


@njit(**_HOLDING_GIL)
def close(state):
    """Stop OpenBLAS's work from using the pool (waiting for work on it to finish), then
    stop the workers."""
    k = 0
    while not _compare_swap(state, LOCK, 0, 1):
        _turn(k)
        k += 1
    workers = _load(state, WORKERS)
    _store(state, WORKERS, 0)
    _store(state, LOCK, 0)
    for w in range(workers):
        _publish(state[HEADER + w * ROW:HEADER + (w + 1) * ROW], -1, PYTHON)


@njit(**_HOLDING_GIL)
def load(row, index):
    return _load(row, index)


@njit(**_HOLDING_GIL)
def store(row, index, value):
    _store(row, index, value)


def _blas_callback(sync, dojob, jobs, size, queue, argument):
    # OpenBLAS's exec_blas hands over ``jobs`` jobs (blas_queue_t entries, ``size`` bytes
    # each, linked by their ``next``) that must run at once: a threaded product's threads
    # wait for each other's packed panels. Job i runs as ``dojob(slot, &queue[i], argument)``
    # where ``slot`` picks OpenBLAS's per-thread status entry and buffer: slots from
    # OpenBLAS's own server threads' count up, so jobs here and in OpenBLAS's own threads
    # (LU factorization hands work to those directly) never share one.
    pointer = _state()  # (read once: a new pool may take its place meanwhile)
    state = carray(pointer, (HEADER,))
    k = 0
    while not _compare_swap(state, LOCK, 0, 1):  # one OpenBLAS call on the pool at a time
        _turn(k)
        k += 1
    workers = _load(state, WORKERS)
    state = carray(pointer, (HEADER + workers * ROW,))
    function, data = _address(dojob), _address(queue)
    jobs, size, argument = np.int64(jobs), np.int64(size), np.int64(argument)
    base = max(_load_int(_load(state, SERVER_THREADS)) - 1, 0)
    if (jobs - 1 <= workers and base + jobs <= _load(state, MAX_SLOTS)
            and _compare_swap(state, OWNER, 0, OPENBLAS)):
        sequence = _load(state, SEQUENCE) + 1
        _store(state, SEQUENCE, sequence)
        for i in range(1, jobs):
            row = state[HEADER + (i - 1) * ROW:HEADER + i * ROW]
            _store(row, FUNCTION, function)
            _store(row, DATA, data + i * size)
            _store(row, ARGUMENT, argument)
            _store(row, SLOT, base + i)
            _publish(row, sequence, BLAS_JOB)
        _run_job(function, base, data, argument)
        for i in range(1, jobs):
            row = state[HEADER + (i - 1) * ROW:HEADER + i * ROW]
            k = 0
            while _load(row, DONE) != sequence:  # (the jobs are short and balanced)
                _turn(k)
                k += 1
        _store(state, OWNER, 0)
    else:  # run_chunks holds the workers, or too few of them: OpenBLAS's own threads
        if jobs > 1:
            _run_queue(_load(state, EXEC_ASYNC), 1, data + size)
        _run_job(function, base, data, argument)
        if jobs > 1:
            _run_queue(_load(state, EXEC_WAIT), jobs - 1, data + size)
    _store(state, LOCK, 0)


_CALLBACK = []


def blas_callback_address() -> int:
    """The address of ``blas_callback``, a C function of OpenBLAS's
    ``openblas_threads_callback`` type, compiled (or loaded from numba's cache) on first
    use."""
    if not _CALLBACK:
        signature = types.void(types.int32, types.voidptr, types.int32, types.uintp,
                               types.voidptr, types.int32)
        _CALLBACK.append(cfunc(signature, cache=True)(_blas_callback))
    return _CALLBACK[0].address
