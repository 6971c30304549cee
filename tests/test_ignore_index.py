"""The fused softmax cross-entropy kernels with ``ignore_index`` (PyTorch's default -100, or
a class index): an ignored row gets loss 0 and a 0 gradient row, the forward counts the other
rows on the device (the mean's divisor), and any other label outside [0, C) still gives its
row NaN. Each backend against the generic version without ignore_index on the kept rows."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend, jit
from tensornet.nn import functional as F

gpu = pytest.mark.gpu


# ---------------------------------------------------------------------- the kernels
def _check_kernels(backend, dtype, label_dtype, ignore_index, eps, rng):
    """The backend's softmax_cross_entropy(_backward) with ``ignore_index`` against the
    generic versions without it on the rows that are kept."""
    n, c = 11, 4
    labels = rng.integers(0, c, n)
    labels[[1, 4, 8]] = ignore_index
    if label_dtype.startswith("int"):
        labels[[2, 9]] = [-1, c]  # out of range, not ignored
    labels = labels.astype(label_dtype)
    stray = (labels.astype(np.int64) < 0) | (labels.astype(np.int64) >= c)
    stray &= labels.astype(np.int64) != ignore_index
    ignored = labels.astype(np.int64) == ignore_index
    x = backend.asarray((rng.standard_normal((n, c)) * 3).astype(dtype))
    y = backend.asarray(labels)
    losses, log_probs, kept = F.softmax_cross_entropy(x, y, eps, ignore_index)
    ref_losses, ref_log_probs = F.softmax_cross_entropy.generic(backend, x, y, eps)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
    losses, ref_losses = tn.asnumpy(losses), tn.asnumpy(ref_losses)
    assert tuple(kept.shape) == () and tn.asnumpy(kept).dtype == np.dtype(dtype)
    assert float(tn.asnumpy(kept)) == n - ignored.sum()
    np.testing.assert_array_equal(losses[ignored], 0.0)
    assert np.isnan(losses[stray]).all()
    keep = ~ignored & ~stray
    np.testing.assert_allclose(losses[keep], ref_losses[keep], **tol)
    np.testing.assert_allclose(tn.asnumpy(log_probs), tn.asnumpy(ref_log_probs), **tol)
    grad = tn.asnumpy(F.softmax_cross_entropy_backward(log_probs, y, 0.5, eps, ignore_index,
                                                       kept))
    ref = tn.asnumpy(F.softmax_cross_entropy_backward.generic(backend, ref_log_probs, y, 0.5,
                                                              eps))
    np.testing.assert_array_equal(grad[ignored], 0.0)
    assert np.isnan(grad[stray]).all()
    np.testing.assert_allclose(grad[keep], ref[keep] / (n - ignored.sum()), **tol)
    # every row ignored: kept is 0 and the gradient 0, not 0 * (1 / 0)
    y = backend.asarray(np.full(n, ignore_index).astype(label_dtype))
    losses, log_probs, kept = F.softmax_cross_entropy(x, y, eps, ignore_index)
    assert float(tn.asnumpy(kept)) == 0.0 and not tn.asnumpy(losses).any()
    grad = F.softmax_cross_entropy_backward(log_probs, y, 1.0, eps, ignore_index, kept)
    np.testing.assert_array_equal(tn.asnumpy(grad), np.zeros((n, c)))


KERNEL_CASES = [("float32", "int64", -100, 0.0), ("float64", "int64", -100, 0.1),
                ("float32", "int32", 2, 0.0), ("float64", "uint8", 3, 0.2)]


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("dtype, label_dtype, ignore_index, eps", KERNEL_CASES)
def test_cpu_kernels_ignore_rows_and_count_the_rest(device, compiled, dtype, label_dtype,
                                                    ignore_index, eps, rng):
    with jit.switched(compiled):
        _check_kernels(get_backend(device), dtype, label_dtype, ignore_index, eps, rng)


@gpu
@pytest.mark.parametrize("dtype, label_dtype, ignore_index, eps", KERNEL_CASES)
def test_cuda_kernels_ignore_rows_and_count_the_rest(dtype, label_dtype, ignore_index, eps,
                                                     rng):
    _check_kernels(get_backend("cuda"), dtype, label_dtype, ignore_index, eps, rng)


@gpu
@pytest.mark.parametrize("blocks", [1, 3])
def test_cuda_forward_counts_rows_beyond_one_grid(blocks, monkeypatch, rng):
    """More rows than the capped grid has warps: each warp strides over several rows, and
    the blocks' counts add up (the cap lowered so that a few hundred rows need it)."""
    from tensornet.backends import cupy as cupy_backend
    monkeypatch.setattr(cupy_backend, "CROSS_ENTROPY_MAX_BLOCKS", blocks)
    cuda = get_backend("cuda")
    labels = rng.integers(0, 5, 301)
    labels[rng.permutation(301)[:77]] = -100
    x = cuda.asarray(rng.standard_normal((301, 5)).astype(np.float32))
    losses, log_probs, kept = F.softmax_cross_entropy(x, cuda.asarray(labels), 0.0, -100)
    ref_losses, ref_log_probs, _ = F.softmax_cross_entropy.generic(
        cuda, x, cuda.asarray(labels), 0.0, -100)
    assert float(tn.asnumpy(kept)) == 301 - 77
    np.testing.assert_allclose(tn.asnumpy(losses), tn.asnumpy(ref_losses), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(log_probs), tn.asnumpy(ref_log_probs), rtol=1e-5,
                               atol=1e-6)
