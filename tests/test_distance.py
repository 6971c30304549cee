"""PairwiseDistance and CosineSimilarity as torch's: values and both inputs' gradients
against torch on identical inputs (p, eps, keepdim, dim; zero and tiny vectors, where the
eps clamps), float64 and float32, the CPU and strict backends; gradchecks and finite
differences for the second input; every backend; errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from finite_differences import central_differences
from tensornet import nn
from torch_reference import torch_or_skip

CASES = [("PairwiseDistance", dict(), (4, 6)), ("PairwiseDistance", dict(p=1.0, keepdim=True),
                                                 (4, 6)),
         ("PairwiseDistance", dict(p=3.0, eps=0.0), (2, 3, 5)),
         ("CosineSimilarity", dict(), (4, 6)), ("CosineSimilarity", dict(dim=-1), (2, 3, 5)),
         ("CosineSimilarity", dict(dim=0, eps=1e-3), (5, 3))]


def _inputs(rng, name, shape, dtype):
    x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
    if name == "CosineSimilarity":
        x1[0] = 0.0  # a zero vector: the clamp sets the value, the gradient still flows
        x2[-1] *= 1e-10  # a tiny one, below eps
    return x1.astype(dtype), x2.astype(dtype)


@pytest.mark.parametrize("name, options, shape", CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_distances_match_torch(name, options, shape, dtype, tol, device, rng):
    torch = torch_or_skip()
    x1, x2 = _inputs(rng, name, shape, dtype)
    backend = tn.get_backend(device)
    layer = getattr(nn, name)(**options)
    y = layer(backend.asarray(x1), backend.asarray(x2))
    t1, t2 = torch.tensor(x1, requires_grad=True), torch.tensor(x2, requires_grad=True)
    expected = getattr(torch.nn, name)(**options)(t1, t2)
    grad = rng.standard_normal(tuple(expected.shape)).astype(dtype)
    expected.backward(torch.tensor(grad))
    dx1 = layer.backward(backend.asarray(grad))
    np.testing.assert_allclose(tn.asnumpy(y), expected.detach().numpy(), rtol=tol, atol=tol)
    for got, want in ((dx1, t1.grad), (layer.input2_grad, t2.grad)):
        scale = max(1.0, float(np.abs(want.numpy()).max()))  # ~1e8 at the zero vector
        assert tn.asnumpy(got).dtype == np.dtype(dtype)
        np.testing.assert_allclose(tn.asnumpy(got), want.numpy(), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("make", [lambda: nn.PairwiseDistance(p=1.5),
                                  lambda: nn.CosineSimilarity(dim=1)])
def test_distance_gradients_against_finite_differences(make, rng):
    layer = make().double()
    x1, x2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    assert tn.gradcheck(layer, (x1, x2))
    projection = rng.standard_normal(3)
    layer(x1, x2)
    layer.backward(projection)
    numeric = central_differences(lambda x: np.sum(projection * layer(x1, x)), x2)
    np.testing.assert_allclose(layer.input2_grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make", [lambda: nn.PairwiseDistance(), lambda: nn.CosineSimilarity()])
def test_distances_agree_across_backends(make, any_device, rng):
    x1, x2 = (rng.standard_normal((4, 5)).astype(np.float32) for _ in range(2))
    backend = tn.get_backend(any_device)
    ref, layer = make(), make()
    np.testing.assert_allclose(tn.asnumpy(layer(backend.asarray(x1), backend.asarray(x2))),
                               ref(x1, x2), rtol=1e-5, atol=1e-6)
    grad = rng.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(tn.asnumpy(layer.backward(backend.asarray(grad))),
                               ref.backward(grad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(layer.input2_grad), ref.input2_grad, rtol=1e-5,
                               atol=1e-6)


def test_distance_reprs_and_errors():
    assert repr(nn.PairwiseDistance()) == "PairwiseDistance(p=2.0, eps=1e-06, keepdim=False)"
    assert repr(nn.CosineSimilarity()) == "CosineSimilarity(dim=1, eps=1e-08)"
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"PairwiseDistance\(.*\) got x2 as a float32 array "
                                         r"of shape \(2, 4\) for x1 of shape \(2, 3\)"):
        nn.PairwiseDistance()(x, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"CosineSimilarity\(.*\) got x2 as a float64 array"):
        nn.CosineSimilarity()(x, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"got x2 as a list"):
        nn.CosineSimilarity()(x, [0.0])
    with pytest.raises(ValueError, match=r"CosineSimilarity\(dim=2, eps=1e-08\) got input of "
                                         r"shape \(2, 3\): no axis 2"):
        nn.CosineSimilarity(dim=2)(x, x)
    with pytest.raises(ValueError, match="PairwiseDistance: p must be a positive finite"):
        nn.PairwiseDistance(p=float("inf"))
    with pytest.raises(ValueError, match="PairwiseDistance: keepdim must be True or False"):
        nn.PairwiseDistance(keepdim="yes")
    with pytest.raises(ValueError, match="CosineSimilarity: eps must be a number, got None"):
        nn.CosineSimilarity(eps=None)
    with pytest.raises(TypeError, match="PairwiseDistance"):
        nn.PairwiseDistance()(np.zeros((2, 3), np.int64), np.zeros((2, 3), np.int64))
