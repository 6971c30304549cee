"""ONNX export audit: configurations whose file computed something else than tensornet's
eval-mode forward in onnxruntime, or that failed without a clear message. Each test fails
on the code before its fix. Tolerances: float32 rtol 1e-5 (atol 1e-6), float64 rtol 1e-12."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

from test_onnx import _reference, _run  # noqa: F401  (also skips without onnx/onnxruntime)

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")


def _export_and_compare(model, x, path, rtol=1e-5, atol=1e-6, **kwargs):
    tn.onnx.export(model, x[:1], path, **kwargs)  # batch 1 exported, the whole batch run
    np.testing.assert_allclose(_run(path, x), _reference(model, x, kwargs.get("input_transform")),
                               rtol=rtol, atol=atol)


@pytest.mark.parametrize("beta, threshold", [(1.0, 2.0), (0.5, 1.0), (2.0, 20.0)])
def test_softplus_threshold_is_exported(tmp_path, rng, beta, threshold):
    """SoftPlus is linear where beta * x > threshold; the file ignored the threshold
    (SoftPlus(threshold=2) at x = 3: 3.049 instead of 3)."""
    x = 4.0 * rng.standard_normal((7, 6)).astype(np.float32)
    _export_and_compare(nn.Sequential(nn.SoftPlus(beta=beta, threshold=threshold)), x,
                        tmp_path / "s.onnx")


@pytest.mark.parametrize("stride, padding, output_padding, dilation, bias", [
    (1, 0, 1, 2, True),        # output_padding < dilation but not < stride (PyTorch allows it)
    ((1, 2), (1, 0), (1, 1), (2, 1), False),
    (2, 1, 1, 1, True),        # the ordinary case keeps working
    (3, 0, 2, 1, True),        # output_padding past the padding: zero rows plus the bias
])
def test_conv_transpose_output_padding_as_large_as_pytorch_allows(
        tmp_path, rng, stride, padding, output_padding, dilation, bias):
    """onnxruntime refused the file when output_padding >= stride ('output_padding (1) may
    be too large for stride (1)')."""
    model = nn.Sequential(nn.ConvTranspose2d(2, 3, 3, stride=stride, padding=padding,
                                             output_padding=output_padding, dilation=dilation,
                                             bias=bias))
    x = rng.standard_normal((7, 2, 5, 4)).astype(np.float32)
    _export_and_compare(model, x, tmp_path / "t.onnx")


def test_leaky_relu_slope_keeps_float64(tmp_path, rng):
    """LeakyRelu's alpha attribute is a float32: a float64 model's slope 0.1 was rounded
    (relative error 1.5e-8)."""
    model = nn.Sequential(nn.Linear(4, 5), nn.LeakyReLU(0.1), nn.Linear(5, 3),
                          nn.LeakyReLU(-0.3)).double()
    x = rng.standard_normal((7, 4))
    _export_and_compare(model, x, tmp_path / "l.onnx", rtol=1e-12, atol=0)


@pytest.mark.parametrize("transform", [tn.data.Compose(tn.data.Normalize(0.5, 2.0)),
                                       lambda x: 2 * x])
def test_an_input_transform_other_than_normalize_is_refused_clearly(tmp_path, transform):
    """Any other callable raised AttributeError: 'Compose' object has no attribute 'mean'."""
    with pytest.raises(TypeError, match=r"input_transform must be a tensornet\.data\.Normalize"):
        tn.onnx.export(nn.Sequential(nn.Linear(3, 2)), np.zeros((1, 3), np.float32),
                       tmp_path / "x.onnx", input_transform=transform)
    assert not (tmp_path / "x.onnx").exists()


def test_a_module_used_twice_at_two_sizes(tmp_path, rng):
    """The shapes were recorded per module, so a module called twice was converted with the
    sizes of its last call: the shared Upsample's first MatMul got the 6x6 matrices of a
    3x3 input and onnxruntime refused the file."""
    up, flat = nn.Upsample(scale_factor=2), nn.Flatten(2)
    model = nn.Sequential(up, nn.Conv2d(2, 2, 1), up, flat, nn.Residual(nn.Sequential(flat)))
    x = rng.standard_normal((7, 2, 3, 3)).astype(np.float32)
    _export_and_compare(model, x, tmp_path / "u.onnx")


def test_flatten_of_one_axis_is_the_identity(tmp_path, rng):
    """Flatten(0, 0) merges no axes, yet was refused as one that 'merges the batch axis'."""
    x = rng.standard_normal((7, 2, 3)).astype(np.float32)
    _export_and_compare(nn.Sequential(nn.Flatten(0, 0), nn.Flatten(-1, -1), nn.Flatten(1, 2)),
                        x, tmp_path / "f.onnx")
