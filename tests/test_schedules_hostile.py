"""Hostile uses of the LR schedules: long runs, groups added after a schedule was built,
states that do not fit, schedules passed twice, momenta the optimizer refuses."""
import numpy as np
import pytest

import tensornet as tn
from tensornet.nn import Parameter

from test_new_schedules import optimizers
from torch_reference import torch_or_skip


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: step order
def test_triangular2_runs_past_a_thousand_cycles_as_torch_until_torch_overflows():
    """The amplitude halves every cycle: 1 / 2.0 ** (cycle - 1) overflows a float at cycle
    1025 (an OverflowError 2048 steps into cycles of two); 0.5 ** (cycle - 1) is the same
    power of two and goes to 0."""
    torch = torch_or_skip()
    ours, theirs = optimizers(torch=torch)
    schedule = tn.optim.CyclicLR(ours, 0.01, 0.1, 1, 1, mode="triangular2")
    reference = torch.optim.lr_scheduler.CyclicLR(theirs, 0.01, 0.1, 1, 1, mode="triangular2")
    for step in range(2046):  # torch's last step before its OverflowError
        assert schedule.get_last_lr() == reference.get_last_lr(), step
        schedule.step()
        reference.step()
    for _ in range(3000):
        schedule.step()
    assert schedule.get_last_lr() == [0.01, 0.01]
    assert ours.param_groups[0]["momentum"] == 0.9


def _adagrad():
    return tn.optim.Adagrad([{"params": [Parameter(np.zeros(3))], "lr": lr} for lr in (0.1, 0.2)])


@pytest.mark.parametrize("kind, kwargs, needle", [
    ("sgd", dict(base_momentum=-0.1), "base_momentum -0.1 .*group 0 of SGD.*momentum must be >= 0"),
    ("adam", dict(max_momentum=1.0), "max_momentum 1.0 .*group 0 of Adam.*betas\\[0\\]"),
    ("adam", dict(base_momentum=[0.8, 1.2]), "base_momentum 1.2 .*group 1 of Adam"),
    ("nesterov", dict(base_momentum=0.0), "base_momentum 0.0 .*nesterov=True needs momentum > 0"),
])
@pytest.mark.parametrize("schedule", ["CyclicLR", "OneCycleLR"])
def test_momenta_the_optimizer_refuses_are_refused_when_the_schedule_is_built(kind, kwargs,
                                                                               needle, schedule):
    """They were written into the groups, and the optimizer refused them at the step where
    the cycle reached them (the peak of the first cycle: thousands of batches in)."""
    if kind == "nesterov":
        opt = tn.optim.SGD([{"params": [Parameter(np.zeros(3))], "lr": lr} for lr in (0.1, 0.2)],
                           lr=1.0, momentum=0.9, nesterov=True)
    else:
        opt = optimizers(kind)
    before = [dict(g) for g in opt.param_groups]
    build = (lambda: tn.optim.CyclicLR(opt, 0.01, 0.1, 3, **kwargs)) if schedule == "CyclicLR" \
        else (lambda: tn.optim.OneCycleLR(opt, 0.1, total_steps=10, **kwargs))
    with pytest.raises(ValueError, match=f"{schedule}: {needle}"):
        build()
    assert opt.param_groups == before


def test_a_cycling_state_is_refused_by_a_cyclic_lr_of_an_optimizer_without_momentum():
    """Loaded, it wrote a 'momentum' into Adagrad's groups, which Adagrad ignores."""
    source = tn.optim.CyclicLR(optimizers(), 0.01, 0.1, 3)
    source.step()
    opt = _adagrad()
    schedule = tn.optim.CyclicLR(opt, 0.01, 0.1, 3, cycle_momentum=False)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with momentum.*"
                                         "left unchanged"):
        schedule.load_state_dict(source.state_dict())
    assert opt.param_groups == before and not schedule.cycle_momentum


@pytest.mark.parametrize("key", ["max_lrs", "base_momentums", "max_momentums"])
def test_a_cyclic_state_with_a_value_per_group_missing_is_refused(key):
    """It loaded, then failed with an IndexError (or silently set one group) at its next lr."""
    source = tn.optim.CyclicLR(optimizers(), 0.01, 0.1, 3)
    state = dict(source.state_dict(), **{key: source.state_dict()[key][:1]})
    opt = optimizers()
    schedule = tn.optim.CyclicLR(opt, 0.02, 0.2, 5)
    before = (schedule.state_dict(), [dict(g) for g in opt.param_groups])
    with pytest.raises(ValueError, match=f"{key[:-1]} needs one value per parameter group \\(2\\)"
                                         f".*left unchanged"):
        schedule.load_state_dict(state)
    assert (schedule.state_dict(), opt.param_groups) == before


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: step order
@pytest.mark.parametrize("nested", [False, True])
def test_a_chain_refuses_one_schedule_twice(nested):
    """The chain moved it two epochs per step and applied its factor twice: 0.9 ** 12 after
    three steps of ExponentialLR(0.9) twice, where torch's chain gives 0.9 ** 6."""
    opt = optimizers()
    decay = tn.optim.ExponentialLR(opt, 0.9)
    warmup = tn.optim.ConstantLR(opt, 0.5, 3)
    chained = [tn.optim.ChainedScheduler([warmup, decay]), decay] if nested else [decay, decay]
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="ChainedScheduler: .*ExponentialLR.* more than once"):
        tn.optim.ChainedScheduler(chained)
    assert opt.param_groups == before and decay.last_epoch == 0
