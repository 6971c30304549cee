"""``cupy.RawModule`` / ``cupy.RawKernel`` on the CPU: the CUDA source, verbatim, compiled by g++
after ``cuda_emu.h``, and launched by the emulation runtime (one CPU thread per CUDA thread).

Each kernel (a ``name_expressions`` entry such as ``tn_gemm<float>``, or a plain
``extern "C"`` name) gets two C entry points: its parameter types, and a launcher. Arguments
are checked against those types before launch, with CuPy's conversions (arrays pass their
data pointer; Python ``int``/``float``/``bool`` become int64/float64/bool): a mismatch that
a GPU would silently misread (``np.int64`` for an ``int``, a float64 array for ``float*``)
is a ``TypeError`` here.
"""
from __future__ import annotations

import ctypes

import numpy as np

from . import build

_CODES = {"f": "f", "i": "i", "u": "u", "b": "b"}


def _code_of(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    return f"{_CODES.get(dtype.kind, '?')}{dtype.itemsize}"


def _wrappers(names) -> str:
    out = []
    for k, expr in enumerate(names):
        out.append(f'extern "C" int tn_emu_signature_{k}(char* out, int size) '
                   f'{{ return tn_emu::signature(&{expr}, out, size); }}\n'
                   f'extern "C" int tn_emu_launch_{k}(const unsigned* grid, const unsigned* '
                   f'block, void** args) {{ return tn_emu::launch(&{expr}, grid, block, '
                   f'args); }}\n')
    return "".join(out)


class RawModule:
    def __init__(self, code=None, *, path=None, options=(), backend="nvrtc",
                 translate_cucomplex=False, enable_cooperative_groups=False,
                 name_expressions=None, jitify=False):
        if code is None:
            with open(path) as f:
                code = f.read()
        self.code, self.options = code, tuple(options)
        self.name_expressions = tuple(name_expressions or ())
        self._extra: list = []  # plain kernel names asked for with get_function
        self._lib = None

    def _library(self, names):
        source = (f'#include "cuda_emu.h"\n#line 1 "raw_module.cu"\n{self.code}\n'
                  f'#line 1 "tn_emu_wrappers.cpp"\n{_wrappers(names)}')
        return build.load(source, "raw_module")

    def get_function(self, name):
        names = list(self.name_expressions) + self._extra
        if name not in names:
            if "<" in name:
                raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name!r} "
                                   f"is not among the module's name_expressions")
            self._extra.append(name)
            names.append(name)
        return RawKernel(None, name, _library=self._library(names), _index=names.index(name))


class RawKernel:
    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, jitify=False, *, _library=None, _index=0):
        if _library is None:
            _library = RawModule(code=code, options=options)._library([name])
        self.name, self._lib, self._index = name, _library, _index
        self._launch = getattr(_library, f"tn_emu_launch_{_index}")
        buf = ctypes.create_string_buffer(4096)
        count = getattr(_library, f"tn_emu_signature_{_index}")(buf, len(buf))
        self.param_codes = buf.value.decode().split(",") if count > 0 else []

    def _pack(self, k, code, arg):
        from .arrays import is_host_array, ndarray
        what = f"argument {k} of {self.name}"
        if code.startswith("p"):
            if arg is None:
                return np.zeros(1, np.uint64)
            if is_host_array(arg):
                raise TypeError(f"{what}: a NumPy (host) array where a device pointer is "
                                f"expected")
            if not isinstance(arg, ndarray):
                raise TypeError(f"{what}: expected a cupy.ndarray for a pointer, got "
                                f"{type(arg).__name__}")
            if code[1:] not in ("v", _code_of(arg.dtype)):
                raise TypeError(f"{what}: a {arg.dtype} array for a parameter of pointer type "
                                f"{code[1:]} (kind+bytes); the kernel would misread it")
            return np.array([arg.__array_interface__["data"][0]], np.uint64)
        if isinstance(arg, ndarray):
            raise TypeError(f"{what}: an array for a scalar parameter ({code})")
        if isinstance(arg, bool):
            arg = np.bool_(arg)
        elif isinstance(arg, int):
            arg = np.int64(arg)
        elif isinstance(arg, float):
            arg = np.float64(arg)
        if not isinstance(arg, np.generic):
            raise TypeError(f"{what}: unsupported type {type(arg).__name__}")
        if _code_of(arg.dtype) != code:
            raise TypeError(f"{what}: a {arg.dtype} scalar for a parameter of type {code} "
                            f"(kind+bytes); on a GPU its bytes would be misread")
        return np.array([arg])

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None,
                 enable_cooperative_groups=False):
        if not isinstance(args, (tuple, list)):
            raise TypeError("RawKernel arguments must be a tuple or list")
        if len(args) != len(self.param_codes):
            raise TypeError(f"{self.name} takes {len(self.param_codes)} arguments, got "
                            f"{len(args)}")
        values = [self._pack(k, code, a) for k, (code, a) in
                  enumerate(zip(self.param_codes, args))]
        argv = (ctypes.c_void_p * max(len(values), 1))(*[v.ctypes.data for v in values])
        dims = []
        for d in (grid, block):
            d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
            dims.append((ctypes.c_uint * 3)(*(int(v) for v in d + (1,) * (3 - len(d)))))
        from .arrays import STATE
        STATE.launches.append(("raw", self.name, tuple(dims[0]), tuple(dims[1])))
        status = self._launch(dims[0], dims[1], argv)
        build.check(status, f"RawKernel {self.name} (grid {tuple(dims[0])}, block "
                            f"{tuple(dims[1])})")
