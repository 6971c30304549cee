"""A Linear followed by a ReLU, run by ``Sequential`` as one step (issue 17).

Forward: the GEMM, then the bias add and the ReLU in one pass over its output
(``F.bias_relu``, in place on the NumPy backend with numba). Backward: ReLU's mask and the
bias gradient in one pass (``F.relu_backward_sum``), then the Linear's two GEMMs. The
results are bitwise those of the two modules called one after the other (same operations
in the same order: ``tests/test_fusion.py``), and both modules are left holding exactly
what their own forward would have cached, so ``linear.backward`` / ``relu.backward``
called by hand still work. On an MLP's training step this saves a pass over every hidden
activation each way and two module calls per pair.

Only exact ``Linear`` (with a bias) and ``ReLU`` instances without hooks on a 2-D input
are fused: a subclass (DropConnect) may change the math, a hook must see the module's own
call, and anything else runs the modules one by one as before. Backward falls back to the
modules' own backward (and their checks and error messages) whenever the caches or
``grad_output`` are not exactly what the fused forward left. ``fusion.disabled()``
turns it off for a block.
"""
from __future__ import annotations

import contextlib
import threading

from . import functional as F
from .activation import ReLU
from .grad_mode import CONSUMED, _MODE
from .linear import Linear


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


def fusable(linear, relu) -> bool:
    """Whether ``Sequential`` may run ``linear`` then ``relu`` as one step."""
    return (type(linear) is Linear and type(relu) is ReLU and _SWITCH.on
            and linear.bias is not None and relu.backend is linear.backend
            and not (linear._forward_hooks or relu._forward_hooks
                     or linear._backward_hooks or relu._backward_hooks))


def forward(linear, relu, x):
    """``relu(linear(x))``, both modules caching what their own forwards would."""
    if getattr(x, "ndim", None) != 2:
        return relu(linear(x))
    linear._check_features(x)
    w = linear._forward_weight()
    y = F.bias_relu(F.matmul(x, w.T), linear.bias.data)
    if _MODE.enabled:  # (under no_grad neither module's cache changes)
        spec = (y.shape, y.dtype, y.__class__)
        state = linear.__dict__
        state["_x"], state["_w"], state["_grad_spec"] = x, w, spec
        state = relu.__dict__
        state["_cache"], state["_grad_spec"] = y, spec
    return y


def backward(linear, relu, grad_output, input_grad: bool):
    """``linear.backward(relu.backward(grad_output), input_grad=input_grad)`` as one step;
    NotImplemented when the modules must run (and check) it themselves."""
    spec = relu.__dict__["_grad_spec"]
    x, y = linear.__dict__["_x"], relu.__dict__["_cache"]
    bias = linear.bias
    if spec is None or len(spec) != 3 or linear.__dict__["_grad_spec"] != spec \
            or x is None or y is None or x.ndim != 2 or not bias.requires_grad \
            or grad_output.__class__ is not spec[2] or grad_output.shape != spec[0] \
            or grad_output.dtype is not spec[1] or not relu.backend.owns(grad_output):
        return NotImplemented
    masked, bias_grad = F.relu_backward_sum(grad_output, y, out=bias.grad_buffer())
    try:
        grad_input = linear._backward_rows(masked, x, input_grad, bias_grad=bias_grad)
    except BaseException:
        if not _MODE.retain:  # as one by one: the ReLU's backward had finished, consuming
            _consume(relu, "_cache")
        raise
    if not _MODE.retain:
        _consume(linear, "_x", "_w")
        _consume(relu, "_cache")
    return grad_input


def _consume(module, *cache_attrs) -> None:
    state = module.__dict__
    for name in cache_attrs:
        state[name] = None
    state["_grad_spec"] = CONSUMED
