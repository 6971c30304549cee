"""Forward keeps what backward needs; ``tn.no_grad`` keeps nothing; backward consumes the
cache and checks ``grad_output`` like forward checks its input."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import DeviceError, get_backend


def _model(device, dropout=True):
    tn.manual_seed(0)
    layers = [nn.Linear(6, 8, device=device), nn.BatchNorm1d(8, device=device), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(0.3))
    return nn.Sequential(*layers, nn.Linear(8, 3, device=device))


def _data(device, n=10, seed=0):
    rng = np.random.default_rng(seed)
    b = get_backend(device)
    return b.asarray(rng.standard_normal((n, 6)).astype(np.float32)), b.asarray(
        rng.integers(0, 3, n))


def _grads(model):
    return {name: tn.asnumpy(p.grad).copy() for name, p in model.named_parameters()}


def _train_grads(device, between=None):
    model, loss_fn = _model(device), nn.CrossEntropyLoss()
    x, y = _data(device)
    loss_fn(model(x), y)
    if between is not None:
        between(model, loss_fn)
    model.backward(loss_fn.backward())
    return _grads(model)


@pytest.mark.parametrize("probe", ["predict", "evaluate", "layer_stats", "no_grad"])
def test_a_probe_between_forward_and_backward_leaves_the_gradients_exact(device, probe):
    other_x, other_y = _data(device, n=7, seed=1)

    def between(model, loss_fn):
        if probe == "predict":
            tn.predict(model, other_x)
        elif probe == "evaluate":
            tn.evaluate(model, loss_fn, [(other_x, other_y)])
        elif probe == "layer_stats":
            tn.diagnostics.layer_stats(model, other_x, other_y, loss_fn)
        else:
            with tn.no_grad():
                loss_fn(model(other_x), other_y)

    expected = _train_grads(device)
    got = _train_grads(device, between)
    for name in expected:
        assert np.array_equal(got[name], expected[name]), name


def test_no_grad_keeps_no_cache_and_restores_the_mode():
    layer = nn.Linear(3, 2)
    x = np.ones((4, 3), np.float32)
    assert tn.is_grad_enabled()
    with tn.no_grad():
        assert not tn.is_grad_enabled()
        with tn.no_grad():
            pass
        assert not tn.is_grad_enabled()  # nested blocks restore what they found
        layer(x)
    assert tn.is_grad_enabled() and layer._x is None
    with pytest.raises(RuntimeError, match=r"Linear\(3 -> 2\).backward called before forward"):
        layer.backward(np.ones((4, 2), np.float32))
    with pytest.raises(KeyError):
        with tn.no_grad():
            raise KeyError
    assert tn.is_grad_enabled()

    @tn.no_grad()
    def infer(v):
        assert not tn.is_grad_enabled()
        return layer(v)

    infer(x)
    assert tn.is_grad_enabled() and layer._x is None


def _layers():
    return [
        (lambda: nn.Linear(4, 3), (5, 4)), (lambda: nn.DropConnect(4, 3), (5, 4)),
        (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)), (nn.ReLU, (5, 4)),
        (nn.Sigmoid, (5, 4)), (nn.Softmax, (5, 4)), (nn.LogSoftmax, (5, 4)),
        (lambda: nn.BatchNorm1d(4), (5, 4)), (lambda: nn.LayerNorm(4), (5, 4)),
        (lambda: nn.MaxPool2d(2), (2, 2, 4, 4)), (lambda: nn.AvgPool2d(2), (2, 2, 4, 4)),
        (nn.GlobalAvgPool2d, (2, 2, 4, 4)), (nn.Flatten, (2, 2, 4, 4)),
        (lambda: nn.Dropout(0.5), (5, 4)), (nn.Identity, (5, 4)),
    ]


@pytest.mark.parametrize("make, shape", _layers(), ids=lambda v: getattr(v, "__name__", ""))
def test_a_second_backward_raises_naming_the_layer(make, shape, rng):
    layer = make()
    y = layer(rng.standard_normal(shape).astype(np.float32))
    grad = np.ones(tuple(y.shape), np.float32)
    layer.backward(grad)
    grads = {n: p.grad.copy() for n, p in layer.named_parameters()}
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}\(.*\)\.backward called a "
                                           rf"second time after one forward"):
        layer.backward(grad)
    for name, p in layer.named_parameters():  # not doubled
        assert np.array_equal(p.grad, grads[name]), name
    for attr in layer._cache_attrs:  # the cache was released after the first backward
        assert getattr(layer, attr) is None, attr


def test_retain_graph_keeps_the_cache_for_another_backward(device):
    model, loss_fn = _model(device, dropout=True), nn.CrossEntropyLoss()
    x, y = _data(device)
    loss_fn(model(x), y)
    grad = loss_fn.backward(retain_graph=True)
    first = tn.asnumpy(model.backward(grad, retain_graph=True))
    once = _grads(model)
    second = tn.asnumpy(model.backward(loss_fn.backward()))
    assert np.array_equal(first, second)
    for name, p in model.named_parameters():  # accumulated twice, as PyTorch does
        np.testing.assert_allclose(tn.asnumpy(p.grad), 2 * once[name], rtol=1e-6)
    with pytest.raises(RuntimeError, match=r"Linear\(8 -> 3\).backward called a second time"):
        model.backward(grad)
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss.*second time"):
        loss_fn.backward()


@pytest.mark.parametrize("container", ["linear", "sequential", "residual"])
def test_a_wrong_grad_output_shape_names_the_layer_and_leaves_no_grad(device, container):
    b = get_backend(device)
    tn.manual_seed(0)
    if container == "linear":
        model, name, out = nn.Linear(4, 3, device=device), r"Linear\(4 -> 3\)", 3
    elif container == "sequential":
        model = nn.Sequential(nn.Linear(4, 5, device=device), nn.ReLU(),
                              nn.Linear(5, 3, device=device))
        name, out = r"Linear\(5 -> 3\)", 3
    else:
        model = nn.Residual(nn.Sequential(nn.Linear(4, 4, device=device), nn.Tanh()))
        name, out = r"Tanh\(\)", 4
    model(b.asarray(np.ones((2, 4), np.float32)))
    with pytest.raises(ValueError, match=rf"{name}\.backward got grad_output of shape \(2, 7\); "
                                         rf"expected \(2, {out}\)"):
        model.backward(b.asarray(np.ones((2, 7), np.float32)))
    assert all(p.grad is None for p in model.parameters())
    model.backward(b.asarray(np.ones((2, out), np.float32)))  # the cache is still there
    assert all(tuple(p.grad.shape) == p.shape for p in model.parameters())


def test_grad_output_must_be_an_array_of_the_output_dtype_and_device():
    layer = nn.Linear(4, 3)
    layer(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"Linear\(4 -> 3\).backward expected grad_output as an "
                                        r"array of shape \(2, 3\), got list"):
        layer.backward([[1.0] * 3] * 2)
    with pytest.raises(TypeError, match=r"got a int64 grad_output; expected float32"):
        layer.backward(np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match=r"got a float64 grad_output; expected float32"):
        layer.backward(np.ones((2, 3), np.float64))
    with pytest.raises(DeviceError, match=r"computed on 'cpu' but grad_output is on 'strict'"):
        layer.backward(get_backend("strict").asarray(np.ones((2, 3), np.float32)))
    assert layer.weight.grad is None
    loss_fn = nn.MSELoss()
    loss_fn(np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"MSELoss.*grad_output of shape \(3,\); expected \(\)"):
        loss_fn.backward(np.ones(3, np.float32))
    assert loss_fn.backward(2.0).shape == (2, 3)
