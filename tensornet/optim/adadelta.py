"""Adadelta: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, in_range, non_negative
from .rmsprop import square_average


def _adadelta(xp, param, grad, square_avg, acc_delta, *, lr, rho, one_minus_rho, eps):
    square_average(grad, square_avg, rho, one_minus_rho)
    delta = xp.sqrt(acc_delta + eps) / xp.sqrt(square_avg + eps) * grad
    square_average(delta, acc_delta, rho, one_minus_rho)
    param -= lr * delta


RULE = FusedUpdate(
    "adadelta", ("square_avg", "acc_delta"), ("lr", "rho", "one_minus_rho", "eps"), _adadelta,
    "const T s = rho * square_avg + one_minus_rho * (grad * grad);\n"
    "const T delta = sqrt(acc_delta + eps) / sqrt(s + eps) * grad;\n"
    "square_avg = s;\n"
    "acc_delta = rho * acc_delta + one_minus_rho * (delta * delta);\n"
    "param -= lr * delta;")


class Adadelta(Optimizer):
    """Adadelta: Zeiler, "ADADELTA: An Adaptive Learning Rate Method" (arXiv:1212.5701,
    2012), algorithm 1, with a learning rate scaling the step as PyTorch's.

    As PyTorch's ``torch.optim.Adadelta``::

        g = -g  if maximize
        g = g + weight_decay * p
        s = rho * s + (1 - rho) * g^2
        d = sqrt(u + eps) / sqrt(s + eps) * g
        u = rho * u + (1 - rho) * d^2
        p = p - lr * d

    State per parameter: ``step`` (int; the rule does not use it), ``square_avg`` (s),
    ``acc_delta`` (u).
    """

    state_kinds = {"step": COUNT, "square_avg": ARRAY, "acc_delta": ARRAY}
    required_state = ("step", "square_avg", "acc_delta")
    rules = (RULE,)

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        group["rho"] = in_range(name, "rho", group["rho"], 0.0, 1.0, False)
        group["eps"] = non_negative(name, "eps", group["eps"])
        group["weight_decay"] = non_negative(name, "weight_decay", group["weight_decay"])

    def _rule(self, group):
        return RULE

    def _scalars(self, group, state, fresh):
        return {"lr": group["lr"], "rho": group["rho"], "one_minus_rho": 1.0 - group["rho"],
                "eps": group["eps"]}
