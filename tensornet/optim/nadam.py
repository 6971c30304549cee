"""NAdam (and NAdamW): the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .adam import MOMENTS_BODY, check_moments, moments
from .optimizer import ARRAY, COUNT, SCALAR, Optimizer, non_negative


def _nadam(xp, param, grad, exp_avg, exp_avg_sq, *, beta1, one_minus_beta1, beta2,
           one_minus_beta2, bias_correction2, eps, grad_step, avg_step):
    moments(grad, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2)
    denom = xp.sqrt(exp_avg_sq / bias_correction2)
    denom += eps
    # PyTorch's two addcdiv_ calls, in its order: the gradient's part, then the moment's
    param -= grad_step * grad / denom
    param -= avg_step * exp_avg / denom


RULE = FusedUpdate(
    "nadam", ("exp_avg", "exp_avg_sq"),
    ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "bias_correction2", "eps",
     "grad_step", "avg_step"), _nadam,
    MOMENTS_BODY +
    "const T denom = sqrt(v / bias_correction2) + eps;\n"
    "param -= grad_step * grad / denom;\n"
    "param -= avg_step * m / denom;")


def _mu(beta1: float, step: int, momentum_decay: float) -> float:
    """The momentum coefficient of step ``step``: Dozat's schedule, as PyTorch's."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (step * momentum_decay))


class NAdam(Optimizer):
    """NAdam: Adam with Nesterov momentum, Dozat, "Incorporating Nesterov Momentum into
    Adam" (ICLR 2016 workshop); with ``decoupled_weight_decay`` NAdamW (Loshchilov &
    Hutter's decoupled weight decay).

    As PyTorch's ``torch.optim.NAdam``, with step count ``t`` (per parameter, from 1) and
    ``mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay))``::

        g  = -g  if maximize
        p  = p * (1 - lr * weight_decay)   if decoupled_weight_decay
        g  = g + weight_decay * p          otherwise
        P  = P * mu_t                      (P, the product of the mu's so far, from 1)
        m  = beta1 * m + (1 - beta1) * g
        v  = beta2 * v + (1 - beta2) * g^2
        d  = sqrt(v / (1 - beta2^t)) + eps
        p  = p - lr * (1 - mu_t) / (1 - P) * g / d
        p  = p - lr * mu_{t+1} / (1 - P * mu_{t+1}) * m / d

    State per parameter: ``step`` (int), ``mu_product`` (P, a float), ``exp_avg`` (m),
    ``exp_avg_sq`` (v).
    """

    state_kinds = {"step": COUNT, "mu_product": SCALAR, "exp_avg": ARRAY, "exp_avg_sq": ARRAY}
    required_state = ("step", "mu_product", "exp_avg", "exp_avg_sq")
    weight_decay_style = "per_group"
    rules = (RULE,)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        check_moments(self._name, group, "decoupled_weight_decay")
        group["momentum_decay"] = non_negative(self._name, "momentum_decay",
                                               group["momentum_decay"])

    def _rule(self, group):
        return RULE

    def _state_fills(self, group):
        return {"mu_product": 1.0}

    def _advance(self, group, states):
        super()._advance(group, states)
        beta1, decay = group["betas"][0], group["momentum_decay"]
        for state in states:
            state["mu_product"] *= _mu(beta1, state["step"], decay)

    def _scalars(self, group, state, fresh):
        (beta1, beta2), lr, step = group["betas"], group["lr"], state["step"]
        mu = _mu(beta1, step, group["momentum_decay"])
        mu_next = _mu(beta1, step + 1, group["momentum_decay"])
        product = state["mu_product"]
        return {"beta1": beta1, "one_minus_beta1": 1.0 - beta1, "beta2": beta2,
                "one_minus_beta2": 1.0 - beta2, "bias_correction2": 1.0 - beta2 ** step,
                "eps": group["eps"], "grad_step": lr * (1.0 - mu) / (1.0 - product),
                "avg_step": lr * mu_next / (1.0 - product * mu_next)}
