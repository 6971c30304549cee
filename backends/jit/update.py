"""One-pass optimizer updates: a numba kernel generated from a ``FusedUpdate``'s ``apply``.

``apply(xp, param, grad, *states, **scalars)`` is run once on symbolic values that record
every operation it performs on one element (``_Tracer``); the record becomes the body of
an elementwise loop, compiled by numba (cached on disk; large groups split over the
threads), that reads each array once and writes param and the states once, with no
temporaries, where NumPy's ``apply`` makes one pass over memory per operation.

Same result, bit for bit: the kernel performs apply's operations in apply's order and
precision. Operations between the arrays run in their dtype; Python scalars meeting an
array are first converted to its dtype, as NumPy does (NEP 50); scalar-only arithmetic runs
in float64, as in Python. A rule that branches on a scalar (``if nesterov:``) gets one
kernel per outcome of its branches. Each new kernel is checked against ``apply`` on a few
values before it is used; a rule the tracer cannot follow (an operation it does not know,
a branch on array values) keeps running ``apply``.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings

import numpy as np

from .. import jit as _package  # (its thresholds, read at each call)
from . import run_tasks


class TraceError(Exception):
    """``apply`` did something the tracer cannot turn into an elementwise kernel."""


class _Tracer:
    def __init__(self):
        self.lines: list[str] = []
        self.guards: dict = {}   # scalar name -> bool it was branched on

    def emit(self, expr: str) -> str:
        name = f"t{len(self.lines)}"
        self.lines.append(f"{name} = {expr}")
        return name


class _Scalar:
    """A per-step scalar (a Python float on the host): arithmetic among scalars is float64."""

    def __init__(self, tracer, expr, value, name=None):
        self.tracer, self.expr, self.value, self.name = tracer, expr, value, name

    def _combine(self, other, op, reflected=False):
        if isinstance(other, _Element):
            return other._binary(self, op, not reflected)
        if isinstance(other, _Scalar):
            other_expr, other_value = other.expr, other.value
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            other_expr, other_value = repr(float(other)), float(other)
        else:
            raise TraceError(f"unsupported operand {type(other).__name__}")
        a, b = (other_expr, self.expr) if reflected else (self.expr, other_expr)
        av, bv = (other_value, self.value) if reflected else (self.value, other_value)
        return _Scalar(self.tracer, f"({a} {op} {b})", _PY_OPS[op](av, bv))

    def __bool__(self):
        if self.name is None:
            raise TraceError("a branch on a scalar computed inside apply")
        self.tracer.guards[self.name] = bool(self.value)
        return bool(self.value)

    def __float__(self):
        raise TraceError("a scalar converted to a Python float (math.* on a scalar)")

    def __neg__(self):
        return _Scalar(self.tracer, f"(-{self.expr})", -self.value)


class _Element:
    """One element of an array argument or temporary: ``value`` names its current value."""

    def __init__(self, tracer, value, owner=None):
        self.tracer, self.value, self.owner = tracer, value, owner

    def _binary(self, other, op, reflected=False):
        a, b = self.value, _operand(other)
        if reflected:
            a, b = b, a
        return _Element(self.tracer, self.tracer.emit(f"{a} {op} {b}"))

    def _inplace(self, other, op):
        if self.owner == "grad":
            raise TraceError("apply writes grad")
        self.value = self.tracer.emit(f"{self.value} {op} {_operand(other)}")
        return self

    def __setitem__(self, key, other):
        if key is not Ellipsis and key != slice(None):
            raise TraceError(f"assignment to a part of an array ({key!r})")
        if self.owner == "grad":
            raise TraceError("apply writes grad")
        self.value = self.tracer.emit(_operand(other))

    def __bool__(self):
        raise TraceError("a branch on array values")

    def __neg__(self):
        return _Element(self.tracer, self.tracer.emit(f"-{self.value}"))


def _operand(value) -> str:
    """Kernel code for an operand meeting an array element: scalars take its dtype."""
    if isinstance(value, _Element):
        return value.value
    if isinstance(value, _Scalar):
        return f"cast({value.expr})"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"cast({float(value)!r})"
    raise TraceError(f"unsupported operand {type(value).__name__}")


_PY_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a / b}
for _op, _name in (("+", "add"), ("-", "sub"), ("*", "mul"), ("/", "truediv")):
    def _make(op):
        return (lambda self, other: self._binary(other, op),
                lambda self, other: self._binary(other, op, True),
                lambda self, other: self._inplace(other, op),
                lambda self, other: self._combine(other, op),
                lambda self, other: self._combine(other, op, True))
    forward, reflected, inplace, scalar, scalar_reflected = _make(_op)
    setattr(_Element, f"__{_name}__", forward)
    setattr(_Element, f"__r{_name}__", reflected)
    setattr(_Element, f"__i{_name}__", inplace)
    setattr(_Scalar, f"__{_name}__", scalar)
    setattr(_Scalar, f"__r{_name}__", scalar_reflected)
for _op, _name in ((">", "gt"), ("<", "lt"), (">=", "ge"), ("<=", "le")):
    setattr(_Element, f"__{_name}__", lambda self, other, op=_op: self._binary(other, op))


class _Namespace:
    """The ``xp`` apply sees: the array-API functions an elementwise rule may use."""

    def __init__(self, tracer):
        self._tracer = tracer

    def _call(self, template, *args):
        code = template.format(*[_operand(arg) for arg in args])
        return _Element(self._tracer, self._tracer.emit(code))

    def __getattr__(self, name):
        template = _FUNCTIONS.get(name)
        if template is None:
            raise TraceError(f"xp.{name} is not an elementwise function the tracer knows")
        return lambda *args: self._call(template, *args)


# How each function reads in the kernel, on scalars of the array's dtype.
_FUNCTIONS = {"sqrt": "np.sqrt({0})", "abs": "abs({0})", "exp": "np.exp({0})",
              "log": "np.log({0})", "maximum": "np.maximum({0}, {1})",
              "minimum": "np.minimum({0}, {1})", "where": "({1} if {0} else {2})"}


def trace(update, scalars: dict):
    """``(body lines, array names, stores, guards)`` of ``update.apply`` for these scalars:
    stores pairs each written array with the name of its final value; guards maps the
    scalars it branched on to their truth."""
    tracer = _Tracer()
    names = ("param", "grad") + tuple(f"s{k}" for k in range(len(update.states)))
    elements = [_Element(tracer, f"{name}_in", owner=name) for name in names]
    symbols = {name: _Scalar(tracer, f"k_{name}", float(scalars[name]), name)
               for name in sorted(scalars)}
    update.apply(_Namespace(tracer), *elements, **symbols)
    stores = [(name, element.value) for name, element in zip(names, elements)
              if element.value != f"{name}_in"]
    return tracer.lines, names, stores, dict(tracer.guards)


# ---------------------------------------------------------------------- code generation
_TEMPLATE = '''"""Generated by tensornet (backends/jit/update.py) from the rule {rule!r}."""
import numpy as np
from numba import njit

_OPTIONS = dict(cache=True, nogil=True, error_model="numpy")
cast = np.{dtype}


@njit(inline="always", **_OPTIONS)
def _element(i, {arrays}, {scalars}):
{loads}
{body}
{stores}


@njit(**_OPTIONS)
def run({arrays}, {scalars}, lo, hi):
    for i in range(np.uint64(lo), np.uint64(hi)):   # unsigned: no wrap-around checks
        _element(i, {arrays}, {scalars})
'''


def _source(update, dtype: str, scalars: dict):
    lines, names, stores, guards = trace(update, scalars)
    scalar_args = ", ".join(f"k_{name}" for name in sorted(scalars)) or "k_unused"
    indent = "    "
    text = _TEMPLATE.format(
        rule=update.name, dtype=dtype, arrays=", ".join(names), scalars=scalar_args,
        loads="\n".join(f"{indent}{name}_in = {name}[i]" for name in names),
        body="\n".join(indent + line for line in lines) or indent + "pass",
        stores="\n".join(f"{indent}{name}[i] = {value}" for name, value in stores))
    return text, guards


def _cache_folder() -> str:
    base = os.environ.get("TENSORNET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "tensornet")
    folder = os.path.join(base, "jit")
    try:
        os.makedirs(folder, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    return tempfile.mkdtemp(prefix="tensornet-jit-")


def _load(source: str):
    """Import ``source`` from a file named by its hash (so numba can cache it on disk)."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    name = f"tensornet_update_{digest}"
    path = os.path.join(_cache_folder(), name + ".py")
    if not os.path.exists(path):
        partial = f"{path}.{os.getpid()}.tmp"
        with open(partial, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(partial, path)
    module = sys.modules.get(name)
    if module is None:  # registered, so that numba's on-disk cache can find it again
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------- the update
_KERNELS: dict = {}   # (rule, dtype, branch outcomes) -> module, or None (use apply)
_GUARDS: dict = {}    # rule -> names of the scalars it branches on (learned by tracing)


def fused_update(update, param, grad, states, scalars: dict) -> bool:
    """Run ``update`` over the 1-D contiguous arrays in one pass; False when this rule
    has no kernel (the caller then runs ``apply``)."""
    dtype = param.dtype  # (its .name is a Python property: microseconds per step)
    guard_names = _GUARDS.get(update, ())
    key = (update, dtype, tuple(bool(scalars[name]) for name in guard_names))
    module = _KERNELS.get(key, False)
    if module is False:
        module = _build(update, dtype.name, scalars, dtype)
        key = (update, dtype, tuple(bool(scalars[name]) for name in _GUARDS[update]))
        _KERNELS[key] = module
    if module is None:
        return False
    size = param.shape[0]
    run_tasks(module.run, size, size, param, grad, *states, *_values(scalars),
              spin_chunk_min=_package.UPDATE_CHUNK_MIN)
    return True


def _build(update, dtype: str, scalars: dict, np_dtype):
    try:
        source, guards = _source(update, dtype, scalars)
    except TraceError:
        _GUARDS.setdefault(update, ())
        return None
    _GUARDS[update] = tuple(sorted(set(_GUARDS.get(update, ())) | set(guards)))
    try:
        module = _load(source)
        agrees = _agrees_with_apply(update, module, scalars, np_dtype)
    except Exception as exc:  # a compiler or cache failure must not stop training
        problem = f"could not be compiled ({type(exc).__name__}: {exc})"
    else:
        if agrees:
            return module
        problem = "differs from its apply()"
    warnings.warn(f"tensornet: the one-pass update of rule {update.name!r} {problem}; "
                  f"running apply() instead", RuntimeWarning, stacklevel=3)
    return None


def _agrees_with_apply(update, module, scalars, dtype) -> bool:
    """Both forms on the same 61 values (states non-negative, as second moments are).
    Random states may make NaNs (a centered RMSprop's variance
    ``s - a^2`` below 0): both forms must make the same ones, without NumPy's warning."""
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(-2, 2, 61).astype(dtype), rng.uniform(-2, 2, 61).astype(dtype)]
    arrays += [rng.uniform(0, 2, 61).astype(dtype) for _ in update.states]
    ours = [a.copy() for a in arrays]
    with np.errstate(all="ignore"):
        update.apply(np, arrays[0], arrays[1], *arrays[2:], **scalars)
    module.run(*ours, *_values(scalars), 0, len(ours[0]))
    return all(np.array_equal(a, b, equal_nan=True) for a, b in zip(arrays, ours))


def _values(scalars: dict) -> list:
    """The scalars in the kernel's argument order (sorted by name)."""
    return [scalars[name] for name in sorted(scalars)] or [0.0]
