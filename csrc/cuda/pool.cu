// pool.cu - 2-D max and average pooling (NCHW), forward and backward.
//
// Serves max_pool2d_forward / max_pool2d_backward / avg_pool2d_forward / avg_pool2d_backward.
// Padding is implicit: -inf for max, zeros for avg (count_include_pad picks the divisor:
// kH*kW, or the number of real input elements in the window).
//
// Launch: 1-D grid-stride loops, 256 threads per block, grid = min(ceil(total / 256),
// 32 * SMs). One thread per output element (forward, max backward) or per input element
// (avg backward). A flat index i splits into (plane, r) with plane = i / plane_size, then r
// into (row, column); the division runs in 32 bits when the total fits (`small`).
//
// max_pool2d_forward: the window's first maximum in row-major order wins; NaN beats any
//   number (the first NaN wins); argmax is the flat h * W + w index into the input plane,
//   -1 (and y = -inf) when the window holds only padding.
// max_pool2d_backward: scatter-add gy into gx at argmax with atomicAdd (the protocol passes
//   no window geometry, so a gather is not possible); gx is zeroed by the caller.
// avg_pool2d_backward: gather: each input element sums gy / divisor over the windows that
//   contain it (oh in [ceil((ih + ph - kH + 1) / sh), (ih + ph) / sh] clipped to [0, Ho)),
//   so every element is written once and no atomics are needed.
//
// Storage: the last template argument S is the storage of x, y, gy and gx: S = T (the
// default; float or double), or S = f16 / bf16 (half.cuh) with T = float: 16-bit arrays,
// float32 comparisons and sums, each output rounded once (a max is exact). Exception:
// max_pool2d_backward's gx is always T, the float32 scatter-add target, which the caller
// rounds to the 16-bit dtype afterwards (16-bit atomics would round at every add).
#include "half.cuh"

namespace pydl {

__device__ __forceinline__ void split_index(i64 i, int plane_size, bool small, i64& plane, int& r) {
    if (small) {
        const unsigned q = (unsigned)i / (unsigned)plane_size;
        plane = q;
        r = (int)((unsigned)i - q * (unsigned)plane_size);
    } else {
        plane = i / plane_size;
        r = (int)(i - plane * plane_size);
    }
}

template <typename T, typename S = T>
__global__ void __launch_bounds__(256)
max_pool2d_forward_kernel(const typename Mem<T, S>::type* __restrict__ x,
                          typename Mem<T, S>::type* __restrict__ y, i64* __restrict__ argmax,
                          i64 total, int H, int W, int Ho, int Wo, int kh, int kw, int sh, int sw,
                          int ph, int pw) {
    const bool small = total <= 0xffffffffLL;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        i64 plane;
        int r;
        split_index(i, Ho * Wo, small, plane, r);
        const int oh = r / Wo, ow = r - oh * Wo;
        const typename Mem<T, S>::type* xp = x + plane * H * W;
        const int h0 = oh * sh - ph, w0 = ow * sw - pw;
        const int h_lo = imax(h0, 0), h_hi = imin(h0 + kh, H);
        const int w_lo = imax(w0, 0), w_hi = imin(w0 + kw, W);
        T best = neg_inf<T>();
        int arg = -1;
        for (int ih = h_lo; ih < h_hi; ++ih) {
            for (int iw = w_lo; iw < w_hi; ++iw) {
                const T v = Mem<T, S>::get(xp, ih * W + iw);
                if (arg < 0 || v > best || (d_isnan(v) && !d_isnan(best))) {
                    best = v;
                    arg = ih * W + iw;
                }
            }
        }
        Mem<T, S>::put(y, i, best);
        argmax[i] = arg;
    }
}

template <typename T, typename S = T>
__global__ void __launch_bounds__(256)
max_pool2d_backward_kernel(const typename Mem<T, S>::type* __restrict__ gy,
                           const i64* __restrict__ argmax,
                           T* __restrict__ gx, i64 total, int HoWo, int HW) {
    const bool small = total <= 0xffffffffLL;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        const i64 a = argmax[i];
        if (a < 0) continue;
        const i64 plane = small ? (i64)((unsigned)i / (unsigned)HoWo) : i / HoWo;
        atomicAdd(gx + plane * HW + a, Mem<T, S>::get(gy, i));
    }
}

template <typename T, typename S = T>
__global__ void __launch_bounds__(256)
avg_pool2d_forward_kernel(const typename Mem<T, S>::type* __restrict__ x,
                          typename Mem<T, S>::type* __restrict__ y, i64 total, int H, int W,
                          int Ho, int Wo, int kh, int kw, int sh, int sw, int ph, int pw,
                          int count_include_pad) {
    const bool small = total <= 0xffffffffLL;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        i64 plane;
        int r;
        split_index(i, Ho * Wo, small, plane, r);
        const int oh = r / Wo, ow = r - oh * Wo;
        const typename Mem<T, S>::type* xp = x + plane * H * W;
        const int h0 = oh * sh - ph, w0 = ow * sw - pw;
        const int h_lo = imax(h0, 0), h_hi = imin(h0 + kh, H);
        const int w_lo = imax(w0, 0), w_hi = imin(w0 + kw, W);
        T sum = T(0);
        for (int ih = h_lo; ih < h_hi; ++ih)
            for (int iw = w_lo; iw < w_hi; ++iw) sum += Mem<T, S>::get(xp, ih * W + iw);
        const int div = count_include_pad ? kh * kw : imax(h_hi - h_lo, 0) * imax(w_hi - w_lo, 0);
        Mem<T, S>::put(y, i, sum / T(div));
    }
}

template <typename T, typename S = T>
__global__ void __launch_bounds__(256)
avg_pool2d_backward_kernel(const typename Mem<T, S>::type* __restrict__ gy,
                           typename Mem<T, S>::type* __restrict__ gx, i64 total, int H, int W,
                           int Ho, int Wo, int kh, int kw, int sh, int sw, int ph, int pw,
                           int count_include_pad) {
    const bool small = total <= 0xffffffffLL;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (i64)gridDim.x * blockDim.x) {
        i64 plane;
        int r;
        split_index(i, H * W, small, plane, r);
        const int ih = r / W, iw = r - ih * W;
        const int hp = ih + ph, wp = iw + pw;
        const int oh_lo = hp < kh ? 0 : (hp - kh) / sh + 1, oh_hi = imin(hp / sh, Ho - 1);
        const int ow_lo = wp < kw ? 0 : (wp - kw) / sw + 1, ow_hi = imin(wp / sw, Wo - 1);
        const typename Mem<T, S>::type* gp = gy + plane * Ho * Wo;
        T sum = T(0);
        for (int oh = oh_lo; oh <= oh_hi; ++oh) {
            const int h0 = oh * sh - ph;
            const int hn = imin(h0 + kh, H) - imax(h0, 0);
            for (int ow = ow_lo; ow <= ow_hi; ++ow) {
                int div = kh * kw;
                if (!count_include_pad) {
                    const int w0 = ow * sw - pw;
                    div = hn * (imin(w0 + kw, W) - imax(w0, 0));
                }
                sum += Mem<T, S>::get(gp, oh * Wo + ow) * d_rcp(T(div));
            }
        }
        Mem<T, S>::put(gx, i, sum);
    }
}

}  // namespace pydl
