"""GaussianNLLLoss as torch's: the loss, d loss / d pred and d loss / d var (``var_grad``)
against torch.nn.GaussianNLLLoss over every var layout torch takes (same shape, one axis
fewer, a 1 along one axis, a float), clamped variances, full, every reduction, float64 and
float32, the CPU and strict backends; gradchecks for both gradients; every backend;
errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from finite_differences import central_differences
from tensornet import nn
from torch_reference import torch_or_skip

VAR_SHAPES = [(4, 3), (4,), (4, 1), (1, 3), "float"]


def _inputs(rng, var_shape, dtype):
    pred = rng.standard_normal((4, 3)).astype(dtype)
    target = rng.standard_normal((4, 3)).astype(dtype)
    if var_shape == "float":
        return pred, target, 0.7
    var = rng.uniform(0.1, 2.0, var_shape).astype(dtype)
    var.flat[0] = 1e-9  # below eps: clamped, its gradient taken at eps (as torch)
    return pred, target, var


@pytest.mark.parametrize("var_shape", VAR_SHAPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_gaussian_nll_matches_torch(var_shape, reduction, full, dtype, tol, device, rng):
    torch = torch_or_skip()
    backend = tn.get_backend(device)
    pred, target, var = _inputs(rng, var_shape, dtype)
    loss_fn = nn.GaussianNLLLoss(full=full, reduction=reduction)
    given = var if isinstance(var, float) else backend.asarray(var)
    loss = loss_fn(backend.asarray(pred), backend.asarray(target), given)
    pred_t = torch.tensor(pred, requires_grad=True)
    var_t = var if isinstance(var, float) else torch.tensor(var, requires_grad=True)
    loss_t = torch.nn.GaussianNLLLoss(full=full, reduction=reduction)(
        pred_t, torch.tensor(target), var_t)
    upstream = rng.standard_normal(tuple(loss_t.shape)).astype(dtype)
    (loss_t * torch.tensor(upstream)).sum().backward()
    grad = loss_fn.backward(backend.asarray(upstream) if reduction == "none"
                            else float(upstream))
    scale = max(1.0, float(np.abs(pred_t.grad.numpy()).max()))  # a clamped var: ~1e6
    np.testing.assert_allclose(tn.asnumpy(loss), loss_t.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(grad), pred_t.grad.numpy(), rtol=tol,
                               atol=tol * scale)
    assert tn.asnumpy(grad).dtype == np.dtype(dtype)
    if isinstance(var, float):
        assert loss_fn.var_grad is None
    else:
        expected = var_t.grad.numpy()
        np.testing.assert_allclose(tn.asnumpy(loss_fn.var_grad), expected, rtol=tol,
                                   atol=tol * max(1.0, float(np.abs(expected).max())))
        assert tuple(loss_fn.var_grad.shape) == tuple(np.shape(var))


@pytest.mark.parametrize("shape, var_shape", [((), ()), ((), "float"), ((5,), ()),
                                              ((5,), (1,))])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gaussian_nll_takes_one_sample_and_a_scalar_var_as_torch(shape, var_shape,
                                                                 reduction, rng):
    """A 0-d prediction with a 0-d var is the same-shape case (torch keeps it 0-d), not
    var one axis short; a 0-d var for a (D,) prediction is one variance for all D."""
    torch = torch_or_skip()
    pred, target = rng.standard_normal(shape), rng.standard_normal(shape)
    var = 0.7 if var_shape == "float" else rng.uniform(0.1, 2.0, var_shape)
    loss_fn = nn.GaussianNLLLoss(reduction=reduction).double()
    loss = loss_fn(pred, target, var)
    pred_t = torch.tensor(pred, requires_grad=True)
    var_t = var if var_shape == "float" else torch.tensor(var, requires_grad=True)
    loss_t = torch.nn.GaussianNLLLoss(reduction=reduction)(pred_t, torch.tensor(target), var_t)
    upstream = rng.standard_normal(tuple(loss_t.shape))
    (loss_t * torch.tensor(upstream)).sum().backward()
    grad = loss_fn.backward(upstream if reduction == "none" else float(upstream))
    assert np.shape(loss) == tuple(loss_t.shape) and np.shape(grad) == shape
    np.testing.assert_allclose(loss, loss_t.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad, pred_t.grad.numpy(), rtol=1e-12)
    if var_shape != "float":
        assert np.shape(loss_fn.var_grad) == var_shape
        np.testing.assert_allclose(loss_fn.var_grad, var_t.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("var_shape", [(3, 4), (3,), (3, 1)])
def test_gaussian_nll_gradchecks(var_shape, rng):
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    var = rng.uniform(0.5, 2.0, var_shape)
    loss_fn = nn.GaussianNLLLoss(full=True).double()
    assert tn.gradcheck(loss_fn, (pred, target, var))
    loss_fn(pred, target, var)
    loss_fn.backward()
    numeric = central_differences(lambda v: loss_fn(pred, target, v), var)
    np.testing.assert_allclose(loss_fn.var_grad, numeric, rtol=1e-6, atol=1e-8)


def test_gaussian_nll_agrees_across_backends(any_device, rng):
    pred, target, var = _inputs(rng, (4,), "float32")
    backend = tn.get_backend(any_device)
    ref, loss_fn = nn.GaussianNLLLoss(), nn.GaussianNLLLoss()
    expected = ref(pred, target, var)
    got = loss_fn(*(backend.asarray(a) for a in (pred, target, var)))
    np.testing.assert_allclose(tn.asnumpy(got), expected, rtol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(loss_fn.backward()), ref.backward(), rtol=1e-4,
                               atol=1e-2)  # ~1e6 where var is clamped
    np.testing.assert_allclose(tn.asnumpy(loss_fn.var_grad), ref.var_grad, rtol=1e-4)


def test_gaussian_nll_errors(rng):
    pred, target = np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
    loss_fn = nn.GaussianNLLLoss()
    assert repr(loss_fn) == "GaussianNLLLoss(reduction='mean', full=False, eps=1e-06)"
    with pytest.raises(ValueError, match="GaussianNLLLoss: var has negative entries"):
        loss_fn(pred, target, np.full((4, 3), -1.0, np.float32))
    with pytest.raises(ValueError, match="GaussianNLLLoss: var has negative entries"):
        loss_fn(pred, target, -0.5)
    with pytest.raises(ValueError, match=r"GaussianNLLLoss got var of shape \(4, 2\) for "
                                         r"predictions of shape \(4, 3\)"):
        loss_fn(pred, target, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"GaussianNLLLoss got var of shape \(1, 1\)"):
        loss_fn(pred, target, np.ones((1, 1), np.float32))  # two shared axes: torch refuses
    with pytest.raises(TypeError, match="GaussianNLLLoss expected a floating var, got int64"):
        loss_fn(pred, target, np.ones((4, 3), np.int64))
    with pytest.raises(TypeError, match="GaussianNLLLoss expected var as an array"):
        loss_fn(pred, target, [1.0, 2.0])
    with pytest.raises(ValueError, match="GaussianNLLLoss: eps must be a positive number"):
        nn.GaussianNLLLoss(eps=0)
    assert nn.GaussianNLLLoss(eps=np.float32(0.5)).eps == 0.5  # a NumPy number, as torch
    with pytest.raises(ValueError, match="GaussianNLLLoss: eps must be a positive number"):
        nn.GaussianNLLLoss(eps=np.float32(-0.5))
    with pytest.raises(nn.NonFiniteError, match="GaussianNLLLoss"):
        loss_fn(np.full((4, 3), np.inf, np.float32), target, 1.0)
    loss = loss_fn(pred, target, np.ones((4, 3)))  # a float64 var: cast, as a target
    assert np.asarray(loss).dtype == np.float32
    assert loss_fn.backward().dtype == np.float32 and loss_fn.var_grad.dtype == np.float32
