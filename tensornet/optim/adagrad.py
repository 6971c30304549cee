"""Adagrad: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, non_negative


def _adagrad(xp, param, grad, sum, *, lr, eps):  # noqa: A002 - PyTorch's state name
    sum += grad * grad
    param -= lr * grad / (xp.sqrt(sum) + eps)


RULE = FusedUpdate("adagrad", ("sum",), ("lr", "eps"), _adagrad,
                   "const T a = sum + grad * grad;\n"
                   "sum = a;\n"
                   "param -= lr * grad / (sqrt(a) + eps);")


class Adagrad(Optimizer):
    """Adagrad: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
    and Stochastic Optimization" (JMLR 2011).

    As PyTorch's ``torch.optim.Adagrad``, with step count ``t`` (per parameter, from 1)::

        g   = -g  if maximize
        g   = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s   = s + g^2                      (s starts at initial_accumulator_value)
        p   = p - clr * g / (sqrt(s) + eps)

    State per parameter: ``step`` (int) and ``sum`` (s).
    """

    state_kinds = {"step": COUNT, "sum": ARRAY}
    required_state = ("step", "sum")
    rules = (RULE,)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, maximize=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        for key in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            group[key] = non_negative(name, key, group[key])

    def _rule(self, group):
        return RULE

    def _state_fills(self, group):
        return {"sum": group["initial_accumulator_value"]}

    def _scalars(self, group, state, fresh):
        lr = group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])
        return {"lr": lr, "eps": group["eps"]}
