"""The schedules of issue 16 (MultiStepLR, LambdaLR, LinearLR, CosineAnnealingWarmRestarts,
OneCycleLR, SequentialLR, ReduceLROnPlateau): step for step against torch.optim.lr_scheduler
and against their published formulas, state round-trips, and tn.fit driving them."""
import math

import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.nn import Parameter

from torch_reference import torch_or_skip

BASE_LRS = (0.1, 0.02)


def optimizers(kind="sgd", lrs=BASE_LRS, torch=None):
    """A tensornet optimizer with one group per lr (and the torch twin when asked)."""
    groups = [{"params": [Parameter(np.zeros(3, np.float32))], "lr": lr} for lr in lrs]
    ours = (tn.optim.SGD(groups, lr=1.0, momentum=0.9) if kind == "sgd"
            else tn.optim.Adam(groups, lr=1.0))
    if torch is None:
        return ours
    tgroups = [{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": lr} for lr in lrs]
    theirs = (torch.optim.SGD(tgroups, lr=1.0, momentum=0.9) if kind == "sgd"
              else torch.optim.Adam(tgroups, lr=1.0))
    return ours, theirs


def _lambda(epoch):
    return 0.95 ** epoch + 0.1 * (epoch % 3)


# name -> (build(module, optimizer), steps); module is tn.optim or torch.optim.lr_scheduler
SCHEDULES = {
    "MultiStepLR": (lambda m, o: m.MultiStepLR(o, [2, 5, 5, 9], 0.5), 14),
    "LambdaLR": (lambda m, o: m.LambdaLR(o, _lambda), 12),
    "LinearLR-warmup": (lambda m, o: m.LinearLR(o, 0.25, 1.0, 4), 8),
    "LinearLR-decay": (lambda m, o: m.LinearLR(o, 1.0, 0.1, 6), 9),
    "CosineAnnealingWarmRestarts": (
        lambda m, o: m.CosineAnnealingWarmRestarts(o, 3, T_mult=2, eta_min=0.001), 40),
    "CosineAnnealingWarmRestarts-T1": (lambda m, o: m.CosineAnnealingWarmRestarts(o, 4), 14),
    "OneCycleLR": (lambda m, o: m.OneCycleLR(o, [0.5, 0.1], total_steps=23), 23),
    "OneCycleLR-3phase-linear": (
        lambda m, o: m.OneCycleLR(o, 0.5, epochs=4, steps_per_epoch=5, pct_start=0.25,
                                  anneal_strategy="linear", three_phase=True,
                                  div_factor=10.0, final_div_factor=100.0), 20),
    "SequentialLR": (lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, 0.1, 1.0, 3), m.CosineAnnealingLR(o, 6), m.ExponentialLR(o, 0.9)],
        [3, 9]), 15),
}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_matches_pytorch_step_for_step(name, kind):
    torch = torch_or_skip()
    build, steps = SCHEDULES[name]
    ours, theirs = optimizers(kind, torch=torch)
    schedule, reference = build(tn.optim, ours), build(torch.optim.lr_scheduler, theirs)
    key = "momentum" if kind == "sgd" else "betas"
    for step in range(steps):
        assert schedule.get_last_lr() == pytest.approx(reference.get_last_lr(), rel=1e-12), step
        assert [g["lr"] for g in ours.param_groups] == schedule.get_last_lr()
        for g, h in zip(ours.param_groups, theirs.param_groups):  # OneCycle cycles these
            np.testing.assert_allclose(np.ravel(g[key]), np.ravel(h[key]), rtol=1e-12)
        theirs.step()
        reference.step()
        schedule.step()


@pytest.mark.parametrize("kwargs", [
    dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1, threshold_mode="abs",
                 cooldown=2, min_lr=[0.01, 0.005]),
    dict(patience=0, cooldown=1, threshold=0.0, eps=0.0)])
def test_reduce_on_plateau_matches_pytorch(kwargs):
    torch = torch_or_skip()
    ours, theirs = optimizers(torch=torch)
    schedule = tn.optim.ReduceLROnPlateau(ours, **kwargs)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs, **kwargs)
    values = np.cumsum(np.random.default_rng(0).standard_normal(80)) * 0.1
    for value in list(values) + [float("nan")] * 3:
        schedule.step(value)
        reference.step(value)
        assert schedule.get_last_lr() == reference.get_last_lr()
        assert (schedule.num_bad_epochs, schedule.cooldown_counter) == \
            (reference.num_bad_epochs, reference.cooldown_counter)


# ---------------------------------------------------------------------- published formulas
def _one_cycle(step, top, total, pct=0.3, div=25.0, final=1e4):
    """Smith & Topin's 1cycle with cosine phases, written out."""
    start, bottom = top / div, top / div / final
    rise = pct * total - 1
    if step <= rise:
        t, a, b = step / rise, start, top
    else:
        t, a, b = (step - rise) / (total - 1 - rise), top, bottom
    return b + (a - b) * (1 + math.cos(math.pi * t)) / 2


def _sgdr(epoch, base, t0, mult, eta_min):
    """Loshchilov & Hutter: restart after T_0, T_0*T_mult, T_0*T_mult^2 ... epochs."""
    length, start = t0, 0
    while epoch >= start + length:
        start, length = start + length, length * mult
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (epoch - start) / length)) / 2


FORMULAS = {
    "MultiStepLR": lambda base, e: base * 0.5 ** sum(m <= e for m in (2, 5, 5, 9)),
    "LambdaLR": lambda base, e: base * _lambda(e),
    "LinearLR-warmup": lambda base, e: base * (0.25 + 0.75 * min(e, 4) / 4),
    "LinearLR-decay": lambda base, e: base * (1.0 - 0.9 * min(e, 6) / 6),
    "CosineAnnealingWarmRestarts": lambda base, e: _sgdr(e, base, 3, 2, 0.001),
    "CosineAnnealingWarmRestarts-T1": lambda base, e: _sgdr(e, base, 4, 1, 0.0),
    "OneCycleLR": lambda base, e: _one_cycle(e, {0.1: 0.5, 0.02: 0.1}[base], 23),
    "SequentialLR": lambda base, e: (base * (0.1 + 0.9 * e / 3) if e < 3 else
                                     base * (1 + math.cos(math.pi * (e - 3) / 6)) / 2 if e < 9
                                     else base * 0.9 ** (e - 9)),
}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_follows_the_published_formula(name):
    build, steps = SCHEDULES[name]
    opt = optimizers()
    schedule = build(tn.optim, opt)
    for step in range(steps):
        expected = [FORMULAS[name](base, step) for base in BASE_LRS]
        assert schedule.get_last_lr() == pytest.approx(expected, rel=1e-12, abs=1e-15), step
        schedule.step()


def test_one_cycle_limits_and_momentum():
    opt = optimizers(lrs=(1.0,))
    schedule = tn.optim.OneCycleLR(opt, max_lr=2.0, total_steps=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0 / 25)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.95)
    lrs = []
    for _ in range(10):
        lrs.append(schedule.get_last_lr()[0])
        schedule.step()
    assert max(lrs) == pytest.approx(2.0) and lrs[-1] < 2.0 / 25 / 1e4 * 1.01
    with pytest.raises(ValueError, match="stepped 11 times, but total_steps is 10"):
        schedule.step()


def check_resumed_mid_run(build, steps, path):
    """Run ``build(tn.optim, optimizer)`` ``steps // 2`` steps, checkpoint schedule and
    optimizer, resume both into fresh ones made with other lrs, and check the rest of the
    run (lrs, momenta) is the uninterrupted one's."""
    opt_a = optimizers()
    sched_a = build(tn.optim, opt_a)
    for _ in range(steps // 2):
        sched_a.step()
    tn.save({"scheduler": sched_a.state_dict(), "optim": opt_a.state_dict()}, path)
    state = tn.load(path)
    opt_b = optimizers(lrs=(0.7, 0.3))
    sched_b = build(tn.optim, opt_b)
    opt_b.load_state_dict(state["optim"])
    sched_b.load_state_dict(state["scheduler"])
    for _ in range(steps - steps // 2):
        assert sched_b.get_last_lr() == sched_a.get_last_lr()
        assert [(g["lr"], g.get("momentum"), g.get("betas")) for g in opt_b.param_groups] == \
            [(g["lr"], g.get("momentum"), g.get("betas")) for g in opt_a.param_groups]
        sched_a.step()
        sched_b.step()


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_round_trip_through_a_checkpoint(name, tmp_path):
    build, steps = SCHEDULES[name]
    check_resumed_mid_run(build, steps, tmp_path / "s.safetensors")


def test_plateau_state_round_trip(tmp_path):
    a = tn.optim.ReduceLROnPlateau(optimizers(), patience=1, cooldown=1)
    for v in (3.0, 2.0, 2.5, 2.6):
        a.step(v)
    tn.save(a.state_dict(), tmp_path / "p.safetensors")
    b = tn.optim.ReduceLROnPlateau(optimizers(), patience=7)
    b.load_state_dict(tn.load(tmp_path / "p.safetensors"))
    assert (b.best, b.patience, b.num_bad_epochs, b.cooldown_counter) == (2.0, 1, 0, 1)
    with pytest.raises(ValueError, match="left unchanged"):
        b.load_state_dict({**a.state_dict(), "patience": -1})
    assert b.patience == 1


def test_a_sequential_state_holds_its_schedules_and_loads_all_or_nothing():
    def build(opt):
        return tn.optim.SequentialLR(opt, [tn.optim.StepLR(opt, 2, 0.5),
                                           tn.optim.ExponentialLR(opt, 0.9)], [3])
    opt_a = optimizers()
    sched_a = build(opt_a)
    for _ in range(5):
        sched_a.step()
    state = sched_a.state_dict()
    assert [s["base_lrs"] for s in state["schedulers"]] == [list(BASE_LRS)] * 2
    opt_b = optimizers(lrs=(0.7, 0.3))  # other base lrs: the state's must win
    sched_b = build(opt_b)
    with pytest.raises(ValueError, match="milestones"):
        sched_b.load_state_dict({**state, "milestones": [0]})
    assert sched_b.state_dict()["schedulers"][1]["base_lrs"] == [0.7, 0.3]
    assert [g["lr"] for g in opt_b.param_groups] == [0.7, 0.3]
    sched_b.load_state_dict(state)
    assert sched_b.get_last_lr() == sched_a.get_last_lr() == pytest.approx([0.081, 0.0162])
    old = {k: v for k, v in state.items() if k != "schedulers"}  # saved before this change
    build(optimizers()).load_state_dict(old)


def _tiny_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.integers(0, 2, 32)
    return tn.data.ArrayDataset(x, y)


def test_fit_feeds_val_loss_to_reduce_on_plateau():
    data = _tiny_problem()
    tn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2))
    opt = tn.optim.SGD(model.parameters(), lr=1.0)
    model.requires_grad_(False)  # frozen: the validation loss never moves
    schedule = tn.optim.ReduceLROnPlateau(opt, patience=1)
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, tn.data.DataLoader(data, 8),
                     val_loader=tn.data.DataLoader(data, 32), epochs=6, scheduler=schedule,
                     verbose=0)
    # epoch 1 sets the best, epochs 2-3 do not improve: lr cut after epoch 3, then 5
    assert history["lr"] == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="needs fit\\(..., val_loader=...\\)"):
        tn.fit(model, nn.CrossEntropyLoss(), opt, tn.data.DataLoader(data, 8), epochs=1,
               scheduler=schedule, verbose=0)
    monitor = tn.callbacks.LearningRateScheduler(schedule, monitor="train_loss")
    tn.fit(model, nn.CrossEntropyLoss(), opt, tn.data.DataLoader(data, 8), epochs=1,
           callbacks=[monitor], verbose=0)
    assert schedule.last_epoch == 7


def test_fit_steps_one_cycle_after_every_batch():
    data = _tiny_problem()
    model = nn.Sequential(nn.Linear(4, 2))
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = tn.optim.OneCycleLR(opt, max_lr=0.5, epochs=3, steps_per_epoch=4)
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, tn.data.DataLoader(data, 8), epochs=3,
                     scheduler=schedule, verbose=0)
    assert schedule.last_epoch == 12
    assert history["lr"] == pytest.approx([_one_cycle(s, 0.5, 12) for s in (0, 4, 8)])


@pytest.mark.parametrize("build, needle", [
    (lambda o: tn.optim.MultiStepLR(o, [3, 0]), "milestones"),
    (lambda o: tn.optim.LinearLR(o, start_factor=0.0), "start_factor must be in"),
    (lambda o: tn.optim.LambdaLR(o, [_lambda]), "one per parameter group"),
    (lambda o: tn.optim.CosineAnnealingWarmRestarts(o, T_0=0), "T_0 must be a positive"),
    (lambda o: tn.optim.OneCycleLR(o, 0.1), "give total_steps"),
    (lambda o: tn.optim.OneCycleLR(o, 0.1, total_steps=5, anneal_strategy="exp"),
     "anneal_strategy"),
    (lambda o: tn.optim.OneCycleLR(tn.optim.Adagrad([Parameter(np.zeros(2))]), 0.1,
                                   total_steps=5), "cycle_momentum=True needs"),
    (lambda o: tn.optim.SequentialLR(o, [tn.optim.StepLR(o, 2)], [3]), "one milestone fewer"),
    (lambda o: tn.optim.SequentialLR(o, [tn.optim.StepLR(o, 2), tn.optim.StepLR(optimizers(), 2)],
                                     [3]), "same optimizer"),
    (lambda o: tn.optim.ReduceLROnPlateau(o, factor=1.0), "factor must be in"),
    (lambda o: tn.optim.ReduceLROnPlateau(o, mode="lowest"), "mode must be"),
])
def test_bad_arguments(build, needle):
    with pytest.raises(ValueError, match=needle):
        build(optimizers())
