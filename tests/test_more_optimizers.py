"""NAdam, RAdam, Adadelta and Rprop: against their published rules (tests/optim_reference.py)
over 25 steps with every option that changes the math, on every backend (CuPy under the CPU
emulation included); against torch.optim on identical host inputs in float64 and float32;
state dicts passed both ways with torch; and the argument checks. (test_optim.py,
test_optim_state.py, test_optim_options.py, test_audit_optim.py and test_cpu_update.py run
them among all the optimizers too.)"""
import copy

import numpy as np
import pytest

import tensornet as tn
from tensornet.nn import Parameter

from optim_reference import (host, host_problem, make_params, radam_rho, ref_adadelta,
                             ref_nadam, ref_radam, ref_rprop, run)
from torch_reference import (assert_params_match_torch, assert_state_matches_torch,
                             double_scalars, step_torch, torch_or_skip)

SHAPES = [(4, 3), (7,)]
STEPS, HALF = 25, 12
REFERENCES = {"NAdam": ref_nadam, "RAdam": ref_radam, "Adadelta": ref_adadelta,
              "Rprop": ref_rprop}
CASES = {  # name -> (optimizer, hyper-parameters)
    "nadam": ("NAdam", dict()),
    "nadam-l2-momentum-decay": ("NAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                              weight_decay=0.1, momentum_decay=0.05)),
    "nadam-no-momentum-decay": ("NAdam", dict(lr=0.01, momentum_decay=0.0)),
    "nadam-l2-maximize": ("NAdam", dict(lr=0.01, weight_decay=0.2, maximize=True)),
    "nadamw-maximize": ("NAdam", dict(lr=0.01, weight_decay=0.2, decoupled_weight_decay=True,
                                      maximize=True)),
    "radam": ("RAdam", dict(lr=0.01)),  # rho_t > 5 from step 6 on
    "radam-never-rectified": ("RAdam", dict(lr=0.01, betas=(0.9, 0.6))),  # rho_inf = 4
    "radam-l2-maximize": ("RAdam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                        weight_decay=0.1, maximize=True)),
    "radamw": ("RAdam", dict(lr=0.01, weight_decay=0.2, decoupled_weight_decay=True)),
    "adadelta": ("Adadelta", dict()),
    "adadelta-wd-maximize": ("Adadelta", dict(lr=0.5, rho=0.7, eps=1e-4, weight_decay=0.1,
                                              maximize=True)),
    "rprop": ("Rprop", dict()),
    "rprop-clamps-maximize": ("Rprop", dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(0.02, 0.08),
                                            maximize=True)),
}
# float64: rounding only; float32: 25 steps of float32 rounding, each moving p by about lr.
TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-5, atol=2e-6)}


def _problem(dtype, seed):
    return host_problem(dtype, seed, STEPS, SHAPES)


def _ours(device, name, values, **overrides):
    cls, kwargs = CASES[name]
    params = make_params(device, values)
    return params, getattr(tn.optim, cls)(params, **dict(kwargs, **overrides))


def _theirs(torch, name, values):
    cls, kwargs = CASES[name]
    params = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    return params, getattr(torch.optim, cls)(params, **kwargs)


_step_theirs = step_torch


def _assert_close(ours, theirs, dtype):
    assert_params_match_torch(ours, theirs, dtype, TOLERANCE[dtype])


# ---------------------------------------------------------------------- the published rules
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_follows_the_published_rule_over_many_steps(any_device, name, dtype):
    cls, kwargs = CASES[name]
    values, grads = _problem(dtype, seed=sorted(CASES).index(name))
    params, opt = _ours(any_device, name, values)
    run(opt, params, grads, range(STEPS))
    for param, v, seq in zip(params, values, grads):
        expected = REFERENCES[cls](v.astype(np.float64), [g.astype(np.float64) for g in seq],
                                   **kwargs)
        got = host(param.data)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])
        assert not np.allclose(got, v, atol=1e-3), "the parameter did not move"


def test_the_cases_reach_both_sides_of_each_switch():
    """RAdam's default betas cross rho_t = 5 within the run (at step 6) and (0.9, 0.6)
    never does; Rprop's sign flips zero the gradient and its step sizes meet both bounds."""
    assert [radam_rho(0.999, t)[1] > 5.0 for t in (5, 6)] == [False, True]
    assert radam_rho(0.6, 10 ** 6)[0] < 5.0
    values, grads = _problem(np.float64, seed=sorted(CASES).index("rprop-clamps-maximize"))
    params, opt = _ours("cpu", "rprop-clamps-maximize", values)
    flips = bounds = 0
    for t in range(STEPS):
        run(opt, params, grads, [t])
        state = opt.state[params[0]]
        flips += int(np.sum(state["prev"] == 0.0))
        bounds |= {0.02: 1, 0.08: 2}.get(float(np.min(state["step_size"])), 0)
        bounds |= {0.02: 1, 0.08: 2}.get(float(np.max(state["step_size"])), 0)
    assert flips > 10 and bounds == 3


def test_nadam_keeps_the_product_of_its_momentum_coefficients():
    values, grads = _problem(np.float64, seed=3)
    params, opt = _ours("cpu", "nadam-l2-momentum-decay", values)
    run(opt, params, grads, range(5))
    mus = [0.8 * (1.0 - 0.5 * 0.96 ** (t * 0.05)) for t in range(1, 6)]
    saved = opt.state_dict()["state"][0]
    assert type(saved["mu_product"]) is float and saved["step"] == 5
    assert saved["mu_product"] == pytest.approx(np.prod(mus), rel=1e-15)


def test_nadam_parameters_with_equal_steps_but_own_products_follow_their_own(device):
    """A group's parameters share one update only when their host state agrees: the same
    step count with another mu_product (edited, or loaded) is stepped with its own."""
    values, grads = _problem(np.float64, seed=4)
    params, opt = _ours(device, "nadam-l2-momentum-decay", values)
    alone = [_ours(device, "nadam-l2-momentum-decay", [v]) for v in values]
    run(opt, params, grads, range(3))
    for i, (single, single_opt) in enumerate(alone):
        run(single_opt, single, [grads[i]], range(3))
    opt.state[params[1]]["mu_product"] *= 0.5
    alone[1][1].state[alone[1][0][0]]["mu_product"] *= 0.5
    run(opt, params, grads, range(3, 6))
    for i, (single, single_opt) in enumerate(alone):
        run(single_opt, single, [grads[i]], range(3, 6))
        np.testing.assert_array_equal(host(params[i].data), host(single[0].data))
        assert opt.state[params[i]]["mu_product"] == \
            single_opt.state[single[0]]["mu_product"]


# ---------------------------------------------------------------------- against torch.optim
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_over_many_steps(device, name, dtype):
    torch = torch_or_skip()
    values, grads = _problem(dtype, seed=100 + sorted(CASES).index(name))
    ours, opt = _ours(device, name, values)
    theirs, reference = _theirs(torch, name, values)
    run(opt, ours, grads, range(STEPS))
    _step_theirs(torch, reference, theirs, grads, range(STEPS))
    _assert_close(ours, theirs, dtype)
    assert_state_matches_torch(opt, ours, reference, theirs, STEPS, TOLERANCE[dtype])


def test_rprop_carries_zero_nan_and_inf_gradients_as_torch(any_device):
    """torch.sign(NaN) is 0: a NaN gradient leaves the parameter and the step size as they
    were and becomes ``prev``; an infinite one steps by the step size."""
    torch = torch_or_skip()
    values, grads = _problem(np.float64, seed=7)
    for t, bad in [(3, np.nan), (4, np.inf), (5, -np.inf), (6, 0.0), (9, np.nan)]:
        grads[0][t][0, :2] = bad
        grads[1][t][3] = bad
    ours, opt = _ours(any_device, "rprop-clamps-maximize", values)
    theirs, reference = _theirs(torch, "rprop-clamps-maximize", values)
    run(opt, ours, grads, range(STEPS))
    _step_theirs(torch, reference, theirs, grads, range(STEPS))
    _assert_close(ours, theirs, np.float64)
    for p, q in zip(ours, theirs):
        for key in ("prev", "step_size"):
            np.testing.assert_array_equal(host(opt.state[p][key]),
                                          reference.state[q][key].numpy())


# ---------------------------------------------------------------------- state dicts
ROUND_TRIPS = ["nadam-l2-momentum-decay", "nadamw-maximize", "radam-l2-maximize", "radamw",
               "adadelta-wd-maximize", "rprop-clamps-maximize"]


def _torch_state(torch, state_dict):
    """tensornet's state dict as torch.optim holds one: tensors, the step a float."""
    return {"state": {k: {n: torch.tensor(float(v), dtype=torch.float64)
                          if isinstance(v, (int, float)) else torch.from_numpy(host(v))
                          for n, v in entry.items()}
                      for k, entry in state_dict["state"].items()},
            "param_groups": copy.deepcopy(state_dict["param_groups"])}


def _flipped_options(name):
    """The case's on/off options the other way round: a load must bring them back."""
    return {key: not value for key, value in CASES[name][1].items()
            if key in ("maximize", "decoupled_weight_decay")}


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_a_torch_state_dict_loads_and_continues_as_torch(device, name):
    torch = torch_or_skip()
    values, grads = _problem(np.float64, seed=200)
    theirs, reference = _theirs(torch, name, values)
    _step_theirs(torch, reference, theirs, grads, range(HALF))
    ours, opt = _ours(device, name, [q.detach().numpy().copy() for q in theirs], lr=123.0,
                      **_flipped_options(name))
    opt.load_state_dict(copy.deepcopy(reference.state_dict()))
    assert {k: opt.param_groups[0][k] for k in CASES[name][1]} == CASES[name][1]
    run(opt, ours, grads, range(HALF, STEPS))
    _step_theirs(torch, reference, theirs, grads, range(HALF, STEPS))
    _assert_close(ours, theirs, np.float64)


@pytest.mark.parametrize("as_tensors", [True, False])  # or the Python numbers tensornet saves
@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_torch_loads_a_tensornet_state_dict_and_continues(device, name, as_tensors):
    torch = torch_or_skip()
    values, grads = _problem(np.float64, seed=300)
    ours, opt = _ours(device, name, values)
    run(opt, ours, grads, range(HALF))
    cls, kwargs = CASES[name]
    theirs = [torch.nn.Parameter(torch.from_numpy(host(p.data))) for p in ours]
    reference = getattr(torch.optim, cls)(theirs, lr=123.0, **_flipped_options(name))
    saved = opt.state_dict()
    if as_tensors:
        saved = _torch_state(torch, saved)
    else:
        saved = {"state": {k: {n: torch.from_numpy(host(v)) if hasattr(v, "shape") else v
                               for n, v in entry.items()}
                           for k, entry in saved["state"].items()},
                 "param_groups": copy.deepcopy(saved["param_groups"])}
    with double_scalars():
        reference.load_state_dict(saved)
    assert {k: reference.param_groups[0][k] for k in kwargs} == kwargs
    run(opt, ours, grads, range(HALF, STEPS))
    _step_theirs(torch, reference, theirs, grads, range(HALF, STEPS))
    _assert_close(ours, theirs, np.float64)


def test_a_torch_nadam_state_from_float32_scalars_and_without_decoupling_loads():
    """torch's default keeps mu_product as a float32 tensor; a checkpoint from before
    torch had ``decoupled_weight_decay`` lacks it: it loads as off, as torch's setstate."""
    torch = torch_or_skip()
    values, grads = _problem(np.float64, seed=400)
    theirs, reference = _theirs(torch, "nadam-l2-momentum-decay", values)
    for t in range(3):
        for q, seq in zip(theirs, grads):
            q.grad = torch.from_numpy(seq[t].copy())
        reference.step()
    saved = copy.deepcopy(reference.state_dict())
    assert saved["state"][0]["mu_product"].dtype == torch.float32
    del saved["param_groups"][0]["decoupled_weight_decay"]
    ours, opt = _ours("cpu", "nadam-l2-momentum-decay", values, decoupled_weight_decay=True)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["decoupled_weight_decay"] is False
    assert opt.state[ours[0]]["mu_product"] == float(saved["state"][0]["mu_product"])


@pytest.mark.parametrize("value, match", [(float("nan"), "finite number"),
                                          ([0.5, 0.5], "finite number"), (None, "finite number")])
def test_a_bad_mu_product_is_refused(value, match):
    values, grads = _problem(np.float32, seed=5)
    params, opt = _ours("cpu", "nadam", values)
    run(opt, params, grads, range(2))
    saved = copy.deepcopy(opt.state_dict())
    saved["state"][1]["mu_product"] = value
    fresh = tn.optim.NAdam([Parameter(host(p.data)) for p in params])
    with pytest.raises(ValueError, match=f"mu_product.*{match}.*left unchanged"):
        fresh.load_state_dict(saved)
    assert not fresh.state


# ---------------------------------------------------------------------- arguments
BAD_ARGUMENTS = [  # (optimizer, keyword arguments, message; torch refuses them too)
    ("NAdam", dict(lr=-1e-3), "NAdam: lr must be >= 0, got -0.001"),
    ("NAdam", dict(betas=(1.0, 0.9)), r"NAdam: betas\[0\] must be in \[0.0, 1.0\)"),
    ("NAdam", dict(betas=(0.9, -0.1)), r"NAdam: betas\[1\] must be in \[0.0, 1.0\)"),
    ("NAdam", dict(eps=-1.0), "NAdam: eps must be >= 0"),
    ("NAdam", dict(weight_decay=-0.1), "NAdam: weight_decay must be >= 0"),
    ("NAdam", dict(momentum_decay=-4e-3), "NAdam: momentum_decay must be >= 0, got -0.004"),
    ("RAdam", dict(lr=-1.0), "RAdam: lr must be >= 0"),
    ("RAdam", dict(betas=(0.9, 1.0)), r"RAdam: betas\[1\] must be in \[0.0, 1.0\)"),
    ("RAdam", dict(eps=-1e-8), "RAdam: eps must be >= 0"),
    ("RAdam", dict(weight_decay=-1.0), "RAdam: weight_decay must be >= 0"),
    ("Adadelta", dict(lr=-1.0), "Adadelta: lr must be >= 0"),
    ("Adadelta", dict(rho=1.5), r"Adadelta: rho must be in \[0.0, 1.0\], got 1.5"),
    ("Adadelta", dict(rho=-0.1), r"Adadelta: rho must be in \[0.0, 1.0\]"),
    ("Adadelta", dict(eps=-1e-6), "Adadelta: eps must be >= 0"),
    ("Adadelta", dict(weight_decay=-0.5), "Adadelta: weight_decay must be >= 0"),
    ("Rprop", dict(lr=-0.01), "Rprop: lr must be >= 0"),
    ("Rprop", dict(etas=(1.0, 1.2)), r"Rprop: etas must be a pair \(etaminus, etaplus\) with "
                                     r"0 < etaminus < 1 < etaplus, got \(1.0, 1.2\)"),
    ("Rprop", dict(etas=(0.5, 1.0)), "Rprop: etas must be a pair"),
    ("Rprop", dict(etas=(0.0, 1.2)), "Rprop: etas must be a pair"),
]
OURS_ONLY = [  # torch accepts these (and fails later, or steps oddly)
    ("NAdam", dict(decoupled_weight_decay="False"),
     "NAdam: decoupled_weight_decay must be True or False, got 'False'"),
    ("RAdam", dict(decoupled_weight_decay=1), "RAdam: decoupled_weight_decay must be True"),
    ("NAdam", dict(momentum_decay=float("nan")), "NAdam: momentum_decay must be a finite"),
    ("Rprop", dict(etas=1.2), r"Rprop: etas must be a pair .*, got 1.2"),
    ("Rprop", dict(step_sizes=(1.0, 0.5)), r"Rprop: step_sizes must be a pair \(min, max\) "
                                           r"with 0 <= min <= max, got \(1.0, 0.5\)"),
    ("Rprop", dict(step_sizes=(-1e-6, 50)), "Rprop: step_sizes must be a pair"),
    ("Rprop", dict(step_sizes=(1e-6, float("inf"))),
     r"Rprop: step_sizes\[1\] must be a finite real number, got inf"),
]


@pytest.mark.parametrize("cls, kwargs, match", BAD_ARGUMENTS + OURS_ONLY)
def test_bad_arguments_are_refused_naming_the_optimizer(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(tn.optim, cls)([Parameter(np.zeros(3, np.float32))], **kwargs)
    if (cls, kwargs, match) in BAD_ARGUMENTS:
        torch = torch_or_skip()
        with pytest.raises(ValueError):
            getattr(torch.optim, cls)([torch.nn.Parameter(torch.zeros(3))], **kwargs)


def test_a_bad_value_set_between_steps_is_refused_before_any_update():
    params = [Parameter(np.ones(3, np.float32)), Parameter(np.ones(2, np.float32))]
    opt = tn.optim.Rprop([{"params": params[:1]}, {"params": params[1:]}])
    opt.param_groups[1]["etas"] = (0.5, 0.9)
    for p in params:
        p.grad = np.ones(p.shape, np.float32)
    with pytest.raises(ValueError, match="Rprop: etas must be a pair"):
        opt.step()
    assert all(np.array_equal(p.data, np.ones(p.shape, np.float32)) for p in params)
    assert not opt.state


def test_every_rule_has_a_fused_kernel_and_is_graph_safe():
    names = {rule.name for rule in tn.optim.fused_updates()}
    for rule in ("nadam", "radam", "adadelta", "rprop"):
        assert {rule, rule + "_maximize"} <= names
    assert {"nadam_l2", "nadam_decoupled", "radam_l2", "radam_decoupled",
            "adadelta_l2"} <= names
    assert "rprop_l2" not in names and "rprop_decoupled" not in names
    for cls, kwargs in CASES.values():
        opt = getattr(tn.optim, cls)([Parameter(np.zeros(3, np.float32))], **kwargs)
        assert opt.graph_unsafe_reason() is None
