"""The CPU emulation of CUDA itself: CuPy's ElementwiseKernel binding rules, RawKernel thread
semantics (barriers, shared memory, warp shuffles), argument checks, the fake arrays and how
tensornet's device dispatch sees them. If these drift from CuPy/CUDA, the emulated kernel
tests prove nothing, so each rule is pinned here against NumPy."""
import numpy as np
import pytest

import tensornet as tn
from cuda_emulation.fakecupy import KernelFault, build
from tensornet.backends import get_backend

pytestmark = pytest.mark.cuda_emulated


@pytest.fixture
def cp(cuda_emulation):
    return cuda_emulation


# ====================================================================== ElementwiseKernel
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_binds_arrays_raw_scalars_and_i(cp, rng, dtype):
    kernel = cp.ElementwiseKernel(
        "T x, raw T table, T scale, int32 shift", "T y, int64 where",
        "y = x * scale + table[(i + shift) % _ind.size()]; where = i;", "binding")
    x, table = (rng.standard_normal((3, 5)).astype(dtype) for _ in range(2))
    y, where = kernel(cp.asarray(x), cp.asarray(table), 0.5, np.int64(2))
    assert y.dtype == np.dtype(dtype) and where.dtype == np.int64 and y.shape == (3, 5)
    flat = np.arange(15)
    np.testing.assert_allclose(tn.asnumpy(y), x * dtype_type(dtype)(0.5)
                               + table.reshape(-1)[(flat + 2) % 15].reshape(3, 5), rtol=1e-6)
    np.testing.assert_array_equal(tn.asnumpy(where), flat.reshape(3, 5))


def dtype_type(dtype):
    return np.dtype(dtype).type


def test_elementwise_broadcasts_and_follows_strides(cp, rng):
    add = cp.ElementwiseKernel("T a, T b", "T c", "c = a + b", "add")
    a = rng.standard_normal((3, 1)).astype(np.float32)
    b = rng.standard_normal((8, 4)).astype(np.float32)[::-2, ::1]  # negative stride, (4, 4)
    np.testing.assert_array_equal(tn.asnumpy(add(cp.asarray(a), cp.asarray(b)[:3])), a + b[:3])
    transposed = cp.asarray(np.ascontiguousarray(b.T)).T  # column-major view of b
    out = cp.zeros((6, 8), np.float32)
    add(cp.asarray(a), transposed[:3], out[::2, 1::2])  # written in place through strides
    want = np.zeros((6, 8), np.float32)
    want[::2, 1::2] = a + b[:3]
    np.testing.assert_array_equal(tn.asnumpy(out), want)


def test_raw_arrays_index_their_own_layout(cp, rng):
    gather = cp.ElementwiseKernel("raw T x", "T y", "y = x[i]", "gather")
    x = rng.standard_normal((4, 6)).astype(np.float64)
    view = cp.asarray(x)[:, ::-2].T  # not contiguous: CArray unravels over shape and strides
    got = gather(view, cp.empty(view.size, np.float64))
    np.testing.assert_array_equal(tn.asnumpy(got), x[:, ::-2].T.reshape(-1))


def test_elementwise_type_rules_are_cupys(cp):
    f32, f64 = cp.ones(4, np.float32), cp.ones(4, np.float64)
    same = cp.ElementwiseKernel("T a, T b", "T c", "c = a + b", "same")
    with pytest.raises(TypeError, match="mismatched"):
        same(f32, f64)
    with pytest.raises(TypeError, match="mismatched"):
        cp.ElementwiseKernel("int32 a", "T c", "c = a", "typed")(f32, f32)
    with pytest.raises(TypeError, match="cannot determine"):
        cp.ElementwiseKernel("T s", "T c", "c = s", "scalar_only")(1.0)
    with pytest.raises(TypeError, match="Wrong number"):
        same(f32)
    with pytest.raises(ValueError, match="out shape"):
        same(f32, f32, cp.ones(1, np.float32))
    with pytest.raises(ValueError, match="broadcast"):
        same(f32, f32, cp.ones(5, np.float32))
    with pytest.raises(ValueError, match="undecided"):
        cp.ElementwiseKernel("raw T a", "raw T c", "c[i] = a[i]", "all_raw")(f32, f32)
    with pytest.raises(TypeError, match="host array"):
        same(f32, np.ones(4, np.float32))
    # scalars take their parameter's type: a float64 scalar in a float32 kernel is float32
    got = cp.ElementwiseKernel("T a, T s", "T c", "c = a * s", "cast")(f32, np.float64(1 / 3))
    assert tn.asnumpy(got)[0] == np.float32(1 / 3)


def test_size_drives_all_raw_kernels(cp):
    fill = cp.ElementwiseKernel("", "raw T out", "out[i] = T(i) * T(2)", "fill")
    out = cp.empty(5, np.float32)
    fill(out, size=5)
    np.testing.assert_array_equal(tn.asnumpy(out), [0, 2, 4, 6, 8])


def test_out_of_bounds_raw_index_is_reported(cp):
    shifted = cp.ElementwiseKernel("raw T x", "T y", "y = x[i + 1]", "shifted")
    with pytest.raises(KernelFault, match="'x' of size 4 indexed at 4"):
        shifted(cp.ones(4, np.float32), cp.empty(4, np.float32))


def test_empty_is_garbage_so_unwritten_outputs_show(cp):
    assert np.isnan(tn.asnumpy(cp.empty(3, np.float32))).all()
    assert (tn.asnumpy(cp.empty(2, np.int32)) == 0x7F7F7F7F).all()
    half = cp.ElementwiseKernel("T x", "T y", "if (i % 2 == 0) y = x", "half")
    got = tn.asnumpy(half(cp.ones(4, np.float32)))
    assert (got[::2] == 1).all() and np.isnan(got[1::2]).all()


def test_a_times_b_plus_c_is_one_fma_as_with_nvrtc(cp):
    if "-mfma" not in build._flags():
        pytest.skip("this CPU has no FMA instruction, so contraction cannot be emulated")
    a = np.float32(1 + 2**-12)
    kernel = cp.ElementwiseKernel("T a, T b, T c", "T y", "y = a * b + c", "fma")
    got = tn.asnumpy(kernel(cp.full(1, a), cp.full(1, a), cp.full(1, np.float32(-1))))[0]
    assert got == np.float32(2**-11 + 2**-24)  # unfused, a*b would round to 1 + 2**-11


def test_min_and_max_are_cudas(cp):
    """fmax/fmin for floating values (a NaN loses, unlike std::max), mixed integer types."""
    kernel = cp.ElementwiseKernel("T a, T b, int32 k", "T hi, T lo, int64 m",
                                  "hi = max(a, b); lo = min(a, b); m = max(k, (long long)i) - "
                                  "min((unsigned)k, 2u)", "min_max")
    a = cp.asarray(np.array([1.0, np.nan, -2.0, np.nan], np.float32))
    b = cp.asarray(np.array([np.nan, 3.0, 5.0, np.nan], np.float32))
    hi, lo, m = (tn.asnumpy(v) for v in kernel(a, b, 1))
    np.testing.assert_array_equal(hi, [1.0, 3.0, 5.0, np.nan])
    np.testing.assert_array_equal(lo, [1.0, 3.0, -2.0, np.nan])
    np.testing.assert_array_equal(m, [0, 0, 1, 2])


# ====================================================================== RawKernel
BLOCK_SUM = r"""
extern "C" __global__ void block_sum(const float* x, float* out, int n) {
    __shared__ float partial[256];
    const int t = threadIdx.x;
    const int i = blockIdx.x * blockDim.x + t;
    partial[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}
"""


@pytest.mark.parametrize("scheduler", ["fibers", "threads"])
def test_shared_memory_and_syncthreads_per_block(cp, rng, monkeypatch, scheduler):
    monkeypatch.setenv("TN_CUDA_EMU_SCHEDULER", scheduler)
    x = rng.standard_normal(1000).astype(np.float32)
    out = cp.empty(4, np.float32)
    cp.RawKernel(BLOCK_SUM, "block_sum")((4,), (256,), (cp.asarray(x), out, np.int32(1000)))
    want = np.pad(x, (0, 24)).reshape(4, 256).astype(np.float64).sum(1)
    np.testing.assert_allclose(tn.asnumpy(out), want, rtol=1e-5)


def test_a_missing_syncthreads_gives_wrong_sums(cp, rng):
    racy = BLOCK_SUM.replace("    __syncthreads();\n    for", "    for")
    x = rng.standard_normal(256).astype(np.float32) + 1.0
    out = cp.empty(1, np.float32)
    cp.RawKernel(racy, "block_sum")((1,), (256,), (cp.asarray(x), out, np.int32(256)))
    assert abs(tn.asnumpy(out)[0] - x.sum()) > 1.0


SHUFFLES = r"""
extern "C" __global__ void shuffles(const float* x, float* out, int width) {
    const int t = threadIdx.x;
    const float v = x[t];
    out[0 * 64 + t] = __shfl_xor_sync(0xffffffffu, v, 5, width);
    out[1 * 64 + t] = __shfl_down_sync(0xffffffffu, v, 3, width);
    out[2 * 64 + t] = __shfl_up_sync(0xffffffffu, v, 3, width);
    out[3 * 64 + t] = __shfl_sync(0xffffffffu, v, 7, width);
    out[4 * 64 + t] = (float)__ballot_sync(0xffffffffu, v > 0.0f);
    out[5 * 64 + t] = (float)(threadIdx.x + 100 * blockDim.x);
}
"""


def _reference_shuffles(x, width):
    out = np.empty((6, 64), np.float32)
    for t in range(64):
        lane, base = t % 32, t - t % 32
        seg = lane // width * width
        src = lane ^ 5
        out[0, t] = x[base + (lane if src // width > lane // width else src)]
        out[1, t] = x[t + 3] if lane % width + 3 < width else x[t]
        out[2, t] = x[t - 3] if lane % width >= 3 else x[t]
        out[3, t] = x[base + seg + 7 % width]
        out[4, t] = sum(1 << k for k in range(32) if x[base + k] > 0)
        out[5, t] = t + 100 * 64
    return out


@pytest.mark.parametrize("scheduler", ["fibers", "threads"])
@pytest.mark.parametrize("width", [32, 16, 8])
def test_warp_shuffles_follow_cuda(cp, rng, monkeypatch, scheduler, width):
    monkeypatch.setenv("TN_CUDA_EMU_SCHEDULER", scheduler)
    x = rng.standard_normal(64).astype(np.float32)
    out = cp.empty(6 * 64, np.float32)
    cp.RawKernel(SHUFFLES, "shuffles")((1,), (64,), (cp.asarray(x), out, np.int32(width)))
    np.testing.assert_array_equal(tn.asnumpy(out).reshape(6, 64), _reference_shuffles(x, width))


def test_indices_of_2d_blocks_and_grids(cp):
    source = r"""extern "C" __global__ void where(int* out) {
        const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
        const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        out[b * 24 + t] = 1000 * b + 100 * threadIdx.z + 10 * threadIdx.y + threadIdx.x;
    }"""
    out = cp.empty(6 * 24, np.int32)
    cp.RawKernel(source, "where")((3, 2), (4, 3, 2), (out,))
    b, z, y, x = np.meshgrid(range(6), range(2), range(3), range(4), indexing="ij")
    np.testing.assert_array_equal(tn.asnumpy(out), (1000 * b + 100 * z + 10 * y + x).ravel())


@pytest.mark.parametrize("body, message", [
    ("if (threadIdx.x < 16) return; v = __shfl_xor_sync(0xffffffffu, v, 16);", "did not take"),
    ("v = __shfl_xor_sync(0x0000ffffu, v, 16);", "leaves that lane out|did not take"),
    ("if (threadIdx.x == 0) v = __shfl_xor_sync(0xffffffffu, v, 1); else __syncthreads();",
     "deadlock"),
])
def test_warp_misuse_is_reported(cp, body, message):
    source = ("extern \"C\" __global__ void misuse(float* out) {\n  float v = threadIdx.x;\n"
              f"  {body}\n  out[threadIdx.x] = v;\n}}\n")
    with pytest.raises(KernelFault, match=message):
        cp.RawKernel(source, "misuse")((1,), (32,), (cp.empty(32, np.float32),))


def test_raw_arguments_are_checked_against_the_signature(cp):
    kernel = cp.RawKernel(BLOCK_SUM, "block_sum")
    x, out = cp.ones(8, np.float32), cp.empty(1, np.float32)
    for args, message in [((x, out, np.int64(8)), "int64 scalar for a parameter of type i4"),
                          ((x, out, 8), "int64 scalar"),
                          ((cp.ones(8, np.float64), out, np.int32(8)), "float64 array"),
                          ((np.ones(8, np.float32), out, np.int32(8)), "host"),
                          ((x, out), "takes 3 arguments")]:
        with pytest.raises(TypeError, match=message):
            kernel((1,), (256,), args)
    with pytest.raises(KernelFault, match="invalid launch configuration"):
        kernel((1,), (2048,), (x, out, np.int32(8)))


def test_template_kernels_need_a_name_expression(cp):
    module = cp.RawModule(code="template <typename T> __global__ void k(T* x) { x[0] = T(1); }",
                          name_expressions=["k<float>"])
    out = cp.empty(1, np.float32)
    module.get_function("k<float>")((1,), (1,), (out,))
    assert tn.asnumpy(out)[0] == 1
    with pytest.raises(RuntimeError, match="not found"):
        module.get_function("k<double>")


# ====================================================================== arrays and dispatch
def test_fake_arrays_look_like_cupy_arrays(cp, rng):
    host = rng.standard_normal((2, 3)).astype(np.float32)
    x = cp.asarray(host)
    host[0, 0] = 99.0  # a transfer is a copy
    assert type(x).__module__ == "cupy" and x.device.id == 0 and x[0, 0] != 99.0
    assert x.data.ptr == x.__array_interface__["data"][0]
    assert isinstance(x.sum(), cp.ndarray) and x.sum().ndim == 0 and isinstance(x[0, 1], cp.ndarray)
    assert type(cp.asnumpy(x)) is np.ndarray and type(x.get()) is np.ndarray
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.concatenate([x, np.ones((2, 3), np.float32)])
    with pytest.raises(pytest.skip.Exception, match="real CUDA runtime"):
        cp.cuda.Stream(non_blocking=True)


def test_namespace_and_signatures_are_cupys_when_cupy_is_installed(cp):
    from cuda_emulation.fakecupy import real_cupy
    if real_cupy() is None:
        pytest.skip("the real CuPy is not installed: the fake offers NumPy's names")
    missing = sorted(n for n in dir(np) if not n.startswith("_") and not hasattr(real_cupy(), n))
    with pytest.raises(AttributeError, match="CuPy 14 lacks it"):
        getattr(cp, missing[0])
    with pytest.raises(TypeError, match="newshape"):  # CuPy's reshape calls it newshape
        cp.reshape(cp.ones(6), shape=(2, 3))


def test_tensornet_dispatch_sees_fake_arrays_as_gpu_arrays(cp):
    x = cp.ones((2, 2), np.float32)
    cuda, cpu = get_backend("cuda"), get_backend("cpu")
    assert get_backend(x) is cuda and cuda.owns(x) and not cpu.owns(x)
    assert tn.backends.device_of(x) == "cuda:0"
    assert type(tn.to_device(x, "cpu")) is np.ndarray
    assert get_backend(tn.to_device(np.ones(2), "cuda")) is cuda


def test_array_api_compat_wraps_the_fake(cp):
    """What the redesign's detection relies on. Mind the order: the fake arrays subclass
    numpy.ndarray, so ``is_numpy_array`` (and ``array_namespace``, which asks it first) says
    True for them too; ask ``is_cupy_array`` first."""
    compat = pytest.importorskip("array_api_compat")
    x = cp.ones(3, np.float32)
    assert compat.is_cupy_array(x)
    import array_api_compat.cupy as xp
    assert isinstance(xp.permute_dims(cp.ones((2, 3)), (1, 0)), cp.ndarray)
    assert isinstance(xp.asarray([1.0, 2.0]), cp.ndarray)
