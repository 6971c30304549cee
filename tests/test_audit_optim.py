"""Optimizers against torch.optim in float64 over many steps, and the places where an audit
found tensornet disagreeing with PyTorch: state-dict entries, state dicts carrying options
tensornet does not implement, and ReduceLROnPlateau with a parameter group added later."""
import copy

import numpy as np
import pytest

import tensornet as tn
from tensornet.nn import Parameter

from torch_reference import double_scalars, torch_or_skip

SHAPES = [(3, 4), (5,), (2,)]
STEPS = 50


def _problem(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for _ in range(steps)] for s in SHAPES]
    return values, grads


def _twins(torch, name, kwargs, values):
    ours = [Parameter(v.copy()) for v in values]
    theirs = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    return (ours, getattr(tn.optim, name)(ours, **kwargs),
            theirs, getattr(torch.optim, name)(theirs, **kwargs))


def _step_both(torch, ours, opt, theirs, reference, grads, steps, skip=lambda i, t: False):
    for t in steps:
        for i, (p, q, seq) in enumerate(zip(ours, theirs, grads)):
            if skip(i, t):
                p.grad = q.grad = None
            else:
                p.grad, q.grad = seq[t].copy(), torch.from_numpy(seq[t].copy())
        opt.step()
        with double_scalars():
            reference.step()


def _assert_same(ours, theirs):
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(p.data), q.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)


CONFIGS = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd-momentum-dampening-wd": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3,
                                              weight_decay=0.01)),
    "sgd-nesterov-wd": ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    "adam-l2": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": ("AdamW", dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.2)),
    "rmsprop": ("RMSprop", dict(lr=0.01)),
    "rmsprop-momentum-wd": ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.7, weight_decay=0.05,
                                            eps=1e-3)),
    "adagrad": ("Adagrad", dict(lr=0.1, lr_decay=0.2, weight_decay=0.05,
                                initial_accumulator_value=0.5, eps=1e-6)),
    "adamax": ("Adamax", dict(lr=0.01, betas=(0.8, 0.9), eps=1e-3, weight_decay=0.1)),
    "nadam-l2": ("NAdam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1,
                               momentum_decay=0.02)),
    "nadamw": ("NAdam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    "radam-l2": ("RAdam", dict(lr=0.01, weight_decay=0.1)),
    "radamw": ("RAdam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1,
                             decoupled_weight_decay=True)),
    "adadelta": ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.1)),
    "rprop": ("Rprop", dict(lr=0.02, etas=(0.4, 1.3), step_sizes=(1e-3, 0.1))),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_torch_over_many_steps_with_gradless_parameters(name):
    torch = torch_or_skip()
    cls, kwargs = CONFIGS[name]
    values, grads = _problem()
    ours, opt, theirs, reference = _twins(torch, cls, kwargs, values)
    # parameter 1 skips every third step, parameter 2 the first seven
    _step_both(torch, ours, opt, theirs, reference, grads, range(STEPS),
               skip=lambda i, t: (i == 1 and t % 3 == 0) or (i == 2 and t < 7))
    _assert_same(ours, theirs)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_state_dict_has_torchs_entries_and_loads_both_ways(momentum):
    torch = torch_or_skip()
    values, grads = _problem(seed=1, steps=20)
    ours, opt, theirs, reference = _twins(torch, "RMSprop", dict(lr=0.01, momentum=momentum),
                                          values)
    _step_both(torch, ours, opt, theirs, reference, grads, range(10))
    saved, torch_saved = opt.state_dict(), reference.state_dict()
    for key, entry in torch_saved["state"].items():
        assert sorted(saved["state"][key]) == sorted(entry)
        assert saved["state"][key]["step"] == int(entry["step"]) == 10

    # torch's state into a fresh tensornet optimizer, and tensornet's into a fresh torch one
    ours_b = [Parameter(q.detach().numpy().copy()) for q in theirs]
    opt_b = tn.optim.RMSprop(ours_b, lr=0.01, momentum=momentum)
    opt_b.load_state_dict(copy.deepcopy(torch_saved))
    theirs_b = [torch.nn.Parameter(torch.from_numpy(np.array(p.data))) for p in ours]
    reference_b = torch.optim.RMSprop(theirs_b, lr=0.01, momentum=momentum)
    reference_b.load_state_dict({
        "state": {k: {n: torch.tensor(float(v)) if isinstance(v, int)
                      else torch.from_numpy(np.array(v)) for n, v in s.items()}
                  for k, s in saved["state"].items()},
        "param_groups": copy.deepcopy(saved["param_groups"])})
    _step_both(torch, ours_b, opt_b, theirs_b, reference_b, grads, range(10, 20))
    _step_both(torch, ours, opt, theirs, reference, grads, range(10, 20))
    _assert_same(ours_b, theirs)
    _assert_same(ours, theirs_b)


def test_rmsprop_state_saved_without_step_still_loads():
    values, grads = _problem(seed=2, steps=4)
    params = [Parameter(v.copy()) for v in values]
    opt = tn.optim.RMSprop(params, lr=0.01)
    for t in range(2):
        for p, seq in zip(params, grads):
            p.grad = seq[t].copy()
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    for entry in saved["state"].values():
        entry.pop("step", None)
    fresh = tn.optim.RMSprop([Parameter(np.array(p.data)) for p in params], lr=0.01)
    fresh.load_state_dict(saved)
    for p, seq in zip(fresh.param_groups[0]["params"], grads):
        p.grad = seq[2].copy()
    fresh.step()


def test_reduce_on_plateau_reduces_a_group_added_later_as_torch():
    torch = torch_or_skip()
    ours = tn.optim.SGD([Parameter(np.zeros(3))], lr=0.1)
    theirs = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    schedule = tn.optim.ReduceLROnPlateau(ours, patience=0, min_lr=1e-3)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, patience=0, min_lr=1e-3)
    ours.add_param_group({"params": [Parameter(np.zeros(2))], "lr": 0.5})
    theirs.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "lr": 0.5})
    for value in [1.0, 2.0, 3.0, 4.0, 5.0]:
        schedule.step(value)
        reference.step(value)
        assert schedule.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-15)
    assert schedule.get_last_lr()[1] == 1e-3  # 0.5 -> 0.05 -> 0.005 -> its floor min_lr

    # one min_lr per group was given: a new group has none, a clear error that changes nothing
    per_group = tn.optim.ReduceLROnPlateau(ours, min_lr=[0.0, 0.0])
    ours.add_param_group({"params": [Parameter(np.zeros(2))], "lr": 0.5})
    with pytest.raises(ValueError, match="3 parameter groups, but min_lr lists 2"):
        per_group.step(1.0)
    assert (per_group.last_epoch, per_group.best) == (0, float("inf"))


def _torch_state(torch, cls, kwargs, values, grads, steps):
    theirs = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in values]
    reference = getattr(torch.optim, cls)(theirs, **kwargs)
    for t in range(steps):
        for q, seq in zip(theirs, grads):
            q.grad = torch.from_numpy(seq[t].copy())
        reference.step()
    return theirs, reference


@pytest.mark.parametrize("torch_cls, torch_kwargs, ours_cls, steps, match", [
    # (maximize, amsgrad and centered load where tensornet has them: test_optim_options.py)
    ("Adam", dict(lr=0.01, amsgrad=True), "Adamax", 0, "amsgrad=True"),
    ("AdamW", dict(lr=0.01), "Adam", 3, "decoupled_weight_decay=True"),
    ("Adam", dict(lr=0.01, weight_decay=0.1), "AdamW", 3, "decoupled_weight_decay=False"),
])
def test_a_torch_state_with_an_option_tensornet_lacks_is_refused(torch_cls, torch_kwargs,
                                                                 ours_cls, steps, match):
    torch = torch_or_skip()
    values, grads = _problem(seed=3, steps=3)
    _, reference = _torch_state(torch, torch_cls, torch_kwargs, values, grads, steps)
    opt = getattr(tn.optim, ours_cls)([Parameter(v.copy()) for v in values], lr=0.01)
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(reference.state_dict())
    assert opt.param_groups[0]["lr"] == 0.01 and not opt.state


def test_a_torch_adamw_state_loads_into_adamw_and_continues_identically():
    torch = torch_or_skip()
    values, grads = _problem(seed=4, steps=20)
    theirs, reference = _torch_state(torch, "AdamW", dict(lr=0.01, weight_decay=0.1), values,
                                     grads, 10)
    ours = [Parameter(q.detach().numpy().copy()) for q in theirs]
    opt = tn.optim.AdamW(ours, lr=0.01)
    opt.load_state_dict(reference.state_dict())
    assert opt.param_groups[0]["weight_decay"] == 0.1
    _step_both(torch, ours, opt, theirs, reference, grads, range(10, 20))
    _assert_same(ours, theirs)
