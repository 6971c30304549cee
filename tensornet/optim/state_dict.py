"""Optimizer state dicts in PyTorch's layout: saving, and loading all-or-nothing."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from tensornet.backends import asnumpy, dtype_name, get_backend
from tensornet.nn.parameter import Parameter

# Kinds of per-parameter state entries: an array shaped as the parameter, a step count (an
# int), and a float the optimizer advances on the host each step (NAdam's mu_product).
ARRAY, COUNT, SCALAR = "array", "count", "scalar"
# PyTorch's on/off options that change the update, off. An optimizer without one of them
# (not in its defaults: Adamax has no amsgrad) refuses a state dict that turns it on rather
# than step without it; one that has it takes a saved group without it (a checkpoint from
# before tensornet had the option, as PyTorch's __setstate__ does) as off.
_TORCH_OPTIONS = {"maximize": False, "amsgrad": False, "centered": False,
                  "decoupled_weight_decay": False}


class StateDictMixin:
    """``state_dict`` / ``load_state_dict`` of ``Optimizer`` (which defines ``state_kinds``,
    ``required_state``, ``defaults``, ``param_groups``, ``state`` and ``_check_group``)."""

    def _required_state(self, group: dict) -> tuple:
        """What a loaded state of a parameter of ``group`` must hold: ``required_state``,
        and what the group's options add (Adam's amsgrad: ``max_exp_avg_sq``)."""
        return self.required_state

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
        self._reset_step_caches()  # every flat pack re-adopts the loaded arrays

    def _load_group(self, gi, own, saved, by_index, problems):
        if not isinstance(saved, Mapping) or "params" not in saved:
            problems.append(f"param_groups[{gi}] is not a dict with 'params'")
            return None
        ids = list(saved["params"])
        if len(ids) != len(own["params"]):
            problems.append(f"group {gi} has {len(ids)} parameters in the state but "
                            f"{len(own['params'])} in this optimizer")
            return None
        missing = [k for k in self.defaults if k not in saved and k not in _TORCH_OPTIONS]
        if missing:
            problems.append(f"group {gi} lacks hyper-parameters {', '.join(missing)}")
            return None
        options = dict(_TORCH_OPTIONS, decoupled_weight_decay=self.weight_decay_style
                       == "decoupled")
        unsupported = [f"{k}={saved[k]!r}" for k, plain in options.items()
                       if k in saved and k not in self.defaults and bool(saved[k]) != plain]
        if unsupported:
            problems.append(f"group {gi} sets {', '.join(unsupported)}, which tensornet's "
                            f"{self._name} does not do")
            return None
        group = {k: (tuple(v) if isinstance(own.get(k), tuple) else v)
                 for k, v in saved.items() if k != "params"}
        for k in self.defaults:
            group.setdefault(k, _TORCH_OPTIONS.get(k))  # only options can be missing here
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
        required = self._required_state(group)
        unknown = [n for n in entry if n not in self.state_kinds]
        missing = [n for n in required if n not in entry] if entry else []
        if unknown or missing:
            problems.append(f"{where} has entries {sorted(entry)}; {self._name} keeps "
                            f"{sorted(self.state_kinds)} (required: {list(required)})")
            return {}
        loaded = {}
        for name, value in entry.items():
            if self.state_kinds[name] == SCALAR:
                try:
                    number = float(np.asarray(asnumpy(value) if hasattr(value, "shape")
                                              else value))
                except (TypeError, ValueError):
                    number = math.nan
                if not math.isfinite(number):
                    problems.append(f"{where}[{name!r}] must be a finite number, got {value!r}")
                loaded[name] = number
                continue
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


def _on_param(host: np.ndarray, param: Parameter):
    """A fresh copy of host data on ``param``'s device, in its dtype."""
    copy = np.array(host, dtype=dtype_name(param.data.dtype), copy=True)
    return get_backend(param.data).asarray(copy)
