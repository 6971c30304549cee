"""MaxPool1d, AvgPool1d and AdaptiveAvgPool1d as torch's: forward and backward against
torch on identical inputs (padding, strides, dilation, ceil_mode, count_include_pad,
return_indices), float64 and float32, the CPU and strict backends; gradchecks; every
backend; ONNX export; errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from onnx_reference import assert_onnxruntime_matches
from tensornet import nn

CASES = [
    ("MaxPool1d", dict(kernel_size=3, stride=2, padding=1)), ("MaxPool1d", dict(kernel_size=2)),
    ("MaxPool1d", dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True)),
    ("MaxPool1d", dict(kernel_size=(4,), stride=(3,), ceil_mode=True)),
    ("AvgPool1d", dict(kernel_size=3, stride=2, padding=1)),
    ("AvgPool1d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("AvgPool1d", dict(kernel_size=4, stride=3, ceil_mode=True)),
    ("AvgPool1d", dict(kernel_size=5, stride=1, padding=2, ceil_mode=True,
                       count_include_pad=False)),
    ("AdaptiveAvgPool1d", dict(output_size=5)), ("AdaptiveAvgPool1d", dict(output_size=13)),
    ("AdaptiveAvgPool1d", dict(output_size=1)), ("AdaptiveAvgPool1d", dict(output_size=20))]


@pytest.mark.parametrize("name, options", CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-6)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_pool1d_matches_torch(name, options, dtype, tol, device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 13)).astype(dtype)
    layer = getattr(nn, name)(**options).to(device)
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn, name)(**options)(xt)
    grad = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(grad))
    dx = layer.backward(backend.asarray(grad))
    assert tuple(y.shape) == tuple(yt.shape) and tn.asnumpy(y).dtype == np.dtype(dtype)
    np.testing.assert_allclose(tn.asnumpy(y), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("options", [dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=2, ceil_mode=True)])
def test_maxpool1d_return_indices_are_pytorchs(options, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 11))
    y, indices = nn.MaxPool1d(return_indices=True, **options)(x)
    yt, expected = torch.nn.MaxPool1d(return_indices=True, **options)(torch.tensor(x))
    np.testing.assert_array_equal(indices, expected.numpy())
    np.testing.assert_array_equal(y, yt.numpy())
    assert indices.dtype == np.int64


@pytest.mark.parametrize("layer", [nn.MaxPool1d(3, 2, 1), nn.AvgPool1d(3, 2, 1, ceil_mode=True),
                                   nn.AdaptiveAvgPool1d(4)])
def test_pool1d_gradcheck(layer, rng):
    # distinct values: a max pool's gradient is not smooth at ties
    x = rng.permutation(2 * 3 * 9).reshape(2, 3, 9) / 7.0
    assert tn.gradcheck(layer.double(), [x])


@pytest.mark.parametrize("make", [lambda: nn.MaxPool1d(3, 2, 1), lambda: nn.AvgPool1d(3, 2),
                                  lambda: nn.AdaptiveAvgPool1d(4)])
def test_pool1d_agrees_across_backends(make, any_device, rng):
    x = rng.standard_normal((2, 3, 10)).astype(np.float32)
    ref, layer = make(), make()
    backend = tn.get_backend(any_device)
    y_ref, y = ref(x), layer(backend.asarray(x))
    grad = rng.standard_normal(tuple(y_ref.shape)).astype(np.float32)
    dx_ref, dx = ref.backward(grad), layer.backward(backend.asarray(grad))
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-6, atol=1e-6)
    assert tn.asnumpy(dx).dtype == np.float32


def test_a_conv1d_model_with_1d_pools_exports_to_onnx(tmp_path, rng):
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(3, 2, 1),
                          nn.AvgPool1d(2, ceil_mode=True, count_include_pad=False),
                          nn.AdaptiveAvgPool1d(3), nn.Flatten(), nn.Linear(12, 5))
    x = rng.standard_normal((3, 2, 17)).astype(np.float32)
    assert_onnxruntime_matches(model, x, tmp_path / "pool1d.onnx", rng=rng)


def test_pool1d_reprs_and_errors_name_the_layer():
    assert repr(nn.MaxPool1d(3, 2, 1, dilation=2)) == \
        "MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2)"
    assert repr(nn.AvgPool1d(2, count_include_pad=False)) == \
        "AvgPool1d(kernel_size=2, count_include_pad=False)"
    assert repr(nn.AdaptiveAvgPool1d(4)) == "AdaptiveAvgPool1d(output_size=4)"
    with pytest.raises(ValueError, match=r"MaxPool1d\(kernel_size=2\).*expected \(N, C, L\)"):
        nn.MaxPool1d(2)(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool1d\(kernel_size=5\) got input of shape "
                                         r"\(2, 3, 4\): L \+ padding is smaller than the "
                                         r"\(dilated\) kernel 5"):
        nn.MaxPool1d(5)(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="AvgPool1d: padding 2 must be at most half the kernel "
                                         "size 3"):
        nn.AvgPool1d(3, padding=2)
    with pytest.raises(ValueError, match="MaxPool1d: kernel_size must be an int >= 1, got "
                                         r"\(2, 2\)"):
        nn.MaxPool1d((2, 2))
    with pytest.raises(ValueError, match="AdaptiveAvgPool1d: output_size must be an int >= 1"):
        nn.AdaptiveAvgPool1d(0)
    with pytest.raises(ValueError, match="ONNX export: MaxPool1d.*return_indices=True"):
        tn.onnx.export(nn.Sequential(nn.MaxPool1d(2, return_indices=True)),
                       np.zeros((1, 1, 4), np.float32))


@pytest.mark.parametrize("name, options, length", [
    ("MaxPool1d", dict(kernel_size=2, ceil_mode=True), 1),
    ("AvgPool1d", dict(kernel_size=4, stride=2, ceil_mode=True), 3),
    ("MaxPool1d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), 1)])
def test_ceil_mode_windows_that_only_its_extra_end_makes_fit(name, options, length):
    """ceil_mode pads the end for the last, partial window: an input shorter than the
    kernel plus the padding can still have one (as PyTorch, and as the 2-D pools)."""
    torch = pytest.importorskip("torch")
    x = np.arange(1.0, length + 1).reshape(1, 1, length)
    expected = getattr(torch.nn, name)(**options)(torch.tensor(x)).numpy()
    np.testing.assert_allclose(getattr(nn, name)(**options)(x), expected, rtol=1e-12)


def test_pool1d_argument_and_empty_input_checks():
    with pytest.raises(ValueError, match="AvgPool1d: count_include_pad must be True or False, "
                                         "got 'no'"):
        nn.AvgPool1d(2, count_include_pad="no")
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool1d\(output_size=2\) got input of "
                                         r"shape \(2, 3, 0\)"):
        nn.AdaptiveAvgPool1d(2)(np.zeros((2, 3, 0), np.float32))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*got input of shape \(1, 1, 0, 3\)"):
        nn.AdaptiveAvgPool2d(2)(np.zeros((1, 1, 0, 3), np.float32))
