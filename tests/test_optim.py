"""Optimizers against their published update rules (tests/optim_reference.py), their
behaviour (frozen parameters, dtypes, devices), argument checks, and the NumPy overrides."""
import functools

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import Backend, DeviceError, get_backend
from tensornet.nn import Parameter

from optim_reference import CONFIGS, STEPS, host, host_problem, make_params, ref_sgd, run


# ---------------------------------------------------------------------- update rules
@pytest.mark.parametrize("name", list(CONFIGS))
def test_float32_steps_match_published_rule(any_device, name):
    cls, ref, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float32)
    params = make_params(any_device, values)
    opt = cls(params, **kwargs)
    run(opt, params, grads, range(STEPS))
    for param, v, seq in zip(params, values, grads):
        expected = ref(v.astype(np.float64), [g.astype(np.float64) for g in seq], **kwargs)
        got = host(param.data)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got, v, atol=1e-4), "the parameter did not move"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_float64_steps_match_published_rule_tightly(device, name):
    cls, ref, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float64, seed=1)
    params = make_params(device, values)
    run(cls(params, **kwargs), params, grads, range(STEPS))
    for param, v, seq in zip(params, values, grads):
        np.testing.assert_allclose(host(param.data), ref(v, seq, **kwargs), rtol=1e-12,
                                   atol=1e-14)


def test_param_groups_use_their_own_hyper_parameters(device):
    values, grads = host_problem(np.float64, seed=2)
    params = make_params(device, values)
    opt = tn.optim.SGD([{"params": [params[0]]},
                        {"params": [params[1]], "lr": 0.01, "nesterov": True}],
                       lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    run(opt, params, grads, range(STEPS))
    np.testing.assert_allclose(host(params[0].data),
                               ref_sgd(values[0], grads[0], lr=0.1, momentum=0.9), rtol=1e-12)
    np.testing.assert_allclose(host(params[1].data),
                               ref_sgd(values[1], grads[1], lr=0.01, momentum=0.9,
                                       nesterov=True), rtol=1e-12)


def test_changing_group_lr_between_steps_takes_effect(device):
    values, grads = host_problem(np.float64, seed=3, steps=2)
    params = make_params(device, values[:1])
    opt = tn.optim.SGD(params, lr=0.1)
    run(opt, params, grads, [0])
    opt.param_groups[0]["lr"] = np.float64(0.5)  # a NumPy scalar, as user code may set it
    run(opt, params, grads, [1])
    expected = values[0] - 0.1 * grads[0][0] - 0.5 * grads[0][1]
    np.testing.assert_allclose(host(params[0].data), expected, rtol=1e-12)
    assert type(opt.param_groups[0]["lr"]) is float


def test_adamw_decay_is_decoupled(device):
    values, grads = host_problem(np.float64, seed=4)
    outs = {}
    for cls in (tn.optim.Adam, tn.optim.AdamW):
        params = make_params(device, values)
        run(cls(params, lr=0.01, weight_decay=0.1), params, grads, range(STEPS))
        outs[cls.__name__] = host(params[0].data)
    assert not np.allclose(outs["Adam"], outs["AdamW"], rtol=1e-4)
    # With a zero gradient AdamW only shrinks the weights; Adam's L2 term drives a full step.
    params = make_params(device, values[:1])
    opt = tn.optim.AdamW(params, lr=0.01, weight_decay=0.1)
    zero = [np.zeros_like(values[0])] * 3
    run(opt, params, [zero], range(3))
    np.testing.assert_allclose(host(params[0].data), values[0] * (1 - 0.01 * 0.1) ** 3,
                               rtol=1e-12)


@pytest.mark.parametrize("name", ["sgd-nesterov-wd", "adagrad-decay-wd-init",
                                  "rmsprop-momentum-wd", "adam-l2", "adamw"])
def test_frozen_and_gradless_parameters_are_untouched(device, name):
    cls, _, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float32, seed=5)
    frozen, gradless = make_params(device, values)
    live = make_params(device, values[:1])[0]
    frozen.requires_grad = False
    opt = cls([frozen, gradless, live], **kwargs)
    backend = get_backend(device)
    for t in range(2):
        frozen.grad = backend.asarray(grads[0][t].copy())
        live.grad = backend.asarray(grads[0][t].copy())
        opt.step()
    np.testing.assert_array_equal(host(frozen.data), values[0])
    np.testing.assert_array_equal(host(gradless.data), values[1])
    assert frozen not in opt.state and gradless not in opt.state and live in opt.state
    assert not np.allclose(host(live.data), values[0])


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_are_in_place_and_keep_the_dtype(device, name, dtype):
    cls, _, kwargs = CONFIGS[name]
    values, grads = host_problem(dtype, seed=6, steps=3)
    params = make_params(device, values)
    opt = cls(params, **kwargs)
    arrays = [p.data for p in params]
    run(opt, params, grads, range(3))
    backend = get_backend(device)
    for param, array in zip(params, arrays):
        assert param.data is array
        assert param.data.dtype == backend.dtype(np.dtype(dtype).name)
        for entry in opt.state[param].values():
            if hasattr(entry, "shape"):
                assert backend.owns(entry) and entry.dtype == param.data.dtype
                assert tuple(entry.shape) == param.shape


def test_zero_grad(device):
    values, _ = host_problem(np.float32)
    params = make_params(device, values)
    opt = tn.optim.SGD(params, lr=0.1)
    backend = get_backend(device)
    for p in params:
        p.grad = backend.ones(p.shape)
    opt.zero_grad(set_to_none=False)
    assert all(np.all(host(p.grad) == 0.0) for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_step_checks_the_gradient(device):
    values, _ = host_problem(np.float32)
    params = make_params(device, values[:1])
    opt = tn.optim.Adam(params)
    backend = get_backend(device)
    params[0].grad = backend.zeros((4, 3))
    with pytest.raises(ValueError, match=r"grad of shape \(4, 3\)"):
        opt.step()
    params[0].grad = backend.zeros((3, 4), "float64")
    with pytest.raises(TypeError, match="float64 grad; expected float32"):
        opt.step()
    other = get_backend("strict" if device == "cpu" else "cpu")
    params[0].grad = other.zeros((3, 4))
    with pytest.raises(DeviceError, match="grad is on"):
        opt.step()
    assert params[0] not in opt.state or not opt.state[params[0]]["step"]


def test_state_follows_a_parameter_moved_after_its_first_step():
    values, grads = host_problem(np.float32, seed=7)
    moved = make_params("cpu", values)
    stayed = make_params("cpu", values)
    opts = [tn.optim.Adam(ps, lr=0.05) for ps in (moved, stayed)]
    run(opts[0], moved, grads, range(2))
    run(opts[1], stayed, grads, range(2))
    for p in moved:
        p.data = tn.to_device(p.data, "strict")
    run(opts[0], moved, grads, range(2, STEPS))
    run(opts[1], stayed, grads, range(2, STEPS))
    strict = get_backend("strict")
    for a, b in zip(moved, stayed):
        assert strict.owns(opts[0].state[a]["exp_avg"])
        np.testing.assert_allclose(host(a.data), host(b.data), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, lr", [("sgd-momentum-dampening-wd", 0.05),
                                      ("rmsprop-momentum-wd", 0.02), ("adagrad", 0.5),
                                      ("adam", 0.1), ("adamw-wd", 0.1)])
def test_training_a_linear_model_reduces_the_loss(device, name, lr):
    cls, _, kwargs = CONFIGS[name]
    kwargs = dict(kwargs, lr=lr)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    target = x @ np.array([[1.0], [-2.0], [0.5], [3.0]], dtype=np.float32) + 0.25
    backend = get_backend(device)
    xb, tb = backend.asarray(x), backend.asarray(target)
    tn.manual_seed(0)
    model = tn.nn.Linear(4, 1, device=device)
    loss_fn = tn.nn.MSELoss()
    opt = cls(model.parameters(), **kwargs)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        losses.append(float(loss_fn(model(xb), tb)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.5 * losses[0], losses[::10]


# ---------------------------------------------------------------------- constructor errors
def _param():
    return Parameter(np.zeros(3, np.float32))


@pytest.mark.parametrize("build, error, match", [
    (lambda: tn.optim.SGD([], lr=0.1), ValueError, "empty parameter list"),
    (lambda: tn.optim.SGD(iter(()), lr=0.1), ValueError, "empty parameter list"),
    (lambda: tn.optim.SGD([_param()], lr=-0.1), ValueError, "lr must be >= 0"),
    (lambda: tn.optim.SGD([_param()], lr="0.1"), ValueError, "lr must be a finite real"),
    (lambda: tn.optim.SGD([_param()], lr=float("nan")), ValueError, "finite"),
    (lambda: tn.optim.SGD([_param()], lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda: tn.optim.SGD([_param()], lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: tn.optim.SGD([_param()], lr=0.1, momentum=0.9, dampening=0.5, nesterov=True),
     ValueError, "dampening = 0"),
    (lambda: tn.optim.SGD([_param()], lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda: tn.optim.Adam([_param()], betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (lambda: tn.optim.Adam([_param()], betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (lambda: tn.optim.Adam([_param()], betas=0.9), ValueError, "pair"),
    (lambda: tn.optim.AdamW([_param()], eps=-1e-8), ValueError, "eps must be >= 0"),
    (lambda: tn.optim.RMSprop([_param()], alpha=1.5), ValueError, "alpha"),
    (lambda: tn.optim.RMSprop([_param()], eps=-1.0), ValueError, "eps"),
    (lambda: tn.optim.Adagrad([_param()], lr_decay=-0.1), ValueError, "lr_decay"),
    (lambda: tn.optim.Adagrad([_param()], initial_accumulator_value=-1), ValueError,
     "initial_accumulator_value"),
    (lambda: tn.optim.SGD([np.zeros(3)], lr=0.1), TypeError, "ndarray, not a Parameter"),
    (lambda: tn.optim.SGD(_param(), lr=0.1), TypeError, "single Parameter"),
    (lambda: tn.optim.SGD(tn.nn.Linear(2, 2), lr=0.1), TypeError, "model.parameters()"),
    (lambda: tn.optim.SGD([_param(), {"params": []}], lr=0.1), TypeError, "mixes"),
    (lambda: tn.optim.SGD([{"params": []}], lr=0.1), ValueError, "empty parameter list"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_are_clear_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_a_parameter_in_two_groups_is_refused():
    p = _param()
    with pytest.raises(ValueError, match="more than once"):
        tn.optim.Adam([{"params": [p]}, {"params": [p], "lr": 0.1}])


# ---------------------------------------------------------------------- NumPy overrides
def _call_sgd(f, p, g, state, t, **kw):
    f(p, g, state[0] if kw["momentum"] else None, first_step=t == 1, **kw)


def _call_adam(f, p, g, state, t, **kw):
    f(p, g, state[0], state[1], step=t, **kw)


def _call_rmsprop(f, p, g, state, t, **kw):
    f(p, g, state[0], state[1] if kw["momentum"] else None, **kw)


def _call_adagrad(f, p, g, state, t, **kw):
    f(p, g, state[0], **kw)


SGD_KW = dict(lr=0.1, dampening=0.0, nesterov=False, weight_decay=0.0)
ADAM_KW = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8)
RMS_KW = dict(lr=0.01, alpha=0.9, eps=1e-8)
UPDATE_CASES = {
    "sgd": ("sgd_update", _call_sgd, dict(SGD_KW, momentum=0.0)),
    "sgd-momentum": ("sgd_update", _call_sgd,
                     dict(SGD_KW, momentum=0.9, dampening=0.2, weight_decay=0.01)),
    "sgd-nesterov": ("sgd_update", _call_sgd,
                     dict(SGD_KW, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": ("adam_update", _call_adam, dict(ADAM_KW, weight_decay=0.0, decoupled=False)),
    "adam-l2": ("adam_update", _call_adam, dict(ADAM_KW, weight_decay=0.1, decoupled=False)),
    "adamw": ("adam_update", _call_adam, dict(ADAM_KW, weight_decay=0.1, decoupled=True)),
    "rmsprop": ("rmsprop_update", _call_rmsprop, dict(RMS_KW, momentum=0.0, weight_decay=0.0)),
    "rmsprop-momentum": ("rmsprop_update", _call_rmsprop,
                         dict(RMS_KW, momentum=0.8, weight_decay=0.05)),
    "adagrad": ("adagrad_update", _call_adagrad, dict(lr=0.1, eps=1e-10, weight_decay=0.0)),
    "adagrad-wd": ("adagrad_update", _call_adagrad, dict(lr=0.1, eps=1e-10, weight_decay=0.1)),
}


@pytest.mark.parametrize("case", list(UPDATE_CASES))
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_numpy_overrides_equal_the_generic_updates(case, dtype, rtol):
    method, call, kwargs = UPDATE_CASES[case]
    cpu = get_backend("cpu")
    assert type(cpu).__dict__.get(method) is not None, "no NumPy override to compare"
    values, grads = host_problem(dtype, seed=9, steps=4)
    results = []
    for impl in (getattr(cpu, method), functools.partial(getattr(Backend, method), cpu)):
        param = values[0].copy()
        state = [np.full_like(param, 0.1), np.zeros_like(param)]
        for t, g in enumerate(grads[0], start=1):
            g_in = g.copy()
            call(impl, param, g_in, state, t, **kwargs)
            np.testing.assert_array_equal(g_in, g)  # the gradient is never written to
        assert param.dtype == dtype and all(s.dtype == dtype for s in state)
        results.append([param] + state)
    for fast, generic in zip(*results):
        np.testing.assert_allclose(fast, generic, rtol=rtol, atol=rtol * 1e-2)
    assert not np.allclose(results[0][0], values[0])
