// Fused, multi-tensor optimizer steps, in place: SGD (momentum, dampening, Nesterov),
// Adam / AdamW (AMSGrad), RMSprop (centered, momentum) and Adagrad (lr decay), each with
// weight decay and maximize, following torch.optim's single-tensor code line by line (see
// the NumPy reference in pydl/backend/cpu/reference.py).
//
// One call updates a whole list of parameters: every tensor is cut into chunks of 16K
// elements, and the threads (parallel_blocks) share the combined list of chunks, so a model
// of many small tensors and one of a few big ones both keep every thread busy. Each
// element is read and written exactly once per step (the fusion: the reference makes a
// temporary per arithmetic operation). The per-chunk loops are vectorized and compiled for
// AVX-512, AVX2+FMA and the baseline (PYDL_CLONES); options that decide which state arrays
// exist are template parameters, the others are loop-invariant selects. Square roots use
// sqrt_vec (common.h): std::sqrt would keep these loops scalar unless built with
// -fno-math-errno.
//
// Each entry point returns false, having touched nothing, when an array is not a
// C-contiguous writeable array of the parameters' dtype and size; the Python wrapper then
// runs the reference, which handles any layout.
#include <algorithm>
#include <cmath>
#include <tuple>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

constexpr index_t kChunk = 1 << 14;
constexpr int kMaxStates = 3;

template <class T>
struct Slot {
  T* p;
  const T* g;
  T* s[kMaxStates];
  index_t n;
};

template <class T>
bool array_of(py::handle h, index_t n, bool write, T** out) {
  // array_t<T, c_style> checks an equivalent dtype (native byte order) and C-contiguity
  if (!py::isinstance<py::array_t<T, py::array::c_style>>(h)) return false;
  auto a = py::reinterpret_borrow<py::array>(h);
  if (a.size() != n || (write && !a.writeable()))
    return false;
  *out = static_cast<T*>(const_cast<void*>(a.data()));
  return true;
}

// Gathers raw pointers for every parameter; `states` lists the state sequences to use
// (nullptr for one this call does not need). False when anything is ineligible.
template <class T>
bool collect(const py::sequence& params, const py::sequence& grads,
             std::vector<const py::object*> states, std::vector<Slot<T>>& slots) {
  const size_t count = params.size();
  if (grads.size() != count) return false;
  for (const py::object* st : states)
    if (st && (!py::isinstance<py::sequence>(*st) || py::len(*st) != count)) return false;
  slots.resize(count);
  for (size_t i = 0; i < count; ++i) {
    Slot<T>& s = slots[i];
    py::handle p = params[i];
    if (!py::isinstance<py::array>(p)) return false;
    s.n = py::reinterpret_borrow<py::array>(p).size();
    T* g = nullptr;
    if (!array_of<T>(p, s.n, true, &s.p) || !array_of<T>(grads[i], s.n, false, &g)) return false;
    s.g = g;
    for (int k = 0; k < kMaxStates; ++k) {
      s.s[k] = nullptr;
      if (k < static_cast<int>(states.size()) && states[k] &&
          !array_of<T>(py::reinterpret_borrow<py::sequence>(*states[k])[i], s.n, true, &s.s[k]))
        return false;
    }
  }
  return true;
}

// Runs fn(slot, begin, end) over every chunk of every tensor, in parallel.
template <class T, class Fn>
void run_chunks(const std::vector<Slot<T>>& slots, Fn&& fn) {
  std::vector<std::tuple<index_t, index_t, index_t>> chunks;
  index_t total = 0;
  for (index_t i = 0; i < static_cast<index_t>(slots.size()); ++i) {
    for (index_t b = 0; b < slots[i].n; b += kChunk)
      chunks.emplace_back(i, b, std::min(slots[i].n, b + kChunk));
    total += slots[i].n;
  }
  py::gil_scoped_release release;
  parallel_blocks(static_cast<index_t>(chunks.size()), total, [&](index_t c0, index_t c1) {
    for (index_t k = c0; k < c1; ++k) {
      const auto& [i, b, e] = chunks[k];
      fn(slots[i], b, e);
    }
  });
}

// Calls f(T{}) for the parameters' dtype; false when the first parameter is not an array of
// float32 or float64 (an empty list is trivially done).
template <class F>
bool with_param_dtype(const py::sequence& params, F&& f) {
  if (params.size() == 0) return true;
  py::handle p0 = params[0];
  if (!py::isinstance<py::array>(p0)) return false;
  auto a = py::reinterpret_borrow<py::array>(p0);
  if (py::isinstance<py::array_t<float>>(a)) return f(float{});
  if (py::isinstance<py::array_t<double>>(a)) return f(double{});
  return false;
}

// ---------------------------------------------------------------------------- SGD

template <class T>
struct SgdHyper {
  T lr, momentum, keep, weight_decay, sign;  // keep = 1 - dampening, sign = -1 to maximize
  bool nesterov, first_step;
};

template <class T, bool Momentum>
PYDL_CLONES void sgd_range(const Slot<T>& s, index_t b, index_t e, const SgdHyper<T>& h) {
  T* __restrict p = s.p;
  const T* __restrict g = s.g;
  T* __restrict buf = s.s[0];
  const bool decay = h.weight_decay != T(0);
#pragma omp simd
  for (index_t i = b; i < e; ++i) {
    T d = h.sign * g[i];
    d = decay ? d + h.weight_decay * p[i] : d;
    if constexpr (Momentum) {
      const T m = h.first_step ? d : buf[i] * h.momentum + h.keep * d;
      buf[i] = m;
      d = h.nesterov ? d + h.momentum * m : m;
    }
    p[i] -= h.lr * d;
  }
}

// ---------------------------------------------------------------------------- Adam / AdamW

template <class T>
struct AdamHyper {
  T one_minus_beta1, beta2, one_minus_beta2, eps, l2, decay, step_size, bias2_sqrt, sign;
};

template <class T, bool Amsgrad>
PYDL_CLONES void adam_range(const Slot<T>& s, index_t b, index_t e, const AdamHyper<T>& h) {
  T* __restrict p = s.p;
  const T* __restrict g = s.g;
  T* __restrict m = s.s[0];
  T* __restrict v = s.s[1];
  T* __restrict vmax = s.s[2];
  const bool l2 = h.l2 != T(0), decoupled = h.decay != T(1);
#pragma omp simd
  for (index_t i = b; i < e; ++i) {
    const T pi = decoupled ? p[i] * h.decay : p[i];
    T gi = h.sign * g[i];
    gi = l2 ? gi + h.l2 * pi : gi;
    const T mi = m[i] + h.one_minus_beta1 * (gi - m[i]);
    m[i] = mi;
    T vi = v[i] * h.beta2 + h.one_minus_beta2 * gi * gi;
    v[i] = vi;
    if constexpr (Amsgrad) {
      vi = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vi;
    }
    const T denom = sqrt_vec(vi) / h.bias2_sqrt + h.eps;
    p[i] = pi - h.step_size * mi / denom;
  }
}

// ---------------------------------------------------------------------------- RMSprop

template <class T>
struct RmspropHyper {
  T lr, alpha, one_minus_alpha, eps, weight_decay, momentum, sign;
};

template <class T, bool Momentum, bool Centered>
PYDL_CLONES void rmsprop_range(const Slot<T>& s, index_t b, index_t e,
                               const RmspropHyper<T>& h) {
  T* __restrict p = s.p;
  const T* __restrict g = s.g;
  T* __restrict sq = s.s[0];
  T* __restrict buf = s.s[1];
  T* __restrict ga = s.s[2];
  const bool decay = h.weight_decay != T(0);
#pragma omp simd
  for (index_t i = b; i < e; ++i) {
    T gi = h.sign * g[i];
    gi = decay ? gi + h.weight_decay * p[i] : gi;
    const T si = sq[i] * h.alpha + h.one_minus_alpha * gi * gi;
    sq[i] = si;
    T avg;
    if constexpr (Centered) {
      const T a = ga[i] + h.one_minus_alpha * (gi - ga[i]);
      ga[i] = a;
      avg = sqrt_vec(si - a * a) + h.eps;
    } else {
      avg = sqrt_vec(si) + h.eps;
    }
    if constexpr (Momentum) {
      const T m = buf[i] * h.momentum + gi / avg;
      buf[i] = m;
      p[i] -= h.lr * m;
    } else {
      p[i] -= h.lr * gi / avg;
    }
  }
}

// ---------------------------------------------------------------------------- Adagrad

template <class T>
struct AdagradHyper {
  T clr, weight_decay, eps, sign;
};

template <class T>
PYDL_CLONES void adagrad_range(const Slot<T>& s, index_t b, index_t e, const AdagradHyper<T>& h) {
  T* __restrict p = s.p;
  const T* __restrict g = s.g;
  T* __restrict sum = s.s[0];
  const bool decay = h.weight_decay != T(0);
#pragma omp simd
  for (index_t i = b; i < e; ++i) {
    T gi = h.sign * g[i];
    gi = decay ? gi + h.weight_decay * p[i] : gi;
    const T si = sum[i] + gi * gi;
    sum[i] = si;
    p[i] -= h.clr * gi / (sqrt_vec(si) + h.eps);
  }
}

}  // namespace

bool sgd_step(const py::sequence& params, const py::sequence& grads,
              const py::object& momentum_bufs, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize, bool first_step) {
  return with_param_dtype(params, [&](auto tag) {
    using T = decltype(tag);
    std::vector<Slot<T>> slots;
    const bool use_momentum = momentum != 0;
    if (!collect<T>(params, grads, {use_momentum ? &momentum_bufs : nullptr}, slots))
      return false;
    const SgdHyper<T> h{T(lr),           T(momentum), T(1 - dampening), T(weight_decay),
                        T(maximize ? -1 : 1), nesterov,   first_step};
    if (use_momentum)
      run_chunks(slots, [&](const Slot<T>& s, index_t b, index_t e) {
        sgd_range<T, true>(s, b, e, h);
      });
    else
      run_chunks(slots, [&](const Slot<T>& s, index_t b, index_t e) {
        sgd_range<T, false>(s, b, e, h);
      });
    return true;
  });
}

bool adam_step(const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
               const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs, double lr,
               double beta1, double beta2, double eps, double weight_decay, std::int64_t step,
               bool amsgrad, bool decoupled_weight_decay, bool maximize) {
  return with_param_dtype(params, [&](auto tag) {
    using T = decltype(tag);
    std::vector<Slot<T>> slots;
    if (!collect<T>(params, grads, {&exp_avgs, &exp_avg_sqs, amsgrad ? &max_exp_avg_sqs : nullptr},
                    slots))
      return false;
    const bool decoupled = decoupled_weight_decay && weight_decay != 0;
    const AdamHyper<T> h{T(1 - beta1),
                         T(beta2),
                         T(1 - beta2),
                         T(eps),
                         T(decoupled ? 0.0 : weight_decay),
                         T(decoupled ? 1 - lr * weight_decay : 1.0),
                         T(lr / (1 - std::pow(beta1, double(step)))),
                         T(sqrt_vec(1 - std::pow(beta2, double(step)))),
                         T(maximize ? -1 : 1)};
    if (amsgrad)
      run_chunks(slots, [&](const Slot<T>& s, index_t b, index_t e) {
        adam_range<T, true>(s, b, e, h);
      });
    else
      run_chunks(slots, [&](const Slot<T>& s, index_t b, index_t e) {
        adam_range<T, false>(s, b, e, h);
      });
    return true;
  });
}

bool rmsprop_step(const py::sequence& params, const py::sequence& grads,
                  const py::object& square_avgs, const py::object& momentum_bufs,
                  const py::object& grad_avgs, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize) {
  return with_param_dtype(params, [&](auto tag) {
    using T = decltype(tag);
    std::vector<Slot<T>> slots;
    const bool use_momentum = momentum > 0;
    if (!collect<T>(params, grads,
                    {&square_avgs, use_momentum ? &momentum_bufs : nullptr,
                     centered ? &grad_avgs : nullptr},
                    slots))
      return false;
    const RmspropHyper<T> h{T(lr),           T(alpha),    T(1 - alpha),        T(eps),
                            T(weight_decay), T(momentum), T(maximize ? -1 : 1)};
    auto run = [&](auto mom, auto cen) {
      run_chunks(slots, [&](const Slot<T>& s, index_t b, index_t e) {
        rmsprop_range<T, decltype(mom)::value, decltype(cen)::value>(s, b, e, h);
      });
    };
    using Yes = std::true_type;
    using No = std::false_type;
    if (use_momentum && centered) run(Yes{}, Yes{});
    else if (use_momentum) run(Yes{}, No{});
    else if (centered) run(No{}, Yes{});
    else run(No{}, No{});
    return true;
  });
}

bool adagrad_step(const py::sequence& params, const py::sequence& grads,
                  const py::object& state_sums, double lr, double lr_decay, double weight_decay,
                  double eps, std::int64_t step, bool maximize) {
  return with_param_dtype(params, [&](auto tag) {
    using T = decltype(tag);
    std::vector<Slot<T>> slots;
    if (!collect<T>(params, grads, {&state_sums}, slots)) return false;
    const AdagradHyper<T> h{T(lr / (1 + double(step - 1) * lr_decay)), T(weight_decay), T(eps),
                            T(maximize ? -1 : 1)};
    run_chunks(slots, [&](const Slot<T>& s, index_t b, index_t e) {
      adagrad_range<T>(s, b, e, h);
    });
    return true;
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_optim(py::module_& m) {
  using namespace py::literals;
  m.def("sgd_step", &pydl::sgd_step, "params"_a, "grads"_a, "momentum_bufs"_a, "lr"_a,
        "momentum"_a, "dampening"_a, "weight_decay"_a, "nesterov"_a, "maximize"_a,
        "first_step"_a);
  m.def("adam_step", &pydl::adam_step, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a,
        "max_exp_avg_sqs"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "weight_decay"_a, "step"_a,
        "amsgrad"_a, "decoupled_weight_decay"_a, "maximize"_a);
  m.def("rmsprop_step", &pydl::rmsprop_step, "params"_a, "grads"_a, "square_avgs"_a,
        "momentum_bufs"_a, "grad_avgs"_a, "lr"_a, "alpha"_a, "eps"_a, "weight_decay"_a,
        "momentum"_a, "centered"_a, "maximize"_a);
  m.def("adagrad_step", &pydl::adagrad_step, "params"_a, "grads"_a, "state_sums"_a, "lr"_a,
        "lr_decay"_a, "weight_decay"_a, "eps"_a, "step"_a, "maximize"_a);
}

}  // namespace pydl
