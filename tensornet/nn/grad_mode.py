"""``no_grad`` and the cache protocol every Module follows: forward keeps, backward consumes.

A layer lists the attributes its forward fills for backward in ``_cache_attrs``. Every
subclass's ``forward`` and ``backward`` are wrapped once (``Module.__init_subclass__``):

- forward records the shape, dtype and array type of its output (what ``backward`` will
  be given; of its first element when it returns a tuple, as ``MaxPool2d(...,
  return_indices=True)``'s ``(y, indices)``); inside ``with no_grad():`` it keeps
  nothing: the module's cache attributes are put back as they were, so a pending
  backward (a training forward not yet back-propagated) still finds its own cache;
- backward first checks ``grad_output`` (an array on the module's device, of its forward
  output's shape and dtype), then runs, then consumes the cache: the attributes are
  dropped and a second backward without a new forward raises, as PyTorch does.
  ``backward(grad, retain_graph=True)`` keeps the cache (several backward passes through
  one forward, e.g. the gradients of two objectives); it holds for every module that
  backward reaches (a Sequential's children too).

The checks are identity and shape comparisons, no pass over the data.
"""
from __future__ import annotations

import functools
import inspect
import threading

from tensornet.backends import DeviceError, device_of, dtype_name


class _Mode(threading.local):
    """Per thread, as PyTorch's grad mode."""
    enabled = True   # forward keeps its backward caches
    retain = False   # inside a backward(..., retain_graph=True)


_MODE = _Mode()
CONSUMED = ("consumed",)  # _grad_spec after a backward that consumed the cache
RUNNING = ("running",)    # _grad_spec while the module's backward runs


def is_grad_enabled() -> bool:
    """False inside ``with tensornet.no_grad():``."""
    return _MODE.enabled


class no_grad:
    """``with tn.no_grad():`` (or ``@tn.no_grad()``): forward passes keep no backward caches.

    As PyTorch's ``torch.no_grad``: for inference and evaluation. Layers compute exactly as
    usual (BatchNorm in training mode still updates its running statistics; use ``eval()``
    for inference), but nothing is kept for backward, and whatever a module had cached
    before stays: a forward here between a training forward and its backward leaves that
    backward's gradients exactly right. ``tn.evaluate`` and ``tn.predict`` run inside it.
    """

    def __enter__(self):
        self._previous = _MODE.enabled
        _MODE.enabled = False
        return self

    def __exit__(self, *exc_info):
        _MODE.enabled = self._previous
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapped(*args, **kwargs):
            with no_grad():
                return function(*args, **kwargs)
        return wrapped


def tracked_forward(forward):
    """Wrap a subclass's ``forward``: record the output's (a tuple's first element's) shape
    and dtype for backward's check, or, under ``no_grad``, leave the module's cache
    attributes as they were.

    The wrappers write ``self.__dict__`` directly: ``Module.__setattr__`` (which registers
    parameters and submodules) costs a microsecond per call on this path."""
    def wrapped(self, *args, **kwargs):
        if _MODE.enabled:
            output = forward(self, *args, **kwargs)
            # A tuple (MaxPool2d's (y, indices)): backward takes the gradient of the first.
            first = output[0] if output.__class__ is tuple and output else output
            self.__dict__["_grad_spec"] = (getattr(first, "shape", None),
                                           getattr(first, "dtype", None), first.__class__)
            return output
        state = self.__dict__
        saved = [(name, state[name]) for name in self._cache_attrs]
        try:
            return forward(self, *args, **kwargs)
        finally:
            state.update(saved)

    return functools.update_wrapper(wrapped, forward)


def tracked_backward(backward):
    """Wrap a subclass's ``backward``: check ``grad_output`` and that a forward's cache is
    there, run it, consume the cache (unless ``retain_graph``), then fire backward hooks
    (once per call, whoever calls it). Every backward accepts ``input_grad`` (passed on
    where the subclass takes it)."""
    takes_flag = "input_grad" in inspect.signature(backward).parameters

    def wrapped(self, *args, input_grad: bool = True, retain_graph: bool = False, **kwargs):
        if takes_flag:
            kwargs["input_grad"] = input_grad
        state = self.__dict__
        spec = state["_grad_spec"]
        if spec is RUNNING:  # a subclass's backward calling super().backward()
            return backward(self, *args, **kwargs)
        grad_output = args[0] if args else kwargs.get("grad_output")
        owns_cache = self._owns_cache
        if owns_cache:
            if spec is None or spec is CONSUMED:
                raise RuntimeError(_order_message(self, spec))
            # The common case in a few identity tests; anything else gets the full check.
            if grad_output is None or grad_output.__class__ is not spec[2] \
                    or grad_output.shape != spec[0] or grad_output.dtype is not spec[1] \
                    or not self.backend.owns(grad_output):
                self._check_grad_output(grad_output, spec)
        retained = _MODE.retain
        if retain_graph and not retained:
            _MODE.retain = True
        state["_grad_spec"] = RUNNING
        try:
            grad_input = backward(self, *args, **kwargs)
        except BaseException:
            state["_grad_spec"] = spec  # a failed backward consumes nothing
            raise
        finally:
            if retain_graph and not retained:
                _MODE.retain = False
        if owns_cache and not (retained or retain_graph):
            for name in self._cache_attrs:
                state[name] = None
            spec = CONSUMED
        state["_grad_spec"] = spec
        if self._backward_hooks:
            for hook in list(self._backward_hooks.values()):
                result = hook(self, grad_input, grad_output)
                if result is not None:
                    grad_input = result
        return grad_input

    return functools.update_wrapper(wrapped, backward)


def check_grad_output(module, grad, spec) -> None:
    """Raise, naming ``module``, unless ``grad`` is an array on its device with the shape
    and dtype of its forward output (``spec``)."""
    shape, dtype = spec[0], spec[1]
    if not module.backend.owns(grad):
        if hasattr(grad, "shape") and hasattr(grad, "dtype"):
            raise DeviceError(f"{module._describe()}.backward: the module computed on "
                              f"{module.backend.device!r} but grad_output is on "
                              f"{device_of(grad)!r}")
        raise TypeError(f"{module._describe()}.backward expected grad_output as an array of "
                        f"shape {_shape(shape)}, got {type(grad).__name__}")
    if grad.shape != shape:
        raise ValueError(f"{module._describe()}.backward got grad_output of shape "
                         f"{_shape(grad.shape)}; expected {_shape(shape)}, the shape of its "
                         f"forward output")
    if grad.dtype is not dtype and grad.dtype != dtype:
        raise TypeError(f"{module._describe()}.backward got a {dtype_name(grad.dtype)} "
                        f"grad_output; expected {dtype_name(dtype)}, the dtype of its forward "
                        f"output")


def cache_state(module) -> tuple:
    """What ``module`` holds for its next backward (restorable with ``restore_cache``)."""
    return module._grad_spec, tuple(getattr(module, name) for name in module._cache_attrs)


def restore_cache(module, state: tuple) -> None:
    spec, values = state
    object.__setattr__(module, "_grad_spec", spec)
    for name, value in zip(module._cache_attrs, values):
        object.__setattr__(module, name, value)


def _order_message(module, spec) -> str:
    name = module._describe()
    if spec is CONSUMED:
        return (f"{name}.backward called a second time after one forward: the first backward "
                f"consumed what forward cached (PyTorch frees its graph alike). Run forward "
                f"again, or pass retain_graph=True to the first backward to keep the cache")
    return (f"{name}.backward called before forward (or after to()/clear_cache(), or after "
            f"a forward under tn.no_grad()); run forward on the batch first")


def _shape(shape) -> tuple:
    return tuple(shape) if shape is not None else None
