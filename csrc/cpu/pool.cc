// 2-D max and average pooling over NCHW planes, forward and backward.
//
// max_pool2d_forward:  y = max over each window (implicit -inf padding); argmax = flat
//   h * W + w input index of the first maximum in row-major window order (a NaN wins), -1
//   when the window covers only padding.
// max_pool2d_backward: gx = scatter-add of gy at argmax (a bad index raises ValueError).
// avg_pool2d_forward / _backward: mean over each window with zero padding; the divisor is
//   kH * kW (count_include_pad) or the number of real input elements in the window.
//
// Every (n, c) plane is independent: OpenMP gives each thread a contiguous block of planes
// (parallel_blocks), so backward's scatter never races and needs no atomics. Each output's
// window is clipped to the input once, so the inner loops carry no bounds tests.
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
  // The input rows [h0, h1) and columns [w0, w1) that output (ho, wo) covers.
  PYDL_INLINE void clip(index_t ho, index_t wo, index_t& h0, index_t& h1, index_t& w0,
                        index_t& w1) const {
    const index_t hs = ho * sh - ph, ws = wo * sw - pw;
    h0 = std::max<index_t>(hs, 0);
    h1 = std::min<index_t>(hs + kh, H);
    w0 = std::max<index_t>(ws, 0);
    w1 = std::min<index_t>(ws + kw, W);
  }
  index_t divisor(index_t h0, index_t h1, index_t w0, index_t w1, bool include_pad) const {
    return include_pad ? kh * kw : std::max<index_t>((h1 - h0) * (w1 - w0), 1);
  }
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

template <class T>
void max_pool_planes(const T* x, T* y, std::int64_t* arg, const Window& g, index_t p0,
                     index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    const T* xp = x + p * g.H * g.W;
    T* yp = y + p * g.Ho * g.Wo;
    std::int64_t* ap = arg + p * g.Ho * g.Wo;
    for (index_t ho = 0; ho < g.Ho; ++ho)
      for (index_t wo = 0; wo < g.Wo; ++wo) {
        index_t h0, h1, w0, w1;
        g.clip(ho, wo, h0, h1, w0, w1);
        T best = -std::numeric_limits<T>::infinity();
        std::int64_t at = -1;
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) {
            const T v = xp[h * g.W + w];
            if (at < 0 || v > best || (std::isnan(v) && !std::isnan(best))) {
              best = v;
              at = h * g.W + w;
            }
          }
        yp[ho * g.Wo + wo] = best;
        ap[ho * g.Wo + wo] = at;
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

template <class T>
void avg_pool_planes(const T* x, T* y, const Window& g, bool include_pad, index_t p0,
                     index_t p1) {
  for (index_t p = p0; p < p1; ++p) {
    const T* xp = x + p * g.H * g.W;
    T* yp = y + p * g.Ho * g.Wo;
    for (index_t ho = 0; ho < g.Ho; ++ho)
      for (index_t wo = 0; wo < g.Wo; ++wo) {
        index_t h0, h1, w0, w1;
        g.clip(ho, wo, h0, h1, w0, w1);
        T s = 0;
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) s += xp[h * g.W + w];
        yp[ho * g.Wo + wo] = s / T(g.divisor(h0, h1, w0, w1, include_pad));
      }
  }
}

template <class T>
void avg_pool_backward_planes(const T* gy, T* gx, const Window& g, bool include_pad,
                              index_t p0, index_t p1) {
  std::fill(gx + p0 * g.H * g.W, gx + p1 * g.H * g.W, T(0));
  for (index_t p = p0; p < p1; ++p) {
    const T* gp = gy + p * g.Ho * g.Wo;
    T* o = gx + p * g.H * g.W;
    for (index_t ho = 0; ho < g.Ho; ++ho)
      for (index_t wo = 0; wo < g.Wo; ++wo) {
        index_t h0, h1, w0, w1;
        g.clip(ho, wo, h0, h1, w0, w1);
        const T share = gp[ho * g.Wo + wo] / T(g.divisor(h0, h1, w0, w1, include_pad));
        for (index_t h = h0; h < h1; ++h)
          for (index_t w = w0; w < w1; ++w) o[h * g.W + w] += share;
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
    parallel_blocks(planes, y.size() * g.kh * g.kw, [&](index_t p0, index_t p1) {
      max_pool_planes(xp, yp, ap, g, p0, p1);
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
    parallel_blocks(planes, y.size() * g.kh * g.kw, [&](index_t p0, index_t p1) {
      avg_pool_planes(xp, yp, g, count_include_pad, p0, p1);
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
    parallel_blocks(planes, gy.size() * g.kh * g.kw + gx.size(), [&](index_t p0, index_t p1) {
      avg_pool_backward_planes(gp, o, g, count_include_pad, p0, p1);
    });
  });
}

}  // namespace pydl
