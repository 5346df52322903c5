// The PYBIND11_MODULE block of pydl._C: each kernel file binds its own kernels
// (bind_<family>, declared in kernels.h), so a new kernel in an existing file needs no line
// here. The Python-facing wrappers with the protocol signatures are in
// pydl/backend/cpu/ext.py.
#include "kernels.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "pydl CPU kernels (C++17, threads + SIMD); use them through pydl.backend.cpu";
  pydl::bind_conv2d(m);
  pydl::bind_conv2d_direct(m);
  pydl::bind_pool(m);
  pydl::bind_softmax(m);
  pydl::bind_activation(m);
  pydl::bind_rnn(m);
  pydl::bind_optim(m);
  pydl::bind_parallel(m);
}
