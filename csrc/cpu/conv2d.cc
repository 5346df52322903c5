// im2col / col2im for 2-D convolution (stride, padding, dilation; groups live in the GEMM).
//
// im2col: x (B, C, H, W) -> cols (C * kH * kW, B * Ho * Wo), with
//   cols[(c * kH + i) * kW + j, b * Ho * Wo + ho * Wo + wo]
//     = x[b, c, ho * sh - ph + i * dh, wo * sw - pw + j * dw]   (0 outside the input).
//   Rows are channel-major, so the rows of group g are the contiguous block
//   [g * Cg * kH * kW, (g + 1) * Cg * kH * kW) and the convolution of the whole batch is one
//   GEMM per group: y_g (Og, B * Ho * Wo) = w_g (Og, Cg * kH * kW) @ cols_g. The GEMM itself
//   is NumPy's (OpenBLAS) matmul, called by pydl/backend/cpu/ext.py. Measured on one core of
//   the 2-core AMD EPYC (AVX-512) dev machine for 64 x 576 x 8192 in float32: OpenBLAS
//   105 GFLOP/s, a cache-blocked hand-written GEMM (4-row register blocking, vectorized by
//   the compiler, AVX-512 clone) 41 GFLOP/s, so the GEMM stays with BLAS. The C++ side
//   removes what the NumPy reference pays for beyond the GEMM (a 6-D strided copy, padding
//   copies, one small GEMM per image, the scatter-adds of col2im).
// col2im: the adjoint, gx (B, C, H, W) = sum of cols back into the input positions
//   (gx is overwritten, not accumulated into).
//
// Parallelism: im2col hands each thread a contiguous block of (row, image) segments, each
// Ho * Wo outputs long; col2im hands each thread a block of (b, c) input planes, so every
// thread writes only its own planes and needs no atomics. For each kernel column offset the
// range of wo that lands inside the input is computed once, leaving branch-free inner loops
// (plain copies when the stride is 1).
#include <algorithm>

#include "conv2d.h"
#include "kernels.h"

namespace pydl {
namespace {

// Stride (of the output columns along W) is a template argument for the common strides 1
// and 2 (0: any, read from g), so the row loops are fixed-pattern copies the compiler
// vectorizes; rows are short (Wo is often 8 to 32), so plain loops beat memcpy/memset calls.
template <class T, int Stride>
PYDL_CLONES void im2col_segments(const T* x, T* cols, const ConvGeom& geom, index_t u0,
                                 index_t u1) {
  const ConvGeom g = geom;  // a local copy: the stores cannot alias its fields
  const index_t P = g.P(), HW = g.H * g.W, sw = Stride ? Stride : g.sw;
  for (index_t u = u0; u < u1; ++u) {
    const index_t r = u / g.B, b = u % g.B;
    const index_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    const T* plane = x + (b * g.C + c) * HW;
    T* out = cols + u * P;
    const index_t woff = j * g.dw - g.pw;
    index_t lo, hi;
    inside(woff, sw, g.W, g.Wo, lo, hi);
    for (index_t ho = 0; ho < g.Ho; ++ho) {
      T* __restrict o = out + ho * g.Wo;
      const index_t h = ho * g.sh - g.ph + i * g.dh;
      if (h < 0 || h >= g.H) {
        for (index_t wo = 0; wo < g.Wo; ++wo) o[wo] = T(0);
        continue;
      }
      const T* __restrict row = plane + h * g.W;
      for (index_t wo = 0; wo < lo; ++wo) o[wo] = T(0);
      for (index_t wo = lo; wo < hi; ++wo) o[wo] = row[wo * sw + woff];
      for (index_t wo = hi; wo < g.Wo; ++wo) o[wo] = T(0);
    }
  }
}

template <class T, int Stride>
PYDL_CLONES void col2im_planes(const T* cols, T* gx, const ConvGeom& geom, index_t p0,
                               index_t p1) {
  const ConvGeom g = geom;
  const index_t P = g.P(), HW = g.H * g.W, sw = Stride ? Stride : g.sw;
  for (index_t p = p0; p < p1; ++p) {
    const index_t b = p / g.C, c = p % g.C;
    T* plane = gx + p * HW;
    for (index_t e = 0; e < HW; ++e) plane[e] = T(0);
    for_each_tap_row<Stride>(g, [&](const TapRow& t) {
      const index_t r = c * g.kh * g.kw + t.tap;
      T* __restrict row = plane + t.h * g.W;
      const T* __restrict s = cols + (r * g.B + b) * P + t.ho * g.Wo;
      for (index_t wo = t.lo; wo < t.hi; ++wo) row[wo * sw + t.woff] += s[wo];
    });
  }
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
    with_stride(g.sw, [&](auto stride) {
      parallel_blocks(g.rows() * g.B, cols.size(), [&](index_t u0, index_t u1) {
        im2col_segments<T, decltype(stride)::value>(xp, cp, g, u0, u1);
      });
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
    with_stride(g.sw, [&](auto stride) {
      parallel_blocks(g.B * g.C, cols.size() + gx.size(), [&](index_t p0, index_t p1) {
        col2im_planes<T, decltype(stride)::value>(cp, gp, g, p0, p1);
      });
    });
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_conv2d(py::module_& m) {
  using namespace py::literals;
  m.def("im2col", &pydl::im2col, "x"_a, "cols"_a, "kernel"_a, "stride"_a, "padding"_a,
        "dilation"_a);
  m.def("col2im", &pydl::col2im, "cols"_a, "gx"_a, "kernel"_a, "stride"_a, "padding"_a,
        "dilation"_a);
}

}  // namespace pydl
