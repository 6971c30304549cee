"""Schedules of schedules: SequentialLR (one after another)."""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping

from .lr_scheduler import LRScheduler, _milestones


class SequentialLR(LRScheduler):
    """Schedules one after another (e.g. LinearLR warm-up, then CosineAnnealingLR):
    ``schedulers[i]`` runs from ``milestones[i-1]`` (its own epoch 0 there) until
    ``milestones[i]``. All must drive ``optimizer``; ``state_dict`` holds the epoch, the base
    lrs, the milestones and every schedule's state (rebuild the inner schedules with their
    functions, if any, before loading). A schedule here may itself be a SequentialLR; it is
    stepped per batch when one of its schedules is."""

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
