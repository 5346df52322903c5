// rnn.cu - the pointwise part of one LSTM / GRU step, after the matmuls.
//
// Serves lstm_cell_forward / lstm_cell_backward / gru_cell_forward / gru_cell_backward; each
// mirrors the NumPy reference (pydl/backend/cpu/reference.py) line for line, with
// sigmoid(x) = 0.5 + 0.5 tanh(x / 2) (no overflow for large |x|). Gates are in PyTorch's
// order: LSTM i, f, g, o; GRU r, z, n.
//
// Launch: 1-D grid-stride loops, 256 threads per block, grid = min(ceil(N*H / 256), 32 * SMs),
// one thread per (sample, hidden unit) i < N*H. Every array is C-contiguous (the caller
// copies views): the (N, H) ones are indexed [i], and unit j of gate q of sample s in a
// (N, G*H) gate array is [s * G*H + q * H + j] with s = i / H, j = i % H.
//
// lstm_cell_forward: gates (N, 4H) is overwritten in place with the activations backward
//   needs; c = f c_prev + i g, tanh_c = tanh(c), h = o tanh_c.
// lstm_cell_backward: dc' = dc + dh o (1 - tanh_c^2); dgates = [dc' g i(1-i),
//   dc' c_prev f(1-f), dc' i (1-g^2), dh tanh_c o(1-o)]; dc_prev = dc' f.
// gru_cell_forward: hg's first 2H columns become r, z in place (hg then holds r, z, h_n);
//   n = tanh(x_n + r h_n), h = n + z (h_prev - n).
// gru_cell_backward: dn = dh (1-z)(1-n^2), dz = dh (h_prev - n) z(1-z), dr = dn h_n r(1-r);
//   dxg = [dr, dz, dn], dhg = [dr, dz, dn r], dh_prev = dh z.
#include "common.cuh"

namespace pydl {

template <typename T> __device__ __forceinline__ T d_sigmoid(T x) { return T(0.5) + T(0.5) * d_tanh(T(0.5) * x); }

// offset of unit (i % H) of gate 0 of sample (i / H) in a (N, G*H) gate array
__device__ __forceinline__ i64 gate_offset(i64 i, int H, int G) { return (i / H) * G * H + i % H; }

template <typename T>
__global__ void __launch_bounds__(256)
lstm_cell_forward_kernel(T* __restrict__ gates, const T* __restrict__ c_prev, T* __restrict__ h,
                         T* __restrict__ c, T* __restrict__ tanh_c, i64 total, int H) {
    PYDL_GRID_STRIDE(i, total) {
        const i64 k = gate_offset(i, H, 4);
        const T ig = d_sigmoid(gates[k]), fg = d_sigmoid(gates[k + H]);
        const T gg = d_tanh(gates[k + 2 * H]), og = d_sigmoid(gates[k + 3 * H]);
        gates[k] = ig;
        gates[k + H] = fg;
        gates[k + 2 * H] = gg;
        gates[k + 3 * H] = og;
        const T cv = fg * c_prev[i] + ig * gg, tc = d_tanh(cv);
        c[i] = cv;
        tanh_c[i] = tc;
        h[i] = og * tc;
    }
}

template <typename T>
__global__ void __launch_bounds__(256)
lstm_cell_backward_kernel(const T* __restrict__ dh, const T* __restrict__ dc,
                          const T* __restrict__ acts, const T* __restrict__ tanh_c,
                          const T* __restrict__ c_prev, T* __restrict__ dgates,
                          T* __restrict__ dc_prev, i64 total, int H) {
    PYDL_GRID_STRIDE(i, total) {
        const i64 k = gate_offset(i, H, 4);
        const T ig = acts[k], fg = acts[k + H], gg = acts[k + 2 * H], og = acts[k + 3 * H];
        const T tc = tanh_c[i], dhv = dh[i];
        const T dct = dc[i] + dhv * og * (T(1) - tc * tc);
        dgates[k] = dct * gg * ig * (T(1) - ig);
        dgates[k + H] = dct * c_prev[i] * fg * (T(1) - fg);
        dgates[k + 2 * H] = dct * ig * (T(1) - gg * gg);
        dgates[k + 3 * H] = dhv * tc * og * (T(1) - og);
        dc_prev[i] = dct * fg;
    }
}

template <typename T>
__global__ void __launch_bounds__(256)
gru_cell_forward_kernel(const T* __restrict__ xg, T* __restrict__ hg, const T* __restrict__ h_prev,
                        T* __restrict__ h, T* __restrict__ n, i64 total, int H) {
    PYDL_GRID_STRIDE(i, total) {
        const i64 k = gate_offset(i, H, 3);
        const T r = d_sigmoid(xg[k] + hg[k]), z = d_sigmoid(xg[k + H] + hg[k + H]);
        const T nv = d_tanh(xg[k + 2 * H] + r * hg[k + 2 * H]);
        hg[k] = r;
        hg[k + H] = z;
        n[i] = nv;
        h[i] = nv + z * (h_prev[i] - nv);
    }
}

template <typename T>
__global__ void __launch_bounds__(256)
gru_cell_backward_kernel(const T* __restrict__ dh, const T* __restrict__ rzh, const T* __restrict__ n,
                         const T* __restrict__ h_prev, T* __restrict__ dxg, T* __restrict__ dhg,
                         T* __restrict__ dh_prev, i64 total, int H) {
    PYDL_GRID_STRIDE(i, total) {
        const i64 k = gate_offset(i, H, 3);
        const T r = rzh[k], z = rzh[k + H], hn = rzh[k + 2 * H];
        const T dhv = dh[i], nv = n[i];
        const T dn = dhv * (T(1) - z) * (T(1) - nv * nv);
        const T dz = dhv * (h_prev[i] - nv) * z * (T(1) - z);
        const T dr = dn * hn * r * (T(1) - r);
        dxg[k] = dr;
        dxg[k + H] = dz;
        dxg[k + 2 * H] = dn;
        dhg[k] = dr;
        dhg[k + H] = dz;
        dhg[k + 2 * H] = dn * r;
        dh_prev[i] = dhv * z;
    }
}

}  // namespace pydl
