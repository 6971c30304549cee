"""needs_input_grad = False on a first layer (Linear, Conv2d, DropConnect): the same
parameter gradients, and no input gradient."""
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


def test_every_module_has_the_flag_on_by_default():
    for module in (nn.ReLU(), nn.Sequential(nn.Linear(2, 2)), nn.Conv2d(1, 2, 3),
                   nn.DropConnect(3, 2), nn.CrossEntropyLoss()):
        assert module.needs_input_grad is True
    assert "needs_input_grad" in nn.Module.__doc__


def _grads_with_and_without_input_grad(build, x, y, device):
    """Parameter gradients and returned input gradient for flag True/False on layer 0."""
    out = {}
    for flag in (True, False):
        tn.manual_seed(0)  # same weights and (DropConnect) the same masks
        model = build().to(device)
        model[0].needs_input_grad = flag
        loss_fn = nn.CrossEntropyLoss()
        loss_fn(model(x), y)
        dx = model.backward(loss_fn.backward())
        out[flag] = dx, [tn.asnumpy(p.grad) for p in model.parameters()]
    return out


def test_conv2d_skips_the_input_gradient(device, rng):
    x = tn.to_device(rng.standard_normal((3, 2, 5, 5)).astype(np.float32), device)
    y = tn.to_device(np.array([0, 2, 1]), device)

    def build():
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(100, 3))
    out = _grads_with_and_without_input_grad(build, x, y, device)
    assert out[False][0] is None
    assert tuple(out[True][0].shape) == (3, 2, 5, 5)
    assert len(out[True][1]) == 4
    for with_dx, without in zip(out[True][1], out[False][1]):
        np.testing.assert_array_equal(with_dx, without)


def test_dropconnect_skips_the_input_gradient(device, rng):
    x = tn.to_device(rng.standard_normal((4, 6)).astype(np.float32), device)
    y = tn.to_device(np.array([0, 2, 1, 2]), device)

    def build():
        return nn.Sequential(nn.DropConnect(6, 5, p=0.5), nn.ReLU(), nn.Linear(5, 3))
    out = _grads_with_and_without_input_grad(build, x, y, device)
    assert out[False][0] is None
    assert tuple(out[True][0].shape) == (4, 6)
    for with_dx, without in zip(out[True][1], out[False][1]):
        np.testing.assert_array_equal(with_dx, without)
    # the masks really dropped weights, so equal gradients mean equal masks, not no masks
    assert (out[True][1][0] == 0).any() and (out[True][1][0] != 0).any()
