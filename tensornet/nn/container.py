"""Containers: Sequential and Residual."""
from __future__ import annotations

from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    ``Sequential(Linear(784, 256), ReLU(), ...)`` or ``Sequential(OrderedDict(name=module))``.
    Supports ``add``/``append``, ``insert``, ``pop``, ``remove``, ``len``, iteration,
    ``seq[i]`` (a module), ``seq[a:b]`` (a new Sequential sharing the same modules, e.g. the
    encoder half of an autoencoder) and ``del seq[i]`` / ``del seq[a:b]``.

    It caches nothing itself: each module checks and consumes its own cache, so an error in
    backward names the module (a wrong ``grad_output`` shape: the last one).
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

    def __delitem__(self, index) -> None:
        items = list(self._modules.values())
        del items[index]
        self._rebuild(items)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, grad_output, input_grad: bool = True):
        """Backward through the modules in reverse order.

        With ``input_grad=False`` (a training step never uses d loss / d input) the leading
        modules without trainable parameters (a Flatten, say) are skipped, the first module
        with trainable parameters is asked for its parameter gradients only, and None is
        returned.
        """
        modules = list(self._modules.values())
        if input_grad:
            for module in reversed(modules):
                grad_output = module.backward(grad_output)
            return grad_output
        start = next((i for i, m in enumerate(modules)
                      if any(p.requires_grad for p in m.parameters())), None)
        if start is None:
            return None
        for module in reversed(modules[start + 1:]):
            grad_output = module.backward(grad_output)
        modules[start].backward(grad_output, input_grad=False)
        return None


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
