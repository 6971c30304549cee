"""Module: the base of every layer, container and loss.

Torch7-style explicit backprop: ``y = module(x)`` runs ``forward`` and caches what backward
needs; ``dx = module.backward(dy)`` returns the input gradient and adds parameter gradients
into ``param.grad``. Parameters and buffers are registered by assigning them as attributes.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from tensornet.backends import dtype_name, get_backend, to_device

from .checks import FLOAT_DTYPES, InputChecks
from .grad_mode import tracked_backward, tracked_forward
from .parameter import Parameter
from .state import StateDict

class RemovableHandle:
    """Returned by ``register_*_hook``; ``handle.remove()`` unregisters the hook."""

    def __init__(self, hooks: dict, key: int):
        self._hooks, self._key = hooks, key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


class Module(InputChecks, StateDict):
    """Base class. Subclasses implement ``forward(x)`` and ``backward(grad_out) -> grad_in``.

    Args:
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"strict"``, ``"torch"`` or
            a Backend.
        dtype: parameter dtype, ``"float32"`` (default) or ``"float64"``.

    ``backward(grad_output, input_grad=True)``: with ``input_grad=False`` the caller does
    not want d loss / d input (a training step never uses the gradient of its data, and
    PyTorch skips inputs that do not require grad alike): a layer may then skip that
    computation and return None, while still accumulating its parameter gradients.
    Linear, DropConnect and Conv2d skip it (a GEMM, and for Conv2d also col2im); Sequential
    skips its leading parameter-free modules and passes ``input_grad=False`` to the first
    module with trainable parameters. A layer that does not take the argument computes
    the gradient anyway. ``tn.fit`` passes ``input_grad=False`` for each training step, so
    backward hooks on the first layer see ``grad_input=None`` there.

    Caches (``grad_mode.py``): a layer names what its forward keeps for backward in
    ``_cache_attrs``. Backward checks ``grad_output`` (an array on the module's device with
    its forward output's shape and dtype) and then consumes the cache: a second backward
    needs a new forward, unless the first was ``backward(grad, retain_graph=True)``. Inside
    ``with tn.no_grad():`` forward keeps nothing and leaves earlier caches in place.
    """

    _hook_counter = 0
    _cache_attrs: tuple = ()  # attributes forward fills for backward; backward consumes them
    _owns_cache = True        # False for containers: their children check and consume

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "forward" in cls.__dict__ and cls._owns_cache:  # a container's children track
            cls.forward = tracked_forward(cls.__dict__["forward"])
        if "backward" in cls.__dict__:
            cls.backward = tracked_backward(cls.__dict__["backward"])

    def __init__(self, *, device=None, dtype=None):
        setattr_ = object.__setattr__
        setattr_(self, "_parameters", OrderedDict())
        setattr_(self, "_buffers", OrderedDict())
        setattr_(self, "_non_persistent_buffers", set())  # moved by to(), not in state_dict
        setattr_(self, "_modules", OrderedDict())
        setattr_(self, "_forward_hooks", OrderedDict())
        setattr_(self, "_backward_hooks", OrderedDict())
        setattr_(self, "_grad_spec", None)  # (shape, dtype, type) of the output: grad_mode.py
        for name in self._cache_attrs:
            setattr_(self, name, None)
        setattr_(self, "training", True)
        setattr_(self, "backend", get_backend(device))
        name = dtype_name(dtype) if dtype is not None else "float32"
        if name not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}: dtype must be one of {FLOAT_DTYPES}, "
                            f"got {dtype!r}")
        setattr_(self, "dtype", name)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        """Register Parameters, Modules and buffers assigned as attributes (as PyTorch):
        over a registered parameter or submodule only another one or None (which
        unregisters it) may be assigned."""
        if "_parameters" not in self.__dict__:
            if isinstance(value, (Parameter, Module)):
                kind = "a parameter" if isinstance(value, Parameter) else "a submodule"
                raise AttributeError(_no_init_message(self, f"cannot assign {kind} "
                                                            f"{name!r} before Module.__init__()"))
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Parameter):
            got = dtype_name(value.data.dtype)
            if got != self.dtype and got in FLOAT_DTYPES:  # no silent promotion in forward
                raise TypeError(f"{type(self).__name__}: parameter {name!r} is {got} but the "
                                f"module is {self.dtype}; make it with "
                                f"self.new_parameter(array) (the module's dtype and device), "
                                f"or cast the model afterwards with .to(dtype={got!r})")
            self._buffers.pop(name, None)
            self._modules.pop(name, None)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._parameters.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        elif name in self._parameters:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"as parameter {name!r} (a Parameter or None expected); to "
                                f"change its values assign {name}.data")
            del self._parameters[name]
        elif name in self._modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} "
                                f"as child module {name!r} (a Module or None expected)")
            del self._modules[name]
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only reached when ordinary lookup fails: name the usual cause for the internals.
        if name in _INTERNALS and "_parameters" not in self.__dict__:
            raise AttributeError(_no_init_message(self, f"{type(self).__name__} has no {name!r}"))
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent_buffers.discard(name)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value, persistent: bool = True) -> None:
        """A non-trainable array moved by ``to`` (running stats); saved by ``state_dict``
        unless ``persistent=False``. As PyTorch, ``name`` must be a new attribute (or a
        buffer already) and contain no ``.``."""
        if "_buffers" not in self.__dict__:
            raise AttributeError(_no_init_message(self, f"cannot register buffer {name!r}"))
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}.register_buffer: the name must be a str, "
                            f"got {type(name).__name__}")
        if not name:
            raise KeyError(f"{type(self).__name__}.register_buffer: the name can't be empty")
        if "." in name:
            raise KeyError(f"{type(self).__name__}.register_buffer: the name can't contain "
                           f"'.' (state_dict joins names with it), got {name!r}")
        if name not in self._buffers and hasattr(self, name):
            raise KeyError(f"{type(self).__name__}.register_buffer: attribute {name!r} "
                           f"already exists")
        self._buffers[name] = value
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)
        object.__setattr__(self, name, value)

    def new_parameter(self, host_value: np.ndarray) -> Parameter:
        """A Parameter on this module's device and dtype from a host NumPy array."""
        return Parameter(self.backend.asarray(np.asarray(host_value, dtype=self.dtype)))

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        """Compute the output (subclasses implement it); call the module, ``module(x)``,
        rather than ``forward``, so forward hooks run."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output, input_grad: bool = True):
        """d loss / d input from ``grad_output`` = d loss / d output; adds parameter
        gradients into ``param.grad`` (subclasses implement it; see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        """``forward``, then the forward hooks."""
        output = self.forward(*args, **kwargs)
        if self._forward_hooks:
            for hook in list(self._forward_hooks.values()):
                result = hook(self, args, output)
                if result is not None:
                    output = result
        return output

    def register_forward_hook(self, hook) -> RemovableHandle:
        """``hook(module, inputs, output)`` runs after every forward; a non-None return
        replaces the output."""
        return self._add_hook(self._forward_hooks, hook)

    def register_backward_hook(self, hook) -> RemovableHandle:
        """``hook(module, grad_input, grad_output)`` runs after every backward; a non-None
        return replaces the gradient passed on to the previous layer."""
        return self._add_hook(self._backward_hooks, hook)

    @staticmethod
    def _add_hook(hooks: dict, hook) -> RemovableHandle:
        Module._hook_counter += 1
        hooks[Module._hook_counter] = hook
        return RemovableHandle(hooks, Module._hook_counter)

    # ------------------------------------------------------------------ traversal
    def children(self):
        """The direct submodules, in registration order (one registered twice, once)."""
        for _, module in self.named_children():
            yield module

    def named_children(self):
        """``(name, module)`` for each direct submodule, each module once (as PyTorch)."""
        seen = set()
        for name, module in self._modules.items():
            if id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True):
        """``(dotted name, module)`` for this module (name ``prefix``) and every descendant,
        depth first; a module reached by several paths (shared) once, under its first name
        (every path with ``remove_duplicate=False``), as PyTorch."""
        yield from self._named_modules(prefix, set() if remove_duplicate else None)

    def _named_modules(self, prefix: str, seen):
        if seen is not None:
            if id(self) in seen:
                return
            seen.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            yield from child._named_modules(f"{prefix}.{name}" if prefix else name, seen)

    def modules(self):
        """This module and every descendant, depth first."""
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """``(dotted name, Parameter)``, each shared parameter once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), param

    def parameters(self, recurse: bool = True):
        """Every Parameter (of the children too unless ``recurse=False``), each once."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True):
        """``(dotted name, array)`` for every buffer that is set (BatchNorm running stats),
        non-persistent ones included (of the children too unless ``recurse=False``)."""
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, buf in module._buffers.items():
                if buf is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), buf

    def buffers(self, recurse: bool = True):
        """Every buffer that is set (of the children too unless ``recurse=False``)."""
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of scalar parameters (only those that require grad with ``trainable_only``)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True):
        """Set training mode (``mode=True``) or eval mode on this module and every descendant;
        returns ``self``. Dropout and BatchNorm behave differently in the two."""
        if not isinstance(mode, bool):
            raise ValueError(f"{type(self).__name__}.train: the training mode is expected to be "
                             f"boolean, got {mode!r}")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """``train(False)``: inference behaviour (no dropout, BatchNorm's running stats)."""
        return self.train(False)

    def apply(self, fn):
        """``fn(module)`` for every descendant (children first) and then this module, as
        PyTorch (e.g. a custom initialisation); returns ``self``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter gradient (or zero it in place with ``set_to_none=False``)."""
        for param in self.parameters():
            param.zero_grad(set_to_none)

    def requires_grad_(self, requires_grad: bool = True):
        """Freeze (False) or unfreeze every parameter of this module and its children."""
        for param in self.parameters():
            param.requires_grad = requires_grad
        return self

    # ------------------------------------------------------------------ devices and dtypes
    def to(self, device=None, dtype=None):
        """Move parameters, gradients and buffers to ``device`` and/or cast to ``dtype``.

        In place, like PyTorch; returns ``self``. Forward caches are dropped. A dtype as the
        only argument (``to("float64")``, ``to(np.float64)``) casts, as ``.to(torch.float64)``.
        """
        if dtype is None and _names_a_dtype(device):
            device, dtype = None, device
        backend = get_backend(device) if device is not None else None
        name = dtype_name(dtype) if dtype is not None else None
        if name is not None and name not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: dtype must be one of {FLOAT_DTYPES}")
        for module in self.modules():
            target = backend or module.backend
            cast = name or module.dtype
            for param in module._parameters.values():
                moved = _move(param.data, target, cast)
                if moved is not param.data:  # the slot is a buffer on the old device/dtype
                    param.data, param._grad_slot = moved, None
                if param.grad is not None:
                    param.grad = _move(param.grad, target, cast)
            for key, buf in module._buffers.items():
                if buf is not None:
                    keep = dtype_name(buf.dtype) if dtype_name(buf.dtype) not in FLOAT_DTYPES else cast
                    moved = _move(buf, target, keep)
                    module._buffers[key] = moved
                    object.__setattr__(module, key, moved)
            object.__setattr__(module, "backend", target)
            object.__setattr__(module, "dtype", cast)
            module._forget_cache()
        return self

    def cpu(self):
        """``to("cpu")``: move to the host (NumPy)."""
        return self.to("cpu")

    def cuda(self, index: int | None = None):
        """``to("cuda")`` or ``to(f"cuda:{index}")`` (needs CuPy and a GPU)."""
        return self.to("cuda" if index is None else f"cuda:{int(index)}")

    def double(self):
        """``to(dtype="float64")``: cast parameters, gradients and float buffers."""
        return self.to(dtype="float64")

    def float(self):
        """``to(dtype="float32")``."""
        return self.to(dtype="float32")

    def clear_cache(self) -> None:
        """Forget what forward cached for backward, in this module and every submodule (a
        container's children hold the caches): frees the activations a pending backward
        would use."""
        for module in self.modules():
            module._forget_cache()

    def _forget_cache(self) -> None:
        """This module's own part of ``clear_cache``: the attributes in ``_cache_attrs``."""
        for name in self._cache_attrs:
            object.__setattr__(self, name, None)
        object.__setattr__(self, "_grad_spec", None)

    def _describe(self) -> str:
        extra = self.extra_repr()
        return f"{type(self).__name__}({extra})"

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The arguments shown in ``repr(module)`` (subclasses override it)."""
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        if self.extra_repr():
            lines.append(f"  {self.extra_repr()}")
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        lines.append(")")
        return "\n".join(lines)


_INTERNALS = frozenset({"_parameters", "_buffers", "_modules", "_forward_hooks",
                        "_backward_hooks", "_grad_spec", "training", "backend", "dtype"})


_DTYPE_NAMES = frozenset(FLOAT_DTYPES + ("bool", "complex64", "complex128") + tuple(
    f"{kind}{bits}" for kind in ("int", "uint") for bits in (8, 16, 32, 64)))


def _names_a_dtype(value) -> bool:
    """True for a dtype or dtype name (never a device string or a Backend)."""
    if value is None:
        return False
    try:
        return dtype_name(value) in _DTYPE_NAMES
    except Exception:  # a Backend or anything else dtype_name cannot read
        return False


def _no_init_message(module, what: str) -> str:
    return (f"{what}: Module.__init__() was not called; call super().__init__() first in "
            f"{type(module).__name__}.__init__")


def _move(array, backend, dtype):
    moved = to_device(array, backend)
    if dtype_name(moved.dtype) != dtype:
        moved = backend.xp.astype(moved, backend.dtype(dtype))
    return moved
