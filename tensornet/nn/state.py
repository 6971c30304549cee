"""state_dict and load_state_dict, mixed into ``Module``: PyTorch's dotted names, module by
module, every path to a shared module or tied parameter."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from tensornet.backends import dtype_name, get_backend

from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class StateDict:
    """Mixed into ``Module``: its parameters and buffers by name, saved and loaded."""

    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameters and buffers by PyTorch-style dotted name (``0.weight``, ``bn.running_mean``),
        module by module (each one's parameters, then its buffers), as PyTorch. A shared
        module or parameter appears under every name that reaches it, so the model loads
        its own state back."""
        state = OrderedDict()
        for name, (module, attr, is_param) in self._state_slots().items():
            state[name] = _slot_value(module, attr, is_param)
        return state

    def load_state_dict(self, state, strict: bool = True) -> IncompatibleKeys:
        """Copy values (NumPy or any backend's arrays) into this module's parameters and buffers.

        Values are copied into the existing arrays (as PyTorch does), so anything holding
        them (an optimizer's flat buffers, a captured CUDA graph) sees the loaded values.
        Everything is validated first: a missing or unexpected key, or a shape mismatch,
        raises ``ValueError`` and leaves the module unchanged. Returns, as PyTorch,
        ``(missing_keys, unexpected_keys)`` (both empty unless ``strict=False``).
        """
        own = self._state_slots()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        converted = {}
        for key, (module, attr, is_param) in own.items():
            if key not in state:
                continue
            current = _slot_value(module, attr, is_param)
            value = np.asarray(_to_host(state[key]))
            if tuple(value.shape) != tuple(current.shape):
                problems.append(f"{key}: checkpoint shape {tuple(value.shape)}, "
                                f"model shape {tuple(current.shape)}")
                continue
            host = np.array(value, dtype=dtype_name(current.dtype), copy=True)
            converted[key] = module.backend.asarray(host)
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state does not fit this "
                             f"model ({'; '.join(problems)}); the model was left unchanged")
        for key, array in converted.items():
            module, attr, is_param = own[key]
            current = _slot_value(module, attr, is_param)
            if module.backend.owns(current):
                # In place, as PyTorch: optimizer flat buffers and captured CUDA graphs keep
                # pointing at the live values.
                current[...] = array
            elif is_param:
                module._parameters[attr].data = array
            else:
                module._buffers[attr] = array
                object.__setattr__(module, attr, array)
        return IncompatibleKeys(missing, unexpected)

    def _state_slots(self) -> "OrderedDict[str, tuple]":
        slots = OrderedDict()
        for prefix, module in self.named_modules(remove_duplicate=False):
            for attr in module._parameters:
                slots[f"{prefix}.{attr}" if prefix else attr] = (module, attr, True)
            for attr, buf in module._buffers.items():
                if buf is not None and attr not in module._non_persistent_buffers:
                    slots[f"{prefix}.{attr}" if prefix else attr] = (module, attr, False)
        return slots


def _slot_value(module, attr: str, is_param: bool):
    """The array behind one ``_state_slots`` entry."""
    return module._parameters[attr].data if is_param else module._buffers[attr]


def _to_host(value):
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Parameter):
        value = value.data
    return get_backend(value).to_numpy(value)
