"""Containers: Sequential, Residual, ModuleList and ModuleDict."""
from __future__ import annotations

from collections import OrderedDict

from . import fusion
from .module import Module


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    ``Sequential(Linear(784, 256), ReLU(), ...)`` or ``Sequential(OrderedDict(name=module))``.
    Supports ``add``/``append``, ``insert``, ``pop``, ``remove``, ``len``, iteration,
    ``seq[i]`` (a module), ``seq[i] = module`` (replaced, keeping its name), ``seq[a:b]``
    (a new Sequential sharing the same modules, e.g. the encoder half of an autoencoder)
    and ``del seq[i]`` / ``del seq[a:b]``.

    It caches nothing itself: each module checks and consumes its own cache, so an error in
    backward names the module (a wrong ``grad_output`` shape: the last one). A ``Linear`` or
    a ``BatchNorm1d``/``BatchNorm2d`` followed by a ``ReLU`` (neither with hooks) runs as
    one step, with fewer passes over the activation each way and bitwise the same results
    (``tensornet/nn/fusion.py``).
    """

    _owns_cache = False

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add(module, name)
        else:
            for module in modules:
                self.add(module)

    def add(self, module: Module, name: str | None = None) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.add expected a Module, got {type(module).__name__}")
        name = str(len(self._modules)) if name is None else name
        if name in self._modules:
            raise ValueError(f"Sequential already has a module named {name!r}")
        setattr(self, name, module)
        if len(self._modules) == 1:
            object.__setattr__(self, "backend", module.backend)
            object.__setattr__(self, "dtype", module.dtype)
        return self

    append = add

    def insert(self, index: int, module: Module) -> "Sequential":
        items = list(self._modules.values())
        items.insert(index, module)
        self._rebuild(items)
        return self

    def pop(self, index: int = -1) -> Module:
        """Remove and return the module at ``index`` (the last one by default)."""
        items = list(self._modules.values())
        module = items.pop(index)
        self._rebuild(items)
        return module

    def remove(self, index_or_module) -> None:
        """Remove a module given its index or the module itself."""
        if isinstance(index_or_module, Module):
            items = [m for m in self._modules.values() if m is not index_or_module]
            if len(items) == len(self._modules):
                raise ValueError("Sequential.remove: that module is not in this Sequential")
            self._rebuild(items)
        else:
            self.pop(index_or_module)

    def _rebuild(self, modules) -> None:
        """Re-register ``modules`` in order: default names are renumbered 0..n-1, custom
        names are kept."""
        old_names = {id(m): name for name, m in self._modules.items()}
        numbered = all(name.isdigit() for name in self._modules)
        for name in list(self._modules):
            delattr(self, name)
        for module in modules:
            self.add(module, None if numbered else old_names.get(id(module)))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def __setitem__(self, index: int, module: Module) -> None:
        """``seq[i] = module``: replace the i-th module, keeping its name (as PyTorch)."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential[{index!r}] = ...: expected a Module, got "
                            f"{type(module).__name__}")
        names = list(self._modules)
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"Sequential indices must be integers, got {type(index).__name__}")
        if not -len(names) <= index < len(names):
            raise IndexError(f"Sequential index {index} is out of range for {len(names)} "
                             f"modules")
        setattr(self, names[index], module)
        if index in (0, -len(names)):  # the first module gives the Sequential's device
            object.__setattr__(self, "backend", module.backend)
            object.__setattr__(self, "dtype", module.dtype)

    def __delitem__(self, index) -> None:
        items = list(self._modules.values())
        del items[index]
        self._rebuild(items)

    def forward(self, x):
        modules = list(self._modules.values())
        last, i = len(modules) - 1, 0
        while i <= last:
            module = modules[i]
            if i < last and fusion.fusable(module, modules[i + 1]):  # (Linear or BatchNorm) + ReLU
                x = fusion.forward(module, modules[i + 1], x)
                i += 2
            else:
                x = module(x)
                i += 1
        return x

    def backward(self, grad_output, input_grad: bool = True):
        """Backward through the modules in reverse order.

        With ``input_grad=False`` (a training step never uses d loss / d input) the leading
        modules without trainable parameters (a Flatten, say) are skipped, the first module
        with trainable parameters is asked for its parameter gradients only, and None is
        returned.
        """
        modules = list(self._modules.values())
        start = 0
        if not input_grad:
            start = next((i for i, m in enumerate(modules)
                          if any(p.requires_grad for p in m.parameters())), None)
            if start is None:
                return None
        i = len(modules) - 1
        while i >= start:
            module = modules[i]
            wanted = input_grad or i > start  # d loss / d input of modules[i]
            if i > start and fusion.fusable(modules[i - 1], module):  # (the same pairs)
                grad = fusion.backward(modules[i - 1], module, grad_output,
                                       input_grad or i - 1 > start)
                if grad is not NotImplemented:
                    grad_output, i = grad, i - 2
                    continue
            grad_output = module.backward(grad_output) if wanted else \
                module.backward(grad_output, input_grad=False)
            i -= 1
        return grad_output if input_grad else None


class Residual(Module):
    """``y = x + f(x)`` (a ResNet skip connection); ``f`` must keep the input's shape.
    Caches nothing itself (``f`` does)."""

    _owns_cache = False

    def __init__(self, module: Module):
        super().__init__()
        self.body = module
        object.__setattr__(self, "backend", module.backend)
        object.__setattr__(self, "dtype", module.dtype)

    def forward(self, x):
        fx = self.body(x)
        if tuple(fx.shape) != tuple(x.shape):
            raise ValueError(f"Residual: the wrapped {type(self.body).__name__} maps "
                             f"{tuple(x.shape)} to {tuple(fx.shape)}; a skip connection needs "
                             f"the same shape in and out")
        return x + fx

    def backward(self, grad_output, input_grad: bool = True):
        body_grad = self.body.backward(grad_output, input_grad=input_grad)
        return grad_output + body_grad if input_grad else None


def _module(owner: str, value) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{owner} holds Modules, got {type(value).__name__}")
    return value


class ModuleList(Module):
    """A list of modules whose parameters belong to the owner (``torch.nn.ModuleList``).

    It registers its items as children ``0``, ``1``, ... (so ``state_dict`` keys read
    ``blocks.0.weight``, as PyTorch), but has no forward: the owner calls the items in its
    own ``forward`` and ``backward``. Supports ``append``, ``extend``, ``insert``, ``pop``,
    ``len``, iteration, ``lst[i]``, ``lst[a:b]`` (a new ModuleList of the same modules),
    ``lst[i] = module`` and ``del lst[i]``.
    """

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def _items(self) -> list:
        return list(self._modules.values())

    def _reset(self, modules) -> None:
        for name in list(self._modules):
            delattr(self, name)
        for i, module in enumerate(modules):
            setattr(self, str(i), _module("ModuleList", module))

    def append(self, module: Module) -> "ModuleList":
        setattr(self, str(len(self._modules)), _module("ModuleList", module))
        return self

    def extend(self, modules) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = self._items()
        items.insert(index, _module("ModuleList", module))
        self._reset(items)

    def pop(self, index: int = -1) -> Module:
        items = self._items()
        module = items.pop(index)
        self._reset(items)
        return module

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._items())

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ModuleList(self._items()[index])
        return self._items()[index]

    def __setitem__(self, index: int, module: Module) -> None:
        items = self._items()
        items[index] = _module("ModuleList", module)
        self._reset(items)

    def __delitem__(self, index) -> None:
        items = self._items()
        del items[index]
        self._reset(items)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward: call its modules in your own "
                                  "Module's forward (and backward in reverse)")


class ModuleDict(Module):
    """Modules by name, registered as children (``torch.nn.ModuleDict``); keeps insertion
    order. ``md[name]``, ``md[name] = module``, ``del md[name]``, ``name in md``, ``len``,
    iteration over names, ``keys``/``values``/``items``, ``update`` and ``pop``. No forward,
    like ModuleList."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _check_name(self, name) -> str:
        if not isinstance(name, str) or not name or "." in name:
            raise KeyError(f"ModuleDict: names must be non-empty strings without '.', got "
                           f"{name!r}")
        if name in type(self).__dict__ or hasattr(Module, name):
            raise KeyError(f"ModuleDict: {name!r} is an attribute of ModuleDict; pick another "
                           f"name")
        return name

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __setitem__(self, name: str, module: Module) -> None:
        setattr(self, self._check_name(name), _module("ModuleDict", module))

    def __delitem__(self, name: str) -> None:
        if name not in self._modules:
            raise KeyError(name)
        delattr(self, name)

    def __contains__(self, name) -> bool:
        return name in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules))

    def keys(self):
        return list(self._modules.keys())

    def values(self):
        return list(self._modules.values())

    def items(self):
        return list(self._modules.items())

    def update(self, modules) -> None:
        """Add (name, module) pairs from a mapping or an iterable of pairs."""
        pairs = modules.items() if hasattr(modules, "items") else modules
        for name, module in pairs:
            self[name] = module

    def pop(self, name: str) -> Module:
        module = self[name]
        del self[name]
        return module

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward: call its modules in your own "
                                  "Module's forward (and backward in reverse)")
