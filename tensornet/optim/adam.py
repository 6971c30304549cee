"""Adam and AdamW, with and without AMSGrad: the whole rule, in both forms."""
from __future__ import annotations

import math

from tensornet.backends import FusedUpdate

from .optimizer import ARRAY, COUNT, Optimizer, betas, flag, non_negative


def check_moments(owner: str, group: dict, option: str) -> None:
    """The hyper-parameters of Adam's family (Adam, NAdam, RAdam) normalised in place:
    ``betas``, ``eps``, ``weight_decay`` and its on/off ``option`` (``"amsgrad"``,
    ``"decoupled_weight_decay"``)."""
    group["betas"] = betas(owner, group["betas"])
    group["eps"] = non_negative(owner, "eps", group["eps"])
    group["weight_decay"] = non_negative(owner, "weight_decay", group["weight_decay"])
    group[option] = flag(owner, option, group[option])


def moments(grad, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2):
    """Both running moments of Adam's family, in place (PyTorch's lerp_ and addcmul_)."""
    exp_avg *= beta1
    exp_avg += one_minus_beta1 * grad
    exp_avg_sq *= beta2
    exp_avg_sq += one_minus_beta2 * (grad * grad)


def _descend(xp, param, exp_avg, second_moment, step_size, sqrt_bc2, eps):
    denom = xp.sqrt(second_moment)
    denom /= sqrt_bc2
    denom += eps
    param -= step_size * exp_avg / denom


def _adam(xp, param, grad, exp_avg, exp_avg_sq, *, step_size, beta1, one_minus_beta1, beta2,
          one_minus_beta2, sqrt_bc2, eps):
    moments(grad, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2)
    _descend(xp, param, exp_avg, exp_avg_sq, step_size, sqrt_bc2, eps)


def _amsgrad(xp, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, step_size, beta1,
             one_minus_beta1, beta2, one_minus_beta2, sqrt_bc2, eps):
    moments(grad, exp_avg, exp_avg_sq, beta1, one_minus_beta1, beta2, one_minus_beta2)
    max_exp_avg_sq[...] = xp.maximum(max_exp_avg_sq, exp_avg_sq)
    _descend(xp, param, exp_avg, max_exp_avg_sq, step_size, sqrt_bc2, eps)


_SCALARS = ("step_size", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "sqrt_bc2",
            "eps")
MOMENTS_BODY = ("const T m = beta1 * exp_avg + one_minus_beta1 * grad;\n"
            "const T v = beta2 * exp_avg_sq + one_minus_beta2 * (grad * grad);\n"
            "exp_avg = m;\n"
            "exp_avg_sq = v;\n")
# PyTorch's Adam: eps is added after dividing sqrt(v) by sqrt(1 - beta2^t).
RULE = FusedUpdate("adam", ("exp_avg", "exp_avg_sq"), _SCALARS, _adam,
                   MOMENTS_BODY + "param -= step_size * m / (sqrt(v) / sqrt_bc2 + eps);")
AMSGRAD = FusedUpdate(
    "adam_amsgrad", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), _SCALARS, _amsgrad,
    MOMENTS_BODY +
    # not CUDA's max (fmax), which drops a NaN operand: a NaN stays, as in xp.maximum
    "const T v_max = (max_exp_avg_sq < v || isnan(v)) ? v : max_exp_avg_sq;\n"
    "max_exp_avg_sq = v_max;\n"
    "param -= step_size * m / (sqrt(v_max) / sqrt_bc2 + eps);")


class Adam(Optimizer):
    """Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015).

    With gradient ``g`` and step count ``t`` (per parameter, from 1)::

        g = -g  if maximize                      (ascent on the objective)
        g = g + weight_decay * p                 (L2 penalty folded into the gradient)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        v_max = max(v_max, v)                    (amsgrad only: v_max stands for v below)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    as PyTorch's ``torch.optim.Adam`` (eps added after the bias correction of ``v``).
    ``amsgrad``: Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond" (ICLR 2018),
    in PyTorch's form (the running maximum of the raw ``v``, bias-corrected at use).
    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
    ``amsgrad``, ``max_exp_avg_sq`` (v_max).
    """

    state_kinds = {"step": COUNT, "exp_avg": ARRAY, "exp_avg_sq": ARRAY,
                   "max_exp_avg_sq": ARRAY}
    required_state = ("step", "exp_avg", "exp_avg_sq")
    rules = (RULE, AMSGRAD)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        check_moments(self._name, group, "amsgrad")

    def _required_state(self, group):
        return self.required_state + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def _rule(self, group):
        return AMSGRAD if group["amsgrad"] else RULE

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
        then the Adam step above with the raw gradient g (negated if maximize).

    as PyTorch's ``torch.optim.AdamW``; ``weight_decay`` defaults to 1e-2; ``amsgrad`` and
    ``maximize`` as in Adam.
    """

    weight_decay_style = "decoupled"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
