// Helpers shared by the CPU kernels of pydl._C.
//
// - Argument checks: every kernel receives NumPy arrays that the Python wrapper
//   (pydl/backend/cpu/ext.py) already made C-contiguous and allocated; the checks here
//   only keep a wrong call from touching memory it does not own.
// - Dtype dispatch: one templated kernel body, instantiated for float and double.
// - parallel_blocks: splits a loop over the threads of the pool in parallel.cc.
// - PYDL_CLONES: compiles a hot loop three times, for AVX-512 (x86-64-v4), AVX2+FMA
//   (x86-64-v3) and the baseline, and picks one at load time (GCC/Clang target_clones), so
//   a default build is fast on modern CPUs and still runs everywhere.
// - inside / with_stride: the in-image range of a window tap, and strides 1 and 2 as
//   compile-time constants, for the convolution and pooling row loops.
// - exp_nonpos, sqrt_vec: branch-free exp (arguments <= 0) and sqrt that the compiler
//   vectorizes, where std::exp / std::sqrt would keep loops scalar.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
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
#define PYDL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PYDL_CLONES
#endif
#define PYDL_INLINE inline __attribute__((always_inline))

// Loops with less work than this (in elements) run on the calling thread: handing work to
// another thread costs a few microseconds.
constexpr index_t kParallelGrain = 1 << 15;

// parallel.cc: a small thread pool (see there for why it is not an OpenMP region).
using ChunkFn = void (*)(void* ctx, index_t begin, index_t end);
void parallel_for_chunks(index_t units, ChunkFn fn, void* ctx);
int num_threads();
void set_num_threads(int threads);  // 0: the default, omp_get_max_threads()

// Runs f(begin, end) over disjoint chunks that cover [0, units), on the pool's threads; every
// unit is processed by exactly one call. `work` is the total cost in elements: small loops
// stay on the calling thread. f must not throw.
template <class F>
void parallel_blocks(index_t units, index_t work, F&& f) {
  if (units <= 0) return;
  if (work < kParallelGrain || units == 1 || num_threads() == 1) {
    f(index_t{0}, units);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  parallel_for_chunks(
      units, [](void* ctx, index_t b, index_t e) { (*static_cast<Fn*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += (d ? ", " : "") + std::to_string(a.shape(d));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// Throws ValueError unless `a` is C-contiguous with dtype T, `ndim` dims and the given
// shape (a negative entry matches any length), and writeable when `write` is set.
template <class T>
void require(const py::array& a, const char* what, std::vector<index_t> shape,
             bool write = false) {
  bool ok = a.dtype().is(py::dtype::of<T>()) && (a.flags() & py::array::c_style) &&
            a.ndim() == static_cast<py::ssize_t>(shape.size()) && (!write || a.writeable());
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = shape[d] < 0 || a.shape(d) == shape[d];
  if (ok) return;
  std::string want = "(";
  for (size_t d = 0; d < shape.size(); ++d)
    want += (d ? ", " : "") + (shape[d] < 0 ? std::string("*") : std::to_string(shape[d]));
  want += shape.size() == 1 ? ",)" : ")";
  const std::string dtype = py::str(py::dtype::of<T>()).cast<std::string>();
  throw py::value_error(std::string("pydl._C: ") + what + " must be a C-contiguous " +
                        (write ? "writeable " : "") + dtype + " array of shape " + want +
                        ", got " + py::str(a.dtype()).cast<std::string>() + " " + shape_str(a));
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

// The outputs o in [lo, hi) of a length-`out` axis whose input o * stride + off is in [0, size).
PYDL_INLINE void inside(index_t off, index_t stride, index_t size, index_t out, index_t& lo,
                        index_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

// Calls f(std::integral_constant<int, S>) with S = the stride if it is 1 or 2, else 0: loops
// templated on S see a fixed access pattern for the common strides and vectorize.
template <class F>
void with_stride(index_t stride, F&& f) {
  if (stride == 1)
    f(std::integral_constant<int, 1>{});
  else if (stride == 2)
    f(std::integral_constant<int, 2>{});
  else
    f(std::integral_constant<int, 0>{});
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

// sqrt(x) with std::sqrt's results for 0, negatives, inf and NaN, within about 1 ulp
// elsewhere, as straight-line code that vectorizes under any compiler flags: std::sqrt keeps
// a branch to set errno (unless -fno-math-errno), which stops GCC from vectorizing the
// optimizer loops. 1/sqrt(x) is estimated from the bits, refined by Newton steps (error
// 1.8e-3, then 5e-6, 3e-11, 1e-21), and one Newton step on sqrt(x) itself fixes the last
// bits. Subnormal x are scaled into the normal range first.
template <class T, class U>
PYDL_INLINE T sqrt_newton(T x, U magic, U min_normal, T up, T down, int steps) {
  const U bx = bits<U>(x);
  const U sign = U(1) << (8 * sizeof(U) - 1);
  const U inf = bits<U>(std::numeric_limits<T>::infinity());
  const U special = mask_if<U>(bx - 1 >= inf - 1);  // +-0, negative, inf, NaN
  const U negative = mask_if<U>(bx > sign);          // below -0, NaN included
  const U tiny = mask_if<U>(bx < min_normal);
  const T xs = pick(tiny, x * up, x);
  T y = bits<T>(magic - (bits<U>(xs) >> 1));
  const T half = T(0.5) * xs;
  for (int i = 0; i < steps; ++i) y = y * (T(1.5) - half * y * y);
  T s = xs * y;
  s = s + T(0.5) * y * (xs - s * s);
  s = pick(tiny, s * down, s);
  return pick(special, pick(negative, std::numeric_limits<T>::quiet_NaN(), x), s);
}

PYDL_INLINE float sqrt_vec(float x) {
  return sqrt_newton<float, std::uint32_t>(x, 0x5f375a86u, 0x00800000u, 16777216.0f,
                                           1.0f / 4096.0f, 3);
}

PYDL_INLINE double sqrt_vec(double x) {
  return sqrt_newton<double, std::uint64_t>(x, 0x5fe6eb50c7b537a9ull, 0x0010000000000000ull,
                                            18014398509481984.0, 1.0 / 134217728.0, 3);
}

}  // namespace pydl
