"""Sequential's Linear + ReLU fusion (tensornet/nn/fusion.py): bitwise the results of the
modules called one by one, on every backend, and everything a user can do with the
modules (hooks, calling their backward by hand, retain_graph, no_grad, errors) behaves as
without it."""
import contextlib

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend, jit
from tensornet.nn import fusion


def _mlp(device="cpu", dtype="float32", seed=0):
    tn.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                         nn.Linear(8, 3)).to(device, dtype=dtype)


def _one_by_one_forward(model, x):
    for module in model:
        x = module(x)
    return x


def _one_by_one_backward(model, grad, input_grad):
    modules = list(model)
    for k in range(len(modules) - 1, -1, -1):
        grad = modules[k].backward(grad, input_grad=input_grad or k > 0)
    return grad


def _host(a):
    return None if a is None else tn.asnumpy(a)


def _train(device, dtype, fused: bool, input_grad: bool, steps=3):
    """Outputs, input gradients, parameter gradients (two backwards per step: the second
    accumulates) and the weights after SGD steps, on host."""
    model = _mlp(device, dtype)
    backend = get_backend(device)
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(1)
    seen = []
    for _ in range(steps):
        x = backend.asarray(rng.standard_normal((7, 20)).astype(dtype))
        g = backend.asarray(rng.standard_normal((7, 3)).astype(dtype))
        opt.zero_grad()
        for _ in range(2):
            if fused:
                y, gx = model(x), model.backward(g, input_grad=input_grad)
            else:
                y = _one_by_one_forward(model, x)
                gx = _one_by_one_backward(model, g, input_grad)
            seen += [_host(y), _host(gx)]
        seen += [_host(p.grad) for p in model.parameters()]
        opt.step()
    return seen + [_host(p.data) for p in model.parameters()]


def _assert_bitwise(got, want, dtype):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape
            assert a.tobytes() == b.tobytes()  # (signed zeros and NaN payloads too)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_grad", [True, False])
def test_fused_sequential_is_bitwise_the_modules_one_by_one(any_device, dtype, input_grad):
    _assert_bitwise(_train(any_device, dtype, True, input_grad),
                    _train(any_device, dtype, False, input_grad), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_grad", [True, False])
def test_fused_sequential_without_numba_is_bitwise_the_modules_one_by_one(dtype, input_grad):
    with jit.disabled():
        _assert_bitwise(_train("cpu", dtype, True, input_grad),
                        _train("cpu", dtype, False, input_grad), dtype)


def test_the_fused_path_runs_for_each_linear_relu_pair(monkeypatch):
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        real = getattr(fusion, name)

        def counting(*args, _real=real, _name=name):
            calls[_name] += 1
            return _real(*args)
        monkeypatch.setattr(fusion, name, counting)
    model = _mlp()
    y = model(np.ones((4, 20), np.float32))
    model.backward(np.ones_like(y), input_grad=False)
    assert calls == {"forward": 2, "backward": 2}


def test_hooks_see_every_module_call_and_turn_fusion_off():
    model = _mlp()
    seen = []
    model[1].register_forward_hook(lambda m, inputs, out: seen.append(("forward", out.shape)))
    model[2].register_backward_hook(lambda m, gin, gout: seen.append(("backward", gout.shape)))
    x = np.random.default_rng(0).standard_normal((5, 20)).astype(np.float32)
    y = model(x)
    model.backward(np.ones_like(y))
    assert seen == [("forward", (5, 16)), ("backward", (5, 8))]


def test_a_fused_forward_leaves_each_module_ready_for_its_own_backward():
    model, twin = _mlp(), _mlp()
    x = np.random.default_rng(2).standard_normal((6, 20)).astype(np.float32)
    g = np.random.default_rng(3).standard_normal((6, 3)).astype(np.float32)
    model(x)  # fused
    got = _one_by_one_backward(model, g, True)
    _one_by_one_forward(twin, x)
    want = _one_by_one_backward(twin, g, True)
    np.testing.assert_array_equal(got, want)
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


def test_second_backward_errors_name_the_relu_and_retain_graph_keeps_the_cache():
    pair = nn.Sequential(nn.Linear(20, 16), nn.ReLU())
    x = np.ones((3, 20), np.float32)
    pair(x)
    pair.backward(np.ones((3, 16), np.float32))
    with pytest.raises(RuntimeError, match=r"ReLU.*second time"):
        pair.backward(np.ones((3, 16), np.float32))
    with pytest.raises(RuntimeError, match=r"Linear\(20 -> 16\).*second time"):
        pair[0].backward(np.ones((3, 16), np.float32))
    model = _mlp()
    g = np.ones((3, 3), np.float32)
    model(x)
    first = model.backward(g, retain_graph=True)
    grads = [np.array(p.grad) for p in model.parameters()]
    second = model.backward(g)
    np.testing.assert_array_equal(first, second)
    for p, once in zip(model.parameters(), grads):
        np.testing.assert_array_equal(p.grad, 2 * once)


def test_wrong_grad_output_gets_the_modules_own_errors():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"ReLU.*grad_output of shape \(2, 4\)"):
        model.backward(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match=r"ReLU.*float64 grad_output"):
        model.backward(np.ones((2, 3), np.float64))
    with pytest.raises(ValueError, match=r"Linear\(4 -> 3\) got input of shape \(2, 5\)"):
        model(np.ones((2, 5), np.float32))


def test_no_grad_forward_leaves_the_training_caches_alone():
    model, twin = _mlp(), _mlp()
    rng = np.random.default_rng(4)
    x, other = (rng.standard_normal((5, 20)).astype(np.float32) for _ in range(2))
    g = np.ones((5, 3), np.float32)
    model(x)
    with tn.no_grad():
        evaluated = model(other)
    model.backward(g)
    twin(x)
    twin.backward(g)
    np.testing.assert_array_equal(evaluated, _one_by_one_forward(_mlp(), other))
    for p, q in zip(model.parameters(), twin.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad)


@pytest.mark.parametrize("first", ["nobias", "dropconnect", "frozen_bias", "sequence"])
def test_pairs_that_are_not_fused_still_train_as_the_modules_do(first):
    tn.manual_seed(0)
    layer = {"nobias": lambda: nn.Linear(6, 5, bias=False),
             "dropconnect": lambda: nn.DropConnect(6, 5, p=0.5),
             "frozen_bias": lambda: nn.Linear(6, 5),
             "sequence": lambda: nn.Linear(6, 5)}[first]()
    if first == "frozen_bias":
        layer.bias.requires_grad = False
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(5, 2))
    shape = (3, 4, 6) if first == "sequence" else (4, 6)
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    tn.manual_seed(1)
    y = model(x)
    gx = model.backward(np.ones_like(y))
    grads = [None if p.grad is None else np.array(p.grad) for p in model.parameters()]
    model.zero_grad()
    tn.manual_seed(1)
    np.testing.assert_array_equal(y, _one_by_one_forward(model, x))
    np.testing.assert_array_equal(gx, _one_by_one_backward(model, np.ones_like(y), True))
    for p, want in zip(model.parameters(), grads):
        if want is None:
            assert p.grad is None
        else:
            np.testing.assert_array_equal(p.grad, want)


def test_fused_mlp_passes_a_float64_gradient_check(device, rng):
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)).to(device,
                                                                          dtype="float64")
    assert tn.gradcheck(model, get_backend(device).asarray(rng.standard_normal((5, 4))))


def test_disabled_runs_the_modules_one_by_one(monkeypatch):
    calls = []
    monkeypatch.setattr(fusion, "forward", lambda *args: calls.append(args))
    model = _mlp()
    x = np.ones((2, 20), np.float32)
    with fusion.disabled():
        y = model(x)
    assert calls == [] and y.shape == (2, 3)
    model.backward(np.ones_like(y))


def _bits(a):
    a = tn.asnumpy(a)
    return a.dtype.str, a.shape, np.ascontiguousarray(a).tobytes()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_one_unit_linear_relu_sums_its_bias_gradient_as_the_modules_do(dtype):
    # (N, 1): NumPy's sum over axis 0 then runs along memory, pairwise; one 1.0 and many
    # half-ulps sum to 1.0 in row order but not pairwise, so the orders are told apart.
    half_ulp = np.finfo(dtype).eps / 2
    g = np.full((64, 1), half_ulp, dtype)
    g[0] = 1.0
    x = np.ones((64, 2), dtype)
    grads = []
    for fused in (True, False):
        pair = nn.Sequential(nn.Linear(2, 1), nn.ReLU()).to(dtype=dtype)
        pair[0].weight.data[...] = 0.0
        pair[0].bias.data[...] = 1.0  # every row passes the ReLU
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            pair(x)
            pair.backward(g)
        grads.append(_bits(pair[0].bias.grad))
    assert grads[0] == grads[1]


@pytest.mark.parametrize("bias_shape", [(1,), (1, 4), (5,), (3,)])
def test_a_user_assigned_bias_of_another_shape_acts_as_in_the_linears_own_forward(any_device,
                                                                                  bias_shape):
    # Linear's forward adds its bias with NumPy broadcasting ((1,) and (1, 4) broadcast,
    # (5,) and (3,) raise); the fused step must do the same, never read past the bias.
    backend = get_backend(any_device)
    x = backend.asarray(np.random.default_rng(6).standard_normal((5, 3)).astype(np.float32))
    results = []
    for fused in (True, False):
        tn.manual_seed(0)
        pair = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).to(any_device)
        pair[0].bias.data = backend.asarray(np.linspace(-1, 1, np.prod(bias_shape),
                                                        dtype=np.float32).reshape(bias_shape))
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            try:
                results.append(_bits(pair(x)))
            except (ValueError, RuntimeError) as exc:
                results.append(f"{type(exc).__name__}: {exc}")
    assert results[0] == results[1]


class _Tagged(np.ndarray):
    """A NumPy subclass: the modules keep it through forward and backward."""


def test_a_numpy_subclass_comes_back_as_from_the_modules_one_by_one():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 6)).astype(np.float32).view(_Tagged)
    g = rng.standard_normal((5, 4)).astype(np.float32).view(_Tagged)
    results = []
    for fused in (True, False):
        tn.manual_seed(0)
        pair = nn.Sequential(nn.Linear(6, 4), nn.ReLU())
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            y = pair(x)
            gx = pair.backward(g)
        results.append([(type(a), _bits(a)) for a in (y, gx, pair[0].weight.grad,
                                                       pair[0].bias.grad)])
    assert results[0] == results[1]


def test_a_failing_linear_backward_leaves_the_caches_as_one_by_one():
    """The Linear's part raising (a user-set gradient of the wrong shape): the ReLU's
    backward had finished, so its cache is consumed, the Linear's kept, as one by one."""
    def run(fused):
        model = _mlp()
        x, g = np.ones((3, 20), np.float32), np.ones((3, 3), np.float32)
        with (fusion.disabled() if not fused else contextlib.nullcontext()):
            model(x)
            model[2].weight.grad = np.zeros((2, 2), np.float32)
            with pytest.raises(ValueError):
                model.backward(g)
        model[2].weight.grad = None
        outcome = []
        for module, grad in ((model[3], np.ones((3, 8), np.float32)),
                             (model[2], np.ones((3, 8), np.float32))):
            try:
                module.backward(grad)
                outcome.append("ran")
            except RuntimeError as exc:
                outcome.append(str(exc).split(":")[0])
        return outcome
    assert run(True) == run(False) == [
        "ReLU().backward called a second time after one forward", "ran"]


def test_disabled_is_per_thread():
    import threading
    seen = []
    with fusion.disabled():
        worker = threading.Thread(target=lambda: seen.append(fusion.fusable(
            nn.Linear(2, 2), nn.ReLU())))
        worker.start()
        worker.join()
        assert not fusion.fusable(nn.Linear(2, 2), nn.ReLU())
    assert seen == [True]
