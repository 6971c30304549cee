"""Sequential's BatchNorm + ReLU fusion (tensornet/nn/fusion.py, F.normalize_affine_relu,
F.normalize_relu_backward): bitwise the results of the modules called one by one, on every
backend, in every BatchNorm mode, and everything a user can do with the modules (hooks,
calling their backward by hand, retain_graph, no_grad, errors) behaves as without it."""
import contextlib

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.backends import get_backend, jit
from tensornet.nn import fusion
from tensornet.nn import functional as F


def _cnn(device="cpu", dtype="float32", seed=0, **bn):
    tn.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4, **bn), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(36, 10),
                         nn.BatchNorm1d(10, **bn), nn.ReLU(), nn.Linear(10, 3)
                         ).to(device, dtype=dtype)


def _host(a):
    return None if a is None else tn.asnumpy(a)


def _train(device, dtype, fused: bool, steps=3, eval_last=False, **bn):
    """Outputs, input gradients, parameter gradients (two backwards per step: the second
    accumulates), running statistics and the weights after Adam steps, on host."""
    model = _cnn(device, dtype, **bn)
    backend = get_backend(device)
    opt = tn.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(1)
    seen = []
    with (contextlib.nullcontext() if fused else fusion.disabled()):
        for step in range(steps):
            if eval_last and step == steps - 1:
                model.eval()
            x = backend.asarray(rng.standard_normal((5, 2, 6, 6)).astype(dtype))
            g = backend.asarray(rng.standard_normal((5, 3)).astype(dtype))
            opt.zero_grad()
            for _ in range(2):
                seen += [_host(model(x)), _host(model.backward(g))]
            seen += [_host(p.grad) for p in model.parameters()]
            opt.step()
    return seen + [_host(a) for a in [p.data for p in model.parameters()] + list(model.buffers())]


def _assert_bitwise(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()  # (signed zeros and NaN payloads too)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_bn_relu_is_bitwise_the_modules_one_by_one(any_device, dtype):
    _assert_bitwise(_train(any_device, dtype, True), _train(any_device, dtype, False))


@pytest.mark.parametrize("bn", [dict(affine=False), dict(track_running_stats=False),
                                dict(momentum=None)], ids=str)
def test_every_batchnorm_mode_is_bitwise_the_modules_one_by_one(bn):
    _assert_bitwise(_train("cpu", "float32", True, eval_last=True, **bn),
                    _train("cpu", "float32", False, eval_last=True, **bn))


def test_eval_mode_is_bitwise_the_modules_one_by_one(device):
    _assert_bitwise(_train(device, "float64", True, eval_last=True),
                    _train(device, "float64", False, eval_last=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_without_numba_the_fusion_is_bitwise_the_modules_one_by_one(dtype):
    with jit.disabled():
        _assert_bitwise(_train("cpu", dtype, True), _train("cpu", dtype, False))


def test_the_fused_kernels_run_for_each_batchnorm_relu_pair(monkeypatch):
    calls = []
    for name in ("normalize_affine_relu", "normalize_relu_backward"):
        real = getattr(F, name)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, args[0].ndim))
            return _real(*args, **kwargs)
        monkeypatch.setattr(F, name, counting)
    model = _cnn()
    y = model(np.ones((4, 2, 6, 6), np.float32))
    model.backward(np.ones_like(y), input_grad=False)
    assert calls == [("normalize_affine_relu", 4), ("normalize_affine_relu", 2),
                     ("normalize_relu_backward", 2), ("normalize_relu_backward", 4)]


def test_the_numpy_backend_runs_each_direction_as_one_numba_kernel(monkeypatch):
    kernels = jit.kernels("norm")
    if kernels is None:
        pytest.skip("numba is not installed")
    seen = []
    real_forward, real_backward = kernels.normalize, kernels.normalize_backward
    monkeypatch.setattr(kernels, "normalize", lambda *args, relu=None: seen.append(
        ("normalize", relu is not None)) or real_forward(*args, relu=relu))
    monkeypatch.setattr(kernels, "normalize_backward", lambda *args: seen.append(
        ("normalize_backward", args[4] is not None, args[5] is not None))
        or real_backward(*args))
    # (the generic steps would call relu_backward)
    monkeypatch.setattr("tensornet.nn.functional.normalization.relu_backward", None)
    seq = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    seq.backward(np.ones_like(seq(x)))
    # forward: xhat and the ReLU in one sweep; backward: ReLU's mask from xhat (y not read)
    assert seen == [("normalize", True), ("normalize_backward", True, True)]


@pytest.mark.parametrize("change", ["weights in place", "relu called again", "bn called again"])
def test_changes_between_forward_and_backward_act_as_one_by_one(change):
    rng = np.random.default_rng(8)
    x, x2, g = (rng.standard_normal((4, 3, 5, 5)).astype(np.float32) for _ in range(3))
    results = []
    for fused in (True, False):
        tn.manual_seed(0)
        model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
        model[0].bias.data[:] = [0.3, -0.2, 0.1]
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            model(x)
            if change == "weights in place":  # ReLU's mask stays the one forward made
                model[0].weight.data *= -1.5
                model[0].bias.data += 0.5
            elif change == "relu called again":  # ReLU's backward uses its newest output
                model[1](x2)
            else:
                model[0](x2)
            results.append([model.backward(g), model[0].weight.grad, model[0].bias.grad])
    _assert_bitwise(*results)


@pytest.mark.parametrize("layout", ["nchw", "channel-major", "strided"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernels_are_bitwise_the_generic_steps_in_any_layout(layout, dtype):
    rng = np.random.default_rng(4)
    shape = (6, 3, 5, 7)

    def make():
        if layout == "channel-major":
            return rng.standard_normal((3, 6, 5, 7)).astype(dtype).transpose(1, 0, 2, 3)
        if layout == "strided":
            return rng.standard_normal((6, 3, 5, 14)).astype(dtype)[..., ::2]
        return rng.standard_normal(shape).astype(dtype)
    x, grad = make(), make()
    x[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    grad[1, 1, 1, :2] = [np.nan, -0.0]
    weight = rng.standard_normal(3).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    weight[1] = 0.0  # a channel of relu(0 * xhat + bias)
    axes = (0, 2, 3)
    *got, affine = F.normalize_affine_relu(x, axes, 1e-5, weight, bias)
    *want, none = F.normalize_affine_relu.generic(get_backend("cpu"), x, axes, 1e-5, weight,
                                                  bias)
    _assert_bitwise(got, want)
    assert none is None
    assert affine is None or affine.tobytes() == np.stack([weight, bias]).tobytes()
    xhat, y, _, _, invstd = want
    scale = invstd * weight.reshape(1, 3, 1, 1)
    want = F.normalize_relu_backward.generic(get_backend("cpu"), grad, y, xhat, scale, axes)
    for made in (None, np.stack([weight, bias])):  # the mask read from y, or from xhat
        _assert_bitwise(F.normalize_relu_backward(grad, y, xhat, scale, axes, affine=made), want)


@pytest.mark.parametrize("grad_layout", ["nchw", "channel-major", "fortran"])
def test_a_gradient_in_another_layout_than_xhat_gives_the_same_bits(grad_layout):
    # (a MaxPool2d hands back an NCHW gradient for a channel-major activation)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 6, 5, 7)).astype(np.float32).transpose(1, 0, 2, 3)
    grad = rng.standard_normal((6, 3, 5, 7)).astype(np.float32)
    if grad_layout == "channel-major":
        grad = np.ascontiguousarray(grad.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    elif grad_layout == "fortran":
        grad = np.asfortranarray(grad)
    weight, bias = rng.standard_normal(3).astype(np.float32), np.zeros(3, np.float32)
    axes = (0, 2, 3)
    xhat, y, _, _, invstd, affine = F.normalize_affine_relu(x, axes, 1e-5, weight, bias)
    scale = invstd * weight.reshape(1, 3, 1, 1)
    like_xhat = np.empty_like(xhat)  # (laid out as xhat: the copy the kernel would need)
    np.copyto(like_xhat, grad)
    _assert_bitwise(F.normalize_backward(grad, xhat, scale, axes),
                    F.normalize_backward(like_xhat, xhat, scale, axes))
    want = F.normalize_backward(F.relu_backward(grad, y), xhat, scale, axes)
    for made in (None, affine):
        _assert_bitwise(F.normalize_relu_backward(grad, y, xhat, scale, axes, affine=made),
                        want)


def test_a_relu_output_laid_out_unlike_xhat_takes_the_generic_steps():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    grad = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    xhat, y, _, _, invstd, _ = F.normalize_affine_relu(x, (0, 2, 3), 1e-5,
                                                       np.ones(3, np.float32),
                                                       np.zeros(3, np.float32))
    y_other = np.asfortranarray(y)
    got = F.normalize_relu_backward(grad, y_other, xhat, invstd, (0, 2, 3))
    want = F.normalize_backward(F.relu_backward(grad, y), xhat, invstd, (0, 2, 3))
    _assert_bitwise(got, want)


def test_hooks_and_subclasses_turn_the_fusion_off(monkeypatch):
    called = []
    monkeypatch.setattr(fusion, "_norm_forward", lambda *a: called.append(a))
    model = _cnn()
    seen = []
    model[2].register_forward_hook(lambda m, inputs, out: seen.append(out.shape))

    class MyBatchNorm(nn.BatchNorm1d):
        pass
    model[6] = MyBatchNorm(10)
    y = model(np.ones((3, 2, 6, 6), np.float32))
    model.backward(np.ones_like(y))
    assert called == [] and seen == [(3, 4, 6, 6)]


def test_a_fused_forward_leaves_each_module_ready_for_its_own_backward():
    model, twin = _cnn(), _cnn()
    x = np.random.default_rng(2).standard_normal((5, 2, 6, 6)).astype(np.float32)
    g = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    model(x)  # fused
    with fusion.disabled():
        twin(x)
    got, want = g, g
    for a, b in zip(reversed(list(model)), reversed(list(twin))):
        got, want = a.backward(got), b.backward(want)
        assert got.tobytes() == want.tobytes()
    _assert_bitwise([p.grad for p in model.parameters()], [p.grad for p in twin.parameters()])


def test_second_backward_names_the_relu_and_retain_graph_keeps_the_caches():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    g = np.ones_like(x)
    model(x)
    first = model.backward(g, retain_graph=True)
    second = model.backward(g)
    assert first.tobytes() == second.tobytes()
    with pytest.raises(RuntimeError, match=r"ReLU\(\)\.backward called a second time"):
        model.backward(g)


def test_wrong_grad_output_gets_the_modules_own_errors():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
    model(np.ones((4, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="ReLU"):
        model.backward(np.ones((4, 3, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\) got input of shape \(4, 2, 5, 5\)"):
        model(np.ones((4, 2, 5, 5), np.float32))


def test_no_grad_updates_the_running_statistics_and_leaves_the_caches_alone():
    rng = np.random.default_rng(6)
    x1, x2 = (rng.standard_normal((4, 3, 5, 5)).astype(np.float32) for _ in range(2))
    g = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    results = []
    for fused in (True, False):
        model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            model(x1)
            with tn.no_grad():
                model(x2)
            results.append([model.backward(g), model[0].running_mean, model[0].running_var,
                            model[0].weight.grad, model[0].bias.grad])
    _assert_bitwise(*results)


def test_a_failing_batchnorm_backward_leaves_the_caches_as_one_by_one():
    def run(fused):
        model = nn.Sequential(nn.BatchNorm2d(3), nn.ReLU())
        model(np.ones((4, 3, 5, 5), np.float32) * np.arange(3, dtype=np.float32)[:, None, None])
        model[0].weight.data = np.ones(2, np.float32)  # breaks the BatchNorm's backward only
        with (contextlib.nullcontext() if fused else fusion.disabled()):
            with pytest.raises(ValueError):
                model.backward(np.ones((4, 3, 5, 5), np.float32))
        return model[0]._cache is not None, model[1]._cache is None
    assert run(True) == run(False) == (True, True)


def test_fused_batchnorm_relu_passes_a_float64_gradient_check(device):
    tn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(12, 4), nn.BatchNorm1d(4), nn.ReLU()).to(device,
                                                                               dtype="float64")
    x = get_backend(device).asarray(np.random.default_rng(7).standard_normal((5, 2, 4, 4)))
    assert tn.gradcheck(model, x)
