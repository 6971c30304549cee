"""Each fused CuPy kernel against the generic array-API method of ``backends/base.py`` run
on the same GPU with the same inputs (``@pytest.mark.gpu``; skipped without a device)."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.backends.base import Backend
from tensornet.backends.cuda_kernels import OPTIMIZER_KERNELS

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
    y = cuda.relu(xd)
    np.testing.assert_array_equal(tn.asnumpy(y), tn.asnumpy(Backend.relu(cuda, xd)))
    np.testing.assert_array_equal(tn.asnumpy(cuda.relu_backward(g, y)),
                                  tn.asnumpy(Backend.relu_backward(cuda, g, y)))
    assert y.dtype == xd.dtype


@gpu
@pytest.mark.parametrize("n, c, eps, label_dtype, dtype", [
    (1, 10, 0.0, "int64", "float32"), (37, 10, 0.1, "int32", "float32"),
    (5, 1000, 0.0, "int64", "float64"), (64, 3, 0.2, "uint8", "float32")])
def test_fused_cross_entropy_matches_generic(cuda, rng, n, c, eps, label_dtype, dtype):
    logits = cuda.asarray((rng.standard_normal((n, c)) * 20).astype(dtype))
    labels = cuda.asarray(rng.integers(0, c, n).astype(label_dtype))
    losses, log_probs = cuda.softmax_cross_entropy(logits, labels, eps)
    ref_losses, ref_log_probs = Backend.softmax_cross_entropy(cuda, logits, labels, eps)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else TOL[dtype]
    np.testing.assert_allclose(tn.asnumpy(losses), tn.asnumpy(ref_losses), **tol)
    np.testing.assert_allclose(tn.asnumpy(log_probs), tn.asnumpy(ref_log_probs), **tol)
    grad = cuda.softmax_cross_entropy_backward(log_probs, labels, 1.0 / n, eps)
    ref = Backend.softmax_cross_entropy_backward(cuda, ref_log_probs, labels, 1.0 / n, eps)
    np.testing.assert_allclose(tn.asnumpy(grad), tn.asnumpy(ref), **tol)


@gpu
def test_fused_cross_entropy_marks_out_of_range_labels_nan(cuda, rng):
    logits = cuda.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    labels = cuda.asarray(np.array([0, -1, 3, 2]))
    losses, log_probs = cuda.softmax_cross_entropy(logits, labels)
    grad = tn.asnumpy(cuda.softmax_cross_entropy_backward(log_probs, labels, 0.25))
    bad = np.array([False, True, True, False])
    assert np.isnan(tn.asnumpy(losses)[bad]).all() and np.isfinite(tn.asnumpy(losses)[~bad]).all()
    assert np.isnan(grad[bad]).all() and np.isfinite(grad[~bad]).all()


OPT_CASES = {  # name: (method, state arrays, hyper-parameters)
    "sgd": ("sgd_update", 1, dict(lr=0.1, momentum=0.0, dampening=0.0, nesterov=False,
                                  weight_decay=0.01)),
    "sgd_momentum": ("sgd_update", 1, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=False,
                                           weight_decay=0.01)),
    "nesterov": ("sgd_update", 1, dict(lr=0.1, momentum=0.9, dampening=0.0, nesterov=True,
                                       weight_decay=0.0)),
    "adam": ("adam_update", 2, dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01,
                                    decoupled=False)),
    "adamw": ("adam_update", 2, dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1,
                                     decoupled=True)),
    "rmsprop": ("rmsprop_update", 2, dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0,
                                          weight_decay=0.01)),
    "rmsprop_momentum": ("rmsprop_update", 2, dict(lr=0.01, alpha=0.9, eps=1e-8, momentum=0.9,
                                                   weight_decay=0.0)),
    "adagrad": ("adagrad_update", 1, dict(lr=0.1, eps=1e-10, weight_decay=0.01)),
}


def _three_updates(update, backend, param, grads, n_states, kw):
    param = backend.asarray(param.copy())
    states = [backend.zeros(param.shape, dtype=param.dtype) for _ in range(n_states)]
    if not kw.get("momentum", 1.0):
        states[-1] = None  # sgd / rmsprop keep no momentum buffer without momentum
    for t, grad in enumerate(grads, 1):
        extra = {"sgd_update": {"first_step": t == 1}, "adam_update": {"step": t}}
        update(param, backend.asarray(grad), *states, **kw, **extra.get(update.__name__, {}))
    return [tn.asnumpy(a) for a in [param] + states if a is not None]


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(OPT_CASES))
def test_fused_optimizer_updates_match_generic(cuda, rng, case, dtype):
    method, n_states, kw = OPT_CASES[case]
    param = rng.standard_normal((40, 30)).astype(dtype)
    grads = [rng.standard_normal((40, 30)).astype(dtype) for _ in range(3)]
    fused = _three_updates(getattr(cuda, method), cuda, param, grads, n_states, kw)
    generic = getattr(Backend, method).__get__(cuda)
    reference = _three_updates(generic, cuda, param, grads, n_states, kw)
    for got, want in zip(fused, reference):
        np.testing.assert_allclose(got, want, **TOL[dtype])
        assert got.dtype == np.dtype(dtype)


@gpu
@pytest.mark.parametrize("kind", list(OPTIMIZER_KERNELS))
def test_device_hyper_kernels_match_scalar_kernels(cuda, rng, kind):
    values = tuple(0.1 + 0.05 * i for i in range(len(OPTIMIZER_KERNELS[kind].hyper)))
    arrays = [rng.uniform(0.1, 1.0, 257).astype(np.float32)
              for _ in range(2 + len(OPTIMIZER_KERNELS[kind].states))]
    scalar = [cuda.asarray(a) for a in arrays]
    device = [cuda.asarray(a) for a in arrays]
    cuda._kernels.optimizer(kind)(scalar[0], *(np.float32(v) for v in values), *scalar[1:])
    row = cuda.asarray(np.array(values + (7.0,), dtype=np.float32))
    cuda._kernels.optimizer(kind, device_hyper=True)(device[0], row, *device[1:])
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
    got = cuda.capture_safe_matmul(a, b)
    want = cuda.xp.matmul(a, b)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tn.asnumpy(got), tn.asnumpy(want), **tol)
    assert got.flags.c_contiguous and got.dtype == a.dtype


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
    cols = cuda.im2col(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(tn.asnumpy(cols),
                                  tn.asnumpy(Backend.im2col(cuda, x, kernel, stride, padding,
                                                            dilation)))
    dcols = cuda.asarray(rng.standard_normal(cols.shape).astype(np.float32))
    np.testing.assert_allclose(
        tn.asnumpy(cuda.col2im(dcols, x_shape, kernel, stride, padding, dilation)),
        tn.asnumpy(Backend.col2im(cuda, dcols, x_shape, kernel, stride, padding, dilation)),
        rtol=1e-6, atol=1e-6)
    y, argmax = cuda.max_pool2d(x, kernel, stride, padding, dilation)
    ref_y, ref_argmax = Backend.max_pool2d(cuda, x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(tn.asnumpy(y), tn.asnumpy(ref_y))
    np.testing.assert_array_equal(tn.asnumpy(argmax), tn.asnumpy(ref_argmax))
    grad = cuda.asarray(rng.standard_normal(y.shape).astype(np.float32))
    np.testing.assert_allclose(
        tn.asnumpy(cuda.max_pool2d_backward(grad, argmax, x_shape, kernel, stride, padding,
                                            dilation)),
        tn.asnumpy(Backend.max_pool2d_backward(cuda, grad, argmax, x_shape, kernel, stride,
                                               padding, dilation)), rtol=1e-6, atol=1e-6)
