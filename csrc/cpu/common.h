// Helpers shared by the CPU kernels of pydl._C.
//
// - Argument checks: every kernel receives NumPy arrays that the Python wrapper
//   (pydl/backend/cpu_ext.py) already made C-contiguous and allocated; the checks here
//   only keep a wrong call from touching memory it does not own.
// - Dtype dispatch: one templated kernel body, instantiated for float and double.
// - PYDL_CLONES: compiles a hot loop twice, for AVX2+FMA (x86-64-v3) and for the baseline,
//   and picks one at load time (GCC/Clang target_clones), so a default build is fast on
//   modern CPUs and still runs everywhere.
// - exp_nonpos: a branch-free exp for arguments <= 0 that the compiler vectorizes.
#pragma once

#include <omp.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace pydl {

namespace py = pybind11;
using index_t = std::int64_t;

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define PYDL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PYDL_CLONES
#endif
#define PYDL_INLINE inline __attribute__((always_inline))

// Loops with less work than this run on one thread: waking the OpenMP team costs more.
constexpr index_t kParallelGrain = 1 << 15;

// Runs f(begin, end) over [0, units) split into one contiguous block per OpenMP thread
// (static schedule: the blocks are equal, and every unit is written by exactly one thread).
// `work` is the total cost in elements; small loops stay on the calling thread.
template <class F>
void parallel_blocks(index_t units, index_t work, F&& f) {
  if (units <= 0) return;
  if (work < kParallelGrain || units == 1 || omp_get_max_threads() == 1) {
    f(index_t{0}, units);
    return;
  }
#pragma omp parallel
  {
    const index_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const index_t begin = units * t / nt, end = units * (t + 1) / nt;
    if (begin < end) f(begin, end);
  }
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Throws ValueError unless `a` is C-contiguous with dtype T, `ndim` dims and the given
// shape (a negative entry matches any length), and writeable when `write` is set.
template <class T>
void require(const py::array& a, const char* what, std::vector<index_t> shape, bool write = false) {
  bool ok = a.dtype().is(py::dtype::of<T>()) && (a.flags() & py::array::c_style) &&
            a.ndim() == static_cast<py::ssize_t>(shape.size()) && (!write || a.writeable());
  for (size_t d = 0; ok && d < shape.size(); ++d)
    ok = shape[d] < 0 || a.shape(d) == shape[d];
  if (!ok) {
    std::string want = "(";
    for (size_t d = 0; d < shape.size(); ++d)
      want += (d ? ", " : "") + (shape[d] < 0 ? std::string("*") : std::to_string(shape[d]));
    throw py::value_error(std::string("pydl._C: ") + what + " must be a C-contiguous " +
                          (write ? "writeable " : "") + py::str(py::dtype::of<T>()).cast<std::string>() +
                          " array of shape " + want + (shape.size() == 1 ? ",)" : ")") + ", got " +
                          py::str(a.dtype()).cast<std::string>() + " " + shape_str(a));
  }
}

inline std::vector<index_t> shape_of(const py::array& a) {
  return std::vector<index_t>(a.shape(), a.shape() + a.ndim());
}

template <class T>
const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T>
T* mptr(py::array& a) { return static_cast<T*>(a.mutable_data()); }

// Calls f(T{}) with T = float or double, after the dtype of `a`.
template <class F>
decltype(auto) dispatch_float(const py::array& a, const char* name, F&& f) {
  if (a.dtype().is(py::dtype::of<float>())) return f(float{});
  if (a.dtype().is(py::dtype::of<double>())) return f(double{});
  throw py::type_error(std::string("pydl._C.") + name + ": expected float32 or float64, got " +
                       py::str(a.dtype()).cast<std::string>());
}

template <class To, class From>
PYDL_INLINE To bits(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}

// exp(x) for x <= 0, to about 1 ulp; 0 below the smallest normal result; NaN stays NaN.
// Arguments above 0 are accurate up to the clamp (80 for float, 700 for double), where the
// result saturates; callers pass x - max(x) or log-probabilities, which are <= 0.
// x = k ln2 + r with |r| <= ln2 / 2; exp(r) is a polynomial; 2^k is built in the exponent
// bits. Rounding x / ln2 with the 1.5 * 2^mantissa "magic" addition leaves k in the low bits
// of the sum, so no float-to-int conversion is needed.
// The body is straight-line code: range tests compare the bit patterns as integers and the
// selects are bit masks. Float compares and ternaries may trap (on NaN) in GCC's model, and
// then it keeps branches and refuses to vectorize the calling loops.
template <class U>
PYDL_INLINE U mask_if(bool cond) {
  return U(0) - U(cond);
}

template <class T, class U>
PYDL_INLINE T pick(U mask, T a, T b) {  // mask ? a : b, per bit
  return bits<T>((bits<U>(a) & mask) | (bits<U>(b) & ~mask));
}

template <class T, class U>
struct ExpRange {
  U nan, under, over;  // all-ones masks: x is NaN; x < lo (or -inf); x > hi
};

template <class T, class U>
PYDL_INLINE ExpRange<T, U> exp_range(T x, T lo, T hi) {
  const U bx = bits<U>(x);
  const U mag = bx & (~U(0) >> 1);
  const bool negative = (bx >> (8 * sizeof(U) - 1)) != 0;
  const U inf = bits<U>(std::numeric_limits<T>::infinity());
  return {mask_if<U>(mag > inf), mask_if<U>(negative & (mag > bits<U>(-lo))),
          mask_if<U>(!negative & (mag > bits<U>(hi)))};
}

PYDL_INLINE float exp_nonpos(float x) {
  using U = std::uint32_t;
  const float lo = -87.33f, hi = 80.0f;
  const auto m = exp_range<float, U>(x, lo, hi);
  const float xc = pick(m.nan, 0.0f, pick(m.over, hi, pick(m.under, lo, x)));
  const float magic = 12582912.0f;  // 1.5 * 2^23
  const float t = xc * 1.44269504088896341f + magic;
  const float k = t - magic;
  float r = xc - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const float y = p * bits<float>((bits<U>(t) + 127u) << 23);
  return pick(m.nan, x, pick(m.under, 0.0f, y));
}

PYDL_INLINE double exp_nonpos(double x) {
  using U = std::uint64_t;
  const double lo = -708.39, hi = 700.0;
  const auto m = exp_range<double, U>(x, lo, hi);
  const double xc = pick(m.nan, 0.0, pick(m.over, hi, pick(m.under, lo, x)));
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = xc * 1.4426950408889634 + magic;
  const double k = t - magic;
  double r = xc - k * 6.93147180369123816490e-01;
  r = r - k * 1.90821492927058770002e-10;
  // Taylor series to r^13: |r| <= 0.347, so the truncation error is below 1e-17.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  const double y = p * bits<double>((bits<U>(t) + 1023u) << 52);
  return pick(m.nan, x, pick(m.under, 0.0, y));
}

}  // namespace pydl
