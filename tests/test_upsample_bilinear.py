"""Upsample(mode='bilinear'), as torch.nn.Upsample: forward and backward against torch on
identical inputs (sizes and factors up and down, align_corners both ways, float64 and
float32, every backend), a float64 gradient check, and the ONNX file."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

torch = pytest.importorskip("torch")

CASES = [((3, 5), dict(size=(6, 9))), ((7, 7), dict(size=(2, 3))), ((4, 1), dict(scale_factor=2)),
         ((5, 8), dict(scale_factor=1.7)), ((3, 5), dict(scale_factor=(0.6, 2.5))),
         ((3, 5), dict(scale_factor=1.2)),  # H: 3 -> 3 stays as it is, as torch
         ((1, 4), dict(size=(1, 1))), ((5, 8), dict(scale_factor=0.5))]


@pytest.mark.parametrize("hw, size", CASES)
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_bilinear_upsample_matches_torch(hw, size, align_corners, dtype, tol, device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *hw)).astype(dtype)
    layer = nn.Upsample(mode="bilinear", align_corners=align_corners, **size).to(device)
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.Upsample(mode="bilinear", align_corners=align_corners, **size)(xt)
    grad = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(grad))
    dx = layer.backward(backend.asarray(grad))
    assert tuple(y.shape) == tuple(yt.shape)
    np.testing.assert_allclose(tn.asnumpy(y), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)


def test_bilinear_upsample_passes_the_gradient_check():
    x = np.random.default_rng(1).standard_normal((1, 2, 3, 4))
    assert tn.gradcheck(nn.Upsample(scale_factor=1.5, mode="bilinear").double(), [x])
    assert tn.gradcheck(nn.Upsample(size=(5, 2), mode="bilinear", align_corners=True).double(),
                        [x])


def test_bilinear_upsample_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1),
                          nn.Upsample(scale_factor=2, mode="bilinear"))
    tn.onnx.export(model, x, tmp_path / "up.onnx")
    session = ort.InferenceSession(str(tmp_path / "up.onnx"), providers=["CPUExecutionProvider"])
    model.eval()
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                               atol=1e-6)
    assert "mode='bilinear'" in repr(model[1])
