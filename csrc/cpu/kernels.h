// Declarations of the kernels that module.cc binds into pydl._C, one block per family file.
// Outputs are allocated by the caller (pydl/backend/cpu/ext.py) and passed in; inputs must be
// C-contiguous float32 / float64 (int64 for targets and argmax) and are checked.
#pragma once

#include <cstdint>
#include <vector>

#include "common.h"

namespace pydl {

// conv2d.cc
void im2col(const py::array& x, py::array& cols, std::vector<index_t> kernel,
            std::vector<index_t> stride, std::vector<index_t> padding,
            std::vector<index_t> dilation);
void col2im(const py::array& cols, py::array& gx, std::vector<index_t> kernel,
            std::vector<index_t> stride, std::vector<index_t> padding,
            std::vector<index_t> dilation);

// conv2d_direct.cc: y and gx are outputs (overwritten).
void conv2d_direct_forward(const py::array& x, const py::array& w, py::array& y,
                           std::vector<index_t> stride, std::vector<index_t> padding,
                           std::vector<index_t> dilation, index_t groups);
void conv2d_direct_backward_data(const py::array& gy, const py::array& w, py::array& gx,
                                 std::vector<index_t> stride, std::vector<index_t> padding,
                                 std::vector<index_t> dilation, index_t groups);

// pool.cc
void max_pool2d_forward(const py::array& x, py::array& y, py::array& argmax,
                        std::vector<index_t> kernel, std::vector<index_t> stride,
                        std::vector<index_t> padding);
void max_pool2d_backward(const py::array& gy, const py::array& argmax, py::array& gx);
void avg_pool2d_forward(const py::array& x, py::array& y, std::vector<index_t> kernel,
                        std::vector<index_t> stride, std::vector<index_t> padding,
                        bool count_include_pad);
void avg_pool2d_backward(const py::array& gy, py::array& gx, std::vector<index_t> kernel,
                         std::vector<index_t> stride, std::vector<index_t> padding,
                         bool count_include_pad);

// softmax.cc
void softmax_forward(const py::array& x, py::array& y);
void softmax_backward(const py::array& gy, const py::array& y, py::array& gx);
void log_softmax_forward(const py::array& x, py::array& y);
void log_softmax_backward(const py::array& gy, const py::array& y, py::array& gx);
// Both return the first row whose target is out of range (and not ignore_index), or -1.
index_t cross_entropy_forward(const py::array& logits, const py::array& target,
                              const py::object& weight, std::int64_t ignore_index,
                              double label_smoothing, py::array& loss, py::array& lse);
index_t cross_entropy_backward(const py::array& grad_loss, const py::array& logits,
                               const py::array& lse, const py::array& target,
                               const py::object& weight, std::int64_t ignore_index,
                               double label_smoothing, py::array& glogits);

// activation.cc: elementwise over arrays of any shape; outputs have x's shape and dtype.
void erf(const py::array& x, py::array& y);
void gelu_forward(const py::array& x, py::array& y, py::array& cdf);  // exact (erf) form
void gelu_backward(const py::array& gy, const py::array& x, const py::array& cdf,
                   py::array& gx, bool tanh_form);
// rnn.cc: the pointwise part of one LSTM / GRU step (outputs allocated by the caller).
void lstm_cell_forward(py::array& gates, const py::array& c_prev, py::array& h, py::array& c,
                       py::array& tanh_c);
void lstm_cell_backward(const py::array& dh, const py::array& dc, const py::array& acts,
                        const py::array& tanh_c, const py::array& c_prev, py::array& dgates,
                        py::array& dc_prev);
void gru_cell_forward(const py::array& xg, py::array& hg, const py::array& h_prev, py::array& h,
                      py::array& n);
void gru_cell_backward(const py::array& dh, const py::array& rzh, const py::array& n,
                       const py::array& h_prev, py::array& dxg, py::array& dhg,
                       py::array& dh_prev);

// parallel.cc
py::dict build_info();  // compiler, whether math errno is on, SIMD clones, threads

// optim.cc: each returns false (and changes nothing) when an array is not eligible.
bool sgd_step(const py::sequence& params, const py::sequence& grads,
              const py::object& momentum_bufs, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize, bool first_step);
bool adam_step(const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
               const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs, double lr,
               double beta1, double beta2, double eps, double weight_decay, std::int64_t step,
               bool amsgrad, bool decoupled_weight_decay, bool maximize);
bool rmsprop_step(const py::sequence& params, const py::sequence& grads,
                  const py::object& square_avgs, const py::object& momentum_bufs,
                  const py::object& grad_avgs, double lr, double alpha, double eps,
                  double weight_decay, double momentum, bool centered, bool maximize);
bool adagrad_step(const py::sequence& params, const py::sequence& grads,
                  const py::object& state_sums, double lr, double lr_decay, double weight_decay,
                  double eps, std::int64_t step, bool maximize);

}  // namespace pydl
