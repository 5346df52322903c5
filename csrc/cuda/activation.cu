// activation.cu - elementwise erf and GELU: forward keeps the cdf, backward reads it back.
//
// Serves erf / gelu_forward / gelu_backward. The formulas are the reference's
// (pydl/backend/cpu/reference.py) with CUDA's erff / erf, tanhf / tanh, expf / exp picked by
// dtype (common.cuh). TANH selects GELU's tanh approximation:
//   cdf = 0.5 * (1 + erf(x / sqrt(2)))                                   (TANH = false)
//   cdf = 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))              (TANH = true)
//   y = x * cdf
//   gx = gy * (cdf + x * exp(-x^2 / 2) / sqrt(2 pi))                      (TANH = false)
//   gx = gy * (cdf + 2 x cdf (1 - cdf) sqrt(2/pi) (1 + 3 * 0.044715 x^2)) (TANH = true)
//
// Launch: 1-D grid-stride loops, 256 threads per block, grid = min(ceil(n / 256), 32 * SMs).
// Every array is C-contiguous with n elements (the caller copies views and broadcasts), so
// element i of each is [i].
#include "common.cuh"

namespace pydl {

template <typename T, bool TANH> __device__ __forceinline__ T gelu_cdf(T x) {
    if constexpr (TANH) return T(0.5) * (T(1) + d_tanh(T(0.79788456080286535588) * (x + T(0.044715) * x * x * x)));
    return T(0.5) * (T(1) + d_erf(x * T(0.70710678118654752440)));
}

template <typename T>
__global__ void __launch_bounds__(256) erf_kernel(const T* __restrict__ x, T* __restrict__ y, i64 n) {
    PYDL_GRID_STRIDE(i, n) y[i] = d_erf(x[i]);
}

template <typename T, bool TANH>
__global__ void __launch_bounds__(256)
gelu_forward_kernel(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ cdf, i64 n) {
    PYDL_GRID_STRIDE(i, n) {
        const T v = x[i], c = gelu_cdf<T, TANH>(v);
        cdf[i] = c;
        y[i] = v * c;
    }
}

template <typename T, bool TANH>
__global__ void __launch_bounds__(256)
gelu_backward_kernel(const T* __restrict__ gy, const T* __restrict__ x, const T* __restrict__ cdf,
                     T* __restrict__ gx, i64 n) {
    // the grid-stride loop, unrolled 4 times for float as ptxas does by itself, but not for
    // float64 (its exp is a long polynomial: unrolled, ptxas spilled 32 bytes)
    const i64 step = (i64)gridDim.x * blockDim.x;
#pragma unroll(sizeof(T) == 8 ? 1 : 4)
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const T v = x[i], c = cdf[i];
        T slope;
        if constexpr (TANH)
            slope = T(2) * v * c * (T(1) - c) * (T(0.79788456080286535588) * (T(1) + T(3 * 0.044715) * v * v));
        else
            slope = v * (T(0.39894228040143267794) * d_exp(T(-0.5) * v * v));
        gx[i] = gy[i] * (c + slope);
    }
}

}  // namespace pydl
