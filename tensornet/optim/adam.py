"""Adam and AdamW."""
from __future__ import annotations

from .optimizer import ARRAY, COUNT, Optimizer, in_range, non_negative


class Adam(Optimizer):
    """Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015).

    With gradient ``g`` and step count ``t`` (per parameter, from 1)::

        g = g + weight_decay * p                 (L2 penalty folded into the gradient)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    as PyTorch's ``torch.optim.Adam`` (eps added after the bias correction of ``v``).
    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    state_kinds = {"step": COUNT, "exp_avg": ARRAY, "exp_avg_sq": ARRAY}
    required_state = ("step", "exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}")
        group["betas"] = tuple(in_range(name, f"betas[{i}]", b, 0.0, 1.0, True)
                               for i, b in enumerate(betas))
        group["eps"] = non_negative(name, "eps", group["eps"])
        group["weight_decay"] = non_negative(name, "weight_decay", group["weight_decay"])

    def _update(self, backend, param, grad, state, group):
        if not state:
            state["step"] = 0
            state["exp_avg"] = self._zeros_like(backend, param)
            state["exp_avg_sq"] = self._zeros_like(backend, param)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        backend.adam_update(param.data, grad, state["exp_avg"], state["exp_avg_sq"],
                            lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                            step=state["step"], weight_decay=group["weight_decay"],
                            decoupled=self.decoupled)


class AdamW(Adam):
    """AdamW: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).

    Adam whose weight decay shrinks the parameter directly instead of entering the
    gradient (and so the moment estimates)::

        p = p * (1 - lr * weight_decay)
        then the Adam step above with the raw gradient g.

    as PyTorch's ``torch.optim.AdamW``; ``weight_decay`` defaults to 1e-2.
    """

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
