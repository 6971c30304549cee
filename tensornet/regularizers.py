"""Weight penalties attached to layers or parameters (Keras' ``kernel_regularizer`` idea).

    import tensornet as tn
    tn.regularizers.attach(model, tn.regularizers.L1(1e-4))        # every layer's weight
    tn.regularizers.attach(model[0], tn.regularizers.L2(1e-3))     # one layer
    tn.regularizers.attach(model[0].bias, tn.regularizers.L2(1e-3))  # one parameter

A penalty ``R(w)`` joins the objective: ``loss + sum of R(w)``. ``tn.fit`` adds it to the
training loss it reports and its gradient ``dR/dw`` to ``w.grad`` in every step. A hand-written
step calls ``apply`` once the gradients are in (after backward, before ``optimizer.step()``)::

    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward(), input_grad=False)
    loss = loss + tn.regularizers.apply(model)   # adds dR/dw to each w.grad
    optimizer.step()

The penalties follow Keras: ``L1(l1)``: ``l1 * sum|w|`` (gradient ``l1 * sign(w)``),
``L2(l2)``: ``l2 * sum w^2`` (gradient ``2 * l2 * w``; note PyTorch's ``weight_decay=wd``
is the gradient ``wd * w``, i.e. ``L2(wd / 2)``), ``L1L2(l1, l2)``: both (elastic net, Zou &
Hastie 2005). Optimizers' ``weight_decay`` is unchanged and independent of these.
"""
from __future__ import annotations

import math
import numbers

from tensornet.backends import get_backend
from tensornet.nn.module import Module
from tensornet.nn.parameter import Parameter

__all__ = ["Regularizer", "L1", "L2", "L1L2", "attach", "detach", "attached", "apply",
           "penalty"]


class Regularizer:
    """A penalty on one array: ``reg(w)`` is its value (0-d), ``reg.gradient(w)`` dR/dw."""

    def __call__(self, w):
        raise NotImplementedError

    def gradient(self, w):
        raise NotImplementedError


def _factor(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= value < math.inf:
        raise ValueError(f"{owner}: {name} must be >= 0 and finite, got {value!r}")
    return float(value)


def _module(function: str, model, parameter: bool = False) -> None:
    if not isinstance(model, Module) and not (parameter and isinstance(model, Parameter)):
        what = "a Module or a Parameter" if parameter else "a Module"
        raise TypeError(f"{function} expected {what}, got {type(model).__name__}")


class L1L2(Regularizer):
    """Elastic net: ``l1 * sum|w| + l2 * sum w^2`` (Keras ``L1L2``)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = _factor(type(self).__name__, "l1", l1)
        self.l2 = _factor(type(self).__name__, "l2", l2)

    def __call__(self, w):
        xp = get_backend(w).xp
        value = None
        if self.l1:
            value = self.l1 * xp.sum(xp.abs(w))
        if self.l2:
            squares = self.l2 * xp.sum(w * w)
            value = squares if value is None else value + squares
        return value if value is not None else xp.sum(w * 0.0)

    def gradient(self, w):
        xp = get_backend(w).xp
        if self.l1 and self.l2:
            return self.l1 * xp.sign(w) + (2.0 * self.l2) * w
        if self.l1:
            return self.l1 * xp.sign(w)
        return (2.0 * self.l2) * w

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


class L1(L1L2):
    """Lasso: ``l1 * sum|w|``; gradient ``l1 * sign(w)`` (0 at 0)."""

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def __repr__(self) -> str:
        return f"L1({self.l1})"


class L2(L1L2):
    """Ridge: ``l2 * sum w^2``; gradient ``2 * l2 * w``."""

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def __repr__(self) -> str:
        return f"L2({self.l2})"


# Where attachments live: on a module, a dict parameter-name -> Regularizer in this
# attribute (set with object.__setattr__, so it is no parameter, buffer or child).
_ATTRIBUTE = "_regularizers"


def attach(target, regularizer: Regularizer, names=("weight",)):
    """Attach ``regularizer`` to ``target`` and return ``target``.

    ``target``: a Module (each of its modules' parameters called one of ``names``, by
    default every ``weight``, not the biases: Keras' kernel_regularizer), or a Parameter
    (found again in whichever model holds it). Attaching again replaces the penalty.
    """
    if not isinstance(regularizer, Regularizer):
        raise TypeError(f"attach expected a tn.regularizers.Regularizer (L1, L2, L1L2), got "
                        f"{type(regularizer).__name__}")
    if isinstance(target, Parameter):
        _PARAMETERS[id(target)] = (target, regularizer)
        return target
    if not isinstance(target, Module):
        raise TypeError(f"attach expected a Module or a Parameter, got {type(target).__name__}")
    names = (names,) if isinstance(names, str) else tuple(names)
    found = 0
    for module in target.modules():
        for name in names:
            if module._parameters.get(name) is not None:
                _attachments(module, create=True)[name] = regularizer
                found += 1
    if not found:
        raise ValueError(f"attach: {type(target).__name__} has no parameter named "
                         f"{' or '.join(names)} to regularize")
    return target


def detach(target) -> None:
    """Remove every penalty attached to ``target`` (a Module and its children, or a
    Parameter)."""
    _module("detach", target, parameter=True)
    if isinstance(target, Parameter):
        _PARAMETERS.pop(id(target), None)
        return
    for module in target.modules():
        if _ATTRIBUTE in module.__dict__:
            object.__delattr__(module, _ATTRIBUTE)
        for param in module._parameters.values():
            if param is not None:
                _PARAMETERS.pop(id(param), None)


# Parameters attached directly, by identity (a Parameter has __slots__ and no weakref);
# the entry keeps the parameter alive until ``detach``.
_PARAMETERS: dict = {}


def _attachments(module: Module, create: bool = False) -> dict:
    table = module.__dict__.get(_ATTRIBUTE)
    if table is None and create:
        table = {}
        object.__setattr__(module, _ATTRIBUTE, table)
    return table if table is not None else {}


def attached(model: Module) -> list:
    """``[(parameter, regularizer), ...]`` for every penalised parameter of ``model``."""
    _module("attached", model)
    pairs, seen = [], set()
    for module in model.modules():
        for name, regularizer in _attachments(module).items():
            param = module._parameters.get(name)
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                pairs.append((param, regularizer))
    for param in model.parameters():
        entry = _PARAMETERS.get(id(param))
        if entry is not None and entry[0] is param and id(param) not in seen:
            seen.add(id(param))
            pairs.append((param, entry[1]))
    return pairs


def penalty(model: Module):
    """The summed penalty of ``model``'s attached regularizers (a 0-d device array), or
    None when none is attached. Gradients are left alone."""
    _module("penalty", model)
    total = None
    for param, regularizer in attached(model):
        value = regularizer(param.data)
        total = value if total is None else total + value
    return total


def apply(model: Module):
    """Add each attached penalty's gradient to its parameter's ``.grad`` (trainable ones
    only) and return the summed penalty (0-d, on the model's device), or None when nothing
    is attached. Call it between backward and ``optimizer.step()``: it is a gradient hook
    of ``tn.train_step`` (``grad_hook=tn.regularizers.apply``; ``tn.fit`` adds it by itself
    when penalties are attached). It reads nothing back to the host."""
    _module("apply", model)
    total = None
    for param, regularizer in attached(model):
        value = regularizer(param.data)
        total = value if total is None else total + value
        if param.requires_grad:
            param.accumulate_grad(regularizer.gradient(param.data))
    return total


apply.graph_safe = True  # device arrays only: it can run inside a captured CUDA graph
