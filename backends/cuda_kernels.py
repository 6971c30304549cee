"""CUDA kernel sources for the CuPy backend, and a cache that builds them on first use.

This module holds only strings and host-side arithmetic, so it imports without CuPy; the
kernels are compiled (by NVRTC, through CuPy) the first time ``KernelCache`` hands them out.

Conventions: every floating kernel is written once for a type ``T`` (float32 or float64);
scalars reach it as NumPy scalars of the array's dtype (a Python float would arrive as a
double and make float32 kernels compute in float64). Optimizer updates are not written here:
each optimizer's file holds its rule's kernel body (a ``FusedUpdate``), and ``update_spec``
turns any of them into one kernel, with its scalars as kernel arguments (eager) or read from
a device row (CUDA graphs, whose captured scalars are frozen).
"""
from __future__ import annotations

from typing import NamedTuple


FUSED_DTYPES = ("float32", "float64")  # the dtypes every kernel here is built for
C_TYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long"}


class ElementwiseSpec(NamedTuple):
    """Arguments of ``cupy.ElementwiseKernel``."""
    in_params: str
    out_params: str
    operation: str
    name: str
    preamble: str = ""


# ---------------------------------------------------------------------- activations
# ``x < 0 ? 0 : x`` keeps NaN (as ``maximum(x, 0)`` does); the backward reads the output.
RELU = ElementwiseSpec("T x", "T y", "y = x < T(0) ? T(0) : x", "tn_relu")
RELU_BACKWARD = ElementwiseSpec("T grad, T y", "T dx", "dx = y > T(0) ? grad : T(0)",
                                "tn_relu_backward")
# A Linear's bias and the ReLU after it (nn/fusion.py): bias (C,) broadcast over y (N, C).
BIAS_RELU = ElementwiseSpec("T y, T bias", "T out", "T v = y + bias; out = v < T(0) ? T(0) : v",
                            "tn_bias_relu")

# ---------------------------------------------------------------------- optimizer updates
def update_spec(update, device_scalars: bool) -> ElementwiseSpec:
    """The ElementwiseKernel of a ``FusedUpdate`` (see backends/base.py): inputs ``grad``
    and the scalars, in-place outputs ``param`` and the states, the rule's body as the
    operation. With ``device_scalars`` the scalars are read from ``raw T hyper`` instead
    (one row of a CUDA graph's device table: captured kernel arguments are frozen)."""
    out = ", ".join(f"T {name}" for name in ("param",) + tuple(update.states))
    if device_scalars:
        unpack = "".join(f"const T {name} = hyper[{i}];\n" for i, name in enumerate(update.scalars))
        return ElementwiseSpec("T grad, raw T hyper", out, unpack + update.body,
                               f"tn_update_{update.name}_dev")
    scalars = "".join(f", T {name}" for name in update.scalars)
    return ElementwiseSpec(f"T grad{scalars}", out, update.body, f"tn_update_{update.name}")


# ---------------------------------------------------------------------- cross-entropy
# One warp per row: max, log-sum-exp and the smoothed-target dot product by warp shuffles,
# so any number of classes works. Writes log-probabilities (for backward) and per-row losses.
# A label outside [0, C) yields NaN (loss and gradient) rather than reading out of bounds:
# on the GPU the label-range check is off by default because it would sync every step.
# With `ignoring` set, a row whose label is `ignore_index` gets loss 0 and gradient 0 (as
# PyTorch's), and the forward adds the number of the other rows into `kept` (zeroed by the
# caller: the mean's divisor, kept on the device). Warps stride over the rows of a grid of
# at most CROSS_ENTROPY_MAX_BLOCKS blocks and sum their counts in shared memory first, so a
# batch of any size makes at most one global atomic per block. The counts are whole numbers:
# their float sum is exact, so the same in any order, up to 2^24 rows in float32.
NUMERIC_HELPERS = r"""
template <typename T> __device__ __forceinline__ T tn_quiet_nan();
template <> __device__ __forceinline__ float tn_quiet_nan<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double tn_quiet_nan<double>() {
    return __longlong_as_double(0x7ff8000000000000LL);
}
template <typename T> __device__ __forceinline__ T tn_neg_inf();
template <> __device__ __forceinline__ float tn_neg_inf<float>() { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double tn_neg_inf<double>() {
    return __longlong_as_double(0xfff0000000000000LL);
}
"""

CROSS_ENTROPY_SOURCE = NUMERIC_HELPERS + r"""
template <typename T, typename L>
__global__ void tn_cross_entropy_forward(const T* __restrict__ logits, const L* __restrict__ labels,
                                         int n_rows, int n_classes, T keep, T eps_over_c,
                                         long long ignore_index, int ignoring,
                                         T* __restrict__ log_probs, T* __restrict__ losses,
                                         T* __restrict__ kept) {
    __shared__ T block_kept;
    if (threadIdx.x == 0) block_kept = T(0);
    __syncthreads();
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    T warp_kept = T(0);
    // the loop's bounds are the warp's own: its lanes run every row (and shuffle) together
    for (long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
         row < n_rows; row += warps) {
        const T* x = logits + row * n_classes;
        T* lp = log_probs + row * n_classes;

        T m = tn_neg_inf<T>();
        for (int j = lane; j < n_classes; j += 32) m = max(m, x[j]);
        for (int off = 16; off > 0; off >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
        if (!isfinite(m)) m = T(0);  // as the generic logsumexp: rows of +-inf stay inf/NaN

        T s = T(0);
        for (int j = lane; j < n_classes; j += 32) s += exp(x[j] - m);
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        // (x - m) - log(s), never x - (log(s) + m): at |m| >> log(s) the sum would round
        // log(s) away (logits of -1e30 would give log-probabilities of 0).
        const T log_s = log(s);

        const long long label = (long long)labels[row];
        T dot = T(0);
        for (int j = lane; j < n_classes; j += 32) {
            const T v = (x[j] - m) - log_s;
            lp[j] = v;
            dot += ((j == label ? keep : T(0)) + eps_over_c) * v;
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        const bool ignored = ignoring && label == ignore_index;
        if (lane == 0) {
            losses[row] = ignored ? T(0)
                        : (label >= 0 && label < n_classes) ? -dot : tn_quiet_nan<T>();
        }
        if (!ignored) warp_kept += T(1);
    }
    if (lane == 0 && warp_kept != T(0)) atomicAdd(&block_kept, warp_kept);
    __syncthreads();
    if (threadIdx.x == 0 && block_kept != T(0)) atomicAdd(kept, block_kept);
}
"""
CROSS_ENTROPY_WARPS_PER_BLOCK = 8
CROSS_ENTROPY_MAX_BLOCKS = 1024  # 8192 warps: about all an H100/H200 keeps resident


def cross_entropy_backward_spec(device_divisor: bool) -> ElementwiseSpec:
    """The backward ``scale * (softmax - target)``, 0 on ignored rows, NaN on rows of other
    labels outside [0, C); with ``device_divisor``, also divided by ``raw T divisor`` (one
    element: the forward's kept-row count, read on the device; a row that is not ignored
    means it is at least 1)."""
    factor = "(scale / divisor[0])" if device_divisor else "scale"
    return ElementwiseSpec(
        "T log_probs, raw L labels, T scale, " + ("raw T divisor, " if device_divisor else "")
        + "T keep, T eps_over_c, int32 n_classes, int64 ignore_index, int32 ignoring", "T grad",
        "const ptrdiff_t row = i / n_classes;\n"
        "const long long j = i - row * n_classes;\n"
        "const long long label = (long long)labels[row];\n"
        "const T target = (j == label ? keep : T(0)) + eps_over_c;\n"
        "grad = (ignoring && label == ignore_index) ? T(0)\n"
        "     : (label >= 0 && label < n_classes) ? (exp(log_probs) - target) * " + factor + "\n"
        "     : tn_quiet_nan<T>();",
        "tn_cross_entropy_backward" + ("_divided" if device_divisor else ""), NUMERIC_HELPERS)


CROSS_ENTROPY_BACKWARD = cross_entropy_backward_spec(device_divisor=False)
CROSS_ENTROPY_BACKWARD_DIVIDED = cross_entropy_backward_spec(device_divisor=True)


# ---------------------------------------------------------------------- dropout in graphs
# CuPy's generators keep their state on the host side of a launch, so a captured draw would
# repeat every replay. Inside CUDA-graph steps masks come instead from a counter-based hash:
# element i of draw number rng[1] under key rng[0] (SplitMix64 finaliser, twice), and a
# captured one-thread kernel advances rng[1] after each draw, so every replay differs.
_MIX64 = r"""
__device__ __forceinline__ unsigned long long tn_mix64(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
// Element i of draw number `counter` under `key`; and that as a double in [0, 1), 53 bits.
__device__ __forceinline__ unsigned long long tn_draw(unsigned long long key,
                                                      unsigned long long counter,
                                                      unsigned long long i) {
    return tn_mix64(key ^ tn_mix64(counter * 0x9e3779b97f4a7c15ULL + i));
}
__device__ __forceinline__ double tn_unit(unsigned long long h) {
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}
"""
BERNOULLI_COUNTER = ElementwiseSpec(
    "raw uint64 rng, float64 p", "T mask",
    "mask = tn_unit(tn_draw(rng[0], rng[1], (unsigned long long)i)) < p ? T(1) : T(0);",
    "tn_bernoulli_counter", _MIX64)

# Eager draws of the CuPy backend's generator: the same hash with the key and the draw
# counter as arguments (the host keeps them: a checkpoint holds the generator exactly, and a
# CUDA-graph step reading them from device memory draws what eager steps would).
BERNOULLI_DRAW = ElementwiseSpec(
    "uint64 key, uint64 counter, float64 p", "T mask",
    "mask = tn_unit(tn_draw(key, counter, (unsigned long long)i)) < p ? T(1) : T(0);",
    "tn_bernoulli_draw", _MIX64)
UNIFORM_DRAW = ElementwiseSpec(
    "uint64 key, uint64 counter, float64 low, float64 span", "T out",
    "out = (T)(low + span * tn_unit(tn_draw(key, counter, (unsigned long long)i)));",
    "tn_uniform_draw", _MIX64)
NORMAL_DRAW = ElementwiseSpec(  # Box-Muller on two draws per element; u1 in (0, 1]
    "uint64 key, uint64 counter, float64 mean, float64 std", "T out",
    "const unsigned long long j = 2 * (unsigned long long)i;\n"
    "const double u1 = 1.0 - tn_unit(tn_draw(key, counter, j));\n"
    "const double u2 = tn_unit(tn_draw(key, counter, j + 1));\n"
    # cospi(2 u2) = cos(2 pi u2): no large-argument reduction (which needs local memory)
    "out = (T)(mean + std * sqrt(-2.0 * log(u1)) * cospi(2.0 * u2));",
    "tn_normal_draw", _MIX64)
KEYS_DRAW = ElementwiseSpec(  # random sort keys (permutation = argsort of these)
    "uint64 key, uint64 counter", "uint64 out",
    "out = tn_draw(key, counter, (unsigned long long)i);", "tn_keys_draw", _MIX64)
RNG_ADVANCE = ElementwiseSpec("uint64 step", "uint64 counter", "counter += step",
                              "tn_rng_advance")


# ---------------------------------------------------------------------- GEMM (graph-safe)
# C (M, N, contiguous) = A (M, K) @ B (K, N), A and B given by element strides so that
# transposed views need no copy; blockIdx.z walks a batch of such products (conv groups)
# times ``splits`` slices of K. A plain shared-memory tiled GEMM: 64x64 tiles of C per
# 256-thread block, 4x4 outputs per thread, FP32/FP64 FMA (never TF32). It exists because
# CuPy refuses cuBLAS inside CUDA-graph capture; eager steps use cuBLAS.
# Split-K: a product with few output tiles and a long K (a convolution's weight gradient:
# M=8, N=9, K=100352) would run on one block; instead each of ``splits`` blocks sums one
# ``k_chunk`` of K into its own (M, N) slice of a workspace, and GEMM_SPLIT_K_SUM adds the
# slices in a fixed order (deterministic, no atomics).
GEMM_TILE_M = GEMM_TILE_N = 64
GEMM_TILE_K = 16
GEMM_THREADS = 256
GEMM_SPLIT_K_BLOCKS = 264      # split until about 2 blocks per SM of a 132-SM H200
GEMM_SPLIT_K_MIN_CHUNK = 512   # but never below this much of K per block
GEMM_SOURCE = r"""
#define TILE_M 64
#define TILE_N 64
#define TILE_K 16
template <typename T>
__global__ void __launch_bounds__(256)
tn_gemm(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
        int M, int N, int K, long long a_rs, long long a_cs, long long b_rs, long long b_cs,
        long long a_bs, long long b_bs, int splits, long long k_chunk) {
    const long long batch = blockIdx.z / splits;
    const long long k_begin = (long long)(blockIdx.z % splits) * k_chunk;
    const long long k_end = min(k_begin + k_chunk, (long long)K);
    A += batch * a_bs;
    B += batch * b_bs;
    C += (long long)blockIdx.z * M * N;  // with splits > 1: the workspace slice
    __shared__ T As[TILE_K][TILE_M + 1];
    __shared__ T Bs[TILE_K][TILE_N + 1];
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;  // 16 x 16 threads, each 4 x 4 outputs
    const long long row0 = (long long)blockIdx.y * TILE_M;
    const long long col0 = (long long)blockIdx.x * TILE_N;
    // Walk the unit-stride axis with consecutive threads so global loads coalesce.
    const bool a_k_fast = (a_cs == 1);
    const bool b_n_fast = (b_cs == 1) || (b_rs != 1);
    T acc[4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = T(0);

    for (long long k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        for (int e = tid; e < TILE_M * TILE_K; e += 256) {
            const int m = a_k_fast ? e / TILE_K : e % TILE_M;
            const int k = a_k_fast ? e % TILE_K : e / TILE_M;
            const long long gm = row0 + m, gk = k0 + k;
            As[k][m] = (gm < M && gk < k_end) ? A[gm * a_rs + gk * a_cs] : T(0);
        }
        for (int e = tid; e < TILE_K * TILE_N; e += 256) {
            const int k = b_n_fast ? e / TILE_N : e % TILE_K;
            const int n = b_n_fast ? e % TILE_N : e / TILE_K;
            const long long gk = k0 + k, gn = col0 + n;
            Bs[k][n] = (gk < k_end && gn < N) ? B[gk * b_rs + gn * b_cs] : T(0);
        }
        __syncthreads();
        #pragma unroll
        for (int k = 0; k < TILE_K; ++k) {
            T a[4], b[4];
            #pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
            #pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
            #pragma unroll
            for (int i = 0; i < 4; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        const long long gm = row0 + ty + 16 * i;
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            const long long gn = col0 + tx + 16 * j;
            if (gm < M && gn < N) C[gm * N + gn] = acc[i][j];
        }
    }
}
"""

GEMM_SPLIT_K_SUM = ElementwiseSpec(  # out (batch, M, N) = sum over s of partial[batch, s]
    "raw T partial, int32 splits, int64 plane", "T out",
    "const long long b = i / plane, r = i - b * plane;\n"
    "T sum = T(0);\n"
    "for (int s = 0; s < splits; ++s) sum += partial[(b * splits + s) * plane + r];\n"
    "out = sum;",
    "tn_gemm_split_k_sum")


def gemm_split_k(tiles: int, k: int) -> tuple:
    """(splits, k_chunk) for a GEMM of ``tiles`` output tiles (times its batch) and depth
    ``k``: one split unless the tiles leave most SMs idle and K is long. The same on every
    GPU, so the summation order (and the result) does not depend on the device."""
    if tiles >= GEMM_SPLIT_K_BLOCKS or k < 2 * GEMM_SPLIT_K_MIN_CHUNK:
        return 1, k
    splits = min(-(-GEMM_SPLIT_K_BLOCKS // tiles), k // GEMM_SPLIT_K_MIN_CHUNK)
    chunk = -(-k // splits)
    chunk = -(-chunk // GEMM_TILE_K) * GEMM_TILE_K
    return -(-k // chunk), chunk


# ---------------------------------------------------------------------- registry
# Raw modules: name -> (source, kernel templates, the template arguments to instantiate).
RAW_MODULES = {
    "cross_entropy": (CROSS_ENTROPY_SOURCE, "tn_cross_entropy_forward",
                      [("float", "long long"), ("float", "int"), ("double", "long long"),
                       ("double", "int")]),
    "gemm": (GEMM_SOURCE, "tn_gemm", [("float",), ("double",)]),
}


def elementwise_specs() -> list:
    """Every fixed ElementwiseKernel this backend builds (for compile checks); the optimizer
    kernels come from each optimizer's FusedUpdate (``tensornet.optim.fused_updates()``)
    through ``update_spec``."""
    from .cuda_window_kernels import WINDOW_SPECS
    return [RELU, RELU_BACKWARD, BIAS_RELU, CROSS_ENTROPY_BACKWARD, CROSS_ENTROPY_BACKWARD_DIVIDED,
            BERNOULLI_COUNTER, RNG_ADVANCE, BERNOULLI_DRAW, UNIFORM_DRAW, NORMAL_DRAW, KEYS_DRAW,
            GEMM_SPLIT_K_SUM, *WINDOW_SPECS]


def name_expression(module: str, *type_args: str) -> str:
    return f"{RAW_MODULES[module][1]}<{', '.join(type_args)}>"


class KernelCache:
    """Builds each kernel once per process (CuPy caches the compiled binary per device) and
    counts launches: ``launches`` is the number of tensornet kernels launched so far (CuPy's
    own operations, such as ``+=`` or ``sum``, are not counted)."""

    def __init__(self, cupy):
        self._cupy = cupy
        self._elementwise: dict = {}
        self._modules: dict = {}
        self._raw: dict = {}
        self.launches = 0

    def elementwise(self, spec: ElementwiseSpec):
        kernel = self._elementwise.get(spec)
        if kernel is None:
            kernel = self._elementwise[spec] = _Counted(self, self._cupy.ElementwiseKernel(
                spec.in_params, spec.out_params, spec.operation, spec.name,
                preamble=spec.preamble))
        return kernel

    def raw(self, module: str, *type_args: str):
        """The RawKernel ``module``'s template instantiated at ``type_args`` (C type names)."""
        key = (module, type_args)
        kernel = self._raw.get(key)
        if kernel is None:
            mod = self._modules.get(module)
            if mod is None:
                source, _, instances = RAW_MODULES[module]
                names = [name_expression(module, *args) for args in instances]
                mod = self._modules[module] = self._cupy.RawModule(code=source,
                                                                   name_expressions=names)
            kernel = self._raw[key] = _Counted(
                self, mod.get_function(name_expression(module, *type_args)))
        return kernel


class _Counted:
    """A kernel whose calls add one to its cache's launch counter."""

    __slots__ = ("_cache", "_kernel")

    def __init__(self, cache, kernel):
        self._cache, self._kernel = cache, kernel

    def __call__(self, *args, **kwargs):
        self._cache.launches += 1
        return self._kernel(*args, **kwargs)
