// The CUDA device dialect tensornet's kernels use, for g++ (the CPU emulation of the tests).
//
// A kernel source is compiled verbatim after this header. Thread and block indices, barriers
// and warp shuffles come from the emulation runtime (runtime.cpp, loaded first), which runs
// one CPU thread per CUDA thread of a block and the blocks one after another, so `static`
// storage is a faithful `__shared__`. ElementwiseKernel bodies (elementwise.py) use only the
// arithmetic part. Device math follows CUDA, not the C++ library, where they differ:
// min/max of floating values are fmin/fmax (a NaN operand loses).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int a = 1, unsigned int b = 1, unsigned int c = 1) : x(a), y(b), z(c) {}
};

struct tn_emu_thread_state { uint3 thread_idx; uint3 block_idx; };
struct tn_emu_launch_dims { dim3 block; dim3 grid; };

extern "C" {
tn_emu_thread_state* tn_emu_thread(void);
const tn_emu_launch_dims* tn_emu_dims(void);
void tn_emu_syncthreads(void);
void tn_emu_syncwarp(unsigned mask);
unsigned long long tn_emu_exchange(unsigned long long bits, int src_lane, unsigned mask,
                                   const char* what);
unsigned tn_emu_ballot(int predicate, unsigned mask);
unsigned tn_emu_lane(void);
void tn_emu_fail(const char* message);
int tn_emu_failed(void);
void tn_emu_reset(void);
int tn_emu_run(const unsigned* grid, const unsigned* block, void (*body)(void*), void* ctx);
}

#define threadIdx (tn_emu_thread()->thread_idx)
#define blockIdx (tn_emu_thread()->block_idx)
#define blockDim (tn_emu_dims()->block)
#define gridDim (tn_emu_dims()->grid)
static const int warpSize = 32;

__device__ inline void __syncthreads() { tn_emu_syncthreads(); }
__device__ inline void __syncwarp(unsigned mask = 0xffffffffu) { tn_emu_syncwarp(mask); }
__device__ inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
__device__ inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ------------------------------------------------------------------ bit casts
template <typename To, typename From>
__device__ inline To tn_emu_bit_cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit cast between types of different sizes");
    To out;
    std::memcpy(&out, &v, sizeof(To));
    return out;
}
__device__ inline float __int_as_float(int v) { return tn_emu_bit_cast<float>(v); }
__device__ inline float __uint_as_float(unsigned v) { return tn_emu_bit_cast<float>(v); }
__device__ inline int __float_as_int(float v) { return tn_emu_bit_cast<int>(v); }
__device__ inline unsigned __float_as_uint(float v) { return tn_emu_bit_cast<unsigned>(v); }
__device__ inline double __longlong_as_double(long long v) { return tn_emu_bit_cast<double>(v); }
__device__ inline long long __double_as_longlong(double v) { return tn_emu_bit_cast<long long>(v); }

// ------------------------------------------------------------------ math
using std::abs; using std::acos; using std::asin; using std::atan; using std::atan2;
using std::ceil; using std::cos; using std::cosh; using std::erf; using std::exp;
using std::exp2; using std::expm1; using std::fabs; using std::floor; using std::fma;
using std::fmax; using std::fmin; using std::fmod; using std::isfinite; using std::isinf;
using std::isnan; using std::log; using std::log1p; using std::log2; using std::log10;
using std::pow; using std::round; using std::signbit; using std::sin; using std::sinh;
using std::sqrt; using std::tan; using std::tanh; using std::trunc;

__device__ inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
__device__ inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
__device__ inline float rsqrt(float x) { return 1.0f / std::sqrt(x); }
__device__ inline float __expf(float x) { return std::exp(x); }
__device__ inline float __logf(float x) { return std::log(x); }
__device__ inline float __fdividef(float a, float b) { return a / b; }
__device__ inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
// The _rn intrinsics are never contracted into an FMA on the GPU: keep them apart here too.
__device__ inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
__device__ inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
__device__ inline double __dmul_rn(double a, double b) { volatile double r = a * b; return r; }
__device__ inline double __dadd_rn(double a, double b) { volatile double r = a + b; return r; }
__device__ inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
__device__ inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
// cos(pi x) and sin(pi x): CUDA has them (exact range reduction), C++ does not.
__device__ inline double cospi(double x) { return std::cos(3.141592653589793 * x); }
__device__ inline float cospif(float x) { return (float)std::cos(3.141592653589793 * x); }
__device__ inline double sinpi(double x) { return std::sin(3.141592653589793 * x); }
__device__ inline float sinpif(float x) { return (float)std::sin(3.141592653589793 * x); }

// CUDA's min/max: fmin/fmax for floating values (a NaN loses), the usual order for integers.
// NAME(a, b) for floating values (FLOAT_OP: fmax/fmin) and any two integer types (the larger
// or smaller of the two in their common type; B_WINS: whether b is taken when b < a).
#define TN_EMU_MIN_MAX(NAME, FLOAT_OP, B_WINS)                                                \
    __device__ inline float NAME(float a, float b) { return std::FLOAT_OP(a, b); }            \
    __device__ inline double NAME(double a, double b) { return std::FLOAT_OP(a, b); }         \
    __device__ inline double NAME(float a, double b) { return std::FLOAT_OP((double)a, b); }  \
    __device__ inline double NAME(double a, float b) { return std::FLOAT_OP(a, (double)b); }  \
    template <typename A, typename B>                                                          \
    __device__ inline typename std::enable_if<                                                 \
        std::is_integral<A>::value && std::is_integral<B>::value,                              \
        typename std::common_type<A, B>::type>::type NAME(A a, B b) {                         \
        typedef typename std::common_type<A, B>::type C;                                       \
        return ((C)b < (C)a) == B_WINS ? (C)b : (C)a;                                          \
    }
TN_EMU_MIN_MAX(max, fmax, false)
TN_EMU_MIN_MAX(min, fmin, true)
#undef TN_EMU_MIN_MAX

// ------------------------------------------------------------------ warp functions
template <typename T>
__device__ inline T tn_emu_shuffle(unsigned mask, T value, int src_lane, const char* what) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    unsigned long long bits = 0;
    std::memcpy(&bits, &value, sizeof(T));
    bits = tn_emu_exchange(bits, src_lane, mask, what);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}
template <typename T>
__device__ inline T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
    const int lane = (int)tn_emu_lane(), base = lane / width * width;
    return tn_emu_shuffle(mask, value, base + ((src_lane % width) + width) % width, "__shfl_sync");
}
template <typename T>
__device__ inline T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    const int lane = (int)tn_emu_lane();
    const int src = (lane % width) >= (int)delta ? lane - (int)delta : lane;
    return tn_emu_shuffle(mask, value, src, "__shfl_up_sync");
}
template <typename T>
__device__ inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
    const int lane = (int)tn_emu_lane();
    const int src = (lane % width) + (int)delta < width ? lane + (int)delta : lane;
    return tn_emu_shuffle(mask, value, src, "__shfl_down_sync");
}
template <typename T>
__device__ inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
    const int lane = (int)tn_emu_lane();
    const int src = lane ^ lane_mask;
    return tn_emu_shuffle(mask, value, src / width > lane / width ? lane : src,
                          "__shfl_xor_sync");
}
__device__ inline unsigned __ballot_sync(unsigned mask, int predicate) {
    return tn_emu_ballot(predicate, mask);
}
__device__ inline int __any_sync(unsigned mask, int predicate) {
    return tn_emu_ballot(predicate, mask) != 0;
}
__device__ inline int __all_sync(unsigned mask, int predicate) {
    return tn_emu_ballot(!predicate, mask) == 0;
}

// ------------------------------------------------------------------ atomics
template <typename T>
__device__ inline T tn_emu_atomic_update(T* address, T (*update)(T, T), T value) {
    typedef typename std::conditional<sizeof(T) == 4, unsigned, unsigned long long>::type Bits;
    Bits* raw = reinterpret_cast<Bits*>(address);
    Bits old = __atomic_load_n(raw, __ATOMIC_SEQ_CST);
    for (;;) {
        const Bits next = tn_emu_bit_cast<Bits>(update(tn_emu_bit_cast<T>(old), value));
        if (__atomic_compare_exchange_n(raw, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return tn_emu_bit_cast<T>(old);
    }
}
template <typename T> __device__ inline T tn_emu_add(T a, T b) { return a + b; }
template <typename T> __device__ inline T tn_emu_max(T a, T b) { return a < b ? b : a; }
template <typename T> __device__ inline T tn_emu_min(T a, T b) { return b < a ? b : a; }
template <typename T> __device__ inline T atomicAdd(T* a, T v) {
    return tn_emu_atomic_update<T>(a, tn_emu_add<T>, v);
}
template <typename T> __device__ inline T atomicMax(T* a, T v) {
    return tn_emu_atomic_update<T>(a, tn_emu_max<T>, v);
}
template <typename T> __device__ inline T atomicMin(T* a, T v) {
    return tn_emu_atomic_update<T>(a, tn_emu_min<T>, v);
}
template <typename T> __device__ inline T atomicExch(T* a, T v) {
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);
}
template <typename T> __device__ inline T atomicCAS(T* a, T expected, T desired) {
    __atomic_compare_exchange_n(a, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}

// ------------------------------------------------------------------ launching a RawKernel
// The Python side reads a kernel's parameter types (tn_emu_signature) to check and pack the
// arguments, then calls tn_emu_launch with one pointer per argument value.
namespace tn_emu {
template <typename T> struct type_code {
    static void write(char* out) {
        typedef typename std::remove_cv<T>::type U;
        if (std::is_pointer<U>::value) {
            out[0] = 'p';
            type_code<typename std::remove_pointer<U>::type>::write(out + 1);
            return;
        }
        out[0] = std::is_same<U, bool>::value ? 'b'
               : std::is_floating_point<U>::value ? 'f'
               : std::is_signed<U>::value ? 'i' : 'u';
        out[1] = (char)('0' + sizeof(U));
        out[2] = 0;
    }
};
template <> struct type_code<void> { static void write(char* out) { out[0] = 'v'; out[1] = 0; } };
template <> struct type_code<const void> { static void write(char* out) { out[0] = 'v'; out[1] = 0; } };

template <typename... A>
int signature(void (*)(A...), char* out, int size) {
    char codes[sizeof...(A) + 1][8] = {};
    int k = 0;
    (void)std::initializer_list<int>{(type_code<A>::write(codes[k++]), 0)...};
    int pos = 0;
    for (int i = 0; i < (int)sizeof...(A); ++i) {
        const int len = (int)std::strlen(codes[i]);
        if (pos + len + 2 >= size) return -1;
        if (i) out[pos++] = ',';
        std::memcpy(out + pos, codes[i], len);
        pos += len;
    }
    out[pos] = 0;
    return (int)sizeof...(A);
}

template <typename... A, std::size_t... I>
void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<typename std::decay<A>::type*>(args[I])...);
}

template <typename... A>
int launch(void (*kernel)(A...), const unsigned* grid, const unsigned* block, void** args) {
    struct Context { void (*kernel)(A...); void** args; } context{kernel, args};
    return tn_emu_run(grid, block, [](void* c) {
        Context* ctx = static_cast<Context*>(c);
        call(ctx->kernel, ctx->args, std::index_sequence_for<A...>{});
    }, &context);
}
}  // namespace tn_emu
