"""MaxPool2d and AvgPool2d with ``ceil_mode`` (and AvgPool2d's ``divisor_override``), as
torch.nn: output sizes, values and gradients against torch on identical inputs (numpy and
strict), float64 gradient checks, the ONNX file, and the arguments in torch's order."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

torch = pytest.importorskip("torch")

# (H, W), kernel, stride, padding: each leaves a partial last window on some axis
GEOMETRIES = [((5, 7), 2, 2, 0), ((6, 6), 3, 2, 1), ((7, 4), 3, 2, 0), ((8, 5), 2, 3, 1),
              ((4, 3), 4, 3, 2), ((5, 7), 3, 2, (0, 1))]


def _compare(ours, theirs, x, device, tol=1e-12):
    backend = tn.get_backend(device)
    y = ours.to(device)(backend.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    grad = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(grad))
    dx = ours.backward(backend.asarray(grad))
    assert tuple(y.shape) == tuple(yt.shape)
    np.testing.assert_allclose(tn.asnumpy(y), yt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("hw, k, s, p", GEOMETRIES)
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_max_pool_ceil_mode_matches_torch(hw, k, s, p, device):
    x = np.random.default_rng(0).standard_normal((2, 3, *hw))
    _compare(nn.MaxPool2d(k, s, p, ceil_mode=True).double(),
             torch.nn.MaxPool2d(k, s, p, ceil_mode=True), x, device)


@pytest.mark.parametrize("hw, k, s, p", GEOMETRIES)
@pytest.mark.parametrize("ceil_mode, count_include_pad, divisor_override", [
    (True, True, None), (True, False, None), (False, True, 3), (True, False, 5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_avg_pool_ceil_mode_and_divisor_match_torch(hw, k, s, p, ceil_mode, count_include_pad,
                                                    divisor_override, device):
    x = np.random.default_rng(0).standard_normal((2, 3, *hw))
    # positional, in torch's order: kernel, stride, padding, ceil_mode, count_include_pad
    _compare(nn.AvgPool2d(k, s, p, ceil_mode, count_include_pad, divisor_override).double(),
             torch.nn.AvgPool2d(k, s, p, ceil_mode, count_include_pad, divisor_override), x,
             device)


def test_ceil_mode_pools_pass_the_gradient_check():
    x = np.random.default_rng(2).standard_normal((1, 2, 5, 6))
    assert tn.gradcheck(nn.AvgPool2d(3, 2, 1, ceil_mode=True).double(), [x])
    assert tn.gradcheck(nn.AvgPool2d(2, 3, divisor_override=3, ceil_mode=True).double(), [x])
    assert tn.gradcheck(nn.MaxPool2d(2, 2, ceil_mode=True).double(), [x])


def test_ceil_mode_pools_export_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.random.default_rng(3).standard_normal((2, 2, 7, 9)).astype(np.float32)
    model = nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True),
                          nn.AvgPool2d(3, 2, 1, ceil_mode=True),
                          nn.AvgPool2d(2, 1, divisor_override=3))
    tn.onnx.export(model, x, tmp_path / "pools.onnx")
    session = ort.InferenceSession(str(tmp_path / "pools.onnx"),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                               atol=1e-6)


def test_pool_arguments_are_checked():
    with pytest.raises(ValueError, match="MaxPool2d: return_indices must be True or False"):
        nn.MaxPool2d(2, return_indices="yes")
    assert "return_indices=True" in repr(nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(ValueError, match="AvgPool2d: divisor_override must be a positive"):
        nn.AvgPool2d(2, divisor_override=0)
    with pytest.raises(ValueError, match="MaxPool2d: ceil_mode must be True or False"):
        nn.MaxPool2d(2, ceil_mode="yes")
    assert "ceil_mode=True" in repr(nn.MaxPool2d(2, ceil_mode=True))
    assert "divisor_override=3" in repr(nn.AvgPool2d(2, divisor_override=3))


@pytest.mark.parametrize("make", [lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                                  lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True),
                                  lambda: nn.AvgPool2d(2, 3, divisor_override=5,
                                                       ceil_mode=True)])
def test_ceil_mode_pools_agree_on_every_device(any_device, make):
    """float32 on every device (the CUDA kernels under the emulation in CI) against NumPy."""
    x = np.random.default_rng(4).standard_normal((2, 3, 7, 6)).astype(np.float32)
    ref, pool = make(), make().to(any_device)
    backend = tn.get_backend(any_device)
    y, expected = pool(backend.asarray(x)), ref(x)
    grad = np.random.default_rng(5).standard_normal(expected.shape).astype(np.float32)
    np.testing.assert_allclose(tn.asnumpy(y), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tn.asnumpy(pool.backward(backend.asarray(grad))),
                               ref.backward(grad), rtol=1e-6, atol=1e-6)
