"""RMSprop: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, in_range, non_negative


def _rmsprop(xp, param, grad, square_avg, *, lr, alpha, one_minus_alpha, eps):
    square_avg *= alpha
    square_avg += one_minus_alpha * (grad * grad)
    param -= lr * (grad / (xp.sqrt(square_avg) + eps))


def _rmsprop_momentum(xp, param, grad, square_avg, momentum_buffer, *, lr, alpha,
                      one_minus_alpha, eps, momentum):
    square_avg *= alpha
    square_avg += one_minus_alpha * (grad * grad)
    momentum_buffer *= momentum
    momentum_buffer += grad / (xp.sqrt(square_avg) + eps)
    param -= lr * momentum_buffer


_SQUARE_AVG = ("const T s = alpha * square_avg + one_minus_alpha * (grad * grad);\n"
               "square_avg = s;\n")
PLAIN = FusedUpdate("rmsprop", ("square_avg",), ("lr", "alpha", "one_minus_alpha", "eps"),
                    _rmsprop, _SQUARE_AVG + "param -= lr * (grad / (sqrt(s) + eps));")
MOMENTUM = FusedUpdate(
    "rmsprop_momentum", ("square_avg", "momentum_buffer"),
    ("lr", "alpha", "one_minus_alpha", "eps", "momentum"), _rmsprop_momentum,
    _SQUARE_AVG +
    "const T b = momentum * momentum_buffer + grad / (sqrt(s) + eps);\n"
    "momentum_buffer = b;\n"
    "param -= lr * b;")


class RMSprop(Optimizer):
    """RMSprop: Tieleman & Hinton, Coursera "Neural Networks for Machine Learning",
    lecture 6.5 (2012).

    As PyTorch's ``torch.optim.RMSprop`` (not centered)::

        g   = g + weight_decay * p
        s   = alpha * s + (1 - alpha) * g^2
        d   = g / (sqrt(s) + eps)
        buf = momentum * buf + d;  p = p - lr * buf     (momentum > 0)
        p   = p - lr * d                                (momentum = 0)

    State per parameter, as PyTorch's: ``step`` (int; the rule does not use it),
    ``square_avg`` (s) and, when momentum > 0, ``momentum_buffer``. A state saved without
    ``step`` (before tensornet kept it) still loads.
    """

    state_kinds = {"step": COUNT, "square_avg": ARRAY, "momentum_buffer": ARRAY}
    required_state = ("square_avg",)
    rules = (PLAIN, MOMENTUM)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        group["alpha"] = in_range(name, "alpha", group["alpha"], 0.0, 1.0, False)
        group["eps"] = non_negative(name, "eps", group["eps"])
        group["weight_decay"] = non_negative(name, "weight_decay", group["weight_decay"])
        group["momentum"] = non_negative(name, "momentum", group["momentum"])

    def _rule(self, group):
        return MOMENTUM if group["momentum"] else PLAIN

    def _scalars(self, group, state, fresh):
        scalars = {"lr": group["lr"], "alpha": group["alpha"],
                   "one_minus_alpha": 1.0 - group["alpha"], "eps": group["eps"]}
        if group["momentum"]:
            scalars["momentum"] = group["momentum"]
        return scalars
