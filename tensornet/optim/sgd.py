"""Stochastic gradient descent with (Nesterov) momentum: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, Optimizer, in_range, non_negative


def _sgd(xp, param, grad, *, lr):
    param -= lr * grad


def _sgd_momentum(xp, param, grad, momentum_buffer, *, lr, momentum, one_minus_dampening,
                  nesterov, first_step):
    if first_step:
        momentum_buffer[...] = grad
    else:
        momentum_buffer *= momentum
        momentum_buffer += one_minus_dampening * grad
    if nesterov:
        param -= lr * (grad + momentum * momentum_buffer)
    else:
        param -= lr * momentum_buffer


PLAIN = FusedUpdate("sgd", (), ("lr",), _sgd, "param -= lr * grad;")
MOMENTUM = FusedUpdate(
    "sgd_momentum", ("momentum_buffer",),
    ("lr", "momentum", "one_minus_dampening", "nesterov", "first_step"), _sgd_momentum,
    "const T b = first_step != T(0) ? grad\n"
    "                               : momentum * momentum_buffer + one_minus_dampening * grad;\n"
    "momentum_buffer = b;\n"
    "param -= lr * (nesterov != T(0) ? grad + momentum * b : b);")


class SGD(Optimizer):
    """SGD exactly as PyTorch's ``torch.optim.SGD``.

    With gradient ``g``, weight decay ``wd`` and momentum ``mu``, each step::

        g   = -g  if maximize                    (ascent on the objective)
        g   = g + wd * p
        buf = g                                  (first step)
        buf = mu * buf + (1 - dampening) * g     (later steps)
        g   = g + mu * buf  if nesterov  else  buf      (only when mu > 0)
        p   = p - lr * g

    Momentum: Polyak (1964); the Nesterov form of Sutskever et al., "On the importance of
    initialization and momentum in deep learning" (ICML 2013).

    State per parameter: ``momentum_buffer`` (created at its first step when momentum > 0).
    """

    state_kinds = {"momentum_buffer": ARRAY}
    rules = (PLAIN, MOMENTUM)

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, *, maximize=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        group["momentum"] = non_negative(name, "momentum", group["momentum"])
        group["dampening"] = in_range(name, "dampening", group["dampening"], 0.0, 1.0, False)
        group["weight_decay"] = non_negative(name, "weight_decay", group["weight_decay"])
        group["nesterov"] = bool(group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0.0 or group["dampening"] != 0.0):
            raise ValueError(f"{name}: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _rule(self, group):
        return MOMENTUM if group["momentum"] else PLAIN

    def _scalars(self, group, state, fresh):
        if not group["momentum"]:
            return {"lr": group["lr"]}
        return {"lr": group["lr"], "momentum": group["momentum"],
                "one_minus_dampening": 1.0 - group["dampening"],
                "nesterov": float(group["nesterov"]), "first_step": float(fresh)}
