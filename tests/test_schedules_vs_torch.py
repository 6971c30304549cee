"""ConstantLR, PolynomialLR, CyclicLR and ChainedScheduler (and SequentialLR holding them):
step for step against torch.optim.lr_scheduler with two parameter groups, against their
formulas written out, and resumed mid-run from a checkpoint."""
import math

import numpy as np
import pytest

import tensornet as tn

from test_new_schedules import check_resumed_mid_run, optimizers
from torch_reference import torch_or_skip

BASE_LRS = (0.1, 0.02)
STEPS = 45


def _halving(x):
    return 0.5 ** x


def _slow_decay(x):
    return 1.0 / (1.0 + 0.05 * x)


# name -> build(module, optimizer); module is tn.optim or torch.optim.lr_scheduler
SCHEDULES = {
    "ConstantLR": lambda m, o: m.ConstantLR(o),
    "ConstantLR-half-7": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=7),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o),
    "PolynomialLR-square": lambda m, o: m.PolynomialLR(o, total_iters=30, power=2.0),
    "PolynomialLR-sqrt": lambda m, o: m.PolynomialLR(o, total_iters=25, power=0.5),
    "CyclicLR": lambda m, o: m.CyclicLR(o, [0.01, 0.002], [0.1, 0.05], step_size_up=4),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(o, 0.01, 0.1, 3, 6, mode="triangular2",
                                                    base_momentum=[0.7, 0.75]),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(o, 0.01, [0.1, 0.2], 5, mode="exp_range",
                                                  gamma=0.97, max_momentum=0.95),
    "CyclicLR-sawtooth": lambda m, o: m.CyclicLR(o, 0.01, 0.1, 5, 0),
    "CyclicLR-scale_fn-cycle": lambda m, o: m.CyclicLR(o, 0.01, 0.1, 3, 4, scale_fn=_halving),
    "CyclicLR-scale_fn-iterations": lambda m, o: m.CyclicLR(
        o, 0.01, 0.1, 4, scale_fn=_slow_decay, scale_mode="iterations"),
    "CyclicLR-no-momentum": lambda m, o: m.CyclicLR(o, 0.01, 0.1, 4, cycle_momentum=False),
    "Chained-Constant-Exponential": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.5, total_iters=10), m.ExponentialLR(o, 0.9)]),
    "Chained-Step-Linear": lambda m, o: m.ChainedScheduler(
        [m.StepLR(o, 4, 0.7), m.LinearLR(o, 0.2, 1.0, 12)]),
    "Chained-MultiStep-Exponential": lambda m, o: m.ChainedScheduler(
        [m.MultiStepLR(o, [5, 9, 20], 0.5), m.ExponentialLR(o, 0.95)], optimizer=o),
    "Chained-Linear-Cosine": lambda m, o: m.ChainedScheduler(
        [m.LinearLR(o, 0.1, 1.0, 5), m.CosineAnnealingLR(o, T_max=50)]),
    "Chained-Polynomial-Step-Constant": lambda m, o: m.ChainedScheduler(
        [m.PolynomialLR(o, 40, 1.5), m.StepLR(o, 7, 0.6), m.ConstantLR(o, 0.25, 3)]),
    "Chained-nested": lambda m, o: m.ChainedScheduler(
        [m.ChainedScheduler([m.ConstantLR(o, 0.5, 10), m.ExponentialLR(o, 0.9)]),
         m.PolynomialLR(o, 40, 1.5)]),
    "Sequential-Constant-Polynomial": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, 0.3, 4), m.PolynomialLR(o, 20)], [5]),
    "Sequential-Linear-Cyclic": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, 0.1, 1.0, 6), m.CyclicLR(o, 0.01, 0.1, 4)], [6]),
    "Sequential-Chained-Exponential": lambda m, o: m.SequentialLR(
        o, [m.ChainedScheduler([m.LinearLR(o, 0.2, 1.0, 6), m.StepLR(o, 3, 0.8)]),
            m.ExponentialLR(o, 0.9)], [12]),
}


def _close(ours, theirs, what):
    np.testing.assert_allclose(np.ravel(ours), np.ravel(theirs), rtol=1e-12, atol=0,
                               err_msg=what)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: step order, get_last_lr
@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_matches_pytorch_step_for_step(name, kind):
    torch = torch_or_skip()
    ours, theirs = optimizers(kind, torch=torch)
    schedule = SCHEDULES[name](tn.optim, ours)
    reference = SCHEDULES[name](torch.optim.lr_scheduler, theirs)
    key = "momentum" if kind == "sgd" else "betas"  # CyclicLR cycles these
    for step in range(STEPS):
        _close(schedule.get_last_lr(), reference.get_last_lr(), f"lr at step {step}")
        assert [g["lr"] for g in ours.param_groups] == schedule.get_last_lr()
        for g, h in zip(ours.param_groups, theirs.param_groups):
            _close(g[key], h[key], f"{key} at step {step}")
            assert g["initial_lr"] == h["initial_lr"]
        theirs.step()
        reference.step()
        schedule.step()


# ------------------------------------------------------------------ the formulas written out
def _triangle(step, up, down):
    """Smith's triangle: 0 at a cycle's start, 1 after ``up`` steps, 0 again ``down`` later."""
    position = step % (up + down)
    return position / up if position <= up else 1.0 - (position - up) / down


FORMULAS = {
    "ConstantLR": lambda b, e: b / 3 if e < 5 else b,
    "ConstantLR-half-7": lambda b, e: b * 0.5 if e < 7 else b,
    "PolynomialLR": lambda b, e: b * max(0.0, 1.0 - e / 5),
    "PolynomialLR-square": lambda b, e: b * max(0.0, 1.0 - e / 30) ** 2,
    "CyclicLR": lambda b, e: {0.1: 0.01, 0.02: 0.002}[b] + (
        {0.1: 0.1, 0.02: 0.05}[b] - {0.1: 0.01, 0.02: 0.002}[b]) * _triangle(e, 4, 4),
    "CyclicLR-triangular2": lambda b, e: 0.01 + 0.09 * _triangle(e, 3, 6) / 2 ** (e // 9),
    "CyclicLR-sawtooth": lambda b, e: 0.01 + 0.09 * (e % 5) / 5,
    "Chained-Constant-Exponential": lambda b, e: b * (0.5 if e < 10 else 1.0) * 0.9 ** e,
    "Chained-Step-Linear": lambda b, e: b * 0.7 ** (e // 4) * (0.2 + 0.8 * min(e, 12) / 12),
    # past T_max the cosine climbs again, still times the warm-up (see ChainedScheduler)
    "Chained-Linear-Cosine-past-T_max": lambda b, e: (
        b * (0.1 + 0.9 * min(e, 5) / 5) * (1 + math.cos(math.pi * e / 20)) / 2),
}
FORMULA_BUILDS = {**SCHEDULES, "Chained-Linear-Cosine-past-T_max": lambda m, o: m.ChainedScheduler(
    [m.LinearLR(o, 0.1, 1.0, 5), m.CosineAnnealingLR(o, T_max=20)])}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_follows_the_formula(name):
    opt = optimizers()
    schedule = FORMULA_BUILDS[name](tn.optim, opt)
    for step in range(STEPS):
        expected = [FORMULAS[name](base, step) for base in BASE_LRS]
        np.testing.assert_allclose(schedule.get_last_lr(), expected, rtol=1e-12, atol=1e-15,
                                   err_msg=f"step {step}")
        schedule.step()


def test_cyclic_momentum_moves_against_the_lr():
    opt = optimizers("adam", lrs=(1.0,))
    schedule = tn.optim.CyclicLR(opt, 0.1, 0.5, step_size_up=2, step_size_down=2,
                                 base_momentum=0.8, max_momentum=0.9)
    seen = []
    for _ in range(5):
        seen.append((opt.param_groups[0]["lr"], *opt.param_groups[0]["betas"]))
        schedule.step()
    np.testing.assert_allclose(seen, [(0.1, 0.9, 0.999), (0.3, 0.85, 0.999), (0.5, 0.8, 0.999),
                                      (0.3, 0.85, 0.999), (0.1, 0.9, 0.999)], rtol=1e-12)
    assert schedule.base_lrs == [0.1] and opt.param_groups[0]["initial_lr"] == 0.1


# ------------------------------------------------------------------ resuming mid-run
def _state(opt):
    return [(g["lr"], g.get("momentum"), g.get("betas")) for g in opt.param_groups]


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_resumed_from_a_checkpoint_mid_run_gives_the_same_lrs(name, tmp_path):
    check_resumed_mid_run(SCHEDULES[name], STEPS, tmp_path / "s.safetensors")


@pytest.mark.parametrize("build", [
    lambda o, e: tn.optim.ConstantLR(o, 0.5, 7, last_epoch=e),
    lambda o, e: tn.optim.PolynomialLR(o, 30, 2.0, last_epoch=e),
    lambda o, e: tn.optim.CyclicLR(o, 0.01, [0.1, 0.05], 4, 3, last_epoch=e),
], ids=["ConstantLR", "PolynomialLR", "CyclicLR"])
def test_last_epoch_resumes_from_the_optimizers_initial_lr(build):
    opt_a = optimizers()
    sched_a = build(opt_a, -1)
    for _ in range(6):
        sched_a.step()
    opt_b = optimizers(lrs=(0.7, 0.3))
    opt_b.load_state_dict(opt_a.state_dict())  # holds "initial_lr"
    sched_b = build(opt_b, 5)  # the last finished step was 5: applies step 6
    assert sched_b.last_epoch == 6 and _state(opt_b) == _state(opt_a)
    for _ in range(10):
        sched_a.step()
        sched_b.step()
        assert sched_b.get_last_lr() == sched_a.get_last_lr()
    with pytest.raises(ValueError, match="initial_lr"):
        build(optimizers(), 5)
