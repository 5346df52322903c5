// 2-D max and average pooling over NCHW planes, forward and backward.
//
// max_pool2d_forward:  y = max over each window (implicit -inf padding); argmax = flat
//   h * W + w input index of the first maximum in row-major window order (a NaN wins), -1
//   when the window covers only padding.
// max_pool2d_backward: gx = scatter-add of gy at argmax (a bad index raises ValueError).
// avg_pool2d_forward / _backward: mean over each window with zero padding; the divisor is
//   kH * kW (count_include_pad) or the number of real input elements in the window.
//
// Every (n, c) plane is independent: the threads take contiguous blocks of planes
// (parallel_blocks), so backward's scatter never races and needs no atomics. Within a plane
// the loops go one output row at a time: for each window tap (i, j), over every output of
// the row, with the range of outputs whose input is inside the image computed once per tap.
// That inner loop has no loop-carried dependency and vectorizes (stride 1 and 2 are
// compile-time constants); PYDL_CLONES compiles it for AVX-512, AVX2 and the baseline.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

struct Window {
  index_t H, W, Ho, Wo, kh, kw, sh, sw, ph, pw;
};

Window make_window(const py::array& x, const py::array& y, const std::vector<index_t>& k,
                   const std::vector<index_t>& s, const std::vector<index_t>& p) {
  if (k.size() != 2 || s.size() != 2 || p.size() != 2 || k[0] < 1 || k[1] < 1 || s[0] < 1 ||
      s[1] < 1 || p[0] < 0 || p[1] < 0)
    throw py::value_error("pydl._C pooling: kernel, stride and padding must be pairs, "
                          "kernel and stride positive, padding not negative");
  return Window{x.shape(2), x.shape(3), y.shape(2), y.shape(3), k[0], k[1],
                s[0],       s[1],       p[0],       p[1]};
}

// Calls f(h, woff, lo, hi) for every tap of the windows of output row ho that lies inside
// the image: input row h, input column wo * stride + woff for the outputs wo in [lo, hi).
template <int Stride, class F>
PYDL_INLINE void for_each_window_tap(const Window& g, index_t ho, F&& f) {
  const index_t sw = Stride ? Stride : g.sw, hs = ho * g.sh - g.ph;
  for (index_t h = std::max<index_t>(hs, 0); h < std::min(hs + g.kh, g.H); ++h)
    for (index_t j = 0; j < g.kw; ++j) {
      const index_t woff = j - g.pw;
      index_t lo, hi;
      inside(woff, sw, g.W, g.Wo, lo, hi);
      f(h, woff, lo, hi);
    }
}

// One output row at a time, visiting the window offsets in row-major order and, for each,
// every output of the row: the inner loop over wo has no loop-carried dependency and
// vectorizes (a window-at-a-time loop is a chain of dependent compares and selects).
// Stride is a template argument for the common strides 1 and 2 (0: any, read from g), so
// the compiler sees a fixed access pattern.
template <class T, int Stride>
PYDL_CLONES void max_pool_planes(const T* x, T* y, std::int64_t* arg, const Window& window,
                                 index_t p0, index_t p1) {
  const Window g = window;  // a local copy: the output stores cannot alias its fields
  const index_t sw = Stride ? Stride : g.sw;
  for (index_t p = p0; p < p1; ++p) {
    const T* xp = x + p * g.H * g.W;
    for (index_t ho = 0; ho < g.Ho; ++ho) {
      T* __restrict best = y + (p * g.Ho + ho) * g.Wo;
      std::int64_t* __restrict at = arg + (p * g.Ho + ho) * g.Wo;
      std::fill(best, best + g.Wo, -std::numeric_limits<T>::infinity());
      std::fill(at, at + g.Wo, std::int64_t(-1));
      for_each_window_tap<Stride>(g, ho, [&](index_t h, index_t woff, index_t lo, index_t hi) {
        const T* __restrict row = xp + h * g.W;
#pragma omp simd
        for (index_t wo = lo; wo < hi; ++wo) {
          // the first element, a larger one, or the first NaN takes the place
          const index_t w = wo * sw + woff;
          const T v = row[w], b = best[wo];
          const std::int64_t a = at[wo];
          const bool take = (a < 0) | (v > b) | ((v != v) & (b == b));
          best[wo] = take ? v : b;
          at[wo] = take ? h * g.W + w : a;
        }
      });
    }
  }
}

template <class T>
bool max_pool_backward_planes(const T* gy, const std::int64_t* arg, T* gx, index_t plane_in,
                              index_t plane_out, index_t p0, index_t p1) {
  bool ok = true;
  std::fill(gx + p0 * plane_in, gx + p1 * plane_in, T(0));
  for (index_t p = p0; p < p1; ++p) {
    const T* g = gy + p * plane_out;
    const std::int64_t* a = arg + p * plane_out;
    T* o = gx + p * plane_in;
    for (index_t i = 0; i < plane_out; ++i) {
      const std::int64_t at = a[i];
      if (at >= 0 && at < plane_in)
        o[at] += g[i];
      else if (at != -1)
        ok = false;
    }
  }
  return ok;
}

// 1 / divisor of each output of row ho: kH * kW, or the real input elements of the window.
template <class T>
PYDL_INLINE void avg_inverse_divisors(const Window& g, index_t ho, bool include_pad, T* inv) {
  const index_t hs = ho * g.sh - g.ph;
  const index_t rows = std::min(hs + g.kh, g.H) - std::max<index_t>(hs, 0);
  for (index_t wo = 0; wo < g.Wo; ++wo) {
    const index_t ws = wo * g.sw - g.pw;
    const index_t cols = std::min(ws + g.kw, g.W) - std::max<index_t>(ws, 0);
    inv[wo] = T(1) / T(include_pad ? g.kh * g.kw : std::max<index_t>(rows * cols, 1));
  }
}

// Row at a time like max pooling: sum the window taps into the output row, then scale.
template <class T, int Stride>
PYDL_CLONES void avg_pool_planes(const T* x, T* y, const Window& window, bool include_pad,
                                 index_t p0, index_t p1) {
  const Window g = window;
  const index_t sw = Stride ? Stride : g.sw;
  std::vector<T> inv(g.Ho * g.Wo);
  for (index_t ho = 0; ho < g.Ho; ++ho) avg_inverse_divisors(g, ho, include_pad, &inv[ho * g.Wo]);
  for (index_t p = p0; p < p1; ++p) {
    const T* xp = x + p * g.H * g.W;
    for (index_t ho = 0; ho < g.Ho; ++ho) {
      T* __restrict yr = y + (p * g.Ho + ho) * g.Wo;
      for (index_t wo = 0; wo < g.Wo; ++wo) yr[wo] = T(0);
      for_each_window_tap<Stride>(g, ho, [&](index_t h, index_t woff, index_t lo, index_t hi) {
        const T* __restrict row = xp + h * g.W;
        for (index_t wo = lo; wo < hi; ++wo) yr[wo] += row[wo * sw + woff];
      });
      const T* __restrict iv = &inv[ho * g.Wo];
      for (index_t wo = 0; wo < g.Wo; ++wo) yr[wo] *= iv[wo];
    }
  }
}

template <class T, int Stride>
PYDL_CLONES void avg_pool_backward_planes(const T* gy, T* gx, const Window& window,
                                          bool include_pad, index_t p0, index_t p1) {
  const Window g = window;
  const index_t sw = Stride ? Stride : g.sw;
  std::vector<T> inv(g.Ho * g.Wo), share(g.Wo);
  for (index_t ho = 0; ho < g.Ho; ++ho) avg_inverse_divisors(g, ho, include_pad, &inv[ho * g.Wo]);
  std::fill(gx + p0 * g.H * g.W, gx + p1 * g.H * g.W, T(0));
  for (index_t p = p0; p < p1; ++p) {
    T* o = gx + p * g.H * g.W;
    for (index_t ho = 0; ho < g.Ho; ++ho) {
      const T* __restrict gr = gy + (p * g.Ho + ho) * g.Wo;
      const T* __restrict iv = &inv[ho * g.Wo];
      T* __restrict sh = share.data();
      for (index_t wo = 0; wo < g.Wo; ++wo) sh[wo] = gr[wo] * iv[wo];
      for_each_window_tap<Stride>(g, ho, [&](index_t h, index_t woff, index_t lo, index_t hi) {
        T* __restrict row = o + h * g.W;
        for (index_t wo = lo; wo < hi; ++wo) row[wo * sw + woff] += sh[wo];
      });
    }
  }
}

}  // namespace

void max_pool2d_forward(const py::array& x, py::array& y, py::array& argmax,
                        std::vector<index_t> kernel, std::vector<index_t> stride,
                        std::vector<index_t> padding) {
  dispatch_float(x, "max_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(x, "x", {-1, -1, -1, -1});
    require<T>(y, "y", {x.shape(0), x.shape(1), -1, -1}, true);
    require<std::int64_t>(argmax, "argmax", shape_of(y), true);
    const Window g = make_window(x, y, kernel, stride, padding);
    const index_t planes = x.shape(0) * x.shape(1);
    const T* xp = cptr<T>(x);
    T* yp = mptr<T>(y);
    std::int64_t* ap = mptr<std::int64_t>(argmax);
    py::gil_scoped_release release;
    with_stride(g.sw, [&](auto s) {
      parallel_blocks(planes, y.size() * g.kh * g.kw, [&](index_t p0, index_t p1) {
        max_pool_planes<T, decltype(s)::value>(xp, yp, ap, g, p0, p1);
      });
    });
  });
}

void max_pool2d_backward(const py::array& gy, const py::array& argmax, py::array& gx) {
  dispatch_float(gy, "max_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(gy, "gy", {-1, -1, -1, -1});
    require<std::int64_t>(argmax, "argmax", shape_of(gy));
    require<T>(gx, "gx", {gy.shape(0), gy.shape(1), -1, -1}, true);
    const index_t planes = gy.shape(0) * gy.shape(1);
    const index_t plane_in = gx.shape(2) * gx.shape(3), plane_out = gy.shape(2) * gy.shape(3);
    const T* g = cptr<T>(gy);
    const std::int64_t* a = cptr<std::int64_t>(argmax);
    T* o = mptr<T>(gx);
    std::atomic<bool> ok{true};
    {
      py::gil_scoped_release release;
      parallel_blocks(planes, gx.size() + gy.size(), [&](index_t p0, index_t p1) {
        if (!max_pool_backward_planes(g, a, o, plane_in, plane_out, p0, p1)) ok = false;
      });
    }
    if (!ok)
      throw py::value_error("max_pool2d_backward: argmax holds an index outside the input plane");
  });
}

void avg_pool2d_forward(const py::array& x, py::array& y, std::vector<index_t> kernel,
                        std::vector<index_t> stride, std::vector<index_t> padding,
                        bool count_include_pad) {
  dispatch_float(x, "avg_pool2d_forward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(x, "x", {-1, -1, -1, -1});
    require<T>(y, "y", {x.shape(0), x.shape(1), -1, -1}, true);
    const Window g = make_window(x, y, kernel, stride, padding);
    const index_t planes = x.shape(0) * x.shape(1);
    const T* xp = cptr<T>(x);
    T* yp = mptr<T>(y);
    py::gil_scoped_release release;
    with_stride(g.sw, [&](auto s) {
      parallel_blocks(planes, y.size() * g.kh * g.kw, [&](index_t p0, index_t p1) {
        avg_pool_planes<T, decltype(s)::value>(xp, yp, g, count_include_pad, p0, p1);
      });
    });
  });
}

void avg_pool2d_backward(const py::array& gy, py::array& gx, std::vector<index_t> kernel,
                         std::vector<index_t> stride, std::vector<index_t> padding,
                         bool count_include_pad) {
  dispatch_float(gy, "avg_pool2d_backward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(gy, "gy", {-1, -1, -1, -1});
    require<T>(gx, "gx", {gy.shape(0), gy.shape(1), -1, -1}, true);
    const Window g = make_window(gx, gy, kernel, stride, padding);
    const index_t planes = gy.shape(0) * gy.shape(1);
    const T* gp = cptr<T>(gy);
    T* o = mptr<T>(gx);
    py::gil_scoped_release release;
    with_stride(g.sw, [&](auto s) {
      parallel_blocks(planes, gy.size() * g.kh * g.kw + gx.size(), [&](index_t p0, index_t p1) {
        avg_pool_backward_planes<T, decltype(s)::value>(gp, o, g, count_include_pad, p0, p1);
      });
    });
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_pool(py::module_& m) {
  using namespace py::literals;
  m.def("max_pool2d_forward", &pydl::max_pool2d_forward, "x"_a, "y"_a, "argmax"_a, "kernel"_a,
        "stride"_a, "padding"_a);
  m.def("max_pool2d_backward", &pydl::max_pool2d_backward, "gy"_a, "argmax"_a, "gx"_a);
  m.def("avg_pool2d_forward", &pydl::avg_pool2d_forward, "x"_a, "y"_a, "kernel"_a, "stride"_a,
        "padding"_a, "count_include_pad"_a);
  m.def("avg_pool2d_backward", &pydl::avg_pool2d_backward, "gy"_a, "gx"_a, "kernel"_a,
        "stride"_a, "padding"_a, "count_include_pad"_a);
}

}  // namespace pydl
