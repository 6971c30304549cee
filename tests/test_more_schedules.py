"""ConstantLR, PolynomialLR, CyclicLR and ChainedScheduler: bad arguments (against
PyTorch's errors) and tn.fit's stepping."""
import numpy as np
import pytest

import tensornet as tn
from tensornet import nn
from tensornet.nn import Parameter

from test_new_schedules import _tiny_problem, optimizers
from torch_reference import torch_or_skip

BASE_LRS = (0.1, 0.02)


def _adagrad(m, o):
    """An optimizer without momentum (its twin in torch when ``m`` is torch's module)."""
    if m is tn.optim:
        return tn.optim.Adagrad([Parameter(np.zeros(2))])
    torch = torch_or_skip()
    return torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(2))])


def _other(m, o):
    """A second optimizer (torch's when ``m`` is torch's module)."""
    if m is tn.optim:
        return optimizers()
    torch = torch_or_skip()
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)


# (build(module, optimizer), what our message says, whether torch raises ValueError too)
BAD = {
    "ConstantLR-factor-above-1": (lambda m, o: m.ConstantLR(o, factor=1.5), "factor", True),
    "ConstantLR-factor-negative": (lambda m, o: m.ConstantLR(o, factor=-0.1), "factor", True),
    "ConstantLR-total_iters-0": (lambda m, o: m.ConstantLR(o, total_iters=0),
                                 "total_iters must be a positive integer", False),
    "PolynomialLR-total_iters-2.5": (lambda m, o: m.PolynomialLR(o, total_iters=2.5),
                                     "total_iters must be a positive integer", False),
    "PolynomialLR-power-negative": (lambda m, o: m.PolynomialLR(o, power=-1.0),
                                    "power must be >= 0", False),
    "CyclicLR-mode": (lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="triangle"),
                      "mode must be 'triangular'", True),
    "CyclicLR-base_lr-per-group": (lambda m, o: m.CyclicLR(o, [0.01] * 3, 0.1),
                                   "base_lr needs one value per parameter group", True),
    "CyclicLR-max_lr-per-group": (lambda m, o: m.CyclicLR(o, 0.01, [0.1]),
                                  "max_lr needs one value per parameter group", True),
    "CyclicLR-momentum-per-group": (lambda m, o: m.CyclicLR(o, 0.01, 0.1, base_momentum=[0.8]),
                                    "base_momentum needs one value per parameter group", True),
    "CyclicLR-needs-momentum": (lambda m, o: m.CyclicLR(_adagrad(m, o), 0.01, 0.1),
                                "cycle_momentum=True needs an optimizer with momentum", True),
    "CyclicLR-step_size_up-0": (lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=0),
                                "step_size_up must be a positive integer", False),
    "CyclicLR-step_size_down-negative": (
        lambda m, o: m.CyclicLR(o, 0.01, 0.1, 4, step_size_down=-1),
        "step_size_down must be an integer >= 0", False),
    "CyclicLR-scale_mode": (lambda m, o: m.CyclicLR(o, 0.01, 0.1, scale_fn=abs,
                                                    scale_mode="epochs"),
                            "scale_mode must be 'cycle' or 'iterations'", False),
    "CyclicLR-scale_fn": (lambda m, o: m.CyclicLR(o, 0.01, 0.1, scale_fn=0.5),
                          "scale_fn must be a function", False),
    "CyclicLR-base_lr-negative": (lambda m, o: m.CyclicLR(o, -0.01, 0.1),
                                  "base_lr\\[i\\] must be >= 0", False),
    "CyclicLR-gamma": (lambda m, o: m.CyclicLR(o, 0.01, 0.1, mode="exp_range", gamma=0.0),
                       "gamma must be > 0", False),
    "Chained-empty": (lambda m, o: m.ChainedScheduler([]), "at least one", True),
    "Chained-plateau": (lambda m, o: m.ChainedScheduler(
        [m.StepLR(o, 2), m.ReduceLROnPlateau(o)]), "ReduceLROnPlateau", True),
    "Chained-two-optimizers": (lambda m, o: m.ChainedScheduler(
        [m.StepLR(o, 2), m.StepLR(_other(m, o), 2)]), "another optimizer", True),
    "Chained-given-other-optimizer": (lambda m, o: m.ChainedScheduler(
        [m.StepLR(o, 2)], optimizer=_other(m, o)), "another optimizer", True),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_are_clear_errors_like_pytorch_s(name):
    build, needle, torch_raises = BAD[name]
    opt = optimizers()
    with pytest.raises(ValueError, match=needle):
        build(tn.optim, opt)
    if "Chained" not in name:  # refused before anything was changed
        assert [g["lr"] for g in opt.param_groups] == list(BASE_LRS)
        assert all("initial_lr" not in g for g in opt.param_groups)
    if torch_raises:
        torch = torch_or_skip()
        _, theirs = optimizers(torch=torch)
        with pytest.raises(ValueError):
            build(torch.optim.lr_scheduler, theirs)


@pytest.mark.parametrize("build, error, needle", [
    (lambda o: tn.optim.ConstantLR([o]), TypeError, "expected a tensornet Optimizer"),
    (lambda o: tn.optim.CyclicLR([o], 0.01, 0.1), TypeError, "expected a tensornet Optimizer"),
    (lambda o: tn.optim.ChainedScheduler(tn.optim.StepLR(o, 2)), TypeError, "a list"),
    (lambda o: tn.optim.ChainedScheduler([tn.optim.StepLR(o, 2), o]), TypeError,
     "schedulers\\[1\\] must be an epoch schedule"),
])
def test_wrong_objects_are_type_errors(build, error, needle):
    with pytest.raises(error, match=needle):
        build(optimizers())


def _fit(schedule_of, epochs=3, batch=8):
    model = nn.Sequential(nn.Linear(4, 2))
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = schedule_of(opt)
    history = tn.fit(model, nn.CrossEntropyLoss(), opt, tn.data.DataLoader(_tiny_problem(),
                                                                          batch),
                     epochs=epochs, scheduler=schedule, verbose=0)
    return schedule, history


def test_fit_steps_cyclic_lr_and_a_sequential_holding_it_after_every_batch():
    schedule, history = _fit(lambda o: tn.optim.CyclicLR(o, 0.01, 0.05, step_size_up=3))
    assert schedule.last_epoch == 12  # 3 epochs of 4 batches
    assert history["lr"] == pytest.approx([0.01, 0.01 + 0.08 / 3, 0.01 + 0.08 / 3])
    schedule, _ = _fit(lambda o: tn.optim.SequentialLR(
        o, [tn.optim.LinearLR(o, 0.5, 1.0, 4), tn.optim.CyclicLR(o, 0.01, 0.05, 3)], [4]))
    assert schedule.per_batch and schedule.last_epoch == 12


def test_fit_steps_a_chain_once_per_epoch():
    schedule, history = _fit(lambda o: tn.optim.ChainedScheduler(
        [tn.optim.ConstantLR(o, 0.5, 2), tn.optim.ExponentialLR(o, 0.5)]))
    assert schedule.last_epoch == 3 and not getattr(schedule, "per_batch", False)
    assert history["lr"] == pytest.approx([0.05, 0.025, 0.025])
