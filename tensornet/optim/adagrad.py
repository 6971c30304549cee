"""Adagrad."""
from __future__ import annotations

from .optimizer import ARRAY, COUNT, Optimizer, non_negative


class Adagrad(Optimizer):
    """Adagrad: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning
    and Stochastic Optimization" (JMLR 2011).

    As PyTorch's ``torch.optim.Adagrad``, with step count ``t`` (per parameter, from 1)::

        g   = g + weight_decay * p
        clr = lr / (1 + (t - 1) * lr_decay)
        s   = s + g^2                      (s starts at initial_accumulator_value)
        p   = p - clr * g / (sqrt(s) + eps)

    State per parameter: ``step`` (int) and ``sum`` (s).
    """

    state_kinds = {"step": COUNT, "sum": ARRAY}
    required_state = ("step", "sum")

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        for key in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            group[key] = non_negative(name, key, group[key])

    def _update(self, backend, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["sum"] = self._zeros_like(backend, param, group["initial_accumulator_value"])
        state["step"] += 1
        lr = group["lr"] / (1.0 + (state["step"] - 1) * group["lr_decay"])
        backend.adagrad_update(param.data, grad, state["sum"], lr=lr, eps=group["eps"],
                               weight_decay=group["weight_decay"])
