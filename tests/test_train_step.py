"""The training step (tensornet/train.py): one function with a gradient hook between
backward and the update, used by fit (clipping) and by hand-written loops alike."""
from __future__ import annotations

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn


def _problem(device, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((48, 6))
    y = rng.integers(0, 3, 48)
    tn.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8, dtype="float64"), nn.Tanh(),
                          nn.Linear(8, 3, dtype="float64")).to(device)
    return x, y, model


def _manual(model, opt, x, y, between=None):
    loss_fn = nn.CrossEntropyLoss()
    b = model.backend
    for start in range(0, len(x), 16):
        xb, yb = b.asarray(x[start:start + 16]), b.asarray(y[start:start + 16])
        opt.zero_grad()
        loss_fn(model(xb), yb)
        model.backward(loss_fn.backward(), input_grad=False)
        if between is not None:
            between(model)
        opt.step()


def test_fit_clips_gradients_as_a_hand_written_loop_does(device):
    x, y, fitted = _problem(device)
    opt = tn.optim.SGD(fitted.parameters(), lr=0.5, momentum=0.9)
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), batch_size=16, device=device)
    tn.fit(fitted, nn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=0, clip_grad_norm=0.1)
    _, _, manual = _problem(device)
    opt2 = tn.optim.SGD(manual.parameters(), lr=0.5, momentum=0.9)
    norms = []

    def clip(model):
        norms.append(tn.optim.clip_grad_norm_(model.parameters(), 0.1))
    _manual(manual, opt2, x, y, clip)
    assert min(norms) > 0.1  # every step was really clipped
    for p, q in zip(fitted.parameters(), manual.parameters()):
        np.testing.assert_allclose(tn.asnumpy(p.data), tn.asnumpy(q.data), rtol=1e-12)


def test_the_hook_runs_between_backward_and_the_update(device):
    x, y, model = _problem(device)
    opt = tn.optim.Adam(model.parameters(), lr=0.01)
    seen = []

    def hook(m):
        p = next(m.parameters())
        seen.append((p.grad is not None, tn.asnumpy(p.data).copy()))
    step = tn.make_train_step(model, nn.CrossEntropyLoss(), opt, grad_hook=hook)
    b = model.backend
    before = tn.asnumpy(next(model.parameters()).data).copy()
    step(b.asarray(x[:16]), b.asarray(y[:16]))
    assert seen[0][0] and np.array_equal(seen[0][1], before)  # grads there, not yet updated
    assert not np.array_equal(tn.asnumpy(next(model.parameters()).data), before)


def test_a_hook_may_add_a_loss_term(device):
    x, y, model = _problem(device)
    opt = tn.optim.SGD(model.parameters(), lr=0.0)
    b = model.backend
    plain = tn.make_train_step(model, nn.CrossEntropyLoss(), opt)
    penalized = tn.make_train_step(model, nn.CrossEntropyLoss(), opt,
                                   grad_hook=lambda m: 0.25)
    xb, yb = b.asarray(x[:16]), b.asarray(y[:16])
    assert float(penalized(xb, yb)[0]) == pytest.approx(float(plain(xb, yb)[0]) + 0.25)


@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_clip_hook_on_the_device_equals_clip_grad_norm(device, max_norm):
    x, y, a = _problem(device, seed=3)
    _, _, b_model = _problem(device, seed=3)
    loss_fn = nn.CrossEntropyLoss()
    for model in (a, b_model):
        loss_fn(model(model.backend.asarray(x)), model.backend.asarray(y))
        model.backward(loss_fn.backward())
    before = [tn.asnumpy(p.grad).copy() for p in a.parameters()]
    tn.optim.ClipGradNorm(max_norm)(a)
    tn.optim.clip_grad_norm_(b_model.parameters(), max_norm)
    for p, q, g in zip(a.parameters(), b_model.parameters(), before):
        np.testing.assert_allclose(tn.asnumpy(p.grad), tn.asnumpy(q.grad), rtol=1e-12)
        if max_norm > 1:
            np.testing.assert_array_equal(tn.asnumpy(p.grad), g)  # below the bound: as is
