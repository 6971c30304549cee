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



# ---------------------------------------------------------------------- groups added later
JOINING = {  # schedules whose only per-group argument is the base lr
    "StepLR": lambda o: tn.optim.StepLR(o, 2, 0.5),
    "ConstantLR": lambda o: tn.optim.ConstantLR(o, 0.25, 3),
    "PolynomialLR": lambda o: tn.optim.PolynomialLR(o, 6, 2.0),
    "LambdaLR": lambda o: tn.optim.LambdaLR(o, lambda e: 0.9 ** e),
    "ChainedScheduler": lambda o: tn.optim.ChainedScheduler(
        [tn.optim.ConstantLR(o, 0.5, 2), tn.optim.ExponentialLR(o, 0.9)]),
    "SequentialLR": lambda o: tn.optim.SequentialLR(
        o, [tn.optim.LinearLR(o, 0.2, 1.0, 2), tn.optim.PolynomialLR(o, 5)], [2]),
}
REFUSING = {  # schedules with other per-group arguments
    "CyclicLR": lambda o: tn.optim.CyclicLR(o, 0.01, 0.1, 2),
    "OneCycleLR": lambda o: tn.optim.OneCycleLR(o, 0.1, total_steps=20),
    "LambdaLR-per-group": lambda o: tn.optim.LambdaLR(o, [lambda e: 0.9 ** e] * 2),
    "SequentialLR-CyclicLR": lambda o: tn.optim.SequentialLR(
        o, [tn.optim.ConstantLR(o, 0.5, 2), tn.optim.CyclicLR(o, 0.01, 0.1, 2)], [2]),
}


def _lrs(opt):
    return [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("name", list(JOINING) + list(REFUSING))
def test_a_group_added_without_a_base_lr_is_refused_at_the_next_step(name):
    """The schedules set the lrs of the groups they were built with: a group added later
    (add_param_group, unfreezing layers) kept its lr for the rest of the run, silently
    (torch rescales it, or raises for CyclicLR)."""
    opt = optimizers()
    schedule = {**JOINING, **REFUSING}[name](opt)
    schedule.step()
    opt.add_param_group({"params": [Parameter(np.zeros(2, np.float32))], "lr": 0.5})
    before = (schedule.last_epoch, _lrs(opt))
    needle = "group 2 was added .*'initial_lr'" if name in JOINING else "build the schedule"
    with pytest.raises(ValueError, match=f"the optimizer has 3 parameter groups, the schedule "
                                         f"2.*{needle}"):
        schedule.step()
    assert (schedule.last_epoch, _lrs(opt)) == before


@pytest.mark.parametrize("name", list(JOINING))
def test_a_group_added_with_its_initial_lr_joins_the_schedule(name, tmp_path):
    """From the next step its lr is its initial_lr times the schedule's factor, as if it had
    been there from the start; the state holds its base lr."""
    opt, twin = optimizers(), optimizers(lrs=(0.1, 0.02, 0.5))
    schedule, reference = JOINING[name](opt), JOINING[name](twin)
    for _ in range(2):
        schedule.step()
        reference.step()
    opt.add_param_group({"params": [Parameter(np.zeros(2, np.float32))], "lr": 0.5,
                         "initial_lr": 0.5})
    for _ in range(6):
        schedule.step()
        reference.step()
        assert _lrs(opt) == _lrs(twin) == schedule.get_last_lr()
    resumed_opt = optimizers(lrs=(0.1, 0.02, 0.5))
    resumed = JOINING[name](resumed_opt)
    tn.save({"s": schedule.state_dict()}, tmp_path / "s.safetensors")
    resumed.load_state_dict(tn.load(tmp_path / "s.safetensors")["s"])
    schedule.step()
    resumed.step()
    assert _lrs(resumed_opt) == _lrs(opt)


def test_a_group_removed_is_refused():
    opt = optimizers()
    schedule = tn.optim.ExponentialLR(opt, 0.5)
    opt.param_groups.pop()
    with pytest.raises(ValueError, match="ExponentialLR: the optimizer has 1 parameter groups, "
                                         "the schedule 2"):
        schedule.step()


# ---------------------------------------------------------------------- in tn.fit
def _fit_parts():
    tn.manual_seed(0)
    model = tn.nn.Sequential(tn.nn.Linear(4, 3))
    opt = tn.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    data = tn.data.ArrayDataset(rng.standard_normal((32, 4)).astype(np.float32),
                                rng.integers(0, 3, 32))
    return model, opt, tn.data.DataLoader(data, 8), tn.data.DataLoader(data, 32)


@pytest.mark.parametrize("first, second", [
    (lambda o: tn.optim.CyclicLR(o, 0.01, 0.1, 3), lambda o: tn.optim.ReduceLROnPlateau(o)),
    (lambda o: tn.optim.StepLR(o, 2), lambda o: tn.optim.ReduceLROnPlateau(o, patience=0)),
    (lambda o: tn.optim.ConstantLR(o, 0.5, 2), lambda o: tn.optim.ExponentialLR(o, 0.9)),
], ids=["CyclicLR-ReduceLROnPlateau", "StepLR-ReduceLROnPlateau", "ConstantLR-ExponentialLR"])
def test_fit_refuses_two_schedules_of_its_optimizer(first, second):
    """Each writes its own lr: the plateau's cut was undone at the other's next step (the
    next batch for CyclicLR), two epoch schedules gave the last one's lr, and checkpoints
    kept only the first one's state, so a resumed run differed from an uninterrupted one."""
    model, opt, train, val = _fit_parts()
    a, b = first(opt), second(opt)
    before = [np.array(p.data) for p in model.parameters()]
    with pytest.raises(ValueError, match=f"fit: {type(a).__name__} and {type(b).__name__} both "
                                         f"set the lr of the optimizer.*ChainedScheduler"):
        tn.fit(model, tn.nn.CrossEntropyLoss(), opt, train, val, epochs=2, scheduler=a,
               callbacks=[tn.callbacks.LearningRateScheduler(b)], verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


def test_fit_refuses_a_schedule_also_stepped_inside_a_chain_it_is_given():
    model, opt, train, _ = _fit_parts()
    warmup = tn.optim.ConstantLR(opt, 0.5, 2)
    chain = tn.optim.ChainedScheduler([warmup, tn.optim.ExponentialLR(opt, 0.9)])
    with pytest.raises(ValueError, match="ChainedScheduler and ConstantLR both set the lr"):
        tn.fit(model, tn.nn.CrossEntropyLoss(), opt, train, scheduler=chain, verbose=0,
               callbacks=[tn.callbacks.LearningRateScheduler(warmup)])


def test_fit_takes_schedules_of_other_optimizers_in_callbacks():
    """A callback may drive an optimizer of its own (one fit does not step)."""
    model, opt, train, _ = _fit_parts()
    other = optimizers()
    schedule = tn.optim.StepLR(other, 1, 0.5)
    tn.fit(model, tn.nn.CrossEntropyLoss(), opt, train, epochs=2, verbose=0,
           scheduler=tn.optim.ExponentialLR(opt, 0.9),
           callbacks=[tn.callbacks.LearningRateScheduler(schedule)])
    assert schedule.last_epoch == 2 and opt.param_groups[0]["lr"] == pytest.approx(0.081)


def test_fit_refuses_a_group_that_cannot_join_its_schedule_before_training():
    model, opt, train, _ = _fit_parts()
    schedule = tn.optim.StepLR(opt, 1, 0.5)
    extra = Parameter(np.zeros(2, np.float32))
    opt.add_param_group({"params": [extra], "lr": 0.5})
    before = [np.array(p.data) for p in model.parameters()]
    with pytest.raises(ValueError, match="StepLR: .*group 1 was added"):
        tn.fit(model, tn.nn.CrossEntropyLoss(), opt, train, scheduler=schedule, verbose=0)
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: step order
def test_a_sequential_inside_a_sequential_runs_on_the_outer_epochs():
    """The inner one switches at its milestone 3, the outer one at 6 (torch's inner one
    switches at 2: a documented difference)."""
    def build(m, o):
        inner = m.SequentialLR(o, [m.ConstantLR(o, 0.5, 100), m.ExponentialLR(o, 0.5)], [3])
        return m.SequentialLR(o, [inner, m.ConstantLR(o, 0.25, 100)], [6])
    opt = optimizers(lrs=(1.0,))
    schedule, seen = build(tn.optim, opt), []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        schedule.step()
    assert seen == [0.5, 0.5, 0.5, 1.0, 0.5, 0.25, 0.25, 0.25]
    torch = torch_or_skip()
    _, theirs = optimizers(lrs=(1.0,), torch=torch)
    reference, seen = build(torch.optim.lr_scheduler, theirs), []
    for _ in range(4):
        seen.append(theirs.param_groups[0]["lr"])
        reference.step()
    assert seen == [0.5, 0.5, 1.0, 0.5]


@pytest.mark.parametrize("schedule_of, optimizer_of", [
    (lambda o: tn.optim.CyclicLR(o, 0.001, 0.02, 3, 5, mode="triangular2"),
     lambda p: tn.optim.Adam(p, lr=0.01, amsgrad=True, weight_decay=0.01)),
    (lambda o: tn.optim.SequentialLR(o, [tn.optim.LinearLR(o, 0.2, 1.0, 2),
                                         tn.optim.CyclicLR(o, 0.001, 0.02, 5)], [2]),
     lambda p: tn.optim.RMSprop(p, lr=0.005, centered=True, momentum=0.5)),
    (lambda o: tn.optim.ChainedScheduler([tn.optim.ConstantLR(o, 0.3, 2),
                                          tn.optim.PolynomialLR(o, 10, 1.5)]),
     lambda p: tn.optim.AdamW(p, lr=0.01, amsgrad=True)),
], ids=["CyclicLR-Adam-amsgrad", "SequentialLR-RMSprop-centered", "Chained-AdamW-amsgrad"])
def test_fit_resumed_from_a_model_checkpoint_is_bit_identical(schedule_of, optimizer_of,
                                                               tmp_path):
    def parts(seed):
        tn.manual_seed(seed)
        model = tn.models.mlp((2, 16, 3), dropout=0.2)
        opt = optimizer_of(model.parameters())
        x, y = tn.data.toy_spirals(n=200, seed=0)
        train = tn.data.DataLoader(tn.data.ArrayDataset(x[:160], y[:160]), 32, shuffle=True)
        val = tn.data.DataLoader(tn.data.ArrayDataset(x[160:], y[160:]), 64)
        return model, opt, schedule_of(opt), train, val

    loss = tn.nn.CrossEntropyLoss()
    model, opt, schedule, train, val = parts(0)
    tn.fit(model, loss, opt, train, val, epochs=5, scheduler=schedule, verbose=0,
           callbacks=[tn.callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}.safetensors"))])
    straight = [np.array(p.data) for p in model.parameters()]
    model, opt, schedule, train, val = parts(7)  # everything that matters from the file
    state = tn.load_checkpoint(tmp_path / "e2.safetensors", model, opt, scheduler=schedule,
                               loader=train)
    tn.fit(model, loss, opt, train, val, epochs=5, scheduler=schedule, verbose=0,
           initial_epoch=state["epoch"])
    for p, want in zip(model.parameters(), straight):
        np.testing.assert_array_equal(p.data, want)
