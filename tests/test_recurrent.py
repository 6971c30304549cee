"""RNN, LSTM and GRU as torch's: outputs, final states and every gradient (input, initial
state, each weight and bias) against torch.nn.RNN/LSTM/GRU with the same weights, over
stacked, bidirectional, batch_first and bias-free layers, float64 and float32, the CPU and
strict backends; float64 gradchecks through the output and the final states; every
backend; PyTorch's parameter names, init and state dicts; dropout between layers;
training; errors."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from torch_reference import torch_or_skip

CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, bias=False),
           dict(num_layers=3, batch_first=True, bidirectional=True)]
KINDS = [("RNN", {}), ("RNN", dict(nonlinearity="relu")), ("LSTM", {}), ("GRU", {})]


def _pair(torch, kind, extra, options, dtype, device="cpu", input_size=4, hidden=5):
    layer = getattr(nn, kind)(input_size, hidden, **extra, **options).to(device, dtype)
    twin = getattr(torch.nn, kind)(input_size, hidden, **extra, **options).to(
        getattr(torch, dtype))
    twin.load_state_dict({k: torch.tensor(tn.asnumpy(v)) for k, v in layer.state_dict().items()})
    return layer, twin


def _run_both(torch, layer, twin, kind, x, h0, c0, rng, with_output_grad=True):
    """Forward both with the same initial state, backward the same random gradients of the
    output and the final state(s); returns the (tensornet, torch) pairs to compare."""
    backend = layer.backend
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    if kind == "LSTM":
        y, (h_n, c_n) = layer(backend.asarray(x), (backend.asarray(h0), backend.asarray(c0)))
        yt, (h_nt, c_nt) = twin(xt, (h0t, c0t))
    else:
        y, h_n = layer(backend.asarray(x), backend.asarray(h0))
        yt, h_nt = twin(xt, h0t)
    gy = rng.standard_normal(tuple(y.shape)).astype(x.dtype) * with_output_grad
    gh = rng.standard_normal(tuple(h_n.shape)).astype(x.dtype)
    total = (yt * torch.tensor(gy)).sum() + (h_nt * torch.tensor(gh)).sum()
    grads = dict(grad_h_n=backend.asarray(gh))
    if kind == "LSTM":
        gc = rng.standard_normal(tuple(c_n.shape)).astype(x.dtype)
        total = total + (c_nt * torch.tensor(gc)).sum()
        grads["grad_c_n"] = backend.asarray(gc)
    dx = layer.backward(backend.asarray(gy) if with_output_grad else None, **grads)
    total.backward()
    pairs = [("output", y, yt), ("h_n", h_n, h_nt), ("dx", dx, xt.grad)]
    if kind == "LSTM":
        pairs += [("c_n", c_n, c_nt), ("dh0", layer.hx_grad[0], h0t.grad),
                  ("dc0", layer.hx_grad[1], c0t.grad)]
    else:
        pairs.append(("dh0", layer.hx_grad, h0t.grad))
    theirs = dict(twin.named_parameters())
    pairs += [(name, param.grad, theirs[name].grad) for name, param in layer.named_parameters()]
    return pairs


@pytest.mark.parametrize("kind, extra", KINDS)
@pytest.mark.parametrize("options", CONFIGS)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_recurrent_layers_match_torch(kind, extra, options, dtype, tol, device, rng):
    torch = torch_or_skip()
    layer, twin = _pair(torch, kind, extra, options, dtype, device)
    length, n = 6, 3
    directions = 2 if options.get("bidirectional") else 1
    layout = (n, length, 4) if options.get("batch_first") else (length, n, 4)
    x = rng.standard_normal(layout).astype(dtype)
    states = (options.get("num_layers", 1) * directions, n, 5)
    h0, c0 = (rng.standard_normal(states).astype(dtype) for _ in range(2))
    for name, ours, expected in _run_both(torch, layer, twin, kind, x, h0, c0, rng):
        got = tn.asnumpy(ours)
        assert got.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(got, expected.detach().numpy(), rtol=tol, atol=tol,
                                   err_msg=f"{kind} {options} {name}")


@pytest.mark.parametrize("kind, extra", KINDS)
def test_only_the_final_state_used(kind, extra, rng):
    """A sequence classifier reads h_n alone: backward(None, grad_h_n=...)."""
    torch = torch_or_skip()
    layer, twin = _pair(torch, kind, extra, dict(num_layers=2), "float64")
    x = rng.standard_normal((7, 2, 4))
    h0, c0 = np.zeros((2, 2, 5)), np.zeros((2, 2, 5))
    for name, ours, expected in _run_both(torch, layer, twin, kind, x, h0, c0, rng,
                                          with_output_grad=False):
        np.testing.assert_allclose(ours, expected.detach().numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_default_initial_state_is_zeros_and_input_grad_false_skips_dx(rng):
    layer = nn.GRU(4, 5, num_layers=2).double()
    x = rng.standard_normal((3, 2, 4))
    y, h_n = layer(x)
    y0, h0_n = layer(x, hx=np.zeros((2, 2, 5)))  # torch's keyword
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(h_n, h0_n)
    assert layer.backward(np.ones_like(y), input_grad=False) is None
    assert all(p.grad is not None for p in layer.parameters())


class _Everything(nn.Module):
    """A recurrent layer's output and final state(s) as one flat array, for gradcheck."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        y, state = self.layer(x)
        parts = [y] + (list(state) if isinstance(state, tuple) else [state])
        self._shapes = [p.shape for p in parts]
        return np.concatenate([np.asarray(p).reshape(-1) for p in parts])

    def backward(self, grad_output):
        sizes = np.cumsum([math.prod(s) for s in self._shapes])[:-1]
        grads = [g.reshape(s) for g, s in zip(np.split(grad_output, sizes), self._shapes)]
        states = dict(zip(("grad_h_n", "grad_c_n"), grads[1:]))
        return self.layer.backward(grads[0], **states)


@pytest.mark.parametrize("kind, extra", KINDS)
def test_recurrent_gradcheck(kind, extra, rng):
    layer = getattr(nn, kind)(3, 4, num_layers=2, bidirectional=True, **extra).double()
    x = rng.standard_normal((4, 2, 3))
    assert tn.gradcheck(_Everything(layer), [x], max_elements=60, directions=8)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers_agree_across_backends(kind, any_device, rng):
    ref = getattr(nn, kind)(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    layer = getattr(nn, kind)(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    layer.load_state_dict(ref.state_dict())
    layer.to(any_device)
    backend = tn.get_backend(any_device)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    y_ref, y = ref(x)[0], layer(backend.asarray(x))[0]
    grad = rng.standard_normal(tuple(y_ref.shape)).astype(np.float32)
    dx_ref, dx = ref.backward(grad), layer.backward(backend.asarray(grad))
    np.testing.assert_allclose(tn.asnumpy(y), y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tn.asnumpy(dx), dx_ref, rtol=1e-5, atol=1e-5)
    for (name, p), q in zip(layer.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(tn.asnumpy(p.grad), q.grad, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("kind, gates", [("RNN", 1), ("LSTM", 4), ("GRU", 3)])
def test_parameter_names_shapes_init_and_state_dicts_are_pytorchs(kind, gates):
    torch = torch_or_skip()
    tn.manual_seed(0)
    layer = getattr(nn, kind)(4, 8, num_layers=2, bidirectional=True)
    twin = getattr(torch.nn, kind)(4, 8, num_layers=2, bidirectional=True)
    assert list(layer.state_dict()) == list(twin.state_dict())
    for name, param in layer.named_parameters():
        assert tuple(param.shape) == tuple(twin.state_dict()[name].shape), name
        values = np.asarray(param.data)
        assert values.dtype == np.float32
        assert np.abs(values).max() <= 1 / math.sqrt(8)  # U(-1/sqrt(H), 1/sqrt(H)), as torch
    assert layer.weight_ih_l1.shape == (gates * 8, 16)
    twin.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in layer.state_dict().items()})
    back = getattr(nn, kind)(4, 8, num_layers=2, bidirectional=True)
    back.load_state_dict({k: v.detach().numpy() for k, v in twin.state_dict().items()})
    for a, b in zip(back.parameters(), layer.parameters()):
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))


def test_dropout_between_layers_in_training_only(rng):
    torch = torch_or_skip()
    layer, twin = _pair(torch, "LSTM", {}, dict(num_layers=2, dropout=0.5), "float64")
    x = rng.standard_normal((5, 3, 4))
    tn.manual_seed(1)
    trained = layer(x)[0]
    tn.manual_seed(1)
    np.testing.assert_array_equal(layer(x)[0], trained)  # the backend's seeded generator
    layer.eval()
    twin.eval()
    evaluated = layer(x)[0]
    assert not np.allclose(trained, evaluated)
    np.testing.assert_allclose(evaluated, twin(torch.tensor(x))[0].detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    layer.train()  # backward goes through the mask its forward drew (gradcheck re-seeds)
    assert tn.gradcheck(_Everything(layer), [x[:3, :2]], max_elements=40, directions=6)
    with pytest.warns(UserWarning, match="with num_layers=1 it does nothing"):
        nn.GRU(4, 5, dropout=0.3)


def test_a_gru_classifier_trains(rng):
    tn.manual_seed(0)
    gru, head = nn.GRU(8, 16, batch_first=True), nn.Linear(16, 2)
    opt = tn.optim.Adam(list(gru.parameters()) + list(head.parameters()), lr=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    x = rng.standard_normal((128, 10, 8)).astype(np.float32)
    y = (x[:, :, 0].sum(1) > 0).astype(np.int64)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        _, h_n = gru(x)
        losses.append(float(loss_fn(head(h_n[-1]), y)))
        gru.backward(None, grad_h_n=head.backward(loss_fn.backward())[None])
        opt.step()
    assert losses[-1] < 0.2 * losses[0]


def test_reprs_and_errors_name_the_layer(rng):
    assert repr(nn.LSTM(4, 8, num_layers=2, batch_first=True, bidirectional=True)) == \
        "LSTM(4, 8, num_layers=2, batch_first=True, bidirectional=True)"
    assert repr(nn.RNN(3, 2, nonlinearity="relu", bias=False)) == \
        "RNN(3, 2, bias=False, nonlinearity='relu')"
    with pytest.raises(ValueError, match="RNN: nonlinearity must be 'tanh' or 'relu'"):
        nn.RNN(3, 2, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="LSTM: proj_size=4 is not supported"):
        nn.LSTM(3, 8, proj_size=4)
    with pytest.raises(ValueError, match="GRU: hidden_size must be a positive integer"):
        nn.GRU(3, 0)
    with pytest.raises(ValueError, match=r"GRU: dropout must be a number in \[0, 1\]"):
        nn.GRU(3, 2, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="LSTM: batch_first must be True or False"):
        nn.LSTM(3, 2, batch_first="yes")
    layer = nn.LSTM(3, 2, batch_first=True)
    with pytest.raises(ValueError, match=r"LSTM\(3 -> 2\) got input of shape \(4, 3\); "
                                         r"expected \(N, L, 3\)"):
        layer(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3 -> 2\).*\(2, 5, 4\)"):
        layer(np.zeros((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"got input of shape \(2, 0, 3\): expected at least "
                                         r"one time step"):
        layer(np.zeros((2, 0, 3), np.float32))
    with pytest.raises(TypeError, match=r"LSTM\(3 -> 2\): hx must be a pair \(h0, c0\)"):
        layer(np.zeros((2, 5, 3), np.float32), np.zeros((1, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3 -> 2\) got h0 of shape \(1, 3, 2\); "
                                         r"expected \(1, 2, 2\)"):
        layer(np.zeros((2, 5, 3), np.float32), (np.zeros((1, 3, 2), np.float32),
                                                np.zeros((1, 2, 2), np.float32)))
    with pytest.raises(RuntimeError, match=r"LSTM\(3 -> 2\)\.backward called before forward"):
        layer.backward(np.zeros((2, 5, 2), np.float32))
    y, (h_n, _) = layer(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3 -> 2\)\.backward got grad_h_n of shape "
                                         r"\(2, 2\); expected \(1, 2, 2\)"):
        layer.backward(None, grad_h_n=np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3 -> 2\)\.backward got grad_output of shape"):
        layer.backward(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(TypeError, match="float64"):
        layer(np.zeros((2, 5, 3), np.float64))


def test_state_and_state_gradient_errors_name_the_argument():
    """Found by review: a float64, integer, list or other-device h0, c0, grad_h_n or
    grad_c_n was reported as the layer's *input* ('got float64 input; cast the input
    (x.astype(...))'), though x was right: the errors now name the argument."""
    layer = nn.LSTM(3, 2)
    x = np.zeros((5, 2, 3), np.float32)
    state = np.zeros((1, 2, 2), np.float32)
    strict = tn.get_backend("strict")
    for bad, error, text in [(state.astype(np.float64), TypeError, "float64 h0; cast h0"),
                             (state.astype(np.int64), TypeError, "floating-point h0, got int64"),
                             (state.tolist(), TypeError, "expected h0 as an array, got list"),
                             (strict.asarray(state), tn.DeviceError, "got h0 on 'strict'")]:
        with pytest.raises(error, match=r"LSTM\(3 -> 2\) .*" + re.escape(text)):
            layer(x, (bad, state))
    with pytest.raises(TypeError, match=r"LSTM\(3 -> 2\) .*float64 c0; cast c0"):
        layer(x, (state, state.astype(np.float64)))
    layer(x)
    with pytest.raises(TypeError, match=r"LSTM\(3 -> 2\) .*backward got float64 grad_h_n"):
        layer.backward(None, grad_h_n=state.astype(np.float64))
    with pytest.raises(tn.DeviceError, match=r"LSTM\(3 -> 2\) .*backward got grad_c_n on "
                                             r"'strict'"):
        layer.backward(None, grad_c_n=strict.asarray(state))
    with pytest.raises(TypeError, match=r"LSTM\(3 -> 2\)\.backward expected grad_h_n as an "
                                        r"array, got list"):
        layer.backward(None, grad_h_n=state.tolist())


@pytest.mark.parametrize("batch_first, shape", [(False, (0, 2, 3)), (True, (2, 0, 3))])
def test_an_empty_sequence_is_called_so(batch_first, shape):
    """Found by review: without batch_first an input of 0 time steps was called 'an empty
    batch'."""
    with pytest.raises(ValueError, match=r"GRU\(3 -> 2\) got input of shape \(.*\): expected "
                                         r"at least one time step"):
        nn.GRU(3, 2, batch_first=batch_first)(np.zeros(shape, np.float32))


def test_backward_without_any_gradient_is_refused():
    """Found by review: backward() with neither grad_output nor a final state's gradient
    returned zeros silently (a forgotten argument); it now says what it needs."""
    layer = nn.LSTM(3, 2)
    layer(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTM\(3 -> 2\)\.backward got no gradient: give "
                                         r"grad_output, grad_h_n or grad_c_n"):
        layer.backward()
    gru = nn.GRU(3, 2)
    gru(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"GRU\(3 -> 2\)\.backward got no gradient: give "
                                         r"grad_output or grad_h_n"):
        gru.backward(None)


def test_dropout_takes_any_real_number_as_torch():
    """Found by review: dropout=np.float32(0.5) (torch takes any number) was refused."""
    assert nn.GRU(3, 2, num_layers=2, dropout=np.float32(0.25)).dropout == 0.25
    with pytest.raises(ValueError, match=r"GRU: dropout must be a number in \[0, 1\]"):
        nn.GRU(3, 2, num_layers=2, dropout="0.5")


@pytest.mark.parametrize("layer", [nn.GRU(3, 4), nn.LSTM(3, 4), nn.RNN(3, 4)])
def test_onnx_export_refuses_recurrent_layers_by_name(layer):
    """Found by review: exporting a model holding a GRU crashed in the exporter's shape
    hook with "'tuple' object has no attribute 'shape'"."""
    pytest.importorskip("onnx")
    with pytest.raises(ValueError, match=rf"ONNX export: {type(layer).__name__}\(3 -> 4\) "
                                         r"cannot be exported: it returns a tuple"):
        tn.onnx.export(nn.Sequential(layer), np.zeros((5, 2, 3), np.float32))


@pytest.mark.parametrize("kind", ["RNN", "GRU"])
def test_the_initial_state_is_passed_as_hx_as_in_torch(kind, rng):
    """Found by review: torch's RNN and GRU take ``forward(input, hx=None)``; tensornet's
    named it h0, so ``rnn(x, hx=h0)`` raised TypeError."""
    layer = getattr(nn, kind)(3, 4)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    h0 = rng.standard_normal((1, 2, 4)).astype(np.float32)
    np.testing.assert_array_equal(layer(x, hx=h0)[1], layer(x, h0)[1])
