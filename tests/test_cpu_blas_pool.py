"""OpenBLAS's threaded work on tensornet's spin pool (``backends/threads.py``,
``_OpenBLASHook``; ``backends/jit/spin.py``, ``blas_callback``): the same bits as OpenBLAS's
own threads, every caller served (other Python threads, LAPACK, products inside split
work, more jobs than workers), forked children and a switched-off hook fall back to
OpenBLAS, and closing the pool unhooks it."""
import faulthandler
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import threads

threadpoolctl = pytest.importorskip("threadpoolctl")
if threads._spin_kernels() is None or threads._OpenBLASHook.find() is None:
    pytest.skip("needs numba on Linux and OpenBLAS >= 0.3.27 on pthreads",
                allow_module_level=True)
spin = threads._spin_kernels()


@pytest.fixture(autouse=True)
def watchdog():
    """A lost wake-up or a deadlock would hang the run: print every stack and stop."""
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def pool():
    """A spin pool of 2 threads with the BLAS on 2 threads, hooked into OpenBLAS."""
    controller = threadpoolctl.ThreadpoolController().select(user_api="blas")
    before = controller.info()[0]["num_threads"]
    tn.set_num_threads(2)
    try:
        current = threads._pool_state[1]
        assert isinstance(current, threads._SpinPool) and current._hook is not None
        yield current
    finally:
        threads.reset_num_threads()
        controller.limit(limits=before)


def _served(pool) -> int:
    return int(spin.load(pool._state, spin.SEQUENCE))


def _products(rng):
    """Products OpenBLAS threads: float32 and float64 GEMMs of the MLP's and a conv's shapes,
    a large square one, a transposed one, and a matrix-vector product."""
    out = []
    for shape, dtype in [((128, 784, 256), np.float32), ((784, 128, 256), np.float32),
                         ((8192, 72, 16), np.float32), ((300, 500, 400), np.float64),
                         ((1000, 1000, 1000), np.float32)]:
        m, k, n = shape
        a = rng.standard_normal((m, k)).astype(dtype)
        b = rng.standard_normal((k, n)).astype(dtype)
        out += [a @ b, a.T.copy().T @ b, b.T @ a.T]
    big = rng.standard_normal((4000, 3000)).astype(np.float32)
    out.append(big @ rng.standard_normal(3000).astype(np.float32))
    return out


def test_products_give_the_bits_of_openblas_own_threads(pool):
    served = _served(pool)
    on_pool = _products(np.random.default_rng(0))
    assert _served(pool) > served + 10  # the work did run through the callback
    pool._hook._setter(None)  # OpenBLAS's own threads, as many of them
    try:
        own = _products(np.random.default_rng(0))
    finally:
        pool._hook._setter(spin.blas_callback_address())
    for a, b in zip(on_pool, own):
        np.testing.assert_array_equal(a, b)
    assert not np.shares_memory(on_pool[0], own[0])


def _check_products(failures, name, rounds=30):
    rng = np.random.default_rng(len(name))
    a = rng.standard_normal((256, 600)).astype(np.float32)
    b = rng.standard_normal((600, 300)).astype(np.float32)
    expected = a.astype(np.float64) @ b
    for _ in range(rounds):
        if not np.allclose(a @ b, expected, rtol=1e-4, atol=1e-3):
            failures.append(name)
            return


def test_products_from_other_threads_linear_algebra_and_split_work_at_once(pool):
    """Three Python threads multiplying, one solving (OpenBLAS's LU hands work to its own
    threads directly), while this thread runs split work that itself multiplies."""
    failures = []
    rng = np.random.default_rng(1)
    system = rng.standard_normal((700, 700)) + 700 * np.eye(700)
    rhs = rng.standard_normal((700, 3))

    def solve():
        for _ in range(10):
            if not np.allclose(system @ np.linalg.solve(system, rhs), rhs, atol=1e-8):
                failures.append("solve")
                return

    workers = [threading.Thread(target=_check_products, args=(failures, f"t{k}"))
               for k in range(3)] + [threading.Thread(target=solve)]
    for thread in workers:
        thread.start()
    for _ in range(30):  # a product inside a chunk: OpenBLAS's own threads serve it
        threads.run_chunks(lambda name: _check_products(failures, name, rounds=1),
                           ["caller", "worker"])
    for thread in workers:
        thread.join(timeout=100)
    assert failures == []
    assert not any(thread.is_alive() for thread in workers)


def test_more_jobs_than_threads_run_on_openblas_threads(pool):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((1000, 1000)).astype(np.float32)
    expected = a.astype(np.float64) @ a
    with threadpoolctl.threadpool_limits(limits=4, user_api="blas"):  # 4 jobs, 1 worker
        np.testing.assert_allclose(a @ a, expected, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(a @ a, expected, rtol=1e-4, atol=1e-2)


def test_a_new_pool_takes_over_and_closing_unhooks(pool):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    expected = a @ a
    tn.set_num_threads(3)  # a pool of 2 workers replaces the pool of 1
    bigger = threads._pool_state[1]
    assert bigger is not pool and bigger.workers == 2 and bigger._hook is not None
    served = _served(bigger)
    np.testing.assert_array_equal(a @ a, expected)
    assert _served(bigger) > served
    assert spin.load(pool._state, spin.WORKERS) == 0  # the old one is closed
    bigger.close()
    threads._pool_state = None
    served = _served(bigger)
    np.testing.assert_array_equal(a @ a, expected)  # OpenBLAS's own threads again
    assert _served(bigger) == served


_CHILD = """
import os, sys, numpy as np, tensornet as tn
from tensornet.backends import threads
tn.set_num_threads(2)
a = np.random.default_rng(0).standard_normal((800, 800)).astype(np.float32)
expected = a @ a
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(a @ a, expected) else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status), threads._pool_state[1]._hook is not None)
"""


def test_a_forked_child_multiplies_on_openblas_threads():
    result = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                            timeout=100)
    assert result.stdout.split() == ["child", "0", "True"], result.stderr


def test_tensornet_blas_pool_0_leaves_openblas_alone():
    code = ("import tensornet as tn; from tensornet.backends import threads; "
            "tn.set_num_threads(2); print(threads._OpenBLASHook.find(), threads.spinning())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=100, env={**os.environ, "TENSORNET_BLAS_POOL": "0"})
    assert result.stdout.split() == ["None", "False"], result.stderr
