"""numba atomics (seq_cst load / store / exchange through llvmlite), pause, sched_yield and
the nogil spin waits of the spin-pool experiment in this folder's README."""
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from llvmlite import ir
# The atomics, pause and sched_yield are the library's now (backends/jit/spin.py: the same
# LLVM operations; the measured runs called libc's sched_yield through ctypes).
from tensornet.backends.jit.spin import (_load as load, _pause as pause, _store as store,
                                         _swap as xchg, _yield as sched_yield)

@intrinsic
def rdtsc(typingctx):
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen

@njit(nogil=True)
def wait_change(state, i, seen, spins):
    """spin until state[i] != seen or spins exhausted; returns the value."""
    for k in range(spins):
        v = load(state, i)
        if v != seen:
            return v
        if k & 63 == 63:
            sched_yield()
        else:
            pause()
    return load(state, i)

@njit(nogil=True)
def wait_equal(state, i, target, spins):
    for k in range(spins):
        if load(state, i) == target:
            return True
        if k & 63 == 63:
            sched_yield()
        else:
            pause()
    return load(state, i) == target

@njit(nogil=True)
def st(state, i, v):
    store(state, i, v)

@njit(nogil=True)
def ex(state, i, v):
    return xchg(state, i, v)

@njit(nogil=True)
def ld(state, i):
    return load(state, i)

@njit(nogil=True)
def finish_and_wait(state, done_i, main_sleep_i, seq, go_i, spins, probe, grace):
    """store done, report whether main sleeps (1) in the high part, then spin for the next
    GO: returns (main_was_sleeping, go value)."""
    store(state, done_i, seq)
    woke = xchg(state, main_sleep_i, 0)
    for k in range(spins):
        v = load(state, go_i)
        if v != seq:
            probe[7] = rdtsc()
            for g in range(grace):
                pause()
            return woke, v
        if k & 63 == 63:
            sched_yield()
        else:
            pause()
    return woke, load(state, go_i)

@njit(nogil=True)
def stamp(arr, i):
    arr[i] = rdtsc()

@njit
def stamp_gil(arr, i):
    arr[i] = rdtsc()

@njit
def publish(state, go_i, sleep_i, seq):
    """(holds the GIL) store GO, then whether the worker sleeps."""
    store(state, go_i, seq)
    return xchg(state, sleep_i, 0)

@njit(nogil=True)
def delay(spins):
    for k in range(spins):
        pause()
