"""ConstantLR and PolynomialLR: the base lr times a factor that settles after
``total_iters`` epochs (as ``torch.optim.lr_scheduler``'s schedules of the same names)."""
from __future__ import annotations

from .lr_scheduler import LRScheduler, _positive_int
from .optimizer import in_range, non_negative


class ConstantLR(LRScheduler):
    """``lr = base_lr * factor`` for the first ``total_iters`` epochs, then ``base_lr``
    (a constant warm-up)."""

    hyper = ("factor", "total_iters")
    chainable = True

    def __init__(self, optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1):
        self.factor, self.total_iters = factor, total_iters
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        values["factor"] = in_range("ConstantLR", "factor", values["factor"], 0.0, 1.0, False)
        values["total_iters"] = _positive_int("ConstantLR", "total_iters", values["total_iters"])

    def lr_at(self, base_lr, epoch):
        return base_lr * (self.factor if epoch < self.total_iters else 1.0)


class PolynomialLR(LRScheduler):
    """``lr = base_lr * (1 - min(epoch, total_iters) / total_iters) ** power``: polynomial
    decay to 0 at epoch ``total_iters`` (linear for ``power=1``), then 0."""

    hyper = ("total_iters", "power")
    chainable = True

    def __init__(self, optimizer, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1):
        self.total_iters, self.power = total_iters, power
        super().__init__(optimizer, last_epoch)

    def _check(self, values):
        values["total_iters"] = _positive_int("PolynomialLR", "total_iters",
                                              values["total_iters"])
        # a negative power would grow the lr without bound (and divide by 0 at the end)
        values["power"] = non_negative("PolynomialLR", "power", values["power"])

    def lr_at(self, base_lr, epoch):
        return base_lr * (1.0 - min(epoch, self.total_iters) / self.total_iters) ** self.power
