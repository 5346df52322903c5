// optim.cu - fused, multi-tensor optimizer steps: sgd_step, adam_step (Adam / AdamW,
// AMSGrad), rmsprop_step, adagrad_step. In place; PyTorch's single-tensor semantics, with the
// operations in the order of pydl/backend/cpu/reference.py.
//
// One launch updates every tensor of a parameter list. The caller builds two device tables:
//   ptrs[l * ntensors + j]  address of tensor j of list l (params, grads, states...), 0 if absent
//   chunks[b], chunks[nchunks + b], chunks[2 * nchunks + b]
//                           tensor index, first element and length of chunk b (at most
//                           CHUNK = 8192 elements of one tensor)
// Launch: 256 threads per block, any grid (the caller sizes it to the GPU, a few blocks per
// SM): block x walks chunks x, x + gridDim.x, ... (a persistent grid, so a large model is
// not a long tail of one-chunk blocks). When every list's chunk address is 16-byte aligned
// the elements move as 16-byte vectors (float4 / double2: the chunk start is a multiple of
// the vector width), the remainder and misaligned tensors one element at a time. Thread t
// handles vectors (or elements) t, t + 256, ... of the chunk. Each optimizer is an element
// update on registers (x[l] = element of list l; absent lists read as 0 and are not
// written back); lists in the kernel's WRITE mask are stored back.
// Hyperparameters arrive already combined on the host (bias corrections, 1 - beta, ...) and
// cast to T, as NumPy does when it multiplies a T array by a Python float. They come as
// kernel arguments, or, when `dyn` is not null, from the device array dyn[0..k) in the order
// of the scalar parameters: a CUDA graph replays a launch with its arguments frozen, so a
// captured step reads the values that change per step (bias corrections, a scheduled lr)
// from memory the host rewrites before each replay (pydl/backend/cuda/graph.py).
//
// Low-precision parameters (float32 master weights, pydl/optim/optimizer.py): instances
// <float, G, H> with H = f16 or bf16 step the float32 master copy (list 0) and write the
// model's half parameter (one more table row) from the same registers; G = H reads the
// half gradients directly (G = same: float32 gradients, as GradScaler.unscale_ leaves them).
// The math is float32 throughout, so both copies equal a float32 step followed by one
// rounding. <T> alone (G = H = same) is the plain float32 / float64 step.
#include "half.cuh"

namespace pydl {

enum {
    OPT_MAXIMIZE = 1,
    OPT_NESTEROV = 2,
    OPT_FIRST_STEP = 4,
    OPT_AMSGRAD = 8,
    OPT_DECOUPLED = 16,
    OPT_CENTERED = 32,
    OPT_MOMENTUM = 64,
    OPT_WEIGHT_DECAY = 128,
};

// Storage of the gradient list and of the model copy. `same` (the default) means T itself:
// the gradient is a T array and no copy is written. f16 / bf16 (half.cuh) mean 16-bit words
// widened to float on load and rounded to nearest even on store.
// G = T reads T gradients too.
struct same {};
template <typename T, typename S> struct Stored {
    typedef u16 type;
    static constexpr bool PLAIN = false;
};
template <typename T> struct Stored<T, same> {
    typedef T type;
    static constexpr bool PLAIN = true;
};
template <typename T> struct Stored<T, T> {
    typedef T type;
    static constexpr bool PLAIN = true;
};

// V consecutive elements of list storage S at p, as T (V = 1, or the T vector width:
// 16 bytes of T, 2 * V bytes of a 16-bit format).
template <typename T, typename S, int V>
__device__ __forceinline__ void load_as(const typename Stored<T, S>::type* p, T* r) {
    if constexpr (Stored<T, S>::PLAIN) {
        VecIO<T, V>::load(p, r);
    } else if constexpr (V == 4) {
        load4_half<S>(p, r);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) r[e] = S::to_float(p[e]);
    }
}
template <typename T, typename S, int V>
__device__ __forceinline__ void store_as(typename Stored<T, S>::type* p, const T* r) {
    if constexpr (V == 4) {
        store4_half<S>(p, r);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) p[e] = S::from_float(r[e]);
    }
}

// Runs op(x) for every element of every chunk this block owns; x[l] holds the element of
// list l (L lists), and lists in WRITE (bit l) are stored back after op. List 1 (the
// gradients) is stored as G and only read. When H is a 16-bit format, the table has one more
// row, L: the model's low-precision copy of list 0, written as H(x[0]) after op (the float32
// master weight and the half parameter leave the same registers in one pass).
template <typename T, typename G, typename H, int L, unsigned WRITE, class Op>
__device__ __forceinline__ void multi_tensor(const i64* __restrict__ ptrs,
                                             const i64* __restrict__ chunks, int ntensors,
                                             int nchunks, Op&& op) {
    typedef typename Stored<T, G>::type GS;
    typedef typename Stored<T, H>::type HS;
    constexpr bool COPY = !Stored<T, H>::PLAIN;
    constexpr int V = Vec16<T>::N;
    for (int b = blockIdx.x; b < nchunks; b += gridDim.x) {
        const int j = (int)chunks[b];
        const i64 start = chunks[nchunks + b], n = chunks[2 * nchunks + b];
        T* __restrict__ a[L];
        unsigned long long bits = 0;
#pragma unroll
        for (int l = 0; l < L; ++l) {
            const i64 q = l == 1 ? 0 : ptrs[l * ntensors + j];
            a[l] = q ? reinterpret_cast<T*>(q) + start : nullptr;
            bits |= (unsigned long long)a[l];
        }
        const GS* __restrict__ g = reinterpret_cast<const GS*>(ptrs[ntensors + j]) + start;
        HS* __restrict__ h = nullptr;
        if constexpr (COPY) h = reinterpret_cast<HS*>(ptrs[L * ntensors + j]) + start;
        // every list aligned to its vector: 16 bytes of T, V * sizeof(G or H) bytes
        const bool aligned = (bits & 15) == 0 && ((unsigned long long)g & (V * sizeof(GS) - 1)) == 0
                             && ((unsigned long long)h & (V * sizeof(HS) - 1)) == 0;
        i64 done = 0;
        if (aligned) {
            const i64 nv = n / V;
            for (i64 v = threadIdx.x; v < nv; v += blockDim.x) {
                T r[L][V];
#pragma unroll
                for (int l = 0; l < L; ++l) {
                    if (l == 1) {
                        load_as<T, G, V>(g + v * V, r[1]);
                    } else if (a[l]) {
                        VecIO<T, V>::load(a[l] + v * V, r[l]);
                    } else {
#pragma unroll
                        for (int e = 0; e < V; ++e) r[l][e] = T(0);
                    }
                }
#pragma unroll
                for (int e = 0; e < V; ++e) {
                    T x[L];
#pragma unroll
                    for (int l = 0; l < L; ++l) x[l] = r[l][e];
                    op(x);
#pragma unroll
                    for (int l = 0; l < L; ++l) r[l][e] = x[l];
                }
#pragma unroll
                for (int l = 0; l < L; ++l)
                    if (((WRITE >> l) & 1u) && a[l]) VecIO<T, V>::store(a[l] + v * V, r[l]);
                if constexpr (COPY) store_as<T, H, V>(h + v * V, r[0]);
            }
            done = nv * V;
        }
        for (i64 i = done + threadIdx.x; i < n; i += blockDim.x) {
            T x[L];
#pragma unroll
            for (int l = 0; l < L; ++l) {
                if (l == 1) load_as<T, G, 1>(g + i, x + 1);
                else x[l] = a[l] ? a[l][i] : T(0);
            }
            op(x);
#pragma unroll
            for (int l = 0; l < L; ++l)
                if (((WRITE >> l) & 1u) && a[l]) a[l][i] = x[l];
            if constexpr (COPY) store_as<T, H, 1>(h + i, x);
        }
    }
}

// Overwrite the scalar parameters with dyn[0], dyn[1], ... when dyn is given.
template <typename T, typename... S>
__device__ __forceinline__ void scalars_from(const T* __restrict__ dyn, S&... s) {
    if (dyn) {
        int k = 0;
        ((s = dyn[k++]), ...);
    }
}

// grad after maximize and (L2) weight decay
template <typename T> __device__ __forceinline__ T effective_grad(T g, T p, T wd, int flags) {
    if (flags & OPT_MAXIMIZE) g = -g;
    if (flags & OPT_WEIGHT_DECAY) g = g + wd * p;
    return g;
}

// lists: 0 params, 1 grads, 2 momentum buffers
template <typename T, typename G = same, typename H = same>
__global__ void __launch_bounds__(256)
sgd_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                int nchunks, const T* __restrict__ dyn, T lr, T momentum,
                T one_minus_dampening, T weight_decay, int flags) {
    scalars_from(dyn, lr, momentum, one_minus_dampening, weight_decay);
    multi_tensor<T, G, H, 3, 0b101>(ptrs, chunks, ntensors, nchunks, [&](T* x) {
        const T pi = x[0];
        T d = effective_grad(x[1], pi, weight_decay, flags);
        if (flags & OPT_MOMENTUM) {
            T b = d;
            if (!(flags & OPT_FIRST_STEP)) b = x[2] * momentum + one_minus_dampening * d;
            x[2] = b;
            d = (flags & OPT_NESTEROV) ? d + momentum * b : b;
        }
        x[0] = pi - lr * d;
    });
}

// lists: 0 params, 1 grads, 2 exp_avg, 3 exp_avg_sq, 4 max_exp_avg_sq
template <typename T, typename G = same, typename H = same>
__global__ void __launch_bounds__(256)
adam_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                 int nchunks, const T* __restrict__ dyn, T step_size, T one_minus_beta1,
                 T beta2, T one_minus_beta2, T bias2_sqrt, T eps, T weight_decay,
                 T decay_factor, int flags) {
    scalars_from(dyn, step_size, one_minus_beta1, beta2, one_minus_beta2, bias2_sqrt, eps,
                 weight_decay, decay_factor);
    multi_tensor<T, G, H, 5, 0b11101>(ptrs, chunks, ntensors, nchunks, [&](T* x) {
        T pi = x[0], gi = x[1];
        if (flags & OPT_MAXIMIZE) gi = -gi;
        if (flags & OPT_WEIGHT_DECAY) {
            if (flags & OPT_DECOUPLED) pi = pi * decay_factor;  // decay_factor = 1 - lr * wd
            else gi = gi + weight_decay * pi;
        }
        const T mi = x[2] + one_minus_beta1 * (gi - x[2]);
        T vi = x[3] * beta2 + one_minus_beta2 * gi * gi;
        x[2] = mi;
        x[3] = vi;
        if (flags & OPT_AMSGRAD) {
            const T mx = x[4];
            vi = mx > vi ? mx : vi;
            x[4] = vi;
        }
        const T denom = d_sqrt(vi) / bias2_sqrt + eps;
        x[0] = pi - step_size * mi / denom;
    });
}

// lists: 0 params, 1 grads, 2 square_avg, 3 momentum_buffer, 4 grad_avg
template <typename T, typename G = same, typename H = same>
__global__ void __launch_bounds__(256)
rmsprop_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                    int nchunks, const T* __restrict__ dyn, T lr, T alpha, T one_minus_alpha,
                    T eps, T weight_decay, T momentum, int flags) {
    scalars_from(dyn, lr, alpha, one_minus_alpha, eps, weight_decay, momentum);
    multi_tensor<T, G, H, 5, 0b11101>(ptrs, chunks, ntensors, nchunks, [&](T* x) {
        const T pi = x[0];
        const T gi = effective_grad(x[1], pi, weight_decay, flags);
        const T s = x[2] * alpha + one_minus_alpha * gi * gi;
        x[2] = s;
        T avg;
        if (flags & OPT_CENTERED) {
            const T ga = x[4] + one_minus_alpha * (gi - x[4]);
            x[4] = ga;
            avg = d_sqrt(s - ga * ga) + eps;
        } else {
            avg = d_sqrt(s) + eps;
        }
        if (flags & OPT_MOMENTUM) {
            const T b = x[3] * momentum + gi / avg;
            x[3] = b;
            x[0] = pi - lr * b;
        } else {
            x[0] = pi - lr * gi / avg;
        }
    });
}

// lists: 0 params, 1 grads, 2 state_sum; clr = lr / (1 + (step - 1) * lr_decay)
template <typename T, typename G = same, typename H = same>
__global__ void __launch_bounds__(256)
adagrad_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                    int nchunks, const T* __restrict__ dyn, T clr, T eps, T weight_decay,
                    int flags) {
    scalars_from(dyn, clr, eps, weight_decay);
    multi_tensor<T, G, H, 3, 0b101>(ptrs, chunks, ntensors, nchunks, [&](T* x) {
        const T pi = x[0];
        const T gi = effective_grad(x[1], pi, weight_decay, flags);
        const T s = x[2] + gi * gi;
        x[2] = s;
        x[0] = pi - clr * gi / (d_sqrt(s) + eps);
    });
}

}  // namespace pydl
