"""Diagnostics: layer_stats, lr_find and the NaN/Inf watch."""
import sys

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import asnumpy, get_backend
from tensornet.diagnostics import (NonFiniteLayerError, NonFiniteWatch, layer_stats, lr_find,
                                   watch_nonfinite)


def deep_net(init, act, depth=8, width=64, device="cpu"):
    layers = [nn.Linear(32, width, device=device), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width, device=device), act()]
    layers.append(nn.Linear(width, 10, device=device))
    model = nn.Sequential(*layers)
    for layer in model:
        if isinstance(layer, nn.Linear):
            init(layer.weight)
            nn.init.zeros_(layer.bias)
    return model


def batch(n=128, features=32, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(np.float32), rng.integers(0, classes, n)


def tiny_init(w):
    nn.init.normal_(w, 0.0, 0.01)


def he_init(w):
    nn.init.kaiming_normal_(w, nonlinearity="relu")


# ---------------------------------------------------------------------------- layer_stats
@pytest.mark.parametrize("act, good_init, remedy", [
    (nn.Tanh, nn.init.xavier_normal_, "Xavier"),
    (nn.ReLU, he_init, "He (kaiming)"),
])
def test_layer_stats_flags_vanishing_init_and_not_a_good_one(device, act, good_init, remedy):
    tn.manual_seed(0)
    x, y = batch()
    bad = layer_stats(deep_net(tiny_init, act, device=device), x, y, nn.CrossEntropyLoss())
    assert {"vanishing_activations", "vanishing_gradients"} <= bad.flags
    hint = next(h for h in bad.hints if h.startswith("activation std falls"))
    assert remedy in hint
    # N(0, 0.01) on width 64 shrinks the std ~0.08x (ReLU: ~0.06x) per layer.
    stds = bad.column("act_std", kinds=(act.__name__,))
    assert stds[-1] < 1e-6 * stds[0]
    good = layer_stats(deep_net(good_init, act, device=device), x, y, nn.CrossEntropyLoss())
    assert not {"vanishing_activations", "exploding_activations", "vanishing_gradients",
                "exploding_gradients"} & good.flags, good.hints
    assert len(good) == 17 and good["3"].kind == act.__name__


def test_layer_stats_flags_exploding_activations():
    tn.manual_seed(0)
    x, y = batch()
    stats = layer_stats(deep_net(lambda w: nn.init.normal_(w, 0.0, 0.5), nn.ReLU), x, y,
                        nn.CrossEntropyLoss())
    assert "exploding_activations" in stats.flags


def test_layer_stats_matches_a_numpy_reference(device):
    """Activation and gradient statistics against a forward/backward written in NumPy."""
    tn.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 7, device=device), nn.Tanh(),
                          nn.Linear(7, 3, device=device))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((11, 5)).astype(np.float32)
    target = rng.standard_normal((11, 3)).astype(np.float32)
    stats = layer_stats(model, x, target, nn.MSELoss(), lr=0.5)
    w1, b1, w2, b2 = (asnumpy(p.data).astype(np.float64) for p in model.parameters())
    z1 = x @ w1.T + b1
    h = np.tanh(z1)
    out = h @ w2.T + b2
    d_out = 2.0 * (out - target) / out.size
    d_h = d_out @ w2
    d_z1 = d_h * (1.0 - h ** 2)
    for name, act, grad in (("0", z1, d_z1), ("1", h, d_h), ("2", out, d_out)):
        row = stats[name]
        np.testing.assert_allclose([row.act_mean, row.act_std], [act.mean(), act.std()],
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose([row.grad_mean, row.grad_std], [grad.mean(), grad.std()],
                                   rtol=1e-4, atol=1e-9)
    grad_w2 = d_out.T @ h
    np.testing.assert_allclose(stats["2"].weight_norm, np.linalg.norm(w2), rtol=1e-5)
    np.testing.assert_allclose(stats["2"].grad_norm, np.linalg.norm(grad_w2), rtol=1e-4)
    np.testing.assert_allclose(stats["2"].update_norm, 0.5 * np.linalg.norm(grad_w2), rtol=1e-4)
    assert stats["1"].weight_norm is None and stats.update_source == "lr * grad"


def test_dead_relu_fraction_on_a_constructed_layer(device):
    layer = nn.Linear(3, 4, device=device)
    # Units 0 and 1 can never fire (zero weights, negative bias); units 2 and 3 always do
    # for positive inputs.
    w = np.array([[0, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0]], np.float32)
    layer.weight.data = get_backend(device).asarray(w)
    layer.bias.data = get_backend(device).asarray(np.array([-1, -2, 0, 0], np.float32))
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(4, 2, device=device))
    x = np.abs(np.random.default_rng(0).standard_normal((16, 3))).astype(np.float32) + 0.1
    stats = layer_stats(model, x, np.zeros(16, np.int64), nn.CrossEntropyLoss())
    assert stats["1"].dead_fraction == pytest.approx(0.5)
    assert "dead_relu" in stats.flags and "dead" in stats["1"].flags
    assert any("50%" in h and "'1'" in h for h in stats.hints)


def test_dead_relu_counts_channels_of_images():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    x[:, 1] = -np.abs(x[:, 1])  # channel 1 is never positive, anywhere
    stats = layer_stats(nn.Sequential(nn.ReLU()), x, np.zeros_like(x), nn.MSELoss())
    assert stats["0"].dead_fraction == pytest.approx(1 / 3)


def test_layer_stats_leaves_the_model_and_optimizer_as_they_were():
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    x, y = batch(32, 6, 3)
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    opt.step()  # the optimizer now has momentum buffers; the gradients are kept
    before = {k: asnumpy(v).copy() for k, v in model.state_dict().items()}
    grads = [asnumpy(p.grad).copy() for p in model.parameters()]
    buffers = {k: asnumpy(v["momentum_buffer"]).copy()
               for k, v in opt.state_dict()["state"].items()}
    rng_state = tn.get_rng_state()
    arrays = [p.data for p in model.parameters()]
    model.eval()
    stats = layer_stats(model, x, y, loss_fn, optimizer=opt)
    # One real momentum step: update = lr * (mu * buf + g) for the last layer's weight.
    buf = buffers[2]
    grad_now = stats["3"].grad_norm
    assert grad_now > 0
    assert stats["3"].update_norm == pytest.approx(
        np.linalg.norm(0.1 * (0.9 * buf + _fresh_grad(model, x, y, loss_fn, 3))), rel=1e-4)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(asnumpy(v), before[k])
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_array_equal(asnumpy(p.grad), g)
    for k, v in opt.state_dict()["state"].items():
        np.testing.assert_array_equal(asnumpy(v["momentum_buffer"]), buffers[k])
    assert not model.training and tn.get_rng_state() == rng_state
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    # Values go back into the same arrays (a captured CUDA graph keeps pointing at them).
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))


def test_layer_stats_in_train_mode_keeps_batchnorm_running_stats():
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    buffers = {k: asnumpy(v).copy() for k, v in model.named_buffers()}
    assert buffers
    stats = layer_stats(model, *batch(32, 6, 3), nn.CrossEntropyLoss())
    assert stats["1"].act_std == pytest.approx(1.0, rel=0.05)  # batch statistics were used
    for k, v in model.named_buffers():
        np.testing.assert_array_equal(asnumpy(v), buffers[k])
    assert model.training


def _fresh_grad(model, x, y, loss_fn, index):
    """d loss / d weight of model[index] on (x, y), computed by a plain backward."""
    saved = [p.grad for p in model.parameters()]
    model.zero_grad()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    grad = asnumpy(model[index].weight.grad).copy()
    for p, g in zip(model.parameters(), saved):
        p.grad = g
    return grad


def test_layer_stats_flags_saturated_tanh_and_prints_a_table(tmp_path):
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    nn.init.normal_(model[0].weight, 0.0, 50.0)
    x, y = batch(64, 4, 2)
    stats = layer_stats(model, x, y, nn.CrossEntropyLoss())
    assert stats["1"].saturated_fraction > 0.9 and "saturated" in stats.flags
    text = str(stats)
    assert "act std" in text.splitlines()[0] and "saturated" in text
    assert stats.plot(tmp_path / "stats.png") and (tmp_path / "stats.png").stat().st_size > 1000


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    stats = layer_stats(nn.Sequential(nn.Linear(3, 2)), *batch(8, 3, 2), nn.CrossEntropyLoss())
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"tensornet\[plot\]"):
        stats.plot(tmp_path / "x.png")


# ---------------------------------------------------------------------------- lr_find
def regression_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((512, 10)) * np.linspace(0.5, 2.0, 10)).astype(np.float32)
    y = (x @ rng.standard_normal((10, 1)) + 0.1 * rng.standard_normal((512, 1))).astype(np.float32)
    return x, y


def test_lr_find_suggests_a_stable_learning_rate():
    x, y = regression_problem()
    # Gradient descent on mean((xw - y)^2) diverges for lr > 2 / lambda_max(2 x^T x / N).
    limit = 2.0 / np.linalg.eigvalsh(2.0 * x.T.astype(np.float64) @ x / len(x)).max()
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 1))
    opt = tn.optim.SGD(model.parameters(), lr=0.01)
    batches = [(x[i:i + 64], y[i:i + 64]) for i in range(0, 512, 64)]
    result = lr_find(model, nn.MSELoss(), opt, batches, num_steps=150)
    assert result.diverged and result.lrs[-1] < 10.0
    assert limit / 1000 < result.suggested_lr < limit
    assert result.suggested_lr == pytest.approx(result.lr_min / 10)
    assert limit / 1000 < result.lr_steepest < 2 * limit
    assert np.all(np.diff(np.log(result.lrs)) > 0)


def test_lr_find_restores_weights_and_optimizer_state(tmp_path):
    x, y = regression_problem(1)
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = tn.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.MSELoss()
    for _ in range(3):  # give Adam moment estimates and a step count
        opt.zero_grad()
        loss_fn(model(x[:64]), y[:64])
        model.backward(loss_fn.backward())
        opt.step()
    weights = {k: asnumpy(v).copy() for k, v in model.state_dict().items()}
    arrays = [p.data for p in model.parameters()]
    state = opt.state_dict()
    saved = {k: {n: (asnumpy(a).copy() if hasattr(a, "shape") else a) for n, a in v.items()}
             for k, v in state["state"].items()}
    loader = tn.data.DataLoader(tn.data.ArrayDataset(x[:128], y[:128]), 64, shuffle=True, seed=0)
    next(iter(loader))
    epoch = loader.epoch
    result = lr_find(model, loss_fn, opt, loader, num_steps=40, end_lr=100.0)
    assert len(result.lrs) > 10 and loader.epoch == epoch
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(asnumpy(v), weights[k])
    assert all(p.data is a for p, a in zip(model.parameters(), arrays))
    after = opt.state_dict()
    assert [g["lr"] for g in after["param_groups"]] == [3e-3]
    for k, entries in saved.items():
        for n, value in entries.items():
            np.testing.assert_array_equal(np.asarray(asnumpy(after["state"][k][n])
                                                     if hasattr(after["state"][k][n], "shape")
                                                     else after["state"][k][n]), value)
    assert result.plot(tmp_path / "lr.png") and (tmp_path / "lr.png").stat().st_size > 1000
    assert "suggested lr" in repr(result)


def test_lr_find_rejects_a_bad_range():
    model = nn.Sequential(nn.Linear(2, 1))
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_find(model, nn.MSELoss(), tn.optim.SGD(model.parameters(), lr=0.1), [],
                start_lr=1.0, end_lr=0.1)


# ---------------------------------------------------------------------------- NaN/Inf watch
# These tests overflow float32 on purpose.
overflow_ok = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

def overflow_net():
    """Layer '2.1' (a Linear inside a nested Sequential) has weights that overflow float32."""
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(),
                          nn.Sequential(nn.ReLU(), nn.Linear(8, 8), nn.Tanh()), nn.Linear(8, 2))
    nn.init.constant_(model[2][1].weight, 1e38)
    nn.init.zeros_(model[0].bias)
    nn.init.constant_(model[0].weight, 1.0)
    return model


@overflow_ok
def test_watch_names_the_first_layer_with_a_non_finite_output(device):
    model = overflow_net().to(device)
    x = get_backend(device).asarray(np.ones((3, 4), np.float32))
    with pytest.raises(NonFiniteLayerError) as info:
        with watch_nonfinite(model):
            model(x)
    err = info.value
    assert (err.layer, err.layer_type, err.phase) == ("2.1", "Linear", "forward")
    assert "'2.1' (Linear(8 -> 8))" in str(err) and "max |weight| = 1e+38" in str(err)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    model(x)  # unwatched: no error from the model itself


@overflow_ok
def test_watch_names_the_layer_whose_gradient_overflows():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))
    nn.init.constant_(model[2].weight, 1e30)  # forward stays finite (sigmoid <= 1)
    x = np.ones((3, 4), np.float32)
    with pytest.raises(NonFiniteLayerError) as info:
        with watch_nonfinite(model):
            model(x)
            model.backward(np.full((3, 2), 1e10, np.float32))
    assert (info.value.layer, info.value.phase) == ("2", "backward")
    assert "received (d loss / d output) was finite" in str(info.value)


def test_watch_blames_the_data_when_the_input_is_not_finite():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    x = np.array([[1.0, np.nan]], np.float32)
    with pytest.raises(NonFiniteLayerError, match="check the data") as info:
        with watch_nonfinite(model):
            model(x)
    assert info.value.layer == "0"


@overflow_ok
def test_watch_as_a_fit_callback_names_layer_epoch_and_step():
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    nn.init.constant_(model[0].weight, 1e10)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 2, 5))
               for _ in range(4)]
    batches[2] = (np.full((5, 4), 1e30, np.float32), batches[2][1])  # overflows layer '0'
    opt = tn.optim.SGD(model.parameters(), lr=0.0)
    watch = NonFiniteWatch()
    with pytest.raises(nn.NonFiniteError, match="at epoch 1, step 3") as info:
        tn.fit(model, nn.CrossEntropyLoss(), opt, batches, epochs=1, callbacks=[watch],
               verbose=0)
    cause = info.value if isinstance(info.value, NonFiniteLayerError) else info.value.__cause__
    assert isinstance(cause, NonFiniteLayerError)
    assert (cause.layer, cause.layer_type, cause.epoch, cause.step) == ("0", "Linear", 1, 3)
    message = str(info.value)  # epoch and step said once, not again by fit
    assert message.count("epoch 1") == 1 and message.count("step 3") == 1, message
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, batches, epochs=1, verbose=0,
                     callbacks=[NonFiniteWatch(), tn.TerminateOnNaN()])
    assert history.stop_reason.count("epoch 1, step 3") == 1, history.stop_reason
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    # Two clean epochs: the watch attaches, stays silent and detaches.
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, batches[:2], epochs=2,
                     callbacks=[watch], verbose=0)
    assert len(history) == 2 and not model[0]._forward_hooks


@overflow_ok
def test_watch_every_n_checks_only_every_nth_pass():
    model = nn.Sequential(nn.Linear(2, 2))
    nn.init.constant_(model[0].weight, 1e30)
    fine, bad = np.ones((1, 2), np.float32), np.full((1, 2), 1e30, np.float32)
    with pytest.raises(NonFiniteLayerError, match="in pass 3"):
        with watch_nonfinite(model, every=2):
            model(fine)  # pass 1: checked, finite
            model(bad)   # pass 2: not checked
            model(bad)   # pass 3: checked
