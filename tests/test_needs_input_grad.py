"""Linear.needs_input_grad = False: same parameter gradients, no input gradient."""
from __future__ import annotations

import numpy as np

import tensornet as tn
from tensornet import nn


def _model(first_needs_input_grad: bool, device):
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(device)
    model[0].needs_input_grad = first_needs_input_grad
    return model


def test_first_layer_without_input_grad(device, rng):
    x = tn.to_device(rng.standard_normal((4, 6)).astype(np.float32), device)
    y = tn.to_device(np.array([0, 2, 1, 2]), device)
    grads = {}
    for flag in (True, False):
        model, loss_fn = _model(flag, device), nn.CrossEntropyLoss()
        loss_fn(model(x), y)
        dx = model.backward(loss_fn.backward())
        assert (dx is None) == (not flag)
        grads[flag] = [tn.asnumpy(p.grad) for p in model.parameters()]
    for with_dx, without in zip(grads[True], grads[False]):
        np.testing.assert_array_equal(with_dx, without)


def test_default_computes_the_input_gradient():
    assert nn.Linear(2, 2).needs_input_grad is True
