"""Flat parameter buffers: one array per group for the values, gradients and each state.

A ``FlatPack`` holds the parameters of one optimizer group that share a device and a
dtype. Their values live in one flat array, and each ``param.data`` is rebound to a view of
it (likewise the gradients and every state array), so one fused update over the flat
arrays updates every parameter: one device operation per group per step (one kernel launch
on a GPU, one pass of NumPy calls on the CPU) instead of one per parameter.

Parameters stay individually addressable: ``p.data``, ``p.grad`` and ``optimizer.state[p]``
are ordinary arrays (views). Replacing one (``load_state_dict``, ``.to()``, assigning
``p.grad``) is noticed at the next step by an identity check: the new values are copied into
the buffers, or the pack is rebuilt.
"""
from __future__ import annotations

import math

from tensornet.backends import asnumpy, dtype_name, get_backend


class FlatPack:
    """Flat buffers of ``params`` (one device, one dtype) and their per-parameter views."""

    def __init__(self, params: list, backend, dtype):
        self.params = params
        self.backend, self.dtype = backend, dtype
        self._offsets = []
        total = 0
        for p in params:
            size = math.prod(p.data.shape)
            self._offsets.append((total, size))
            total += size
        self.size = total
        self.data = backend.empty((total,), dtype)
        self.grad = backend.zeros((total,), dtype)
        self.states: dict = {}
        self._views: dict = {}  # buffer name -> list of views, one per parameter
        self.steady = None  # what the last whole-pack update left (Optimizer._steady_update)
        self.data_views = self._views_of("data", self.data)
        self.grad_views = self._views_of("grad", self.grad)
        for p, view in zip(params, self.data_views):
            view[...] = p.data
            p.data = view
        for p, view in zip(params, self.grad_views):
            if p.grad is not None:
                view[...] = _here(p.grad, p.data)
                p.grad = view
            p._grad_slot = view

    def _views_of(self, name: str, flat) -> list:
        xp = self.backend.xp
        views = [xp.reshape(flat[start:start + size], tuple(p.data.shape))
                 for p, (start, size) in zip(self.params, self._offsets)]
        self._views[name] = views
        return views

    def current(self) -> bool:
        """True while every parameter's value is still its view of the buffer."""
        for p, view in zip(self.params, self.data_views):
            if p.data is not view:
                return False
        return True

    def state(self, name: str) -> list:
        """The views of state buffer ``name`` (created, zeroed, when new)."""
        views = self._views.get(name)
        if views is None:
            self.states[name] = self.backend.zeros((self.size,), self.dtype)
            views = self._views_of(name, self.states[name])
        return views

    def gather_grads(self, members) -> None:
        """Make every member's ``grad`` its view of the flat gradient (copying where a layer
        or the user put the gradient in an array of its own)."""
        for i in members:
            p, view = self.params[i], self.grad_views[i]
            if p.grad is not view:
                view[...] = p.grad
                p.grad = view

    def adopt_state(self, i: int, state: dict, names, fills: dict) -> None:
        """Point parameter ``i``'s state arrays ``names`` at the pack's views: a missing one
        starts at ``fills.get(name, 0)``, one held elsewhere (loaded, or from before a
        rebuild) is copied in."""
        p = self.params[i]
        for name in names:
            view = self.state(name)[i]
            value = state.get(name)
            if value is view:
                continue
            view[...] = fills.get(name, 0.0) if value is None else _here(value, p.data)
            state[name] = view


def _here(value, like):
    """``value`` as an array on ``like``'s device and dtype (moving it if it is elsewhere)."""
    backend = get_backend(like)
    if not backend.owns(value):
        return backend.asarray(asnumpy(value).astype(dtype_name(like.dtype)))
    return value


def build_packs(params: list) -> list:
    """Flat packs for ``params``: one per (device, dtype), in first-appearance order."""
    groups: dict = {}
    for p in params:
        backend = get_backend(p.data)
        groups.setdefault((id(backend), dtype_name(p.data.dtype)), (backend, []))[1].append(p)
    return [FlatPack(members, backend, dtype) for (_, dtype), (backend, members)
            in groups.items()]
