"""OneCycleLR: the 1cycle policy, stepped after every batch."""
from __future__ import annotations

import math
import numbers

from .lr_scheduler import LRScheduler, _positive, _positive_int
from .optimizer import Optimizer, in_range, real


def _per_group(owner: str, name: str, value, groups: int) -> list[float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * groups
    if len(values) != groups:
        raise ValueError(f"{owner}: {name} needs one value per parameter group ({groups}), got "
                         f"{len(values)}")
    return [real(owner, f"{name}[i]", v) for v in values]


def check_momentum(owner: str, optimizer, bounds) -> None:
    """A schedule that cycles the momentum needs an optimizer that has one, and that takes
    the momenta it will write: ``bounds`` are ``(name, one value per group)`` pairs, the
    ends of the cycle (refused here, not at the step where the cycle reaches them)."""
    if not {"momentum", "betas"} & set(optimizer.defaults):
        raise ValueError(f"{owner}: cycle_momentum=True needs an optimizer with momentum "
                         f"or betas (SGD, Adam, ...); {type(optimizer).__name__} has "
                         f"neither: pass cycle_momentum=False")
    for name, momenta in bounds:
        for i, (group, momentum) in enumerate(zip(optimizer.param_groups, momenta)):
            trial = dict(group)
            _set_momentum(trial, momentum)
            try:
                optimizer._check_group(trial)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{owner}: {name} {momentum} does not suit parameter group "
                                 f"{i} of {type(optimizer).__name__} ({exc})") from None


def _set_momentum(group: dict, momentum: float) -> None:
    if "betas" in group:
        group["betas"] = (momentum, *tuple(group["betas"])[1:])
    else:
        group["momentum"] = momentum


def write_momentum(optimizer, momenta) -> None:
    """Set each group's momentum (SGD, RMSprop) or ``betas[0]`` (Adam's family)."""
    for group, momentum in zip(optimizer.param_groups, momenta):
        _set_momentum(group, momentum)


class OneCycleLR(LRScheduler):
    """Smith & Topin, "Super-convergence" (2018), as ``torch.optim.lr_scheduler.OneCycleLR``.

    Call ``step()`` after every optimizer step (``tn.fit`` does, for this schedule). Over
    ``total_steps`` (or ``epochs * steps_per_epoch``) steps the lr rises from
    ``max_lr / div_factor`` to ``max_lr`` during the first ``pct_start`` of them, then
    falls to ``max_lr / div_factor / final_div_factor``; ``three_phase`` falls back to the
    start first, then to the minimum. Each phase anneals with a half cosine (``"cos"``) or
    linearly (``"linear"``). With ``cycle_momentum`` the momentum (SGD's ``momentum``,
    Adam's ``betas[0]``) moves the opposite way between ``max_momentum`` and
    ``base_momentum``. Stepping past ``total_steps`` raises an error, as PyTorch.
    """

    hyper = ("total_steps", "max_lrs", "pct_start", "anneal_strategy", "cycle_momentum",
             "base_momentum", "max_momentum", "div_factor", "final_div_factor", "three_phase")
    per_batch = True
    _joins_added_groups = False  # max_lr and the momenta are per group

    def __init__(self, optimizer, max_lr, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=0.85, max_momentum=0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4,
                 three_phase: bool = False, last_epoch: int = -1):
        name = "OneCycleLR"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: expected a tensornet Optimizer, got "
                            f"{type(optimizer).__name__}")
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError(f"{name}: give total_steps, or epochs and steps_per_epoch")
            total_steps = (_positive_int(name, "epochs", epochs)
                           * _positive_int(name, "steps_per_epoch", steps_per_epoch))
        groups = len(optimizer.param_groups)
        self.total_steps, self.pct_start = total_steps, pct_start
        self.max_lrs = _per_group(name, "max_lr", max_lr, groups)
        self.anneal_strategy, self.cycle_momentum = anneal_strategy, cycle_momentum
        self.base_momentum = _per_group(name, "base_momentum", base_momentum, groups)
        self.max_momentum = _per_group(name, "max_momentum", max_momentum, groups)
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.three_phase = three_phase
        if cycle_momentum:
            check_momentum(name, optimizer, [("base_momentum", self.base_momentum),
                                             ("max_momentum", self.max_momentum)])
        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, self.max_lrs):
                group["initial_lr"] = top / float(div_factor)
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        name = "OneCycleLR"
        values["total_steps"] = _positive_int(name, "total_steps", values["total_steps"])
        if isinstance(values["pct_start"], numbers.Integral):
            raise ValueError(f"{name}: pct_start must be a float in [0, 1], got "
                             f"{values['pct_start']!r}")
        values["pct_start"] = in_range(name, "pct_start", values["pct_start"], 0.0, 1.0, False)
        if values["anneal_strategy"] not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got "
                             f"{values['anneal_strategy']!r}")
        for key in ("max_lrs", "base_momentum", "max_momentum"):
            values[key] = [real(name, f"{key}[i]", v) for v in values[key]]
        values["div_factor"] = _positive(name, "div_factor", values["div_factor"])
        values["final_div_factor"] = _positive(name, "final_div_factor",
                                               values["final_div_factor"])
        values["cycle_momentum"] = bool(values["cycle_momentum"])
        values["three_phase"] = bool(values["three_phase"])

    def _phases(self, index: int, initial: float):
        """(end_step, start lr, end lr, start momentum, end momentum) of each phase."""
        top, bottom = self.max_lrs[index], initial / self.final_div_factor
        high, low = self.max_momentum[index], self.base_momentum[index]
        rise = float(self.pct_start * self.total_steps) - 1
        last = self.total_steps - 1
        if self.three_phase:
            return [(rise, initial, top, high, low),
                    (float(2 * self.pct_start * self.total_steps) - 2, top, initial, low, high),
                    (last, initial, bottom, high, high)]
        return [(rise, initial, top, high, low), (last, top, bottom, low, high)]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _position(self, index: int, base_lr: float, step: int) -> tuple[float, float]:
        """(lr, momentum) of group ``index`` at ``step``."""
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, but total_steps is "
                             f"{self.total_steps}")
        phases = self._phases(index, base_lr)
        start = 0.0
        for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
            if step <= end or i == len(phases) - 1:
                pct = (step - start) / (end - start)
                return self._anneal(lr0, lr1, pct), self._anneal(m0, m1, pct)
            start = end
        raise AssertionError("unreachable")

    def _group_lr(self, index, base_lr, epoch):
        return self._position(index, base_lr, epoch)[0]

    def _apply(self) -> None:
        super()._apply()
        if not self.cycle_momentum:
            return
        write_momentum(self.optimizer, [self._position(i, base, self.last_epoch)[1]
                                        for i, base in enumerate(self.base_lrs)])
