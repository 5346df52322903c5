// im2col / col2im for 2-D convolution (stride, padding, dilation; groups live in the GEMM).
//
// im2col: x (B, C, H, W) -> cols (C * kH * kW, B * Ho * Wo), with
//   cols[(c * kH + i) * kW + j, b * Ho * Wo + ho * Wo + wo]
//     = x[b, c, ho * sh - ph + i * dh, wo * sw - pw + j * dw]   (0 outside the input).
//   Rows are channel-major, so the rows of group g are the contiguous block
//   [g * Cg * kH * kW, (g + 1) * Cg * kH * kW) and the convolution of the whole batch is one
//   GEMM per group: y_g (Og, B * Ho * Wo) = w_g (Og, Cg * kH * kW) @ cols_g. The GEMM itself
//   is NumPy's (OpenBLAS) matmul, called by pydl/backend/cpu_ext.py: it runs several times
//   faster than a portable hand-written blocked GEMM, and the C++ side removes what the
//   NumPy reference pays for beyond the GEMM (a 6-D strided copy, padding copies, one small
//   GEMM per image, the scatter-adds of col2im).
// col2im: the adjoint, gx (B, C, H, W) = sum of cols back into the input positions
//   (gx is overwritten, not accumulated into).
//
// Parallelism: im2col hands each thread a contiguous block of (row, image) segments, each
// Ho * Wo outputs long; col2im hands each thread a block of (b, c) input planes, so every
// thread writes only its own planes and needs no atomics. For each kernel column offset the
// range of wo that lands inside the input is computed once, leaving branch-free inner loops
// (plain copies when the stride is 1).
#include <algorithm>
#include <cstring>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

struct ConvGeom {
  index_t B, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
  index_t P() const { return Ho * Wo; }
  index_t rows() const { return C * kh * kw; }
};

// The outputs o in [lo, hi) of a length-`out` axis whose input o * stride + off is in [0, size).
PYDL_INLINE void inside(index_t off, index_t stride, index_t size, index_t out, index_t& lo,
                        index_t& hi) {
  lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  hi = size - 1 - off < 0 ? 0 : (size - 1 - off) / stride + 1;
  lo = std::min(lo, out);
  hi = std::max(lo, std::min(hi, out));
}

template <class T>
void im2col_segments(const T* x, T* cols, const ConvGeom& g, index_t u0, index_t u1) {
  const index_t P = g.P(), HW = g.H * g.W;
  for (index_t u = u0; u < u1; ++u) {
    const index_t r = u / g.B, b = u % g.B;
    const index_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    const T* plane = x + (b * g.C + c) * HW;
    T* out = cols + u * P;
    const index_t woff = j * g.dw - g.pw;
    index_t lo, hi;
    inside(woff, g.sw, g.W, g.Wo, lo, hi);
    for (index_t ho = 0; ho < g.Ho; ++ho) {
      T* o = out + ho * g.Wo;
      const index_t h = ho * g.sh - g.ph + i * g.dh;
      if (h < 0 || h >= g.H) {
        std::fill(o, o + g.Wo, T(0));
        continue;
      }
      const T* row = plane + h * g.W;
      std::fill(o, o + lo, T(0));
      if (g.sw == 1) {
        if (hi > lo) std::memcpy(o + lo, row + lo + woff, (hi - lo) * sizeof(T));
      } else {
        for (index_t wo = lo; wo < hi; ++wo) o[wo] = row[wo * g.sw + woff];
      }
      std::fill(o + hi, o + g.Wo, T(0));
    }
  }
}

template <class T>
void col2im_planes(const T* cols, T* gx, const ConvGeom& g, index_t p0, index_t p1) {
  const index_t P = g.P(), HW = g.H * g.W;
  for (index_t p = p0; p < p1; ++p) {
    const index_t b = p / g.C, c = p % g.C;
    T* plane = gx + p * HW;
    std::fill(plane, plane + HW, T(0));
    for (index_t i = 0; i < g.kh; ++i)
      for (index_t j = 0; j < g.kw; ++j) {
        const index_t r = (c * g.kh + i) * g.kw + j;
        const T* src = cols + (r * g.B + b) * P;
        const index_t woff = j * g.dw - g.pw;
        index_t lo, hi;
        inside(woff, g.sw, g.W, g.Wo, lo, hi);
        for (index_t ho = 0; ho < g.Ho; ++ho) {
          const index_t h = ho * g.sh - g.ph + i * g.dh;
          if (h < 0 || h >= g.H) continue;
          T* row = plane + h * g.W;  // row[wo * sw + woff] is inside for wo in [lo, hi)
          const T* s = src + ho * g.Wo;
          if (g.sw == 1) {
#pragma omp simd
            for (index_t wo = lo; wo < hi; ++wo) row[wo + woff] += s[wo];
          } else {
            for (index_t wo = lo; wo < hi; ++wo) row[wo * g.sw + woff] += s[wo];
          }
        }
      }
  }
}

ConvGeom make_geom(const py::array& x, const std::vector<index_t>& k,
                   const std::vector<index_t>& s, const std::vector<index_t>& p,
                   const std::vector<index_t>& d) {
  if (k.size() != 2 || s.size() != 2 || p.size() != 2 || d.size() != 2 || k[0] < 1 ||
      k[1] < 1 || s[0] < 1 || s[1] < 1 || p[0] < 0 || p[1] < 0 || d[0] < 1 || d[1] < 1)
    throw py::value_error("pydl._C im2col/col2im: kernel, stride, padding and dilation must be "
                          "pairs; kernel, stride and dilation positive, padding not negative");
  ConvGeom g{x.shape(0), x.shape(1), x.shape(2), x.shape(3), k[0], k[1], s[0],
             s[1],       p[0],       p[1],       d[0],       d[1], 0,    0};
  g.Ho = (g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.Wo = (g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  if (g.Ho < 1 || g.Wo < 1) throw py::value_error("pydl._C im2col/col2im: empty output");
  return g;
}

}  // namespace

void im2col(const py::array& x, py::array& cols, std::vector<index_t> kernel,
            std::vector<index_t> stride, std::vector<index_t> padding,
            std::vector<index_t> dilation) {
  dispatch_float(x, "im2col", [&](auto tag) {
    using T = decltype(tag);
    require<T>(x, "x", {-1, -1, -1, -1});
    const ConvGeom g = make_geom(x, kernel, stride, padding, dilation);
    require<T>(cols, "cols", {g.rows(), g.B * g.P()}, true);
    const T* xp = cptr<T>(x);
    T* cp = mptr<T>(cols);
    py::gil_scoped_release release;
    parallel_blocks(g.rows() * g.B, cols.size(), [&](index_t u0, index_t u1) {
      im2col_segments(xp, cp, g, u0, u1);
    });
  });
}

void col2im(const py::array& cols, py::array& gx, std::vector<index_t> kernel,
            std::vector<index_t> stride, std::vector<index_t> padding,
            std::vector<index_t> dilation) {
  dispatch_float(cols, "col2im", [&](auto tag) {
    using T = decltype(tag);
    require<T>(gx, "gx", {-1, -1, -1, -1}, true);
    const ConvGeom g = make_geom(gx, kernel, stride, padding, dilation);
    require<T>(cols, "cols", {g.rows(), g.B * g.P()});
    const T* cp = cptr<T>(cols);
    T* gp = mptr<T>(gx);
    py::gil_scoped_release release;
    parallel_blocks(g.B * g.C, cols.size() + gx.size(), [&](index_t p0, index_t p1) {
      col2im_planes(cp, gp, g, p0, p1);
    });
  });
}

}  // namespace pydl
