"""The flags of the spinning thread pool (``backends/threads.py``, ``_SpinPool``): atomic
loads, stores and exchanges of int64 flags, and the waits its threads spin in without the
GIL.

numba has no atomics of its own. ``_load``, ``_store`` and ``_swap`` emit LLVM's seq_cst
``load atomic`` / ``store atomic`` / ``atomicrmw xchg`` (a plain load in a loop could be
hoisted out of it). A waiting thread spins on one flag with the CPU's ``pause`` and calls
``sched_yield`` every 64 turns, so a thread that needs its core gets it.

Each thread's flags are one row of an int64 array, every flag on its own 64-byte line:
``GO`` (the caller writes the sequence number of new work, -1 to stop), ``SLEEPING`` (a
worker about to sleep on its semaphore), ``DONE`` (the worker writes the sequence number
it finished) and ``WAITING`` (the caller about to sleep on its semaphore). A thread that
goes to sleep first sets its flag, then looks at the other side's flag once more; the
other side swaps the flag back to 0 and releases the semaphore only when it was 1. With
seq_cst operations one of the two always sees the other, so no wake-up is lost.

Functions that hold the GIL (``publish`` and the plain flag operations) are compiled
without ``nogil``: calling them never lets another thread take the GIL, which would make
the caller sleep on CPython's GIL condition variable (20-25 us on the 2-core VM).
"""
from __future__ import annotations

import platform
import sys

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

GO, SLEEPING, DONE, WAITING = 0, 8, 16, 24  # int64 offsets: one 64-byte line each
ROW = 32

_OPTIONS = dict(cache=True, nogil=True)
_HOLDING_GIL = dict(cache=True)
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_POSIX = sys.platform != "win32"


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
def _wait_for_work(row, seen, turns, grace):
    for k in range(turns):
        value = _load(row, GO)
        if value != seen:
            # Let the caller reach its own chunk's compiled code, which lets go of the
            # GIL, before this thread asks for the GIL: asking while the caller holds it
            # puts this thread to sleep on CPython's condition variable.
            for g in range(grace):
                _pause()
            return value
        _turn(k)
    return _load(row, GO)


@njit(**_OPTIONS)
def wait_for_work(row, seen, turns, grace):
    """(a worker, without the GIL) Spin until ``row[GO]`` differs from ``seen``, at most
    ``turns`` turns; returns it (``seen`` when the time ran out)."""
    return _wait_for_work(row, seen, turns, grace)


@njit(**_OPTIONS)
def finish_and_wait(row, sequence, turns, grace):
    """(a worker, without the GIL) Mark work ``sequence`` done, then wait for the next as
    ``wait_for_work``. Returns (1 if the caller sleeps and must be woken else 0, GO)."""
    _store(row, DONE, sequence)
    waiting = _swap(row, WAITING, 0)
    return waiting, _wait_for_work(row, sequence, turns, grace)


@njit(**_OPTIONS)
def wait_until_done(row, sequence, turns):
    """(the caller, without the GIL) Spin until ``row[DONE] == sequence``, at most
    ``turns`` turns; True when it is."""
    for k in range(turns):
        if _load(row, DONE) == sequence:
            return True
        _turn(k)
    return _load(row, DONE) == sequence


@njit(**_HOLDING_GIL)
def publish(row, sequence):
    """(the caller, holding the GIL) Hand work ``sequence`` to the row's worker; returns 1
    when the worker sleeps and its semaphore must be released."""
    _store(row, GO, sequence)
    return _swap(row, SLEEPING, 0)


@njit(**_HOLDING_GIL)
def load(row, index):
    return _load(row, index)


@njit(**_HOLDING_GIL)
def store(row, index, value):
    _store(row, index, value)


@njit(**_HOLDING_GIL)
def swap(row, index, value):
    return _swap(row, index, value)
