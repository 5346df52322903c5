// Direct 2-D convolution (no column buffer), forward and backward-data; any stride, padding,
// dilation and groups. For depthwise layers (one input channel per group, few outputs) the
// GEMMs of the im2col path are too thin to pay for building the columns and these loops are
// several times faster; from a few channels per group on, im2col + BLAS wins (measured in
// benchmarks/bench_cpu.py), so pydl/backend/cpu/ext.py sends only depthwise layers here. (A
// direct backward-weight was slower than im2col + GEMM even for depthwise layers.)
//
// conv2d_direct_forward:       y[n, o] = sum_{c in group(o), i, j} w[o, c, i, j] * shifted x[n, c]
// conv2d_direct_backward_data: gx[n, c] = sum_{o in group(c), i, j} w[o, c, i, j] * gy[n, o],
//                              scattered back through the same shifts
//
// Every loop nest ends in a loop over one output row (wo) with the kernel tap (i, j) fixed:
// the range of wo whose input column is inside the image is computed once per tap, so the
// row loop is a branch-free multiply-add the compiler vectorizes (stride 1 and 2 are
// compile-time constants). Output and input planes are small enough to stay in L1/L2 while
// the taps sweep over them.
//
// Parallelism (parallel_blocks): forward over (n, o) output planes, backward-data over
// (n, c) input planes, so each thread writes only its own planes.
#include <vector>

#include "conv2d.h"
#include "kernels.h"

namespace pydl {
namespace {

// The shapes of one direct convolution call, copied into each worker (no aliasing).
struct Direct {
  ConvGeom g;
  index_t O, Cg, Og;  // output channels, input and output channels per group
  index_t taps() const { return g.kh * g.kw; }
};

template <class T, int Stride>
PYDL_CLONES void forward_planes(const T* x, const T* w, T* y, const Direct& d, index_t u0,
                                index_t u1) {
  const Direct k = d;
  const ConvGeom& g = k.g;
  const index_t P = g.P(), HW = g.H * g.W, sw = Stride ? Stride : g.sw;
  for (index_t u = u0; u < u1; ++u) {
    const index_t n = u / k.O, o = u % k.O, c0 = (o / k.Og) * k.Cg;
    T* __restrict yp = y + u * P;
    for (index_t e = 0; e < P; ++e) yp[e] = T(0);
    for (index_t cg = 0; cg < k.Cg; ++cg) {
      const T* xp = x + (n * g.C + c0 + cg) * HW;
      const T* wk = w + (o * k.Cg + cg) * k.taps();
      for_each_tap_row<Stride>(g, [&](const TapRow& t) {
        const T wv = wk[t.tap];
        T* __restrict yr = yp + t.ho * g.Wo;
        const T* __restrict xr = xp + t.h * g.W;
        for (index_t wo = t.lo; wo < t.hi; ++wo) yr[wo] += wv * xr[wo * sw + t.woff];
      });
    }
  }
}

template <class T, int Stride>
PYDL_CLONES void backward_data_planes(const T* gy, const T* w, T* gx, const Direct& d,
                                      index_t u0, index_t u1) {
  const Direct k = d;
  const ConvGeom& g = k.g;
  const index_t P = g.P(), HW = g.H * g.W, sw = Stride ? Stride : g.sw;
  for (index_t u = u0; u < u1; ++u) {
    const index_t n = u / g.C, c = u % g.C, cg = c % k.Cg, o0 = (c / k.Cg) * k.Og;
    T* __restrict gxp = gx + u * HW;
    for (index_t e = 0; e < HW; ++e) gxp[e] = T(0);
    for (index_t o = o0; o < o0 + k.Og; ++o) {
      const T* gyp = gy + (n * k.O + o) * P;
      const T* wk = w + (o * k.Cg + cg) * k.taps();
      for_each_tap_row<Stride>(g, [&](const TapRow& t) {
        const T wv = wk[t.tap];
        T* __restrict gxr = gxp + t.h * g.W;
        const T* __restrict gyr = gyp + t.ho * g.Wo;
        for (index_t wo = t.lo; wo < t.hi; ++wo) gxr[wo * sw + t.woff] += wv * gyr[wo];
      });
    }
  }
}

// Checks the shapes of a direct call: x (N, C, H, W) (or gx), w (O, C / groups, kH, kW),
// y (N, O, Ho, Wo) (or gy); returns the geometry.
template <class T>
Direct direct_geom(const py::array& x, const py::array& w, const py::array& y,
                   const std::vector<index_t>& stride, const std::vector<index_t>& padding,
                   const std::vector<index_t>& dilation, index_t groups, bool write_x,
                   bool write_y) {
  require<T>(x, "x", {-1, -1, -1, -1}, write_x);
  require<T>(w, "w", {-1, -1, -1, -1});
  const index_t O = w.shape(0), Cg = w.shape(1);
  if (groups < 1 || x.shape(1) != Cg * groups || O % groups)
    throw py::value_error("pydl._C conv2d_direct: x " + shape_str(x) + " and w " + shape_str(w) +
                          " do not fit groups=" + std::to_string(groups));
  const ConvGeom g = make_geom(x, {w.shape(2), w.shape(3)}, stride, padding, dilation);
  require<T>(y, "y", {g.B, O, g.Ho, g.Wo}, write_y);
  return Direct{g, O, Cg, O / groups};
}

}  // namespace

void conv2d_direct_forward(const py::array& x, const py::array& w, py::array& y,
                           std::vector<index_t> stride, std::vector<index_t> padding,
                           std::vector<index_t> dilation, index_t groups) {
  dispatch_float(x, "conv2d_direct_forward", [&](auto tag) {
    using T = decltype(tag);
    const Direct d = direct_geom<T>(x, w, y, stride, padding, dilation, groups, false, true);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w);
    T* yp = mptr<T>(y);
    py::gil_scoped_release release;
    with_stride(d.g.sw, [&](auto s) {
      parallel_blocks(d.g.B * d.O, y.size() * d.Cg * d.taps(), [&](index_t u0, index_t u1) {
        forward_planes<T, decltype(s)::value>(xp, wp, yp, d, u0, u1);
      });
    });
  });
}

void conv2d_direct_backward_data(const py::array& gy, const py::array& w, py::array& gx,
                                 std::vector<index_t> stride, std::vector<index_t> padding,
                                 std::vector<index_t> dilation, index_t groups) {
  dispatch_float(gy, "conv2d_direct_backward_data", [&](auto tag) {
    using T = decltype(tag);
    const Direct d = direct_geom<T>(gx, w, gy, stride, padding, dilation, groups, true, false);
    const T *gyp = cptr<T>(gy), *wp = cptr<T>(w);
    T* gxp = mptr<T>(gx);
    py::gil_scoped_release release;
    with_stride(d.g.sw, [&](auto s) {
      parallel_blocks(d.g.B * d.g.C, gy.size() * d.Cg * d.taps(), [&](index_t u0, index_t u1) {
        backward_data_planes<T, decltype(s)::value>(gyp, wp, gxp, d, u0, u1);
      });
    });
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_conv2d_direct(py::module_& m) {
  using namespace py::literals;
  m.def("conv2d_direct_forward", &pydl::conv2d_direct_forward, "x"_a, "w"_a, "y"_a,
        "stride"_a, "padding"_a, "dilation"_a, "groups"_a);
  m.def("conv2d_direct_backward_data", &pydl::conv2d_direct_backward_data, "gy"_a, "w"_a,
        "gx"_a, "stride"_a, "padding"_a, "dilation"_a, "groups"_a);
}

}  // namespace pydl
