"""PyTorch's ``maximize``, ``amsgrad`` (Adam, AdamW), ``centered`` (RMSprop) and
``decoupled_weight_decay`` (NAdam, RAdam): each against
torch.optim over 25 steps on identical host-generated inputs (float64 and float32, two
parameter groups, weight decay off in one and on in the other) on every backend, CuPy under
the CPU emulation included; a state-dict round trip mid-run against an uninterrupted run;
state dicts passed from torch to tensornet and back; options switched between steps; and
the checks that refuse a bad value or a state that does not fit the options."""
import copy

import numpy as np
import pytest

import tensornet as tn
from tensornet.nn import Parameter

from optim_reference import host, make_params, run
from torch_reference import (assert_params_match_torch, assert_state_matches_torch,
                             double_scalars, step_torch, torch_or_skip)

SHAPES = [(4, 3), (3,), (5,)]  # group 0 holds the first two, group 1 the last
STEPS, HALF = 25, 12
CASES = {  # name -> (optimizer, hyper-parameters of both groups)
    "sgd-maximize": ("SGD", dict(lr=0.05, maximize=True)),
    "sgd-momentum-dampening-maximize": ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3,
                                                    maximize=True)),
    "sgd-nesterov-maximize": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True,
                                          maximize=True)),
    "adam-maximize": ("Adam", dict(lr=0.01, maximize=True)),
    "adam-amsgrad": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), amsgrad=True)),
    "adam-amsgrad-maximize": ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    "adamw-maximize": ("AdamW", dict(lr=0.01, maximize=True)),
    "adamw-amsgrad": ("AdamW", dict(lr=0.01, betas=(0.85, 0.98), amsgrad=True)),
    "rmsprop-maximize": ("RMSprop", dict(lr=0.01, momentum=0.5, maximize=True)),
    "rmsprop-centered": ("RMSprop", dict(lr=0.01, centered=True)),
    "rmsprop-centered-momentum": ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.7,
                                                  centered=True)),
    "rmsprop-centered-maximize": ("RMSprop", dict(lr=0.01, eps=1e-4, centered=True,
                                                  maximize=True)),
    "adagrad-maximize": ("Adagrad", dict(lr=0.1, lr_decay=0.1, maximize=True)),
    "adamax-maximize": ("Adamax", dict(lr=0.01, maximize=True)),
    "nadam-maximize": ("NAdam", dict(lr=0.01, momentum_decay=0.01, maximize=True)),
    "nadam-decoupled": ("NAdam", dict(lr=0.01, decoupled_weight_decay=True)),
    "nadam-decoupled-maximize": ("NAdam", dict(lr=0.01, decoupled_weight_decay=True,
                                               maximize=True)),
    "radam-maximize": ("RAdam", dict(lr=0.01, maximize=True)),
    "radam-decoupled-maximize": ("RAdam", dict(lr=0.01, betas=(0.8, 0.99),
                                               decoupled_weight_decay=True, maximize=True)),
    "adadelta-maximize": ("Adadelta", dict(lr=0.5, maximize=True)),
    # Rprop has no weight decay: group 1's weight_decay is ignored, by torch and tensornet
    "rprop-maximize": ("Rprop", dict(lr=0.01, etas=(0.4, 1.3), maximize=True)),
}
OPTIONS = ("maximize", "amsgrad", "centered", "decoupled_weight_decay")
# float64: rounding only (PyTorch's lerp and addcdiv order their operations differently);
# float32: ~25 steps of float32 rounding in both runs, each step moving p by about lr.
TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _problem(dtype, seed):
    """Initial values and STEPS gradients per parameter, made on the host in float64."""
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for _ in range(STEPS)] for s in SHAPES]
    return values, grads


def _groups(params, kwargs):
    """Group 0 without weight decay, group 1 with it (and its own lr)."""
    return [dict(kwargs, params=params[:2], weight_decay=0.0),
            dict(kwargs, params=params[2:], weight_decay=0.1, lr=kwargs["lr"] * 0.5)]


def _ours(device, name, values, **overrides):
    cls, kwargs = CASES[name]
    params = make_params(device, values)
    kwargs = dict(kwargs, **overrides)
    return params, getattr(tn.optim, cls)(_groups(params, kwargs), **kwargs)


def _theirs(torch, name, values):
    cls, kwargs = CASES[name]
    params = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    return params, getattr(torch.optim, cls)(_groups(params, kwargs), **kwargs)


_step_theirs = step_torch


def _assert_close(ours, theirs, dtype):
    assert_params_match_torch(ours, theirs, dtype, TOLERANCE[dtype])


def _on_host(value):
    """A state entry as a checkpoint file holds it: arrays on the host, counts as ints
    (and NAdam's mu_product as a float)."""
    return host(value) if hasattr(value, "shape") else value


def _torch_state(torch, state_dict):
    """tensornet's state dict as torch's optimizers hold theirs (tensors, a float step)."""
    return {"state": {k: {n: torch.tensor(float(v), dtype=torch.float64)
                          if isinstance(v, (int, float))
                          else torch.from_numpy(host(v)) for n, v in entry.items()}
                      for k, entry in state_dict["state"].items()},
            "param_groups": copy.deepcopy(state_dict["param_groups"])}


# ---------------------------------------------------------------------- against torch.optim
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_option_matches_torch_over_many_steps(any_device, name, dtype):
    torch = torch_or_skip()
    values, grads = _problem(dtype, seed=sorted(CASES).index(name))
    ours, opt = _ours(any_device, name, values)
    theirs, reference = _theirs(torch, name, values)
    run(opt, ours, grads, range(STEPS))
    _step_theirs(torch, reference, theirs, grads, range(STEPS))
    _assert_close(ours, theirs, dtype)
    assert_state_matches_torch(opt, ours, reference, theirs, STEPS, TOLERANCE[dtype])


def test_an_option_switched_between_steps_takes_effect_as_in_torch(device):
    """Groups are edited between steps (as schedulers edit lr): the steady-state shortcut
    and the flat buffers follow maximize switched on, amsgrad and centered off (torch
    cannot switch those two on mid-run: it makes their state only at a first step)."""
    torch = torch_or_skip()
    for name, switch in [("adam-maximize", dict(maximize=True)),
                         ("adamw-amsgrad", dict(amsgrad=False)),
                         ("rmsprop-centered", dict(centered=False))]:
        values, grads = _problem(np.float64, seed=7)
        off = {key: not value for key, value in switch.items()}
        ours, opt = _ours(device, name, values, **off)
        theirs, reference = _theirs(torch, name, values)
        for group in reference.param_groups:
            group.update(off)
        run(opt, ours, grads, range(HALF))
        _step_theirs(torch, reference, theirs, grads, range(HALF))
        for group in opt.param_groups + reference.param_groups:
            group.update(switch)
        run(opt, ours, grads, range(HALF, STEPS))
        _step_theirs(torch, reference, theirs, grads, range(HALF, STEPS))
        _assert_close(ours, theirs, np.float64)


def test_amsgrad_switched_on_mid_run_starts_its_maximum_there(device):
    """Where torch fails (KeyError: max_exp_avg_sq), tensornet starts v_max at 0 at the
    switch, so the first step with amsgrad uses v itself."""
    values, grads = _problem(np.float64, seed=8)
    ours, opt = _ours(device, "adam-amsgrad", values, amsgrad=False)
    plain, opt_plain = _ours(device, "adam-amsgrad", values, amsgrad=False)
    run(opt, ours, grads, range(HALF))
    run(opt_plain, plain, grads, range(HALF + 1))
    for group in opt.param_groups:
        group["amsgrad"] = True
    run(opt, ours, grads, [HALF])
    for p, q in zip(ours, plain):
        np.testing.assert_array_equal(host(p.data), host(q.data))
        np.testing.assert_array_equal(host(opt.state[p]["max_exp_avg_sq"]),
                                      host(opt.state[p]["exp_avg_sq"]))
    run(opt, ours, grads, range(HALF + 1, STEPS))
    run(opt_plain, plain, grads, range(HALF + 1, STEPS))
    assert any(not np.array_equal(host(p.data), host(q.data)) for p, q in zip(ours, plain))


# ---------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("name", list(CASES))
def test_state_dict_round_trip_mid_run_equals_an_uninterrupted_run(any_device, name):
    values, grads = _problem(np.float32, seed=20)
    straight, opt_straight = _ours(any_device, name, values)
    run(opt_straight, straight, grads, range(STEPS))

    first, opt_first = _ours(any_device, name, values)
    run(opt_first, first, grads, range(HALF))
    saved = opt_first.state_dict()
    checkpoint = {"state": {str(k): {n: _on_host(v) for n, v in entry.items()}
                            for k, entry in saved["state"].items()},
                  "param_groups": copy.deepcopy(saved["param_groups"])}
    # the resumed optimizer is built with every option off: they come from the checkpoint
    resumed, opt_resumed = _ours(any_device, name, [host(p.data) for p in first], lr=123.0,
                                 **{key: False for key in OPTIONS if key in CASES[name][1]})
    opt_resumed.load_state_dict(checkpoint)
    for group, want in zip(opt_resumed.param_groups, opt_first.param_groups):
        assert {k: v for k, v in group.items() if k != "params"} == \
            {k: v for k, v in want.items() if k != "params"}
    run(opt_resumed, resumed, grads, range(HALF, STEPS))
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(host(b.data), host(a.data))
        assert sorted(opt_resumed.state[b]) == sorted(opt_straight.state[a])
        for key, value in opt_straight.state[a].items():
            np.testing.assert_array_equal(_on_host(opt_resumed.state[b][key]), _on_host(value))


@pytest.mark.parametrize("name", list(CASES))
def test_a_torch_state_dict_with_the_option_loads_and_continues_as_torch(device, name):
    torch = torch_or_skip()
    values, grads = _problem(np.float64, seed=30)
    theirs, reference = _theirs(torch, name, values)
    _step_theirs(torch, reference, theirs, grads, range(HALF))
    options = {key: False for key in OPTIONS if key in CASES[name][1]}
    ours, opt = _ours(device, name, [q.detach().numpy().copy() for q in theirs], **options)
    opt.load_state_dict(copy.deepcopy(reference.state_dict()))
    for key in options:
        assert all(group[key] is CASES[name][1][key] for group in opt.param_groups)
    run(opt, ours, grads, range(HALF, STEPS))
    _step_theirs(torch, reference, theirs, grads, range(HALF, STEPS))
    _assert_close(ours, theirs, np.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_torch_loads_a_tensornet_state_dict_with_the_option_and_continues(device, name):
    torch = torch_or_skip()
    values, grads = _problem(np.float64, seed=40)
    ours, opt = _ours(device, name, values)
    run(opt, ours, grads, range(HALF))
    cls, kwargs = CASES[name]
    theirs = [torch.nn.Parameter(torch.from_numpy(host(p.data))) for p in ours]
    plain = {k: v for k, v in kwargs.items() if k not in OPTIONS}  # options off here
    reference = getattr(torch.optim, cls)(_groups(theirs, plain), **plain)
    with double_scalars():
        reference.load_state_dict(_torch_state(torch, opt.state_dict()))
    for key in set(OPTIONS) & set(kwargs):
        assert all(group[key] is kwargs[key] for group in reference.param_groups)
    run(opt, ours, grads, range(HALF, STEPS))
    _step_theirs(torch, reference, theirs, grads, range(HALF, STEPS))
    _assert_close(ours, theirs, np.float64)


def test_a_checkpoint_from_before_the_options_loads_with_them_off():
    values, grads = _problem(np.float32, seed=50)
    for cls, options in [("Adam", ("amsgrad", "maximize")), ("RMSprop", ("centered",
                                                                          "maximize"))]:
        params = [Parameter(v.copy()) for v in values]
        opt = getattr(tn.optim, cls)(params, lr=0.01)
        run(opt, params, grads, range(3))
        saved = copy.deepcopy(opt.state_dict())
        for group in saved["param_groups"]:
            for key in options:
                del group[key]  # what tensornet saved before it had the options
        fresh = getattr(tn.optim, cls)([Parameter(host(p.data)) for p in params], lr=0.01)
        fresh.load_state_dict(saved)
        assert all(fresh.param_groups[0][key] is False for key in options)
        run(fresh, fresh.param_groups[0]["params"], grads, range(3, 5))
        run(opt, params, grads, range(3, 5))
        for a, b in zip(params, fresh.param_groups[0]["params"]):
            np.testing.assert_array_equal(host(a.data), host(b.data))


@pytest.mark.parametrize("cls, option, entry", [("Adam", "amsgrad", "max_exp_avg_sq"),
                                                ("AdamW", "amsgrad", "max_exp_avg_sq"),
                                                ("RMSprop", "centered", "grad_avg")])
def test_a_state_without_the_options_entry_is_refused(cls, option, entry):
    values, grads = _problem(np.float32, seed=60)
    params = [Parameter(v.copy()) for v in values]
    opt = getattr(tn.optim, cls)(params, lr=0.01, **{option: True})
    run(opt, params, grads, range(2))
    saved = copy.deepcopy(opt.state_dict())
    del saved["state"][1][entry]
    fresh = getattr(tn.optim, cls)([Parameter(host(p.data)) for p in params], lr=0.01)
    with pytest.raises(ValueError, match=f"required: .*'{entry}'.*left unchanged"):
        fresh.load_state_dict(saved)
    assert not fresh.state and fresh.param_groups[0][option] is False


# ---------------------------------------------------------------------- arguments
@pytest.mark.parametrize("cls, option", [(cls, option) for cls in
                                         ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad",
                                          "Adamax", "NAdam", "RAdam", "Adadelta", "Rprop")
                                         for option in ("maximize",)]
                         + [("Adam", "amsgrad"), ("AdamW", "amsgrad"), ("RMSprop", "centered"),
                            ("NAdam", "decoupled_weight_decay"),
                            ("RAdam", "decoupled_weight_decay")])
def test_options_take_only_true_or_false(cls, option):
    params = [Parameter(np.zeros(3, np.float32))]
    opt = getattr(tn.optim, cls)(params, lr=0.1, **{option: np.bool_(True)})
    assert opt.param_groups[0][option] is True
    with pytest.raises(ValueError, match=f"{cls}: {option} must be True or False, got 'False'"):
        getattr(tn.optim, cls)(params, lr=0.1, **{option: "False"})
    opt.param_groups[0][option] = 1  # edited between steps: checked at the next step
    params[0].grad = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=f"{option} must be True or False, got 1"):
        opt.step()
    np.testing.assert_array_equal(params[0].data, np.zeros(3, np.float32))


def test_positional_order_is_torchs():
    p = [Parameter(np.zeros(3, np.float32))]
    assert tn.optim.Adam(p, 0.1, (0.9, 0.99), 1e-8, 0.0, True).defaults["amsgrad"] is True
    assert tn.optim.AdamW(p, 0.1, (0.9, 0.99), 1e-8, 0.0, True).defaults["amsgrad"] is True
    assert tn.optim.RMSprop(p, 0.1, 0.9, 1e-8, 0.0, 0.5, True).defaults["centered"] is True
    assert tn.optim.NAdam(p, 0.1, (0.9, 0.99), 1e-8, 0.0, 0.01, True).defaults[
        "decoupled_weight_decay"] is True
    assert tn.optim.RAdam(p, 0.1, (0.9, 0.99), 1e-8, 0.0, True).defaults[
        "decoupled_weight_decay"] is True
    assert tn.optim.Adadelta(p, 0.5, 0.8, 1e-5, 0.1).defaults["rho"] == 0.8
    assert tn.optim.Rprop(p, 0.1, (0.4, 1.3), (0.0, 1.0)).defaults["step_sizes"] == (0.0, 1.0)
    with pytest.raises(TypeError):  # keyword-only, as in torch.optim.Adam
        tn.optim.Adam(p, 0.1, (0.9, 0.99), 1e-8, 0.0, False, True)
    with pytest.raises(TypeError):  # keyword-only, as in torch.optim.RAdam
        tn.optim.RAdam(p, 0.1, (0.9, 0.99), 1e-8, 0.0, False, True)


def test_every_option_has_a_fused_kernel_and_is_graph_safe():
    rules = {rule.name for rule in tn.optim.fused_updates()}
    assert {"adam_amsgrad", "adam_amsgrad_decoupled_maximize", "rmsprop_centered_momentum_l2",
            "sgd_momentum_l2_maximize", "adamax_maximize", "nadam_l2_maximize",
            "nadam_decoupled_maximize", "radam_l2_maximize", "radam_decoupled_maximize",
            "adadelta_l2_maximize", "rprop_maximize"} <= rules
    for cls, kwargs in CASES.values():
        params = [Parameter(np.zeros(3, np.float32))]
        decay = {} if cls == "Rprop" else dict(weight_decay=0.1)  # Rprop has none
        opt = getattr(tn.optim, cls)(params, **dict(kwargs, **decay))
        assert opt.graph_unsafe_reason() is None
