"""Adam and AdamW: the whole rule, in both forms."""
from __future__ import annotations

import math

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, betas, non_negative


def _adam(xp, param, grad, exp_avg, exp_avg_sq, *, step_size, beta1, one_minus_beta1, beta2,
          one_minus_beta2, sqrt_bc2, eps):
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * grad
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (grad * grad)
    denom = xp.sqrt(exp_avg_sq)
    denom /= sqrt_bc2
    denom += eps
    param -= step_size * exp_avg / denom


# PyTorch's Adam: eps is added after dividing sqrt(v) by sqrt(1 - beta2^t).
RULE = FusedUpdate(
    "adam", ("exp_avg", "exp_avg_sq"),
    ("step_size", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "sqrt_bc2", "eps"),
    _adam,
    "const T m = beta1 * exp_avg + one_minus_beta1 * grad;\n"
    "const T v = beta2 * exp_avg_sq + one_minus_beta2 * (grad * grad);\n"
    "exp_avg = m;\n"
    "exp_avg_sq = v;\n"
    "param -= step_size * m / (sqrt(v) / sqrt_bc2 + eps);")


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
    rules = (RULE,)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        group["betas"] = betas(name, group["betas"])
        group["eps"] = non_negative(name, "eps", group["eps"])
        group["weight_decay"] = non_negative(name, "weight_decay", group["weight_decay"])

    def _rule(self, group):
        return RULE

    def _scalars(self, group, state, fresh):
        beta1, beta2 = group["betas"]
        step = state["step"]
        # Differences such as 1 - beta1 are taken here in double precision.
        return {"step_size": group["lr"] / (1.0 - beta1 ** step), "beta1": beta1,
                "one_minus_beta1": 1.0 - beta1, "beta2": beta2, "one_minus_beta2": 1.0 - beta2,
                "sqrt_bc2": math.sqrt(1.0 - beta2 ** step), "eps": group["eps"]}


class AdamW(Adam):
    """AdamW: Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (ICLR 2019).

    Adam whose weight decay shrinks the parameter directly instead of entering the
    gradient (and so the moment estimates)::

        p = p * (1 - lr * weight_decay)
        then the Adam step above with the raw gradient g.

    as PyTorch's ``torch.optim.AdamW``; ``weight_decay`` defaults to 1e-2.
    """

    weight_decay_style = "decoupled"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
