"""Every CUDA kernel of the CuPy backend, compiled for sm_90 (H100/H200) by NVRTC exactly as
CuPy builds it at run time: CuPy's own ElementwiseKernel code generator and NVRTC program
wrapper, with the options CuPy adds. No GPU or driver is needed, only the wheels
``cupy-cuda13x`` and ``nvidia-cuda-nvrtc`` (in the ``dev`` extra); skipped without them.

Covered: each ElementwiseKernel in ``cuda_kernels.elementwise_specs()``, and the optimizer
kernels ``cuda_kernels.update_spec`` builds from every rule in ``tn.optim.fused_updates()``
(scalars as arguments and read from a device row), for every dtype its
type placeholders take (T: float32/float64; L: int64/int32/uint8 labels), each as CuPy
generates it for contiguous arrays with 32-bit indexing and for non-contiguous 3-D arrays
with 64-bit indexing; each RawModule in ``RAW_MODULES`` with all its template instances.
A compile error, any warning, or a kernel that spills to local memory fails the test.
Kernels added to those registries are covered without touching this file.
"""
from __future__ import annotations

import io
import re

import numpy as np
import pytest

import tensornet as tn
from tensornet.backends.cuda_kernels import (FUSED_DTYPES, RAW_MODULES, elementwise_specs,
                                             name_expression, update_spec)

ARCH = "90"
# Type placeholders of the specs and the dtypes each one takes at run time.
PLACEHOLDER_DTYPES = {"T": FUSED_DTYPES, "L": ("int64", "int32", "uint8")}
# (ndim, c_contiguous, 32-bit indexing) of every array argument, as CuPy's reduce_dims leaves
# a contiguous array (one dimension) or a transposed/sliced one (several).
LAYOUTS = {"contiguous-int32-index": (1, True, True), "strided-int64-index": (3, False, False)}
PTXAS_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                         r"(\d+) bytes spill loads")


@pytest.fixture(scope="module")
def cupy_nvrtc():
    """CuPy's compiler pieces, or a skip saying what is missing."""
    try:
        import cupy
        from cupy._core import _carray, _kernel, _scalar, core
        from cupy.cuda import compiler
        compiler._get_nvrtc_version()  # loads libnvrtc
        max_arch = int(compiler._get_max_compute_capability())
        core.assemble_cupy_compiler_options(())
    except Exception as exc:  # no CuPy, no libnvrtc, or CuPy's private API moved
        pytest.skip(f"CuPy with NVRTC is not usable here ({type(exc).__name__}: {exc}); "
                    f"pip install cupy-cuda13x nvidia-cuda-nvrtc")
    if max_arch < int(ARCH):
        pytest.skip(f"this NVRTC compiles up to sm_{max_arch}, not sm_{ARCH}")
    return dict(cupy=cupy, core=core, kernel=_kernel, carray=_carray, scalar=_scalar,
                compiler=compiler)


def _nvrtc(env, source, what, name_expressions=None) -> None:
    """Compile as CuPy's RawModule / ElementwiseKernel do (compile_with_cache adds the
    include paths and -ftz=true, compile_using_nvrtc the arch and the default execution
    space), plus ``-Xptxas=-v`` to see local memory; fail on any error or warning."""
    compiler = env["compiler"]
    options = env["core"].assemble_cupy_compiler_options(()) + (
        "-ftz=true", f"-arch=sm_{ARCH}", "--device-as-default-execution-space", "-Xptxas=-v")
    program = compiler._NVRTCProgram(source, "tensornet.cu", name_expressions=name_expressions,
                                     method="cubin")
    log = io.StringIO()
    try:
        _, mapping = program.compile(options, log)
    except compiler.CompileException as exc:
        pytest.fail(f"{what}: NVRTC error for sm_{ARCH}:\n{exc.get_message()}")
    text = log.getvalue().replace("\0", "")
    problems = [line for line in text.splitlines() if line.strip() and not line.startswith("ptxas")]
    assert not problems, f"{what}: NVRTC warnings for sm_{ARCH}:\n" + "\n".join(problems)
    frames = PTXAS_FRAME.findall(text)
    assert frames, f"{what}: ptxas printed no function properties:\n{text}"
    assert all(v == "0" for frame in frames for v in frame), \
        f"{what}: a kernel uses local memory (stack frame or register spills):\n{text}"
    for name in name_expressions or ():
        assert mapping.get(name), f"{what}: {name} was not instantiated"


def _spec_id(spec):
    return spec.name


def _type_variants(params):
    placeholders = sorted({p.ctype for p in params if p.dtype is None})
    unknown = [p for p in placeholders if p not in PLACEHOLDER_DTYPES]
    assert not unknown, (f"type placeholder(s) {unknown} are new: add the dtypes they take to "
                         f"PLACEHOLDER_DTYPES in {__file__}")
    variants = [{}]
    for name in placeholders:
        variants = [{**v, name: np.dtype(d)} for v in variants for d in PLACEHOLDER_DTYPES[name]]
    return variants


def _elementwise_source(env, spec, types, layout):
    """CuPy's generated source for ``spec``: arrays for raw parameters, outputs and the first
    non-raw input, scalars for the other inputs (how the backend calls its kernels; whether a
    parameter is a scalar changes only its declaration, never the operation's code)."""
    cupy, kernel_mod = env["cupy"], env["kernel"]
    kernel = cupy.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation, spec.name,
                                    preamble=spec.preamble)
    ndim, contiguous, index_32 = layout
    first_input = next((j for j, p in enumerate(kernel.params[:kernel.nin]) if not p.raw), None)
    infos = []
    for j, p in enumerate(kernel.params[:-1]):  # the last parameter is the indexer
        dtype = p.dtype if p.dtype is not None else types[p.ctype]
        if j < kernel.nin and not p.raw and j != first_input:
            infos.append(kernel_mod._ArgInfo(3, env["scalar"].CScalar, dtype, 0, True, True))
        else:
            infos.append(kernel_mod._ArgInfo(1, cupy.ndarray, dtype, 1 if p.raw else ndim,
                                             contiguous or p.raw, index_32))
    infos.append(kernel_mod._ArgInfo(2, env["carray"].Indexer, None, ndim, True, index_32))
    code = kernel_mod._get_elementwise_kernel_code(
        tuple(infos), kernel_mod._TypeMap(tuple(sorted(types.items()))), kernel.params,
        spec.operation, spec.name, spec.preamble)
    headers = "".join(f"#include <{h}>\n" for h in env["core"]._cupy_header_list)
    return headers + code, kernel.params[:-1]


ALL_ELEMENTWISE = elementwise_specs() + [update_spec(rule, device_scalars)
                                          for rule in tn.optim.fused_updates()
                                          for device_scalars in (False, True)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("spec", ALL_ELEMENTWISE, ids=_spec_id)
def test_elementwise_kernel_compiles_for_sm90(cupy_nvrtc, spec, layout):
    _, params = _elementwise_source(cupy_nvrtc, spec, {"T": np.dtype("float32"),
                                                       "L": np.dtype("int64")}, LAYOUTS[layout])
    for types in _type_variants(params):
        source, _ = _elementwise_source(cupy_nvrtc, spec, types, LAYOUTS[layout])
        _nvrtc(cupy_nvrtc, source, f"{spec.name} ({layout}, {types})")


@pytest.mark.parametrize("module", list(RAW_MODULES))
def test_raw_module_compiles_for_sm90(cupy_nvrtc, module):
    source, _, instances = RAW_MODULES[module]
    _nvrtc(cupy_nvrtc, source, f"RawModule {module}",
           [name_expression(module, *args) for args in instances])


def test_the_check_fails_on_warnings_errors_and_spills(cupy_nvrtc):
    with pytest.raises(pytest.fail.Exception, match="NVRTC error"):
        _nvrtc(cupy_nvrtc, 'extern "C" __global__ void k(float* x) { x[0] = y; }', "broken")
    with pytest.raises(AssertionError, match="warnings"):
        _nvrtc(cupy_nvrtc, 'extern "C" __global__ void k(float* x) { int unused = 1; x[0] = 1; }',
               "warning")
    spilling = ('extern "C" __global__ void k(float* x, int i) { float a[4096];'
                ' for (int j = 0; j < 4096; ++j) a[j] = x[j]; x[0] = a[i]; }')
    with pytest.raises(AssertionError, match="local memory"):
        _nvrtc(cupy_nvrtc, spilling, "spill")
