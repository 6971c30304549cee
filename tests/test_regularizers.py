"""tn.regularizers: L1, L2 and elastic-net penalties attached to layers or parameters, their
values and gradients (against the formulas and PyTorch autograd), and tn.fit adding them to
the reported loss and to the gradients of every step."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn, regularizers as reg
from tensornet.backends import get_backend

from torch_reference import torch_or_skip


@pytest.mark.parametrize("penalty, value, grad", [
    (reg.L1(0.3), lambda w: 0.3 * np.abs(w).sum(), lambda w: 0.3 * np.sign(w)),
    (reg.L2(0.2), lambda w: 0.2 * (w * w).sum(), lambda w: 0.4 * w),
    (reg.L1L2(0.1, 0.05), lambda w: 0.1 * np.abs(w).sum() + 0.05 * (w * w).sum(),
     lambda w: 0.1 * np.sign(w) + 0.1 * w),
])
def test_values_and_gradients(penalty, value, grad, device, rng):
    w = rng.standard_normal((4, 3))
    w[0, 0] = 0.0
    b = get_backend(device)
    assert float(penalty(b.asarray(w))) == pytest.approx(value(w), rel=1e-14)
    np.testing.assert_allclose(tn.asnumpy(penalty.gradient(b.asarray(w))), grad(w), rtol=1e-14)


def test_gradients_match_pytorch_autograd(rng):
    torch = torch_or_skip()
    w = rng.standard_normal((5, 2))
    wt = torch.tensor(w, requires_grad=True)
    (0.3 * wt.abs().sum() + 0.7 * (wt * wt).sum()).backward()
    np.testing.assert_allclose(reg.L1L2(0.3, 0.7).gradient(w), wt.grad.numpy(), rtol=1e-14)


def test_attach_to_model_layer_and_parameter():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    reg.attach(model, reg.L2(0.1))
    assert [p for p, _ in reg.attached(model)] == [model[0].weight, model[2].weight]
    reg.attach(model[2], reg.L1(0.5), names=("weight", "bias"))
    pairs = {id(p): r for p, r in reg.attached(model)}
    assert isinstance(pairs[id(model[2].weight)], reg.L1) and id(model[2].bias) in pairs
    reg.detach(model)
    assert reg.attached(model) == []
    reg.attach(model[0].bias, reg.L2(1.0))
    assert reg.attached(model) == [(model[0].bias, reg.attached(model)[0][1])]
    reg.detach(model[0].bias)
    assert reg.penalty(model) is None and reg.apply(model) is None
    with pytest.raises(ValueError, match="ReLU has no parameter named weight"):
        reg.attach(nn.ReLU(), reg.L1())
    with pytest.raises(TypeError, match="Regularizer"):
        reg.attach(model, 0.01)
    with pytest.raises(ValueError, match="l1 must be >= 0"):
        reg.L1(-1.0)


def test_apply_adds_gradients_and_skips_frozen_parameters(device, rng):
    model = nn.Sequential(nn.Linear(3, 2, device=device, dtype="float64"),
                          nn.Linear(2, 2, device=device, dtype="float64"))
    reg.attach(model, reg.L1L2(0.2, 0.3))
    model[1].requires_grad_(False)
    existing = rng.standard_normal((2, 3))
    model[0].weight.grad = get_backend(device).asarray(existing.copy())
    total = reg.apply(model)
    w0, w1 = (tn.asnumpy(m.weight.data) for m in model)
    expected = sum(0.2 * np.abs(w).sum() + 0.3 * (w * w).sum() for w in (w0, w1))
    assert float(total) == pytest.approx(expected, rel=1e-13)  # the value counts frozen ones
    np.testing.assert_allclose(tn.asnumpy(model[0].weight.grad),
                               existing + 0.2 * np.sign(w0) + 0.6 * w0, rtol=1e-13)
    assert model[1].weight.grad is None


def test_l2_half_weight_decay_equals_sgd_weight_decay(device, rng):
    """PyTorch's SGD weight_decay=wd adds wd * w to the gradient: L2(wd / 2) does too."""
    x = rng.standard_normal((16, 5)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    weights = []
    for decay, penalty in ((0.1, None), (0.0, reg.L2(0.05))):
        tn.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 3, device=device))
        if penalty is not None:
            reg.attach(model, penalty, names=("weight", "bias"))
        opt = tn.optim.SGD(model.parameters(), lr=0.3, weight_decay=decay)
        loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 4, device=device)
        tn.fit(model, nn.CrossEntropyLoss(), opt, loader, epochs=3, verbose=0)
        weights.append(tn.asnumpy(model[0].weight.data))
    np.testing.assert_allclose(weights[1], weights[0], rtol=2e-5, atol=1e-6)


def test_fit_reports_the_penalty_and_steps_with_its_gradient(device, rng):
    """One full-batch SGD epoch by hand (loss + L1 penalty) equals tn.fit's."""
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 2, 8)
    b = get_backend(device)
    results = []
    for by_hand in (False, True):
        tn.manual_seed(1)
        model = nn.Sequential(nn.Linear(4, 2, device=device))
        reg.attach(model, reg.L1(0.05))
        opt = tn.optim.SGD(model.parameters(), lr=0.5)
        loss_fn = nn.CrossEntropyLoss()
        if by_hand:
            model.zero_grad()
            loss = loss_fn(model(b.asarray(x)), b.asarray(y))
            model.backward(loss_fn.backward())
            loss = float(loss + reg.apply(model))
            opt.step()
        else:
            loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), 8, device=device)
            history = tn.fit(model, loss_fn, opt, loader, val_loader=loader, epochs=1,
                             verbose=0)
            loss = history["train_loss"][0]
            data_loss = history["val_loss"][0]  # after the step, and without the penalty
            assert data_loss < loss
        results.append((loss, tn.asnumpy(model[0].weight.data)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    w = results[0][1]
    assert results[0][0] > 0.05 * np.abs(w).sum() * 0.5  # the penalty is in the loss


def test_l1_drives_weights_towards_zero(rng):
    x = rng.standard_normal((64, 10)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)  # only feature 0 matters
    near_zero = []
    for penalty in (None, reg.L1(0.02)):
        tn.manual_seed(0)
        model = nn.Sequential(nn.Linear(10, 2))
        if penalty is not None:
            reg.attach(model, penalty)
        opt = tn.optim.SGD(model.parameters(), lr=0.1)
        tn.fit(model, nn.CrossEntropyLoss(), opt,
               tn.data.DataLoader(tn.data.ArrayDataset(x, y), 16), epochs=30, verbose=0)
        near_zero.append(float(np.mean(np.abs(model[0].weight.data[:, 1:]) < 0.02)))
    assert near_zero[1] > near_zero[0] + 0.3
