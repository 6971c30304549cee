"""ConvTranspose1d as torch's: forward, input, weight and bias gradients against
torch.nn.ConvTranspose1d with the same weights (stride, padding, output_padding, dilation,
groups, no bias), float64 and float32, the CPU and strict backends; default init; state
dicts both ways; gradchecks; every backend; ONNX export; reprs and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import tensornet as tn
from onnx_reference import assert_onnxruntime_matches
from torch_reference import compare_layer, torch_or_skip
from tensornet import nn

CASES = [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1, output_padding=1),
         dict(kernel_size=4, stride=3, padding=2, dilation=2),
         dict(kernel_size=2, groups=2, bias=False),
         dict(kernel_size=5, stride=2, output_padding=1, dilation=3),
         dict(kernel_size=(3,), stride=(1,), padding=(2,))]


@pytest.mark.parametrize("options", CASES)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_conv_transpose1d_matches_torch(options, dtype, tol, device, rng):
    torch = torch_or_skip()
    layer = nn.ConvTranspose1d(4, 6, **options).to(device, dtype)
    twin = torch.nn.ConvTranspose1d(4, 6, **options).to(getattr(torch, dtype))
    x = rng.standard_normal((2, 4, 9)).astype(dtype)
    compare_layer(layer, twin, x, device, rtol=tol, atol=tol)
    assert tn.asnumpy(layer(tn.get_backend(device).asarray(x))).dtype == np.dtype(dtype)



@pytest.mark.parametrize("options, length", [
    (dict(kernel_size=2, stride=7, padding=3, output_padding=6), 1),
    (dict(kernel_size=1, stride=7, padding=1, output_padding=6, dilation=3), 1),
    (dict(kernel_size=1, padding=3, output_padding=5, dilation=6, groups=2), 2)])
def test_padding_past_the_whole_canvas_as_torch(options, length, any_device, rng):
    """Found by review: with ``padding`` longer than the summed windows and a larger
    ``output_padding`` (stride 7, padding 3, output_padding 6 on one sample), the output
    lies past every window (torch: the bias alone); forward raised 'negative dimensions
    are not allowed'."""
    torch = torch_or_skip()
    layer = nn.ConvTranspose1d(4, 6, **options).to(any_device, "float64")
    twin = torch.nn.ConvTranspose1d(4, 6, **options).double()
    compare_layer(layer, twin, rng.standard_normal((2, 4, length)), any_device)
    with pytest.raises(ValueError, match=r"ONNX export: ConvTranspose1d\(4 -> 6, k=\d\) "
                                         r"cannot be exported at this input size"):
        tn.onnx.export(nn.Sequential(layer.to("cpu")), np.zeros((2, 4, length)))


@pytest.mark.parametrize("make, shape", [(lambda: nn.ConvTranspose1d(4, 6, 3), (2, 4, 0)),
                                         (lambda: nn.ConvTranspose2d(4, 6, 3), (2, 4, 0, 3)),
                                         (lambda: nn.ConvTranspose2d(4, 6, 3), (2, 4, 3, 0))])
def test_an_empty_input_is_refused(make, shape):
    """Found by review: an input of length 0 gave an output of length k - 1 holding the
    bias (torch refuses it: 'Only zero batch or zero channel inputs are supported')."""
    with pytest.raises(ValueError, match=r"ConvTranspose[12]d\(4 -> 6, k=3\) got input of "
                                         r"shape \(2, 4, [03, ]+\): .*at least one"):
        make()(np.zeros(shape, np.float32))


def test_layout_init_and_state_dict_are_pytorchs():
    torch = pytest.importorskip("torch")
    tn.manual_seed(0)
    layer = nn.ConvTranspose1d(8, 6, 5, groups=2)
    assert layer.weight.shape == (8, 3, 5) and layer.bias.shape == (6,)
    bound = 1.0 / math.sqrt(3 * 5)  # PyTorch's fan_in of (C_in, C_out/groups, k): 3 * 5
    weight = np.asarray(layer.weight.data)
    assert weight.dtype == np.float32
    assert np.abs(weight).max() <= bound and np.abs(weight).max() > 0.9 * bound
    assert np.abs(np.asarray(layer.bias.data)).max() <= bound
    twin = torch.nn.ConvTranspose1d(8, 6, 5, groups=2)
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in layer.state_dict().items()})
    back = nn.ConvTranspose1d(8, 6, 5, groups=2)
    back.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    np.testing.assert_array_equal(np.asarray(back.weight.data), weight)


def test_input_grad_false_skips_the_data_gradient(rng):
    layer = nn.ConvTranspose1d(4, 6, 3, stride=2).double()
    x = rng.standard_normal((2, 4, 7))
    layer(x)
    assert layer.backward(rng.standard_normal((2, 6, 15)), input_grad=False) is None
    assert layer.weight.grad is not None and layer.bias.grad is not None


@pytest.mark.parametrize("options", [CASES[1], CASES[3], CASES[4]])
def test_conv_transpose1d_gradcheck(options, rng):
    layer = nn.ConvTranspose1d(4, 6, **options).double()
    assert tn.gradcheck(layer, [rng.standard_normal((2, 4, 6))])


def test_conv_transpose1d_agrees_across_backends(any_device, rng):
    x = rng.standard_normal((2, 4, 9)).astype(np.float32)
    ref = nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1)
    layer = nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1)
    layer.load_state_dict(ref.state_dict())
    layer.to(any_device)
    backend = tn.get_backend(any_device)
    y_ref, y = ref(x), layer(backend.asarray(x))
    grad = rng.standard_normal(tuple(y_ref.shape)).astype(np.float32)
    dx_ref, dx = ref.backward(grad), layer.backward(backend.asarray(grad))
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(layer.weight.grad), ref.weight.grad, rtol=1e-5,
                               atol=1e-5)


def test_a_model_with_conv_transpose1d_exports_to_onnx(tmp_path, rng):
    model = nn.Sequential(nn.Conv1d(2, 4, 3, stride=2), nn.ReLU(),
                          nn.ConvTranspose1d(4, 3, 3, stride=2, padding=1, output_padding=1),
                          nn.ConvTranspose1d(3, 2, 2, groups=1, bias=False, dilation=2))
    x = rng.standard_normal((3, 2, 17)).astype(np.float32)
    assert_onnxruntime_matches(model, x, tmp_path / "deconv1d.onnx", rng=rng)


def test_reprs_and_errors_name_the_layer():
    assert repr(nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1)) == \
        "ConvTranspose1d(4, 6, kernel_size=3, stride=2, padding=1, output_padding=1)"
    assert repr(nn.ConvTranspose1d(4, 6, 2, groups=2, bias=False, dilation=3)) == \
        "ConvTranspose1d(4, 6, kernel_size=2, dilation=3, groups=2, bias=False)"
    with pytest.raises(ValueError, match="ConvTranspose1d: output_padding 2 must be smaller "
                                         "than the stride 2 or the dilation 1"):
        nn.ConvTranspose1d(4, 6, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"ConvTranspose1d: kernel_size must be an int >= 1, "
                                         r"got \(3, 3\)"):
        nn.ConvTranspose1d(4, 6, (3, 3))
    with pytest.raises(ValueError, match="ConvTranspose1d: in_channels .* divisible by groups"):
        nn.ConvTranspose1d(3, 6, 3, groups=2)
    layer = nn.ConvTranspose1d(4, 6, 3)
    with pytest.raises(ValueError, match=r"ConvTranspose1d\(4 -> 6, k=3\).*expected "
                                         r"\(N, 4, L\)"):
        layer(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"ConvTranspose1d\(4 -> 6, k=3\) got input of shape "
                                         r"\(2, 3, 5\); expected \(N, 4, L\)"):
        layer(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"ConvTranspose1d\(4 -> 6, k=3\) got input of shape "
                                         r"\(2, 4, 1\): the output length would be -3"):
        nn.ConvTranspose1d(4, 6, 3, padding=3)(np.zeros((2, 4, 1), np.float32))
