// Softmax family along the last axis, and cross-entropy fused with log-softmax.
//
// softmax_forward:      y = exp(x - max) / sum(exp(x - max))
// softmax_backward:     gx = y * (gy - sum(gy * y))
// log_softmax_forward:  y = (x - m) - log(sum(exp(x - m))), m = max (0 if not finite)
// log_softmax_backward: gx = gy - exp(y) * sum(gy)
// cross_entropy_forward / _backward: the per-sample loss with class weights, ignore_index
//   and label smoothing, and its gradient, exactly as in pydl/backend/base.py; lse is the
//   row's logsumexp, computed once in forward and reused in backward.
//
// An array is viewed as (rows, C) with C its last dimension. Rows are independent: the
// threads take contiguous blocks of rows (parallel_blocks). Within a row every pass (max,
// exp-and-sum, scale) is a vectorized loop (omp simd reductions, exp_nonpos), compiled for
// AVX-512, AVX2 and the baseline (PYDL_CLONES); short rows (a few classes) are processed a
// block of rows at a time so that exp still runs as one long vector loop. Cross-entropy
// checks the targets before any work and returns the first bad row (or -1) for the wrapper
// to report.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

template <class T>
PYDL_INLINE T row_max(const T* x, index_t n) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (index_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// log(sum(exp(x - shift))), with shift = max(x), or 0 when the max is not finite (an all
// -inf row gives -inf, a NaN gives NaN, as the NumPy reference does). The logsumexp is
// log_sum + shift; log-softmax uses (x - shift) - log_sum, which stays exact for large x.
template <class T>
PYDL_INLINE T row_log_sum(const T* x, index_t n, T* shift_out) {
  T m = row_max(x, n);
  T shift = std::isfinite(m) ? m : T(0);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (index_t i = 0; i < n; ++i) s += exp_nonpos(x[i] - shift);
  *shift_out = shift;
  return std::log(s);
}

// Rows shorter than kShortRow (10 classes, say) take a blocked path: within a row the
// vector loops would be mostly remainder handling, so a block of rows is processed in
// passes: per-row shifts (short scalar loops), then exp over the whole block as one long
// vector loop, then per-row sums and scaling.
constexpr index_t kShortRow = 64;
constexpr index_t kBlock = 2048;  // elements per block of short rows

// The rows per block for rows of length n (n < kShortRow).
PYDL_INLINE index_t block_rows(index_t n) {
  return std::max<index_t>(kBlock / std::max<index_t>(n, 1), 1);
}

// e[r * n + c] = exp(x[r * n + c] - shift[r]) for `rows` rows.
template <class T>
PYDL_INLINE void block_exp(const T* x, const T* shift, T* __restrict e, index_t rows,
                           index_t n) {
  for (index_t r = 0; r < rows; ++r)
    for (index_t c = 0; c < n; ++c) e[r * n + c] = x[r * n + c] - shift[r];
#pragma omp simd
  for (index_t i = 0; i < rows * n; ++i) e[i] = exp_nonpos(e[i]);
}

template <class T>
PYDL_INLINE T finite_or_zero(T m) {
  return std::isfinite(m) ? m : T(0);
}

template <class T>
PYDL_INLINE T short_sum(const T* v, index_t n) {
  T s = 0;
  for (index_t c = 0; c < n; ++c) s += v[c];
  return s;
}

template <class T>
PYDL_CLONES void softmax_rows(const T* x, T* y, index_t r0, index_t r1, index_t n) {
  if (n < kShortRow) {
    T shift[kBlock];
    for (index_t b = r0; b < r1; b += block_rows(n)) {
      const index_t rows = std::min(block_rows(n), r1 - b);
      for (index_t r = 0; r < rows; ++r) shift[r] = row_max(x + (b + r) * n, n);
      block_exp(x + b * n, shift, y + b * n, rows, n);
      for (index_t r = 0; r < rows; ++r) {
        T* yr = y + (b + r) * n;
        const T inv = T(1) / short_sum(yr, n);
        for (index_t c = 0; c < n; ++c) yr[c] *= inv;
      }
    }
    return;
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const T m = row_max(xr, n);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (index_t i = 0; i < n; ++i) {
      T e = exp_nonpos(xr[i] - m);
      yr[i] = e;
      s += e;
    }
    const T inv = T(1) / s;
#pragma omp simd
    for (index_t i = 0; i < n; ++i) yr[i] *= inv;
  }
}

template <class T>
PYDL_CLONES void log_softmax_rows(const T* x, T* y, index_t r0, index_t r1, index_t n) {
  if (n < kShortRow) {
    T shift[kBlock], e[kBlock];
    for (index_t b = r0; b < r1; b += block_rows(n)) {
      const index_t rows = std::min(block_rows(n), r1 - b);
      for (index_t r = 0; r < rows; ++r) shift[r] = finite_or_zero(row_max(x + (b + r) * n, n));
      block_exp(x + b * n, shift, e, rows, n);
      for (index_t r = 0; r < rows; ++r) {
        const T log_sum = std::log(short_sum(e + r * n, n));
        const T* xr = x + (b + r) * n;
        T* yr = y + (b + r) * n;
        for (index_t c = 0; c < n; ++c) yr[c] = (xr[c] - shift[r]) - log_sum;
      }
    }
    return;
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T shift;
    const T log_sum = row_log_sum(xr, n, &shift);
#pragma omp simd
    for (index_t i = 0; i < n; ++i) yr[i] = (xr[i] - shift) - log_sum;
  }
}

template <class T>
PYDL_CLONES void softmax_backward_rows(const T* gy, const T* y, T* gx, index_t r0, index_t r1,
                                       index_t n) {
  for (index_t r = r0; r < r1; ++r) {
    const T *g = gy + r * n, *yr = y + r * n;
    T* o = gx + r * n;
    T dot = 0;
#pragma omp simd reduction(+ : dot)
    for (index_t i = 0; i < n; ++i) dot += g[i] * yr[i];
#pragma omp simd
    for (index_t i = 0; i < n; ++i) o[i] = yr[i] * (g[i] - dot);
  }
}

template <class T>
PYDL_CLONES void log_softmax_backward_rows(const T* gy, const T* y, T* gx, index_t r0,
                                           index_t r1, index_t n) {
  if (n < kShortRow) {  // exp(y) over the whole range as one vector loop, then per row
#pragma omp simd
    for (index_t i = r0 * n; i < r1 * n; ++i) gx[i] = exp_nonpos(y[i]);
    for (index_t r = r0; r < r1; ++r) {
      const T sum = short_sum(gy + r * n, n);
      for (index_t c = 0; c < n; ++c) gx[r * n + c] = gy[r * n + c] - gx[r * n + c] * sum;
    }
    return;
  }
  for (index_t r = r0; r < r1; ++r) {
    const T *g = gy + r * n, *yr = y + r * n;
    T* o = gx + r * n;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (index_t i = 0; i < n; ++i) sum += g[i];
#pragma omp simd
    for (index_t i = 0; i < n; ++i) o[i] = g[i] - exp_nonpos(yr[i]) * sum;
  }
}

// Hyperparameters of one cross-entropy call, in the compute dtype.
template <class T>
struct XentArgs {
  const T* logits;
  const std::int64_t* target;
  const T* weight;  // nullptr: every class weighs 1
  T* out;           // loss (N,) in forward, glogits (N, C) in backward
  const T* lse;     // input in backward, output (written through lse_out) in forward
  T* lse_out;
  const T* grad_loss;
  index_t C;
  std::int64_t ignore_index;
  T keep;         // 1 - label_smoothing
  T smooth;       // label_smoothing / C
  T weight_sum;   // sum_c w[c]
};

// The loss of row r given its logsumexp (0 for an ignored row).
template <class T>
PYDL_INLINE T xent_row_loss(const XentArgs<T>& a, index_t r, T lse) {
  const index_t n = a.C;
  const T* x = a.logits + r * n;
  const std::int64_t t = a.target[r];
  if (t == a.ignore_index) return T(0);
  const T wt = a.weight ? a.weight[t] : T(1);
  T loss = a.keep * (wt * (lse - x[t]));
  if (a.smooth != T(0)) {
    T s = 0;
    if (a.weight) {
#pragma omp simd reduction(+ : s)
      for (index_t c = 0; c < n; ++c) s += a.weight[c] * (lse - x[c]);
    } else {
#pragma omp simd reduction(+ : s)
      for (index_t c = 0; c < n; ++c) s += lse - x[c];
    }
    loss += a.smooth * s;
  }
  return loss;
}

template <class T>
PYDL_CLONES void xent_forward_rows(const XentArgs<T>& a, index_t r0, index_t r1) {
  const index_t n = a.C;
  if (n < kShortRow) {
    T shift[kBlock], e[kBlock];
    for (index_t b = r0; b < r1; b += block_rows(n)) {
      const index_t rows = std::min(block_rows(n), r1 - b);
      for (index_t r = 0; r < rows; ++r)
        shift[r] = finite_or_zero(row_max(a.logits + (b + r) * n, n));
      block_exp(a.logits + b * n, shift, e, rows, n);
      for (index_t r = 0; r < rows; ++r) {
        const T lse = std::log(short_sum(e + r * n, n)) + shift[r];
        a.lse_out[b + r] = lse;
        a.out[b + r] = xent_row_loss(a, b + r, lse);
      }
    }
    return;
  }
  for (index_t r = r0; r < r1; ++r) {
    T shift;
    const T lse = row_log_sum(a.logits + r * n, n, &shift) + shift;
    a.lse_out[r] = lse;
    a.out[r] = xent_row_loss(a, r, lse);
  }
}

// glogits of row r from its softmax p (which may be the output row itself).
template <class T>
PYDL_INLINE void xent_row_grad(const XentArgs<T>& a, index_t r, const T* p, T* o) {
  const index_t n = a.C;
  const std::int64_t t = a.target[r];
  if (t == a.ignore_index) {
    std::fill(o, o + n, T(0));
    return;
  }
  const T g = a.grad_loss[r], wt = a.weight ? a.weight[t] : T(1);
  const T scale = g * (a.keep * wt + a.smooth * a.weight_sum), gs = g * a.smooth;
  if (a.weight) {
#pragma omp simd
    for (index_t c = 0; c < n; ++c) o[c] = p[c] * scale - gs * a.weight[c];
  } else {
#pragma omp simd
    for (index_t c = 0; c < n; ++c) o[c] = p[c] * scale - gs;
  }
  o[t] -= g * a.keep * wt;
}

template <class T>
PYDL_CLONES void xent_backward_rows(const XentArgs<T>& a, index_t r0, index_t r1) {
  const index_t n = a.C;
  if (n < kShortRow) {  // softmax of a block of rows into the output, then each row's gradient
    for (index_t b = r0; b < r1; b += block_rows(n)) {
      const index_t rows = std::min(block_rows(n), r1 - b);
      block_exp(a.logits + b * n, a.lse + b, a.out + b * n, rows, n);
      for (index_t r = b; r < b + rows; ++r) xent_row_grad(a, r, a.out + r * n, a.out + r * n);
    }
    return;
  }
  for (index_t r = r0; r < r1; ++r) {
    const T* x = a.logits + r * n;
    T* o = a.out + r * n;
    const T lse = a.lse[r];
#pragma omp simd
    for (index_t c = 0; c < n; ++c) o[c] = exp_nonpos(x[c] - lse);
    xent_row_grad(a, r, o, o);
  }
}

index_t rows_of(const py::array& x) {
  const index_t n = x.ndim() ? x.shape(x.ndim() - 1) : 1;
  return n ? x.size() / n : 0;
}

// The four row-wise kernels share their checks and their parallel driver.
template <class Fn>
void row_kernel(const char* name, const py::array& in, py::array& out, Fn&& fn) {
  dispatch_float(in, name, [&](auto tag) {
    using T = decltype(tag);
    require<T>(in, "input", shape_of(in));
    require<T>(out, "output", shape_of(in), true);
    const index_t n = in.ndim() ? in.shape(in.ndim() - 1) : 1, rows = rows_of(in);
    const T* src = cptr<T>(in);
    T* dst = mptr<T>(out);
    py::gil_scoped_release release;
    parallel_blocks(rows, rows * n, [&](index_t r0, index_t r1) { fn(src, dst, r0, r1, n); });
  });
}

template <class Fn>
void row_backward_kernel(const char* name, const py::array& gy, const py::array& y,
                         py::array& gx, Fn&& fn) {
  dispatch_float(y, name, [&](auto tag) {
    using T = decltype(tag);
    require<T>(y, "y", shape_of(y));
    require<T>(gy, "gy", shape_of(y));
    require<T>(gx, "gx", shape_of(y), true);
    const index_t n = y.ndim() ? y.shape(y.ndim() - 1) : 1, rows = rows_of(y);
    const T *g = cptr<T>(gy), *yp = cptr<T>(y);
    T* o = mptr<T>(gx);
    py::gil_scoped_release release;
    parallel_blocks(rows, rows * n, [&](index_t r0, index_t r1) { fn(g, yp, o, r0, r1, n); });
  });
}

// Fills XentArgs from the Python arguments (the checks shared by forward and backward);
// returns the first row whose target is out of range and not ignored, or -1.
template <class T>
index_t xent_setup(XentArgs<T>& a, const py::array& logits, const py::array& target,
                   const py::object& weight, std::int64_t ignore_index, double label_smoothing) {
  require<T>(logits, "logits", {-1, -1});
  const index_t N = logits.shape(0), C = logits.shape(1);
  require<std::int64_t>(target, "target", {N});
  a.logits = cptr<T>(logits);
  a.target = cptr<std::int64_t>(target);
  a.weight = nullptr;
  a.weight_sum = T(C);
  if (!weight.is_none()) {
    auto w = py::reinterpret_borrow<py::array>(weight);
    require<T>(w, "weight", {C});
    a.weight = cptr<T>(w);
    a.weight_sum = 0;
    for (index_t c = 0; c < C; ++c) a.weight_sum += a.weight[c];
  }
  a.C = C;
  a.ignore_index = ignore_index;
  a.keep = T(1 - label_smoothing);
  a.smooth = C ? T(label_smoothing / double(C)) : T(0);
  for (index_t r = 0; r < N; ++r) {
    const std::int64_t t = a.target[r];
    if (t != ignore_index && (t < 0 || t >= C)) return r;
  }
  return -1;
}

}  // namespace

void softmax_forward(const py::array& x, py::array& y) {
  row_kernel("softmax_forward", x, y, [](auto* src, auto* dst, index_t r0, index_t r1,
                                          index_t n) { softmax_rows(src, dst, r0, r1, n); });
}

void log_softmax_forward(const py::array& x, py::array& y) {
  row_kernel("log_softmax_forward", x, y,
             [](auto* src, auto* dst, index_t r0, index_t r1, index_t n) {
               log_softmax_rows(src, dst, r0, r1, n);
             });
}

void softmax_backward(const py::array& gy, const py::array& y, py::array& gx) {
  row_backward_kernel("softmax_backward", gy, y, gx,
                      [](auto* g, auto* yp, auto* o, index_t r0, index_t r1, index_t n) {
                        softmax_backward_rows(g, yp, o, r0, r1, n);
                      });
}

void log_softmax_backward(const py::array& gy, const py::array& y, py::array& gx) {
  row_backward_kernel("log_softmax_backward", gy, y, gx,
                      [](auto* g, auto* yp, auto* o, index_t r0, index_t r1, index_t n) {
                        log_softmax_backward_rows(g, yp, o, r0, r1, n);
                      });
}

index_t cross_entropy_forward(const py::array& logits, const py::array& target,
                              const py::object& weight, std::int64_t ignore_index,
                              double label_smoothing, py::array& loss, py::array& lse) {
  return dispatch_float(logits, "cross_entropy_forward", [&](auto tag) -> index_t {
    using T = decltype(tag);
    XentArgs<T> a{};
    const index_t bad = xent_setup(a, logits, target, weight, ignore_index, label_smoothing);
    if (bad >= 0) return bad;
    const index_t N = logits.shape(0);
    require<T>(loss, "loss", {N}, true);
    require<T>(lse, "lse", {N}, true);
    a.out = mptr<T>(loss);
    a.lse_out = mptr<T>(lse);
    py::gil_scoped_release release;
    parallel_blocks(N, N * a.C, [&](index_t r0, index_t r1) { xent_forward_rows(a, r0, r1); });
    return -1;
  });
}

index_t cross_entropy_backward(const py::array& grad_loss, const py::array& logits,
                               const py::array& lse, const py::array& target,
                               const py::object& weight, std::int64_t ignore_index,
                               double label_smoothing, py::array& glogits) {
  return dispatch_float(logits, "cross_entropy_backward", [&](auto tag) -> index_t {
    using T = decltype(tag);
    XentArgs<T> a{};
    const index_t bad = xent_setup(a, logits, target, weight, ignore_index, label_smoothing);
    if (bad >= 0) return bad;
    const index_t N = logits.shape(0);
    require<T>(grad_loss, "grad_loss", {N});
    require<T>(lse, "lse", {N});
    require<T>(glogits, "glogits", {N, a.C}, true);
    a.grad_loss = cptr<T>(grad_loss);
    a.lse = cptr<T>(lse);
    a.out = mptr<T>(glogits);
    py::gil_scoped_release release;
    parallel_blocks(N, N * a.C, [&](index_t r0, index_t r1) { xent_backward_rows(a, r0, r1); });
    return -1;
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_softmax(py::module_& m) {
  using namespace py::literals;
  m.def("softmax_forward", &pydl::softmax_forward, "x"_a, "y"_a);
  m.def("softmax_backward", &pydl::softmax_backward, "gy"_a, "y"_a, "gx"_a);
  m.def("log_softmax_forward", &pydl::log_softmax_forward, "x"_a, "y"_a);
  m.def("log_softmax_backward", &pydl::log_softmax_backward, "gy"_a, "y"_a, "gx"_a);
  m.def("cross_entropy_forward", &pydl::cross_entropy_forward, "logits"_a, "target"_a,
        "weight"_a, "ignore_index"_a, "label_smoothing"_a, "loss"_a, "lse"_a);
  m.def("cross_entropy_backward", &pydl::cross_entropy_backward, "grad_loss"_a, "logits"_a,
        "lse"_a, "target"_a, "weight"_a, "ignore_index"_a, "label_smoothing"_a, "glogits"_a);
}

}  // namespace pydl
