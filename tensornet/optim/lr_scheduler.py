"""Learning-rate schedules, stepped once per epoch (PyTorch's convention).

Every schedule here has a closed form ``lr(epoch) = f(base_lr, epoch)``; ``step()`` moves
to the next epoch and writes that value into each parameter group's ``"lr"``::

    scheduler = StepLR(optimizer, step_size=10, gamma=0.5)
    for epoch in range(epochs):
        train_one_epoch(...)          # optimizer.step() per batch
        scheduler.step()

Each matches ``torch.optim.lr_scheduler``'s sequence of the same name step for step (up
to rounding: PyTorch multiplies the previous lr where these evaluate the closed form;
nested SequentialLRs and chained cosines differ where PyTorch's do not compose: see them).
Because each writes its closed form, two schedules on one optimizer do not compose by
themselves (the last one stepped wins): ``ChainedScheduler`` composes them. ConstantLR and
PolynomialLR live in ``lr_factor.py``, CyclicLR and OneCycleLR (stepped per batch) in
``lr_cyclic.py`` and ``lr_one_cycle.py``, SequentialLR and ChainedScheduler (schedules of
schedules) in ``lr_composite.py`` and ReduceLROnPlateau (driven by a monitored value) in
``lr_plateau.py``; all are re-exported here.
"""
from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from collections.abc import Mapping

from .optimizer import Optimizer, non_negative, real


def _positive(owner: str, name: str, value) -> float:
    value = real(owner, name, value)
    if value <= 0.0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    return value


def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


class LRScheduler:
    """Base class: sets each group's ``lr`` to ``lr_at(base_lr, epoch)``.

    Args:
        optimizer: the Optimizer whose groups' ``"lr"`` this schedule sets.
        last_epoch: index of the last finished epoch; -1 (default) starts a new schedule
            (base lrs are the groups' current ``lr``, remembered as ``"initial_lr"``).
            Another value resumes one, which needs ``"initial_lr"`` in the groups.

    Construction applies epoch ``last_epoch + 1`` (epoch 0 for a new schedule: ``base_lr``).
    A parameter group added later (``add_param_group``) joins at the next ``step()`` when it
    holds its base lr as ``"initial_lr"``; without one that step raises ``ValueError``, as
    it does for schedules with other per-group arguments (CyclicLR's ``max_lr``).
    Subclasses list their hyper-parameters in ``hyper`` and implement ``lr_at`` and
    ``_check`` (validate and normalise the hyper-parameters, in place on a dict).
    """

    hyper: tuple = ()
    # True where every lr is its base lr times a factor of the epoch alone
    # (``_group_lr(i, base, e) == base * _group_lr(i, 1.0, e)``): ChainedScheduler composes
    # such schedules by multiplying their factors, as PyTorch's chainable forms do.
    chainable = False
    # A schedule whose arguments give its base lrs (CyclicLR's base_lr) sets this list
    # before ``__init__``; the others scale the groups' ``initial_lr``.
    _own_base_lrs: list | None = None
    # Whether a group added to the optimizer later can join with its "initial_lr" alone
    _joins_added_groups = True

    def __init__(self, optimizer, last_epoch: int = -1):
        name = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: expected a tensornet Optimizer, got "
                            f"{type(optimizer).__name__}")
        if isinstance(last_epoch, bool) or not isinstance(last_epoch, numbers.Integral) \
                or last_epoch < -1:
            raise ValueError(f"{name}: last_epoch must be an integer >= -1, got {last_epoch!r}")
        self.optimizer = optimizer  # _check may ask it (CyclicLR: its groups' momenta)
        values = {key: getattr(self, key) for key in self.hyper}
        self._check(values)
        self.__dict__.update(values)
        own = self._own_base_lrs
        if last_epoch == -1:
            for i, group in enumerate(optimizer.param_groups):
                group.setdefault("initial_lr", group["lr"] if own is None else own[i])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(f"{name}: resuming at last_epoch={last_epoch} needs "
                                     f"'initial_lr' in param group {i}; load the optimizer's "
                                     f"state first, or pass last_epoch=-1")
        self.base_lrs = ([float(group["initial_lr"]) for group in optimizer.param_groups]
                         if own is None else list(own))
        self.last_epoch = int(last_epoch)
        self.step()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        raise NotImplementedError

    def _check(self, values: dict) -> None:
        raise NotImplementedError

    def step(self) -> None:
        """Move to the next epoch and set every group's ``lr`` (call once per epoch)."""
        self._join_added_groups(self._added_base_lrs())
        self.last_epoch += 1
        self._apply()

    def _added_base_lrs(self) -> list[float]:
        """The base lrs (``"initial_lr"``) of the groups added to the optimizer since this
        schedule was built; ValueError, with nothing changed, where they cannot join."""
        name, groups, known = type(self).__name__, self.optimizer.param_groups, len(self.base_lrs)
        if len(groups) == known:
            return []
        where = f"{name}: the optimizer has {len(groups)} parameter groups, the schedule {known}"
        if len(groups) < known or not self._joins_added_groups:
            raise ValueError(f"{where}; build the schedule again over these groups (with "
                             f"last_epoch= to go on where it was)")
        for i, group in enumerate(groups[known:], start=known):
            if "initial_lr" not in group:
                raise ValueError(f"{where}: group {i} was added after the schedule was built; "
                                 f"give it the base lr the schedule scales, add_param_group("
                                 f"{{'params': ..., 'initial_lr': base_lr}}) (its lr is then "
                                 f"base_lr times the schedule's factor from the next step)")
        return [non_negative(name, f"initial_lr of group {i}", group["initial_lr"])
                for i, group in enumerate(groups[known:], start=known)]

    def _join_added_groups(self, base_lrs: list) -> None:
        self.base_lrs = self.base_lrs + base_lrs

    def _apply(self) -> None:
        self._last_lr = [self._group_lr(i, base, self.last_epoch)
                         for i, base in enumerate(self.base_lrs)]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def _group_lr(self, index: int, base_lr: float, epoch: int) -> float:
        """The lr of parameter group ``index`` (``lr_at`` unless a schedule is per group)."""
        return self.lr_at(base_lr, epoch)

    def get_last_lr(self) -> list[float]:
        """The lrs of the current epoch, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """``{"last_epoch", "base_lrs", **hyper-parameters}`` (plain Python numbers)."""
        state = {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}
        state.update({key: getattr(self, key) for key in self.hyper})
        return state

    def load_state_dict(self, state_dict) -> None:
        """Restore a schedule and apply its current lr to the optimizer's groups.

        A wrong or incomplete state raises ``ValueError`` and leaves the schedule unchanged.
        """
        name = type(self).__name__
        expected = {"last_epoch", "base_lrs", *self.hyper}
        fail = f"{name}.load_state_dict: the state does not fit this schedule"
        if not isinstance(state_dict, Mapping) or set(state_dict) != expected:
            got = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)
            raise ValueError(f"{fail}: expected keys {sorted(expected)}, got {got}; the "
                             f"schedule was left unchanged")
        values = {key: state_dict[key] for key in self.hyper}
        try:
            self._check(values)
            base_lrs = [non_negative(name, "base_lrs[i]", lr) for lr in state_dict["base_lrs"]]
            last_epoch = state_dict["last_epoch"]
            if isinstance(last_epoch, bool) or int(last_epoch) != last_epoch or last_epoch < 0:
                raise ValueError(f"last_epoch must be an integer >= 0, got {last_epoch!r}")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{fail}: {exc}; the schedule was left unchanged") from None
        if len(base_lrs) != len(self.optimizer.param_groups):
            raise ValueError(f"{fail}: it has {len(base_lrs)} base lrs, the optimizer "
                             f"{len(self.optimizer.param_groups)} parameter groups; the "
                             f"schedule was left unchanged")
        self.__dict__.update(values)
        self.base_lrs = base_lrs
        self.last_epoch = int(last_epoch)
        self._apply()

    def __repr__(self) -> str:
        hyper = ", ".join(f"{key}={getattr(self, key)}" for key in self.hyper)
        return f"{type(self).__name__}({hyper}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)``: decay by ``gamma`` every
    ``step_size`` epochs."""

    chainable = True
    hyper = ("step_size", "gamma")

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        values["step_size"] = _positive_int("StepLR", "step_size", values["step_size"])
        values["gamma"] = _positive("StepLR", "gamma", values["gamma"])

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``."""

    chainable = True
    hyper = ("gamma",)

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        values["gamma"] = _positive("ExponentialLR", "gamma", values["gamma"])

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** epoch


class InverseTimeLR(LRScheduler):
    """Time-based decay (Keras ``InverseTimeDecay``):
    ``lr = base_lr / (1 + decay_rate * epoch / decay_steps)``."""

    chainable = True
    hyper = ("decay_rate", "decay_steps")

    def __init__(self, optimizer, decay_rate: float, decay_steps: float = 1,
                 last_epoch: int = -1):
        self.decay_rate, self.decay_steps = decay_rate, decay_steps
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        values["decay_rate"] = non_negative("InverseTimeLR", "decay_rate", values["decay_rate"])
        values["decay_steps"] = _positive("InverseTimeLR", "decay_steps", values["decay_steps"])

    def lr_at(self, base_lr, epoch):
        return base_lr / (1.0 + self.decay_rate * epoch / self.decay_steps)


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing, Loshchilov & Hutter, "SGDR" (ICLR 2017), without restarts:
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    Reaches ``eta_min`` at epoch ``T_max``; past it the cosine climbs again, as PyTorch's
    closed form does (stop stepping, or pick ``T_max`` = the number of epochs).
    """

    hyper = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    @property
    def chainable(self) -> bool:
        """A factor of the base lr only without a floor (``eta_min == 0``)."""
        return self.eta_min == 0.0

    def _check(self, values):
        values["T_max"] = _positive_int("CosineAnnealingLR", "T_max", values["T_max"])
        values["eta_min"] = non_negative("CosineAnnealingLR", "eta_min", values["eta_min"])

    def lr_at(self, base_lr, epoch):
        cosine = (1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0
        return self.eta_min + (base_lr - self.eta_min) * cosine


def _milestones(owner: str, values, strictly_increasing: bool) -> list[int]:
    """A list of positive int epochs, sorted (and without repeats when strictly)."""
    values = list(values)
    for v in values:
        _positive_int(owner, "milestones[i]", v)
    values = [int(v) for v in values]
    ordered = sorted(values)
    if strictly_increasing and (values != ordered or len(set(values)) != len(values)):
        raise ValueError(f"{owner}: milestones must be strictly increasing, got {values}")
    return ordered


class MultiStepLR(LRScheduler):
    """``lr = base_lr * gamma ** (number of milestones <= epoch)``: decay by ``gamma`` at
    each milestone epoch (a repeated milestone decays twice, as PyTorch)."""

    chainable = True
    hyper = ("milestones", "gamma")

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        self.milestones, self.gamma = milestones, gamma
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        values["milestones"] = _milestones("MultiStepLR", values["milestones"], False)
        values["gamma"] = _positive("MultiStepLR", "gamma", values["gamma"])

    def lr_at(self, base_lr, epoch):
        return base_lr * self.gamma ** bisect_right(self.milestones, epoch)


class LambdaLR(LRScheduler):
    """``lr = base_lr * lr_lambda(epoch)``; ``lr_lambda`` is a function of the epoch or a
    list of them, one per parameter group. The functions are not saved by ``state_dict``
    (only the epoch and base lrs): rebuild the schedule with them before loading."""

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        groups = len(optimizer.param_groups) if isinstance(optimizer, Optimizer) else 0
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * groups
        if len(lambdas) != groups or not all(callable(f) for f in lambdas):
            raise ValueError(f"LambdaLR: lr_lambda must be a function or a list of "
                             f"{groups} functions (one per parameter group), got {lr_lambda!r}")
        self.lr_lambdas = lambdas
        self._joins_added_groups = not isinstance(lr_lambda, (list, tuple))  # one function
        super().__init__(optimizer, last_epoch)

    def _join_added_groups(self, base_lrs):
        self.lr_lambdas = self.lr_lambdas + self.lr_lambdas[:1] * len(base_lrs)
        super()._join_added_groups(base_lrs)

    def _check(self, values):
        pass

    def _group_lr(self, index, base_lr, epoch):
        return base_lr * real("LambdaLR", "lr_lambda(epoch)", self.lr_lambdas[index](epoch))


class LinearLR(LRScheduler):
    """Linear warm-up (or decay) of the factor: ``lr = base_lr * (start_factor +
    (end_factor - start_factor) * min(epoch, total_iters) / total_iters)``, then constant."""

    chainable = True
    hyper = ("start_factor", "end_factor", "total_iters")

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1):
        self.start_factor, self.end_factor = start_factor, end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        start = real("LinearLR", "start_factor", values["start_factor"])
        end = real("LinearLR", "end_factor", values["end_factor"])
        if not 0.0 < start <= 1.0 or not 0.0 <= end <= 1.0:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in "
                             f"[0, 1], got {start} and {end}")
        values["start_factor"], values["end_factor"] = start, end
        values["total_iters"] = _positive_int("LinearLR", "total_iters", values["total_iters"])

    def lr_at(self, base_lr, epoch):
        progress = min(epoch, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR, Loshchilov & Hutter (ICLR 2017): cosine annealing restarted every cycle,
    the first ``T_0`` epochs long and each next one ``T_mult`` times longer:
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2`` with T_cur the
    epochs since the last restart and T_i the current cycle length."""

    hyper = ("T_0", "T_mult", "eta_min")

    def __init__(self, optimizer, T_0: int, T_mult: int = 1, eta_min: float = 0.0,
                 last_epoch: int = -1):
        self.T_0, self.T_mult, self.eta_min = T_0, T_mult, eta_min
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        name = "CosineAnnealingWarmRestarts"
        values["T_0"] = _positive_int(name, "T_0", values["T_0"])
        values["T_mult"] = _positive_int(name, "T_mult", values["T_mult"])
        values["eta_min"] = non_negative(name, "eta_min", values["eta_min"])

    def cycle(self, epoch: int) -> tuple[int, int]:
        """(T_cur, T_i) at ``epoch``: integer arithmetic, exact at every restart."""
        t_cur, t_i = epoch, self.T_0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= self.T_mult
        return t_cur, t_i

    def lr_at(self, base_lr, epoch):
        t_cur, t_i = self.cycle(epoch)
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2


# The schedules of the other files, here too so that ``lr_scheduler.OneCycleLR`` works as
# in PyTorch (they import LRScheduler from this module, hence the late imports).
from .lr_composite import ChainedScheduler, SequentialLR  # noqa: E402, F401
from .lr_cyclic import CyclicLR  # noqa: E402, F401
from .lr_factor import ConstantLR, PolynomialLR  # noqa: E402, F401
from .lr_one_cycle import OneCycleLR  # noqa: E402, F401
from .lr_plateau import ReduceLROnPlateau  # noqa: E402, F401
