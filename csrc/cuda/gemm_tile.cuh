// gemm_tile.cuh - the block-tile machinery shared by matmul.cu and conv2d.cu: which tile and
// k range a block owns (block_tile), the double-buffered main loop (gemm_pipeline), tile
// loads, and the FMA core.
//
// A block computes a BM x BN tile of C = A (M x K) * B (K x N), walking K in steps of BK.
// Shared memory holds each step's tiles k-major: As[k][m] and Bs[k][n], rows padded by one
// 16-byte vector so that the transposing stores below do not all land in one bank and the
// fragment reads stay 16-byte aligned. Two buffers of each: while the block multiplies
// buffer t & 1, every thread already holds the next step's elements in registers and stores
// them into the other buffer afterwards (one __syncthreads per step).
//
// Thread layout of the FMA core: NT = (BM / TM) * (BN / TN) threads, tx = tid % (BN / TN),
// ty = tid / (BN / TN). A thread owns TM x TN outputs made of (TM / 4) x (TN / 4) groups of
// 4 x 4: rows g * (4 * BM / TM) + ty * 4 + [0, 4), columns h * (4 * BN / TN) + tx * 4 + [0, 4).
// Each k reads its rows and columns as 16-byte vectors from shared memory (broadcast across
// the lanes that share them) and does TM * TN FMAs into registers.
#pragma once
#include "common.cuh"

// Blocks per SM to plan registers for (two 256-thread blocks = 128 registers per thread,
// 25% occupancy): 8x8 float micro-tiles need the cap to fit two blocks at all; float64 4x4
// tiles took 112-146 registers (one block, 12.5%) without it and fit 128 without spills.
// Small float tiles need no hint (72-89 registers).
#define PYDL_GEMM_MIN_BLOCKS(T, TM, TN) (((TM) * (TN) >= 64 || sizeof(T) == 8) ? 2 : 1)

namespace pydl {

// Column (or row) inside the tile of the thread's i-th output (i < TM or TN).
template <int BM, int TM> __device__ __forceinline__ int micro_index(int i, int t) {
    return (i / 4) * (4 * BM / TM) + t * 4 + (i % 4);
}

// Loads a ROWS x COLS tile whose COLS axis is contiguous in global memory (leading dimension
// ld) into registers, then stores it into shared memory as [row][col] (TRANSPOSE false) or
// [col][row] (TRANSPOSE true). Thread t handles the V-wide vectors t, t + NT, t + 2 NT, ...
// of the tile in row-major order, so consecutive threads read consecutive addresses; as NT
// is a multiple of the vectors per row, they all sit in one column, RSTEP rows apart.
// K_ROWS says which axis the K walk advances: rows (K_ROWS) or columns. begin() fixes the
// tile's position on the other axis once: the thread keeps one pointer, advanced by BK
// along K per step (next()), and a bit mask of which of its rows/columns are inside the
// matrix, so the loop holds no per-element addresses and only the K bound is compared per
// step. With VEC each vector is one 16-byte load; the caller guarantees that ld, the column
// limit and the base pointer are multiples of the vector width, so a vector is wholly inside
// or wholly outside the matrix. Out-of-range elements read as zero.
template <typename T, int ROWS, int COLS, int NT, bool VEC, bool K_ROWS> struct TileLoader {
    static constexpr int V = VEC ? Vec16<T>::N : 1;
    static constexpr int VPR = COLS / V;                 // vectors per tile row
    static constexpr int TOTAL = ROWS * VPR;             // vectors per tile
    static constexpr int PER = (TOTAL + NT - 1) / NT;    // vectors per thread (at most)
    static constexpr bool EXACT = TOTAL % NT == 0;       // else the last round is partial
    static constexpr int RSTEP = NT / VPR;               // rows between a thread's vectors
    static_assert(COLS % V == 0, "tile width must be a multiple of the vector width");
    static_assert(NT % VPR == 0 && PER <= 32, "a thread's vectors share one column");
    T reg[PER][V];
    i64 off;      // the thread's first element in the current step's tile, from the base
    i64 ld;
    int kpos;     // the thread's first K offset in the tile; huge when it is off the matrix
    int nleft;    // !K_ROWS: rows left in the matrix from the thread's first row

    // the thread's first row and column in the tile (recomputed where used: fewer live
    // registers across the main loop)
    __device__ __forceinline__ static int row() { return threadIdx.x / VPR; }
    __device__ __forceinline__ static int col() { return (threadIdx.x % VPR) * V; }

    // The tile's top-left element is (row0, col0); the matrix ends at row_end, col_end.
    // Along K only the end matters here (load() gets the rows/columns left each step).
    __device__ __forceinline__ void begin(i64 base, i64 ld_, int row0, int col0, int row_end,
                                          int col_end) {
        ld = ld_;
        const int r = row(), c = col();
        off = base + (i64)(row0 + r) * ld + col0 + c;
        nleft = row_end - row0 - r;
        kpos = K_ROWS ? (col0 + c < col_end ? r : 1 << 30) : c;
    }

    // This step's tile; `left` = how many K positions remain from the tile's first (may
    // be <= 0 on the pipeline's idle last prefetch, which then reads nothing).
    __device__ __forceinline__ void load(const T* __restrict__ g, int left) {
#pragma unroll
        for (int j = 0; j < PER; ++j) {
            if (!EXACT && (int)threadIdx.x + j * NT >= TOTAL) break;
            const bool ok = K_ROWS ? kpos + j * RSTEP < left : (kpos < left && j * RSTEP < nleft);
            const T* q = g + off + (i64)(j * RSTEP) * ld;
            if (VEC) {
                if (ok) {
                    VecIO<T, V>::load(q, reg[j]);
                } else {
#pragma unroll
                    for (int i = 0; i < V; ++i) reg[j][i] = T(0);
                }
            } else {
                reg[j][0] = ok ? *q : T(0);
            }
        }
    }

    // load() and store() in one, for sm_80+: each vector goes from global memory straight
    // into shared memory at s[row][col] (pitch LDS, no transpose) by cp.async, zero-filled
    // where it is off the matrix; nothing passes through registers. With VEC the 16-byte
    // copies need s and LDS to keep every vector 16-byte aligned. s: smem_addr of the tile.
    template <int LDS> __device__ __forceinline__ void copy_async(const T* __restrict__ g, int left,
                                                                 sptr s) const {
        static_assert(!VEC || (LDS * sizeof(T)) % 16 == 0, "16-byte cp.async needs aligned rows");
        const int r = row(), c = col();
#pragma unroll
        for (int j = 0; j < PER; ++j) {
            if (!EXACT && (int)threadIdx.x + j * NT >= TOTAL) break;
            const bool ok = K_ROWS ? kpos + j * RSTEP < left : (kpos < left && j * RSTEP < nleft);
            // not read when !ok (cp_async's ignore-src), so no select to a valid address
            const T* q = g + off + (i64)(j * RSTEP) * ld;
            cp_async<V * sizeof(T)>(s + ((r + j * RSTEP) * LDS + c) * (int)sizeof(T), q, ok);
        }
    }

    // Move to the next K step of BK.
    template <int BK> __device__ __forceinline__ void next() { off += K_ROWS ? BK * ld : (i64)BK; }

    // CVT is applied to each element on its way into shared memory (NoCvt: none).
    template <bool TRANSPOSE, class CVT> __device__ __forceinline__ void store(T* s, int lds) const {
        const int r = row(), c = col();
#pragma unroll
        for (int j = 0; j < PER; ++j) {
            if (!EXACT && (int)threadIdx.x + j * NT >= TOTAL) break;
            const int rr = r + j * RSTEP;
#pragma unroll
            for (int i = 0; i < V; ++i) {
                if (TRANSPOSE) s[(c + i) * lds + rr] = CVT::apply(reg[j][i]);
                else s[rr * lds + c + i] = CVT::apply(reg[j][i]);
            }
        }
    }
};

struct NoCvt {
    template <typename T> __device__ __forceinline__ static T apply(T x) { return x; }
};

// acc[i][j] += sum_k As[k][row(i)] * Bs[k][col(j)] over one BK step.
template <typename T, int BM, int BN, int BK, int TM, int TN, int LDA, int LDB>
__device__ __forceinline__ void fma_tile(const T* __restrict__ As, const T* __restrict__ Bs,
                                         T (&acc)[TM][TN], int tx, int ty) {
    static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are made of 4x4 groups");
#pragma unroll
    for (int k = 0; k < BK; ++k) {
        T a[TM], b[TN];
#pragma unroll
        for (int g = 0; g < TM / 4; ++g) load4(As + k * LDA + g * (4 * BM / TM) + ty * 4, a + 4 * g);
#pragma unroll
        for (int g = 0; g < TN / 4; ++g) load4(Bs + k * LDB + g * (4 * BN / TN) + tx * 4, b + 4 * g);
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = d_fma(a[i], b[j], acc[i][j]);
    }
}

// Map a linear block index to a (tile row, tile column) pair, walking GROUP tile rows
// column by column so that blocks running together share A and B tiles in L2.
__device__ __forceinline__ void swizzle_tile(int pid, int tiles_m, int tiles_n, int& pm, int& pn) {
    constexpr int GROUP = 8;
    const int per_group = GROUP * tiles_n;
    const int first_m = (pid / per_group) * GROUP;
    const int size_m = imin(tiles_m - first_m, GROUP);
    const int r = pid % per_group;
    pm = first_m + r % size_m;
    pn = r / size_m;
}

// The tile and k range of this block: tile (m0, n0) of an M x N output (swizzled), and
// blockIdx.z = z * splits + split, where z is the batch (matmul) or group (conv2d) and split
// s covers k in [s * k_chunk, min(K, (s + 1) * k_chunk)).
struct BlockTile {
    int m0, n0, z, split, k_begin, k_end;
};

template <int BM, int BN>
__device__ __forceinline__ BlockTile block_tile(int M, int N, int K, int splits, int k_chunk) {
    int pm, pn;
    swizzle_tile(blockIdx.x, (M + BM - 1) / BM, (N + BN - 1) / BN, pm, pn);
    BlockTile b;
    b.m0 = pm * BM;
    b.n0 = pn * BN;
    b.z = blockIdx.z / splits;
    b.split = blockIdx.z % splits;
    b.k_begin = b.split * k_chunk;
    b.k_end = imin(K, b.k_begin + k_chunk);
    return b;
}

template <typename T, int TM, int TN> __device__ __forceinline__ void zero_tile(T (&acc)[TM][TN]) {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
}

// The main loop over [k_begin, k_end) in steps of BK, double-buffered: load(k0) fetches the
// step starting at k0 into registers, store(buf) writes them into shared buffer buf and
// compute(buf) multiplies buffer buf. While the block computes one buffer, the next step's
// global loads are in flight; one __syncthreads per step. The k range is the block's, so
// every thread takes the same path.
// The prefetch and its store are unconditional: on the last step load() is asked for k0 >=
// k_end, which every loader turns into zeros without touching memory, and the store fills
// the idle buffer, which nobody reads. Guarding them with `if (t + 1 < ntiles)` lets ptxas
// merge the two guarded regions and sink the global loads down to the store, after the FMA
// block, so every step would wait for memory (benchmarks/kernel_report.py `prefetch`).
template <int BK, class Load, class Store, class Compute>
__device__ __forceinline__ void gemm_pipeline(int k_begin, int k_end, Load&& load, Store&& store,
                                              Compute&& compute) {
    const int ntiles = k_end > k_begin ? (k_end - k_begin + BK - 1) / BK : 0;
    if (ntiles == 0) return;
    load(k_begin);
    store(0);
    __syncthreads();
    for (int t = 0; t < ntiles; ++t) {
        const int cur = t & 1;
        load(k_begin + (t + 1) * BK);
        compute(cur);
        store(cur ^ 1);
        __syncthreads();
    }
}

}  // namespace pydl
