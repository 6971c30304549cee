"""RAdam (and RAdamW): the whole rule, in both forms."""
from __future__ import annotations

import math

from tensornet.backends import FusedUpdate

from .adam import MOMENTS_BODY, check_moments, moments
from .optimizer import ARRAY, COUNT, Optimizer


def _radam(xp, param, grad, exp_avg, exp_avg_sq, *, beta1, one_minus_beta1, beta2,
           one_minus_beta2, step_size, sqrt_bc2, eps, rectified):
    moments(grad, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2)
    if rectified:  # a per-step decision on the host: one kernel per outcome
        param -= step_size * exp_avg * (sqrt_bc2 / (xp.sqrt(exp_avg_sq) + eps))
    else:
        param -= step_size * exp_avg


RULE = FusedUpdate(
    "radam", ("exp_avg", "exp_avg_sq"),
    ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "step_size", "sqrt_bc2", "eps",
     "rectified"), _radam,
    MOMENTS_BODY +
    "param -= rectified != T(0) ? step_size * m * (sqrt_bc2 / (sqrt(v) + eps))\n"
    "                           : step_size * m;")


class RAdam(Optimizer):
    """RAdam: Adam with its adaptive learning rate's variance rectified, Liu et al., "On the
    Variance of the Adaptive Learning Rate and Beyond" (ICLR 2020); with
    ``decoupled_weight_decay`` RAdamW (Loshchilov & Hutter's decoupled weight decay).

    As PyTorch's ``torch.optim.RAdam``, with step count ``t`` (per parameter, from 1),
    ``rho_inf = 2 / (1 - beta2) - 1`` and ``rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)``::

        g = -g  if maximize
        p = p * (1 - lr * weight_decay)   if decoupled_weight_decay
        g = g + weight_decay * p          otherwise
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        r = sqrt((rho_t - 4) (rho_t - 2) rho_inf / ((rho_inf - 4) (rho_inf - 2) rho_t))
        p = p - lr * r / (1 - beta1^t) * m * sqrt(1 - beta2^t) / (sqrt(v) + eps)  (rho_t > 5)
        p = p - lr / (1 - beta1^t) * m                                    (rho_t <= 5)

    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v).
    """

    state_kinds = {"step": COUNT, "exp_avg": ARRAY, "exp_avg_sq": ARRAY}
    required_state = ("step", "exp_avg", "exp_avg_sq")
    weight_decay_style = "per_group"
    rules = (RULE,)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        check_moments(self._name, group, "decoupled_weight_decay")

    def _rule(self, group):
        return RULE

    def _scalars(self, group, state, fresh):
        (beta1, beta2), step = group["betas"], state["step"]
        bias_correction2 = 1.0 - beta2 ** step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta2 ** step / bias_correction2
        step_size = group["lr"] / (1.0 - beta1 ** step)
        rectified = rho_t > 5.0
        if rectified:
            step_size *= math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                                   / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
        return {"beta1": beta1, "one_minus_beta1": 1.0 - beta1, "beta2": beta2,
                "one_minus_beta2": 1.0 - beta2, "step_size": step_size,
                "sqrt_bc2": math.sqrt(bias_correction2), "eps": group["eps"],
                "rectified": float(rectified)}
