"""Rprop: the whole rule, in both forms."""
from __future__ import annotations

from tensornet.backends import FusedUpdate

from .checks import real
from .optimizer import ARRAY, COUNT, Optimizer


def _rprop(xp, param, grad, prev, step_size, *, etaminus, etaplus, step_size_min,
           step_size_max):
    product = grad * prev  # its sign, as PyTorch's torch.sign: 0 for 0 and for NaN
    flipped = product < 0.0
    resized = xp.where(flipped, step_size * etaminus,
                       xp.where(product > 0.0, step_size * etaplus, step_size))
    step_size[...] = xp.minimum(xp.maximum(resized, step_size_min), step_size_max)
    kept = xp.where(flipped, 0.0, grad)  # a flipped sign: no step, and no flip next time
    param -= xp.where(kept > 0.0, step_size, xp.where(kept < 0.0, -step_size, 0.0))
    prev[...] = kept


RULE = FusedUpdate(
    "rprop", ("prev", "step_size"), ("etaminus", "etaplus", "step_size_min", "step_size_max"),
    _rprop,
    "const T product = grad * prev;\n"
    "const T resized = product < T(0) ? step_size * etaminus\n"
    "                : product > T(0) ? step_size * etaplus : step_size;\n"
    # not CUDA's fmax/fmin, which drop a NaN operand: a NaN stays, as in xp.maximum/minimum
    "const T s = resized < step_size_min ? step_size_min\n"
    "          : resized > step_size_max ? step_size_max : resized;\n"
    "const T kept = product < T(0) ? T(0) : grad;\n"
    "step_size = s;\n"
    "prev = kept;\n"
    "param -= kept > T(0) ? s : kept < T(0) ? -s : T(0);")


def _pair(owner: str, name: str, value, rule: str, holds) -> tuple:
    """A pair of real numbers for which ``holds(a, b)``, or a ValueError citing ``rule``."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{owner}: {name} must be a pair {rule}, got {value!r}")
    a, b = (real(owner, f"{name}[{i}]", v) for i, v in enumerate(value))
    if not holds(a, b):
        raise ValueError(f"{owner}: {name} must be a pair {rule}, got {value!r}")
    return a, b


class Rprop(Optimizer):
    """Rprop: Riedmiller & Braun, "A Direct Adaptive Method for Faster Backpropagation
    Learning: The RPROP Algorithm" (IEEE ICNN 1993), in PyTorch's form (without weight
    backtracking: where the gradient's sign flips, no step is taken).

    As PyTorch's ``torch.optim.Rprop``, element-wise, with ``etas = (eta-, eta+)`` and
    ``step_sizes = (lo, hi)``; ``prev`` starts at 0, the step size ``s`` at ``lr``::

        g = -g  if maximize
        s = s * eta+   where g * prev > 0
        s = s * eta-   where g * prev < 0, and there g = 0
        s = min(max(s, lo), hi)
        p = p - sign(g) * s
        prev = g

    State per parameter: ``step`` (int; the rule does not use it), ``prev``, ``step_size``
    (s). ``lr`` is used only at a parameter's first step, as the initial step size.
    """

    state_kinds = {"step": COUNT, "prev": ARRAY, "step_size": ARRAY}
    required_state = ("step", "prev", "step_size")
    weight_decay_style = None
    rules = (RULE,)

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 maximize=False):
        super().__init__(params, dict(lr=lr, etas=etas, step_sizes=step_sizes,
                                      maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        name = self._name
        group["etas"] = _pair(name, "etas", group["etas"], "(etaminus, etaplus) with "
                              "0 < etaminus < 1 < etaplus", lambda a, b: 0.0 < a < 1.0 < b)
        group["step_sizes"] = _pair(name, "step_sizes", group["step_sizes"], "(min, max) "
                                    "with 0 <= min <= max", lambda a, b: 0.0 <= a <= b)

    def _rule(self, group):
        return RULE

    def _state_fills(self, group):
        return {"step_size": group["lr"]}

    def _scalars(self, group, state, fresh):
        (etaminus, etaplus), (low, high) = group["etas"], group["step_sizes"]
        return {"etaminus": etaminus, "etaplus": etaplus, "step_size_min": low,
                "step_size_max": high}
