"""numpy vs strict vs cupy (gpu-marked): identical host inputs and weights -> the same
forward values and gradients (float32, rtol 1e-4)."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend

BUILDERS = {
    "mlp": lambda d: nn.Sequential(nn.Linear(12, 16, device=d), nn.ReLU(), nn.Linear(16, 8, device=d),
                                   nn.Tanh(), nn.Linear(8, 5, device=d), nn.LogSoftmax(1)),
    "activations": lambda d: nn.Sequential(nn.Linear(12, 10, device=d), nn.ELU(), nn.LeakyReLU(0.1),
                                           nn.SoftPlus(), nn.Sigmoid(), nn.Linear(10, 5, device=d),
                                           nn.Softmax(1)),
    "residual": lambda d: nn.Sequential(nn.Residual(nn.Sequential(nn.Linear(12, 12, device=d),
                                                                  nn.ReLU())),
                                        nn.Linear(12, 5, device=d)),
}


def _run(name, device, x, dy):
    tn.manual_seed(5)
    model = BUILDERS[name](device)
    xb = get_backend(device).asarray(x)
    y = model(xb)
    dx = model.backward(get_backend(device).asarray(dy))
    grads = {k: tn.asnumpy(p.grad) for k, p in model.named_parameters()}
    return tn.asnumpy(y), tn.asnumpy(dx), grads


@pytest.mark.parametrize("name", list(BUILDERS))
def test_models_agree_across_backends(name, any_device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 12)).astype(np.float32)
    dy = rng.standard_normal((9, 5)).astype(np.float32)
    ref = _run(name, "cpu", x, dy)
    got = _run(name, any_device, x, dy)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-4, atol=1e-6)
    for key in ref[2]:
        np.testing.assert_allclose(got[2][key], ref[2][key], rtol=1e-4, atol=1e-6, err_msg=key)
    assert got[0].dtype == np.float32


@pytest.mark.parametrize("make", [
    lambda: (nn.CrossEntropyLoss(label_smoothing=0.1), "labels"),
    lambda: (nn.NLLLoss(), "labels"), lambda: (nn.MSELoss(), "values"),
    lambda: (nn.BCEWithLogitsLoss(), "probs"), lambda: (nn.SoftMarginLoss(), "signs"),
    lambda: (nn.MultiLabelSoftMarginLoss(weight=[0.5, 1.0, 2.0, 1.5]), "probs"),
    lambda: (nn.HingeEmbeddingLoss(margin=0.5), "signs"),
    lambda: (nn.PoissonNLLLoss(full=True), "counts"),
    lambda: (nn.MultiLabelMarginLoss(), "label_lists")])
def test_losses_agree_across_backends(make, any_device):
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((7, 4)).astype(np.float32)
    target = {"labels": rng.integers(0, 4, 7), "values": rng.standard_normal((7, 4)).astype(np.float32),
              "probs": rng.uniform(size=(7, 4)).astype(np.float32),
              "signs": np.sign(rng.uniform(-1, 1, (7, 4))).astype(np.float32),
              "counts": rng.poisson(2.0, (7, 4)).astype(np.float32),
              "label_lists": rng.permuted(np.tile([0, 1, 2, 3, -1, -1], (7, 1)), axis=1)[:, :4]}
    results = []
    for device in ("cpu", any_device):
        loss, kind = make()
        b = get_backend(device)
        x = pred - 3.0 if isinstance(loss, nn.NLLLoss) else pred  # NLLLoss takes values <= 0
        value = float(loss(b.asarray(x), b.asarray(target[kind])))
        results.append((value, tn.asnumpy(loss.backward())))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-4)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4, atol=1e-7)
