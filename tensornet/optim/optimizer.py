"""Optimizer: parameter groups, lazy per-parameter state, and PyTorch-style state dicts.

Subclasses say how to check a group's hyper-parameters, what state a parameter carries,
and how to update one parameter; the arithmetic itself lives in the backend
(``backend.sgd_update`` etc.) so that each device can fuse it into one kernel.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from tensornet.backends import DeviceError, asnumpy, device_of, dtype_name, get_backend
from tensornet.nn.parameter import Parameter

ARRAY, COUNT = "array", "count"  # kinds of per-parameter state entries
_MISSING = object()


# ---------------------------------------------------------------------- hyper-parameter checks
def real(owner: str, name: str, value) -> float:
    """``value`` as a Python float (never a NumPy float64 scalar), or a clear ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite real number, got {value!r}")
    return float(value)


def non_negative(owner: str, name: str, value) -> float:
    value = real(owner, name, value)
    if value < 0.0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return value


def in_range(owner: str, name: str, value, low: float, high: float, high_open: bool) -> float:
    """``low <= value <= high`` (``< high`` when ``high_open``)."""
    value = real(owner, name, value)
    if value < low or value > high or (high_open and value == high):
        bracket = ")" if high_open else "]"
        raise ValueError(f"{owner}: {name} must be in [{low}, {high}{bracket}, got {value!r}")
    return value


class Optimizer:
    """Base class of the optimizers.

    Args:
        params: an iterable of Parameters (``model.parameters()``), or a list of
            parameter-group dicts ``{"params": [...], "lr": ...}`` whose missing
            hyper-parameters are taken from ``defaults``.
        defaults: the optimizer's hyper-parameters.

    Attributes:
        param_groups: list of dicts, one per group: ``"params"`` plus the hyper-parameters.
            Schedulers (and users) change ``group["lr"]`` between steps.
        state: ``{Parameter: {name: array or int}}``, created lazily at a parameter's first
            step on its own device and dtype.

    ``step()`` updates, in place on ``param.data``, every parameter that requires grad and
    has a gradient; the others are left alone (no state is created for them).
    """

    # Subclasses: name -> ARRAY (shape and dtype of the parameter) or COUNT (int >= 0) for
    # every state entry a parameter may have, and those it must have once it took a step.
    state_kinds: dict = {}
    required_state: tuple = ()

    def __init__(self, params, defaults: dict):
        defaults = dict(defaults)
        self._check_group(defaults)
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict = {}
        self._reset_step_caches()
        for group in self._groups_from(params):
            self.add_param_group(group)

    def _reset_step_caches(self) -> None:
        # What step() may skip: per group, the (group, items) it last validated; per
        # parameter, the (data, state, backend) its state last followed.
        self._checked_groups: list = []
        self._placed: dict = {}

    # ------------------------------------------------------------------ subclass hooks
    def _check_group(self, group: dict) -> None:
        """Validate ``group``'s hyper-parameters and normalise them (Python floats) in place."""
        group["lr"] = non_negative(self._name, "lr", group["lr"])

    def _update(self, backend, param: Parameter, grad, state: dict, group: dict) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ groups
    @property
    def _name(self) -> str:
        return type(self).__name__

    def _groups_from(self, params) -> list:
        if isinstance(params, Parameter):
            raise TypeError(f"{self._name}: params must be an iterable of Parameters (e.g. "
                            f"model.parameters()), got a single Parameter; wrap it in a list")
        if isinstance(params, Mapping) or not hasattr(params, "__iter__"):
            hint = "model.parameters()" if hasattr(params, "parameters") else "a list"
            raise TypeError(f"{self._name}: params must be an iterable of Parameters or of "
                            f"parameter-group dicts, got {type(params).__name__}; pass {hint}")
        items = list(params)
        if not items:
            raise ValueError(f"{self._name} got an empty parameter list")
        if all(isinstance(item, Mapping) for item in items):
            return [dict(item) for item in items]
        if any(isinstance(item, Mapping) for item in items):
            raise TypeError(f"{self._name}: params mixes Parameters and parameter-group dicts")
        return [{"params": items}]

    def add_param_group(self, group: dict) -> None:
        """Add a group ``{"params": [...], **hyper_parameters}`` (e.g. unfrozen layers)."""
        if not isinstance(group, Mapping) or "params" not in group:
            raise TypeError(f"{self._name}: a parameter group must be a dict with a 'params' "
                            f"entry, got {group!r:.80}")
        params = group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        if not params:
            raise ValueError(f"{self._name}: parameter group {len(self.param_groups)} has an "
                             f"empty parameter list")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, param in enumerate(params):
            if not isinstance(param, Parameter):
                raise TypeError(f"{self._name}: params[{i}] of group {len(self.param_groups)} "
                                f"is a {type(param).__name__}, not a Parameter; pass "
                                f"model.parameters()")
            if id(param) in seen:
                raise ValueError(f"{self._name}: {param!r} appears more than once in the "
                                 f"parameter groups")
            seen.add(id(param))
        new = dict(self.defaults)
        new.update(group)
        new["params"] = params
        self._check_group(new)
        self.param_groups.append(new)

    # ------------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (``grad = None``), or zero it in place with ``set_to_none=False``."""
        for group in self.param_groups:
            for param in group["params"]:
                param.zero_grad(set_to_none)

    def step(self, closure=None):
        """Update every parameter that requires grad and has a gradient.

        ``closure`` (optional) recomputes the loss (forward + backward) and returns it;
        its value is returned.
        """
        loss = closure() if closure is not None else None
        placed = self._placed
        for gi, group in enumerate(self.param_groups):
            self._check_group_if_changed(gi, group)
            for pi, param in enumerate(group["params"]):
                grad = param.grad
                if grad is None or not param.requires_grad:
                    continue
                data, state = param.data, self.state.get(param)
                where = placed.get(param)
                # The same array and state as last step: nothing moved, reuse its backend.
                fresh = where is None or where[0] is not data or where[1] is not state
                backend = get_backend(data) if fresh else where[2]
                self._check_grad(param, grad, backend, gi, pi)
                if fresh:
                    if state is None:
                        state = self.state[param] = {}
                    else:
                        self._follow_param(param, state, backend)
                    placed[param] = (data, state, backend)
                self._update(backend, param, grad, state, group)
        return loss

    def _check_group_if_changed(self, gi: int, group: dict) -> None:
        """Validate ``group`` unless it holds the very objects it held after its last check.

        Schedulers and users edit groups between steps; any new value (a new object: checks
        store normalised Python floats, bools and tuples) or key triggers a full check.
        """
        checked = self._checked_groups
        while len(checked) <= gi:
            checked.append(None)
        seen = checked[gi]
        if seen is not None and seen[0] is group and len(seen[1]) == len(group):
            for key, value in seen[1]:
                if group.get(key, _MISSING) is not value:
                    break
            else:
                return
        self._check_group(group)
        checked[gi] = (group, tuple(group.items()))

    def _check_grad(self, param, grad, backend, gi: int, pi: int) -> None:
        if backend.owns(grad) and grad.shape == param.data.shape \
                and grad.dtype == param.data.dtype:
            return
        where = f"{self._name}.step: parameter {pi} of group {gi} {param!r}"
        if not backend.owns(grad):
            raise DeviceError(f"{where} is on {backend.device!r} but its grad is on "
                              f"{device_of(grad)!r}")
        if tuple(grad.shape) != tuple(param.data.shape):
            raise ValueError(f"{where} has a grad of shape {tuple(grad.shape)}")
        raise TypeError(f"{where} has a {dtype_name(grad.dtype)} grad; expected "
                        f"{dtype_name(param.data.dtype)}")

    def _follow_param(self, param, state: dict, backend) -> None:
        # A model moved or cast after its first step takes its state along.
        for name, value in state.items():
            if self.state_kinds.get(name) == ARRAY and (
                    not backend.owns(value) or value.dtype != param.data.dtype):
                state[name] = _on_param(asnumpy(value), param)

    def _zeros_like(self, backend, param, fill: float = 0.0):
        if fill:
            return backend.full(param.data.shape, fill, param.data.dtype)
        return backend.zeros(param.data.shape, param.data.dtype)

    # ------------------------------------------------------------------ state dicts
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or int}}, "param_groups": [...]}`` as in PyTorch.

        Parameters are numbered 0, 1, ... across the groups in order; each group lists
        its hyper-parameters and ``"params"`` as those indices. The arrays are the live
        state buffers (as in PyTorch), not copies: convert or copy them to keep a snapshot.
        """
        index: dict = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s and id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict) -> None:
        """Load what ``state_dict()`` returned (arrays may be NumPy or any device's).

        Arrays are copied onto each parameter's device and dtype. Everything is checked
        first: a mismatch (number of groups or parameters, a shape, an unknown state entry,
        an invalid hyper-parameter) raises ``ValueError`` and leaves the optimizer unchanged.
        """
        problems: list[str] = []
        fail = f"{self._name}.load_state_dict: the state does not fit this optimizer"
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(f"{fail}: expected a dict with 'state' and 'param_groups', got "
                             f"{type(state_dict).__name__}; the optimizer was left unchanged")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        count = len(saved_groups) if isinstance(saved_groups, (list, tuple)) else "no list of"
        if count != len(self.param_groups):
            raise ValueError(f"{fail}: it has {count} parameter groups, this optimizer "
                             f"{len(self.param_groups)}; the optimizer was left unchanged")
        new_groups, by_index = [], {}
        for gi, (own, saved) in enumerate(zip(self.param_groups, saved_groups)):
            new_group = self._load_group(gi, own, saved, by_index, problems)
            if new_group is not None:
                new_groups.append(new_group)
        new_state = {}
        if problems:  # parameter indices are unreliable once a group does not fit
            saved_state = {}
        elif not isinstance(saved_state, Mapping):
            problems.append(f"'state' must be a dict, got {type(saved_state).__name__}")
            saved_state = {}
        for key, entry in saved_state.items():
            try:
                param, group = by_index[int(key)]
            except (KeyError, TypeError, ValueError):
                problems.append(f"state for unknown parameter index {key!r}")
                continue
            loaded = self._load_entry(key, param, group, entry, problems)
            if loaded:
                new_state[param] = loaded
        if problems:
            raise ValueError(f"{fail} ({'; '.join(problems)}); the optimizer was left unchanged")
        self.param_groups = new_groups
        self.state = new_state
        self._reset_step_caches()

    def _load_group(self, gi, own, saved, by_index, problems):
        if not isinstance(saved, Mapping) or "params" not in saved:
            problems.append(f"param_groups[{gi}] is not a dict with 'params'")
            return None
        ids = list(saved["params"])
        if len(ids) != len(own["params"]):
            problems.append(f"group {gi} has {len(ids)} parameters in the state but "
                            f"{len(own['params'])} in this optimizer")
            return None
        missing = [k for k in self.defaults if k not in saved]
        if missing:
            problems.append(f"group {gi} lacks hyper-parameters {', '.join(missing)}")
            return None
        group = {k: (tuple(v) if isinstance(own.get(k), tuple) else v)
                 for k, v in saved.items() if k != "params"}
        group["params"] = own["params"]
        try:
            self._check_group(group)
        except (ValueError, TypeError) as exc:
            problems.append(f"group {gi}: {exc}")
            return None
        for saved_id, param in zip(ids, own["params"]):
            try:
                saved_id = int(saved_id)
            except (TypeError, ValueError):
                problems.append(f"group {gi} has a non-integer parameter index {saved_id!r}")
                continue
            if saved_id in by_index:
                problems.append(f"parameter index {saved_id} appears twice")
            by_index[saved_id] = (param, group)
        return group

    def _load_entry(self, key, param, group, entry, problems) -> dict:
        where = f"state[{key!r}] ({param!r})"
        if not isinstance(entry, Mapping):
            problems.append(f"{where} is not a dict")
            return {}
        unknown = [n for n in entry if n not in self.state_kinds]
        missing = [n for n in self.required_state if n not in entry] if entry else []
        if unknown or missing:
            problems.append(f"{where} has entries {sorted(entry)}; {self._name} keeps "
                            f"{sorted(self.state_kinds)} (required: {list(self.required_state)})")
            return {}
        loaded = {}
        for name, value in entry.items():
            if self.state_kinds[name] == COUNT:
                try:
                    count = int(np.asarray(asnumpy(value) if hasattr(value, "shape") else value))
                except (TypeError, ValueError):
                    count = -1
                if count < 0:
                    problems.append(f"{where}[{name!r}] must be a count >= 0, got {value!r}")
                loaded[name] = count
                continue
            try:
                host = asnumpy(value) if hasattr(value, "shape") else np.asarray(value)
            except TypeError as exc:
                problems.append(f"{where}[{name!r}]: {exc}")
                continue
            if tuple(host.shape) != param.shape:
                problems.append(f"{where}[{name!r}] has shape {tuple(host.shape)}, the "
                                f"parameter {param.shape}")
                continue
            loaded[name] = _on_param(host, param)
        return loaded

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {hyper}")
        return "\n".join(lines) + "\n)"


def _on_param(host: np.ndarray, param: Parameter):
    """A fresh copy of host data on ``param``'s device, in its dtype."""
    copy = np.array(host, dtype=dtype_name(param.data.dtype), copy=True)
    return get_backend(param.data).asarray(copy)
