// half.cuh - the two 16-bit floating-point storage formats, float16 (f16) and bfloat16 (bf16),
// as tags for templates: to_float / from_float (round to nearest even) between a raw 16-bit
// word and float, and the warp-level tensor-core MMA (mma.sync m16n8k16, sm_80+).
//
// Kernels read and write both formats as raw u16 words and convert in registers, so no CUDA
// half headers (cuda_fp16.h / cuda_bf16.h) are needed: NVRTC compiles these files with no
// include path. Under PYDL_HOST_EMULATION the conversions and the MMA call C++ models of the
// instructions (tests/cuda_emu.h).
#pragma once
#include "common.cuh"

namespace pydl {
typedef unsigned short u16;

// The two storage formats: conversions to and from float and the warp-level MMA.
// Fragment layout of mma.m16n8k16 (g = lane / 4, t = lane % 4; each u32 holds two
// consecutive-k halves, the lower k in the low 16 bits):
//   a = {A[g][2t..], A[g+8][2t..], A[g][2t+8..], A[g+8][2t+8..]}, b = {B[2t..][g], B[2t+8..][g]},
//   d = {D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]}.
struct f16 {
    __device__ __forceinline__ static float to_float(u16 h) {
#ifdef PYDL_HOST_EMULATION
        return pydl_emu_half_to_float(h);
#else
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
#endif
    }
    __device__ __forceinline__ static u16 from_float(float f) {
#ifdef PYDL_HOST_EMULATION
        return pydl_emu_float_to_half(f);
#else
        u16 h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
#endif
    }
    __device__ __forceinline__ static void mma(float* d, const u32* a, const u32* b) {
#ifdef PYDL_HOST_EMULATION
        pydl_emu_mma_16x8x16(d, a, b, pydl_emu_half_to_float);
#else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
    }
};

struct bf16 {
    // bfloat16 is the top half of a float32: widening is exact
    __device__ __forceinline__ static float to_float(u16 h) { return __uint_as_float((u32)h << 16); }
    __device__ __forceinline__ static u16 from_float(float f) {
#ifdef PYDL_HOST_EMULATION
        return pydl_emu_float_to_bfloat16(f);
#else
        u16 h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
#endif
    }
    __device__ __forceinline__ static void mma(float* d, const u32* a, const u32* b) {
#ifdef PYDL_HOST_EMULATION
        pydl_emu_mma_16x8x16(d, a, b, pydl_emu_bfloat16_to_float);
#else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
            "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
    }
};

// Element i of an array stored as S, read as and written from the compute type T: S = T (a
// plain array), or a 16-bit format tag (raw u16 words, widened exactly, rounded to nearest
// even on store).
template <typename T, typename S> struct Mem {
    typedef u16 type;
    __device__ __forceinline__ static T get(const u16* p, i64 i) { return S::to_float(p[i]); }
    __device__ __forceinline__ static void put(u16* p, i64 i, T v) { p[i] = S::from_float(v); }
};
template <typename T> struct Mem<T, T> {
    typedef T type;
    __device__ __forceinline__ static T get(const T* p, i64 i) { return p[i]; }
    __device__ __forceinline__ static void put(T* p, i64 i, T v) { p[i] = v; }
};

// Four consecutive 16-bit words (8 bytes, 8-byte aligned) widened to float, and back.
template <class F> __device__ __forceinline__ void load4_half(const u16* p, float* r) {
    const uint2 w = *reinterpret_cast<const uint2*>(p);
    r[0] = F::to_float((u16)(w.x & 0xffffu));
    r[1] = F::to_float((u16)(w.x >> 16));
    r[2] = F::to_float((u16)(w.y & 0xffffu));
    r[3] = F::to_float((u16)(w.y >> 16));
}
template <class F> __device__ __forceinline__ void store4_half(u16* p, const float* r) {
    uint2 w;
    w.x = (u32)F::from_float(r[0]) | ((u32)F::from_float(r[1]) << 16);
    w.y = (u32)F::from_float(r[2]) | ((u32)F::from_float(r[3]) << 16);
    *reinterpret_cast<uint2*>(p) = w;
}

}  // namespace pydl
