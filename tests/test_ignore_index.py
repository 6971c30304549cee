"""PyTorch's default ``ignore_index=-100`` honoured by CrossEntropyLoss and NLLLoss with the
loss's checks off (GPU default, ``check=False``) on every backend: an ignored row adds 0 to
the loss and to the gradient, ``"mean"`` divides by the number of the other rows (counted on
the device, never read on the host), and any other label outside [0, C) still gives its row
NaN. It used to be NaN for -100 too (the fused kernels knew no ignore_index), so a batch of
-100-padded sequences trained on NaN. References: torch.nn.functional.cross_entropy /
nll_loss (values and gradients), tn.gradcheck in float64, and the generic kernels."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend, jit
from tensornet.nn import functional as F

from torch_reference import compare_loss, torch_or_skip

gpu = pytest.mark.gpu
LABELS = np.array([2, -100, 0, 3, -100, 1, 1])  # C = 4
WEIGHT = [0.5, 2.0, 1.0, 3.0]


def _cases(torch):
    """name -> (our loss for a reduction, torch's function of (pred, target, reduction))."""
    tf = torch.nn.functional
    tw = torch.tensor(WEIGHT, dtype=torch.float64)
    return {
        "ce": (lambda r: nn.CrossEntropyLoss(reduction=r, check=False),
               lambda p, t, r: tf.cross_entropy(p, t, reduction=r)),
        "ce-smoothing": (lambda r: nn.CrossEntropyLoss(reduction=r, label_smoothing=0.2,
                                                       check=False),
                         lambda p, t, r: tf.cross_entropy(p, t, reduction=r,
                                                          label_smoothing=0.2)),
        "ce-weight": (lambda r: nn.CrossEntropyLoss(WEIGHT, reduction=r, check=False),
                      lambda p, t, r: tf.cross_entropy(p, t, tw, reduction=r)),
        "nll": (lambda r: nn.NLLLoss(reduction=r, check=False),
                lambda p, t, r: tf.nll_loss(p, t, reduction=r)),
        "nll-weight": (lambda r: nn.NLLLoss(WEIGHT, reduction=r, check=False),
                       lambda p, t, r: tf.nll_loss(p, t, tw, reduction=r)),
    }


def _pred(name, rng, shape=(7, 4)):
    x = rng.standard_normal(shape) * 2.0
    if name.startswith("nll"):  # log-probabilities over axis 1
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


@pytest.mark.parametrize("name, reduction", [
    ("ce", "mean"), ("ce", "sum"), ("ce", "none"), ("ce-smoothing", "mean"),
    ("ce-smoothing", "sum"), ("ce-smoothing", "none"), ("nll", "mean")])
def test_unchecked_default_ignore_index_matches_torch(name, reduction, any_device, rng):
    """float64, checks off, -100 among the labels: torch's value and gradient (the fused
    path gave NaN; NLLLoss's mean divided by every row. The weighted losses, and NLLLoss's
    sum, had it right: a -100 row picked no class; test_unchecked_other_labels_... below
    covers them, with the labels out of range they got wrong)."""
    torch = torch_or_skip()
    ours, theirs = _cases(torch)[name]
    compare_loss(ours(reduction), lambda p, t: theirs(p, t, reduction), _pred(name, rng),
                 LABELS, any_device)


@pytest.mark.parametrize("name", ["ce", "ce-smoothing", "nll"])
def test_unchecked_ignore_index_per_position_matches_torch(name, any_device, rng):
    """(N, C, d) scores with -100 at some of the (N, d) positions (padded sequences)."""
    torch = torch_or_skip()
    ours, theirs = _cases(torch)[name]
    labels = rng.integers(0, 4, (3, 5))
    labels[0, 3:] = -100
    labels[2, 1:] = -100
    compare_loss(ours("mean"), lambda p, t: theirs(p, t, "mean"), _pred(name, rng, (3, 4, 5)),
                 labels, any_device)


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_unchecked_padded_float32_batch_matches_torch(any_device, compiled, smoothing, rng):
    """The MLP's shape, (128, 10) float32, a quarter of it -100 padding: torch's loss and
    gradient in float32, on the numba and the NumPy CPU paths (the NaN loss of the bug)."""
    torch = torch_or_skip()
    x = rng.standard_normal((128, 10)).astype(np.float32) * 3
    y = rng.integers(0, 10, 128)
    y[rng.permutation(128)[:32]] = -100
    xt = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(xt, torch.tensor(y), label_smoothing=smoothing)
    expected.backward()
    b = get_backend(any_device)
    loss = nn.CrossEntropyLoss(label_smoothing=smoothing, check=False)
    with jit.switched(compiled):
        value = loss(b.asarray(x), b.asarray(y))
        grad = tn.asnumpy(loss.backward())
    assert tn.asnumpy(value).dtype == np.float32 and grad.dtype == np.float32
    assert float(tn.asnumpy(value)) == pytest.approx(expected.item(), rel=2e-6)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("name", ["ce", "ce-smoothing", "nll"])
def test_unchecked_every_label_ignored_is_nan_with_zero_gradient(name, any_device, rng):
    """'mean' over no kept row: torch's NaN loss and zero gradient (the padding-only batch
    leaves the weights alone); with checks on the loss raises instead (test_audit_losses)."""
    torch = torch_or_skip()
    ours, theirs = _cases(torch)[name]
    b = get_backend(any_device)
    loss = ours("mean")
    value = float(tn.asnumpy(loss(b.asarray(_pred(name, rng)), b.asarray(np.full(7, -100)))))
    grad = tn.asnumpy(loss.backward())
    assert np.isnan(value) and np.isnan(theirs(torch.zeros(7, 4, dtype=torch.float64),
                                                torch.full((7,), -100), "mean").item())
    np.testing.assert_array_equal(grad, np.zeros((7, 4)))


@pytest.mark.parametrize("name", ["ce", "ce-smoothing", "ce-weight", "nll", "nll-weight"])
def test_unchecked_other_labels_out_of_range_stay_nan_rows(name, any_device, rng):
    """Only ignore_index is skipped: -1 and C (checks off) give their rows a NaN loss and
    NaN gradient, on the fused and the target-matrix paths alike (NLLLoss and the weighted
    CrossEntropyLoss had given such a row 0, silently); the other rows keep their values."""
    torch_or_skip()
    ours, _ = _cases(torch_or_skip())[name]
    b = get_backend(any_device)
    labels = np.array([2, -100, -1, 3, 4, 1, 1])
    pred = _pred(name, rng)
    loss = ours("none")
    losses = tn.asnumpy(loss(b.asarray(pred), b.asarray(labels)))
    grad = tn.asnumpy(loss.backward(b.asarray(np.ones(7))))
    good = [0, 1, 3, 5, 6]
    checked = ours("none")
    checked.check = True
    expected = tn.asnumpy(checked(pred[good], labels[good]))
    expected_grad = tn.asnumpy(checked.backward(np.ones(5)))
    assert np.isnan(losses[[2, 4]]).all() and np.isnan(grad[[2, 4]]).all()
    np.testing.assert_allclose(losses[good], expected, rtol=1e-12)
    np.testing.assert_allclose(grad[good], expected_grad, rtol=1e-12, atol=1e-15)
    assert losses[1] == 0.0 and not grad[1].any()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["ce", "ce-smoothing"])
def test_unchecked_ignored_rows_gradcheck(name, reduction, any_device, rng):
    """float64 central differences with -100 rows through the fused kernels, checks off."""
    torch = torch_or_skip()
    ours, _ = _cases(torch)[name]
    b = get_backend(any_device)
    assert tn.gradcheck(ours(reduction), (b.asarray(_pred(name, rng)), b.asarray(LABELS)))


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss, nn.NLLLoss])
def test_ignore_index_beyond_int64_is_refused(loss):
    """The kernels compare labels with ignore_index as an int64: a larger one is refused
    when the loss is built, not deep in a call (numba's typing, np.int64)."""
    with pytest.raises(ValueError, match=rf"{loss.__name__}: ignore_index must fit in int64 "
                                         rf"\(as PyTorch's\), got {2**63}"):
        loss(ignore_index=2**63)
    assert loss(ignore_index=-2**63).ignore_index == -2**63


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
    from tensornet.backends import cupy_ops as cupy_backend
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


@gpu
def test_cuda_loss_stays_on_the_device_in_two_launches(rng, monkeypatch):
    """On the GPU (checks off by default) an ignore-aware forward and backward read nothing
    back to the host (what CUDA-graph capture needs: every device-to-host read below raises)
    and launch two tensornet kernels, the fused forward and the fused backward, as before."""
    torch = torch_or_skip()
    cuda = get_backend("cuda")
    x = rng.standard_normal((16, 10)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    y[::3] = -100
    xd, yd = cuda.asarray(x), cuda.asarray(y)
    loss = nn.CrossEntropyLoss()
    array_type = type(xd)

    def host_read(*args, **kwargs):
        raise AssertionError("the loss read a device array back to the host")

    with monkeypatch.context() as patch:
        for name in ("get", "item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
            if hasattr(array_type, name):
                patch.setattr(array_type, name, host_read)
        launches = cuda.launches
        value = loss(xd, yd)
        grad = loss.backward()
        assert cuda.launches - launches == 2
    assert cuda.owns(value) and tuple(value.shape) == ()
    xt = torch.tensor(x, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(xt, torch.tensor(y))
    expected.backward()
    assert float(tn.asnumpy(value)) == pytest.approx(expected.item(), rel=2e-6)
    np.testing.assert_allclose(tn.asnumpy(grad), xt.grad.numpy(), rtol=2e-5, atol=1e-8)
