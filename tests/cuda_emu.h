// cuda_emu.h - run pydl's CUDA kernels as C++ on the CPU, for tests on machines without a GPU.
//
// Each CUDA thread of a block is a coroutine (ucontext) on one OS thread; blocks run one
// after another. __syncthreads() and warp shuffles are barriers: the scheduler runs every
// runnable thread until it blocks or exits, then releases a warp whose live threads all
// wait at a warp barrier, or the block when all its live threads wait at __syncthreads().
// Anything else is a deadlock (a barrier in divergent code) and is reported as an error.
// Exited threads do not count, as on sm_70+.
//
// __shared__ variables become function-local statics: one copy shared by the threads of the
// running block. Atomics need no locking (threads only switch at barriers). mma.sync and
// ldmatrix are modelled from the fragment layouts in the PTX ISA (common.cuh documents
// them); cp.async copies at once. Compile with -fsanitize=address and preload libasan to catch out-of-bounds accesses.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <ucontext.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

#define PYDL_HOST_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) double2 { double x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

template <typename To, typename From> inline To emu_bits(From v) {
    static_assert(sizeof(To) == sizeof(From), "bit cast");
    To r;
    memcpy(&r, &v, sizeof r);
    return r;
}
inline float __int_as_float(int v) { return emu_bits<float>(v); }
inline float __uint_as_float(unsigned v) { return emu_bits<float>(v); }
inline unsigned __float_as_uint(float v) { return emu_bits<unsigned>(v); }
inline double __longlong_as_double(long long v) { return emu_bits<double>(v); }
// correctly rounded reciprocals: the host's IEEE division gives exactly that
inline float __frcp_rn(float x) { return 1.0f / x; }
inline double __drcp_rn(double x) { return 1.0 / x; }

namespace emu {

enum State { RUNNABLE, AT_BLOCK, AT_WARP, DONE };

struct Thread {
    ucontext_t ctx;
    State state = RUNNABLE;
    unsigned x = 0;
};

struct Block {
    std::vector<Thread> threads;
    std::vector<std::vector<char>> stacks;
    ucontext_t sched;
    int current = -1;
    void* body = nullptr;       // std::function-free: a pointer to the launch closure
    void (*call)(void*) = nullptr;
    std::string error;
    // warp exchange slots for shuffles and mma fragments
    unsigned char slots[32][32][8 * 8];
#if EMU_ASAN
    void* fake_stack = nullptr;
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
#endif
};

inline Block* g_block = nullptr;
constexpr size_t STACK = 256 * 1024;
// Order in which runnable threads run between barriers: 0 ascending, 1 descending,
// 2 pseudo-random. A missing barrier shows up as a wrong result in one of the orders.
inline int g_order = 0;
inline unsigned g_seed = 12345;

inline void switch_to_scheduler() {
    Block& b = *g_block;
    Thread& t = b.threads[b.current];
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(t.state == DONE ? nullptr : &fake, b.sched_bottom, b.sched_size);
    swapcontext(&t.ctx, &b.sched);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    swapcontext(&t.ctx, &b.sched);
#endif
    threadIdx.x = t.x;
    threadIdx.y = threadIdx.z = 0;
}

inline void entry() {
    Block& b = *g_block;
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &b.sched_bottom, &b.sched_size);
#endif
    try {
        b.call(b.body);
    } catch (const std::exception& e) {
        if (b.error.empty()) b.error = e.what();
    }
    b.threads[b.current].state = DONE;
    switch_to_scheduler();
}

inline void wait(State s) {
    g_block->threads[g_block->current].state = s;
    switch_to_scheduler();
}

// Run one block of `n` threads to completion.
inline void run_block(Block& b, unsigned n) {
    b.threads.assign(n, Thread());
    if (b.stacks.size() < n) b.stacks.resize(n, std::vector<char>(STACK));
    for (unsigned i = 0; i < n; ++i) {
        Thread& t = b.threads[i];
        t.x = i;
        getcontext(&t.ctx);
        t.ctx.uc_stack.ss_sp = b.stacks[i].data();
        t.ctx.uc_stack.ss_size = STACK;
        t.ctx.uc_link = nullptr;
        makecontext(&t.ctx, entry, 0);
    }
    std::vector<unsigned> order(n);
    for (unsigned i = 0; i < n; ++i) order[i] = g_order == 1 ? n - 1 - i : i;
    for (;;) {
        bool ran = false;
        if (g_order == 2)
            for (unsigned i = n; i > 1; --i) {
                g_seed = g_seed * 1103515245u + 12345u;
                std::swap(order[i - 1], order[(g_seed >> 8) % i]);
            }
        for (unsigned i : order) {
            if (b.threads[i].state != RUNNABLE) continue;
            ran = true;
            b.current = (int)i;
            threadIdx.x = i;
            threadIdx.y = threadIdx.z = 0;
#if EMU_ASAN
            void* fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, b.stacks[i].data(), STACK);
            swapcontext(&b.sched, &b.threads[i].ctx);
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
            swapcontext(&b.sched, &b.threads[i].ctx);
#endif
        }
        (void)ran;
        bool live = false, released = false;
        for (unsigned w = 0; w * 32 < n; ++w) {
            bool any_warp = false, all_warp = true;
            for (unsigned i = w * 32; i < n && i < w * 32 + 32; ++i) {
                const State s = b.threads[i].state;
                if (s == DONE) continue;
                live = true;
                if (s == AT_WARP) any_warp = true;
                else all_warp = false;
            }
            if (any_warp && all_warp) {
                for (unsigned i = w * 32; i < n && i < w * 32 + 32; ++i)
                    if (b.threads[i].state == AT_WARP) b.threads[i].state = RUNNABLE;
                released = true;
            }
        }
        if (!live) break;
        if (released) continue;
        bool all_block = true;
        for (unsigned i = 0; i < n; ++i)
            if (b.threads[i].state != DONE && b.threads[i].state != AT_BLOCK) all_block = false;
        if (!all_block) {
            b.error = "deadlock: threads wait at different barriers (divergent __syncthreads "
                      "or shuffle)";
            return;
        }
        for (unsigned i = 0; i < n; ++i)
            if (b.threads[i].state == AT_BLOCK) b.threads[i].state = RUNNABLE;
    }
}

template <typename... P, size_t... I>
std::tuple<std::decay_t<P>...> unpack(void** args, std::index_sequence<I...>) {
    return std::tuple<std::decay_t<P>...>(*reinterpret_cast<std::decay_t<P>*>(args[I])...);
}

template <typename... P> struct Closure {
    void (*fn)(P...);
    std::tuple<std::decay_t<P>...> vals;
    static void call(void* self) {
        auto* c = static_cast<Closure*>(self);
        std::apply(c->fn, c->vals);
    }
};

inline std::string g_error;

template <typename... P>
int launch(void (*fn)(P...), unsigned gx, unsigned gy, unsigned gz, unsigned bx, void** args) {
    Closure<P...> c{fn, unpack<P...>(args, std::index_sequence_for<P...>{})};
    static Block block;  // large: keep it off the stack
    Block& b = block;
    b.body = &c;
    b.call = &Closure<P...>::call;
    b.error.clear();
    g_block = &b;
    gridDim = {gx, gy, gz};
    blockDim = {bx, 1, 1};
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx = {x, y, z};
                run_block(b, bx);
                if (!b.error.empty()) {
                    g_error = b.error + " (block " + std::to_string(x) + ", " +
                              std::to_string(y) + ", " + std::to_string(z) + ")";
                    return 1;
                }
            }
    return 0;
}

template <typename... P> void param_sizes(void (*)(P...), int* out) {
    int i = 0;
    ((out[i++] = (int)sizeof(std::decay_t<P>)), ...);
    out[i] = -1;
}

inline unsigned lane() { return threadIdx.x & 31; }
inline unsigned warp() { return threadIdx.x >> 5; }

template <typename T> T shfl_xor(T v, int mask) {
    static_assert(sizeof(T) <= 8, "shuffle of a wide type");
    Block& b = *g_block;
    memcpy(b.slots[warp()][lane()], &v, sizeof v);
    wait(AT_WARP);
    T r;
    memcpy(&r, b.slots[warp()][lane() ^ (unsigned)mask], sizeof r);
    wait(AT_WARP);
    return r;
}

}  // namespace emu

inline void __syncthreads() { emu::wait(emu::AT_BLOCK); }

template <typename T> inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    if (mask != 0xffffffffu) throw std::runtime_error("partial-warp shuffle is not emulated");
    return emu::shfl_xor(v, lane_mask);
}

template <typename T> inline T atomicAdd(T* p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    const unsigned long long old = *p;
    if (v < old) *p = v;
    return old;
}

// What the tensor core reads of a float32 operand of a .tf32 mma: its top 19 bits (the
// low 13 mantissa bits are ignored, i.e. truncated toward zero).
inline float pydl_emu_tf32_operand(float x) {
    return __uint_as_float(__float_as_uint(x) & 0xffffe000u);
}

// cp.async.{ca,cg}.shared.global [dst], [src], bytes, ignore_src: copy `bytes` from src,
// or zero-fill when the source is ignored (src == nullptr here: it is never read then).
// Done at once: the result is visible before cp.async.wait_group, which a real GPU does
// not promise, so a missing wait is not caught here (a missing __syncthreads still is, by
// the thread orders).
inline void pydl_emu_cp_async(void* dst, const void* src, int bytes) {
    if (src) memcpy(dst, src, (size_t)bytes);
    else memset(dst, 0, (size_t)bytes);
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 read as 32-bit elements: lane l gives the address
// of row l % 8 of matrix l / 8 and gets r[q] = row (lane / 4) of matrix q, 32-bit word lane % 4.
inline void pydl_emu_ldmatrix_x4(float (&r)[4], const float* row) {
    emu::Block& blk = *emu::g_block;
    memcpy(blk.slots[emu::warp()][emu::lane()], &row, sizeof row);
    emu::wait(emu::AT_WARP);
    for (int q = 0; q < 4; ++q) {
        const float* p;
        memcpy(&p, blk.slots[emu::warp()][q * 8 + emu::lane() / 4], sizeof p);
        if ((uintptr_t)p & 15u) throw std::runtime_error("ldmatrix: row not 16-byte aligned");
        r[q] = p[emu::lane() % 4];
    }
    emu::wait(emu::AT_WARP);
}

// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, from the PTX ISA fragment layout
// (operands truncated to TF32 as above):
// a{0,1,2,3} = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; b{0,1} = B[t][g], B[t+4][g];
// d{0,1,2,3} = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1], with g = lane/4, t = lane%4.
inline void pydl_emu_mma_tf32_16x8x8(float* d, const float* a, const float* b) {
    emu::Block& blk = *emu::g_block;
    float* mine = reinterpret_cast<float*>(blk.slots[emu::warp()][emu::lane()]);
    for (int i = 0; i < 4; ++i) mine[i] = pydl_emu_tf32_operand(a[i]);
    mine[4] = pydl_emu_tf32_operand(b[0]);
    mine[5] = pydl_emu_tf32_operand(b[1]);
    emu::wait(emu::AT_WARP);
    auto slot = [&](int l) { return reinterpret_cast<const float*>(blk.slots[emu::warp()][l]); };
    auto A = [&](int row, int k) { return slot((row % 8) * 4 + k % 4)[(row >= 8) + 2 * (k >= 4)]; };
    auto B = [&](int k, int col) { return slot(col * 4 + k % 4)[4 + (k >= 4)]; };
    const int g = emu::lane() / 4, t = emu::lane() % 4;
    float out[4];
    for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r / 2), col = 2 * t + r % 2;
        float acc = d[r];
        for (int k = 0; k < 8; ++k) acc += A(row, k) * B(k, col);
        out[r] = acc;
    }
    emu::wait(emu::AT_WARP);
    for (int r = 0; r < 4; ++r) d[r] = out[r];
}

// ----------------------------------------------------------------- float16 / bfloat16 (sm_80+)
// cvt.f32.f16 and cvt.rn.f16.f32 (IEEE binary16, round to nearest even, overflow to inf).
inline float pydl_emu_half_to_float(unsigned short h) {
    const float sign = (h & 0x8000) ? -1.0f : 1.0f;
    const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) return sign * std::ldexp((float)man, -24);
    if (exp == 31) return man ? NAN : sign * INFINITY;
    return sign * std::ldexp((float)(man | 0x400), exp - 25);
}

inline unsigned short pydl_emu_float_to_half(float f) {
    const unsigned u = __float_as_uint(f);
    const unsigned short sign = (u >> 16) & 0x8000;
    const unsigned a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | (a > 0x7f800000u ? 0x7e00 : 0x7c00);
    const float v = __uint_as_float(a);
    if (v >= 65520.0f) return sign | 0x7c00;  // rounds past 65504: inf
    if (v < 6.103515625e-05f)                 // half subnormals are multiples of 2**-24
        return sign | (unsigned short)std::nearbyint(v * 16777216.0f);
    const unsigned r = (a + 0xfffu + ((a >> 13) & 1u)) >> 13;  // keep 10 bits, ties to even
    return sign | (unsigned short)(r - ((127u - 15u) << 10));
}

// bfloat16 is the top half of a float32; cvt.rn.bf16.f32 rounds to nearest even.
inline float pydl_emu_bfloat16_to_float(unsigned short h) { return __uint_as_float((unsigned)h << 16); }

inline unsigned short pydl_emu_float_to_bfloat16(float f) {
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}: each u32 register holds two 16-bit values
// of consecutive k (lower k in the low half); with g = lane/4, t = lane%4:
// a{0,1,2,3} = A[g][2t..2t+1], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..];
// b{0,1} = B[2t..2t+1][g], B[2t+8..][g]; d as in the m16n8k8 layout above.
inline void pydl_emu_mma_16x8x16(float* d, const unsigned* a, const unsigned* b,
                                 float (*to_float)(unsigned short)) {
    emu::Block& blk = *emu::g_block;
    unsigned* mine = reinterpret_cast<unsigned*>(blk.slots[emu::warp()][emu::lane()]);
    for (int i = 0; i < 4; ++i) mine[i] = a[i];
    mine[4] = b[0];
    mine[5] = b[1];
    emu::wait(emu::AT_WARP);
    auto slot = [&](int l) { return reinterpret_cast<const unsigned*>(blk.slots[emu::warp()][l]); };
    auto half_of = [&](unsigned reg, int k) {
        return to_float((unsigned short)(k % 2 ? reg >> 16 : reg & 0xffffu));
    };
    auto A = [&](int row, int k) {
        return half_of(slot((row % 8) * 4 + (k % 8) / 2)[(row >= 8) + 2 * (k >= 8)], k);
    };
    auto B = [&](int k, int col) { return half_of(slot(col * 4 + (k % 8) / 2)[4 + (k >= 8)], k); };
    const int g = emu::lane() / 4, t = emu::lane() % 4;
    float out[4];
    for (int r = 0; r < 4; ++r) {
        const int row = g + 8 * (r / 2), col = 2 * t + r % 2;
        float acc = d[r];
        for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
        out[r] = acc;
    }
    emu::wait(emu::AT_WARP);
    for (int r = 0; r < 4; ++r) d[r] = out[r];
}
