// matmul.cu - C = op(A) @ op(B), batched, for the protocol entry `matmul`.
//
// What: op(A) is M x K, op(B) is K x N, C is M x N, all row-major. TA means A is stored
// K x M (op(A) = A^T), TB means B is stored N x K. Element (r, c) of a stored operand is
// at base + r * ld + c (ld >= its row length), so row-major views need no copy.
//
// Launch (both kernels): grid.x = ceil(M / BM) * ceil(N / BN) tiles (swizzled, see
// gemm_tile.cuh), grid.z = batch * splits, block = NT threads, static shared memory only.
// blockIdx.z = b * splits + s: batch b reads A + b * sA and B + b * sB; split s covers
// k in [s * k_chunk, min(K, (s + 1) * k_chunk)) and writes C + blockIdx.z * sC. With
// splits > 1, C is a (batch, splits, M, N) workspace that the caller sums over splits
// (split-K, for problems with too few output tiles to fill the GPU). k_chunk is a multiple
// of BK. Every element of the block's C tile that lies inside M x N is written (zeros when
// the k range is empty), so C needs no initialisation.
//
// matmul_kernel<T, BM, BN, BK, TM, TN, TA, TB, VEC>: CUDA-core FMA, T = float or double.
//   float: 128x128x8 with 8x8 outputs per thread (256 threads) for large problems,
//   64x64x16 with 4x4 per thread (256 threads) otherwise; double: 64x64x16, 4x4. The
//   caller picks (pydl/backend/cuda/gemm.py `pick_config`).
//   VEC: 16-byte global loads and stores (float4 / double2); requires lda, ldb, sA, sB,
//   the contiguous extent of each operand and N to be multiples of the vector width and
//   the A, B pointers to be 16-byte aligned (checked by the caller), else VEC = false.
// matmul_tf32_kernel<TA, TB, VEC>: opt-in TF32 tensor cores (mma.sync.m16n8k8, sm_80+).
//   Block 128x128x16, 8 warps in a 2 (M) x 4 (N) grid, each warp a 64x32 tile made of
//   4 x 4 m16n8 fragments; operands staged by cp.async (double-buffered) in their stored
//   layout, fragments read with ldmatrix / LDS (layouts below), inputs truncated to TF32 by
//   the tensor cores (no explicit rounding), accumulation in float32.
#include "gemm_tile.cuh"

namespace pydl {

// The block's tile of C and its two operand tiles per BK step: op(A)[m0 : m0 + BM, k : k + BK]
// (stored as rows of k when TA, else rows of m) and op(B)[k : k + BK, n0 : n0 + BN], loaded
// into registers and stored into shared memory k-major (As[k][m], Bs[k][n]) through CVT
// (matmul_kernel), or copied as stored by cp.async (copy_async, matmul_tf32_kernel).
// Both matmul kernels use it; batch z of blockIdx.z reads A + z * sA and B + z * sB.
template <typename T, int BM, int BN, int BK, int NT, bool TA, bool TB, bool VEC>
struct MatmulTiles {
    TileLoader<T, TA ? BK : BM, TA ? BM : BK, NT, VEC, TA> la;
    TileLoader<T, TB ? BN : BK, TB ? BK : BN, NT, VEC, !TB> lb;
    BlockTile tile;
    const T* A;
    const T* B;

    __device__ __forceinline__ MatmulTiles(const T* A_, const T* B_, i64 lda, i64 ldb, int M,
                                           int N, int K, i64 sA, i64 sB, int splits, int k_chunk)
        : tile(block_tile<BM, BN>(M, N, K, splits, k_chunk)), A(A_), B(B_) {
        const int k0 = tile.k_begin, ke = tile.k_end;
        if (TA) la.begin(tile.z * sA, lda, k0, tile.m0, ke, M);
        else la.begin(tile.z * sA, lda, tile.m0, k0, M, ke);
        if (TB) lb.begin(tile.z * sB, ldb, tile.n0, k0, N, ke);
        else lb.begin(tile.z * sB, ldb, k0, tile.n0, ke, N);
    }

    // The step starting at k0; called for k_begin, k_begin + BK, ... in order.
    __device__ __forceinline__ void load(int k0) {
        const int left = tile.k_end - k0;
        la.load(A, left);
        lb.load(B, left);
        la.template next<BK>();
        lb.template next<BK>();
    }

    // load + store in one for sm_80+ (cp.async, see TileLoader): the tiles as they are stored
    // (A as [m][k] or, with TA, [k][m]; B as [k][n] or, with TB, [n][k]) at pitches LDA, LDB.
    template <int LDA, int LDB>
    __device__ __forceinline__ void copy_async(int k0, sptr as, sptr bs) {
        const int left = tile.k_end - k0;
        la.template copy_async<LDA>(A, left, as);
        lb.template copy_async<LDB>(B, left, bs);
        la.template next<BK>();
        lb.template next<BK>();
    }

    template <class CVT> __device__ __forceinline__ void store(T* as, int lds_a, T* bs, int lds_b) const {
        la.template store<!TA, CVT>(as, lds_a);
        lb.template store<TB, CVT>(bs, lds_b);
    }
};

template <typename T, int BM, int BN, int BK, int TM, int TN, bool TA, bool TB, bool VEC>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), PYDL_GEMM_MIN_BLOCKS(T, TM, TN))
matmul_kernel(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C, int M, int N,
              int K, i64 lda, i64 ldb, i64 sA, i64 sB, i64 sC, int splits, int k_chunk) {
    constexpr int NT = (BM / TM) * (BN / TN);
    constexpr int PAD = Vec16<T>::N;
    constexpr int LDA = BM + PAD, LDB = BN + PAD;
    __shared__ __align__(16) T As[2][BK * LDA];
    __shared__ __align__(16) T Bs[2][BK * LDB];

    MatmulTiles<T, BM, BN, BK, NT, TA, TB, VEC> ops(A, B, lda, ldb, M, N, K, sA, sB, splits,
                                                    k_chunk);
    const int m0 = ops.tile.m0, n0 = ops.tile.n0;
    C += blockIdx.z * sC;
    // On sm_80+ the float 128x128 tile copies an operand stored k-major (A with TA, B
    // without TB), which already has the shared layout, with cp.async straight into the idle
    // buffer (the buffer of step (k0 - k_begin) / BK): no registers hold its next tile
    // across the FMA block, which took this tile's last spills away. The other operands go
    // through registers and the transposing store as before. The 64x64 tile, which has
    // registers to spare, lost up to 2 points of FFMA share with cp.async; float64 has not
    // been tried.
    constexpr bool ASYNC = PYDL_CP_ASYNC && sizeof(T) == 4 && TM * TN >= 64;
    constexpr bool ASYNC_A = ASYNC && TA, ASYNC_B = ASYNC && !TB;
    auto load = [&](int k0) {
        const int left = ops.tile.k_end - k0, buf = ((k0 - ops.tile.k_begin) / BK) & 1;
        if constexpr (ASYNC_A) ops.la.template copy_async<LDA>(ops.A, left, smem_addr(As[buf]));
        else ops.la.load(ops.A, left);
        if constexpr (ASYNC_B) ops.lb.template copy_async<LDB>(ops.B, left, smem_addr(Bs[buf]));
        else ops.lb.load(ops.B, left);
        ops.la.template next<BK>();
        ops.lb.template next<BK>();
    };
    auto store = [&](int buf) {
        if constexpr (!ASYNC_A) ops.la.template store<!TA, NoCvt>(As[buf], LDA);
        if constexpr (!ASYNC_B) ops.lb.template store<TB, NoCvt>(Bs[buf], LDB);
        if constexpr (ASYNC_A || ASYNC_B) cp_async_wait_all();  // before the barrier
    };

    const int tx = threadIdx.x % (BN / TN), ty = threadIdx.x / (BN / TN);
    T acc[TM][TN];
    zero_tile(acc);

    gemm_pipeline<BK>(ops.tile.k_begin, ops.tile.k_end, load, store, [&](int cur) {
        fma_tile<T, BM, BN, BK, TM, TN, LDA, LDB>(As[cur], Bs[cur], acc, tx, ty);
    });

    // Epilogue: 4 consecutive columns per group; with VEC, N is a multiple of the vector
    // width, so each vector is wholly inside or outside the matrix.
    constexpr int V = VEC ? Vec16<T>::N : 1;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int r = m0 + micro_index<BM, TM>(i, ty);
        if (r >= M) continue;
        T* crow = C + (i64)r * N;
#pragma unroll
        for (int j = 0; j < TN; j += V) {
            const int c = n0 + micro_index<BN, TN>(j, tx);
            if (VEC) {
                if (c < N) VecIO<T, V>::store(crow + c, &acc[i][j]);
            } else {
                if (c < N) crow[c] = acc[i][j];
            }
        }
    }
}

// Shared-memory layout of the TF32 kernel: every operand is copied as it is stored (no
// transpose, so that cp.async can move it). A k-innermost operand ([m][k] A, [n][k] B) sits
// at pitch BK + 4 = 20 floats and is read with ldmatrix.x4 (8 rows of 16 bytes at an
// 80-byte pitch: 32 different banks): one per A fragment, one per two B fragments. A
// k-outermost one ([k][m] A, [k][n] B) sits at pitch 128 + 8 = 136 floats. There, B's
// fragment {B[t][g], B[t+4][g]} is two scalar LDS (bank 8 t + g: conflict-free); for A the
// rows of each 16-row fragment are interleaved (fragment row r at tile row 2 (r % 8) + r / 8)
// so that {A[g][t], A[g+8][t]} and {A[g][t+4], A[g+8][t+4]} are two LDS.64 straight into
// the fragment's register quadruple (banks 8 t + 2 g, + 1: conflict-free per half warp).
template <bool TA> __device__ __forceinline__ int tf32_frag_row(int r) {
    return TA ? 2 * (r % 8) + r / 8 : r;
}

template <bool TA, bool TB, bool VEC>
__global__ void __launch_bounds__(256, 2)
matmul_tf32_kernel(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
                   int M, int N, int K, i64 lda, i64 ldb, i64 sA, i64 sB, i64 sC, int splits,
                   int k_chunk) {
    constexpr int BM = 128, BN = 128, BK = 16, WM = 64, WN = 32, NT = 256;
    constexpr int MI = WM / 16, NI = WN / 8;
    constexpr int LDA = TA ? BM + 8 : BK + 4, LDB = TB ? BK + 4 : BN + 8;
    __shared__ __align__(16) float As[2][(TA ? BK : BM) * LDA];
    __shared__ __align__(16) float Bs[2][(TB ? BN : BK) * LDB];

    MatmulTiles<float, BM, BN, BK, NT, TA, TB, VEC> ops(A, B, lda, ldb, M, N, K, sA, sB, splits,
                                                        k_chunk);
    const int m0 = ops.tile.m0, n0 = ops.tile.n0;
    C += blockIdx.z * sC;

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = (warp / (BN / WN)) * WM, wn = (warp % (BN / WN)) * WN;
    const int g = lane >> 2, t4 = lane & 3;
    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;

    // ldmatrix row addresses: lane l reads row l % 8 (+ 8 for A's matrices 1 and 3) at k
    // offset 0 or 4 (A: matrices 2, 3; B: matrices 1, 3; B's matrices 2, 3 are the next
    // fragment).
    const int q = lane >> 3, l8 = lane & 7;
    constexpr int A_BUF = sizeof(As[0]), B_BUF = sizeof(Bs[0]);  // bytes per buffer
    const sptr as0 = smem_addr(As[0]), bs0 = smem_addr(Bs[0]);
    const sptr a_lane = as0 + ((wm + l8 + (q & 1) * 8) * LDA + (q >> 1) * 4) * 4;
    const sptr b_lane = bs0 + ((wn + l8 + (q >> 1) * 8) * LDB + (q & 1) * 4) * 4;

    // Double-buffered cp.async pipeline: while step t is multiplied out of buffer t & 1,
    // step t + 1 is on its way into the other buffer. One barrier per step: after it, every
    // thread's copies of step t have landed (each waited for its own) and nobody still reads
    // the buffer that step t + 1 overwrites (it held step t - 1).
    const int k_begin = ops.tile.k_begin;
    const int ntiles = ops.tile.k_end > k_begin ? (ops.tile.k_end - k_begin + BK - 1) / BK : 0;
    if (ntiles > 0) {
        ops.template copy_async<LDA, LDB>(k_begin, as0, bs0);
        cp_async_commit();
    }
    for (int t = 0; t < ntiles; ++t) {
        cp_async_wait_all();
        __syncthreads();
        if (t + 1 < ntiles) {
            const int nxt = (t + 1) & 1;
            ops.template copy_async<LDA, LDB>(k_begin + (t + 1) * BK, as0 + nxt * A_BUF,
                                              bs0 + nxt * B_BUF);
            cp_async_commit();
        }
        const float* as = As[t & 1];
        const float* bs = Bs[t & 1];
#pragma unroll
        for (int ks = 0; ks < BK; ks += 8) {
            float a[MI][4], b[NI][2];
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                if (TA) {  // [k][m], rows interleaved: (g, g + 8) are adjacent
                    const float* p = as + (ks + t4) * LDA + wm + i * 16 + 2 * g;
                    const float2 lo = *reinterpret_cast<const float2*>(p);
                    const float2 hi = *reinterpret_cast<const float2*>(p + 4 * LDA);
                    a[i][0] = lo.x;
                    a[i][1] = lo.y;
                    a[i][2] = hi.x;
                    a[i][3] = hi.y;
                } else {
                    ldmatrix_x4(a[i], a_lane + (t & 1) * A_BUF + (i * 16 * LDA + ks) * 4);
                }
            }
#pragma unroll
            for (int j = 0; j < NI; ++j) {
                if (TB) {  // [n][k]: one ldmatrix.x4 gives two fragments
                    if (j % 2 == 0) {
                        float v[4];
                        ldmatrix_x4(v, b_lane + (t & 1) * B_BUF + (j * 8 * LDB + ks) * 4);
                        b[j][0] = v[0];
                        b[j][1] = v[1];
                        b[j + 1][0] = v[2];
                        b[j + 1][1] = v[3];
                    }
                } else {  // [k][n]
                    b[j][0] = bs[(ks + t4) * LDB + wn + j * 8 + g];
                    b[j][1] = bs[(ks + t4 + 4) * LDB + wn + j * 8 + g];
                }
            }
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int j = 0; j < NI; ++j) mma_tf32_16x8x8(acc[i][j], a[i], b[j]);
        }
    }

    // d[r] sits at fragment row g + 8 * (r / 2), column 2 * t4 + r % 2.
#pragma unroll
    for (int i = 0; i < MI; ++i) {
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int r = m0 + wm + i * 16 + tf32_frag_row<TA>(g + 8 * half);
            if (r >= M) continue;
            float* crow = C + (i64)r * N;
#pragma unroll
            for (int j = 0; j < NI; ++j) {
                const int c = n0 + wn + j * 8 + 2 * t4;
                const float v0 = acc[i][j][2 * half], v1 = acc[i][j][2 * half + 1];
                if (VEC) {  // N even: c and c + 1 are both inside or both outside
                    if (c < N) *reinterpret_cast<float2*>(crow + c) = make_float2(v0, v1);
                } else {
                    if (c < N) crow[c] = v0;
                    if (c + 1 < N) crow[c + 1] = v1;
                }
            }
        }
    }
}

}  // namespace pydl
