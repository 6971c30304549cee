"""Adamax: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, betas, non_negative


def _adamax(xp, param, grad, exp_avg, exp_inf, *, step_size, beta1, one_minus_beta1, beta2,
            eps):
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * grad
    exp_inf[...] = xp.maximum(beta2 * exp_inf, xp.abs(grad) + eps)
    param -= step_size * exp_avg / exp_inf


RULE = FusedUpdate(
    "adamax", ("exp_avg", "exp_inf"), ("step_size", "beta1", "one_minus_beta1", "beta2", "eps"),
    _adamax,
    "const T m = beta1 * exp_avg + one_minus_beta1 * grad;\n"
    # not CUDA's max (fmax), which drops a NaN operand: a NaN stays, as in xp.maximum
    "const T u_decayed = beta2 * exp_inf, u_grad = abs(grad) + eps;\n"
    "const T u = (u_decayed < u_grad || isnan(u_grad)) ? u_grad : u_decayed;\n"
    "exp_avg = m;\n"
    "exp_inf = u;\n"
    "param -= step_size * m / u;")


class Adamax(Optimizer):
    """Adamax: the infinity-norm variant of Adam, Kingma & Ba, "Adam: A Method for
    Stochastic Optimization" (ICLR 2015), section 7.1.

    As PyTorch's ``torch.optim.Adamax``, with step count ``t`` (per parameter, from 1)::

        g = -g  if maximize
        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        u = max(beta2 * u, |g| + eps)
        p = p - lr / (1 - beta1^t) * m / u

    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_inf`` (u).
    """

    state_kinds = {"step": COUNT, "exp_avg": ARRAY, "exp_inf": ARRAY}
    required_state = ("step", "exp_avg", "exp_inf")
    rules = (RULE,)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

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
        return {"step_size": group["lr"] / (1.0 - beta1 ** state["step"]), "beta1": beta1,
                "one_minus_beta1": 1.0 - beta1, "beta2": beta2, "eps": group["eps"]}
