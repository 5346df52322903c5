// The PYBIND11_MODULE block of pydl._C: binds the kernels declared in kernels.h.
// The Python-facing wrappers with the protocol signatures are in pydl/backend/cpu/ext.py.
#include <pybind11/stl.h>

#include "kernels.h"

namespace py = pybind11;
using namespace py::literals;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydl CPU kernels (C++17, threads + SIMD); use them through pydl.backend.cpu";
  using pydl::index_t;

  m.def("im2col", &pydl::im2col, "x"_a, "cols"_a, "kernel"_a, "stride"_a, "padding"_a,
        "dilation"_a);
  m.def("col2im", &pydl::col2im, "cols"_a, "gx"_a, "kernel"_a, "stride"_a, "padding"_a,
        "dilation"_a);

  m.def("conv2d_direct_forward", &pydl::conv2d_direct_forward, "x"_a, "w"_a, "y"_a,
        "stride"_a, "padding"_a, "dilation"_a, "groups"_a);
  m.def("conv2d_direct_backward_data", &pydl::conv2d_direct_backward_data, "gy"_a, "w"_a,
        "gx"_a, "stride"_a, "padding"_a, "dilation"_a, "groups"_a);

  m.def("max_pool2d_forward", &pydl::max_pool2d_forward, "x"_a, "y"_a, "argmax"_a, "kernel"_a,
        "stride"_a, "padding"_a);
  m.def("max_pool2d_backward", &pydl::max_pool2d_backward, "gy"_a, "argmax"_a, "gx"_a);
  m.def("avg_pool2d_forward", &pydl::avg_pool2d_forward, "x"_a, "y"_a, "kernel"_a, "stride"_a,
        "padding"_a, "count_include_pad"_a);
  m.def("avg_pool2d_backward", &pydl::avg_pool2d_backward, "gy"_a, "gx"_a, "kernel"_a,
        "stride"_a, "padding"_a, "count_include_pad"_a);

  m.def("softmax_forward", &pydl::softmax_forward, "x"_a, "y"_a);
  m.def("softmax_backward", &pydl::softmax_backward, "gy"_a, "y"_a, "gx"_a);
  m.def("log_softmax_forward", &pydl::log_softmax_forward, "x"_a, "y"_a);
  m.def("log_softmax_backward", &pydl::log_softmax_backward, "gy"_a, "y"_a, "gx"_a);
  m.def("cross_entropy_forward", &pydl::cross_entropy_forward, "logits"_a, "target"_a,
        "weight"_a, "ignore_index"_a, "label_smoothing"_a, "loss"_a, "lse"_a);
  m.def("cross_entropy_backward", &pydl::cross_entropy_backward, "grad_loss"_a, "logits"_a,
        "lse"_a, "target"_a, "weight"_a, "ignore_index"_a, "label_smoothing"_a, "glogits"_a);

  m.def("erf", &pydl::erf, "x"_a, "y"_a);
  m.def("gelu_forward", &pydl::gelu_forward, "x"_a, "y"_a, "cdf"_a);
  m.def("gelu_backward", &pydl::gelu_backward, "gy"_a, "x"_a, "cdf"_a, "gx"_a, "tanh_form"_a);
  m.def("lstm_cell_forward", &pydl::lstm_cell_forward, "gates"_a, "c_prev"_a, "h"_a, "c"_a,
        "tanh_c"_a);
  m.def("lstm_cell_backward", &pydl::lstm_cell_backward, "dh"_a, "dc"_a, "acts"_a, "tanh_c"_a,
        "c_prev"_a, "dgates"_a, "dc_prev"_a);
  m.def("gru_cell_forward", &pydl::gru_cell_forward, "xg"_a, "hg"_a, "h_prev"_a, "h"_a, "n"_a);
  m.def("gru_cell_backward", &pydl::gru_cell_backward, "dh"_a, "rzh"_a, "n"_a, "h_prev"_a,
        "dxg"_a, "dhg"_a, "dh_prev"_a);

  m.def("sgd_step", &pydl::sgd_step, "params"_a, "grads"_a, "momentum_bufs"_a, "lr"_a,
        "momentum"_a, "dampening"_a, "weight_decay"_a, "nesterov"_a, "maximize"_a,
        "first_step"_a);
  m.def("adam_step", &pydl::adam_step, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a,
        "max_exp_avg_sqs"_a, "lr"_a, "beta1"_a, "beta2"_a, "eps"_a, "weight_decay"_a, "step"_a,
        "amsgrad"_a, "decoupled_weight_decay"_a, "maximize"_a);
  m.def("rmsprop_step", &pydl::rmsprop_step, "params"_a, "grads"_a, "square_avgs"_a,
        "momentum_bufs"_a, "grad_avgs"_a, "lr"_a, "alpha"_a, "eps"_a, "weight_decay"_a,
        "momentum"_a, "centered"_a, "maximize"_a);
  m.def("adagrad_step", &pydl::adagrad_step, "params"_a, "grads"_a, "state_sums"_a, "lr"_a,
        "lr_decay"_a, "weight_decay"_a, "eps"_a, "step"_a, "maximize"_a);

  m.def("build_info", &pydl::build_info, "How the extension was compiled, and its threads.");
  m.def("num_threads", &pydl::num_threads, "The number of threads the kernels use.");
  m.def("set_num_threads", &pydl::set_num_threads, "threads"_a,
        "Use this many threads (0: the default, OMP_NUM_THREADS or the CPUs available).");
}
