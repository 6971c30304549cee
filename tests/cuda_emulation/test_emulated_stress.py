"""Odd shapes for the CUDA kernels, emulated: tile edges, partial warps and blocks, views.

Grids are sampled with a fixed seed (the full products would take hours on 2 cores); each
test's docstring says how many cases it runs. Sizes always include the edges of the kernels'
tiles (1, 15-17, 31-33, 63-65, 127-130) and of warps (31/32/33 classes).
"""
import numpy as np
import pytest

import tensornet as tn
from tensornet.nn import functional as F
from tensornet.backends import get_backend
from tensornet.backends.cuda_matmul import capture_safe_matmul
from tensornet.backends.geometry import window_output_size

pytestmark = pytest.mark.cuda_emulated

EDGES = [1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 130]
GEMM_CHUNKS, GEMM_PER_CHUNK = 32, 50      # 1,600 GEMMs
CE_CHUNKS, CE_PER_CHUNK = 4, 40           # 160 cross-entropy shapes
WINDOW_CHUNKS, WINDOW_PER_CHUNK = 8, 40   # 320 window geometries


@pytest.fixture
def cuda(cuda_emulation):
    return get_backend("cuda")


def _size(rng, high=130):
    return int(rng.choice(EDGES)) if rng.random() < 0.5 else int(rng.integers(1, high + 1))


def _operand(rng, rows, cols, batch, transpose, view, dtype):
    """A (batch,) rows x cols operand given as a transposed / strided / reversed view."""
    shape = (cols, rows) if transpose else (rows, cols)
    if view == "sliced":
        shape = (shape[0], 2 * shape[1] + 1)
    full = rng.standard_normal(((batch,) if batch else ()) + shape).astype(dtype)
    x = full[..., 1::2] if view == "sliced" else full[..., ::-1, :] if view == "reversed" else full
    return np.swapaxes(x, -1, -2) if transpose else x


def _gemm_case(rng):
    m, n, k = _size(rng), _size(rng), _size(rng)
    if rng.random() < 0.05:  # long K: the split-K path
        m, n, k = int(rng.integers(1, 20)), int(rng.integers(1, 20)), int(rng.integers(1024, 6000))
    batch = int(rng.choice([0, 0, 0, 2, 3]))
    dtype = "float64" if rng.random() < 0.2 else "float32"
    views = [str(rng.choice(["plain", "sliced", "reversed"])) for _ in range(2)]
    transposes = [bool(rng.integers(2)) for _ in range(2)]
    a = _operand(rng, m, k, batch, transposes[0], views[0], dtype)
    b = _operand(rng, k, n, batch, transposes[1], views[1], dtype)
    return a, b, dict(m=m, n=n, k=k, batch=batch, dtype=dtype, views=views, transposes=transposes)


@pytest.mark.parametrize("chunk", range(GEMM_CHUNKS))
def test_gemm_odd_shapes_transposes_and_views(cuda, chunk):
    """1,600 GEMMs in all (50 per chunk): M, N, K in 1..130 (half of them tile edges), either
    operand transposed, sliced or reversed, 2-D or batched, float32/float64, and a few with
    K in 1024..6000 (split-K)."""
    rng = np.random.default_rng(1000 + chunk)
    for _ in range(GEMM_PER_CHUNK):
        a, b, case = _gemm_case(rng)
        got = tn.asnumpy(capture_safe_matmul(cuda, cuda.asarray(a), cuda.asarray(b)))
        want = a.astype(np.float64) @ b.astype(np.float64)
        tol = (1e-4 if case["dtype"] == "float32" else 1e-11) * np.sqrt(case["k"])
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=str(case))


def _cross_entropy_case(rng):
    classes = int(rng.choice([1, 2, 31, 32, 33, 64, 65, 100, 255, 257, 999, 1000]
                             if rng.random() < 0.5 else rng.integers(1, 1001)))
    rows = int(rng.choice([1, 7, 8, 9, 16, 17, 33]) if rng.random() < 0.5
               else rng.integers(1, 70))
    label_dtype = str(rng.choice(["int64", "int32"] + (["uint8"] if classes <= 255 else [])))
    dtype = "float64" if rng.random() < 0.25 else "float32"
    eps = float(rng.choice([0.0, 0.1]))
    logits = (rng.standard_normal((rows, classes)) * rng.choice([1, 20])).astype(dtype)
    if rng.random() < 0.2:  # a row that is all -inf, or holds +inf or NaN
        logits[0, :] = -np.inf
        logits[-1, int(rng.integers(classes))] = rng.choice([np.inf, np.nan])
    labels = rng.integers(0, classes, rows).astype(label_dtype)
    return logits, labels, eps, dict(rows=rows, classes=classes, labels=label_dtype,
                                     dtype=dtype, eps=eps)


@pytest.mark.parametrize("chunk", range(CE_CHUNKS))
def test_cross_entropy_odd_shapes(cuda, chunk):
    """160 shapes in all: 1..1000 classes (half of them warp edges: 31/32/33, 64/65, ...),
    1..70 rows (8 rows per block: 7/8/9, 16/17), int64/int32/uint8 labels, label smoothing,
    float32/float64, and rows of -inf, +inf or NaN logits (which must match the generic code
    exactly, NaN for NaN)."""
    rng = np.random.default_rng(2000 + chunk)
    for _ in range(CE_PER_CHUNK):
        logits, labels, eps, case = _cross_entropy_case(rng)
        x, t = cuda.asarray(logits), cuda.asarray(labels)
        losses, log_probs = F.softmax_cross_entropy(x, t, eps)
        ref_losses, ref_log_probs = F.softmax_cross_entropy.generic(cuda, x, t, eps)
        grad = F.softmax_cross_entropy_backward(log_probs, t, 1.0 / len(labels), eps)
        ref_grad = F.softmax_cross_entropy_backward.generic(cuda, ref_log_probs, t,
                                                          1.0 / len(labels), eps)
        tol = dict(rtol=2e-5, atol=2e-5) if case["dtype"] == "float32" else dict(rtol=1e-12,
                                                                                atol=1e-12)
        for got, want in ((losses, ref_losses), (log_probs, ref_log_probs), (grad, ref_grad)):
            np.testing.assert_allclose(tn.asnumpy(got), tn.asnumpy(want), err_msg=str(case),
                                       **tol)


def _window_case(rng):
    while True:
        kernel = tuple(int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.integers(1, 4, 2))
        dilation = tuple(int(v) for v in rng.integers(1, 3, 2))
        padding = tuple((int(rng.integers(0, k // 2 + 1)), int(rng.integers(0, k // 2 + 1)))
                        for k in kernel)
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 5)),
                 int(rng.integers(1, 13)), int(rng.integers(1, 13)))
        if min(window_output_size(shape, kernel, stride, padding, dilation)) >= 1:
            return shape, kernel, stride, padding, dilation


@pytest.mark.parametrize("chunk", range(WINDOW_CHUNKS))
def test_window_kernels_random_geometries(cuda, chunk):
    """320 geometries in all: kernel 1..4, stride 1..3, dilation 1..2, asymmetric padding up
    to half the kernel, inputs 1..12 square or not; a third of them with NaNs (which the
    pooling arg-max must route as the generic code does). im2col and max-pool must match
    exactly, col2im and max-pool backward to rounding."""
    rng = np.random.default_rng(3000 + chunk)
    for _ in range(WINDOW_PER_CHUNK):
        shape, kernel, stride, padding, dilation = geometry = _window_case(rng)
        host = rng.integers(-3, 4, shape).astype(np.float32)  # ties
        if rng.random() < 0.33:
            host[rng.random(shape) < 0.2] = np.nan
        x = cuda.asarray(host)
        case = str(geometry)
        cols = F.im2col(x, kernel, stride, padding, dilation)
        np.testing.assert_array_equal(tn.asnumpy(cols), tn.asnumpy(
            F.im2col.generic(cuda, x, kernel, stride, padding, dilation)), err_msg=case)
        dcols = cuda.asarray(rng.standard_normal(cols.shape).astype(np.float32))
        np.testing.assert_allclose(
            tn.asnumpy(F.col2im(dcols, shape, kernel, stride, padding, dilation)),
            tn.asnumpy(F.col2im.generic(cuda, dcols, shape, kernel, stride, padding, dilation)),
            rtol=1e-6, atol=1e-6, err_msg=case)
        y, argmax = F.max_pool2d(x, kernel, stride, padding, dilation)
        ref_y, ref_argmax = F.max_pool2d.generic(cuda, x, kernel, stride, padding, dilation)
        np.testing.assert_array_equal(tn.asnumpy(y), tn.asnumpy(ref_y), err_msg=case)
        np.testing.assert_array_equal(tn.asnumpy(argmax), tn.asnumpy(ref_argmax), err_msg=case)
        grad = cuda.asarray(rng.standard_normal(y.shape).astype(np.float32))
        np.testing.assert_allclose(
            tn.asnumpy(F.max_pool2d_backward(grad, argmax, shape, kernel, stride, padding,
                                                dilation)),
            tn.asnumpy(F.max_pool2d_backward.generic(cuda, grad, argmax, shape, kernel, stride,
                                                   padding, dilation)),
            rtol=1e-6, atol=1e-6, err_msg=case)
