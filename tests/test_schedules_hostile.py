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
