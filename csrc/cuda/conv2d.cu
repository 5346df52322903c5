// conv2d.cu - 2-D convolution (cross-correlation, NCHW) as implicit GEMM: the im2col matrix
// is never stored; each block gathers the tile of it that it needs straight from the input.
// Serves conv2d_forward, conv2d_backward_data and conv2d_backward_weight; stride, padding,
// dilation and groups. Block tiles, shared-memory layout and the FMA core are those of
// gemm_tile.cuh (128x128x8 with 8x8 per thread, or 64x64x16 with 4x4, 256 threads).
//
// Forward, per group g (x: N,C,H,W; w: O,Cg,kH,kW; y: N,O,Ho,Wo; Og = O / groups):
//   y[n, g*Og + m, p] = sum_k W_g[m, k] * X[k, (n, p)],  m < Og, p = oh*Wo + ow,
//   k = (c, kh, kw) < Cg*kH*kW,  X[k, (n, p)] = x[n, g*Cg + c, oh*sh - ph + kh*dh,
//   ow*sw - pw + kw*dw] (zero outside the image). A = w viewed as (O, K), row-major.
// Backward data, per group (gx: N,C,H,W; gy: N,O,Ho,Wo):
//   gx[n, g*Cg + c, q] = sum_k Wt_g[c, k] * G[k, (n, q)],  q = ih*W + iw, k = (o, kh, kw),
//   G[k, (n, q)] = gy[n, g*Og + o, oh, ow] where oh*sh = ih + ph - kh*dh (and likewise ow),
//   zero when that has no integer solution inside the output. Wt = w transposed per group
//   to (groups, Cg, Og*kH*kW) by the caller (a small copy).
// Both share conv2d_gemm: columns of the GEMM are output pixels (n, p) of the tensor being
// produced, so a thread's gathered column and its output column decompose once. The k side
// comes from a table ktab[k] = {channel offset * plane size, kh*dh, kw*dw, 0} (int4) that
// the caller builds once per shape, which keeps integer division out of the inner loop.
//
// Backward weight, per group: gw[g*Og + m, j] = sum_k Gy[m, k] * X[j, k] with j = (c, kh, kw)
//   and k = (n, oh, ow) running over N*Ho*Wo: both operands are contiguous along k. Each
//   thread loads a fixed k slot (tid % BK) and carries (n, oh, ow) for it incrementally.
//
// Launch: grid.x = tiles (swizzled), grid.z = groups * splits, block 256. blockIdx.z =
// g * splits + s; split s covers k in [s*k_chunk, min(K, (s+1)*k_chunk)) and writes the
// s-th slice of the output-sized workspace (the caller sums slices when splits > 1).
// Every output element inside the GEMM is written, so outputs need no initialisation.
// Indices inside one sample's channel block are int (the caller checks they fit).
#include "gemm_tile.cuh"

namespace pydl {

template <typename T, int BM, int BN, int BK, int TM, int TN, bool VEC_A, bool BACKWARD_DATA>
__device__ __forceinline__ void conv2d_gemm(const T* __restrict__ src, const T* __restrict__ A,
                                            T* __restrict__ out, const int4* __restrict__ ktab,
                                            int batch, int src_C, int src_H, int src_W,
                                            int src_cg, int out_C, int out_H, int out_W, int M,
                                            int K, int sh, int sw, int ph, int pw, int splits,
                                            int k_chunk) {
    constexpr int NT = (BM / TM) * (BN / TN);
    constexpr int PAD = Vec16<T>::N;
    constexpr int LDA = BM + PAD, LDB = BN + PAD;
    constexpr int BSTEP = NT / BN, BPER = BK * BN / NT;
    static_assert(NT % BN == 0 && (BK * BN) % NT == 0, "B gather mapping");
    __shared__ __align__(16) T As[2][BK * LDA];
    __shared__ __align__(16) T Bs[2][BK * LDB];

    const int P = out_H * out_W;
    const int ncols = batch * P;
    const BlockTile tile = block_tile<BM, BN>(M, ncols, K, splits, k_chunk);
    const int m0 = tile.m0, n0 = tile.n0, group = tile.z, split = tile.split;
    const int k_begin = tile.k_begin, k_end = tile.k_end;
    out += (i64)split * batch * out_C * P;

    // The column this thread gathers for B: output pixel (n, oh, ow).
    const int bcol = threadIdx.x % BN, brow = threadIdx.x / BN;
    const int col = n0 + bcol;
    const bool cvalid = col < ncols;
    const int n = cvalid ? col / P : 0;
    const int p = cvalid ? col - n * P : 0;
    const int oh = p / out_W, ow = p - oh * out_W;
    const T* sbase = src + ((i64)n * src_C + (i64)group * src_cg) * src_H * src_W;
    // forward: top-left input pixel of the window; backward data: padded pixel position
    const int h0 = BACKWARD_DATA ? oh + ph : oh * sh - ph;
    const int w0 = BACKWARD_DATA ? ow + pw : ow * sw - pw;

    TileLoader<T, BM, BK, NT, VEC_A, false> la;
    la.begin((i64)group * M * K, K, m0, k_begin, M, k_end);
    T breg[BPER];
    auto load = [&](int k0) {  // called for k_begin, k_begin + BK, ... in order
        la.load(A, k_end - k0);
        la.template next<BK>();
#pragma unroll
        for (int j = 0; j < BPER; ++j) {
            const int k = k0 + brow + j * BSTEP;
            T v = T(0);
            if (cvalid && k < k_end) {
                const int4 t = ktab[k];
                if (!BACKWARD_DATA) {
                    const int ih = h0 + t.y, iw = w0 + t.z;
                    if ((unsigned)ih < (unsigned)src_H && (unsigned)iw < (unsigned)src_W)
                        v = sbase[t.x + ih * src_W + iw];
                } else {
                    int th = h0 - t.y, tw = w0 - t.z;
                    bool ok = th >= 0 && tw >= 0;
                    if (ok && (sh | sw) != 1) {
                        ok = th % sh == 0 && tw % sw == 0;
                        th /= sh;
                        tw /= sw;
                    }
                    if (ok && th < src_H && tw < src_W) v = sbase[t.x + th * src_W + tw];
                }
            }
            breg[j] = v;
        }
    };
    auto store = [&](int buf) {
        la.template store<true, NoCvt>(As[buf], LDA);
#pragma unroll
        for (int j = 0; j < BPER; ++j) Bs[buf][(brow + j * BSTEP) * LDB + bcol] = breg[j];
    };

    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    T acc[TM][TN];
    zero_tile(acc);

    gemm_pipeline<BK>(k_begin, k_end, load, store, [&](int cur) {
        fma_tile<T, BM, BN, BK, TM, TN, LDA, LDB>(As[cur], Bs[cur], acc, tx, ty);
    });

    // Epilogue: out[n, group*M + m, p] for the thread's TN columns (n, p).
    i64 cbase[TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
        const int c = n0 + micro_index<BN, TN>(j, tx);
        const int cn = c / P;
        cbase[j] = c < ncols ? (i64)cn * out_C * P + (c - cn * P) : -1;
    }
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + micro_index<BM, TM>(i, ty);
        if (m >= M) continue;
        const i64 roff = (i64)(group * M + m) * P;
#pragma unroll
        for (int j = 0; j < TN; ++j)
            if (cbase[j] >= 0) out[cbase[j] + roff] = acc[i][j];
    }
}

template <typename T, int BM, int BN, int BK, int TM, int TN, bool VEC_A>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), PYDL_GEMM_MIN_BLOCKS(T, TM, TN))
conv2d_forward_kernel(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y,
                      const int4* __restrict__ ktab, int batch, int C, int H, int W, int Cg,
                      int O, int Ho, int Wo, int Og, int K, int sh, int sw, int ph, int pw,
                      int splits, int k_chunk) {
    conv2d_gemm<T, BM, BN, BK, TM, TN, VEC_A, false>(x, w, y, ktab, batch, C, H, W, Cg, O, Ho,
                                                     Wo, Og, K, sh, sw, ph, pw, splits, k_chunk);
}

template <typename T, int BM, int BN, int BK, int TM, int TN, bool VEC_A>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), PYDL_GEMM_MIN_BLOCKS(T, TM, TN))
conv2d_backward_data_kernel(const T* __restrict__ gy, const T* __restrict__ wt, T* __restrict__ gx,
                            const int4* __restrict__ ktab, int batch, int O, int Ho, int Wo,
                            int Og, int C, int H, int W, int Cg, int K, int sh, int sw, int ph,
                            int pw, int splits, int k_chunk) {
    conv2d_gemm<T, BM, BN, BK, TM, TN, VEC_A, true>(gy, wt, gx, ktab, batch, O, Ho, Wo, Og, C, H,
                                                    W, Cg, K, sh, sw, ph, pw, splits, k_chunk);
}

// gw (or its split-K workspace, (splits, O, Cg*kH*kW)) = per group Gy (Og x K) * X^T.
template <typename T, int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), PYDL_GEMM_MIN_BLOCKS(T, TM, TN))
conv2d_backward_weight_kernel(const T* __restrict__ gy, const T* __restrict__ x,
                              T* __restrict__ gw, int batch, int C, int H, int W, int O, int Ho,
                              int Wo, int Og, int Cg, int kH, int kW, int sh, int sw, int ph,
                              int pw, int dh, int dw, int splits, int k_chunk) {
    constexpr int NT = (BM / TM) * (BN / TN);
    constexpr int PAD = Vec16<T>::N;
    constexpr int LDA = BM + PAD, LDB = BN + PAD;
    constexpr int RSTEP = NT / BK, APER = BM * BK / NT, BPER = BN * BK / NT;
    static_assert(NT % BK == 0 && (BM * BK) % NT == 0 && (BN * BK) % NT == 0, "k-slot mapping");
    __shared__ __align__(16) T As[2][BK * LDA];
    __shared__ __align__(16) T Bs[2][BK * LDB];

    const int M = Og, N = Cg * kH * kW, KK = kH * kW;
    const int HoWo = Ho * Wo, HW = H * W;
    const int K = batch * HoWo;
    const BlockTile tile = block_tile<BM, BN>(M, N, K, splits, k_chunk);
    const int m0 = tile.m0, n0 = tile.n0, group = tile.z, split = tile.split;
    const int k_begin = tile.k_begin, k_end = tile.k_end;
    gw += (i64)split * O * N;

    // Rows this thread loads: output channels (A) and (c, kh, kw) triples (B).
    const int kslot = threadIdx.x % BK, row0 = threadIdx.x / BK;
    // Rows past M or N only feed outputs that are never written, so they are clamped to the
    // last real row (valid memory) instead of masked; offsets are int inside one sample (the
    // caller checks O*Ho*Wo and C*H*W fit): fewer live registers under the 128 cap.
    int aoff[APER];
#pragma unroll
    for (int j = 0; j < APER; ++j) {
        const int o = imin(m0 + row0 + j * RSTEP, M - 1);
        aoff[j] = (group * Og + o) * HoWo;
    }
    int boff[BPER], bkh[BPER], bkw[BPER];
#pragma unroll
    for (int j = 0; j < BPER; ++j) {
        const int q = imin(n0 + row0 + j * RSTEP, N - 1);
        const int c = q / KK, r = q - c * KK, kh = r / kW;
        boff[j] = (group * Cg + c) * HW;
        bkh[j] = kh * dh;
        bkw[j] = (r - kh * kW) * dw;
    }
    // The k this thread loads, as (n, oh, ow); advanced by BK per step.
    int kcur = k_begin + kslot;
    int n = kcur / HoWo;
    int oh = (kcur - n * HoWo) / Wo;
    int ow = kcur - n * HoWo - oh * Wo;

    // On sm_80+ the float 128x128 tile copies each element with a 4-byte cp.async straight
    // into its (transposed) place in the step's shared buffer, zero-filled where k or the
    // image is out of range: no registers hold the next tile across the FMA block (with
    // them it spilled 32-40 B at the 128-register cap).
    constexpr bool ASYNC = PYDL_CP_ASYNC && sizeof(T) == 4 && TM * TN >= 64;
    T areg[APER], breg[BPER];
    auto load = [&](int buf) {
        const bool kv = kcur < k_end;
        const T* gyn = gy + (i64)n * O * HoWo + oh * Wo + ow;
        const T* xn = x + (i64)n * C * HW;
        const int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
        if constexpr (ASYNC) {
            const sptr as = smem_addr(As[buf]) + (kslot * LDA + row0) * (int)sizeof(T);
            const sptr bs = smem_addr(Bs[buf]) + (kslot * LDB + row0) * (int)sizeof(T);
            // a skipped copy reads nothing; its pointer is the base (valid memory): selected
            // once per step and by 32-bit offset per element, to keep 64-bit selects out
            const T* ga = kv ? gyn : gy;
            const T* xb = kv ? xn : x;
#pragma unroll
            for (int j = 0; j < APER; ++j)
                cp_async<sizeof(T)>(as + j * RSTEP * (int)sizeof(T), ga + (kv ? aoff[j] : 0), kv);
#pragma unroll
            for (int j = 0; j < BPER; ++j) {
                const int ih = ih0 + bkh[j], iw = iw0 + bkw[j];
                const bool ok = kv && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W;
                cp_async<sizeof(T)>(bs + j * RSTEP * (int)sizeof(T),
                                    xb + (ok ? boff[j] + ih * W + iw : 0), ok);
            }
        } else {
#pragma unroll
            for (int j = 0; j < APER; ++j) areg[j] = kv ? gyn[aoff[j]] : T(0);
#pragma unroll
            for (int j = 0; j < BPER; ++j) {
                const int ih = ih0 + bkh[j], iw = iw0 + bkw[j];
                breg[j] = (kv && (unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
                              ? xn[boff[j] + ih * W + iw]
                              : T(0);
            }
        }
    };
    auto advance = [&]() {
        kcur += BK;
        ow += BK;
        while (ow >= Wo) {
            ow -= Wo;
            ++oh;
        }
        while (oh >= Ho) {
            oh -= Ho;
            ++n;
        }
    };
    auto store = [&](int buf) {
        if constexpr (ASYNC) {
            cp_async_wait_all();  // this step's copies, before the pipeline's barrier
        } else {
#pragma unroll
            for (int j = 0; j < APER; ++j) As[buf][kslot * LDA + row0 + j * RSTEP] = areg[j];
#pragma unroll
            for (int j = 0; j < BPER; ++j) Bs[buf][kslot * LDB + row0 + j * RSTEP] = breg[j];
        }
    };

    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    T acc[TM][TN];
    zero_tile(acc);

    // the loads carry their k position themselves: every step after the first advances it
    auto load_step = [&](int k0) {
        if (k0 != k_begin) advance();
        load(((k0 - k_begin) / BK) & 1);  // the buffer this step lands in (cp.async)
    };
    gemm_pipeline<BK>(k_begin, k_end, load_step, store, [&](int cur) {
        fma_tile<T, BM, BN, BK, TM, TN, LDA, LDB>(As[cur], Bs[cur], acc, tx, ty);
    });

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + micro_index<BM, TM>(i, ty);
        if (m >= M) continue;
        T* row = gw + (i64)(group * Og + m) * N;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int c = n0 + micro_index<BN, TN>(j, tx);
            if (c < N) row[c] = acc[i][j];
        }
    }
}

}  // namespace pydl
