"""Optimizer: parameter groups, lazy per-parameter state, group options, and the step.

A subclass is one file holding all of its math (see ``adam.py``): its hyper-parameter
checks, the state it keeps, the per-step scalars, and its update rule as a
``FusedUpdate`` (the rule in array-API form, and beside it the same rule as a kernel body;
options that change the rule itself, such as Adam's ``amsgrad``, pick another rule there).
This class supplies the rest once: the options every optimizer shares, composed into the
rule (weight decay, coupled L2 or decoupled, and ``maximize``: ``compose.py``), flat
per-group buffers so that a step is one fused update per group (``flat.py``),
all-or-nothing checks, and state dicts (``state_dict.py``).
"""
from __future__ import annotations

from collections.abc import Mapping

from tensornet.backends import DeviceError, FusedUpdate, device_of, dtype_name, get_backend
from tensornet.nn.parameter import Parameter

from .checks import betas, flag, in_range, non_negative, real
from .compose import coupled_decay, decoupled_decay, group_rule
from .flat import build_packs
from .state_dict import ARRAY, COUNT, SCALAR, StateDictMixin

__all__ = ["Optimizer", "ARRAY", "COUNT", "SCALAR", "real", "non_negative", "in_range", "betas",
           "flag", "coupled_decay", "decoupled_decay"]
_MISSING = object()


class Optimizer(StateDictMixin):
    """Base class of the optimizers.

    Args:
        params: an iterable of Parameters (``model.parameters()``), or a list of
            parameter-group dicts ``{"params": [...], "lr": ...}`` whose missing
            hyper-parameters are taken from ``defaults``.
        defaults: the optimizer's hyper-parameters.

    Attributes:
        param_groups: list of dicts, one per group: ``"params"`` plus the hyper-parameters.
            Schedulers (and users) change ``group["lr"]`` between steps.
        state: ``{Parameter: {name: array or int}}``, created at a parameter's first step.

    ``step()`` updates, in place, every parameter that requires grad and has a gradient;
    the others are left alone (no state is created for them). The parameters of a group
    live in flat buffers (see ``flat.py``) from the optimizer's construction on: ``p.data``
    is then a view of the group's buffer, updated in place by every step; an array taken
    from ``p.data`` before the optimizer was built is a copy of the old values (hold the
    Parameter, or take ``p.data`` afterwards).

    Subclasses define ``state_kinds`` (name -> ARRAY, COUNT or SCALAR; every COUNT starts at
    0 at a parameter's first step, a SCALAR, a host float, at its fill),
    ``required_state`` (what a loaded state must hold; override
    ``_required_state(group)`` when a group's options need more), and:
    ``_rule(group) -> FusedUpdate``; ``_scalars(group, state, fresh) -> dict`` (the rule's
    scalars for one step, ``state`` already advanced by ``_advance``, ``fresh`` True at a
    parameter's first step); optionally ``_state_fills(group)`` (initial values of state
    arrays and SCALARs other than 0) and ``_advance(group, states)`` (what a step does to
    the host entries of each state dict before the rule runs: COUNTs go up by one; NAdam
    also multiplies its SCALAR in). ``weight_decay_style`` is ``"coupled"`` (L2:
    ``g + wd * p`` enters the rule), ``"decoupled"`` (``p *= 1 - lr * wd`` before the rule,
    AdamW), ``"per_group"`` (the group's ``decoupled_weight_decay`` picks one: NAdam, RAdam)
    or None (no weight decay: Rprop).
    A group's ``maximize`` (when the subclass puts it in ``defaults``) feeds the rule
    ``-grad``, before weight decay, as PyTorch does.
    ``rules`` lists every FusedUpdate the class may use (for kernel compile checks).
    """

    state_kinds: dict = {}
    required_state: tuple = ()
    weight_decay_style = "coupled"
    rules: tuple = ()

    def __init__(self, params, defaults: dict):
        defaults = dict(defaults)
        self._check_group(defaults)
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict = {}
        self._packs: dict = {}  # group index -> (its params list, [FlatPack])
        self._reset_step_caches()
        for group in self._groups_from(params):
            self.add_param_group(group)

    def _reset_step_caches(self) -> None:
        # Per group, the (group, items) it last validated (see _check_group_if_changed).
        self._checked_groups: list = []

    # ------------------------------------------------------------------ subclass hooks
    def _check_group(self, group: dict) -> None:
        """Validate ``group``'s hyper-parameters and normalise them (Python floats) in place."""
        group["lr"] = non_negative(self._name, "lr", group["lr"])
        if "maximize" in group:
            group["maximize"] = flag(self._name, "maximize", group["maximize"])

    def _rule(self, group: dict) -> FusedUpdate:
        raise NotImplementedError

    def _scalars(self, group: dict, state: dict, fresh: bool) -> dict:
        raise NotImplementedError

    def _state_fills(self, group: dict) -> dict:
        return {}

    def _advance(self, group: dict, states: list) -> None:
        """A step begins for the parameters whose state dicts are ``states``: each COUNT
        they hold goes up by one."""
        counts = [name for name, kind in self.state_kinds.items() if kind == COUNT]
        for state in states:
            for name in counts:
                if name in state:
                    state[name] += 1

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
        self._packs_of(len(self.param_groups) - 1, new)

    # ------------------------------------------------------------------ stepping
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every gradient (``grad = None``), or zero it in place with ``set_to_none=False``."""
        for group in self.param_groups:
            for param in group["params"]:
                param.zero_grad(set_to_none)

    def step(self, closure=None):
        """Update every parameter that requires grad and has a gradient.

        All-or-nothing: every group's hyper-parameters, every gradient (device, shape,
        dtype) and the state of every parameter whose array was replaced are checked, and
        the flat buffers of every group are ready, before any parameter or state changes.
        ``closure`` (optional) recomputes the loss (forward + backward) and returns it; its
        value is returned.
        """
        loss = closure() if closure is not None else None
        active = []
        for gi, group in enumerate(self.param_groups):
            self._check_group_if_changed(gi, group)
            for pi, param in enumerate(group["params"]):
                if param.grad is not None and param.requires_grad:
                    self._check_grad(param, param.grad, gi, pi)
                    active.append(param)
        if not active:
            return loss
        stepping = set(map(id, active))
        updates = []
        for gi, group in enumerate(self.param_groups):
            for pack in self._packs_of(gi, group):
                members = [i for i, p in enumerate(pack.params) if id(p) in stepping]
                if members:
                    updates.append((pack, members, group))
        for pack, members, group in updates:
            self._update_pack(pack, members, group)
        return loss

    def _packs_of(self, gi: int, group: dict) -> list:
        """The group's flat packs, rebuilt when its parameters changed or were replaced."""
        params = group["params"]
        cached = self._packs.get(gi)
        if cached is not None and cached[0] is params and len(cached[1]) and all(
                pack.current() for pack in cached[1]) and sum(
                len(pack.params) for pack in cached[1]) == len(params):
            return cached[1]
        self._check_states(gi, params)
        packs = build_packs(params)
        self._packs[gi] = (params, packs)
        return packs

    def _update_pack(self, pack, members: list, group: dict) -> None:
        rule, decay = self._decayed_rule(group)
        if len(members) == len(pack.params) and self._steady_update(pack, rule, group, decay):
            return
        pack.steady = None
        fills = self._state_fills(group)
        signatures = []
        for i in members:
            param = pack.params[i]
            state = self.state.get(param)
            fresh = not state
            if fresh:
                state = self.state[param] = {
                    name: 0 if kind == COUNT else fills.get(name, 0.0)
                    for name, kind in self.state_kinds.items() if kind in (COUNT, SCALAR)}
            pack.adopt_state(i, state, rule.states, fills)
            self._advance(group, [state])
            signatures.append((fresh, tuple(v for v in state.values()
                                            if isinstance(v, (int, float)))))
        pack.gather_grads(members)
        backend = pack.backend
        if len(members) == len(pack.params) and len(set(signatures)) == 1:
            scalars = self._scalars(group, self.state[pack.params[0]], signatures[0][0])
            backend.fused_update(rule, pack.data, pack.grad,
                                 [pack.states[name] for name in rule.states],
                                 {**scalars, **decay})
            dicts = [self.state[p] for p in pack.params]
            pack.steady = (rule, dicts, len(dicts[0]), tuple(
                name for name, value in dicts[0].items() if isinstance(value, (int, float))))
            return
        for i, (fresh, _) in zip(members, signatures):  # mixed step counts: one by one
            param = pack.params[i]
            state = self.state[param]
            scalars = self._scalars(group, state, fresh)
            backend.fused_update(rule, param.data, param.grad,
                                 [state[name] for name in rule.states], {**scalars, **decay})

    def _steady_update(self, pack, rule, group: dict, decay: dict) -> bool:
        """The update of a whole pack whose states are where the previous full update left
        them (the same state dicts, each array still its pack view, equal host entries): the
        per-parameter bookkeeping of ``_update_pack`` skipped (5-7 us a step for an MLP's 8
        parameters). False, with nothing changed, when anything differs."""
        steady = pack.steady
        if steady is None or steady[0] is not rule:
            return False
        _, dicts, length, counted = steady
        state = self.state
        views = [pack.state(name) for name in rule.states]
        first = dicts[0]
        counts = [first[name] for name in counted]
        for i, param in enumerate(pack.params):
            entry = dicts[i]
            if state.get(param) is not entry or len(entry) != length:
                return False
            for name, view in zip(rule.states, views):
                if entry.get(name) is not view[i]:
                    return False
            for name, count in zip(counted, counts):
                value = entry.get(name)
                if value.__class__ is not count.__class__ or value != count:
                    return False
        self._advance(group, dicts)
        pack.gather_grads(range(len(pack.params)))
        pack.backend.fused_update(rule, pack.data, pack.grad,
                                  [pack.states[name] for name in rule.states],
                                  {**self._scalars(group, first, False), **decay})
        return True

    # ------------------------------------------------------------------ group options
    def _decayed_rule(self, group: dict):
        """The group's rule with its weight decay and ``maximize`` composed in
        (``compose.py``), and the decay's scalars."""
        return group_rule(self._rule(group), self.weight_decay_style, group)

    # ------------------------------------------------------------------ checks
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

    def _check_grad(self, param, grad, gi: int, pi: int) -> None:
        data = param.data
        # The flat buffer's own view was made on the parameter's device: no device lookup.
        if (grad is param._grad_slot or get_backend(data).owns(grad)) \
                and grad.shape == data.shape and grad.dtype == data.dtype:
            return
        backend = get_backend(data)
        where = f"{self._name}.step: parameter {pi} of group {gi} {param!r}"
        if not backend.owns(grad):
            raise DeviceError(f"{where} is on {backend.device!r} but its grad is on "
                              f"{device_of(grad)!r}")
        if tuple(grad.shape) != tuple(param.data.shape):
            raise ValueError(f"{where} has a grad of shape {tuple(grad.shape)}")
        raise TypeError(f"{where} has a {dtype_name(grad.dtype)} grad; expected "
                        f"{dtype_name(param.data.dtype)}")

    def _check_states(self, gi: int, params) -> None:
        """Before a group's buffers are rebuilt (a parameter's array was replaced): each
        state array must still fit its parameter, or the step would fail half-way."""
        for pi, param in enumerate(params):
            for name, value in self.state.get(param, {}).items():
                if self.state_kinds.get(name) == ARRAY and value is not None \
                        and tuple(value.shape) != tuple(param.data.shape):
                    raise ValueError(
                        f"{self._name}.step: parameter {pi} of group {gi} {param!r} has "
                        f"{name!r} state of shape {tuple(value.shape)} from before its array "
                        f"was replaced; reset it with optimizer.state.pop(param) (nothing was "
                        f"updated)")

    def graph_unsafe_reason(self) -> str | None:
        """Why a CUDA graph cannot capture this optimizer's step (None when it can)."""
        for group in self.param_groups:
            rule, _ = self._decayed_rule(group)
            if rule.body is None:
                return f"its update rule {rule.name!r} has no fused kernel"
        return None

    def __repr__(self) -> str:
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            hyper = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {hyper}")
        return "\n".join(lines) + "\n)"
