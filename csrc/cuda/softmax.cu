// softmax.cu - row-wise softmax and log-softmax (forward, backward) and cross-entropy fused
// with log-softmax (forward, backward), along the last axis of a C-contiguous (rows, cols)
// array.
//
// Serves softmax_forward/backward, log_softmax_forward/backward, cross_entropy_forward/
// backward (see pydl/backend/base.py for the formulas).
//
// Launch: a group of THREADS threads handles one row. THREADS = 32 (one warp per row, four
// rows per 128-thread block, grid = ceil(rows / 4)) for narrow rows, THREADS = 512 (one
// block per row, grid = rows) for wide ones. Exception, the softmax/log-softmax kernels with
// THREADS = 32 and VPT = 1 (rows of at most 32 columns): groups of G lanes per row, G the
// power of two >= cols, 4 * 32 / G rows per block (see softmax_rows). Thread `lane` of the group handles columns
// lane, lane + THREADS, lane + 2 THREADS, ... (coalesced across the group).
// VPT > 0: the row (at most THREADS * VPT wide) is read once into registers, reduced and
//   written from registers: one read and one write of memory per element.
// VPT = 0 (rows wider than the register variants): pass 1 reads the row and keeps an
//   online (max, sum of exp(x - max)) pair, merged across lanes; pass 2 reads it again and
//   writes (the row is usually still in L2).
// Reductions: warp shuffles, then across warps through 32 shared slots (common.cuh).
//
// Cross-entropy forward makes one pass: the online (max, sum) pair for logsumexp and, with
// label smoothing, sum_c w_c and sum_c w_c (x_c - x_0) (shifted by the row's first logit to
// avoid cancellation). A target outside [0, C) that is not ignore_index gets loss 0 and
// atomicMin's its row into `bad_row` (initialised to rows by the caller, who raises).
//
// Storage: every kernel takes a last template argument S, the storage of its floating-point
// arrays: S = T (the default: float or double arrays), or S = f16 / bf16 (half.cuh) with
// T = float: float16 / bfloat16 arrays read and written as 16-bit words, all the math (max,
// exp, sums, logsumexp) in float32 registers, each output rounded once. Half the bytes of a
// float32 row move, which is what these memory-bound kernels cost. Cross-entropy's
// weight_sum is always T.
#include "half.cuh"

namespace pydl {

// Unroll factor of the column loops that call exp: float64 exp is a long polynomial, and
// unrolling it (plus the float64 division's out-of-line slow path elsewhere in the kernel)
// made ptxas spill 4-48 bytes; float keeps ptxas's usual 4.
#define PYDL_ROW_UNROLL(T) (sizeof(T) == 8 ? 1 : 4)

enum { SOFTMAX_FWD = 0, LOG_SOFTMAX_FWD = 1, SOFTMAX_BWD = 2, LOG_SOFTMAX_BWD = 3 };

// Row index of this thread's group (rows beyond the end return before any barrier: a whole
// warp for THREADS == 32, the whole block otherwise).
template <int THREADS> __device__ __forceinline__ i64 group_row() {
    constexpr int RPB = THREADS == 32 ? 4 : 1;
    return (i64)blockIdx.x * RPB + threadIdx.x / THREADS;
}

// Narrow rows (THREADS 32, VPT 1: at most 32 columns): a warp handles 32 / G rows with
// G = the power of two >= cols lanes each, instead of one row with most lanes idle. The
// caller launches ceil(rows / (4 * 32 / G)) blocks of 128 (narrow_rows_per_block).
__device__ __forceinline__ int narrow_group(int cols) {
    int g = 1;
    while (g < cols) g <<= 1;
    return g;
}

// Reduce v across aligned groups of g lanes (g a power of two <= 32) of a full warp.
template <class Op, typename T> __device__ __forceinline__ T subwarp_reduce(T v, int g) {
    for (int o = g >> 1; o > 0; o >>= 1) v = Op::apply(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// OP forward: a = x. OP backward: a = gy, b = y.
template <typename T, typename S, int OP, int THREADS, int VPT>
__device__ __forceinline__ void softmax_rows(const typename Mem<T, S>::type* __restrict__ a,
                                             const typename Mem<T, S>::type* __restrict__ b,
                                             typename Mem<T, S>::type* __restrict__ out, i64 rows,
                                             int cols) {
    typedef Mem<T, S> M;
    constexpr bool FWD = OP == SOFTMAX_FWD || OP == LOG_SOFTMAX_FWD;
    constexpr bool NARROW = THREADS == 32 && VPT == 1;
    __shared__ T red[2][32];
    int lane = threadIdx.x % THREADS, ncols = cols;
    i64 row;
    int g = THREADS;
    if (NARROW) {
        // every lane of the warp stays for the shuffles: lanes of rows past the end read
        // and write nothing (ncols = 0)
        g = narrow_group(cols);
        lane = threadIdx.x % g;
        row = ((i64)blockIdx.x * 4 + threadIdx.x / 32) * (32 / g) + (threadIdx.x % 32) / g;
        if (row >= rows) {
            ncols = 0;
            row = 0;
        }
    } else {
        row = group_row<THREADS>();
        if (row >= rows) return;
    }
    a += row * cols;
    out += row * cols;
    if (!FWD) b += row * cols;

    if (VPT > 0) {
        T va[VPT > 0 ? VPT : 1], vb[VPT > 0 ? VPT : 1];
#pragma unroll
        for (int i = 0; i < VPT; ++i) {
            const int c = i * THREADS + lane;
            va[i] = c < ncols ? M::get(a, c) : (FWD ? neg_inf<T>() : T(0));
            if (!FWD) vb[i] = c < ncols ? M::get(b, c) : T(0);
        }
        if (FWD) {
            T m = neg_inf<T>();
#pragma unroll
            for (int i = 0; i < VPT; ++i) m = d_max(m, va[i]);
            m = NARROW ? subwarp_reduce<MaxOp>(m, g) : group_reduce<MaxOp, THREADS>(m, red[0]);
            // Columns past the end hold -inf, so exp gives 0 there without a test (or NaN
            // when m is -inf, and then every real column is NaN too, as in the reference);
            // fewer predicates to keep live across the reduction.
            T s = T(0);
#pragma unroll
            for (int i = 0; i < VPT; ++i) {
                vb[i] = d_exp(va[i] - m);
                s += vb[i];
            }
            s = NARROW ? subwarp_reduce<SumOp>(s, g) : group_reduce<SumOp, THREADS>(s, red[1]);
            const T ls = d_log(s);
#pragma unroll
            for (int i = 0; i < VPT; ++i) {
                const int c = i * THREADS + lane;
                if (c < ncols) M::put(out, c, OP == SOFTMAX_FWD ? vb[i] / s : (va[i] - m) - ls);
            }
        } else {
            T s = T(0);
#pragma unroll
            for (int i = 0; i < VPT; ++i) s += OP == SOFTMAX_BWD ? va[i] * vb[i] : va[i];
            s = NARROW ? subwarp_reduce<SumOp>(s, g) : group_reduce<SumOp, THREADS>(s, red[0]);
#pragma unroll
            for (int i = 0; i < VPT; ++i) {
                const int c = i * THREADS + lane;
                if (c < ncols)
                    M::put(out, c, OP == SOFTMAX_BWD ? vb[i] * (va[i] - s) : va[i] - d_exp(vb[i]) * s);
            }
        }
    } else if (FWD) {
        T m = neg_inf<T>(), s = T(0);
#pragma unroll(PYDL_ROW_UNROLL(T))
        for (int c = lane; c < cols; c += THREADS) ms_add(m, s, M::get(a, c));
        group_reduce_ms<THREADS>(m, s, red[0], red[1]);
        const T ls = d_log(s);
#pragma unroll(PYDL_ROW_UNROLL(T))
        for (int c = lane; c < cols; c += THREADS) {
            const T x = M::get(a, c);
            M::put(out, c, OP == SOFTMAX_FWD ? d_exp(x - m) / s : (x - m) - ls);
        }
    } else {
        T s = T(0);
        for (int c = lane; c < cols; c += THREADS)
            s += OP == SOFTMAX_BWD ? M::get(a, c) * M::get(b, c) : M::get(a, c);
        s = group_reduce<SumOp, THREADS>(s, red[0]);
#pragma unroll(PYDL_ROW_UNROLL(T))
        for (int c = lane; c < cols; c += THREADS) {
            const T g = M::get(a, c), y = M::get(b, c);
            M::put(out, c, OP == SOFTMAX_BWD ? y * (g - s) : g - d_exp(y) * s);
        }
    }
}

#define PYDL_ROW_BLOCK(THREADS) __launch_bounds__((THREADS) == 32 ? 128 : (THREADS))

template <typename T, int THREADS, int VPT, typename S = T>
__global__ void PYDL_ROW_BLOCK(THREADS)
softmax_forward_kernel(const typename Mem<T, S>::type* __restrict__ x,
                       typename Mem<T, S>::type* __restrict__ y, i64 rows, int cols) {
    softmax_rows<T, S, SOFTMAX_FWD, THREADS, VPT>(x, nullptr, y, rows, cols);
}

template <typename T, int THREADS, int VPT, typename S = T>
__global__ void PYDL_ROW_BLOCK(THREADS)
log_softmax_forward_kernel(const typename Mem<T, S>::type* __restrict__ x,
                           typename Mem<T, S>::type* __restrict__ y, i64 rows, int cols) {
    softmax_rows<T, S, LOG_SOFTMAX_FWD, THREADS, VPT>(x, nullptr, y, rows, cols);
}

template <typename T, int THREADS, int VPT, typename S = T>
__global__ void PYDL_ROW_BLOCK(THREADS)
softmax_backward_kernel(const typename Mem<T, S>::type* __restrict__ gy,
                        const typename Mem<T, S>::type* __restrict__ y,
                        typename Mem<T, S>::type* __restrict__ gx, i64 rows, int cols) {
    softmax_rows<T, S, SOFTMAX_BWD, THREADS, VPT>(gy, y, gx, rows, cols);
}

template <typename T, int THREADS, int VPT, typename S = T>
__global__ void PYDL_ROW_BLOCK(THREADS)
log_softmax_backward_kernel(const typename Mem<T, S>::type* __restrict__ gy,
                            const typename Mem<T, S>::type* __restrict__ y,
                            typename Mem<T, S>::type* __restrict__ gx, i64 rows, int cols) {
    softmax_rows<T, S, LOG_SOFTMAX_BWD, THREADS, VPT>(gy, y, gx, rows, cols);
}

// loss[i] = (1 - eps) w[t] (lse - x[t]) + (eps / C) sum_c w[c] (lse - x[c]); lse[i] saved.
// weight may be null (all ones). eps is the label smoothing.
template <typename T, int THREADS, typename S = T>
__global__ void PYDL_ROW_BLOCK(THREADS)
cross_entropy_forward_kernel(const typename Mem<T, S>::type* __restrict__ logits,
                             const i64* __restrict__ target,
                             const typename Mem<T, S>::type* __restrict__ weight,
                             typename Mem<T, S>::type* __restrict__ loss,
                             typename Mem<T, S>::type* __restrict__ lse_out,
                             unsigned long long* __restrict__ bad_row, i64 rows, int C,
                             i64 ignore_index, T eps) {
    typedef Mem<T, S> M;
    __shared__ T red[2][32];
    const int lane = threadIdx.x % THREADS;
    const i64 row = group_row<THREADS>();
    if (row >= rows) return;
    const typename M::type* x = logits + row * C;
    const bool smooth = eps != T(0);
    const T x0 = C > 0 ? M::get(x, 0) : T(0);
    T m = neg_inf<T>(), s = T(0), sw = T(0), swx = T(0);
#pragma unroll(PYDL_ROW_UNROLL(T))
    for (int c = lane; c < C; c += THREADS) {
        const T v = M::get(x, c);
        ms_add(m, s, v);
        if (smooth) {
            const T w = weight ? M::get(weight, c) : T(1);
            sw += w;
            swx += w * (v - x0);
        }
    }
    group_reduce_ms<THREADS>(m, s, red[0], red[1]);
    if (smooth) {
        sw = group_reduce<SumOp, THREADS>(sw, red[0]);
        swx = group_reduce<SumOp, THREADS>(swx, red[1]);
    }
    if (lane != 0) return;
    const T lse = m + d_log(s);
    M::put(lse_out, row, lse);
    const i64 t = target[row];
    T l = T(0);
    if (t != ignore_index) {
        if (t < 0 || t >= C) {
            atomicMin(bad_row, (unsigned long long)row);
        } else {
            const T wt = weight ? M::get(weight, t) : T(1);
            l = (T(1) - eps) * wt * (lse - M::get(x, t));
            if (smooth) l += (eps / T(C)) * (sw * (lse - x0) - swx);
        }
    }
    M::put(loss, row, l);
}

// glogits[i, c] = g_i (softmax_ic S_i - (1 - eps) w[t_i] [c == t_i] - (eps / C) w[c]),
// S_i = (1 - eps) w[t_i] + (eps / C) sum_c w[c]; rows with an ignored (or bad) target get 0.
// weight_sum points at sum_c w[c] on the device (null when weight is null: the sum is C).
template <typename T, int THREADS, typename S = T>
__global__ void PYDL_ROW_BLOCK(THREADS)
cross_entropy_backward_kernel(const typename Mem<T, S>::type* __restrict__ grad_loss,
                              const typename Mem<T, S>::type* __restrict__ logits,
                              const typename Mem<T, S>::type* __restrict__ lse,
                              const i64* __restrict__ target,
                              const typename Mem<T, S>::type* __restrict__ weight,
                              const T* __restrict__ weight_sum,
                              typename Mem<T, S>::type* __restrict__ glogits, i64 rows, int C,
                              i64 ignore_index, T eps) {
    typedef Mem<T, S> M;
    const int lane = threadIdx.x % THREADS;
    const i64 row = group_row<THREADS>();
    if (row >= rows) return;
    const typename M::type* x = logits + row * C;
    typename M::type* out = glogits + row * C;
    const i64 t = target[row];
    if (t == ignore_index || t < 0 || t >= C) {
        for (int c = lane; c < C; c += THREADS) M::put(out, c, T(0));
        return;
    }
    const T g = M::get(grad_loss, row), L = M::get(lse, row);
    const T wt = weight ? M::get(weight, t) : T(1);
    const T sw = weight ? *weight_sum : T(C);
    const T e = eps / T(C);
    const T Si = (T(1) - eps) * wt + e * sw;
    const T hit = (T(1) - eps) * wt;
#pragma unroll(PYDL_ROW_UNROLL(T))
    for (int c = lane; c < C; c += THREADS) {
        T v = d_exp(M::get(x, c) - L) * Si - e * (weight ? M::get(weight, c) : T(1));
        if (c == t) v -= hit;
        M::put(out, c, v * g);
    }
}

}  // namespace pydl
