"""A Linear or a BatchNorm followed by a ReLU, run by ``Sequential`` as one step (issue 17).

- Linear + ReLU. Forward: the GEMM, then the bias add and the ReLU in one pass over its
  output (``F.bias_relu``, in place on the NumPy backend with numba). Backward: ReLU's mask
  and the bias gradient in one pass (``F.relu_backward_sum``), then the Linear's two GEMMs.
- BatchNorm1d/2d + ReLU. Forward: the statistics, then ``xhat`` and ``relu(xhat * weight +
  bias)`` written in one sweep (``F.normalize_affine_relu``). Backward: ReLU's mask applied
  as BatchNorm's backward reads the gradient (``F.normalize_relu_backward``). On the CNN's
  activations this saves the ReLU's passes both ways and its two arrays.

The results are bitwise those of the two modules called one after the other (same
operations in the same order: ``tests/test_fusion.py``, ``tests/test_fusion_norm.py``), and
both modules are left holding what their own forward would have cached (a BatchNorm's cache
also holds the ReLU output and the (2, C) weight and bias that made it, which its own
backward ignores), so ``linear.backward`` / ``batchnorm.backward`` / ``relu.backward``
called by hand still work.

Only exact ``Linear`` (with a bias), ``BatchNorm1d``/``BatchNorm2d`` and ``ReLU`` instances
without hooks are fused (a Linear on a 2-D input): a subclass (DropConnect, SyncBatchNorm)
may change the math, a hook must see the module's own call, and anything else runs the
modules one by one as before. Backward falls back to the modules' own backward (and their
checks and error messages) whenever the caches or ``grad_output`` are not exactly what the
fused forward left. ``fusion.disabled()`` turns it off for a block.
"""
from __future__ import annotations

import contextlib
import threading

from . import functional as F
from .activation import ReLU
from .grad_mode import CONSUMED, _MODE
from .linear import Linear
from .normalization import BatchNorm1d, BatchNorm2d

_NORMS = (BatchNorm1d, BatchNorm2d)


class _Switch(threading.local):
    on = True


_SWITCH = _Switch()  # per thread, as no_grad


@contextlib.contextmanager
def disabled():
    """Inside this block ``Sequential`` calls every module one by one (the results are the
    same bits; for measuring what the fusion saves, or stepping through each module). It
    applies to the calling thread, as ``no_grad``."""
    before = _SWITCH.on
    _SWITCH.on = False
    try:
        yield
    finally:
        _SWITCH.on = before


def fusable(first, relu) -> bool:
    """Whether ``Sequential`` may run ``first`` then ``relu`` as one step."""
    kind = type(first)
    return (type(relu) is ReLU and _SWITCH.on
            and ((kind is Linear and first.bias is not None) or kind in _NORMS)
            and relu.backend is first.backend
            and not (first._forward_hooks or relu._forward_hooks
                     or first._backward_hooks or relu._backward_hooks))


def forward(first, relu, x):
    """``relu(first(x))``, both modules caching what their own forwards would."""
    if type(first) is not Linear:
        return _norm_forward(first, relu, x)
    if getattr(x, "ndim", None) != 2:
        return relu(first(x))
    first._check_features(x)
    w = first._forward_weight()
    y = F.bias_relu(F.matmul(x, w.T), first.bias.data)
    if _MODE.enabled:  # (under no_grad neither module's cache changes)
        state = first.__dict__
        state["_x"], state["_w"] = x, w
        _cached(first, relu, y)
    return y


def _norm_forward(norm, relu, x):
    if _MODE.enabled:
        y = norm._forward(x, relu=True)
        _cached(norm, relu, y)
        return y
    state = norm.__dict__  # under no_grad, as tracked_forward: the caches stay as they were
    saved = [(name, state[name]) for name in norm._cache_attrs]
    try:
        return norm._forward(x, relu=True)
    finally:
        state.update(saved)


def _cached(first, relu, y) -> None:
    """What each module's forward wrapper and the ReLU's forward would have recorded."""
    spec = (y.shape, y.dtype, y.__class__)
    first.__dict__["_grad_spec"] = spec
    state = relu.__dict__
    state["_cache"], state["_grad_spec"] = y, spec


def backward(first, relu, grad_output, input_grad: bool):
    """``first.backward(relu.backward(grad_output), input_grad=input_grad)`` as one step;
    NotImplemented when the modules must run (and check) it themselves."""
    spec = relu.__dict__["_grad_spec"]
    y = relu.__dict__["_cache"]
    if spec is None or len(spec) != 3 or first.__dict__["_grad_spec"] != spec or y is None \
            or grad_output.__class__ is not spec[2] or grad_output.shape != spec[0] \
            or grad_output.dtype is not spec[1] or not relu.backend.owns(grad_output):
        return NotImplemented
    if type(first) is Linear:
        return _linear_backward(first, relu, grad_output, y, input_grad)
    if first.__dict__["_cache"] is None:
        return NotImplemented
    return _finish(first, relu, lambda: first._backward(grad_output, relu_output=y),
                   ("_cache",))


def _linear_backward(linear, relu, grad_output, y, input_grad: bool):
    x, bias = linear.__dict__["_x"], linear.bias
    if x is None or x.ndim != 2 or not bias.requires_grad:
        return NotImplemented
    masked, bias_grad = F.relu_backward_sum(grad_output, y, out=bias.grad_buffer())
    return _finish(linear, relu,
                   lambda: linear._backward_rows(masked, x, input_grad, bias_grad=bias_grad),
                   ("_x", "_w"))


def _finish(first, relu, run_first, cache_attrs):
    """Run ``first``'s part of the backward, then consume both caches (unless retained).
    If that part fails, the ReLU's cache is consumed all the same, as one by one (its
    backward had finished)."""
    try:
        grad_input = run_first()
    except BaseException:
        if not _MODE.retain:
            _consume(relu, "_cache")
        raise
    if not _MODE.retain:
        _consume(first, *cache_attrs)
        _consume(relu, "_cache")
    return grad_input


def _consume(module, *cache_attrs) -> None:
    state = module.__dict__
    for name in cache_attrs:
        state[name] = None
    state["_grad_spec"] = CONSUMED
