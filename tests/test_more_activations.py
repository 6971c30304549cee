"""ReLU6, Hardsigmoid, Hardswish, Mish, CELU, SELU, Softsign, LogSigmoid, Softmin, GLU,
Threshold, Hardshrink, Softshrink and Tanhshrink as torch's:
forward and backward against torch on identical inputs (the kinks of the piecewise ones
included, and tails to +-40), float64 and float32 (which each keeps), the CPU and strict
backends; float64 gradchecks away from the kinks; every backend; ONNX export."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn

LAYERS = {  # name: (tensornet layer, torch layer), both built on demand
    "ReLU6": (lambda: nn.ReLU6(), lambda t: t.nn.ReLU6()),
    "Hardsigmoid": (lambda: nn.Hardsigmoid(), lambda t: t.nn.Hardsigmoid()),
    "Hardswish": (lambda: nn.Hardswish(), lambda t: t.nn.Hardswish()),
    "Mish": (lambda: nn.Mish(), lambda t: t.nn.Mish()),
    "CELU": (lambda: nn.CELU(), lambda t: t.nn.CELU()),
    "CELU-0.5": (lambda: nn.CELU(0.5), lambda t: t.nn.CELU(0.5)),
    "SELU": (lambda: nn.SELU(), lambda t: t.nn.SELU()),
    "Softsign": (lambda: nn.Softsign(), lambda t: t.nn.Softsign()),
    "LogSigmoid": (lambda: nn.LogSigmoid(), lambda t: t.nn.LogSigmoid()),
    "Softmin": (lambda: nn.Softmin(0), lambda t: t.nn.Softmin(0)),
    "GLU": (lambda: nn.GLU(0), lambda t: t.nn.GLU(0)),
    "Threshold": (lambda: nn.Threshold(0.3, -2.0), lambda t: t.nn.Threshold(0.3, -2.0)),
    "Hardshrink": (lambda: nn.Hardshrink(), lambda t: t.nn.Hardshrink()),
    "Softshrink": (lambda: nn.Softshrink(1.0), lambda t: t.nn.Softshrink(1.0)),
    "Tanhshrink": (lambda: nn.Tanhshrink(), lambda t: t.nn.Tanhshrink()),
}
KINKS = [-6.0, -3.0, -1.0, -0.5, -0.3, 0.0, 0.3, 0.5, 1.0, 3.0, 6.0]  # 1,012 inputs: even


def _inputs(dtype):
    return np.concatenate([np.linspace(-40, 40, 801), KINKS,
                           np.random.default_rng(0).standard_normal(200) * 4]).astype(dtype)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("dtype, rtol, atol", [("float64", 1e-13, 1e-300),
                                               ("float32", 2e-6, 1e-7)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_activation_matches_torch(name, dtype, rtol, atol, device):
    """float32: an absolute 1e-7 too, for gradients that cross zero (Mish near -1.19) or
    that torch's autograd gets by cancellation (Softsign's, at |x| ~ 40). Hardsigmoid's
    gradient in float64 is exactly grad / 6; torch's is grad times 1/6 rounded to float32.
    Tanhshrink: an absolute 1e-16 too (x - tanh(x) cancels near 0)."""
    torch = pytest.importorskip("torch")
    if name == "Hardsigmoid" and dtype == "float64":
        rtol = 3e-8
    if name == "Tanhshrink":  # x - tanh(x) cancels near 0, in torch as here
        atol = max(atol, 1e-16)
    make, make_torch = LAYERS[name]
    x = _inputs(dtype)
    layer = make().to(device)
    backend = tn.get_backend(device)
    y = layer(backend.asarray(x))
    grad = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(dtype)
    dx = layer.backward(backend.asarray(grad))
    xt = torch.tensor(x, requires_grad=True)
    yt = make_torch(torch)(xt)
    yt.backward(torch.tensor(grad))
    for got, want in ((y, yt.detach().numpy()), (dx, xt.grad.numpy())):
        got = tn.asnumpy(got)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_activation_gradcheck(name, rng):
    x = rng.uniform(-5, 5, (4, 7))
    x = x[np.min(np.abs(x[..., None] - np.array(KINKS)), axis=-1) > 1e-3].reshape(-1)
    assert tn.gradcheck(LAYERS[name][0]().double(), [x])


def test_new_activations_agree_across_backends(any_device):
    x = _inputs("float32").reshape(-1, 2)
    grad = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
    backend = tn.get_backend(any_device)
    for name, (make, _) in LAYERS.items():
        ref, layer = make(), make()
        y_ref, y = ref(x), layer(backend.asarray(x))
        g = grad[:y_ref.shape[0]]  # GLU halves the rows
        dx_ref, dx = ref.backward(g), layer.backward(backend.asarray(g))
        np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=2e-6, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=2e-6, atol=1e-6, err_msg=name)


def test_new_activations_export_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = _inputs("float32").reshape(-1, 2)
    for name, (make, _) in LAYERS.items():
        model = nn.Sequential(nn.GLU(1) if name == "GLU" else make())  # GLU(0): the batch
        path = tmp_path / f"{name}.onnx"
        tn.onnx.export(model, x, path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"input": x})[0], model(x), rtol=1e-5,
                                   atol=1e-6, err_msg=name)


def test_reprs_and_arguments():
    assert repr(nn.ReLU6()) == "ReLU6()"
    assert repr(nn.CELU(0.5)) == "CELU(alpha=0.5)"
    for alpha in (0.0, 1e39, 1e-46, float("nan"), "2"):
        with pytest.raises(ValueError, match="CELU: alpha must be a nonzero number within "
                                             "float32's range"):
            nn.CELU(alpha)
    layer = nn.Hardswish()
    layer(np.array([np.nan, 1.0, -4.0, 4.0], np.float32))
    dx = layer.backward(np.full(4, 0.75, np.float32))  # NaN in, NaN out (torch's vectorised)
    assert np.isnan(dx[0]) and dx[1:].tolist() == [0.75 * (1 / 3 + 0.5), 0.0, 0.75]
    with pytest.raises(TypeError, match=r"Mish\(\).*int64"):
        nn.Mish()(np.arange(3))


def test_hardsigmoid_gradient_is_exactly_a_sixth_inside():
    x, grad = np.linspace(-2.9, 2.9, 11), np.linspace(-1.0, 2.0, 11)
    layer = nn.Hardsigmoid().double()
    layer(x)
    np.testing.assert_array_equal(layer.backward(grad), grad / 6.0)


def test_parameter_free_float64_models_export_float64_graphs(tmp_path):
    """A model without parameters computes in its input's dtype, and so does its file (a
    float32 constant against a float64 input is a type error ONNX runtimes refuse); CELU
    goes through Exp, as ONNX's Celu takes float32 only."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.linspace(-4, 4, 12).reshape(2, 3, 2)
    for model in (nn.Sequential(nn.ReLU6()), nn.Sequential(nn.AdaptiveAvgPool1d(1)),
                  nn.Sequential(nn.CELU(0.5)).double()):
        tn.onnx.export(model, x, tmp_path / "m.onnx")
        session = ort.InferenceSession(str(tmp_path / "m.onnx"),
                                       providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x})[0]
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda f: nn.ReLU(inplace=f), lambda f: nn.ReLU6(f),
                                  lambda f: nn.LeakyReLU(0.2, f), lambda f: nn.ELU(0.5, f),
                                  lambda f: nn.CELU(0.5, f), lambda f: nn.SELU(f),
                                  lambda f: nn.Hardtanh(-2.0, 2.0, f),
                                  lambda f: nn.Hardsigmoid(f), lambda f: nn.Hardswish(f),
                                  lambda f: nn.Mish(f), lambda f: nn.SiLU(f),
                                  lambda f: nn.Dropout(0.3, f), lambda f: nn.Dropout2d(0.3, f)])
def test_pytorch_inplace_argument_is_accepted_and_changes_no_result(make, rng):
    """Model code written for PyTorch (``nn.ReLU(inplace=True)``) runs as written: the flag
    shows in the repr, as PyTorch's, and the input is left as it was."""
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    before = x.copy()
    results = []
    for flag in (False, True):
        tn.manual_seed(0)
        layer = make(flag)
        y = layer(x)
        results.append((y, layer.backward(np.ones_like(y))))
    assert "inplace=True" in repr(make(True)) and "inplace" not in repr(make(False))
    np.testing.assert_array_equal(x, before)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="inplace must be True or False, got 'yes'"):
        make("yes")


@pytest.mark.parametrize("make, make_torch", [
    (lambda: nn.Threshold(0.5, -3.0), lambda t: t.nn.Threshold(0.5, -3.0)),
    (lambda: nn.Threshold(float("nan"), 2.0), lambda t: t.nn.Threshold(float("nan"), 2.0)),
    (lambda: nn.Hardshrink(0.5), lambda t: t.nn.Hardshrink(0.5)),
    (lambda: nn.Softshrink(0.5), lambda t: t.nn.Softshrink(0.5))])
def test_nan_passes_through_threshold_and_shrinks_as_in_torch(make, make_torch):
    """torch tests "inside the band" (value / 0 there, x elsewhere), so NaN, inside no
    band, passes through with its gradient; so here, and in the ONNX files."""
    torch = pytest.importorskip("torch")
    x = np.array([np.nan, 0.5, -0.7, 0.2, 0.9, -1.0])
    layer = make()
    y = layer(x)
    dx = layer.backward(np.ones_like(x))
    xt = torch.tensor(x, requires_grad=True)
    yt = make_torch(torch)(xt)
    yt.backward(torch.ones_like(yt))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(dx, xt.grad.numpy())


def test_shrinks_export_float64_exactly_and_glu_refuses_the_batch_axis(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x = np.concatenate([np.random.default_rng(3).standard_normal(30), [0.5, 0.5000000001,
                                                                       np.nan, -0.5]])
    x = x.reshape(-1, 2)
    for layer in (nn.Hardshrink(0.5), nn.Softshrink(0.5), nn.Threshold(0.5, -3.0)):
        model = nn.Sequential(layer)
        tn.onnx.export(model, x, tmp_path / "s.onnx")
        session = ort.InferenceSession(str(tmp_path / "s.onnx"),
                                       providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(session.run(None, {"input": x})[0], model(x),
                                      err_msg=repr(layer))
    with pytest.raises(ValueError, match=r"GLU\(dim=0\) halves the batch axis"):
        tn.onnx.export(nn.Sequential(nn.GLU(0)), np.zeros((2, 3), np.float32))


def test_numeric_arguments_are_checked():
    for make in (lambda: nn.Threshold("a", 1.0), lambda: nn.Threshold(True, 1.0),
                 lambda: nn.Hardshrink("x"), lambda: nn.Softshrink(None)):
        with pytest.raises(ValueError, match="must be a number"):
            make()
