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

The gradient buffer is allocated by the pack, except where ``offer_grad_memory`` gave the
parameters gradient memory first: ``DataParallel`` does, on one host, with memory every
rank maps (``tensornet/distributed/shared.py``), so that the gradient all-reduce sums the
ranks' buffers where they lie. A pack over those parameters, or over a run of consecutive
ones among them, in their order, then keeps its gradients there.
"""
from __future__ import annotations

import math
import weakref

import numpy as np

from tensornet.backends import asnumpy, dtype_name, get_backend

_ALIGN = 64  # bytes: each dtype's span of offered memory starts on a cache line
_OFFERED = weakref.WeakValueDictionary()  # id -> a flat span offer_grad_memory made


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
        offered = _offered_span(params, total, dtype)
        self.grad = backend.zeros((total,), dtype) if offered is None else offered
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


def grad_layout(params: list) -> tuple[list, int]:
    """Where ``offer_grad_memory`` puts the gradients of host ``params``: ``([(dtype name,
    members, byte offset)], total bytes)``, one span per dtype in first-appearance order
    (the packs ``build_packs`` makes of one group), each on a cache line of its own."""
    spans, members = [], {}
    for p in params:
        members.setdefault(dtype_name(p.data.dtype), []).append(p)
    offset = 0
    for dtype, group in members.items():
        offset = -(-offset // _ALIGN) * _ALIGN
        spans.append((dtype, group, offset))
        offset += sum(p.size for p in group) * np.dtype(dtype).itemsize
    return spans, offset


def offer_grad_memory(params: list, memory) -> None:
    """Point the gradient slots of host ``params`` (NumPy arrays no optimizer has packed
    yet) into ``memory``, a writable buffer of at least ``grad_layout(params)[1]`` zeroed
    bytes, laid out by ``grad_layout``. A FlatPack later built over the parameters of one
    span, or a run of consecutive ones, in order, keeps its gradients there (backward
    writes each gradient into its slot, see ``Parameter.grad_buffer``); ``memory`` must
    outlive the parameters."""
    for dtype, group, offset in grad_layout(params)[0]:
        span = np.frombuffer(memory, dtype=dtype, count=sum(p.size for p in group),
                             offset=offset)  # its views' base: contiguous_span finds it
        _OFFERED[id(span)] = span
        start = 0
        for p in group:
            p._grad_slot = span[start:start + p.size].reshape(p.data.shape)
            start += p.size


def _offered_span(params: list, total: int, dtype: str):
    """The one flat span of offered memory whose consecutive slices are ``params``'
    gradient slots (of their shapes and ``dtype``), else None."""
    slots = [p._grad_slot for p in params]
    if not slots or any(s is None or tuple(s.shape) != tuple(p.data.shape)
                        for s, p in zip(slots, params)):
        return None
    span = contiguous_span(slots, total)
    if span is None or dtype_name(span.dtype) != dtype:
        return None
    base = span.base
    return span if base is not None and _OFFERED.get(id(base)) is base else None


def contiguous_span(arrays: list, total: int):
    """A flat view of the memory ``arrays`` occupy when they lie back to back, in order, in
    one C-contiguous buffer (or are one contiguous array); else None. Arrays that expose
    no address (array-api-strict) never make one."""
    first = arrays[0]
    if getattr(first, "flags", None) is None or address(first) is None:
        return None
    if len(arrays) == 1:
        return first.reshape(-1) if first.flags.c_contiguous else None
    base = first.base
    if base is None or not base.flags.c_contiguous:
        return None
    expected = address(first)
    for array in arrays:
        if array.base is not base or not array.flags.c_contiguous \
                or address(array) != expected:
            return None
        expected += array.nbytes
    offset = (address(first) - address(base)) // first.itemsize
    return base.reshape(-1)[offset:offset + total]


def address(array):
    """The data address of a NumPy or CuPy array, or None (array-api-strict). CuPy's is
    read from ``.data.ptr``: its ``__cuda_array_interface__`` would sync the stream."""
    pointer = getattr(getattr(array, "data", None), "ptr", None)
    if pointer is not None:
        return int(pointer)
    interface = getattr(array, "__array_interface__", None)
    return None if interface is None else int(interface["data"][0])


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
