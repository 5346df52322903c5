// Elementwise activations whose NumPy form is slow: the error function and GELU.
//
// erf:           y = erf(x)
// gelu_forward:  cdf = Phi(x) = 0.5 * (1 + erf(x / sqrt(2))),  y = x * cdf
// gelu_backward: gx = gy * (cdf + x * phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
//                (tanh form: cdf = 0.5 * (1 + t), t = tanh(u), u = sqrt(2/pi) (x + c x^3),
//                 gx = gy * (cdf + 2 x cdf (1 - cdf) du/dx), as 1 - t^2 = 4 cdf (1 - cdf))
// Forward keeps the CDF for backward, so backward needs one exp and no erf. The tanh
// form's forward stays with the NumPy reference (its tanh is vectorized there); only its
// backward, plain arithmetic on the saved CDF, is here.
//
// erf_vec is FDLIBM's s_erf.c (the method and coefficients of pydl/functions/_special.py,
// Copyright (C) 1993 by Sun Microsystems, Inc., freely redistributable with this notice)
// as straight-line code: every element evaluates the three ranges' rational functions and
// keeps one by bit masks, with exp_nonpos for the exponentials, so the loops vectorize
// (std::erf is a scalar libm call). In double this is FDLIBM's accuracy (about 1 ulp);
// in float the same rational functions run in float arithmetic, a few float ulp, and the
// exact-square split of x^2 clears the low 12 mantissa bits instead of 32.
// Elements are independent: large arrays are split over the pool (parallel_blocks).
#include <cmath>
#include <cstdint>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

// Coefficients in ascending order (c[0] + c[1] t + ...), as in _special.py.
constexpr double kErx = 8.45062911510467529297e-01;
constexpr double kPP[] = {1.28379167095512558561e-01, -3.25042107247001499370e-01,
                          -2.84817495755985104766e-02, -5.77027029648944159157e-03,
                          -2.37630166566501626084e-05};
constexpr double kQQ[] = {1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02,
                          5.08130628187576562776e-03, 1.32494738004321644526e-04,
                          -3.96022827877536812320e-06};
constexpr double kPA[] = {-2.36211856075265944077e-03, 4.14856118683748331666e-01,
                          -3.72207876035701323847e-01, 3.18346619901161753674e-01,
                          -1.10894694282396677476e-01, 3.54783043256182359371e-02,
                          -2.16637559486879084300e-03};
constexpr double kQA[] = {1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01,
                          7.18286544141962662868e-02, 1.26171219808761642112e-01,
                          1.36370839120290507362e-02, 1.19844998467991074170e-02};
// erfc on [1.25, 1/0.35] (RA, SA) and [1/0.35, 6] (RB, SB); RB and SB padded with a zero
// top coefficient so that one Horner loop serves both, with per-element coefficients.
constexpr double kRA[] = {-9.86494403484714822705e-03, -6.93858572707181764372e-01,
                          -1.05586262253232909814e+01, -6.23753324503260060396e+01,
                          -1.62396669462573470355e+02, -1.84605092906711035994e+02,
                          -8.12874355063065934246e+01, -9.81432934416914548592e+00};
constexpr double kRB[] = {-9.86494292470009928597e-03, -7.99283237680523006574e-01,
                          -1.77579549177547519889e+01, -1.60636384855821916062e+02,
                          -6.37566443368389627722e+02, -1.02509513161107724954e+03,
                          -4.83519191608651397019e+02, 0.0};
constexpr double kSA[] = {1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02,
                          4.34565877475229228821e+02, 6.45387271733267880336e+02,
                          4.29008140027567833386e+02, 1.08635005541779435134e+02,
                          6.57024977031928170135e+00, -6.04244152148580987438e-02};
constexpr double kSB[] = {1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02,
                          1.53672958608443695994e+03, 3.19985821950859553908e+03,
                          2.55305040643316442583e+03, 4.74528541206955367215e+02,
                          -2.24409524465858183362e+01, 0.0};

template <class T, int N>
PYDL_INLINE T horner(const double (&c)[N], T t) {
  T acc = T(c[N - 1]);
  for (int i = N - 2; i >= 0; --i) acc = acc * t + T(c[i]);
  return acc;
}

// Horner with coefficient i = first ? a[i] : b[i], the choice made per element by a mask.
template <class T, class U, int N>
PYDL_INLINE T horner_pick(U first, const double (&a)[N], const double (&b)[N], T t) {
  T acc = pick(first, T(a[N - 1]), T(b[N - 1]));
  for (int i = N - 2; i >= 0; --i) acc = acc * t + pick(first, T(a[i]), T(b[i]));
  return acc;
}

template <class T>
struct ErfBits;
template <>
struct ErfBits<float> {
  using U = std::uint32_t;
  static constexpr U kHigh = 0xfffff000u;  // x with these bits only: x^2 exact in float
};
template <>
struct ErfBits<double> {
  using U = std::uint64_t;
  static constexpr U kHigh = 0xffffffff00000000ull;
};

template <class T>
PYDL_INLINE T erf_vec(T x) {
  using U = typename ErfBits<T>::U;
  const U sign = U(1) << (8 * sizeof(U) - 1);
  const U bx = bits<U>(x);
  const U ba = bx & ~sign;
  const T a = bits<T>(ba);
  // Range tests on the bits of |x| (ordered like the values; NaN above inf).
  const U small = mask_if<U>(ba < bits<U>(T(0.84375)));
  const U mid = mask_if<U>(ba < bits<U>(T(1.25)));
  const U tail = mask_if<U>(ba < bits<U>(T(6)));
  const U nan = mask_if<U>(ba > bits<U>(std::numeric_limits<T>::infinity()));
  // FDLIBM's 1/0.35: the double with high word 0x4006DB6E and low word 0
  const U near = mask_if<U>(ba < bits<U>(T(0x1.6db6ep+1)));

  const T z = a * a;
  const T r_small = a + a * (horner<T>(kPP, z) / horner<T>(kQQ, z));
  const T s = a - T(1);
  const T r_mid = T(kErx) + horner<T>(kPA, s) / horner<T>(kQA, s);
  const T w = T(1) / z;
  const T ratio = horner_pick<T>(near, kRA, kRB, w) / horner_pick<T>(near, kSA, kSB, w);
  const T hi = bits<T>(ba & ErfBits<T>::kHigh);
  const T e = exp_nonpos(-hi * hi - T(0.5625)) * exp_nonpos((hi - a) * (hi + a) + ratio);
  const T r_tail = T(1) - e / a;

  const T r = pick(small, r_small, pick(mid, r_mid, pick(tail, r_tail, T(1))));
  return pick(nan, x, bits<T>(bits<U>(r) | (bx & sign)));
}

template <class T>
PYDL_CLONES void erf_range(const T* x, T* y, index_t i0, index_t i1) {
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) y[i] = erf_vec(x[i]);
}

template <class T>
PYDL_CLONES void gelu_forward_range(const T* x, T* y, T* cdf, index_t i0, index_t i1) {
  const T inv_sqrt2 = T(0.70710678118654752440);
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) {
    const T c = T(0.5) * (T(1) + erf_vec(x[i] * inv_sqrt2));
    cdf[i] = c;
    y[i] = x[i] * c;
  }
}

template <class T>
PYDL_CLONES void gelu_backward_range(const T* gy, const T* x, const T* cdf, T* gx, index_t i0,
                                     index_t i1) {
  const T inv_sqrt_2pi = T(0.39894228040143267794);
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) {
    const T v = x[i];
    gx[i] = gy[i] * (cdf[i] + v * (inv_sqrt_2pi * exp_nonpos(T(-0.5) * v * v)));
  }
}

template <class T>
PYDL_CLONES void gelu_tanh_backward_range(const T* gy, const T* x, const T* cdf, T* gx,
                                          index_t i0, index_t i1) {
  const T k = T(0.79788456080286535588), k3c = T(0.79788456080286535588 * 3 * 0.044715);
#pragma omp simd
  for (index_t i = i0; i < i1; ++i) {
    const T v = x[i], c = cdf[i];
    gx[i] = gy[i] * (c + T(2) * v * c * (T(1) - c) * (k + k3c * v * v));
  }
}

}  // namespace

void erf(const py::array& x, py::array& y) {
  dispatch_float(x, "erf", [&](auto tag) {
    using T = decltype(tag);
    require<T>(x, "x", shape_of(x));
    require<T>(y, "y", shape_of(x), true);
    const T* src = cptr<T>(x);
    T* dst = mptr<T>(y);
    py::gil_scoped_release release;
    parallel_blocks(x.size(), x.size(), [&](index_t i0, index_t i1) {
      erf_range(src, dst, i0, i1);
    });
  });
}

void gelu_forward(const py::array& x, py::array& y, py::array& cdf) {
  dispatch_float(x, "gelu_forward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(x, "x", shape_of(x));
    require<T>(y, "y", shape_of(x), true);
    require<T>(cdf, "cdf", shape_of(x), true);
    const T* src = cptr<T>(x);
    T *dst = mptr<T>(y), *c = mptr<T>(cdf);
    py::gil_scoped_release release;
    parallel_blocks(x.size(), x.size(), [&](index_t i0, index_t i1) {
      gelu_forward_range(src, dst, c, i0, i1);
    });
  });
}

void gelu_backward(const py::array& gy, const py::array& x, const py::array& cdf,
                   py::array& gx, bool tanh_form) {
  dispatch_float(x, "gelu_backward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(x, "x", shape_of(x));
    require<T>(gy, "gy", shape_of(x));
    require<T>(cdf, "cdf", shape_of(x));
    require<T>(gx, "gx", shape_of(x), true);
    const T *g = cptr<T>(gy), *v = cptr<T>(x), *c = cptr<T>(cdf);
    T* o = mptr<T>(gx);
    py::gil_scoped_release release;
    parallel_blocks(x.size(), x.size(), [&](index_t i0, index_t i1) {
      if (tanh_form)
        gelu_tanh_backward_range(g, v, c, o, i0, i1);
      else
        gelu_backward_range(g, v, c, o, i0, i1);
    });
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_activation(py::module_& m) {
  using namespace py::literals;
  m.def("erf", &pydl::erf, "x"_a, "y"_a);
  m.def("gelu_forward", &pydl::gelu_forward, "x"_a, "y"_a, "cdf"_a);
  m.def("gelu_backward", &pydl::gelu_backward, "gy"_a, "x"_a, "cdf"_a, "gx"_a, "tanh_form"_a);
}

}  // namespace pydl
