"""Bilinear as torch's: output, both inputs' gradients and the weight and bias gradients
against torch.nn.Bilinear with the same weights, float64 and float32, the CPU and strict
backends; PyTorch's init and state dict; gradchecks; every backend; errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tensornet as tn
from finite_differences import central_differences
from tensornet import nn
from torch_reference import torch_or_skip


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_bilinear_matches_torch(bias, dtype, tol, device, rng):
    torch = torch_or_skip()
    layer = nn.Bilinear(3, 4, 5, bias=bias).to(device, dtype)
    twin = torch.nn.Bilinear(3, 4, 5, bias=bias).to(getattr(torch, dtype))
    twin.load_state_dict({k: torch.tensor(tn.asnumpy(v))
                             for k, v in layer.state_dict().items()})
    backend = tn.get_backend(device)
    x1, x2 = (rng.standard_normal(s).astype(dtype) for s in ((6, 3), (6, 4)))
    y = layer(backend.asarray(x1), backend.asarray(x2))
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    expected = twin(t1, t2)
    grad = rng.standard_normal(tuple(expected.shape)).astype(dtype)
    expected.backward(torch.tensor(grad))
    dx1 = layer.backward(backend.asarray(grad))
    pairs = [(y, expected), (dx1, t1.grad), (layer.input2_grad, t2.grad),
             (layer.weight.grad, twin.weight.grad)]
    if bias:
        pairs.append((layer.bias.grad, twin.bias.grad))
    for ours, theirs in pairs:
        assert tn.asnumpy(ours).dtype == np.dtype(dtype)
        np.testing.assert_allclose(tn.asnumpy(ours), theirs.detach().numpy(), rtol=tol,
                                   atol=tol)


def test_bilinear_init_and_state_dict_are_pytorchs():
    torch = torch_or_skip()
    tn.manual_seed(0)
    layer = nn.Bilinear(16, 4, 8)
    bound = 1 / math.sqrt(16)
    for param in layer.parameters():
        values = np.asarray(param.data)
        assert values.dtype == np.float32 and np.abs(values).max() <= bound
    assert layer.weight.shape == (8, 16, 4)
    twin = torch.nn.Bilinear(16, 4, 8)
    assert list(layer.state_dict()) == list(twin.state_dict())
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in layer.state_dict().items()})
    back = nn.Bilinear(16, 4, 8)
    back.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    np.testing.assert_array_equal(np.asarray(back.weight.data), np.asarray(layer.weight.data))


def test_bilinear_gradients_against_finite_differences(rng):
    layer = nn.Bilinear(3, 2, 4).double()
    x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    assert tn.gradcheck(layer, (x1, x2))
    projection = rng.standard_normal((5, 4))
    layer(x1, x2)
    layer.backward(projection)
    numeric = central_differences(lambda x: np.sum(projection * layer(x1, x)), x2)
    np.testing.assert_allclose(layer.input2_grad, numeric, rtol=1e-6, atol=1e-9)


def test_bilinear_agrees_across_backends(any_device, rng):
    ref = nn.Bilinear(3, 4, 5)
    layer = nn.Bilinear(3, 4, 5)
    layer.load_state_dict(ref.state_dict())
    layer.to(any_device)
    backend = tn.get_backend(any_device)
    x1, x2 = (rng.standard_normal(s).astype(np.float32) for s in ((6, 3), (6, 4)))
    np.testing.assert_allclose(tn.asnumpy(layer(backend.asarray(x1), backend.asarray(x2))),
                               ref(x1, x2), rtol=1e-5, atol=1e-5)
    grad = rng.standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(tn.asnumpy(layer.backward(backend.asarray(grad))),
                               ref.backward(grad), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(layer.weight.grad), ref.weight.grad, rtol=1e-5,
                               atol=1e-5)


def test_bilinear_errors():
    layer = nn.Bilinear(3, 4, 5)
    with pytest.raises(ValueError, match=r"Bilinear\(3 x 4 -> 5\) got input of shape \(6, 2\)"):
        layer(np.zeros((6, 2), np.float32), np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match=r"Bilinear\(3 x 4 -> 5\) got x2 of shape \(6, 3\)"):
        layer(np.zeros((6, 3), np.float32), np.zeros((6, 3), np.float32))
    with pytest.raises(ValueError, match=r"got 6 rows in x1 and 5 in x2"):
        layer(np.zeros((6, 3), np.float32), np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="Bilinear: bias must be True or False, got 'no'"):
        nn.Bilinear(3, 4, 5, bias="no")
    with pytest.raises(ValueError, match="Bilinear: out_features must be a positive integer"):
        nn.Bilinear(3, 4, 0)
