"""The padding layers as torch's (ZeroPad, ConstantPad, ReflectionPad, ReplicationPad; 1d and
2d): forward and backward against torch on identical inputs, asymmetric and zero sides,
reflection up to size - 1, replication wider than the input; float64 and float32, the CPU
and strict backends; gradchecks; every backend; ONNX export; errors."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

CASES = [("ZeroPad2d", (2,), (2, 3, 4, 5)), ("ZeroPad2d", ((1, 0, 2, 3),), (2, 3, 4, 5)),
         ("ZeroPad1d", (3,), (1, 2, 4)), ("ConstantPad1d", ((2, 1), 1.5), (2, 3, 6)),
         ("ConstantPad2d", (1, -2.0), (2, 3, 4, 5)), ("ReflectionPad1d", ((3, 2),), (2, 3, 5)),
         ("ReflectionPad1d", ((4, 4),), (1, 2, 5)), ("ReflectionPad2d", ((1, 3, 2, 0),),
                                                     (2, 3, 4, 5)),
         ("ReflectionPad2d", (1,), (2, 3, 2, 2)), ("ReplicationPad1d", ((4, 2),), (2, 3, 3)),
         ("ReplicationPad2d", ((3, 1, 0, 5),), (2, 3, 4, 5)),
         ("ReplicationPad2d", (2,), (1, 1, 1, 1)), ("ReflectionPad2d", ((0, 0, 0, 0),),
                                                    (1, 2, 3, 3))]


@pytest.mark.parametrize("name, args, shape", CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_padding_matches_torch(name, args, shape, dtype, device, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(dtype)
    layer = getattr(nn, name)(*args).to(device)
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = getattr(torch.nn, name)(*args)(xt)
    grad = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.tensor(grad))
    dx = layer.backward(backend.asarray(grad))
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert tn.asnumpy(y).dtype == np.dtype(dtype) and tn.asnumpy(dx).dtype == np.dtype(dtype)
    np.testing.assert_array_equal(tn.asnumpy(y), yt.detach().numpy())
    np.testing.assert_allclose(tn.asnumpy(dx), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("layer", [nn.ReflectionPad2d((2, 1, 0, 3)), nn.ReplicationPad1d(3),
                                   nn.ConstantPad2d(1, 0.5)])
def test_padding_gradcheck(layer, rng):
    shape = (2, 2, 5) if isinstance(layer, nn.ReplicationPad1d) else (2, 2, 4, 5)
    assert tn.gradcheck(layer.double(), [rng.standard_normal(shape)])


def test_padding_agrees_across_backends(any_device, rng):
    backend = tn.get_backend(any_device)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    for make in (lambda: nn.ReflectionPad2d((2, 1, 3, 0)), lambda: nn.ReplicationPad2d(2),
                 lambda: nn.ConstantPad2d((1, 2, 0, 1), 3.0)):
        ref, layer = make(), make()
        y_ref, y = ref(x), layer(backend.asarray(x))
        grad = rng.standard_normal(y_ref.shape).astype(np.float32)
        np.testing.assert_array_equal(tn.asnumpy(y), y_ref)
        np.testing.assert_allclose(tn.asnumpy(layer.backward(backend.asarray(grad))),
                                   ref.backward(grad), rtol=1e-6, atol=1e-6)


def test_padding_exports_to_onnx(tmp_path, rng):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    for layer in (nn.ZeroPad2d((1, 2, 0, 3)), nn.ConstantPad2d(1, -1.5),
                  nn.ReflectionPad2d((2, 1, 3, 0)), nn.ReplicationPad2d((0, 4, 1, 1))):
        model = nn.Sequential(nn.Conv2d(3, 2, 1), layer)
        tn.onnx.export(model, x, tmp_path / "pad.onnx")
        session = ort.InferenceSession(str(tmp_path / "pad.onnx"),
                                       providers=["CPUExecutionProvider"])
        for batch in (x, x[:1]):
            np.testing.assert_allclose(session.run(None, {"input": batch})[0], model(batch),
                                       rtol=1e-6, atol=1e-6, err_msg=repr(layer))
    x1 = rng.standard_normal((2, 3, 6)).astype(np.float32)
    for layer in (nn.ReflectionPad1d((2, 3)), nn.ReplicationPad1d(2), nn.ZeroPad1d((0, 1))):
        model = nn.Sequential(layer)
        tn.onnx.export(model, x1, tmp_path / "pad1.onnx")
        session = ort.InferenceSession(str(tmp_path / "pad1.onnx"),
                                       providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"input": x1})[0], model(x1), rtol=1e-6,
                                   atol=1e-6, err_msg=repr(layer))


def test_padding_errors_name_the_layer():
    assert repr(nn.ConstantPad2d(1, 2.0)) == "ConstantPad2d((1, 1, 1, 1), value=2.0)"
    with pytest.raises(ValueError, match=r"ReflectionPad1d\(\(3, 3\)\) got input of shape "
                                         r"\(1, 2, 3\): reflection padding \(3, 3\) must be "
                                         r"less than the size 3 of axis 2"):
        nn.ReflectionPad1d(3)(np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"ZeroPad2d.*expected \(N, C, H, W\)"):
        nn.ZeroPad2d(1)(np.zeros((2, 3, 4), np.float32))
    for bad in ((1, 2, 3), -1, (1, -1, 0, 0), 1.5, (True, 0, 0, 0)):
        with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be an int >= 0 or a "
                                             r"tuple \(left, right, top, bottom\)"):
            nn.ZeroPad2d(bad)
    with pytest.raises(ValueError, match=r"ReplicationPad1d: padding must be .*\(left, right\)"):
        nn.ReplicationPad1d((1, 2, 3, 4))
    with pytest.raises(TypeError, match="int64"):
        nn.ZeroPad1d(1)(np.zeros((1, 1, 3), np.int64))


def test_padding_value_and_empty_axes_are_checked():
    with pytest.raises(ValueError, match="ConstantPad2d: value must be a number, got 'a'"):
        nn.ConstantPad2d(1, "a")
    with pytest.raises(ValueError, match=r"ReplicationPad2d\(\(1, 1, 1, 1\)\) got input of shape "
                                         r"\(1, 2, 0, 3\): axis 2 is empty"):
        nn.ReplicationPad2d(1)(np.zeros((1, 2, 0, 3), np.float32))
