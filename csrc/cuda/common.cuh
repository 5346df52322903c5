// common.cuh - helpers shared by every pydl CUDA kernel file.
//
// The loader (pydl/backend/cuda/runtime.py) pastes this file in place of `#include "common.cuh"`
// before handing the source to NVRTC, so the source text (and with it CuPy's on-disk cache
// key) changes whenever a helper changes. No system headers: NVRTC needs none of them here.
//
// Contents: 64-bit index type, dtype-overloaded math (float / double), -inf, NaN test,
// warp and block reductions (sum, max, and the (max, sum-of-exp) pair used by online
// softmax), the TF32 mma.sync wrapper and the sm_80 cp.async / ldmatrix wrappers (inline PTX).
//
// Host emulation: when PYDL_HOST_EMULATION is defined (tests/cuda_emu compiles the kernels
// as C++ on the CPU), the PTX wrappers call C++ models of the same instructions instead.
#pragma once

typedef long long i64;
typedef unsigned int u32;

namespace pydl {

// --------------------------------------------------------------------------- math by dtype
__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_erf(float x) { return erff(x); }
__device__ __forceinline__ double d_erf(double x) { return erf(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double d_fma(double a, double b, double c) { return fma(a, b, c); }
// Correctly rounded 1 / x without the division's out-of-line slow path (whose call makes
// ptxas save live registers to the stack: spills); for x that is not denormal or huge.
__device__ __forceinline__ float d_rcp(float x) { return __frcp_rn(x); }
__device__ __forceinline__ double d_rcp(double x) { return __drcp_rn(x); }

template <typename T> __device__ __forceinline__ bool d_isnan(T x) { return x != x; }

// max that ignores a NaN argument (NaN only when both are); sums catch NaN rows anyway.
template <typename T> __device__ __forceinline__ T d_max(T a, T b) { return a > b ? a : (b == b ? b : a); }

template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() { return -__int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double neg_inf<double>() {
    return -__longlong_as_double(0x7ff0000000000000LL);
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ i64 lmin(i64 a, i64 b) { return a < b ? a : b; }

// A 1-D grid-stride loop: i runs over [0, n) across every thread of the grid.
#define PYDL_GRID_STRIDE(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// --------------------------------------------------------------------------- reductions
struct SumOp {
    template <typename T> __device__ __forceinline__ static T apply(T a, T b) { return a + b; }
    template <typename T> __device__ __forceinline__ static T identity() { return T(0); }
};
struct MaxOp {
    template <typename T> __device__ __forceinline__ static T apply(T a, T b) { return d_max(a, b); }
    template <typename T> __device__ __forceinline__ static T identity() { return neg_inf<T>(); }
};

// Reduce across the 32 lanes of a warp; every lane gets the result. Whole warps only.
template <class Op, typename T> __device__ __forceinline__ T warp_reduce(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = Op::apply(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Reduce across a group of THREADS consecutive threads (THREADS == 32: one warp; otherwise
// THREADS == blockDim.x, a multiple of 32 up to 1024). Every thread gets the result.
// `smem` holds 32 values; the leading barrier lets callers reuse it back to back.
template <class Op, int THREADS, typename T> __device__ __forceinline__ T group_reduce(T v, T* smem) {
    v = warp_reduce<Op>(v);
    if (THREADS > 32) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        __syncthreads();
        if (lane == 0) smem[warp] = v;
        __syncthreads();
        v = lane < THREADS / 32 ? smem[lane] : Op::template identity<T>();
        v = warp_reduce<Op>(v);
    }
    return v;
}

// Online softmax state: running max m and sum s of exp(x - m).
// A -inf adds nothing, also while m is still -inf (where exp(x - m) would be NaN and spoil
// the whole row, e.g. a masked logit in a lane's first column).
template <typename T> __device__ __forceinline__ void ms_add(T& m, T& s, T x) {
    if (x > m) {
        s = s * d_exp(m - x) + T(1);  // exp(-inf) = 0 covers the first element
        m = x;
    } else if (x != neg_inf<T>()) {
        s += d_exp(x - m);  // x NaN -> s NaN, which is what the reference gives
    }
}
template <typename T> __device__ __forceinline__ void ms_merge(T& m, T& s, T m2, T s2) {
    const T mm = m > m2 ? m : m2;
    const T a = (m == mm) ? s : s * d_exp(m - mm);  // the == tests keep -inf - -inf out
    const T b = (m2 == mm) ? s2 : s2 * d_exp(m2 - mm);
    m = (m == m && m2 == m2) ? mm : m + m2;  // a NaN max stays NaN
    s = a + b;
}
template <int THREADS, typename T>
__device__ __forceinline__ void group_reduce_ms(T& m, T& s, T* smem_m, T* smem_s) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const T m2 = __shfl_xor_sync(0xffffffffu, m, o);
        const T s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    if (THREADS > 32) {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        __syncthreads();
        if (lane == 0) {
            smem_m[warp] = m;
            smem_s[warp] = s;
        }
        __syncthreads();
        m = lane < THREADS / 32 ? smem_m[lane] : neg_inf<T>();
        s = lane < THREADS / 32 ? smem_s[lane] : T(0);
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const T m2 = __shfl_xor_sync(0xffffffffu, m, o);
            const T s2 = __shfl_xor_sync(0xffffffffu, s, o);
            ms_merge(m, s, m2, s2);
        }
    }
}

// --------------------------------------------------------------------------- 16-byte vectors
template <typename T> struct Vec16;
template <> struct Vec16<float> {
    typedef float4 type;
    static constexpr int N = 4;
};
template <> struct Vec16<double> {
    typedef double2 type;
    static constexpr int N = 2;
};

// Copy N consecutive elements between memory and a register array. N is 1 or the 16-byte
// vector width of T; `p` must be 16-byte aligned when N > 1.
template <typename T, int N> struct VecIO {
    __device__ __forceinline__ static void load(const T* p, T* r) {
#pragma unroll
        for (int i = 0; i < N; ++i) r[i] = p[i];
    }
    __device__ __forceinline__ static void store(T* p, const T* r) {
#pragma unroll
        for (int i = 0; i < N; ++i) p[i] = r[i];
    }
};
template <> struct VecIO<float, 4> {
    __device__ __forceinline__ static void load(const float* p, float* r) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        r[0] = v.x; r[1] = v.y; r[2] = v.z; r[3] = v.w;
    }
    __device__ __forceinline__ static void store(float* p, const float* r) {
        *reinterpret_cast<float4*>(p) = make_float4(r[0], r[1], r[2], r[3]);
    }
};
template <> struct VecIO<double, 2> {
    __device__ __forceinline__ static void load(const double* p, double* r) {
        const double2 v = *reinterpret_cast<const double2*>(p);
        r[0] = v.x; r[1] = v.y;
    }
    __device__ __forceinline__ static void store(double* p, const double* r) {
        *reinterpret_cast<double2*>(p) = make_double2(r[0], r[1]);
    }
};

// Four consecutive elements from 16-byte-aligned shared memory (one or two vector loads).
template <typename T> __device__ __forceinline__ void load4(const T* p, T* r) {
    constexpr int V = Vec16<T>::N;
#pragma unroll
    for (int i = 0; i < 4; i += V) VecIO<T, V>::load(p + i, r + i);
}

// --------------------------------------------------------------------------- TF32 tensor cores
// d += a (16x8, row) * b (8x8, col) for one warp. The tensor core reads the top 19 bits of
// each float32 operand (sign, exponent, 10 mantissa bits): the low 13 bits are dropped, a
// truncation toward zero (relative error < 2^-10 per operand, twice that of rounding to
// nearest with cvt.rna, which would cost an instruction per element).
// Fragment ownership (g = lane / 4, t = lane % 4):
// a = {A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]}, b = {B[t][g], B[t+4][g]},
// d = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}.
__device__ __forceinline__ void mma_tf32_16x8x8(float* d, const float* a, const float* b) {
#ifdef PYDL_HOST_EMULATION
    pydl_emu_mma_tf32_16x8x8(d, a, b);
#else
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])),
          "r"(__float_as_uint(a[3])), "r"(__float_as_uint(b[0])), "r"(__float_as_uint(b[1])));
#endif
}

// --------------------------------------------------------------------------- sm_80 staging
// cp.async exists from sm_80 on (the host emulation models it); kernels that can do without
// it fall back to register staging elsewhere.
#if defined(PYDL_HOST_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800)
#define PYDL_CP_ASYNC true
#else
#define PYDL_CP_ASYNC false
#endif

// A shared-memory address for cp.async / ldmatrix: on the GPU the 32-bit address in the
// .shared window (computed once, then advanced with integer adds, no generic-to-shared
// conversion per access); in the host emulation a plain byte pointer. Offsets are in bytes.
#ifdef PYDL_HOST_EMULATION
typedef char* sptr;
#else
typedef u32 sptr;
#endif
__device__ __forceinline__ sptr smem_addr(const void* p) {
#ifdef PYDL_HOST_EMULATION
    return (char*)p;
#else
    u32 r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
#endif
}

// cp.async of BYTES (4 or 16) from global src to shared dst (smem_addr), bypassing
// registers. When ok is false the source is ignored completely (the ignore-src predicate:
// nothing is read, dst is zero-filled), so src may then point anywhere, past the matrix
// included: callers need no select to a valid address. 16-byte copies go through L2 only
// (.cg), 4-byte ones through L1 (.ca, the only caching 4-byte copies allow). The copies
// become visible after cp_async_wait_all() and a barrier. "memory" clobbers: the compiler
// must not move shared reads across them.
template <int BYTES>
__device__ __forceinline__ void cp_async(sptr dst, const void* src, bool ok) {
    static_assert(BYTES == 4 || BYTES == 16, "cp.async copies 4 or 16 bytes here");
#ifdef PYDL_HOST_EMULATION
    pydl_emu_cp_async(dst, ok ? src : nullptr, BYTES);
#else
    if (BYTES == 16)
        asm volatile("{ .reg .pred skip; setp.eq.u32 skip, %2, 0;\n"
                     "cp.async.cg.shared.global [%0], [%1], 16, skip; }\n"
                     :: "r"(dst), "l"(src), "r"((u32)ok) : "memory");
    else
        asm volatile("{ .reg .pred skip; setp.eq.u32 skip, %2, 0;\n"
                     "cp.async.ca.shared.global [%0], [%1], 4, skip; }\n"
                     :: "r"(dst), "l"(src), "r"((u32)ok) : "memory");
#endif
}

// Close the thread's current group of cp.async copies / wait until all its groups landed.
__device__ __forceinline__ void cp_async_commit() {
#ifndef PYDL_HOST_EMULATION
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cp_async_wait_all() {
#ifndef PYDL_HOST_EMULATION
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// ldmatrix.x4 of 32-bit elements: four 8 x 4 float matrices in shared memory, each row 16
// contiguous bytes (16-byte aligned). Lane l gives the address of row l % 8 of matrix l / 8
// and receives element [lane / 4][lane % 4] of each matrix in r[0..3]: for a row-major
// 16 x 8 tile split into (rows 0-7, k 0-3), (rows 8-15, k 0-3), (rows 0-7, k 4-7),
// (rows 8-15, k 4-7), that is exactly the mma.m16n8k8.tf32 A fragment.
__device__ __forceinline__ void ldmatrix_x4(float (&r)[4], sptr row) {
#ifdef PYDL_HOST_EMULATION
    pydl_emu_ldmatrix_x4(r, reinterpret_cast<const float*>(row));
#else
    u32 a, b, c, d;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(a), "=r"(b), "=r"(c), "=r"(d) : "r"(row) : "memory");
    r[0] = __uint_as_float(a);
    r[1] = __uint_as_float(b);
    r[2] = __uint_as_float(c);
    r[3] = __uint_as_float(d);
#endif
}

}  // namespace pydl
