"""dtype and numerics audit: extreme float32 inputs give PyTorch's values without the NumPy
floating-point warnings PyTorch never shows, where the result itself is finite (an
intermediate that overflowed in a branch the result does not use)."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from torch_reference import torch_or_skip

# residuals of 1e20 and 1e30: the squares overflow float32, the Huber values do not
HUGE = [1e30, -1e30, 1e20, -1e20, 3.0, -0.5, 0.0, -0.0, 1e-40]


@pytest.mark.parametrize("reduction", ["none", "sum"])
@pytest.mark.parametrize("name", ["Huber", "SmoothL1"])
def test_huber_and_smooth_l1_on_huge_residuals_do_not_overflow(device, name, reduction):
    """The quadratic branch was computed for every element (0.5 * d * d) and discarded
    beyond delta: 'overflow encountered in multiply' for |d| > 1.8e19 in float32."""
    torch = torch_or_skip()
    loss_fn, reference = {
        "Huber": (nn.HuberLoss(reduction, delta=0.7), torch.nn.HuberLoss(reduction, delta=0.7)),
        "SmoothL1": (nn.SmoothL1Loss(reduction, beta=0.7),
                     torch.nn.SmoothL1Loss(reduction=reduction, beta=0.7)),
    }[name]
    pred = np.array(HUGE, dtype=np.float32)
    target = np.zeros_like(pred)
    backend = tn.get_backend(device)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = tn.asnumpy(loss_fn(backend.asarray(pred), backend.asarray(target)))
        grad = tn.asnumpy(loss_fn.backward(
            backend.asarray(np.ones_like(pred)) if reduction == "none" else None))
    pred_t = torch.from_numpy(pred.copy()).requires_grad_(True)
    loss_t = reference(pred_t, torch.from_numpy(target))
    loss_t.backward(torch.ones_like(loss_t))
    assert loss.dtype == np.float32 and grad.dtype == np.float32
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), rtol=2e-6)
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), rtol=2e-6)


GELU_TAIL = [1e30, -1e30, 1e20, -1e20, 1e13, -1e13, 1e4, -1e4, 30.0, 12.0, 9.0, 5.0, 1.0,
             -1.0, -0.5, 1e-40, 0.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_far_tails_without_overflow(device, approximate, dtype):
    """Exact GELU squared x inside erfc and the normal density ('overflow encountered in
    multiply' beyond |x| = 1.8e19 in float32); the tanh form cubed x (overflow beyond
    7e12 in float32, and in backward (1 - tanh^2) * du = 0 * inf = NaN where the
    derivative is 1 or 0). PyTorch gives that NaN gradient too; here the limits: GELU(x)
    = x and slope 1 far right, 0 and slope 0 far left. (PyTorch is the reference only
    where its 1 + erf / 1 + tanh form does not cancel: x >= -1.)"""
    torch = torch_or_skip()
    top = float(np.finfo(dtype).max) / 10
    x = np.array(GELU_TAIL + [top, -top], dtype=dtype)
    layer = nn.GELU(approximate)
    backend = tn.get_backend(device)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = tn.asnumpy(layer(backend.asarray(x)))
        dx = tn.asnumpy(layer.backward(backend.asarray(np.ones_like(x))))
    assert y.dtype == dx.dtype == np.dtype(dtype)
    far = np.abs(x) >= 1e4
    np.testing.assert_array_equal(y[far], np.where(x[far] > 0, x[far], 0.0))
    np.testing.assert_array_equal(dx[far], (x[far] > 0).astype(dtype))
    x_t = torch.from_numpy(x[~far].copy()).requires_grad_(True)
    y_t = torch.nn.GELU(approximate=approximate)(x_t)
    y_t.backward(torch.ones_like(y_t))
    tol = dict(rtol=2e-6 if dtype == "float32" else 1e-13, atol=np.finfo(dtype).tiny)
    np.testing.assert_allclose(y[~far], y_t.detach().numpy(), **tol)
    np.testing.assert_allclose(dx[~far], x_t.grad.numpy(), **tol)


@pytest.mark.parametrize("transform", [
    lambda: tn.data.RandomAffine(degrees=10, translate=(0.1, 0.1)),
    lambda: tn.data.RandomRotation(15)], ids=["affine", "rotation"])
def test_random_affine_keeps_float16_images_on_every_backend(device, transform):
    """NumPy's Generator draws only float32 and float64: the CPU backend's uniform (and
    normal) raised "Unsupported dtype dtype('float16') for random" on float16 images, which
    the torch backend augments."""
    if device == "strict":
        pytest.skip("array-api-strict has no float16")
    backend = tn.get_backend(device)
    x = backend.asarray(np.random.default_rng(0).uniform(size=(3, 1, 8, 8)).astype(np.float16))
    assert tn.asnumpy(transform()(x)).dtype == np.float16
    uniform = tn.asnumpy(backend.uniform((1000,), -2.0, 3.0, dtype="float16"))
    normal = tn.asnumpy(backend.normal((1000,), 1.0, 2.0, dtype="float16"))
    assert uniform.dtype == normal.dtype == np.float16
    assert -2.0 <= uniform.min() and uniform.max() <= 3.0 and uniform.std() > 1.0
    assert np.isfinite(normal).all() and abs(normal.mean() - 1.0) < 0.3
