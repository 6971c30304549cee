"""Core layers and losses: float64 gradchecks on every CPU backend, forward values against
independent NumPy formulas, and the errors users see."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import DeviceError, get_backend


def _layers(device):
    f64 = dict(device=device, dtype="float64")
    return {
        "Linear": nn.Linear(4, 3, **f64),
        "Linear-nobias": nn.Linear(4, 3, bias=False, **f64),
        "ReLU": nn.ReLU(), "LeakyReLU": nn.LeakyReLU(0.2), "ELU": nn.ELU(0.7),
        "Tanh": nn.Tanh(), "Sigmoid": nn.Sigmoid(), "SoftPlus": nn.SoftPlus(beta=2.0),
        "Softmax": nn.Softmax(dim=1), "LogSoftmax": nn.LogSoftmax(dim=1),
        "Softmax-dim0": nn.Softmax(dim=0),
        "Dropout": nn.Dropout(0.4), "DropConnect": nn.DropConnect(4, 3, p=0.3, **f64),
        "Flatten": nn.Flatten(), "Identity": nn.Identity(),
        "Residual": nn.Residual(nn.Sequential(nn.Linear(4, 4, **f64), nn.Tanh())),
        "Sequential": nn.Sequential(nn.Linear(4, 6, **f64), nn.ELU(), nn.Linear(6, 2, **f64)),
    }


@pytest.mark.parametrize("name", list(_layers("cpu")))
def test_layer_gradcheck(name, device, rng):
    layer = _layers(device)[name]
    x = rng.standard_normal((5, 4))
    assert tn.gradcheck(layer, get_backend(device).asarray(x))


def test_dropconnect_gradcheck_in_eval_mode(device, rng):
    layer = nn.DropConnect(4, 3, p=0.3, device=device, dtype="float64").eval()
    assert tn.gradcheck(layer, rng.standard_normal((5, 4)))


def test_gradcheck_on_conv_shaped_flatten(device, rng):
    assert tn.gradcheck(nn.Flatten(), rng.standard_normal((2, 3, 2, 2)))


LABELS = np.array([0, 2, 1, 2, 0])


@pytest.mark.parametrize("loss,target", [
    (nn.CrossEntropyLoss(), "labels"), (nn.CrossEntropyLoss(reduction="sum"), "labels"),
    (nn.CrossEntropyLoss(label_smoothing=0.2), "labels"), (nn.NLLLoss(), "labels"),
    (nn.MSELoss(), "values"), (nn.MSELoss(reduction="sum"), "values"),
    (nn.BCEWithLogitsLoss(), "probs")])
def test_loss_gradcheck(loss, target, device, rng):
    b = get_backend(device)
    pred = rng.standard_normal((5, 3))
    if isinstance(loss, nn.NLLLoss):
        pred = _log_softmax(pred)  # what NLLLoss takes (it warns on anything positive)
    tgt = {"labels": LABELS, "values": rng.standard_normal((5, 3)),
           "probs": rng.uniform(size=(5, 3))}[target]
    assert tn.gradcheck(loss, (b.asarray(pred), b.asarray(tgt)))


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_loss_values_match_formulas(device, rng):
    b = get_backend(device)
    z = rng.standard_normal((5, 3)).astype(np.float32)
    t = rng.standard_normal((5, 3)).astype(np.float32)
    p = rng.uniform(size=(5, 3)).astype(np.float32)
    ref_ce = -_log_softmax(z.astype(np.float64))[np.arange(5), LABELS].mean()
    got = float(nn.CrossEntropyLoss()(b.asarray(z), b.asarray(LABELS)))
    assert got == pytest.approx(ref_ce, rel=1e-5)
    smooth = 0.1
    target = np.full((5, 3), smooth / 3) + (1 - smooth) * np.eye(3)[LABELS]
    ref_smooth = -(target * _log_softmax(z.astype(np.float64))).sum(1).mean()
    got = float(nn.CrossEntropyLoss(label_smoothing=smooth)(b.asarray(z), b.asarray(LABELS)))
    assert got == pytest.approx(ref_smooth, rel=1e-5)
    assert float(nn.MSELoss()(b.asarray(z), b.asarray(t))) == pytest.approx(
        ((z - t) ** 2).mean(), rel=1e-5)
    zz = z.astype(np.float64)
    ref_bce = -(p * np.log(1 / (1 + np.exp(-zz))) + (1 - p) * np.log(1 - 1 / (1 + np.exp(-zz))))
    assert float(nn.BCEWithLogitsLoss()(b.asarray(z), b.asarray(p))) == pytest.approx(
        ref_bce.mean(), rel=1e-5)


def test_cross_entropy_is_stable_for_huge_logits(device):
    b = get_backend(device)
    z = b.asarray(np.array([[1e4, 0.0, -1e4], [0.0, 3e4, 0.0]], dtype=np.float32))
    loss = nn.CrossEntropyLoss()
    assert float(loss(z, b.asarray(np.array([0, 1])))) == pytest.approx(0.0, abs=1e-6)
    grad = tn.asnumpy(loss.backward())
    assert np.all(np.isfinite(grad))


def test_losses_keep_float32(device, rng):
    b = get_backend(device)
    z = b.asarray(rng.standard_normal((4, 3)).astype(np.float32))
    for loss, target in [(nn.CrossEntropyLoss(), b.asarray(LABELS[:4])),
                         (nn.MSELoss(), z * 0.5), (nn.BCEWithLogitsLoss(), z * 0.0)]:
        assert tn.asnumpy(loss(z, target)).dtype == np.float32
        assert tn.asnumpy(loss.backward()).dtype == np.float32


def test_activation_values(device, rng):
    b = get_backend(device)
    x = rng.standard_normal((4, 5)).astype(np.float32) * 3
    xb = b.asarray(x)
    cases = {
        nn.ReLU(): np.maximum(x, 0), nn.LeakyReLU(0.1): np.where(x > 0, x, 0.1 * x),
        nn.ELU(1.5): np.where(x > 0, x, 1.5 * (np.exp(x) - 1)), nn.Tanh(): np.tanh(x),
        nn.Sigmoid(): 1 / (1 + np.exp(-x)), nn.SoftPlus(): np.log1p(np.exp(x)),
        nn.Softmax(1): np.exp(x) / np.exp(x).sum(1, keepdims=True),
        nn.LogSoftmax(1): _log_softmax(x),
    }
    for layer, expected in cases.items():
        out = tn.asnumpy(layer(xb))
        assert out.dtype == np.float32, layer
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6, err_msg=repr(layer))


def test_sigmoid_and_softplus_do_not_overflow(device):
    b = get_backend(device)
    x = b.asarray(np.array([[-1e4, 1e4, 0.0]], dtype=np.float32))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(tn.asnumpy(nn.Sigmoid()(x)), [[0.0, 1.0, 0.5]])
        np.testing.assert_allclose(tn.asnumpy(nn.SoftPlus()(x)), [[0.0, 1e4, np.log(2)]],
                                   rtol=1e-6)


def test_dropout_training_statistics_and_eval_identity(device):
    b = get_backend(device)
    tn.manual_seed(0)
    layer = nn.Dropout(0.25)
    x = b.asarray(np.ones((200, 100), dtype=np.float32))
    y = tn.asnumpy(layer(x))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    g = tn.asnumpy(layer.backward(x))
    np.testing.assert_array_equal(g, y)  # same mask routes the gradient
    layer.eval()
    assert layer(x) is x


def test_dropconnect_eval_uses_expected_weight(rng):
    layer = nn.DropConnect(6, 4, p=0.4)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    layer.eval()
    expected = x @ (0.6 * layer.weight.data).T + layer.bias.data
    np.testing.assert_allclose(layer(x), expected, rtol=1e-6)
    layer.train()
    tn.manual_seed(1)
    outs = np.stack([layer(x) for _ in range(400)])
    np.testing.assert_allclose(outs.mean(0), expected, atol=0.12)


def test_linear_matches_pytorch_layout_and_default_init(rng):
    layer = nn.Linear(50, 20)
    assert layer.weight.shape == (20, 50) and layer.bias.shape == (20,)
    bound = 1 / np.sqrt(50)
    w = layer.weight.data
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    x = rng.standard_normal((7, 50)).astype(np.float32)
    np.testing.assert_allclose(layer(x), x @ w.T + layer.bias.data, rtol=1e-5)


def test_same_seed_gives_same_weights_on_every_backend():
    tn.manual_seed(42)
    a = nn.Linear(8, 5, device="cpu")
    tn.manual_seed(42)
    b = nn.Linear(8, 5, device="strict")
    np.testing.assert_array_equal(tn.asnumpy(a.weight.data), tn.asnumpy(b.weight.data))


# ---------------------------------------------------------------------- bad input
def test_linear_shape_error_names_layer_and_expectation():
    with pytest.raises(ValueError, match=r"Linear\(784 -> 256\) got input of shape \(32, 783\); "
                                         r"expected \(\*, 784\)"):
        nn.Linear(784, 256)(np.zeros((32, 783), np.float32))
    with pytest.raises(ValueError, match=r"got input of shape \(2, 2, 5\); expected \(\*, 4\)"):
        nn.Linear(4, 2)(np.zeros((2, 2, 5), np.float32))
    with pytest.raises(ValueError, match=r"got input of shape \(\); expected \(\*, 4\)"):
        nn.Linear(4, 2)(np.zeros((), np.float32))
    layer = nn.Linear(4, 2)
    layer(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"backward got grad_output of shape \(6, 2\); "
                                         r"expected \(2, 3, 2\)"):
        layer.backward(np.zeros((6, 2), np.float32))


def test_dtype_and_device_errors():
    with pytest.raises(TypeError, match="float32 parameters but got float64"):
        nn.Linear(4, 2)(np.zeros((3, 4)))
    with pytest.raises(DeviceError, match="'cpu' but got an input on 'strict'"):
        nn.Linear(4, 2)(get_backend("strict").zeros((3, 4)))
    with pytest.raises(TypeError, match="expected an array"):
        nn.Linear(4, 2)([[1.0, 2.0, 3.0, 4.0]])


def test_empty_batch_and_backward_before_forward():
    with pytest.raises(ValueError, match="empty batch"):
        nn.Linear(4, 2)(np.zeros((0, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"backward called before forward"):
        nn.Linear(4, 2).backward(np.zeros((1, 2), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.CrossEntropyLoss().backward()
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Tanh().backward(np.zeros((1, 2), np.float32))


def test_loss_label_errors(device):
    b = get_backend(device)
    z = b.asarray(np.zeros((3, 4), np.float32))
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\].*from 0 to 4"):
        loss(z, b.asarray(np.array([0, 1, 4])))
    with pytest.raises(ValueError, match=r"from -1"):
        loss(z, b.asarray(np.array([0, -1, 2])))
    with pytest.raises(TypeError, match="integer class labels"):
        loss(z, b.asarray(np.array([0.0, 1.0, 2.0], np.float32)))
    with pytest.raises(ValueError, match=r"labels of shape \(2,\)"):
        loss(z, b.asarray(np.array([0, 1])))
    with pytest.raises(ValueError, match="shape"):
        nn.MSELoss()(z, b.asarray(np.zeros((3, 5), np.float32)))


def test_loss_target_on_other_device():
    with pytest.raises(DeviceError, match="target is on 'strict'"):
        nn.CrossEntropyLoss()(np.zeros((2, 3), np.float32),
                              get_backend("strict").asarray(np.array([0, 1])))


def test_nan_loss_is_reported(device):
    b = get_backend(device)
    z = b.asarray(np.array([[np.nan, 0.0], [0.0, 1.0]], dtype=np.float32))
    with pytest.raises(nn.NonFiniteError, match="CrossEntropyLoss: the loss is nan"):
        nn.CrossEntropyLoss()(z, b.asarray(np.array([0, 1])))
    with pytest.raises(nn.NonFiniteError, match="MSELoss"):
        nn.MSELoss()(z, z)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="in_features must be a positive integer"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="probability"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 2, dtype="int32")
