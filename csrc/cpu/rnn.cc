// The pointwise part of one LSTM / GRU time step, after the matmuls (pydl/backend/base.py,
// "Recurrent cells"; the NumPy references are in pydl/backend/cpu/reference.py).
//
// lstm_cell_forward:  gates (N, 4H) = i, f, g, o pre-activations -> in place sigmoid(i),
//                     sigmoid(f), tanh(g), sigmoid(o); c = f c_prev + i g, tanh_c = tanh(c),
//                     h = o tanh_c.
// lstm_cell_backward: dc' = dc + dh o (1 - tanh_c^2); dgates = [dc' g i(1-i),
//                     dc' c_prev f(1-f), dc' i (1-g^2), dh tanh_c o(1-o)]; dc_prev = dc' f.
// gru_cell_forward:   r, z = sigmoid(xg + hg) (written over hg[:, :2H]), n = tanh(x_n + r h_n),
//                     h = n + z (h_prev - n).
// gru_cell_backward:  dn = dh (1-z)(1-n^2), dz = dh (h_prev - n) z(1-z), dr = dn h_n r(1-r);
//                     dxg = [dr, dz, dn], dhg = [dr, dz, dn r], dh_prev = dh z.
//
// Each kernel is one pass over the hidden units of a row, reading every gate once: the NumPy
// version makes a dozen passes with a temporary each. Rows (samples) are independent; the
// pool (parallel_blocks) takes blocks of rows only when the batch is big enough to pay for
// the hand-off (an RNN step is a few microseconds). tanh and sigmoid are built on
// exp_nonpos (common.h) so the loops vectorize (std::tanh would keep them scalar):
// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|), absolute error about 1 ulp of 1,
// and sigmoid(x) = 0.5 + 0.5 tanh(x / 2), the reference's formula.
#include <cmath>

#include "common.h"
#include "kernels.h"

namespace pydl {
namespace {

template <class T>
PYDL_INLINE T tanh_vec(T x) {
  const T e = exp_nonpos(T(-2) * std::fabs(x));
  return std::copysign((T(1) - e) / (T(1) + e), x);
}

template <class T>
PYDL_INLINE T sigmoid_vec(T x) {
  return T(0.5) + T(0.5) * tanh_vec(T(0.5) * x);
}

// Transcendental-heavy loops: weigh each element as this many for the parallel threshold.
constexpr index_t kCellCost = 8;

template <class T>
PYDL_CLONES void lstm_forward_rows(T* gates, const T* c_prev, T* h, T* c, T* tanh_c,
                                   index_t r0, index_t r1, index_t H) {
  for (index_t r = r0; r < r1; ++r) {
    T* __restrict a = gates + r * 4 * H;
    const T* __restrict cp = c_prev + r * H;
    T* __restrict hr = h + r * H;
    T* __restrict cr = c + r * H;
    T* __restrict tr = tanh_c + r * H;
#pragma omp simd
    for (index_t j = 0; j < H; ++j) {
      const T i = sigmoid_vec(a[j]), f = sigmoid_vec(a[H + j]);
      const T g = tanh_vec(a[2 * H + j]), o = sigmoid_vec(a[3 * H + j]);
      a[j] = i;
      a[H + j] = f;
      a[2 * H + j] = g;
      a[3 * H + j] = o;
      const T cj = f * cp[j] + i * g;
      const T t = tanh_vec(cj);
      cr[j] = cj;
      tr[j] = t;
      hr[j] = o * t;
    }
  }
}

template <class T>
PYDL_CLONES void lstm_backward_rows(const T* dh, const T* dc, const T* acts, const T* tanh_c,
                                    const T* c_prev, T* dgates, T* dc_prev, index_t r0,
                                    index_t r1, index_t H) {
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict a = acts + r * 4 * H;
    const T* __restrict dhr = dh + r * H;
    const T* __restrict dcr = dc + r * H;
    const T* __restrict tr = tanh_c + r * H;
    const T* __restrict cp = c_prev + r * H;
    T* __restrict d = dgates + r * 4 * H;
    T* __restrict dcp = dc_prev + r * H;
#pragma omp simd
    for (index_t j = 0; j < H; ++j) {
      const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
      const T t = tr[j], dhj = dhr[j];
      const T dcj = dcr[j] + dhj * o * (T(1) - t * t);
      d[j] = dcj * g * i * (T(1) - i);
      d[H + j] = dcj * cp[j] * f * (T(1) - f);
      d[2 * H + j] = dcj * i * (T(1) - g * g);
      d[3 * H + j] = dhj * t * o * (T(1) - o);
      dcp[j] = dcj * f;
    }
  }
}

template <class T>
PYDL_CLONES void gru_forward_rows(const T* xg, T* hg, const T* h_prev, T* h, T* n,
                                  index_t r0, index_t r1, index_t H) {
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict x = xg + r * 3 * H;
    T* __restrict g = hg + r * 3 * H;
    const T* __restrict hp = h_prev + r * H;
    T* __restrict hr = h + r * H;
    T* __restrict nr = n + r * H;
#pragma omp simd
    for (index_t j = 0; j < H; ++j) {
      const T rj = sigmoid_vec(x[j] + g[j]), zj = sigmoid_vec(x[H + j] + g[H + j]);
      const T nj = tanh_vec(x[2 * H + j] + rj * g[2 * H + j]);
      g[j] = rj;
      g[H + j] = zj;
      nr[j] = nj;
      hr[j] = nj + zj * (hp[j] - nj);
    }
  }
}

template <class T>
PYDL_CLONES void gru_backward_rows(const T* dh, const T* rzh, const T* n, const T* h_prev,
                                   T* dxg, T* dhg, T* dh_prev, index_t r0, index_t r1,
                                   index_t H) {
  for (index_t r = r0; r < r1; ++r) {
    const T* __restrict g = rzh + r * 3 * H;
    const T* __restrict dhr = dh + r * H;
    const T* __restrict nr = n + r * H;
    const T* __restrict hp = h_prev + r * H;
    T* __restrict dx = dxg + r * 3 * H;
    T* __restrict dhh = dhg + r * 3 * H;
    T* __restrict dhp = dh_prev + r * H;
#pragma omp simd
    for (index_t j = 0; j < H; ++j) {
      const T rj = g[j], zj = g[H + j], hn = g[2 * H + j], nj = nr[j], dhj = dhr[j];
      const T dn = dhj * (T(1) - zj) * (T(1) - nj * nj);
      const T dz = dhj * (hp[j] - nj) * zj * (T(1) - zj);
      const T dr = dn * hn * rj * (T(1) - rj);
      dx[j] = dr;
      dx[H + j] = dz;
      dx[2 * H + j] = dn;
      dhh[j] = dr;
      dhh[H + j] = dz;
      dhh[2 * H + j] = dn * rj;
      dhp[j] = dhj * zj;
    }
  }
}

// (N, H) of a gate array of shape (N, gates * H), after checking it is 2-D.
std::pair<index_t, index_t> rows_and_hidden(const py::array& a, index_t gates,
                                            const char* name) {
  if (a.ndim() != 2 || a.shape(1) % gates != 0)
    throw py::value_error(std::string("pydl._C.") + name + ": expected gates of shape (N, " +
                          std::to_string(gates) + " * H), got " + shape_str(a));
  return {a.shape(0), a.shape(1) / gates};
}

template <class F>
void over_rows(index_t N, index_t G, F&& f) {
  py::gil_scoped_release release;
  parallel_blocks(N, N * G * kCellCost, f);
}

}  // namespace

void lstm_cell_forward(py::array& gates, const py::array& c_prev, py::array& h, py::array& c,
                       py::array& tanh_c) {
  const auto [N, H] = rows_and_hidden(gates, 4, "lstm_cell_forward");
  dispatch_float(gates, "lstm_cell_forward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(gates, "gates", {N, 4 * H}, true);
    require<T>(c_prev, "c_prev", {N, H});
    for (py::array* out : {&h, &c, &tanh_c}) require<T>(*out, "output", {N, H}, true);
    T* g = mptr<T>(gates);
    const T* cp = cptr<T>(c_prev);
    T *hp = mptr<T>(h), *cn = mptr<T>(c), *tc = mptr<T>(tanh_c);
    over_rows(N, 4 * H, [&](index_t r0, index_t r1) {
      lstm_forward_rows(g, cp, hp, cn, tc, r0, r1, H);
    });
  });
}

void lstm_cell_backward(const py::array& dh, const py::array& dc, const py::array& acts,
                        const py::array& tanh_c, const py::array& c_prev, py::array& dgates,
                        py::array& dc_prev) {
  const auto [N, H] = rows_and_hidden(acts, 4, "lstm_cell_backward");
  dispatch_float(acts, "lstm_cell_backward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(acts, "acts", {N, 4 * H});
    for (const py::array* in : {&dh, &dc, &tanh_c, &c_prev}) require<T>(*in, "input", {N, H});
    require<T>(dgates, "dgates", {N, 4 * H}, true);
    require<T>(dc_prev, "dc_prev", {N, H}, true);
    const T *dhp = cptr<T>(dh), *dcp = cptr<T>(dc), *a = cptr<T>(acts);
    const T *tc = cptr<T>(tanh_c), *cp = cptr<T>(c_prev);
    T *d = mptr<T>(dgates), *dcn = mptr<T>(dc_prev);
    over_rows(N, 4 * H, [&](index_t r0, index_t r1) {
      lstm_backward_rows(dhp, dcp, a, tc, cp, d, dcn, r0, r1, H);
    });
  });
}

void gru_cell_forward(const py::array& xg, py::array& hg, const py::array& h_prev, py::array& h,
                      py::array& n) {
  const auto [N, H] = rows_and_hidden(hg, 3, "gru_cell_forward");
  dispatch_float(hg, "gru_cell_forward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(xg, "xg", {N, 3 * H});
    require<T>(hg, "hg", {N, 3 * H}, true);
    require<T>(h_prev, "h_prev", {N, H});
    require<T>(h, "h", {N, H}, true);
    require<T>(n, "n", {N, H}, true);
    const T *x = cptr<T>(xg), *hp = cptr<T>(h_prev);
    T *g = mptr<T>(hg), *ho = mptr<T>(h), *no = mptr<T>(n);
    over_rows(N, 3 * H, [&](index_t r0, index_t r1) {
      gru_forward_rows(x, g, hp, ho, no, r0, r1, H);
    });
  });
}

void gru_cell_backward(const py::array& dh, const py::array& rzh, const py::array& n,
                       const py::array& h_prev, py::array& dxg, py::array& dhg,
                       py::array& dh_prev) {
  const auto [N, H] = rows_and_hidden(rzh, 3, "gru_cell_backward");
  dispatch_float(rzh, "gru_cell_backward", [&](auto tag) {
    using T = decltype(tag);
    require<T>(rzh, "rzh", {N, 3 * H});
    for (const py::array* in : {&dh, &n, &h_prev}) require<T>(*in, "input", {N, H});
    require<T>(dxg, "dxg", {N, 3 * H}, true);
    require<T>(dhg, "dhg", {N, 3 * H}, true);
    require<T>(dh_prev, "dh_prev", {N, H}, true);
    const T *dhp = cptr<T>(dh), *g = cptr<T>(rzh), *np_ = cptr<T>(n), *hp = cptr<T>(h_prev);
    T *dx = mptr<T>(dxg), *dhh = mptr<T>(dhg), *dho = mptr<T>(dh_prev);
    over_rows(N, 3 * H, [&](index_t r0, index_t r1) {
      gru_backward_rows(dhp, g, np_, hp, dx, dhh, dho, r0, r1, H);
    });
  });
}

// The Python bindings of this file's kernels (called by module.cc).
void bind_rnn(py::module_& m) {
  using namespace py::literals;
  m.def("lstm_cell_forward", &pydl::lstm_cell_forward, "gates"_a, "c_prev"_a, "h"_a, "c"_a,
        "tanh_c"_a);
  m.def("lstm_cell_backward", &pydl::lstm_cell_backward, "dh"_a, "dc"_a, "acts"_a, "tanh_c"_a,
        "c_prev"_a, "dgates"_a, "dc_prev"_a);
  m.def("gru_cell_forward", &pydl::gru_cell_forward, "xg"_a, "hg"_a, "h_prev"_a, "h"_a, "n"_a);
  m.def("gru_cell_backward", &pydl::gru_cell_backward, "dh"_a, "rzh"_a, "n"_a, "h_prev"_a,
        "dxg"_a, "dhg"_a, "dh_prev"_a);
}

}  // namespace pydl
