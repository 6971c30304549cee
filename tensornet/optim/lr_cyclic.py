"""CyclicLR: the lr cycles between two bounds, stepped after every batch."""
from __future__ import annotations

import math
import numbers

from .lr_one_cycle import _per_group, check_momentum, write_momentum
from .lr_scheduler import LRScheduler, _positive, _positive_int
from .optimizer import Optimizer, non_negative, real

# mode -> (scale of the amplitude at x, what x is), as in Smith's paper and PyTorch;
# triangular2's 0.5 ** (x - 1) is PyTorch's 1 / 2.0 ** (x - 1), which overflows at cycle 1025
_MODES = {"triangular": (lambda x, gamma: 1.0, "cycle"),
          "triangular2": (lambda x, gamma: 0.5 ** (x - 1), "cycle"),
          "exp_range": (lambda x, gamma: gamma ** x, "iterations")}


class CyclicLR(LRScheduler):
    """Smith, "Cyclical Learning Rates for Training Neural Networks" (WACV 2017), as
    ``torch.optim.lr_scheduler.CyclicLR``.

    Call ``step()`` after every batch (``tn.fit`` does, for this schedule): ``last_epoch``
    counts batches. Each cycle the lr climbs linearly from ``base_lr`` towards ``max_lr``
    for ``step_size_up`` steps and back for ``step_size_down`` (default: the same):
    ``lr = base_lr + (max_lr - base_lr) * height * scale``, ``height`` the triangle in
    [0, 1] and ``scale`` 1 (``mode="triangular"``), halved every cycle (``"triangular2"``)
    or ``gamma ** step`` (``"exp_range"``). A ``scale_fn(x)`` replaces the mode; ``x`` is
    the cycle number from 1 (``scale_mode="cycle"``) or the step (``"iterations"``). With
    ``cycle_momentum`` the momentum (SGD's ``momentum``, Adam's ``betas[0]``) moves the
    other way, ``max_momentum - (max_momentum - base_momentum) * height * scale``; momenta
    the optimizer refuses (below 0, Adam's ``betas[0]`` of 1) are refused here.
    ``base_lr``, ``max_lr`` and the momenta take one value or one per parameter group; the
    base lrs are ``base_lr``, not the groups' lrs. ``scale_fn`` is not saved by
    ``state_dict`` (rebuild the schedule with it before loading).
    """

    hyper = ("max_lrs", "step_size_up", "step_size_down", "mode", "gamma", "scale_mode",
             "cycle_momentum", "base_momentums", "max_momentums")
    per_batch = True
    _joins_added_groups = False  # max_lr and the momenta are per group

    def __init__(self, optimizer, base_lr, max_lr, step_size_up: int = 2000,
                 step_size_down: int | None = None, mode: str = "triangular",
                 gamma: float = 1.0, scale_fn=None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum=0.8, max_momentum=0.9,
                 last_epoch: int = -1):
        name = "CyclicLR"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: expected a tensornet Optimizer, got "
                            f"{type(optimizer).__name__}")
        if scale_fn is not None and not callable(scale_fn):
            raise ValueError(f"{name}: scale_fn must be a function of one number (or None), "
                             f"got {scale_fn!r}")
        groups = len(optimizer.param_groups)
        self._scale_fn_custom = scale_fn
        self._own_base_lrs = [non_negative(name, "base_lr[i]", lr)
                              for lr in _per_group(name, "base_lr", base_lr, groups)]
        self.max_lrs = _per_group(name, "max_lr", max_lr, groups)
        self.step_size_up = step_size_up
        self.step_size_down = step_size_up if step_size_down is None else step_size_down
        self.mode, self.gamma, self.scale_mode = mode, gamma, scale_mode
        self.cycle_momentum = cycle_momentum
        self.base_momentums = _per_group(name, "base_momentum", base_momentum, groups)
        self.max_momentums = _per_group(name, "max_momentum", max_momentum, groups)
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        name = "CyclicLR"
        groups = len(self.optimizer.param_groups)
        for key in ("max_lrs", "base_momentums", "max_momentums"):  # a loaded state's too
            if not isinstance(values[key], (list, tuple)) or len(values[key]) != groups:
                raise ValueError(f"{name}: {key[:-1]} needs one value per parameter group "
                                 f"({groups}), got {values[key]!r}")
        values["max_lrs"] = [non_negative(name, "max_lr[i]", v) for v in values["max_lrs"]]
        values["step_size_up"] = _positive_int(name, "step_size_up", values["step_size_up"])
        down = values["step_size_down"]
        if isinstance(down, bool) or not isinstance(down, numbers.Integral) or down < 0:
            raise ValueError(f"{name}: step_size_down must be an integer >= 0 (or None: "
                             f"step_size_up), got {down!r}")
        values["step_size_down"] = int(down)
        if values["scale_mode"] not in ("cycle", "iterations"):
            raise ValueError(f"{name}: scale_mode must be 'cycle' or 'iterations', got "
                             f"{values['scale_mode']!r}")
        if self._scale_fn_custom is None:
            if values["mode"] not in tuple(_MODES):
                raise ValueError(f"{name}: mode must be 'triangular', 'triangular2' or "
                                 f"'exp_range' (or pass scale_fn), got {values['mode']!r}")
            values["scale_mode"] = _MODES[values["mode"]][1]  # the mode fixes it, as PyTorch
        values["gamma"] = _positive(name, "gamma", values["gamma"])
        values["cycle_momentum"] = bool(values["cycle_momentum"])
        for key in ("base_momentums", "max_momentums"):
            values[key] = [real(name, f"{key}[i]", v) for v in values[key]]
        if values["cycle_momentum"]:
            check_momentum(name, self.optimizer, [("base_momentum", values["base_momentums"]),
                                                  ("max_momentum", values["max_momentums"])])

    @property
    def total_size(self) -> float:
        """Steps per cycle."""
        return float(self.step_size_up + self.step_size_down)

    @property
    def step_ratio(self) -> float:
        """The rising part of a cycle."""
        return self.step_size_up / self.total_size

    def scale_fn(self, x) -> float:
        """The amplitude's scale at ``x`` (the cycle number or the step: ``scale_mode``)."""
        if self._scale_fn_custom is not None:
            return self._scale_fn_custom(x)
        return _MODES[self.mode][0](x, self.gamma)

    def _height(self, step: int) -> tuple[float, float]:
        """(height of the triangle in [0, 1], scale of the amplitude) at ``step``."""
        cycle = math.floor(1 + step / self.total_size)
        x = 1.0 + step / self.total_size - cycle
        if x <= self.step_ratio:
            height = x / self.step_ratio
        else:
            height = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else step)
        return height, real("CyclicLR", "scale_fn(x)", scale)

    def _group_lr(self, index, base_lr, epoch):
        height, scale = self._height(epoch)
        return base_lr + (self.max_lrs[index] - base_lr) * height * scale

    def _apply(self) -> None:
        super()._apply()
        if not self.cycle_momentum:
            return
        height, scale = self._height(self.last_epoch)
        write_momentum(self.optimizer, [top - (top - low) * height * scale for low, top
                                        in zip(self.base_momentums, self.max_momentums)])
