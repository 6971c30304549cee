"""Learning-rate schedules against their closed forms, written out here."""
import math

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends import get_backend
from tensornet.nn import Parameter

EPOCHS = 12
BASE_LRS = (0.1, 0.02)


def make_optimizer(device="cpu", lrs=BASE_LRS):
    backend = get_backend(device)
    groups = [{"params": [Parameter(backend.asarray(np.zeros(3, np.float32)))], "lr": lr}
              for lr in lrs]
    return tn.optim.SGD(groups, lr=1.0, momentum=0.9)


SCHEDULES = {
    "step": (lambda opt: tn.optim.StepLR(opt, step_size=3, gamma=0.5),
             lambda base, e: base * 0.5 ** (e // 3)),
    "step-default-gamma": (lambda opt: tn.optim.StepLR(opt, 4),
                           lambda base, e: base * 0.1 ** (e // 4)),
    "exponential": (lambda opt: tn.optim.ExponentialLR(opt, gamma=0.9),
                    lambda base, e: base * 0.9 ** e),
    "inverse-time": (lambda opt: tn.optim.InverseTimeLR(opt, decay_rate=0.5),
                     lambda base, e: base / (1.0 + 0.5 * e)),
    "inverse-time-steps": (lambda opt: tn.optim.InverseTimeLR(opt, decay_rate=2.0,
                                                              decay_steps=5),
                           lambda base, e: base / (1.0 + 2.0 * e / 5)),
    "cosine": (lambda opt: tn.optim.CosineAnnealingLR(opt, T_max=8),
               lambda base, e: base * (1.0 + math.cos(math.pi * e / 8)) / 2.0),
    "cosine-eta-min": (lambda opt: tn.optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.001),
                       lambda base, e: 0.001 + (base - 0.001)
                       * (1.0 + math.cos(math.pi * e / 10)) / 2.0),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_follows_its_closed_form(name):
    build, closed_form = SCHEDULES[name]
    opt = make_optimizer()
    scheduler = build(opt)
    for epoch in range(EPOCHS):
        expected = [closed_form(base, epoch) for base in BASE_LRS]
        assert scheduler.get_last_lr() == pytest.approx(expected, rel=1e-12)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx(expected, rel=1e-12)
        assert all(type(g["lr"]) is float for g in opt.param_groups)
        scheduler.step()
    assert scheduler.last_epoch == EPOCHS


def test_known_values_of_the_simple_schedules():
    opt = make_optimizer(lrs=(1.0,))
    step = tn.optim.StepLR(opt, step_size=2, gamma=0.5)
    seen = []
    for _ in range(6):
        seen.append(step.get_last_lr()[0])
        step.step()
    assert seen == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    cosine = tn.optim.CosineAnnealingLR(make_optimizer(lrs=(1.0,)), T_max=4)
    seen = []
    for _ in range(5):
        seen.append(cosine.get_last_lr()[0])
        cosine.step()
    assert seen == pytest.approx([1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2,
                                  0.0], abs=1e-15)


def test_optimizer_steps_with_the_scheduled_lr(device):
    """SGD without momentum on a constant gradient moves by exactly the sum of the lrs."""
    backend = get_backend(device)
    param = Parameter(backend.asarray(np.zeros(2, np.float64)))
    opt = tn.optim.SGD([param], lr=0.4)
    scheduler = tn.optim.ExponentialLR(opt, gamma=0.5)
    for _ in range(4):
        param.grad = backend.asarray(np.ones(2, np.float64))
        opt.step()
        scheduler.step()
    np.testing.assert_allclose(tn.asnumpy(param.data), -(0.4 + 0.2 + 0.1 + 0.05), rtol=1e-12)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_round_trip(name):
    build, closed_form = SCHEDULES[name]
    opt_a = make_optimizer()
    sched_a = build(opt_a)
    for _ in range(5):
        sched_a.step()
    state = sched_a.state_dict()
    assert state["last_epoch"] == 5
    opt_b = make_optimizer(lrs=(0.7, 0.3))
    sched_b = build(opt_b)
    sched_b.load_state_dict(dict(state))
    assert sched_b.get_last_lr() == sched_a.get_last_lr()
    assert [g["lr"] for g in opt_b.param_groups] == sched_a.get_last_lr()
    for epoch in range(6, 10):
        sched_a.step()
        sched_b.step()
        assert sched_b.get_last_lr() == sched_a.get_last_lr()
        assert sched_b.get_last_lr() == pytest.approx([closed_form(b, epoch) for b in BASE_LRS])


def test_resuming_with_last_epoch_uses_initial_lr():
    opt = make_optimizer()
    first = tn.optim.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        first.step()
    resumed = tn.optim.StepLR(opt, step_size=2, gamma=0.5, last_epoch=3)
    assert resumed.get_last_lr() == pytest.approx([b * 0.25 for b in BASE_LRS])
    with pytest.raises(ValueError, match="initial_lr"):
        tn.optim.StepLR(make_optimizer(), step_size=2, last_epoch=3)


def test_scheduler_and_optimizer_checkpoint_together():
    values = np.arange(3, dtype=np.float32)
    params_a = [Parameter(values.copy())]
    opt_a = tn.optim.Adam(params_a, lr=0.1)
    sched_a = tn.optim.CosineAnnealingLR(opt_a, T_max=6)
    for _ in range(2):
        params_a[0].grad = np.ones(3, np.float32)
        opt_a.step()
        sched_a.step()
    opt_state, sched_state = opt_a.state_dict(), sched_a.state_dict()
    params_b = [Parameter(params_a[0].data.copy())]
    opt_b = tn.optim.Adam(params_b, lr=0.5)
    sched_b = tn.optim.CosineAnnealingLR(opt_b, T_max=6)
    opt_b.load_state_dict(opt_state)
    sched_b.load_state_dict(sched_state)
    for _ in range(3):
        for p in params_a + params_b:
            p.grad = np.ones(3, np.float32)
        opt_a.step()
        opt_b.step()
        sched_a.step()
        sched_b.step()
    np.testing.assert_array_equal(params_a[0].data, params_b[0].data)
    assert opt_b.param_groups[0]["lr"] == opt_a.param_groups[0]["lr"]


@pytest.mark.parametrize("build, error, match", [
    (lambda opt: tn.optim.StepLR(opt, step_size=0), ValueError, "step_size"),
    (lambda opt: tn.optim.StepLR(opt, step_size=2.5), ValueError, "step_size"),
    (lambda opt: tn.optim.StepLR(opt, step_size=2, gamma=-0.1), ValueError, "gamma"),
    (lambda opt: tn.optim.ExponentialLR(opt, gamma=0.0), ValueError, "gamma must be > 0"),
    (lambda opt: tn.optim.ExponentialLR(opt, gamma=float("nan")), ValueError, "finite"),
    (lambda opt: tn.optim.InverseTimeLR(opt, decay_rate=-1.0), ValueError, "decay_rate"),
    (lambda opt: tn.optim.InverseTimeLR(opt, 0.5, decay_steps=0), ValueError, "decay_steps"),
    (lambda opt: tn.optim.CosineAnnealingLR(opt, T_max=0), ValueError, "T_max"),
    (lambda opt: tn.optim.CosineAnnealingLR(opt, T_max=5, eta_min=-1.0), ValueError, "eta_min"),
    (lambda opt: tn.optim.StepLR(opt, 2, last_epoch=-2), ValueError, "last_epoch"),
    (lambda opt: tn.optim.StepLR([opt], 2), TypeError, "Optimizer"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_bad_arguments_are_clear_errors(build, error, match):
    opt = make_optimizer()
    with pytest.raises(error, match=match):
        build(opt)
    assert [g["lr"] for g in opt.param_groups] == list(BASE_LRS)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.pop("gamma"), "expected keys"),
    (lambda s: s.update(step_size=3), "expected keys"),
    (lambda s: s.update(gamma=-2.0), "gamma"),
    (lambda s: s.update(last_epoch=-4), "last_epoch"),
    (lambda s: s.update(base_lrs=[0.1]), "1 base lrs"),
])
def test_bad_state_dict_is_a_value_error_and_changes_nothing(edit, match):
    opt = make_optimizer()
    scheduler = tn.optim.ExponentialLR(opt, gamma=0.5)
    scheduler.step()
    state = tn.optim.ExponentialLR(make_optimizer(), gamma=0.9).state_dict()
    edit(state)
    before = (scheduler.state_dict(), scheduler.get_last_lr(), [g["lr"] for g in opt.param_groups])
    with pytest.raises(ValueError, match=match):
        scheduler.load_state_dict(state)
    assert (scheduler.state_dict(), scheduler.get_last_lr(),
            [g["lr"] for g in opt.param_groups]) == before
