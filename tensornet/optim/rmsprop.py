"""RMSprop, plain or centered, with or without momentum: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, flag, in_range, non_negative


def square_average(grad, square_avg, alpha, one_minus_alpha):
    """``square_avg = alpha * square_avg + (1 - alpha) * grad^2``, in place (PyTorch's
    ``mul_(alpha).addcmul_(grad, grad, value=1 - alpha)``; Adadelta's too)."""
    square_avg *= alpha
    square_avg += one_minus_alpha * (grad * grad)


def _centered_avg(xp, grad, square_avg, grad_avg, alpha, one_minus_alpha, eps):
    """``sqrt(s - a^2) + eps``: the root of the gradient's running variance, its running
    mean ``a`` (``grad_avg``) kept as PyTorch's ``grad_avg.lerp_(grad, 1 - alpha)``."""
    grad_avg *= alpha
    grad_avg += one_minus_alpha * grad
    return xp.sqrt(square_avg - grad_avg * grad_avg) + eps


def _with_momentum(param, momentum_buffer, direction, lr, momentum):
    momentum_buffer *= momentum
    momentum_buffer += direction
    param -= lr * momentum_buffer


def _rmsprop(xp, param, grad, square_avg, *, lr, alpha, one_minus_alpha, eps):
    square_average(grad, square_avg, alpha, one_minus_alpha)
    param -= lr * (grad / (xp.sqrt(square_avg) + eps))


def _rmsprop_momentum(xp, param, grad, square_avg, momentum_buffer, *, lr, alpha,
                      one_minus_alpha, eps, momentum):
    square_average(grad, square_avg, alpha, one_minus_alpha)
    _with_momentum(param, momentum_buffer, grad / (xp.sqrt(square_avg) + eps), lr, momentum)


def _rmsprop_centered(xp, param, grad, square_avg, grad_avg, *, lr, alpha, one_minus_alpha,
                      eps):
    square_average(grad, square_avg, alpha, one_minus_alpha)
    param -= lr * (grad / _centered_avg(xp, grad, square_avg, grad_avg, alpha,
                                        one_minus_alpha, eps))


def _rmsprop_centered_momentum(xp, param, grad, square_avg, grad_avg, momentum_buffer, *, lr,
                               alpha, one_minus_alpha, eps, momentum):
    square_average(grad, square_avg, alpha, one_minus_alpha)
    avg = _centered_avg(xp, grad, square_avg, grad_avg, alpha, one_minus_alpha, eps)
    _with_momentum(param, momentum_buffer, grad / avg, lr, momentum)


_SCALARS = ("lr", "alpha", "one_minus_alpha", "eps")
_SQUARE_AVG = ("const T s = alpha * square_avg + one_minus_alpha * (grad * grad);\n"
               "square_avg = s;\n")
_PLAIN_AVG = "const T avg = sqrt(s) + eps;\n"
_CENTERED_AVG = ("const T a = alpha * grad_avg + one_minus_alpha * grad;\n"
                 "grad_avg = a;\n"
                 "const T avg = sqrt(s - a * a) + eps;\n")
_STEP = "param -= lr * (grad / avg);"
_MOMENTUM_STEP = ("const T b = momentum * momentum_buffer + grad / avg;\n"
                  "momentum_buffer = b;\n"
                  "param -= lr * b;")
PLAIN = FusedUpdate("rmsprop", ("square_avg",), _SCALARS, _rmsprop,
                    _SQUARE_AVG + _PLAIN_AVG + _STEP)
MOMENTUM = FusedUpdate("rmsprop_momentum", ("square_avg", "momentum_buffer"),
                       _SCALARS + ("momentum",), _rmsprop_momentum,
                       _SQUARE_AVG + _PLAIN_AVG + _MOMENTUM_STEP)
CENTERED = FusedUpdate("rmsprop_centered", ("square_avg", "grad_avg"), _SCALARS,
                       _rmsprop_centered, _SQUARE_AVG + _CENTERED_AVG + _STEP)
CENTERED_MOMENTUM = FusedUpdate(
    "rmsprop_centered_momentum", ("square_avg", "grad_avg", "momentum_buffer"),
    _SCALARS + ("momentum",), _rmsprop_centered_momentum,
    _SQUARE_AVG + _CENTERED_AVG + _MOMENTUM_STEP)
_RULES = {(False, False): PLAIN, (False, True): MOMENTUM, (True, False): CENTERED,
          (True, True): CENTERED_MOMENTUM}  # (centered, momentum > 0) -> rule


class RMSprop(Optimizer):
    """RMSprop: Tieleman & Hinton, Coursera "Neural Networks for Machine Learning",
    lecture 6.5 (2012); centered (the gradient's running mean taken out of its running
    square): Graves, "Generating Sequences With Recurrent Neural Networks" (2013).

    As PyTorch's ``torch.optim.RMSprop``::

        g   = -g  if maximize                   (ascent on the objective)
        g   = g + weight_decay * p
        s   = alpha * s + (1 - alpha) * g^2
        a   = alpha * a + (1 - alpha) * g;  d = g / (sqrt(s - a^2) + eps)   (centered)
        d   = g / (sqrt(s) + eps)                                          (not centered)
        buf = momentum * buf + d;  p = p - lr * buf     (momentum > 0)
        p   = p - lr * d                                (momentum = 0)

    State per parameter, as PyTorch's: ``step`` (int; the rule does not use it),
    ``square_avg`` (s), when centered ``grad_avg`` (a) and, when momentum > 0,
    ``momentum_buffer``. A state saved without ``step`` (before tensornet kept it) still
    loads.
    """

    state_kinds = {"step": COUNT, "square_avg": ARRAY, "momentum_buffer": ARRAY,
                   "grad_avg": ARRAY}
    required_state = ("square_avg",)
    rules = (PLAIN, MOMENTUM, CENTERED, CENTERED_MOMENTUM)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        group["alpha"] = in_range(name, "alpha", group["alpha"], 0.0, 1.0, False)
        group["eps"] = non_negative(name, "eps", group["eps"])
        group["weight_decay"] = non_negative(name, "weight_decay", group["weight_decay"])
        group["momentum"] = non_negative(name, "momentum", group["momentum"])
        group["centered"] = flag(name, "centered", group["centered"])

    def _required_state(self, group):
        return self.required_state + (("grad_avg",) if group["centered"] else ())

    def _rule(self, group):
        return _RULES[group["centered"], group["momentum"] > 0.0]

    def _scalars(self, group, state, fresh):
        scalars = {"lr": group["lr"], "alpha": group["alpha"],
                   "one_minus_alpha": 1.0 - group["alpha"], "eps": group["eps"]}
        if group["momentum"]:
            scalars["momentum"] = group["momentum"]
        return scalars
