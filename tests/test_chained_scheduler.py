"""ChainedScheduler: it composes where two schedules alone do not, refuses schedules that
are no factor of the base lr, and loads its schedules' states all or nothing (its lrs
against PyTorch's: tests/test_schedules_vs_torch.py)."""
import pytest

import tensornet as tn

from test_new_schedules import optimizers


@pytest.mark.parametrize("build, named", [
    (lambda o: tn.optim.LambdaLR(o, lambda e: 0.9 ** e), "LambdaLR"),
    (lambda o: tn.optim.CyclicLR(o, 0.01, 0.1), "CyclicLR"),
    (lambda o: tn.optim.OneCycleLR(o, 0.1, total_steps=10), "OneCycleLR"),
    (lambda o: tn.optim.CosineAnnealingWarmRestarts(o, 5), "CosineAnnealingWarmRestarts"),
    (lambda o: tn.optim.CosineAnnealingLR(o, 10, eta_min=0.001), "eta_min=0.001"),
    (lambda o: tn.optim.SequentialLR(o, [tn.optim.StepLR(o, 2), tn.optim.ConstantLR(o)], [3]),
     "SequentialLR"),
])
def test_a_chain_refuses_schedules_that_are_no_factor(build, named):
    opt = optimizers()
    schedule = build(opt)
    with pytest.raises(ValueError, match=f"schedulers\\[1\\] is .*{named}.*not its base lr "
                                         f"times a factor"):
        tn.optim.ChainedScheduler([tn.optim.ExponentialLR(opt, 0.9), schedule])


def test_a_chain_composes_where_two_schedules_alone_do_not():
    opt = optimizers(lrs=(1.0,))
    warmup, decay = tn.optim.ConstantLR(opt, 0.5, 3), tn.optim.ExponentialLR(opt, 0.5)
    warmup.step(), decay.step()
    assert opt.param_groups[0]["lr"] == 0.5  # the last one stepped wins
    chain = tn.optim.ChainedScheduler([warmup, decay])
    assert chain.get_last_lr() == [0.25] == [opt.param_groups[0]["lr"]]
    seen = []
    for _ in range(4):
        chain.step()
        seen.append(chain.get_last_lr()[0])
    assert seen == [0.125, 0.125, 0.0625, 0.03125]  # warm-up ends at epoch 3
    assert (warmup.last_epoch, decay.last_epoch, chain.last_epoch) == (5, 5, 5)
    assert warmup.get_last_lr() == [1.0] and decay.get_last_lr() == [0.5 ** 5]


def test_a_chain_loads_all_or_nothing():
    opt = optimizers()
    chain = tn.optim.ChainedScheduler([tn.optim.StepLR(opt, 2), tn.optim.ConstantLR(opt)])
    for _ in range(3):
        chain.step()
    good = chain.state_dict()
    bad = {"schedulers": [dict(good["schedulers"][0], last_epoch=9),
                          dict(good["schedulers"][1], factor=2.0)]}
    before = (chain.state_dict(), chain.get_last_lr(), [g["lr"] for g in opt.param_groups])
    with pytest.raises(ValueError, match="schedulers\\[1\\] \\(ConstantLR\\).*factor"):
        chain.load_state_dict(bad)
    assert (chain.state_dict(), chain.get_last_lr(),
            [g["lr"] for g in opt.param_groups]) == before
    for state, needle in [({"schedulers": good["schedulers"][:1]}, "a list of 2"),
                          ({**good, "last_epoch": 3}, "expected the key"), ([], "got list")]:
        with pytest.raises(ValueError, match=needle):
            chain.load_state_dict(state)
    assert chain.state_dict() == before[0]


def test_a_chain_refuses_a_state_that_makes_a_schedule_no_factor():
    opt = optimizers()
    chain = tn.optim.ChainedScheduler([tn.optim.ExponentialLR(opt, 0.9),
                                       tn.optim.CosineAnnealingLR(opt, 10)])
    chain.step()
    state = chain.state_dict()
    state["schedulers"][1]["eta_min"] = 0.001
    before = (chain.state_dict(), [g["lr"] for g in opt.param_groups])
    with pytest.raises(ValueError, match="eta_min=0.001.*not its base lr times a factor"):
        chain.load_state_dict(state)
    assert (chain.state_dict(), [g["lr"] for g in opt.param_groups]) == before
