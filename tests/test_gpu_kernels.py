"""Each fused CuPy kernel against the generic array-API version (``F.<kernel>.generic``, or
an optimizer rule's ``apply``) run on the same GPU with the same inputs
(``@pytest.mark.gpu``; skipped without a device)."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.backends.cuda_kernels import update_spec
from tensornet.backends.cuda_matmul import capture_safe_matmul
from tensornet.nn import functional as F

gpu = pytest.mark.gpu
DTYPES = ["float32", "float64"]
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture
def cuda():
    return get_backend("cuda")


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_matches_generic(cuda, rng, dtype):
    x = rng.standard_normal((33, 17)).astype(dtype)
    x[0, :3] = [np.nan, 0.0, -0.0]
    g = cuda.asarray(rng.standard_normal((33, 17)).astype(dtype))
    xd = cuda.asarray(x)
    y = F.relu(xd)
    np.testing.assert_array_equal(tn.asnumpy(y), tn.asnumpy(F.relu.generic(cuda, xd)))
    np.testing.assert_array_equal(tn.asnumpy(F.relu_backward(g, y)),
                                  tn.asnumpy(F.relu_backward.generic(cuda, g, y)))
    assert y.dtype == xd.dtype


@gpu
@pytest.mark.parametrize("n, c, eps, label_dtype, dtype", [
    (1, 10, 0.0, "int64", "float32"), (37, 10, 0.1, "int32", "float32"),
    (5, 1000, 0.0, "int64", "float64"), (64, 3, 0.2, "uint8", "float32")])
def test_fused_cross_entropy_matches_generic(cuda, rng, n, c, eps, label_dtype, dtype):
    logits = cuda.asarray((rng.standard_normal((n, c)) * 20).astype(dtype))
    labels = cuda.asarray(rng.integers(0, c, n).astype(label_dtype))
    losses, log_probs = F.softmax_cross_entropy(logits, labels, eps)
    ref_losses, ref_log_probs = F.softmax_cross_entropy.generic(cuda, logits, labels, eps)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else TOL[dtype]
    np.testing.assert_allclose(tn.asnumpy(losses), tn.asnumpy(ref_losses), **tol)
    np.testing.assert_allclose(tn.asnumpy(log_probs), tn.asnumpy(ref_log_probs), **tol)
    grad = F.softmax_cross_entropy_backward(log_probs, labels, 1.0 / n, eps)
    ref = F.softmax_cross_entropy_backward.generic(cuda, ref_log_probs, labels, 1.0 / n, eps)
    np.testing.assert_allclose(tn.asnumpy(grad), tn.asnumpy(ref), **tol)


@gpu
def test_fused_cross_entropy_marks_out_of_range_labels_nan(cuda, rng):
    logits = cuda.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    labels = cuda.asarray(np.array([0, -1, 3, 2]))
    losses, log_probs = F.softmax_cross_entropy(logits, labels)
    grad = tn.asnumpy(F.softmax_cross_entropy_backward(log_probs, labels, 0.25))
    bad = np.array([False, True, True, False])
    assert np.isnan(tn.asnumpy(losses)[bad]).all() and np.isfinite(tn.asnumpy(losses)[~bad]).all()
    assert np.isnan(grad[bad]).all() and np.isfinite(grad[~bad]).all()


RULES = {rule.name: rule for rule in tn.optim.fused_updates()}


def _rule_scalars(rule, step):
    """Plausible scalars for ``rule`` at ``step`` (first_step only at step 1)."""
    values = {name: 0.05 + 0.1 * i for i, name in enumerate(rule.scalars)}
    values.update({k: v for k, v in dict(first_step=float(step == 1), nesterov=1.0,
                                         decay_scale=0.99, beta1=0.9, beta2=0.99,
                                         one_minus_beta1=0.1, one_minus_beta2=0.01,
                                         eps=1e-6).items() if k in values})
    return values


def _three_updates(run, backend, rule, param, grads):
    param = backend.asarray(param.copy())
    states = [backend.full(param.shape, 0.1, param.dtype) for _ in rule.states]
    for t, grad in enumerate(grads, 1):
        run(param, backend.asarray(grad), states, _rule_scalars(rule, t))
    return [tn.asnumpy(a) for a in [param] + states]


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(RULES))
def test_fused_optimizer_kernels_match_their_array_api_rule(cuda, rng, name, dtype):
    rule = RULES[name]
    param = rng.standard_normal((40, 30)).astype(dtype)
    grads = [rng.standard_normal((40, 30)).astype(dtype) for _ in range(3)]
    fused = _three_updates(lambda p, g, s, v: cuda.fused_update(rule, p, g, s, v),
                           cuda, rule, param, grads)
    generic = _three_updates(lambda p, g, s, v: rule.apply(cuda.xp, p, g, *s, **v),
                             cuda, rule, param, grads)
    for got, want in zip(fused, generic):
        np.testing.assert_allclose(got, want, **TOL[dtype])
        assert got.dtype == np.dtype(dtype)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(RULES))
def test_fused_optimizer_kernels_carry_nan_and_inf_as_their_rule(cuda, name, dtype):
    """Non-finite gradients reach the parameter and the state as in the array-API rule:
    CUDA's max/min drop a NaN operand (fmax), xp.maximum keeps it (issue: Adamax's
    exp_inf stayed finite on the GPU after a NaN gradient, NaN on every other backend)."""
    rule = RULES[name]
    param = np.array([1.0, -2.0, 0.5, 3.0, 0.0, -0.5], dtype)
    grads = [np.array([np.nan, np.inf, -np.inf, 1.0, 0.0, 2.0], dtype),
             np.array([1.0, 0.5, -0.5, np.nan, np.inf, -1.0], dtype)]
    fused = _three_updates(lambda p, g, s, v: cuda.fused_update(rule, p, g, s, v),
                           cuda, rule, param, grads)
    generic = _three_updates(lambda p, g, s, v: rule.apply(cuda.xp, p, g, *s, **v),
                             cuda, rule, param, grads)
    for what, got, want in zip(("param",) + rule.states, fused, generic):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
        np.testing.assert_allclose(got, want, err_msg=what, **TOL[dtype])


@gpu
@pytest.mark.parametrize("name", list(RULES))
def test_device_scalar_kernels_match_scalar_kernels(cuda, rng, name):
    rule = RULES[name]
    values = _rule_scalars(rule, 2)
    arrays = [rng.uniform(0.1, 1.0, 257).astype(np.float32) for _ in range(2 + len(rule.states))]
    scalar = [cuda.asarray(a) for a in arrays]
    device = [cuda.asarray(a) for a in arrays]
    ordered = [values[n] for n in rule.scalars]
    cuda._kernels.elementwise(update_spec(rule, False))(
        scalar[1], *(np.float32(v) for v in ordered), scalar[0], *scalar[2:])
    row = cuda.asarray(np.array(ordered + [7.0], dtype=np.float32))
    cuda._kernels.elementwise(update_spec(rule, True))(device[1], row, device[0], *device[2:])
    for a, b in zip(scalar, device):
        np.testing.assert_allclose(tn.asnumpy(b), tn.asnumpy(a), rtol=1e-6)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape_a, shape_b, transpose", [
    ((1, 1), (1, 1), ""), ((37, 129), (129, 65), ""), ((128, 784), (256, 784), "b"),
    ((300, 64), (300, 70), "a"), ((3, 20, 30), (3, 30, 50), ""), ((4, 0), (0, 3), "")])
def test_capture_safe_matmul_matches_cublas(cuda, rng, dtype, shape_a, shape_b, transpose):
    a = cuda.asarray(rng.standard_normal(shape_a).astype(dtype))
    b = cuda.asarray(rng.standard_normal(shape_b).astype(dtype))
    a = a.T if "a" in transpose else a
    b = b.T if "b" in transpose else b
    got = capture_safe_matmul(cuda, a, b)
    want = cuda.xp.matmul(a, b)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tn.asnumpy(got), tn.asnumpy(want), **tol)
    assert got.flags.c_contiguous and got.dtype == a.dtype


@gpu
@pytest.mark.parametrize("shape_a, shape_b", [
    ((7, 9), (2, 3, 9, 5)), ((2, 3, 4, 9), (9, 6)), ((2, 1, 4, 9), (3, 9, 5)),
    ((1, 5, 9), (4, 9, 3)), ((3, 0, 4), (4, 2)), ((2, 5, 0), (0, 3))])
def test_capture_safe_matmul_broadcasts_batch_dimensions(cuda, rng, shape_a, shape_b):
    """As matmul: leading dimensions broadcast (AdaptiveAvgPool2d's (OH, H) @ (N, C, H, W)
    inside a graph step), and a transposed batched operand works as well."""
    a = cuda.asarray(rng.standard_normal(shape_a).astype(np.float32))
    b = cuda.asarray(rng.standard_normal(shape_b[:-2] + shape_b[:-3:-1]).astype(np.float32))
    b = cuda.xp.swapaxes(b, -1, -2)
    got = capture_safe_matmul(cuda, a, b)
    want = np.matmul(tn.asnumpy(a).astype(np.float64), tn.asnumpy(b).astype(np.float64))
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(tn.asnumpy(got), want, rtol=1e-5, atol=1e-5)


@gpu
@pytest.mark.parametrize("k, limit, gemms", [(20, 3, 3), (3000, 10, 4)])  # split-K: 5 splits
def test_capture_safe_matmul_launches_long_batches_in_parts(cuda, rng, monkeypatch, k, limit,
                                                            gemms):
    """A batch beyond CUDA's gridDim.z limit runs in several launches (the limit made
    small here: 65535 blocks would take the emulation minutes)."""
    from tensornet.backends import cuda_matmul
    monkeypatch.setattr(cuda_matmul, "GRID_YZ_LIMIT", limit)
    a = cuda.asarray(rng.standard_normal((2, 4, 5, k)).astype(np.float64))
    b = cuda.asarray(rng.standard_normal((k, 2)).astype(np.float64))
    b = cuda.xp.broadcast_to(b, (4, k, 2))
    launches = cuda.launches
    got = capture_safe_matmul(cuda, a, b)
    assert cuda.launches - launches == gemms + (k > 1024)  # + the split-K sum
    want = np.matmul(tn.asnumpy(a), tn.asnumpy(b))
    np.testing.assert_allclose(tn.asnumpy(got), want, rtol=1e-10, atol=1e-10)


WINDOWS = [  # x shape, kernel, stride, padding, dilation
    ((2, 3, 7, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 2, 9, 9), (3, 2), (2, 3), ((0, 1), (1, 0)), (2, 1)),
    ((1, 4, 8, 8), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1)),
    ((2, 1, 5, 5), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
]


@gpu
@pytest.mark.parametrize("geometry", WINDOWS)
def test_window_kernels_match_generic(cuda, rng, geometry):
    x_shape, kernel, stride, padding, dilation = geometry
    x = cuda.asarray(rng.standard_normal(x_shape).astype(np.float32))
    cols = F.im2col(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(tn.asnumpy(cols),
                                  tn.asnumpy(F.im2col.generic(cuda, x, kernel, stride, padding,
                                                            dilation)))
    dcols = cuda.asarray(rng.standard_normal(cols.shape).astype(np.float32))
    np.testing.assert_allclose(
        tn.asnumpy(F.col2im(dcols, x_shape, kernel, stride, padding, dilation)),
        tn.asnumpy(F.col2im.generic(cuda, dcols, x_shape, kernel, stride, padding, dilation)),
        rtol=1e-6, atol=1e-6)
    y, argmax = F.max_pool2d(x, kernel, stride, padding, dilation)
    ref_y, ref_argmax = F.max_pool2d.generic(cuda, x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(tn.asnumpy(y), tn.asnumpy(ref_y))
    np.testing.assert_array_equal(tn.asnumpy(argmax), tn.asnumpy(ref_argmax))
    grad = cuda.asarray(rng.standard_normal(y.shape).astype(np.float32))
    np.testing.assert_allclose(
        tn.asnumpy(F.max_pool2d_backward(grad, argmax, x_shape, kernel, stride, padding,
                                            dilation)),
        tn.asnumpy(F.max_pool2d_backward.generic(cuda, grad, argmax, x_shape, kernel, stride,
                                               padding, dilation)), rtol=1e-6, atol=1e-6)
