"""backward(grad, input_grad=False) on a first layer (Linear, Conv2d, DropConnect): the
same parameter gradients, and no input gradient."""
from __future__ import annotations

import numpy as np

import tensornet as tn
from tensornet import nn


def _model(device):
    tn.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(device)


def test_first_layer_without_input_grad(device, rng):
    x = tn.to_device(rng.standard_normal((4, 6)).astype(np.float32), device)
    y = tn.to_device(np.array([0, 2, 1, 2]), device)
    grads = {}
    for flag in (True, False):
        model, loss_fn = _model(device), nn.CrossEntropyLoss()
        loss_fn(model(x), y)
        dx = model.backward(loss_fn.backward(), input_grad=flag)
        assert (dx is None) == (not flag)
        grads[flag] = [tn.asnumpy(p.grad) for p in model.parameters()]
    for with_dx, without in zip(grads[True], grads[False]):
        np.testing.assert_array_equal(with_dx, without)


def test_every_module_takes_the_argument_and_defaults_to_computing_it(rng):
    """Layers that skip the input gradient take input_grad; the others accept it and
    compute the gradient anyway; by default everyone computes it."""
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for module in (nn.ReLU(), nn.Tanh(), nn.Sequential(nn.Linear(3, 3)), nn.Linear(3, 3),
                   nn.DropConnect(3, 3)):
        y = module(x)
        assert module.backward(np.ones_like(y)).shape == x.shape
        module(x)
        dx = module.backward(np.ones_like(y), input_grad=False)
        assert dx is None or dx.shape == x.shape
    assert "input_grad" in nn.Module.__doc__
    assert not hasattr(nn.Linear(2, 2), "needs_input_grad")


def _grads_with_and_without_input_grad(build, x, y, device):
    """Parameter gradients and returned input gradient for flag True/False on layer 0."""
    out = {}
    for flag in (True, False):
        tn.manual_seed(0)  # same weights and (DropConnect) the same masks
        model = build().to(device)
        loss_fn = nn.CrossEntropyLoss()
        loss_fn(model(x), y)
        dx = model.backward(loss_fn.backward(), input_grad=flag)
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


def test_sequential_skips_leading_parameter_free_modules_and_keeps_param_grads(rng):
    """Flatten -> Linear -> ReLU -> Linear: without input grad, the parameter gradients are
    those of the full backward and Flatten's backward is not run."""
    def build():
        tn.manual_seed(3)
        return nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))

    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    dy = rng.standard_normal((4, 2)).astype(np.float32)
    full, lean = build(), build()
    full(x)
    assert full.backward(dy).shape == x.shape
    calls = []
    lean[0].register_backward_hook(lambda *a: calls.append("flatten"))
    lean(x)
    assert lean.backward(dy, input_grad=False) is None
    assert calls == []
    for (name, p), (_, q) in zip(full.named_parameters(), lean.named_parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


def test_frozen_first_layer_passes_the_flag_to_the_next_trainable_one(rng):
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))
    model[0].requires_grad_(False)
    seen = []
    model[2].register_backward_hook(lambda m, gin, gout: seen.append(gin))
    model(rng.standard_normal((2, 6)).astype(np.float32))
    assert model.backward(np.ones((2, 3), np.float32), input_grad=False) is None
    assert seen == [None] and model[0].weight.grad is None and model[2].weight.grad is not None


def test_fit_trains_identically_with_the_skipped_input_gradient(rng):
    """A training step through fit equals a manual step that computes every gradient."""
    x = rng.standard_normal((64, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)

    def build():
        tn.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
        return model, tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    fitted, opt = build()
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x, y), batch_size=16)
    tn.fit(fitted, nn.CrossEntropyLoss(), opt, loader, epochs=1, verbose=0)
    manual, opt2 = build()
    loss_fn = nn.CrossEntropyLoss()
    for start in range(0, 64, 16):
        manual.zero_grad()
        loss_fn(manual(x[start:start + 16]), y[start:start + 16])
        assert manual.backward(loss_fn.backward()).shape == (16, 1, 4, 4)
        opt2.step()
    for (name, p), (_, q) in zip(fitted.named_parameters(), manual.named_parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7, err_msg=name)
