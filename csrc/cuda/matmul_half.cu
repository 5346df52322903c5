// matmul_half.cu - C = op(A) @ op(B) for float16 and bfloat16 operands on tensor cores
// (mma.sync.m16n8k16, sm_80+), float32 accumulation, for the protocol entry `matmul`.
//
// What: as matmul.cu: op(A) is M x K, op(B) is K x N, C is M x N, all row-major; TA means A
// is stored K x M, TB means B is stored N x K; element (r, c) of a stored operand is at
// base + r * ld + c. Elements are 16-bit (T = f16 or bf16, the storage format, see below);
// products accumulate in float32 and C is rounded once (round to nearest even).
//
// Launch: grid.x = ceil(M / 64) * ceil(N / 64) tiles, tile x = (x / tiles_n, x % tiles_n);
// grid.z = batch (A + z * sA, B + z * sB, C + z * sC); block = 128 threads (4 warps);
// static shared memory only; no workspace, no split-K.
//
// Indexing: the block's 64 x 64 C tile is 2 x 2 warp tiles of 32 x 32, each 2 (M) x 4 (N)
// m16n8 fragments. Per K step of 32 the block stages op(A)[m0 : m0 + 64, k0 : k0 + 32] as
// As[m][k] and op(B)[k0 : k0 + 32, n0 : n0 + 64] as Bs[n][k] (k innermost in both, so every
// fragment register is one 32-bit load of two consecutive k), zero outside M, N and K.
// Global reads run along the stored rows (coalesced for either transpose). Row pitch 40
// halves (20 words): the 8 rows x 4 words a warp reads per fragment hit 32 distinct banks.
#include "half.cuh"

namespace pydl {

__device__ __forceinline__ u32 load_pair(const u16* p) { return *reinterpret_cast<const u32*>(p); }

// dst[o][k] (row pitch LDS) = X's element (o0 + o, k0 + k) of an OUTER x BK tile, zero past
// o_lim or k_lim. X is stored k-contiguous (X[o * ld + k]) when K_CONTIGUOUS, else
// o-contiguous (X[k * ld + o]); threads walk the contiguous dimension, so reads coalesce, and
// each thread steps one pointer by a fixed stride.
template <int OUTER, int BK, int LDS, int NT, bool K_CONTIGUOUS>
__device__ __forceinline__ void stage_tile(const u16* __restrict__ X, i64 ld, int o0, int k0,
                                           int o_lim, int k_lim, u16* dst) {
    if (K_CONTIGUOUS) {
        constexpr int STEP = NT / BK;  // rows per pass
        const int k = threadIdx.x % BK, o = threadIdx.x / BK;
        const bool k_ok = k0 + k < k_lim;
        const u16* p = X + (i64)(o0 + o) * ld + k0 + k;
#pragma unroll 4
        for (int it = 0; it < OUTER / STEP; ++it) {
            const int oo = o + it * STEP;
            dst[oo * LDS + k] = (k_ok && o0 + oo < o_lim) ? p[(i64)it * STEP * ld] : (u16)0;
        }
    } else {
        constexpr int STEP = NT / OUTER;  // k per pass
        const int o = threadIdx.x % OUTER, k = threadIdx.x / OUTER;
        const bool o_ok = o0 + o < o_lim;
        const u16* p = X + (i64)(k0 + k) * ld + o0 + o;
#pragma unroll 4
        for (int it = 0; it < BK / STEP; ++it) {
            const int kk = k + it * STEP;
            dst[o * LDS + kk] = (o_ok && k0 + kk < k_lim) ? p[(i64)it * STEP * ld] : (u16)0;
        }
    }
}

template <class T, bool TA, bool TB>
__global__ void __launch_bounds__(128)
matmul_half_kernel(const u16* __restrict__ A, const u16* __restrict__ B, u16* __restrict__ C,
                   int M, int N, int K, i64 lda, i64 ldb, i64 sA, i64 sB, i64 sC) {
    constexpr int BM = 64, BN = 64, BK = 32, NT = 128, LDS = BK + 8;
    __shared__ __align__(16) u16 As[BM * LDS];
    __shared__ __align__(16) u16 Bs[BN * LDS];

    const int tiles_n = (N + BN - 1) / BN;
    const int m0 = (blockIdx.x / tiles_n) * BM, n0 = (blockIdx.x % tiles_n) * BN;
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    const int g = lane >> 2, t4 = lane & 3;

    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    for (int k0 = 0; k0 < K; k0 += BK) {
        stage_tile<BM, BK, LDS, NT, !TA>(A, lda, m0, k0, M, K, As);
        stage_tile<BN, BK, LDS, NT, TB>(B, ldb, n0, k0, N, K, Bs);
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < BK; ks += 16) {
            u32 a[2][4], b[4][2];
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const u16* row = As + (wm + i * 16 + g) * LDS + ks + 2 * t4;
                a[i][0] = load_pair(row);
                a[i][1] = load_pair(row + 8 * LDS);
                a[i][2] = load_pair(row + 8);
                a[i][3] = load_pair(row + 8 * LDS + 8);
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const u16* col = Bs + (wn + j * 8 + g) * LDS + ks + 2 * t4;
                b[j][0] = load_pair(col);
                b[j][1] = load_pair(col + 8);
            }
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) T::mma(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int r = m0 + wm + i * 16 + g + 8 * half;
            if (r >= M) continue;
            u16* crow = C + (i64)r * N;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int c = n0 + wn + j * 8 + 2 * t4;
                if (c < N) crow[c] = T::from_float(acc[i][j][2 * half]);
                if (c + 1 < N) crow[c + 1] = T::from_float(acc[i][j][2 * half + 1]);
            }
        }
    }
}

}  // namespace pydl
