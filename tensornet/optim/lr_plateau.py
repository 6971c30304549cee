"""ReduceLROnPlateau: cut the lr when a monitored value stops improving."""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from .optimizer import Optimizer, in_range, non_negative


def _count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"ReduceLROnPlateau: {name} must be an integer >= 0, got {value!r}")
    return int(value)


class ReduceLROnPlateau:
    """As ``torch.optim.lr_scheduler.ReduceLROnPlateau``: ``step(metric)`` once per epoch
    with the monitored value (``tn.fit`` passes ``val_loss`` by default; see
    ``tn.callbacks.LearningRateScheduler(monitor=...)``).

    A value improves on the best so far when it is below ``best * (1 - threshold)``
    (``mode="min"``, ``threshold_mode="rel"``), below ``best - threshold`` (``"abs"``), or
    above ``best * (1 + threshold)`` / ``best + threshold`` in ``mode="max"``. After more
    than ``patience`` epochs without improvement every group's lr becomes
    ``max(lr * factor, min_lr)`` (changes smaller than ``eps`` are skipped), then
    ``cooldown`` epochs pass before bad epochs count again.
    """

    needs_metric = True
    _STATE = ("last_epoch", "best", "num_bad_epochs", "cooldown_counter", "mode", "factor",
              "patience", "threshold", "threshold_mode", "cooldown", "min_lrs", "eps")

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr=0.0, eps: float = 1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"ReduceLROnPlateau: expected a tensornet Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        groups = len(optimizer.param_groups)
        per_group = isinstance(min_lr, (list, tuple))
        min_lrs = list(min_lr) if per_group else [min_lr] * groups
        if len(min_lrs) != groups:
            raise ValueError(f"ReduceLROnPlateau: expected {groups} min_lrs (one per parameter "
                             f"group), got {len(min_lrs)}")
        values = dict(mode=mode, factor=factor, patience=patience, threshold=threshold,
                      threshold_mode=threshold_mode, cooldown=cooldown, min_lrs=min_lrs, eps=eps)
        self.__dict__.update(self._checked(values))
        # A single min_lr also applies to groups added to the optimizer later, as PyTorch.
        self.default_min_lr = None if per_group else self.min_lrs[0]
        self.last_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = self.cooldown_counter = 0
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups]

    @staticmethod
    def _checked(values: dict) -> dict:
        name = "ReduceLROnPlateau"
        if values["mode"] not in ("min", "max"):
            raise ValueError(f"{name}: mode must be 'min' or 'max', got {values['mode']!r}")
        if values["threshold_mode"] not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode must be 'rel' or 'abs', got "
                             f"{values['threshold_mode']!r}")
        values["factor"] = in_range(name, "factor", values["factor"], 0.0, 1.0, True)
        values["patience"] = _count("patience", values["patience"])
        values["cooldown"] = _count("cooldown", values["cooldown"])
        values["threshold"] = non_negative(name, "threshold", values["threshold"])
        values["eps"] = non_negative(name, "eps", values["eps"])
        values["min_lrs"] = [non_negative(name, "min_lr", v) for v in values["min_lrs"]]
        return values

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by the threshold."""
        best, threshold = self.best, self.threshold
        if self.mode == "min":
            bound = best * (1.0 - threshold) if self.threshold_mode == "rel" else best - threshold
            return value < bound
        bound = best * (1.0 + threshold) if self.threshold_mode == "rel" else best + threshold
        return value > bound

    def step(self, metric) -> None:
        """Record one epoch's monitored value; reduce the lrs after a plateau."""
        value = float(metric)  # NaN never improves: it counts as a bad epoch, as PyTorch
        self._match_groups()  # before anything changes
        self.last_epoch += 1
        if self.improves(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
                old = float(group["lr"])
                new = max(old * self.factor, floor)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def _match_groups(self) -> None:
        """One min_lr per parameter group, also for groups added since construction."""
        groups = len(self.optimizer.param_groups)
        if len(self.min_lrs) == groups:
            return
        if self.default_min_lr is None:
            raise ValueError(f"ReduceLROnPlateau: the optimizer has {groups} parameter groups, "
                             f"but min_lr lists {len(self.min_lrs)} (a group was added after "
                             f"the schedule was built?); set scheduler.min_lrs to one value "
                             f"per group")
        self.min_lrs = [self.default_min_lr] * groups

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """The counters, the best value and the hyper-parameters (plain Python values)."""
        return {key: (list(getattr(self, key)) if key == "min_lrs" else getattr(self, key))
                for key in self._STATE}

    def load_state_dict(self, state_dict) -> None:
        """Restore a state from ``state_dict()``; a wrong one raises ``ValueError`` and
        leaves the schedule unchanged."""
        fail = "ReduceLROnPlateau.load_state_dict: the state does not fit this schedule"
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(self._STATE):
            got = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)
            raise ValueError(f"{fail}: expected keys {sorted(self._STATE)}, got {got}")
        try:
            values = self._checked({k: state_dict[k] for k in self._STATE
                                    if k not in ("last_epoch", "best", "num_bad_epochs",
                                                 "cooldown_counter")})
            counters = {k: _count(k, state_dict[k])
                        for k in ("last_epoch", "num_bad_epochs", "cooldown_counter")}
            best = float(state_dict["best"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{fail}: {exc}; the schedule was left unchanged") from None
        if len(values["min_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(f"{fail}: {len(values['min_lrs'])} min_lrs for "
                             f"{len(self.optimizer.param_groups)} parameter groups")
        self.__dict__.update(values, **counters, best=best)

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(mode={self.mode!r}, factor={self.factor}, patience="
                f"{self.patience}, threshold={self.threshold}, cooldown={self.cooldown})")
