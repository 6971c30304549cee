"""Find the first layer whose output or gradient became NaN/Inf.

A diverging network usually reports a NaN loss, long after the first layer overflowed.
:class:`NonFiniteWatch` hooks every module and raises at the first non-finite forward output,
input gradient or parameter gradient, naming the layer, its type, where in training it
happened and what its input and weights looked like.

Every check reads one value back to the host per module, per pass: nothing on CPU, a
synchronisation per layer on a GPU (use ``every=`` to check only some steps there).
"""
from __future__ import annotations

import numpy as np

from tensornet.callbacks import Callback
from tensornet.nn.functional import all_finite
from tensornet.nn.loss import NonFiniteError
from tensornet.nn.module import Module

from ._util import is_array


class NonFiniteLayerError(NonFiniteError):
    """A layer produced NaN/Inf. Attributes: ``layer`` (dotted name, ``""`` for the model
    itself), ``layer_type``, ``phase`` (``"forward"`` or ``"backward"``), ``epoch``, ``step``
    (``None`` when unknown)."""

    def __init__(self, message, *, layer, layer_type, phase, epoch=None, step=None):
        super().__init__(message)
        self.layer, self.layer_type, self.phase = layer, layer_type, phase
        self.epoch, self.step = epoch, step


class NonFiniteWatch(Callback):
    """Raise :class:`NonFiniteLayerError` at the first layer that produces NaN/Inf.

    As a context manager::

        with tn.diagnostics.watch_nonfinite(model):
            loss = loss_fn(model(x), y); model.backward(loss_fn.backward())

    or as a training callback, ``tn.fit(..., callbacks=[NonFiniteWatch()])``: it attaches
    to the fitted model at the start of training, knows the epoch and step (1-based, as fit
    prints them), and detaches at the end, and also when it raises. ``fit`` re-raises the
    error unchanged (its message names the epoch and step, once; with ``TerminateOnNaN``
    the message becomes the history's ``stop_reason``). Outside fit,
    set ``watch.epoch`` / ``watch.step`` yourself, or the message counts forward passes.

    Args:
        model: the model to watch (a callback may leave it None: fit supplies it).
        check_grads: also check input gradients and parameter gradients during backward.
        every: check one forward/backward pass in ``every`` (1: all of them).
    """

    def __init__(self, model=None, *, check_grads: bool = True, every: int = 1):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"NonFiniteWatch: every must be an integer >= 1, got {every!r}")
        self.model, self.check_grads, self.every = model, check_grads, int(every)
        self.epoch = self.step = None
        self._passes = 0
        self._handles = []

    # ------------------------------------------------------------------ attaching
    def attach(self, model=None):
        """Hook every module of ``model`` (or of the model given at construction)."""
        self.detach()
        self.model = model if model is not None else self.model
        if self.model is None:
            raise ValueError("NonFiniteWatch.attach: no model to watch; pass one")
        if not isinstance(self.model, Module):
            raise TypeError(f"NonFiniteWatch expected a tensornet Module to watch, got "
                            f"{type(self.model).__name__}")
        self._passes = 0
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(self._forward_hook(name)))
            if self.check_grads:
                self._handles.append(module.register_backward_hook(self._backward_hook(name)))
        return self

    def detach(self) -> None:
        """Remove every hook (safe to call twice)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self.attach()

    def __exit__(self, *exc_info):
        self.detach()
        return False

    # ------------------------------------------------------------------ tn.fit callback hooks
    def on_train_begin(self, run) -> None:
        self.attach(run.model)

    def on_epoch_begin(self, run) -> None:
        self.epoch, self.step = run.epoch, 1

    def on_batch_end(self, run, step, loss) -> None:
        self.step = step + 1  # fit numbers steps from 1; the next one is running next

    def on_train_end(self, run) -> None:
        self.detach()

    # ------------------------------------------------------------------ hooks
    def _armed(self) -> bool:
        """Whether this pass is one of the checked ones (see ``every``)."""
        return self._passes % self.every == 0

    def _forward_hook(self, name):
        def hook(module, inputs, output):
            if self._armed() and is_array(output) and not all_finite(output):
                self._raise(name, module, "forward", self._forward_story(module, inputs, output))
            if module is self.model:
                self._passes += 1
            return None
        return hook

    def _backward_hook(self, name):
        def hook(module, grad_input, grad_output):
            # The forward hook of the model already counted this pass.
            if (self._passes - 1) % self.every != 0:
                return None
            finite = all_finite
            if is_array(grad_input) and not finite(grad_input):
                upstream = ("was finite" if is_array(grad_output) and finite(grad_output)
                            else "already held NaN/Inf")
                story = (f"the gradient it passes back (d loss / d input) holds "
                         f"{_count(grad_input)}; the gradient it received (d loss / d output) "
                         f"{upstream}.")
                self._raise(name, module, "backward", story)
            for pname, param in module.named_parameters(recurse=False):
                if param.grad is not None and not finite(param.grad):
                    story = (f"the gradient of its parameter {pname!r} {param.shape} holds "
                             f"{_count(param.grad)}.")
                    self._raise(name, module, "backward", story)
            return None
        return hook

    def _forward_story(self, module, inputs, output) -> str:
        story = f"its output {tuple(output.shape)} holds {_count(output)}. "
        arrays = [a for a in inputs if is_array(a)]
        if arrays and not all(all_finite(a) for a in arrays):
            return story + ("Its input already held NaN/Inf, so the batch fed to the model is "
                            "bad: check the data (and its normalisation).")
        if arrays:
            story += f"Its input was finite (max |x| = {_max_abs(arrays[0]):.3g}). "
        params = list(module.named_parameters(recurse=False))
        if params:
            sizes = ", ".join(f"max |{n}| = {_max_abs(p.data):.3g}" for n, p in params)
            story += f"Its parameters: {sizes}. "
        return story + ("Likely the weights or activations overflowed: lower the learning "
                        "rate, clip gradients (tn.optim.clip_grad_norm_), normalise the inputs "
                        "or use a smaller init.")

    def _raise(self, name, module, phase, story):
        self.detach()  # leave the model clean whoever catches this
        label = f"'{name}'" if name else "the model itself"
        if self.epoch is not None and not self.model.training:
            when = f"while evaluating in epoch {self.epoch}"
        elif self.epoch is not None or self.step is not None:
            when = f"at epoch {self.epoch}, step {self.step}"
        else:
            when = f"in pass {self._passes + (1 if phase == 'forward' else 0)}"
        what = "forward output" if phase == "forward" else "backward gradient"
        message = (f"non-finite {what} at layer {label} ({module._describe()}) {when}: {story}")
        raise NonFiniteLayerError(message, layer=name, layer_type=type(module).__name__,
                                  phase=phase, epoch=self.epoch, step=self.step)


def watch_nonfinite(model, *, check_grads: bool = True, every: int = 1) -> NonFiniteWatch:
    """A :class:`NonFiniteWatch` on ``model``, for use in a ``with`` block."""
    return NonFiniteWatch(model, check_grads=check_grads, every=every)


def _count(a) -> str:
    xp = _xp(a)
    nan = int(xp.sum(xp.astype(xp.isnan(a), xp.int64)))
    inf = int(xp.sum(xp.astype(xp.isinf(a), xp.int64)))
    total = 1
    for d in a.shape:
        total *= d
    return f"{nan} NaN and {inf} Inf of {total} values"


def _max_abs(a) -> float:
    xp = _xp(a)
    finite = xp.where(xp.isfinite(a), xp.abs(a), 0.0)
    return float(xp.max(finite)) if finite.size else 0.0  # size: 0-d/empty arrays


def _xp(a):
    from tensornet.backends import get_backend
    return get_backend(a).xp
