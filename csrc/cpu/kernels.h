// The binding functions of the kernel files: each family file (conv2d.cc, pool.cc, ...)
// defines its kernels and a bind_<family> that registers them in pydl._C; module.cc calls
// every bind_<family>. A new kernel in an existing file needs only that file.
// Kernels' outputs are allocated by the caller (pydl/backend/cpu/ext.py) and passed in;
// inputs must be C-contiguous float32 / float64 (int64 for targets and argmax) and are
// checked.
#pragma once

#include <pybind11/stl.h>

#include <cstdint>
#include <vector>

#include "common.h"

namespace pydl {

void bind_conv2d(py::module_& m);         // im2col, col2im
void bind_conv2d_direct(py::module_& m);  // depthwise conv2d forward / backward data
void bind_pool(py::module_& m);           // max / avg pool2d forward and backward
void bind_softmax(py::module_& m);        // (log-)softmax, cross-entropy
void bind_activation(py::module_& m);     // erf, gelu
void bind_rnn(py::module_& m);            // LSTM / GRU cells
void bind_optim(py::module_& m);          // fused optimizer steps
void bind_parallel(py::module_& m);       // build_info, num_threads, set_num_threads

}  // namespace pydl
