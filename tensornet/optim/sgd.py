"""Stochastic gradient descent with (Nesterov) momentum."""
from __future__ import annotations

from .optimizer import ARRAY, Optimizer, in_range, non_negative


class SGD(Optimizer):
    """SGD exactly as PyTorch's ``torch.optim.SGD``.

    With gradient ``g``, weight decay ``wd`` and momentum ``mu``, each step::

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

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

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

    def _update(self, backend, param, grad, state, group):
        momentum = group["momentum"]
        buf = state.get("momentum_buffer")
        first_step = bool(momentum) and buf is None
        if first_step:
            buf = state["momentum_buffer"] = self._zeros_like(backend, param)
        backend.sgd_update(param.data, grad, buf, lr=group["lr"], momentum=momentum,
                           dampening=group["dampening"], nesterov=group["nesterov"],
                           weight_decay=group["weight_decay"], first_step=first_step)
