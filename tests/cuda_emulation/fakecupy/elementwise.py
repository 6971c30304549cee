"""``cupy.ElementwiseKernel`` on the CPU: the operation string, verbatim, in a C++ loop over ``i``.

Binding follows CuPy's: ``typedef`` lines for the type placeholders (``T``, ``L``, ...) resolved
from the *array* arguments (outputs first, then inputs; scalars never decide a type and are
converted to their parameter's type), then the preamble, then per element ``const T &x`` for
each non-raw input and ``T &y`` for each non-raw output at the broadcast position of ``i``;
``raw`` arrays are indexable objects over their own layout (with bounds checks, which a GPU
lacks), scalars are ``const`` values, ``_ind.size()`` is the loop size. Outputs not passed are
allocated with ``cupy.empty`` (whose contents are garbage here, as on a GPU).
"""
from __future__ import annotations

import ctypes
import keyword
import re
import warnings
from typing import NamedTuple

import numpy as np

from . import build

MAXDIM = 16
DTYPE_NAMES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
               "float16", "float32", "float64", "complex64", "complex128")
C_NAMES = {"bool": "bool", "int8": "signed char", "int16": "short", "int32": "int",
           "int64": "long long", "uint8": "unsigned char", "uint16": "unsigned short",
           "uint32": "unsigned int", "uint64": "unsigned long long", "float32": "float",
           "float64": "double"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PRELUDE = r"""
#include "cuda_emu.h"
#include <cstdio>
namespace tn_emu {
template <typename T> struct Elem {  // a non-raw argument: pointer and broadcast byte strides
    char* ptr; const long long* strides;
    T& at(const long long* index, int ndim) const {
        long long offset = 0;
        for (int d = 0; d < ndim; ++d) offset += index[d] * strides[d];
        return *reinterpret_cast<T*>(ptr + offset);
    }
};
template <typename T> struct Raw {  // a raw argument, indexed like CuPy's CArray
    char* ptr; int nd; long long n; bool contiguous; const long long* shp; const long long* str;
    const char* name;
    explicit Raw(const long long* meta, const char* what)
        : ptr((char*)meta[0]), nd((int)meta[1]), n(meta[2]), contiguous(meta[3] != 0),
          shp(meta + 4), str(meta + 4 + nd), name(what) {}
    long long size() const { return n; }
    int ndim() const { return nd; }
    const long long* shape() const { return shp; }
    const long long* strides() const { return str; }
    T& element(long long idx) const {
        if (idx < 0 || idx >= n) {
            static T dummy;
            char text[200];
            std::snprintf(text, sizeof text, "raw array '%s' of size %lld indexed at %lld",
                          name, n, idx);
            tn_emu_fail(text);
            return dummy;
        }
        if (contiguous) return reinterpret_cast<T*>(ptr)[idx];
        long long offset = 0, rest = idx;
        for (int d = nd - 1; d > 0; --d) { offset += str[d] * (rest % shp[d]); rest /= shp[d]; }
        return *reinterpret_cast<T*>(ptr + offset + str[0] * rest);
    }
    T& operator[](long long idx) const { return element(idx); }
};
template <typename T> struct ConstRaw : Raw<T> {
    using Raw<T>::Raw;
    const T& operator[](long long idx) const { return this->element(idx); }
};
struct Indexer { long long n; long long size() const { return n; } };
}  // namespace tn_emu
"""


class Param(NamedTuple):
    name: str
    type_name: str           # a dtype name, or a placeholder such as T
    dtype: np.dtype | None   # None for placeholders
    raw: bool
    is_const: bool


def parse_params(text: str, is_const: bool) -> list:
    params = []
    for part in text.split(","):
        tokens = part.split()
        if not tokens:
            continue
        raw = tokens[0] == "raw"
        tokens = tokens[1:] if raw else tokens
        if len(tokens) != 2 or not all(_IDENT.match(t) for t in tokens):
            raise SyntaxError(f"ElementwiseKernel parameter {part.strip()!r}: expected "
                              f"'[raw] type name'")
        type_name, name = tokens
        if keyword.iskeyword(name):
            raise SyntaxError(f"parameter name {name!r}")
        dtype = np.dtype(type_name) if type_name in DTYPE_NAMES else None
        params.append(Param(name, type_name, dtype, raw, is_const))
    return params


def c_type(dtype: np.dtype) -> str:
    name = np.dtype(dtype).name
    if name not in C_NAMES:
        raise NotImplementedError(f"the CUDA emulation has no {name} kernels")
    return C_NAMES[name]


def resolve_types(name, in_params, out_params, in_arrays, out_arrays) -> dict:
    """CuPy's rule: placeholders take the dtype of the arrays bound to them (outputs first);
    a declared dtype must match its array exactly."""
    types: dict = {}
    for p, a in list(zip(out_params, out_arrays)) + list(zip(in_params, in_arrays)):
        if a is None:
            continue
        if p.dtype is not None:
            if a.dtype != p.dtype:
                raise TypeError(f"{name}: type is mismatched: {p.name} is {a.dtype}, declared "
                                f"{p.dtype}")
        elif p.type_name in types and types[p.type_name] != a.dtype:
            raise TypeError(f"{name}: type is mismatched: {p.name} is {a.dtype} but "
                            f"{p.type_name} is {types[p.type_name]}")
        else:
            types[p.type_name] = a.dtype
    for p in in_params + out_params:
        if p.dtype is None and p.type_name not in types:
            raise TypeError(f"{name}: cannot determine the type {p.type_name} of {p.name} "
                            f"(no array argument is bound to it)")
    return types


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, loop_prep="",
                 after_loop="", **kwargs):
        self.in_params = parse_params(in_params, True)
        self.out_params = parse_params(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.params = self.in_params + self.out_params
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: duplicated parameter names {names}")
        self.operation, self.name, self.preamble = operation, name, preamble
        self.loop_prep, self.after_loop = loop_prep, after_loop
        self.no_return, self.return_tuple = no_return, return_tuple

    # ------------------------------------------------------------------ code
    def source(self, types: dict, scalar: tuple) -> str:
        typedefs = "".join(f"typedef {c_type(t)} {k};\n" for k, t in sorted(types.items()))
        ctypes_ = [c_type(p.dtype) if p.dtype is not None else p.type_name for p in self.params]
        setup, per_element = [], []
        for k, (p, ct) in enumerate(zip(self.params, ctypes_)):
            meta = f"static_cast<const long long*>(_args[{k}])"
            if scalar[k]:
                setup.append(f"const {ct} {p.name} = *static_cast<const {ct}*>(_args[{k}]);")
            elif p.raw:
                kind = "ConstRaw" if p.is_const else "Raw"
                setup.append(f"const tn_emu::{kind}<{ct}> {p.name}({meta}, \"{p.name}\");")
            else:
                setup.append(f"const tn_emu::Elem<{ct}> _raw_{p.name}{{(char*){meta}[0], "
                             f"{meta} + 1}};")
                const = "const " if p.is_const else ""
                per_element.append(f"{const}{ct} &{p.name} = _raw_{p.name}.at(_index, _ndim);")
        body = "\n    ".join(setup)
        element = "\n        ".join(per_element)
        return (f"{PRELUDE}\n{typedefs}\n{self.preamble}\n"
                f"extern \"C\" int tn_emu_elementwise(long long _n, int _ndim, "
                f"const long long* _shape, void** _args) {{\n"
                f"    tn_emu_reset();\n"
                f"    {body}\n"
                f"    const tn_emu::Indexer _ind{{_n}};\n"
                f"    long long _index[{MAXDIM}] = {{0}};\n"
                f"    {self.loop_prep};\n"
                f"    for (ptrdiff_t i = 0; i < _n; ++i) {{\n"
                f"        long long _rest = i;\n"
                f"        for (int _d = _ndim - 1; _d >= 0; --_d) {{\n"
                f"            _index[_d] = _rest % _shape[_d]; _rest /= _shape[_d]; }}\n"
                f"        {element}\n"
                f"{self.operation};\n"
                f"        if (tn_emu_failed()) return 1;\n"
                f"    }}\n"
                f"    {self.after_loop};\n"
                f"    return tn_emu_failed();\n"
                f"}}\n")

    # ------------------------------------------------------------------ call
    def __call__(self, *args, size=None, block_size=None, stream=None):
        from .arrays import STATE, empty, is_host_array, ndarray
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name}")
        for a in args:
            if is_host_array(a):
                raise TypeError(f"{self.name}: Unsupported type {type(a)} (a host array; "
                                f"CuPy kernels take cupy.ndarray)")
        ins, outs = list(args[:self.nin]), list(args[self.nin:])
        for p, a in zip(self.out_params, outs):
            if not isinstance(a, ndarray):
                raise TypeError(f"{self.name}: output {p.name} must be a cupy.ndarray")
        in_arrays = [a if isinstance(a, ndarray) else None for a in ins]
        for p, a in zip(self.in_params, ins):
            if p.raw and a is not None and not isinstance(a, ndarray):
                raise TypeError(f"{self.name}: raw parameter {p.name} needs an array")
        types = resolve_types(self.name, self.in_params, self.out_params, in_arrays,
                              outs or [None] * self.nout)
        shape = self._loop_shape(ins, outs, size)
        if not outs:
            outs = [empty(shape, dtype=self._dtype(p, types)) for p in self.out_params]
        ret = None if self.no_return else (
            outs[0] if self.nout == 1 and not self.return_tuple else tuple(outs))
        if 0 in shape:
            return ret
        values = ins + outs
        scalar = tuple(not isinstance(a, ndarray) for a in values)
        lib = build.load(self.source(types, scalar), self.name)
        keep, pointers = [], []
        for p, a in zip(self.params, values):
            keep.append(self._pack(p, a, types, shape))
            pointers.append(keep[-1].ctypes.data)
        argv = (ctypes.c_void_p * len(pointers))(*pointers)
        shape_arr = np.array(shape or (1,), dtype=np.int64)
        n = int(np.prod(shape, dtype=np.int64))
        STATE.launches.append(("elementwise", self.name, (n,), (1,)))
        status = lib.tn_emu_elementwise(ctypes.c_longlong(n), ctypes.c_int(len(shape)),
                                        ctypes.c_void_p(shape_arr.ctypes.data), argv)
        build.check(status, f"ElementwiseKernel {self.name}")
        return ret

    def _dtype(self, p, types):
        return p.dtype if p.dtype is not None else types[p.type_name]

    def _loop_shape(self, ins, outs, size) -> tuple:
        from .arrays import ndarray
        pairs = list(zip(self.in_params, ins)) + list(zip(self.out_params, outs))
        broadcast = [a.shape for p, a in pairs if not p.raw and isinstance(a, ndarray)]
        if size is not None:
            if broadcast:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are "
                                 "'raw'")
            return (int(size),)
        if not broadcast:
            raise ValueError(f"{self.name}: loop size is undecided (every array is raw; pass "
                             f"size=)")
        try:
            shape = tuple(np.broadcast_shapes(*broadcast))
        except ValueError:
            raise ValueError(f"{self.name}: operands could not be broadcast together with "
                             f"shapes {broadcast}") from None
        for p, a in zip(self.out_params, outs):
            if not p.raw and a.shape != shape:
                raise ValueError(f"{self.name}: out shape is mismatched: {p.name} is "
                                 f"{a.shape}, the loop is {shape}")
        if len(shape) > MAXDIM:
            raise NotImplementedError(f"more than {MAXDIM} dimensions")
        return shape

    def _pack(self, p, a, types, shape) -> np.ndarray:
        from .arrays import ndarray
        dtype = self._dtype(p, types)
        if not isinstance(a, ndarray):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.array([a]).astype(dtype)
        ptr = a.__array_interface__["data"][0]
        if p.raw:
            contiguous = bool(a.flags.c_contiguous)
            return np.array([ptr, a.ndim, a.size, contiguous, *a.shape, *a.strides],
                            dtype=np.int64)
        strides = np.broadcast_to(a.view(np.ndarray), shape).strides
        return np.array([ptr, *strides], dtype=np.int64)
