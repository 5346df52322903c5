// optim.cu - fused, multi-tensor optimizer steps: sgd_step, adam_step (Adam / AdamW,
// AMSGrad), rmsprop_step, adagrad_step. In place; PyTorch's single-tensor semantics, with the
// operations in the order of pydl/backend/cpu/reference.py.
//
// One launch updates every tensor of a parameter list. The caller builds two device tables:
//   ptrs[l * ntensors + j]  address of tensor j of list l (params, grads, states...), 0 if absent
//   chunks[b], chunks[nchunks + b], chunks[2 * nchunks + b]
//                           tensor index, first element and length of the chunk of block b
// Launch: grid = nchunks (one block per chunk of at most CHUNK = 8192 elements of one
// tensor), 256 threads; thread t updates elements t, t + 256, ... of its block's chunk.
// Hyperparameters arrive already combined on the host (bias corrections, 1 - beta, ...) and
// cast to T, as NumPy does when it multiplies a T array by a Python float. They come as
// kernel arguments, or, when `dyn` is not null, from the device array dyn[0..k) in the order
// of the scalar parameters: a CUDA graph replays a launch with its arguments frozen, so a
// captured step reads the values that change per step (bias corrections, a scheduled lr)
// from memory the host rewrites before each replay (pydl/backend/cuda/graph.py).
#include "common.cuh"

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

// Pointer to tensor j of list l, advanced to this block's chunk, and the chunk length.
template <typename T> struct Chunk {
    const i64* ptrs;
    int ntensors, j;
    i64 start, n;
    __device__ __forceinline__ Chunk(const i64* ptrs_, const i64* chunks, int ntensors_, int nchunks)
        : ptrs(ptrs_), ntensors(ntensors_) {
        const int b = blockIdx.x;
        j = (int)chunks[b];
        start = chunks[nchunks + b];
        n = chunks[2 * nchunks + b];
    }
    __device__ __forceinline__ T* list(int l) const {
        const i64 p = ptrs[l * ntensors + j];
        return p ? reinterpret_cast<T*>(p) + start : nullptr;
    }
};

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
template <typename T>
__global__ void __launch_bounds__(256)
sgd_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                int nchunks, const T* __restrict__ dyn, T lr, T momentum,
                T one_minus_dampening, T weight_decay, int flags) {
    const Chunk<T> ck(ptrs, chunks, ntensors, nchunks);
    scalars_from(dyn, lr, momentum, one_minus_dampening, weight_decay);
    T* p = ck.list(0);
    const T* g = ck.list(1);
    T* buf = ck.list(2);
    for (i64 i = threadIdx.x; i < ck.n; i += blockDim.x) {
        const T pi = p[i];
        T d = effective_grad(g[i], pi, weight_decay, flags);
        if (flags & OPT_MOMENTUM) {
            T b = d;
            if (!(flags & OPT_FIRST_STEP)) b = buf[i] * momentum + one_minus_dampening * d;
            buf[i] = b;
            d = (flags & OPT_NESTEROV) ? d + momentum * b : b;
        }
        p[i] = pi - lr * d;
    }
}

// lists: 0 params, 1 grads, 2 exp_avg, 3 exp_avg_sq, 4 max_exp_avg_sq
template <typename T>
__global__ void __launch_bounds__(256)
adam_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                 int nchunks, const T* __restrict__ dyn, T step_size, T one_minus_beta1,
                 T beta2, T one_minus_beta2, T bias2_sqrt, T eps, T weight_decay,
                 T decay_factor, int flags) {
    const Chunk<T> ck(ptrs, chunks, ntensors, nchunks);
    scalars_from(dyn, step_size, one_minus_beta1, beta2, one_minus_beta2, bias2_sqrt, eps,
                 weight_decay, decay_factor);
    T* p = ck.list(0);
    const T* g = ck.list(1);
    T* m = ck.list(2);
    T* v = ck.list(3);
    T* vmax = ck.list(4);
    for (i64 i = threadIdx.x; i < ck.n; i += blockDim.x) {
        T pi = p[i], gi = g[i];
        if (flags & OPT_MAXIMIZE) gi = -gi;
        if (flags & OPT_WEIGHT_DECAY) {
            if (flags & OPT_DECOUPLED) pi = pi * decay_factor;  // decay_factor = 1 - lr * wd
            else gi = gi + weight_decay * pi;
        }
        const T mi = m[i] + one_minus_beta1 * (gi - m[i]);
        T vi = v[i] * beta2 + one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        if (flags & OPT_AMSGRAD) {
            const T mx = vmax[i];
            vi = mx > vi ? mx : vi;
            vmax[i] = vi;
        }
        const T denom = d_sqrt(vi) / bias2_sqrt + eps;
        p[i] = pi - step_size * mi / denom;
    }
}

// lists: 0 params, 1 grads, 2 square_avg, 3 momentum_buffer, 4 grad_avg
template <typename T>
__global__ void __launch_bounds__(256)
rmsprop_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                    int nchunks, const T* __restrict__ dyn, T lr, T alpha, T one_minus_alpha,
                    T eps, T weight_decay, T momentum, int flags) {
    const Chunk<T> ck(ptrs, chunks, ntensors, nchunks);
    scalars_from(dyn, lr, alpha, one_minus_alpha, eps, weight_decay, momentum);
    T* p = ck.list(0);
    const T* g = ck.list(1);
    T* sq = ck.list(2);
    T* buf = ck.list(3);
    T* gavg = ck.list(4);
    for (i64 i = threadIdx.x; i < ck.n; i += blockDim.x) {
        const T pi = p[i];
        const T gi = effective_grad(g[i], pi, weight_decay, flags);
        const T s = sq[i] * alpha + one_minus_alpha * gi * gi;
        sq[i] = s;
        T avg;
        if (flags & OPT_CENTERED) {
            const T ga = gavg[i] + one_minus_alpha * (gi - gavg[i]);
            gavg[i] = ga;
            avg = d_sqrt(s - ga * ga) + eps;
        } else {
            avg = d_sqrt(s) + eps;
        }
        if (flags & OPT_MOMENTUM) {
            const T b = buf[i] * momentum + gi / avg;
            buf[i] = b;
            p[i] = pi - lr * b;
        } else {
            p[i] = pi - lr * gi / avg;
        }
    }
}

// lists: 0 params, 1 grads, 2 state_sum; clr = lr / (1 + (step - 1) * lr_decay)
template <typename T>
__global__ void __launch_bounds__(256)
adagrad_step_kernel(const i64* __restrict__ ptrs, const i64* __restrict__ chunks, int ntensors,
                    int nchunks, const T* __restrict__ dyn, T clr, T eps, T weight_decay,
                    int flags) {
    const Chunk<T> ck(ptrs, chunks, ntensors, nchunks);
    scalars_from(dyn, clr, eps, weight_decay);
    T* p = ck.list(0);
    const T* g = ck.list(1);
    T* ssum = ck.list(2);
    for (i64 i = threadIdx.x; i < ck.n; i += blockDim.x) {
        const T pi = p[i];
        const T gi = effective_grad(g[i], pi, weight_decay, flags);
        const T s = ssum[i] + gi * gi;
        ssum[i] = s;
        p[i] = pi - clr * gi / (d_sqrt(s) + eps);
    }
}

}  // namespace pydl
