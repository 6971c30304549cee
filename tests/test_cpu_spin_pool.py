"""The spin pool of ``backends/threads.py`` (the default where it can run OpenBLAS's work,
and ``tn.set_num_threads(n, blas=k < n)``; its OpenBLAS side: ``test_cpu_blas_pool.py``): every
chunk runs exactly once, errors come back after every chunk has finished, workers that fell
asleep wake up, other callers and forked children are served, and kernels give the same bits
as on one thread. (A forked child's pool: ``tests/test_cpu_kernels.py``.)"""
import contextlib
import faulthandler
import threading
import time

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import jit, threads
from tensornet.nn import functional as F

pytestmark = pytest.mark.skipif(jit.kernels("spin") is None, reason="needs numba")


@pytest.fixture(autouse=True)
def watchdog():
    """A lost wake-up would hang the run: print every thread's stack and stop instead."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("threadpoolctl sees no BLAS library")
    return controller


@contextlib.contextmanager
def spin_pool(n=2):
    blas = _blas()
    before = blas.info()[0]["num_threads"]
    tn.set_num_threads(n, blas=1)
    try:
        assert threads.spinning()
        yield
    finally:
        threads.reset_num_threads()
        blas.limit(limits=before)


def test_blas_threads_are_set_apart_and_the_default_follows_the_openblas_hook(monkeypatch):
    """``blas < n`` always spins; otherwise, and by default, the spin pool serves only
    when it can run OpenBLAS's work too (``TENSORNET_BLAS_POOL=0`` switches that off)."""
    blas = _blas()
    hooked = threads._OpenBLASHook.find() is not None
    with spin_pool(3):
        assert threads.num_threads() == 3
        assert blas.info()[0]["num_threads"] == 1
        with pytest.raises(ValueError, match="blas must be a positive integer"):
            tn.set_num_threads(2, blas=0)
    assert threads.spinning() == hooked  # reset: the default again
    before = blas.info()[0]["num_threads"]
    try:
        tn.set_num_threads(2)  # the BLAS as many threads
        assert threads.spinning() == hooked
        monkeypatch.setenv("TENSORNET_BLAS_POOL", "0")
        assert threads._OpenBLASHook.find() is None
        tn.set_num_threads(2)
        assert not threads.spinning()
        threads.reset_num_threads()
        assert not threads.spinning()
    finally:
        threads.reset_num_threads()
        blas.limit(limits=before)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("count", [2, 3, 7])
def test_every_chunk_runs_once(n, count):
    ran, lock = [], threading.Lock()

    def record(chunk):
        assert threads.num_threads() == 1  # no nested splits inside a chunk
        with lock:
            ran.append((chunk, threading.get_ident()))

    with spin_pool(n):
        for _ in range(50):
            ran.clear()
            threads.run_chunks(record, list(range(count)))
            assert sorted(chunk for chunk, _ in ran) == list(range(count))
    assert len({ident for _, ident in ran}) == min(n, count)


def test_an_error_in_any_chunk_is_raised_after_all_have_finished():
    finished = []

    def work(chunk):
        if chunk == "fail":
            raise KeyError(chunk)
        time.sleep(0.02)
        finished.append(chunk)

    with spin_pool():
        for chunks in (["fail", "slow"], ["slow", "fail"]):
            finished.clear()
            with pytest.raises(KeyError, match="fail"):
                threads.run_chunks(work, chunks)
            assert finished == ["slow"]
        threads.run_chunks(work, ["a", "b"])  # still serves after an error
        assert sorted(finished) == ["a", "b", "slow"]


def test_workers_that_fell_asleep_and_callers_that_slept_are_woken(monkeypatch):
    """With spins of a few turns both sides go to sleep on their futexes at almost
    every hand-off, in every order; nothing may be lost or run twice."""
    monkeypatch.setattr(threads, "SPIN_US", 0.0)
    monkeypatch.setattr(threads, "_pool_state", None)  # a new pool, built with that spin
    rng = np.random.default_rng(0)
    pauses = rng.choice([0.0, 0.0, 1e-5, 2e-4, 2e-3], size=(400, 2))
    total = [0]
    lock = threading.Lock()

    def work(pause):
        if pause:
            time.sleep(pause)
        with lock:
            total[0] += 1

    with spin_pool():
        for k, (gap, pause) in enumerate(pauses):
            if gap:
                time.sleep(gap)  # the worker's spin runs out
            threads.run_chunks(work, [pause if k % 2 else 0.0, 0.0 if k % 2 else pause])
            assert total[0] == 2 * (k + 1)  # both chunks finished before it returned


def test_callers_on_other_threads_are_served():
    results = {}

    def caller(name):
        values = np.arange(100_000, dtype=np.float64)
        for _ in range(100):
            out = np.empty_like(values)
            threads.run_chunks(lambda s: np.multiply(values[s], 2.0, out=out[s]),
                               [slice(0, 50_000), slice(50_000, None)])
            if not np.array_equal(out, values * 2.0):
                results[name] = "wrong"
                return
        results[name] = "ok"

    with spin_pool():
        callers = [threading.Thread(target=caller, args=(k,)) for k in range(3)]
        for thread in callers:
            thread.start()
        for thread in callers:
            thread.join(timeout=60)
    assert results == {0: "ok", 1: "ok", 2: "ok"}


def test_kernels_give_the_same_bits_as_on_one_thread(monkeypatch):
    monkeypatch.setattr(jit, "SPIN_CHUNK_MIN", 1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6, 12, 12)).astype(np.float32)
    grad = rng.standard_normal((8, 6, 12, 12)).astype(np.float32)

    def everything():
        xhat, *stats = F.normalize(x, (0, 2, 3), 1e-5)
        y, argmax = F.max_pool2d(x, (2, 2), (2, 2))
        relu = F.relu(x)
        return [xhat, *stats, *F.normalize_backward(grad, xhat, stats[2], (0, 2, 3)),
                y, argmax, relu, F.relu_backward(grad, relu)]

    with jit.switched(True):
        tn.set_num_threads(1)
        try:
            one = everything()
        finally:
            threads.reset_num_threads()
        with spin_pool():
            two = everything()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_with_the_compiled_kernels_switched_off_the_executor_serves():
    ran = []
    with spin_pool(), jit.disabled():
        threads.run_chunks(ran.append, [0, 1])
    assert sorted(ran) == [0, 1]
