"""Optimizer state dicts: round trips through host copies, and refusing bad states."""
import copy

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend

from optim_reference import CONFIGS, STEPS, host, host_problem, make_params, run


# ---------------------------------------------------------------------- state dicts
def _to_host_checkpoint(state_dict):
    """What a checkpoint file gives back: NumPy arrays and string keys."""
    return {"state": {str(k): {n: host(v) if hasattr(v, "shape") else v for n, v in s.items()}
                      for k, s in state_dict["state"].items()},
            "param_groups": copy.deepcopy(state_dict["param_groups"])}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_round_trip_continues_identically(device, name):
    cls, _, kwargs = CONFIGS[name]
    values, grads = host_problem(np.float32, seed=10, steps=6)
    params_a = make_params(device, values)
    opt_a = cls(params_a, **kwargs)
    run(opt_a, params_a, grads, range(3))
    saved = _to_host_checkpoint(opt_a.state_dict())
    frozen_copy = copy.deepcopy(saved)

    params_b = make_params(device, [host(p.data) for p in params_a])
    opt_b = cls(params_b, **dict(kwargs, lr=123.0))
    opt_b.load_state_dict(saved)
    assert opt_b.param_groups[0]["lr"] == kwargs["lr"]
    backend = get_backend(device)
    for p in params_b:
        for entry in opt_b.state.get(p, {}).values():
            if hasattr(entry, "shape"):
                assert backend.owns(entry) and entry.dtype == p.data.dtype
    run(opt_a, params_a, grads, range(3, 6))
    run(opt_b, params_b, grads, range(3, 6))
    for a, b in zip(params_a, params_b):
        np.testing.assert_array_equal(host(a.data), host(b.data))
    # loading copied the arrays: stepping B did not write into the checkpoint
    for key, entry in saved["state"].items():
        for n, v in entry.items():
            np.testing.assert_array_equal(v, frozen_copy["state"][key][n])


def test_state_dict_loads_device_arrays_directly(device):
    values, grads = host_problem(np.float32, seed=11)
    params_a, params_b = make_params(device, values), make_params(device, values)
    opt_a, opt_b = tn.optim.Adam(params_a, lr=0.1), tn.optim.Adam(params_b, lr=0.1)
    run(opt_a, params_a, grads, range(2))
    run(opt_b, params_b, grads, range(2))
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.state[params_b[0]]["exp_avg"] is not opt_a.state[params_a[0]]["exp_avg"]
    run(opt_a, params_a, grads, range(2, STEPS))
    run(opt_b, params_b, grads, range(2, STEPS))
    np.testing.assert_array_equal(host(params_a[0].data), host(params_b[0].data))


def _break(edit):
    def apply(sd):
        edit(sd)
        return sd
    return apply


BAD_STATES = {
    "not-a-dict": (lambda sd: [sd], "expected a dict"),
    "no-groups": (_break(lambda sd: sd["param_groups"].clear()), "0 parameter groups"),
    "param-count": (_break(lambda sd: sd["param_groups"][0]["params"].pop()),
                    r"1 parameters in the state but 2 in this optimizer\)"),
    "shape": (_break(lambda sd: sd["state"]["0"].update(exp_avg=np.zeros((2, 2)))),
              r"shape \(2, 2\)"),
    "unknown-entry": (_break(lambda sd: sd["state"]["0"].update(foo=1.0)), "foo"),
    "missing-entry": (_break(lambda sd: sd["state"]["1"].pop("exp_avg_sq")), "required"),
    "sgd-state": (_break(lambda sd: sd["state"].update(
        {"0": {"momentum_buffer": np.zeros((3, 4))}})), "momentum_buffer"),
    "unknown-index": (_break(lambda sd: sd["state"].update({"7": sd["state"]["0"]})),
                      "unknown parameter index '7'"),
    "negative-lr": (_break(lambda sd: sd["param_groups"][0].update(lr=-1.0)), "lr must be"),
    "missing-hyper": (_break(lambda sd: sd["param_groups"][0].pop("betas")), "betas"),
    "negative-step": (_break(lambda sd: sd["state"]["0"].update(step=-3)), "count >= 0"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_bad_state_dict_is_a_value_error_and_changes_nothing(device, case):
    edit, match = BAD_STATES[case]
    values, grads = host_problem(np.float32, seed=12)
    params = make_params(device, values)
    opt = tn.optim.Adam(params, lr=0.01)
    run(opt, params, grads, range(2))
    good = _to_host_checkpoint(opt.state_dict())
    before_groups = copy.deepcopy([{k: v for k, v in g.items() if k != "params"}
                                   for g in opt.param_groups])
    before_arrays = {p: dict(s) for p, s in opt.state.items()}
    with pytest.raises(ValueError, match=match) as info:
        opt.load_state_dict(edit(copy.deepcopy(good)))
    assert "left unchanged" in str(info.value)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] \
        == before_groups
    assert opt.param_groups[0]["params"] == params
    for p, entries in before_arrays.items():
        for n, v in entries.items():
            assert opt.state[p][n] is v
    np.testing.assert_array_equal(host(opt.state[params[0]]["exp_avg"]),
                                  good["state"]["0"]["exp_avg"])
