"""Gradient clipping (in place on ``param.grad``), as ``torch.nn.utils.clip_grad_*_``."""
from __future__ import annotations

import math

from tensornet.backends import get_backend
from tensornet.nn.parameter import Parameter

from .optimizer import non_negative


def _grads(parameters, owner: str) -> list:
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = []
    for i, param in enumerate(parameters):
        if not isinstance(param, Parameter):
            raise TypeError(f"{owner}: parameters[{i}] is a {type(param).__name__}, not a "
                            f"Parameter; pass model.parameters()")
        if param.grad is not None:
            grads.append(param.grad)
    return grads


def _partial_norms(grads, p: float) -> dict:
    """backend -> 0-d device array: the max (p = inf) or the sum of |g|^p on that device."""
    partial: dict = {}
    for grad in grads:
        backend = get_backend(grad)
        xp = backend.xp
        prev = partial.get(backend)
        if math.isinf(p):
            part = xp.max(xp.abs(grad))
            partial[backend] = part if prev is None else xp.maximum(prev, part)
        else:
            part = xp.sum(grad * grad) if p == 2.0 else xp.sum(xp.abs(grad) ** p)
            partial[backend] = part if prev is None else prev + part
    return partial


class ClipGradNorm:
    """A gradient hook for ``train_step`` / ``tn.fit(grad_hook=...)`` (``tn.fit``'s
    ``clip_grad_norm=`` builds one): scale all gradients by
    ``min(1, max_norm / (norm + 1e-6))``, the joint 2-norm ``norm`` computed on the device
    and never read back, so it costs no host sync (and can be captured in a CUDA graph).
    A NaN norm makes the gradients NaN, as in PyTorch, which the loss check then reports.
    """

    graph_safe = True

    def __init__(self, max_norm: float):
        self.max_norm = non_negative("ClipGradNorm", "max_norm", max_norm)

    def __call__(self, model) -> None:
        grads = _grads(model.parameters(), "ClipGradNorm")
        partial = _partial_norms(grads, 2.0)
        if len(partial) != 1:  # parameters on several devices: combine on the host
            clip_grad_norm_(model.parameters(), self.max_norm)
            return
        (backend, total), = partial.items()
        xp = backend.xp
        coef = xp.minimum(self.max_norm / (xp.sqrt(total) + 1e-6), 1.0)
        for grad in grads:
            grad *= coef

    def __repr__(self) -> str:
        return f"ClipGradNorm(max_norm={self.max_norm})"


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False) -> float:
    """Scale all gradients together so that their joint ``norm_type``-norm is at most
    ``max_norm``; returns the norm before clipping as a Python float.

    The joint norm is that of all gradients concatenated into one vector (``inf``: the
    largest absolute entry). When it exceeds ``max_norm`` every gradient is multiplied by
    ``max_norm / (norm + 1e-6)``, as in PyTorch. Parameters without a gradient are skipped.
    Reads one number back per device (a sync on the GPU).

    A non-finite norm raises ``RuntimeError`` with ``error_if_nonfinite=True``; otherwise
    the gradients are scaled by 0 when it is ``inf`` and left alone when it is ``nan``.
    """
    owner = "clip_grad_norm_"
    max_norm = non_negative(owner, "max_norm", max_norm)
    p = float(norm_type)
    if not p > 0.0:
        raise ValueError(f"{owner}: norm_type must be > 0 or inf, got {norm_type!r}")
    grads = _grads(parameters, owner)
    if not grads:
        return 0.0
    partial = _partial_norms(grads, p)  # one device scalar per device: one sync each
    if math.isinf(p):
        total = max(float(v) for v in partial.values())
    else:
        total = sum(float(v) for v in partial.values()) ** (1.0 / p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{owner}: the total {norm_type}-norm of the gradients is {total}; "
                           f"pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for grad in grads:
            grad *= coef
    return total


def clip_grad_value_(parameters, clip_value) -> None:
    """Clamp every gradient entry into ``[-clip_value, clip_value]`` in place."""
    owner = "clip_grad_value_"
    clip_value = non_negative(owner, "clip_value", clip_value)
    for grad in _grads(parameters, owner):
        grad[...] = get_backend(grad).xp.clip(grad, -clip_value, clip_value)
