"""A group's options composed into its optimizer's rule, once for every optimizer.

``Optimizer._rule`` gives the optimizer's own update; here it is wrapped, in PyTorch's
order, by what the group asks for: weight decay (coupled L2, folded into the gradient, or
decoupled, shrinking the parameter) and ``maximize`` (the gradient negated before anything
else reads it, weight decay included). Each wrapper is a ``FusedUpdate`` in both forms, made
once per rule and cached, so every backend runs a composed rule as one fused update; a group
with its options off runs the optimizer's rule itself.
"""
from __future__ import annotations

from tensornet.backends import FusedUpdate

__all__ = ["coupled_decay", "decoupled_decay", "maximized", "group_rule", "variants"]

_COUPLED: dict = {}
_DECOUPLED: dict = {}
_MAXIMIZED: dict = {}


def coupled_decay(rule: FusedUpdate) -> FusedUpdate:
    """``rule`` fed ``grad + weight_decay * param`` (L2 folded into the gradient, as
    PyTorch's SGD, Adam, RMSprop and Adagrad); ``grad`` itself is never written."""
    composed = _COUPLED.get(rule)
    if composed is None:
        def apply(xp, param, grad, *states, weight_decay, **scalars):
            rule.apply(xp, param, grad + weight_decay * param, *states, **scalars)
        body = None if rule.body is None else (
            "const T tn_decayed = grad + weight_decay * param;\n"
            "{\nconst T grad = tn_decayed;\n" + rule.body + "\n}")
        composed = _COUPLED[rule] = FusedUpdate(rule.name + "_l2", rule.states,
                                                rule.scalars + ("weight_decay",), apply, body)
    return composed


def decoupled_decay(rule: FusedUpdate) -> FusedUpdate:
    """``param *= decay_scale`` (``1 - lr * weight_decay``), then ``rule`` with the raw
    gradient (Loshchilov & Hutter's decoupled weight decay, as PyTorch's AdamW)."""
    composed = _DECOUPLED.get(rule)
    if composed is None:
        def apply(xp, param, grad, *states, decay_scale, **scalars):
            param *= decay_scale
            rule.apply(xp, param, grad, *states, **scalars)
        body = None if rule.body is None else "param *= decay_scale;\n" + rule.body
        composed = _DECOUPLED[rule] = FusedUpdate(rule.name + "_decoupled", rule.states,
                                                  rule.scalars + ("decay_scale",), apply, body)
    return composed


def maximized(rule: FusedUpdate) -> FusedUpdate:
    """``rule`` fed ``-grad``: a step up the objective (PyTorch's ``maximize=True``, which
    negates the gradient first, so weight decay and every moment see ``-grad``)."""
    composed = _MAXIMIZED.get(rule)
    if composed is None:
        def apply(xp, param, grad, *states, **scalars):
            rule.apply(xp, param, -grad, *states, **scalars)
        body = None if rule.body is None else (
            "const T tn_negated = -grad;\n"
            "{\nconst T grad = tn_negated;\n" + rule.body + "\n}")
        composed = _MAXIMIZED[rule] = FusedUpdate(rule.name + "_maximize", rule.states,
                                                  rule.scalars, apply, body)
    return composed


def group_rule(rule: FusedUpdate, weight_decay_style: str | None, group: dict):
    """``(rule with group's options composed in, the decay's scalars)``: weight decay in
    ``weight_decay_style`` (``"coupled"`` or ``"decoupled"``; ``"per_group"``: the group's
    ``decoupled_weight_decay`` picks, as PyTorch's NAdam and RAdam; None: none, whatever the
    group holds, as PyTorch's Rprop) when ``group["weight_decay"]`` is set, then
    ``maximize`` outermost."""
    weight_decay = group.get("weight_decay", 0.0) if weight_decay_style else 0.0
    if weight_decay_style == "per_group":
        weight_decay_style = "decoupled" if group["decoupled_weight_decay"] else "coupled"
    scalars = {}
    if weight_decay:
        if weight_decay_style == "decoupled":
            rule, scalars = decoupled_decay(rule), {"decay_scale": 1.0 - group["lr"] * weight_decay}
        else:
            rule, scalars = coupled_decay(rule), {"weight_decay": weight_decay}
    if group.get("maximize", False):
        rule = maximized(rule)
    return rule, scalars


def variants(rule: FusedUpdate, weight_decay_style: str | None) -> list:
    """Every rule ``group_rule`` can make of ``rule`` (what a device must compile)."""
    decayed = {"coupled": [coupled_decay(rule)], "decoupled": [decoupled_decay(rule)],
               "per_group": [coupled_decay(rule), decoupled_decay(rule)], None: []}
    plain = [rule] + decayed[weight_decay_style]
    return plain + [maximized(r) for r in plain]
