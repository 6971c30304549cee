"""Schedules of schedules: SequentialLR (one after another) and ChainedScheduler (all at
once, their factors multiplied)."""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping

from .lr_plateau import ReduceLROnPlateau
from .lr_scheduler import LRScheduler, _milestones
from .optimizer import Optimizer


class _Composite:
    """What SequentialLR and ChainedScheduler do alike: a group added to the optimizer
    joins every schedule they hold, or none."""

    @property
    def _joins_added_groups(self) -> bool:
        return all(scheduler._joins_added_groups for scheduler in self.schedulers)

    def _added_base_lrs(self):
        base_lrs = super()._added_base_lrs()
        for scheduler in self.schedulers:
            scheduler._added_base_lrs()  # raises where one cannot take the group
        return base_lrs

    def _join_added_groups(self, base_lrs):
        for scheduler in {id(s): s for s in self.schedulers}.values():
            scheduler._join_added_groups(scheduler._added_base_lrs())
        super()._join_added_groups(base_lrs)


class SequentialLR(_Composite, LRScheduler):
    """Schedules one after another (e.g. LinearLR warm-up, then CosineAnnealingLR):
    ``schedulers[i]`` runs from ``milestones[i-1]`` (its own epoch 0 there) until
    ``milestones[i]``. All must drive ``optimizer``; ``state_dict`` holds the epoch, the base
    lrs, the milestones and every schedule's state (rebuild the inner schedules with their
    functions, if any, before loading). A schedule here may itself be a SequentialLR or a
    ChainedScheduler; it is stepped per batch when one of its schedules is. A SequentialLR
    inside another runs on the outer one's epochs (PyTorch's runs one epoch ahead: building
    the outer one undoes the first step of the inner one's schedules, not its own)."""

    hyper = ("milestones",)

    def __init__(self, optimizer, schedulers, milestones, last_epoch: int = -1):
        schedulers = list(schedulers)
        for i, scheduler in enumerate(schedulers):
            if not isinstance(scheduler, LRScheduler) or scheduler.optimizer is not optimizer:
                raise ValueError(f"SequentialLR: schedulers[{i}] must be an epoch schedule "
                                 f"(StepLR, LinearLR, ...) of the same optimizer, got "
                                 f"{type(scheduler).__name__}")
        if not schedulers or len(list(milestones)) != len(schedulers) - 1:
            raise ValueError(f"SequentialLR: needs one milestone fewer than schedulers, got "
                             f"{len(schedulers)} schedulers and milestones {list(milestones)}")
        self.schedulers = schedulers
        self.milestones = milestones
        super().__init__(optimizer, last_epoch)

    @property
    def per_batch(self) -> bool:
        """Whether one of the schedules is stepped after every batch (CyclicLR, OneCycleLR)."""
        return any(getattr(scheduler, "per_batch", False) for scheduler in self.schedulers)

    def _check(self, values):
        values["milestones"] = _milestones("SequentialLR", values["milestones"], True)

    def _apply(self) -> None:
        index = bisect_right(self.milestones, self.last_epoch)
        scheduler = self.schedulers[index]
        scheduler.last_epoch = self.last_epoch - (self.milestones[index - 1] if index else 0)
        scheduler._apply()
        self._last_lr = scheduler.get_last_lr()

    def state_dict(self) -> dict:
        """``{"last_epoch", "base_lrs", "milestones", "schedulers": [their states]}``."""
        return {**super().state_dict(),
                "schedulers": [scheduler.state_dict() for scheduler in self.schedulers]}

    def load_state_dict(self, state_dict) -> None:
        """Restore the epoch, the milestones and every schedule (all or none: a state that
        does not fit raises ``ValueError`` and changes nothing). A state without
        ``"schedulers"`` (saved by an older tensornet) keeps the schedules' own."""
        if not isinstance(state_dict, Mapping) or "schedulers" not in state_dict:
            super().load_state_dict(state_dict)
            return
        fail = "SequentialLR.load_state_dict: the state does not fit this schedule"
        before = [scheduler.state_dict() for scheduler in self.schedulers]
        _load_all(self, fail, state_dict["schedulers"])
        try:
            super().load_state_dict({k: v for k, v in state_dict.items() if k != "schedulers"})
        except ValueError:
            _load_all(self, fail, before)
            self._apply()
            raise


class ChainedScheduler(_Composite, LRScheduler):
    """Steps every schedule of ``schedulers`` each ``step()``; the lr is the product of
    their factors: ``lr = base_lr * factor_1(epoch_1) * factor_2(epoch_2) * ...`` (e.g.
    ConstantLR warm-up times ExponentialLR decay), as ``torch.optim.lr_scheduler``'s
    ChainedScheduler.

    PyTorch composes by letting each schedule rescale the lr the previous one wrote; the
    schedules here write closed forms, so the chain multiplies them instead. That needs
    schedules whose lr is the base lr times a factor of the epoch (``chainable``): StepLR,
    MultiStepLR, ExponentialLR, InverseTimeLR, ConstantLR, LinearLR, PolynomialLR,
    CosineAnnealingLR with ``eta_min=0`` and chains of them. Others are refused: in PyTorch
    their lr ignores what came before (LambdaLR, CyclicLR, OneCycleLR, SequentialLR,
    CosineAnnealingWarmRestarts) or is no product (CosineAnnealingLR's ``eta_min``).
    One difference: the cosine factor is 0 at ``T_max``, so at ``T_max + 1`` PyTorch's
    chained CosineAnnealingLR adds its next value to the lr instead of rescaling it, which
    drops what the other schedules had applied until then; here every factor keeps
    applying past ``T_max``.

    ``base_lrs`` are the first schedule's; each schedule keeps its own ``last_epoch``
    (the chain's is the first one's; setting it moves all by the same amount, which is how
    SequentialLR runs a chain) and its ``get_last_lr()`` gives the lrs it alone would set.
    ``state_dict`` holds every schedule's state.
    """

    chainable = True

    def __init__(self, schedulers, optimizer=None):
        name = "ChainedScheduler"
        if isinstance(schedulers, (LRScheduler, str, Mapping)) \
                or not isinstance(schedulers, Iterable):
            raise TypeError(f"{name}: expected a list of schedules, got "
                            f"{type(schedulers).__name__}")
        schedulers = list(schedulers)
        if not schedulers:
            raise ValueError(f"{name}: expected at least one schedule to chain, got none")
        for i, scheduler in enumerate(schedulers):
            if isinstance(scheduler, ReduceLROnPlateau):
                raise ValueError(f"{name}: schedulers[{i}] is a ReduceLROnPlateau, which steps "
                                 f"on a monitored value and cannot be chained; step it "
                                 f"yourself (or through tn.fit's callbacks)")
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(f"{name}: schedulers[{i}] must be an epoch schedule "
                                f"(StepLR, ConstantLR, ...), got {type(scheduler).__name__}")
        if optimizer is None:
            optimizer = schedulers[0].optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: expected a tensornet Optimizer, got "
                            f"{type(optimizer).__name__}")
        for i, scheduler in enumerate(schedulers):
            if scheduler.optimizer is not optimizer:
                raise ValueError(f"{name}: schedulers[{i}] ({type(scheduler).__name__}) "
                                 f"drives another optimizer; all must drive the same one")
        _refuse_unchainable(name, schedulers)
        seen = set()
        for scheduler in _leaves(schedulers):
            if id(scheduler) in seen:  # it would move two epochs a step, its factor squared
                raise ValueError(f"{name}: {scheduler!r} is chained more than once; chain "
                                 f"each schedule once")
            seen.add(id(scheduler))
        self.optimizer = optimizer
        self.schedulers = schedulers
        self.base_lrs = list(schedulers[0].base_lrs)
        self._apply()

    @property
    def last_epoch(self) -> int:
        return self.schedulers[0].last_epoch

    @last_epoch.setter
    def last_epoch(self, epoch: int) -> None:
        shift = epoch - self.schedulers[0].last_epoch
        for scheduler in self.schedulers:
            scheduler.last_epoch += shift

    def _group_lr(self, index, base_lr, epoch):
        shift = epoch - self.last_epoch
        lr = base_lr
        for scheduler in self.schedulers:
            lr *= scheduler._group_lr(index, 1.0, scheduler.last_epoch + shift)
        return lr

    def _apply(self) -> None:
        super()._apply()
        _note_own_lrs(self.schedulers)

    def state_dict(self) -> dict:
        """``{"schedulers": [each schedule's state_dict()]}``."""
        return {"schedulers": [scheduler.state_dict() for scheduler in self.schedulers]}

    def load_state_dict(self, state_dict) -> None:
        """Restore every schedule (all or none: a state that does not fit raises
        ``ValueError`` and leaves the chain unchanged) and apply the chain's lr."""
        fail = "ChainedScheduler.load_state_dict: the state does not fit this chain"
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"schedulers"}:
            raise ValueError(f"{fail}: expected the key ['schedulers'], got "
                             f"{_keys(state_dict)}; the chain was left unchanged")
        before = self.state_dict()
        _load_all(self, fail, state_dict["schedulers"])
        try:  # a state may turn CosineAnnealingLR's eta_min on
            _refuse_unchainable(fail, self.schedulers)
        except ValueError:
            _load_all(self, fail, before["schedulers"])
            self._apply()
            raise
        self.base_lrs = list(self.schedulers[0].base_lrs)
        self._apply()

    def __repr__(self) -> str:
        return f"ChainedScheduler([{', '.join(map(repr, self.schedulers))}])"


def _refuse_unchainable(owner: str, schedulers) -> None:
    for i, scheduler in enumerate(schedulers):
        if not scheduler.chainable:
            raise ValueError(
                f"{owner}: schedulers[{i}] is {scheduler!r}, whose lr is not its base lr "
                f"times a factor of the epoch, so it does not compose by multiplying; chain "
                f"StepLR, MultiStepLR, ExponentialLR, InverseTimeLR, ConstantLR, LinearLR, "
                f"PolynomialLR or CosineAnnealingLR(eta_min=0), or run schedules one after "
                f"another with SequentialLR")


def _leaves(schedulers):
    """The schedules of ``schedulers``, those of the chains among them included."""
    for scheduler in schedulers:
        if isinstance(scheduler, ChainedScheduler):
            yield from _leaves(scheduler.schedulers)
        else:
            yield scheduler


def _note_own_lrs(schedulers) -> None:
    """Each schedule's ``get_last_lr()``: the lrs it alone would set (PyTorch's members
    report the lr after their own rescaling, a partial product no closed form gives)."""
    for scheduler in schedulers:
        scheduler._last_lr = [scheduler._group_lr(i, base, scheduler.last_epoch)
                              for i, base in enumerate(scheduler.base_lrs)]
        if isinstance(scheduler, ChainedScheduler):
            _note_own_lrs(scheduler.schedulers)


def _load_all(owner, fail: str, states) -> None:
    """Load one state into each of ``owner``'s schedules, all or none: on a misfit the ones
    loaded are put back, ``owner``'s lr is applied again and ValueError names the schedule."""
    schedulers = owner.schedulers
    if not isinstance(states, (list, tuple)) or len(states) != len(schedulers):
        raise ValueError(f"{fail}: expected a list of {len(schedulers)} schedule states, got "
                         f"{len(states) if isinstance(states, (list, tuple)) else _keys(states)}"
                         f"; nothing was changed")
    before = [scheduler.state_dict() for scheduler in schedulers]
    for i, (scheduler, state) in enumerate(zip(schedulers, states)):
        try:
            scheduler.load_state_dict(state)
        except ValueError as exc:
            for done, old in zip(schedulers[:i], before):
                done.load_state_dict(old)
            owner._apply()
            raise ValueError(f"{fail}: schedulers[{i}] ({type(scheduler).__name__}): {exc}; "
                             f"nothing was changed") from None


def _keys(state) -> str:
    if isinstance(state, Mapping):
        return f"keys {sorted(map(str, state))}"
    return type(state).__name__
