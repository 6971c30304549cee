"""RMSprop."""
from __future__ import annotations

from .optimizer import ARRAY, Optimizer, in_range, non_negative


class RMSprop(Optimizer):
    """RMSprop: Tieleman & Hinton, Coursera "Neural Networks for Machine Learning",
    lecture 6.5 (2012).

    As PyTorch's ``torch.optim.RMSprop`` (not centered)::

        g   = g + weight_decay * p
        s   = alpha * s + (1 - alpha) * g^2
        d   = g / (sqrt(s) + eps)
        buf = momentum * buf + d;  p = p - lr * buf     (momentum > 0)
        p   = p - lr * d                                (momentum = 0)

    State per parameter: ``square_avg`` (s) and, when momentum > 0, ``momentum_buffer``.
    """

    state_kinds = {"square_avg": ARRAY, "momentum_buffer": ARRAY}
    required_state = ("square_avg",)

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

    def _update(self, backend, param, grad, state, group):
        if "square_avg" not in state:
            state["square_avg"] = self._zeros_like(backend, param)
        momentum = group["momentum"]
        buf = state.get("momentum_buffer")
        if momentum and buf is None:
            buf = state["momentum_buffer"] = self._zeros_like(backend, param)
        backend.rmsprop_update(param.data, grad, state["square_avg"], buf, lr=group["lr"],
                               alpha=group["alpha"], eps=group["eps"], momentum=momentum,
                               weight_decay=group["weight_decay"])
