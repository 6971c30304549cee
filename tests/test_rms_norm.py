"""RMSNorm as torch's: output, input and weight gradients against torch.nn.RMSNorm with
the same weight (one and two normalized axes, eps given or the dtype's, no affine),
float64, float32 and float16, the CPU and strict backends; gradchecks; every backend; the
LayerNorm it now shares a file with; errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from torch_reference import compare_layer, torch_or_skip

CASES = [((4, 6), 6, {}), ((2, 3, 4, 5), (4, 5), dict(eps=1e-5)),
         ((3, 7), 7, dict(elementwise_affine=False)), ((5, 1), 1, dict(eps=0.0))]


@pytest.mark.parametrize("shape, normalized, options", CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6),
                                        ("float16", 5e-3)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_rms_norm_matches_torch(shape, normalized, options, dtype, tol, device, rng):
    torch = torch_or_skip()
    if dtype == "float16" and device == "strict":
        pytest.skip("array-api-strict has no float16")
    layer = nn.RMSNorm(normalized, **options).to(device, dtype)
    twin = torch.nn.RMSNorm(normalized, **options).to(getattr(torch, dtype))
    if layer.weight is not None:  # not all ones, so the weight's part is tested
        weight = rng.uniform(0.5, 1.5, layer.weight.shape).astype(dtype)
        layer.weight.data = tn.get_backend(device).asarray(weight)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    compare_layer(layer, twin, x, device, rtol=tol, atol=tol)
    assert tn.asnumpy(layer(tn.get_backend(device).asarray(x))).dtype == np.dtype(dtype)


def test_eps_none_is_the_dtypes_machine_epsilon():
    x = np.zeros((2, 3))  # rms 0: y = 0 / sqrt(eps), finite only with eps > 0
    assert np.isfinite(nn.RMSNorm(3).double()(x)).all()
    y = nn.RMSNorm(3, elementwise_affine=False).double()(np.full((1, 3), 1e-9))
    np.testing.assert_allclose(y, 1e-9 / np.sqrt(1e-18 + np.finfo(np.float64).eps))


@pytest.mark.parametrize("scale", [1e-2, 1e-3])
def test_float16_eps_none_is_float32s_epsilon_as_torch(scale, rng):
    """torch computes float16 statistics in float32 and, with eps=None, adds float32's
    epsilon (its opmath type's, 1.2e-7), not float16's (9.8e-4): on inputs of about 1e-3
    float16's epsilon would dominate mean(x^2) and shrink y about 30-fold."""
    torch = torch_or_skip()
    layer = nn.RMSNorm(8).to(dtype="float16")
    twin = torch.nn.RMSNorm(8, dtype=torch.float16)
    x = (rng.standard_normal((3, 8)) * scale).astype(np.float16)
    compare_layer(layer, twin, x, "cpu", rtol=1e-2, atol=1e-2)


def test_eps_may_be_a_numpy_number():
    """As torch's (np.float32(1e-5) is a float to it)."""
    assert nn.RMSNorm(4, eps=np.float32(0.5)).eps == 0.5


@pytest.mark.parametrize("layer, shape", [(nn.RMSNorm(5), (3, 5)),
                                          (nn.RMSNorm((2, 3), eps=1e-3), (2, 4, 2, 3))])
def test_rms_norm_gradcheck(layer, shape, rng):
    layer = layer.double()
    layer.weight.data = rng.uniform(0.5, 1.5, layer.weight.shape)
    assert tn.gradcheck(layer, [rng.standard_normal(shape)])


def test_rms_norm_agrees_across_backends(any_device, rng):
    x = rng.standard_normal((3, 4, 6)).astype(np.float32)
    ref, layer = nn.RMSNorm(6), nn.RMSNorm(6)
    layer.to(any_device)
    backend = tn.get_backend(any_device)
    y_ref, y = ref(x), layer(backend.asarray(x))
    grad = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(layer.backward(backend.asarray(grad))),
                               ref.backward(grad), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(layer.weight.grad), ref.weight.grad, rtol=1e-5,
                               atol=1e-5)


def test_reprs_and_errors_name_the_layer():
    assert repr(nn.RMSNorm((4, 5), eps=1e-5)) == \
        "RMSNorm((4, 5), eps=1e-05, elementwise_affine=True)"
    assert repr(nn.LayerNorm(4)) == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
    with pytest.raises(ValueError, match="RMSNorm: normalized_shape must name at least one"):
        nn.RMSNorm(())
    with pytest.raises(ValueError, match="RMSNorm: eps must be a number >= 0 or None"):
        nn.RMSNorm(4, eps=-1.0)
    with pytest.raises(ValueError, match=r"RMSNorm\(\(4,\)\) got input of shape \(2, 5\); "
                                         r"expected \(N, \.\.\., 4\)"):
        nn.RMSNorm(4)(np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match=r"RMSNorm\(\(4,\)\)"):
        nn.RMSNorm(4)(np.zeros((2, 4), np.float64))
    with pytest.raises(RuntimeError, match=r"RMSNorm\(\(4,\)\)\.backward called before"):
        nn.RMSNorm(4).backward(np.zeros((2, 4), np.float32))
    # bool() made these strings True (an affine layer asked for without one), float() raised
    # its own TypeError for None
    with pytest.raises(ValueError, match="RMSNorm: elementwise_affine must be True or False, "
                                         "got 'False'"):
        nn.RMSNorm(4, elementwise_affine="False")
    with pytest.raises(ValueError, match="LayerNorm: elementwise_affine must be True or False"):
        nn.LayerNorm(4, elementwise_affine="False")
    with pytest.raises(ValueError, match="LayerNorm: bias must be True or False, got 'no'"):
        nn.LayerNorm(4, bias="no")
    with pytest.raises(ValueError, match="LayerNorm: eps must be a number, got None"):
        nn.LayerNorm(4, eps=None)
