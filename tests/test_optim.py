"""Optimizers against their published update rules (tests/optim_reference.py), their
behaviour (frozen parameters, dtypes, devices), argument checks, and the NumPy overrides."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import DeviceError, get_backend
from tensornet.nn import Parameter

from optim_reference import (CONFIGS, SHAPES, STEPS, host, host_problem, make_params,
                             ref_sgd, run)


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
    arrays = [p.data for p in params]  # views of the optimizer's flat buffers from here on
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


# ---------------------------------------------------------------------- flat buffers, fused updates
def _count_fused_updates(monkeypatch, backend):
    calls = []
    original = type(backend).fused_update

    def counting(self, update, param, grad, states, scalars):
        calls.append((update.name, tuple(param.shape)))
        return original(self, update, param, grad, states, scalars)
    monkeypatch.setattr(type(backend), "fused_update", counting)
    return calls


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_fused_update_per_group_per_step(device, name, monkeypatch):
    """Every parameter of a group is updated by one fused call over its flat buffer."""
    cls, ref, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float64, seed=11)
    params = make_params(device, values)
    opt = cls([{"params": params[:1]}, {"params": params[1:]}], **kwargs)
    calls = _count_fused_updates(monkeypatch, get_backend(device))
    run(opt, params, grads, range(STEPS))
    assert len(calls) == 2 * STEPS
    sizes = [v.size for v in values]
    assert {shape for _, shape in calls} == {(sizes[0],), (sizes[1],)}
    for param, v, seq in zip(params, values, grads):
        np.testing.assert_allclose(host(param.data), ref(v, seq, **kwargs), rtol=1e-12,
                                   atol=1e-14)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameters_with_different_step_counts_follow_their_own_rule(device, name):
    """A parameter without a gradient at some steps keeps its own step count: the group
    falls back to one update per parameter, each by the published rule."""
    cls, ref, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float64, seed=12)
    params = make_params(device, values)
    opt = cls(params, **kwargs)
    backend = get_backend(device)
    late = [t for t in range(STEPS) if t % 2 == 0]
    for t in range(STEPS):
        params[0].grad = backend.asarray(grads[0][t].copy())
        params[1].grad = backend.asarray(grads[1][t].copy()) if t in late else None
        opt.step()
    np.testing.assert_allclose(host(params[0].data), ref(values[0], grads[0], **kwargs),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(host(params[1].data),
                               ref(values[1], [grads[1][t] for t in late], **kwargs),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_update_never_writes_the_gradient(device, name):
    cls, _, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float32, seed=13, steps=2)
    params = make_params(device, values)
    opt = cls(params, **kwargs)
    run(opt, params, grads, range(2))
    for param, seq in zip(params, grads):
        np.testing.assert_array_equal(host(param.grad), seq[1])


def test_parameters_stay_addressable_and_replacements_are_followed(device):
    """p.data / p.grad / state are views of the flat buffers; replacing any of them from
    outside is picked up at the next step."""
    values, grads = host_problem(np.float64, seed=14)
    params = make_params(device, values)
    opt = tn.optim.Adam(params, lr=0.05)
    backend = get_backend(device)
    run(opt, params, grads, range(2))
    held = params[0].data
    run(opt, params, grads, [2])
    assert params[0].data is held  # updated in place from one step to the next
    params[1].data = backend.asarray(values[1].copy())  # a replaced value ...
    opt.state[params[0]]["exp_avg"] = backend.asarray(np.zeros(SHAPES[0]))  # ... and state
    run(opt, params, grads, [3])
    expect0 = host_problem(np.float64, seed=14)[0][0]
    ref = tn.optim.Adam(make_params(device, [expect0]), lr=0.05)
    ref_params = ref.param_groups[0]["params"]
    run(ref, ref_params, [grads[0]], range(3))
    ref.state[ref_params[0]]["exp_avg"][...] = 0.0
    run(ref, ref_params, [grads[0]], [3])
    np.testing.assert_allclose(host(params[0].data), host(ref_params[0].data), rtol=1e-12)
    fresh = tn.optim.Adam(make_params(device, values[1:]), lr=0.05)
    fresh_params = fresh.param_groups[0]["params"]
    run(fresh, fresh_params, [grads[1]], range(3))  # the same 3 steps of state ...
    fresh_params[0].data[...] = backend.asarray(values[1].copy())  # ... from the reset value
    run(fresh, fresh_params, [grads[1]], [3])
    np.testing.assert_allclose(host(params[1].data), host(fresh_params[0].data), rtol=1e-12)


def test_fused_updates_lists_every_rule_with_a_kernel_body():
    rules = tn.optim.fused_updates()
    names = {rule.name for rule in rules}
    assert {"sgd", "sgd_l2", "sgd_momentum", "adam", "adam_l2", "adam_decoupled", "rmsprop",
            "adagrad_l2"} <= names
    for rule in rules:
        assert rule.body and set(rule.scalars) and callable(rule.apply), rule.name


class _AlwaysFullAdam(tn.optim.Adam):
    """Adam without the steady-state shortcut: every step does the full bookkeeping."""

    def _steady_update(self, *args):
        return False


@pytest.mark.parametrize("edit", ["state_array", "step_count", "state_dict", "lr"])
def test_edits_between_steps_are_followed_by_the_steady_state_shortcut(device, edit):
    """From the second step on a pack's update skips the per-parameter bookkeeping while
    nothing changed; any edit of the states between steps must give what the full path
    gives."""
    values, grads = host_problem(np.float64, seed=21, steps=6)
    backend = get_backend(device)
    results = []
    for cls in (tn.optim.Adam, _AlwaysFullAdam):
        params = make_params(device, values)
        opt = cls(params, lr=0.05)
        run(opt, params, grads, range(3))
        if edit == "state_array":
            opt.state[params[0]]["exp_avg"] = backend.asarray(np.full(SHAPES[0], 0.25))
        elif edit == "step_count":  # mixed step counts: one update per parameter
            opt.state[params[1]]["step"] = 1
        elif edit == "state_dict":
            opt.state[params[0]] = {k: (backend.asarray(host(v) * 0.5) if k != "step" else v)
                                    for k, v in opt.state[params[0]].items()}
        else:
            opt.param_groups[0]["lr"] = 0.01
        run(opt, params, grads, range(3, 6))
        results.append(([host(p.data) for p in params],
                        [{k: host(v) if k != "step" else v for k, v in opt.state[p].items()}
                         for p in params]))
    (fast, fast_state), (full, full_state) = results
    for a, b in zip(fast, full):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast_state, full_state):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
