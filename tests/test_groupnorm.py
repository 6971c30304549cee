"""GroupNorm and InstanceNorm1d/2d as torch's: forward, input and parameter gradients
against torch on identical inputs (1-D to 3-D spatial layouts, one group to one per
channel, with and without affine), a float64 gradient check, the same output in eval,
every backend, ONNX export, and errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

CASES = [((4, 6, 5, 3), 3), ((2, 6), 2), ((3, 4, 7), 4), ((2, 8, 3, 3, 2), 1),
         ((5, 6, 4, 4), 6), ((1, 4, 2, 2), 2)]


def _twins(groups, channels, affine, dtype, device, rng):
    torch = pytest.importorskip("torch")
    layer = nn.GroupNorm(groups, channels, affine=affine, dtype=dtype).to(device)
    ref = torch.nn.GroupNorm(groups, channels, affine=affine).to(getattr(torch, dtype))
    if affine:
        weight, bias = rng.uniform(0.5, 2.0, channels), rng.standard_normal(channels)
        layer.weight.data = layer.backend.asarray(weight.astype(dtype))
        layer.bias.data = layer.backend.asarray(bias.astype(dtype))
        ref.weight.data, ref.bias.data = torch.tensor(weight), torch.tensor(bias)
        ref.to(getattr(torch, dtype))
    return layer, ref


@pytest.mark.parametrize("shape, groups", CASES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_groupnorm_matches_torch(shape, groups, affine, dtype, tol, device, rng):
    torch = pytest.importorskip("torch")
    layer, ref = _twins(groups, shape[1], affine, dtype, device, rng)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    y = layer(layer.backend.asarray(x))
    dx = layer.backward(layer.backend.asarray(grad))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(grad))
    assert tn.asnumpy(y).dtype == np.dtype(dtype)
    np.testing.assert_allclose(tn.asnumpy(y), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)
    if affine:
        np.testing.assert_allclose(tn.asnumpy(layer.weight.grad), ref.weight.grad.numpy(),
                                   rtol=tol, atol=tol * 10)
        np.testing.assert_allclose(tn.asnumpy(layer.bias.grad), ref.bias.grad.numpy(),
                                   rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("shape, groups", [((3, 6, 4, 2), 3), ((2, 4, 5), 1), ((4, 3), 3)])
def test_groupnorm_gradcheck_and_eval_uses_the_same_statistics(shape, groups, rng):
    layer = nn.GroupNorm(groups, shape[1], dtype="float64")
    layer.weight.data = rng.uniform(0.5, 2.0, shape[1])
    layer.bias.data = rng.standard_normal(shape[1])
    x = rng.standard_normal(shape) * 2 + 0.5
    grouped = x.reshape(shape[0], groups, -1)
    want = ((grouped - grouped.mean(axis=2, keepdims=True))
            / np.sqrt(grouped.var(axis=2, keepdims=True) + 1e-5)).reshape(shape)
    channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    want = want * layer.weight.data.reshape(channel) + layer.bias.data.reshape(channel)
    np.testing.assert_allclose(layer(x), want, rtol=1e-12, atol=1e-12)
    layer.eval()
    np.testing.assert_allclose(layer(x), want, rtol=1e-12, atol=1e-12)
    assert tn.gradcheck(layer, x)


def test_groupnorm_takes_a_non_contiguous_input_and_keeps_pytorch_names(rng):
    x = rng.standard_normal((4, 3, 5, 6)).astype(np.float32)
    layer = nn.GroupNorm(2, 6)
    view = x.transpose(0, 3, 1, 2)  # (4, 6, 3, 5), not contiguous
    np.testing.assert_allclose(layer(view), layer(np.ascontiguousarray(view)), rtol=1e-6,
                               atol=1e-6)
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert repr(layer) == "GroupNorm(2, 6, eps=1e-05, affine=True)"
    assert list(nn.GroupNorm(2, 6, affine=False).state_dict()) == []


def test_groupnorm_agrees_across_backends(any_device, rng):
    x = (rng.standard_normal((5, 6, 4, 3)) * 2 + 1).astype(np.float32)
    grad = rng.standard_normal(x.shape).astype(np.float32)
    ref, layer = nn.GroupNorm(3, 6), nn.GroupNorm(3, 6).to(any_device)
    y_ref, y = ref(x), layer(layer.backend.asarray(x))
    dx_ref, dx = ref.backward(grad), layer.backward(layer.backend.asarray(grad))
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-4, atol=1e-5)
    for mine, theirs in ((layer.weight.grad, ref.weight.grad), (layer.bias.grad, ref.bias.grad)):
        assert tn.asnumpy(mine).dtype == np.float32
        np.testing.assert_allclose(tn.asnumpy(mine), theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [lambda: nn.GroupNorm(4, 8),
                                  lambda: nn.GroupNorm(4, 8, affine=False),
                                  lambda: nn.InstanceNorm2d(8, affine=True)])
def test_groupnorm_and_instancenorm_export_to_onnx(tmp_path, make, rng):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), make(), nn.ReLU())
    if model[1].affine:
        model[1].weight.data = rng.uniform(0.5, 2.0, 8).astype(np.float32)
        model[1].bias.data = rng.standard_normal(8).astype(np.float32)
    x = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    tn.onnx.export(model, x, tmp_path / "gn.onnx")
    session = ort.InferenceSession(str(tmp_path / "gn.onnx"), providers=["CPUExecutionProvider"])
    model.eval()
    for batch in (x, rng.standard_normal((7, 3, 6, 5)).astype(np.float32)):  # 2 batch sizes
        np.testing.assert_allclose(session.run(None, {"input": batch})[0], model(batch),
                                   rtol=1e-5, atol=1e-5)


def test_groupnorm_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"num_channels \(6\) must be divisible by "
                                         r"num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="num_groups"):
        nn.GroupNorm(0, 6)
    with pytest.raises(ValueError, match="GroupNorm: eps must be a positive finite number"):
        nn.GroupNorm(2, 6, eps=-1.0)
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 6\) got input of shape \(3, 4, 5\); "
                                         r"expected \(N, 6, \.\.\.\)"):
        nn.GroupNorm(2, 6)(np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 6\) got input of shape \(3, 6, 0\); "
                                         r"expected at least one value along every axis"):
        nn.GroupNorm(2, 6)(np.zeros((3, 6, 0), np.float32))
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 6\) got input of shape \(6,\)"):
        nn.GroupNorm(2, 6)(np.zeros(6, np.float32))
    with pytest.raises(TypeError, match="float64 input"):
        nn.GroupNorm(2, 6)(np.zeros((3, 6)))
    layer = nn.GroupNorm(2, 6)
    layer.weight.data = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 6\): weight and bias must have 6 "
                                         r"values, got shapes \(3,\) and \(6,\)"):
        layer(np.zeros((2, 6, 3), np.float32))


# ---------------------------------------------------------------------- InstanceNorm
@pytest.mark.parametrize("name, shape", [("InstanceNorm2d", (3, 4, 5, 6)),
                                         ("InstanceNorm1d", (2, 3, 7))])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
def test_instancenorm_matches_torch(name, shape, affine, dtype, tol, rng):
    torch = pytest.importorskip("torch")
    layer = getattr(nn, name)(shape[1], affine=affine, dtype=dtype)
    ref = getattr(torch.nn, name)(shape[1], affine=affine).to(getattr(torch, dtype))
    if affine:
        weight, bias = rng.uniform(0.5, 2.0, shape[1]), rng.standard_normal(shape[1])
        layer.weight.data, layer.bias.data = weight.astype(dtype), bias.astype(dtype)
        ref.weight.data = torch.tensor(weight).to(getattr(torch, dtype))
        ref.bias.data = torch.tensor(bias).to(getattr(torch, dtype))
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    yt.backward(torch.tensor(grad))
    np.testing.assert_allclose(layer(x), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(layer.backward(grad), xt.grad.numpy(), rtol=tol, atol=tol)
    assert list(layer.state_dict()) == list(ref.state_dict())
    if affine:
        np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=tol,
                                   atol=tol * 10)
    assert tn.gradcheck(getattr(nn, name)(shape[1], affine=affine, dtype="float64"),
                        [rng.standard_normal(shape)])


def test_instancenorm_errors_as_pytorch():
    with pytest.raises(ValueError, match="InstanceNorm2d: track_running_stats=True .* not "
                                         "implemented"):
        nn.InstanceNorm2d(4, track_running_stats=True)
    with pytest.raises(ValueError, match=r"InstanceNorm2d\(4\) got input of shape \(2, 4, 5\); "
                                         r"expected \(N, 4, H, W\)"):
        nn.InstanceNorm2d(4)(np.zeros((2, 4, 5), np.float32))
    for layer in (nn.InstanceNorm1d(3), nn.InstanceNorm1d(3).eval()):  # PyTorch: both
        with pytest.raises(ValueError, match=r"InstanceNorm1d\(3\): expected more than 1 "
                                             r"spatial element"):
            layer(np.zeros((2, 3, 1), np.float32))
    with pytest.raises(ValueError, match="num_features"):
        nn.InstanceNorm1d(0)
    with pytest.raises(ValueError, match="InstanceNorm1d: eps must be a positive finite"):
        nn.InstanceNorm1d(4, eps=float("nan"))
    with pytest.raises(ValueError, match=r"InstanceNorm1d\(4\) got input of shape \(2, 3, 5\); "
                                         r"expected \(N, 4, L\)"):
        nn.InstanceNorm1d(4)(np.zeros((2, 3, 5), np.float32))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_float16_statistics_are_taken_in_float32(rng):
    """float16 squares overflow past 256: the mean and variance (and backward's sums) are
    computed in float32, as PyTorch, and the results returned in float16. (The returned
    variance itself, 90,000 here, has no float16 value: NumPy warns as it becomes inf.)"""
    torch = pytest.importorskip("torch")
    x = (300 * np.arange(-3, 3).reshape(1, 2, 3)).astype(np.float16)
    layer = nn.GroupNorm(1, 2, dtype="float16")
    y = layer(x)
    assert y.dtype == np.float16
    expected = torch.nn.GroupNorm(1, 2).half()(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(y, expected, rtol=2e-3, atol=2e-3)
    dx = layer.backward(np.full(x.shape, 100.0, np.float16))
    assert dx.dtype == np.float16 and np.isfinite(dx).all()
    assert np.isfinite(nn.LayerNorm(3, dtype="float16")(x)).all()
