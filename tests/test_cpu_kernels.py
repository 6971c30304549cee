"""The NumPy backend's fast paths (numba kernels, and the pure-NumPy code used without
numba) against the generic array-API versions, in float32 and float64, on odd shapes and
non-contiguous inputs; and their results do not depend on the thread count.
"""
import contextlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend, jit, threads
from tensornet.nn import functional as F

CPU = get_backend("cpu")
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


PATHS = [pytest.param("numba", marks=pytest.mark.skipif(not _has_numba(),
                                                         reason="numba is not installed")),
         "numpy"]


@pytest.fixture(params=PATHS)
def path(request):
    """'numba': the compiled kernels; 'numpy': the pure-NumPy overrides (numba off)."""
    with jit.switched(request.param == "numba"):
        yield request.param


@contextlib.contextmanager
def thread_count(n):
    threads.set_num_threads(n)
    try:
        yield
    finally:
        threads.reset_num_threads()


def _images(shape, dtype, layout, seed=0):
    """(N, C, ...) data as a contiguous array, a (C, N, ...)-memory view (a Conv2d
    output) or a slice strided along the last axis."""
    rng = np.random.default_rng(seed)
    if layout == "contiguous":
        return rng.standard_normal(shape).astype(dtype)
    if layout == "channel_major":
        swapped = (shape[1], shape[0]) + tuple(shape[2:])
        return rng.standard_normal(swapped).astype(dtype).swapaxes(0, 1)
    wide = tuple(shape[:-1]) + (2 * shape[-1],)
    return rng.standard_normal(wide).astype(dtype)[..., ::2]


LAYOUTS = ["contiguous", "channel_major", "strided"]


def _close_sums(got, want, dtype):
    """Sums over many terms: the absolute tolerance follows the largest value (the
    summation order differs from the generic version's)."""
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["atol"] * scale * 4)


# ---------------------------------------------------------------------- im2col / col2im
GEOMETRIES = [  # (x shape, kernel, stride, padding, dilation)
    ((3, 2, 7, 9), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 3, 9, 8), (3, 2), (2, 1), ((1, 0), (0, 1)), (1, 1)),
    ((2, 1, 10, 11), (3, 3), (2, 3), ((2, 2), (1, 1)), (2, 1)),
    ((1, 4, 5, 5), (5, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((2, 2, 4, 6), (1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((3, 2, 1, 4), (5, 3), (1, 1), ((2, 2), (1, 1)), (1, 1)),  # rows shift past the plane
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_and_col2im_match_generic(path, dtype, layout, geometry):
    shape, kernel, stride, padding, dilation = geometry
    x = _images(shape, dtype, layout)
    cols = F.im2col(x, kernel, stride, padding, dilation)
    ref = F.im2col.generic(CPU, x, kernel, stride, padding, dilation)
    assert cols.dtype == dtype and cols.shape == ref.shape and cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, ref)
    dcols = np.random.default_rng(1).standard_normal(ref.shape).astype(dtype)
    dcols = dcols.reshape(ref.shape[0] * ref.shape[1] * ref.shape[2], -1)  # a GEMM's layout
    dx = F.col2im(dcols, shape, kernel, stride, padding, dilation)
    ref_dx = F.col2im.generic(CPU, dcols, shape, kernel, stride, padding, dilation)
    assert dx.dtype == dtype and dx.shape == shape
    np.testing.assert_allclose(dx, ref_dx, **TOL[dtype])


# ---------------------------------------------------------------------- max pool
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape,kernel", [((3, 5, 8, 6), (2, 2)), ((2, 3, 9, 6), (3, 2)),
                                          ((1, 2, 4, 4), (4, 4))])
def test_tiling_max_pool_matches_generic(path, dtype, layout, shape, kernel):
    x = _images(shape, dtype, layout)
    x[0, 0, 0, :2] = 7.0     # a tie inside the first window: the first offset wins
    x[-1, -1, -kernel[0]:, -kernel[1]:] = np.nan    # a NaN window propagates
    y, argmax = F.max_pool2d(x, kernel, kernel)
    ref_y, ref_argmax = F.max_pool2d.generic(CPU, x, kernel, kernel)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(argmax.astype(np.int64), ref_argmax)
    grad = np.random.default_rng(2).standard_normal(y.shape).astype(dtype)
    dx = F.max_pool2d_backward(grad, argmax, shape, kernel, kernel)
    ref_dx = F.max_pool2d_backward.generic(CPU, grad, ref_argmax, shape, kernel, kernel)
    np.testing.assert_array_equal(dx, ref_dx)


# ---------------------------------------------------------------------- ReLU, cross-entropy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_relu_forward_and_backward_match_generic(path, dtype, layout):
    x = _images((3, 4, 5, 7), dtype, layout)
    x[0, 0, 0, :3] = (np.nan, 0.0, -0.0)
    y = F.relu(x)
    np.testing.assert_array_equal(y, F.relu.generic(CPU, x))
    grad = _images((3, 4, 5, 7), dtype, "contiguous", seed=5)
    np.testing.assert_array_equal(F.relu_backward(grad, y), F.relu_backward.generic(CPU, grad, y))
    grad_other = _images((3, 4, 5, 7), dtype, "channel_major", seed=6)
    np.testing.assert_array_equal(F.relu_backward(grad_other, y),
                                  F.relu_backward.generic(CPU, grad_other, y))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (13, 1), (37, 29)])
def test_bias_relu_and_its_backward_match_generic_bitwise(path, dtype, shape):
    """A Linear's bias with the ReLU after it (fusion.py): the same bits as the separate
    steps, signed zeros and NaN included; the bias gradient's sums in NumPy's order."""
    rng = np.random.default_rng(11)
    y = (rng.standard_normal(shape) * 3).astype(dtype)
    bias = rng.standard_normal(shape[1]).astype(dtype)
    y.flat[:2] = (np.nan, -0.0)
    want = F.bias_relu.generic(CPU, y.copy(), bias)
    got = F.bias_relu(y.copy(), bias)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    grad = (rng.standard_normal(shape) * 100).astype(dtype)
    grad.flat[-1:] = -0.0  # a column whose rows all mask or hold -0: the sum keeps its sign
    for out in (None, np.full(shape[1], 7, dtype)):
        masked, sums = F.relu_backward_sum(grad, got, out=None if out is None else out.copy())
        want_masked, want_sums = F.relu_backward_sum.generic(CPU, grad, want)
        assert masked.dtype == sums.dtype == dtype and sums.shape == (shape[1],)
        np.testing.assert_array_equal(masked, want_masked)
        np.testing.assert_array_equal(sums, want_sums)
        assert np.array_equal(np.signbit(sums), np.signbit(want_sums))


def test_relu_backward_sum_writes_into_out():
    y = np.abs(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    out = np.empty(4, np.float32)
    _, sums = F.relu_backward_sum(np.ones_like(y), y, out=out)
    assert sums is out
    np.testing.assert_array_equal(out, np.full(4, 5, np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("label_dtype", [np.int64, np.uint8, np.int32])
def test_softmax_cross_entropy_matches_generic(path, dtype, smoothing, label_dtype):
    rng = np.random.default_rng(3)
    logits = (4 * rng.standard_normal((13, 7))).astype(dtype)
    labels = rng.integers(0, 7, 13).astype(label_dtype)
    losses, log_probs = F.softmax_cross_entropy(logits.T.copy().T, labels, smoothing)
    ref_losses, ref_log_probs = F.softmax_cross_entropy.generic(CPU, logits, labels, smoothing)
    np.testing.assert_allclose(losses, ref_losses, **TOL[dtype])
    np.testing.assert_allclose(log_probs, ref_log_probs, **TOL[dtype])
    grad = F.softmax_cross_entropy_backward(log_probs, labels, 1 / 13, smoothing)
    ref = F.softmax_cross_entropy_backward.generic(CPU, ref_log_probs, labels, 1 / 13, smoothing)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, ref, **TOL[dtype])


# ---------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", [(5, 3, 7, 9), (4, 6, 11)])
def test_batch_norm_statistics_and_backward_match_generic(path, dtype, layout, shape):
    x = _images(shape, dtype, layout)
    x *= 2.0
    x += 3.0
    axes = (0,) + tuple(range(2, x.ndim))
    out = F.normalize(x, axes, 1e-5)
    ref = F.normalize.generic(CPU, x, axes, 1e-5)
    for got, want in zip(out, ref):
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])
    grad = _images(shape, dtype, "channel_major", seed=7)
    scale = np.linspace(0.5, 2.0, x.shape[1]).astype(dtype).reshape(ref[3].shape) * ref[3]
    back = F.normalize_backward(grad, ref[0], scale, axes)
    ref_back = F.normalize_backward.generic(CPU, grad, ref[0], scale, axes)
    for got, want in zip(back, ref_back):
        assert got.shape == want.shape and got.dtype == dtype
        np.testing.assert_allclose(got, want, **TOL[dtype])


# ---------------------------------------------------------------------- thread counts
def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    """Every compiled kernel (parallel from its smallest size up here) gives the same bits
    on one thread and on several. (The convolution's GEMMs are the BLAS library's, which
    may not: see the next test.)"""
    monkeypatch.setattr(jit, "CHUNK_MIN", 1)
    x = _images((8, 6, 12, 12), np.float32, "channel_major")
    grad = _images((8, 6, 12, 12), np.float32, "contiguous", seed=4)

    def everything():
        xhat, *stats = F.normalize(x, (0, 2, 3), 1e-5)
        back = F.normalize_backward(grad, xhat, stats[2], (0, 2, 3))
        cols = F.im2col(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
        dx = F.col2im(cols, x.shape, (3, 3), (1, 1), ((1, 1), (1, 1)))
        y, argmax = F.max_pool2d(x, (2, 2), (2, 2))
        relu = F.relu(x)
        rows, bias = x.reshape(48, -1), grad[0, 0].reshape(-1)  # (48, 144), (144,)
        fused = F.bias_relu(rows.copy(), bias)
        return [xhat, *stats, *back, cols, dx, y, argmax, relu, F.relu_backward(grad, relu),
                fused, *F.relu_backward_sum(grad.reshape(48, -1), fused)]

    with jit.switched(True), thread_count(1):
        one = everything()
    with jit.switched(True), thread_count(2):
        two = everything()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
@pytest.mark.parametrize("setting", ["2", "2, blas=1"])
def test_a_forked_child_runs_split_work_instead_of_waiting_forever(setting):
    """The pool's threads do not survive os.fork; a child that split work over the
    parent's pool object waited forever for them (a forked data-loading worker, say).
    Both pools: the executor, and the spin pool of ``set_num_threads(2, blas=1)``."""
    if "blas" in setting and jit.kernels("spin") is None:
        pytest.skip("the spin pool needs numba")
    script = textwrap.dedent(f"""
        import os
        from tensornet.backends import threads
        threads.set_num_threads({setting})
        threads.run_chunks(lambda chunk: None, [0, 1])  # the parent's pool is running
        pid = os.fork()
        if pid == 0:
            ran = []
            threads.run_chunks(ran.append, [0, 1, 2])
            os._exit(0 if sorted(ran) == [0, 1, 2] else 3)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
    """)
    done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True,
                          text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr


def test_set_num_threads_sets_blas_and_tensornet(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    if not blas.lib_controllers:
        pytest.skip("threadpoolctl sees no BLAS library")
    before = blas.info()[0]["num_threads"]
    try:
        tn.set_num_threads(1)
        assert threads.num_threads() == 1 and tn.get_num_threads() == 1
        assert threadpoolctl.ThreadpoolController().select(user_api="blas").info()[0][
            "num_threads"] == 1
    finally:
        threads.reset_num_threads()
        blas.limit(limits=before)
    with threadpoolctl.threadpool_limits(1):   # the user's setting, followed
        assert threads.num_threads() == 1
    with pytest.raises(ValueError, match="positive integer"):
        tn.set_num_threads(0)


@pytest.mark.parametrize("n", [np.int64(1), np.int32(2)])
def test_set_num_threads_takes_numpy_integers(n):
    # (they were refused as "n must be a positive integer, got np.int64(1)")
    try:
        tn.set_num_threads(n)
        assert threads.num_threads() == int(n) and type(threads.num_threads()) is int
    finally:
        threads.reset_num_threads()


@pytest.mark.parametrize("n", [1.0, "2", True, None, np.float64(2.0)])
def test_set_num_threads_refuses_what_is_not_a_positive_integer(n):
    with pytest.raises(ValueError, match="positive integer"):
        tn.set_num_threads(n)


# ---------------------------------------------------------------------- convolution
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "channel_major"])
@pytest.mark.parametrize("geometry", GEOMETRIES[:3])
@pytest.mark.parametrize("block", [1 << 17, 40])   # one block, and a block per image or two
def test_conv2d_forward_and_backward_match_generic(path, dtype, layout, geometry, block,
                                                   monkeypatch):
    from tensornet.backends import numpy_conv
    monkeypatch.setattr(numpy_conv, "_BLOCK", block)
    shape, kernel, stride, padding, dilation = geometry
    rng = np.random.default_rng(8)
    x = _images(shape, dtype, layout)
    weight = rng.standard_normal((5, shape[1]) + kernel).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype)
    y, cache = F.conv2d(x, weight, bias, stride, padding, dilation, 1)
    ref_y, ref_cache = F.conv2d.generic(CPU, x, weight, bias, stride, padding, dilation, 1)
    _close_sums(y, ref_y, dtype)
    grad = rng.standard_normal(y.shape).astype(dtype).transpose(1, 0, 2, 3).copy() \
        .transpose(1, 0, 2, 3)
    slot = np.zeros(weight.shape, dtype)
    for input_grad in (True, False):
        dx, dw = F.conv2d_backward(grad, cache, weight, stride, padding, dilation, 1,
                                   weight_grad_out=slot, input_grad=input_grad)
        ref_dx, ref_dw = F.conv2d_backward.generic(CPU, grad, ref_cache, weight, stride,
                                                   padding, dilation, 1)
        assert dw is slot
        _close_sums(dw, ref_dw, dtype)
        if input_grad:
            assert dx.shape == shape and dx.dtype == dtype
            _close_sums(dx, ref_dx, dtype)
        else:
            assert dx is None
    # either version takes the other's cache
    dx, dw = F.conv2d_backward.generic(CPU, grad, cache, weight, stride, padding, dilation, 1)
    _close_sums(dx, ref_dx, dtype)
    _, no_dw = F.conv2d_backward(grad, cache, weight, stride, padding, dilation, 1,
                                 weight_grad=False)
    assert no_dw is None


# ---------------------------------------------------------------------- whole training steps
def _train_cnn(steps=3, adam=True):
    tn.manual_seed(11)
    nn = tn.nn
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 9, 10))
    opt = (tn.optim.Adam(model.parameters(), lr=1e-2) if adam
           else tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    rng = np.random.default_rng(5)
    for _ in range(steps):
        x = rng.standard_normal((16, 1, 12, 12)).astype(np.float32)
        y = rng.integers(0, 10, 16)
        tn.train_step(model, tn.nn.CrossEntropyLoss(), opt, x, y)
    return [np.array(p.data) for p in model.parameters()]


def test_seeded_training_is_bit_reproducible_with_parallel_kernels(monkeypatch):
    """Every kernel split over two threads (the smallest chunks), twice: the same bits.
    (The BLAS library is not thread-count independent itself: OpenBLAS 0.3.31 computes a
    128x784 @ 784x128 product differently on one thread than on two; so a run repeats
    bit for bit at a fixed thread count.)"""
    monkeypatch.setattr(jit, "CHUNK_MIN", 1)
    with thread_count(2):
        first, second = _train_cnn(), _train_cnn()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_training_with_numba_kernels_matches_the_numpy_path():
    """SGD, whose step is linear in the gradient: Adam would turn the rounding noise of a
    gradient that is zero in exact arithmetic (a bias before BatchNorm) into +-lr steps."""
    with jit.switched(True):
        compiled = _train_cnn(adam=False)
    with jit.disabled():
        plain = _train_cnn(adam=False)
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


_FAULTS = """
import resource, numpy as np, tensornet as tn
nn = tn.nn
tn.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(784, 10))
opt = tn.optim.Adam(model.parameters())
x = np.random.default_rng(0).random((128, 1, 28, 28), dtype=np.float32)
y = np.arange(128) % 10
def step():
    tn.train_step(model, nn.CrossEntropyLoss(), opt, x, y)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_step(env) -> float:
    import os
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


def test_training_steps_reuse_freed_memory_instead_of_faulting_it_in_again():
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the allocator policy is glibc's")
    tuned = _faults_per_step({})
    untuned = _faults_per_step({"TENSORNET_MALLOC_TUNING": "0"})
    assert tuned < 50, (tuned, untuned)   # a step touches ~6 MB of fresh pages untuned
