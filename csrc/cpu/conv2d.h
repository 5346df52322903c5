// Convolution geometry shared by conv2d.cc (im2col / col2im) and conv2d_direct.cc.
#pragma once

#include <type_traits>
#include <vector>

#include "common.h"

namespace pydl {

// Sizes of one convolution: input (B, C, H, W), kernel, stride, padding, dilation, output.
struct ConvGeom {
  index_t B, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo;
  index_t P() const { return Ho * Wo; }
  index_t rows() const { return C * kh * kw; }
};

// One (kernel tap, output row) pair whose input row lies inside the image.
struct TapRow {
  index_t tap;     // i * kW + j
  index_t ho, h;   // the output row and its input row for this tap
  index_t woff;    // output column wo reads input column wo * stride + woff
  index_t lo, hi;  // the output columns whose input column is inside the image
};

// Calls f(TapRow) for every kernel tap (i, j), in row-major order, and every output row whose
// input row is inside the image. The caller's loop over [lo, hi) is then branch-free.
template <int Stride, class F>
PYDL_INLINE void for_each_tap_row(const ConvGeom& g, F&& f) {
  const index_t sw = Stride ? Stride : g.sw;
  for (index_t i = 0; i < g.kh; ++i)
    for (index_t j = 0; j < g.kw; ++j) {
      const index_t woff = j * g.dw - g.pw;
      index_t lo, hi;
      inside(woff, sw, g.W, g.Wo, lo, hi);
      for (index_t ho = 0; ho < g.Ho; ++ho) {
        const index_t h = ho * g.sh - g.ph + i * g.dh;
        if (h >= 0 && h < g.H) f(TapRow{i * g.kw + j, ho, h, woff, lo, hi});
      }
    }
}

inline ConvGeom make_geom(const py::array& x, const std::vector<index_t>& k,
                   const std::vector<index_t>& s, const std::vector<index_t>& p,
                   const std::vector<index_t>& d) {
  if (k.size() != 2 || s.size() != 2 || p.size() != 2 || d.size() != 2 || k[0] < 1 ||
      k[1] < 1 || s[0] < 1 || s[1] < 1 || p[0] < 0 || p[1] < 0 || d[0] < 1 || d[1] < 1)
    throw py::value_error("pydl._C conv2d: kernel, stride, padding and dilation must be "
                          "pairs; kernel, stride and dilation positive, padding not negative");
  ConvGeom g{x.shape(0), x.shape(1), x.shape(2), x.shape(3), k[0], k[1], s[0],
             s[1],       p[0],       p[1],       d[0],       d[1], 0,    0};
  g.Ho = (g.H + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.Wo = (g.W + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  if (g.Ho < 1 || g.Wo < 1) throw py::value_error("pydl._C conv2d: empty output");
  return g;
}

}  // namespace pydl
