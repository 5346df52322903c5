"""The C++ kernels of ``pydl._C`` behind the protocol's signatures (``pydl.backend.protocol``).

Importing this module fails with ImportError when the extension is not built; the CPU backend
then keeps the NumPy references. Each wrapper makes its inputs C-contiguous, computes the
output shape, allocates the outputs with NumPy and lets ``_C`` fill them. A case the C++ code
does not take (empty arrays, dtypes other than float32/float64, mixed dtypes, optimizer state
in an odd layout) the wrapper declines by returning ``DECLINED``, and ``_or_reference`` (the
decorator on every kernel) hands the call to the reference, so every call gives the
reference's answer.

Convolution is im2col (C++) + GEMM (NumPy's matmul, i.e. OpenBLAS) + a transpose. The GEMM
stays with BLAS: on one core of the dev machine OpenBLAS ran a 64 x 576 x 8192 SGEMM at
105 GFLOP/s against 41 GFLOP/s for a cache-blocked, compiler-vectorized C++ GEMM (see
csrc/cpu/conv2d.cc), and for every layer but depthwise ones the GEMM is most of the time.
The C++ side builds the columns of a chunk of images in the (C*kH*kW, B*Ho*Wo) layout, so each
group is one large GEMM instead of one small GEMM per image, and col2im scatters back without
NumPy's slice-adds. Chunks bound the column buffer to ``COLS_BUDGET`` elements (4 MB in
float32, so it stays in cache between im2col and the GEMM). Layers with one input and at most
``DIRECT_MAX_OUT`` output channels per group (depthwise) run forward and backward-data as
direct loops (``_C.conv2d_direct_*``): there the GEMMs are too thin to pay for the columns.
"""

from __future__ import annotations

import functools

import numpy as np

from ... import _C  # ImportError here means: no extension, the references stay
from ..low_precision import model_copies
from . import reference

#: the largest column buffer (elements) conv2d builds at once; bigger batches are chunked.
COLS_BUDGET = 1 << 20
#: direct loops instead of im2col + GEMM when a group has one input channel and at most this
#: many output channels (measured on 3x3 depthwise layers: 1.6x to 9x faster with 1 or 2
#: outputs per group, even with 4; slower with 6, LeNet's first layer)
DIRECT_MAX_OUT = 4

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: what a wrapper returns for a case _C does not take; ``_or_reference`` then asks the reference
DECLINED = object()


def _or_reference(fast):
    """Kernel ``fast`` made total: a call it answers with DECLINED goes to the reference.

    The one place the C++ kernels fall back: each wrapper only says when it declines.
    """
    fallback = getattr(reference, fast.__name__)

    @functools.wraps(fast)
    def kernel(*args, **kwargs):
        out = fast(*args, **kwargs)
        return fallback(*args, **kwargs) if out is DECLINED else out

    return kernel


def _native(*arrays) -> bool:
    """True when every array is float32, or every array float64: the dtypes _C computes in."""
    dtype = arrays[0].dtype
    return dtype in _FLOATS and all(a.dtype == dtype for a in arrays[1:])


def _pair(v):
    return (int(v[0]), int(v[1]))


def num_threads() -> int:
    """The number of threads the C++ kernels use (default: OMP_NUM_THREADS or the CPUs)."""
    return _C.num_threads()


def set_num_threads(threads: int) -> None:
    """Use ``threads`` threads in the C++ kernels (0: back to the default)."""
    _C.set_num_threads(int(threads))


# ----------------------------------------------------------------------------- convolution


def _conv_plan(x_shape, w_shape, stride, padding, dilation, groups, name):
    """(Ho, Wo, K per group, batch chunk) of a convolution, after checking the shapes."""
    reference.check_conv_shapes(name, x_shape, w_shape, groups)
    n, c, h, w = x_shape
    kh, kw = w_shape[2:]
    ho, wo = reference.window_output_hw(name, (h, w), (kh, kw), stride, padding, dilation)
    chunk = max(1, min(n, COLS_BUDGET // max(1, c * kh * kw * ho * wo)))
    return ho, wo, (c // groups) * kh * kw, chunk


def _direct(w_shape, groups) -> bool:
    return w_shape[1] == 1 and w_shape[0] // groups <= DIRECT_MAX_OUT


def _grouped_gy(gy, n0, b, groups, og, p):
    """gy[n0:n0+b] (b, G*Og, P) rearranged to (G, Og, b*P), the GEMM layout of the columns."""
    part = gy[n0 : n0 + b].reshape(b, groups, og, p).transpose(1, 2, 0, 3)
    return np.ascontiguousarray(part).reshape(groups, og, b * p)


@_or_reference
def conv2d_forward(x, w, stride, padding, dilation, groups):
    """y (N, O, Ho, Wo) = cross-correlation of x with w (im2col + one GEMM per group)."""
    if not _native(x, w) or x.size == 0 or w.size == 0:
        return DECLINED
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    ho, wo, k, chunk = _conv_plan(x.shape, w.shape, stride, padding, dilation, groups, "conv2d")
    x = np.ascontiguousarray(x)
    n, c = x.shape[:2]
    o, p = w.shape[0], ho * wo
    y = np.empty((n, o, ho, wo), x.dtype)
    if _direct(w.shape, groups):
        _C.conv2d_direct_forward(x, np.ascontiguousarray(w), y, stride, padding, dilation, groups)
        return y
    wg = np.ascontiguousarray(w).reshape(groups, o // groups, k)
    buf = np.empty(c * w.shape[2] * w.shape[3] * chunk * p, x.dtype)
    for n0 in range(0, n, chunk):
        b = min(chunk, n - n0)
        cols = buf[: groups * k * b * p].reshape(groups * k, b * p)
        _C.im2col(x[n0 : n0 + b], cols, w.shape[2:], stride, padding, dilation)
        yt = np.matmul(wg, cols.reshape(groups, k, b * p))  # (G, Og, b*P)
        y[n0 : n0 + b] = yt.reshape(o, b, ho, wo).transpose(1, 0, 2, 3)
    return y


@_or_reference
def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups):
    """gx (x_shape): one GEMM per group into columns, then col2im."""
    if not _native(gy, w) or gy.size == 0 or w.size == 0:
        return DECLINED
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    x_shape = tuple(int(s) for s in x_shape)
    ho, wo, k, chunk = _conv_plan(x_shape, w.shape, stride, padding, dilation, groups,
                                  "conv2d_backward_data")
    gy = np.ascontiguousarray(gy)
    n, o, p = x_shape[0], w.shape[0], ho * wo
    gx = np.empty(x_shape, gy.dtype)
    if _direct(w.shape, groups):
        _C.conv2d_direct_backward_data(gy, np.ascontiguousarray(w), gx, stride, padding, dilation,
                                       groups)
        return gx
    wt = np.ascontiguousarray(w).reshape(groups, o // groups, k).transpose(0, 2, 1)
    for n0 in range(0, n, chunk):
        b = min(chunk, n - n0)
        cols = np.matmul(wt, _grouped_gy(gy, n0, b, groups, o // groups, p))  # (G, K, b*P)
        _C.col2im(cols.reshape(groups * k, b * p), gx[n0 : n0 + b], w.shape[2:], stride,
                  padding, dilation)
    return gx


@_or_reference
def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """gw (w_shape): im2col, then one GEMM per group against the rearranged gy."""
    if not _native(gy, x) or gy.size == 0 or x.size == 0 or not all(w_shape):
        return DECLINED
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    w_shape = tuple(int(s) for s in w_shape)
    ho, wo, k, chunk = _conv_plan(x.shape, w_shape, stride, padding, dilation, groups,
                                  "conv2d_backward_weight")
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy)
    n, c = x.shape[:2]
    o, p = w_shape[0], ho * wo
    gw = None
    buf = np.empty(c * w_shape[2] * w_shape[3] * chunk * p, x.dtype)
    for n0 in range(0, n, chunk):
        b = min(chunk, n - n0)
        cols = buf[: groups * k * b * p].reshape(groups * k, b * p)
        _C.im2col(x[n0 : n0 + b], cols, w_shape[2:], stride, padding, dilation)
        gyt = _grouped_gy(gy, n0, b, groups, o // groups, p)
        part = np.matmul(gyt, cols.reshape(groups, k, b * p).transpose(0, 2, 1))  # (G, Og, K)
        gw = part if gw is None else np.add(gw, part, out=gw)
    return gw.reshape(w_shape)


# ----------------------------------------------------------------------------- pooling


def _pool_out(name, x_shape, kernel_size, stride, padding):
    n, c, h, w = x_shape
    return (n, c) + reference.window_output_hw(name, (h, w), kernel_size, stride, padding)


@_or_reference
def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, argmax): window maxima and the flat h * W + w index of each (-1: padding only)."""
    if not _native(x) or x.size == 0:
        return DECLINED
    kernel_size, stride, padding = _pair(kernel_size), _pair(stride), _pair(padding)
    shape = _pool_out("max_pool2d", x.shape, kernel_size, stride, padding)
    y, argmax = np.empty(shape, x.dtype), np.empty(shape, np.int64)
    _C.max_pool2d_forward(np.ascontiguousarray(x), y, argmax, kernel_size, stride, padding)
    return y, argmax


@_or_reference
def max_pool2d_backward(gy, argmax, x_shape):
    """gx (x_shape): gy scatter-added at argmax."""
    if not _native(gy) or gy.size == 0:
        return DECLINED
    gx = np.empty(tuple(int(s) for s in x_shape), gy.dtype)
    _C.max_pool2d_backward(np.ascontiguousarray(gy), np.ascontiguousarray(argmax, np.int64), gx)
    return gx


@_or_reference
def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad=True):
    """Window means with zero padding (divisor kH*kW, or the real elements only)."""
    if not _native(x) or x.size == 0:
        return DECLINED
    kernel_size, stride, padding = _pair(kernel_size), _pair(stride), _pair(padding)
    y = np.empty(_pool_out("avg_pool2d", x.shape, kernel_size, stride, padding), x.dtype)
    _C.avg_pool2d_forward(np.ascontiguousarray(x), y, kernel_size, stride, padding,
                          bool(count_include_pad))
    return y


@_or_reference
def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad=True):
    """gx (x_shape): each window spreads gy / divisor over its inputs."""
    if not _native(gy) or gy.size == 0:
        return DECLINED
    kernel_size, stride, padding = _pair(kernel_size), _pair(stride), _pair(padding)
    gx = np.empty(tuple(int(s) for s in x_shape), gy.dtype)
    _C.avg_pool2d_backward(np.ascontiguousarray(gy), gx, kernel_size, stride, padding,
                           bool(count_include_pad))
    return gx


# ----------------------------------------------------------------------------- softmax


def _rowwise(kernel, x):
    if not _native(x) or x.size == 0:
        return DECLINED
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    kernel(x, y)
    return y


def _rowwise_backward(kernel, gy, y):
    if not _native(gy, y) or y.size == 0 or gy.shape != y.shape:
        return DECLINED
    y = np.ascontiguousarray(y)
    gx = np.empty_like(y)
    kernel(np.ascontiguousarray(gy), y, gx)
    return gx


@_or_reference
def softmax_forward(x):
    """Softmax along the last axis."""
    return _rowwise(_C.softmax_forward, x)


@_or_reference
def log_softmax_forward(x):
    """Log-softmax along the last axis."""
    return _rowwise(_C.log_softmax_forward, x)


@_or_reference
def softmax_backward(gy, y):
    """gx = y * (gy - sum(gy * y, -1))."""
    return _rowwise_backward(_C.softmax_backward, gy, y)


@_or_reference
def log_softmax_backward(gy, y):
    """gx = gy - exp(y) * sum(gy, -1)."""
    return _rowwise_backward(_C.log_softmax_backward, gy, y)


# ----------------------------------------------------------------------------- cross-entropy


def _xent_args(logits, target, weight):
    """Contiguous logits, int64 targets and weights in the logits' dtype (or None)."""
    logits = np.ascontiguousarray(logits)
    target = np.ascontiguousarray(target, np.int64)
    if weight is not None:
        weight = np.ascontiguousarray(weight, logits.dtype)
    return logits, target, weight


def _xent_native(logits, target):
    return (_native(logits) and logits.ndim == 2 and logits.size != 0
            and np.shape(target) == logits.shape[:1])


@_or_reference
def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    """(loss (N,), lse (N,)): per-sample cross-entropy fused with log-softmax."""
    if not _xent_native(logits, target):
        return DECLINED
    logits, target, weight = _xent_args(logits, target, weight)
    n = logits.shape[0]
    loss, lse = np.empty(n, logits.dtype), np.empty(n, logits.dtype)
    bad = _C.cross_entropy_forward(logits, target, weight, int(ignore_index),
                                   float(label_smoothing), loss, lse)
    if bad >= 0:
        reference.check_targets(target, logits.shape[1], ignore_index)
    return loss, lse


@_or_reference
def cross_entropy_backward(grad_loss, logits, lse, target, weight, ignore_index,
                           label_smoothing):
    """glogits (N, C) = d(sum_i grad_loss_i * loss_i) / d logits."""
    if not _xent_native(logits, target) or not _native(logits, grad_loss, lse):
        return DECLINED
    logits, target, weight = _xent_args(logits, target, weight)
    glogits = np.empty_like(logits)
    bad = _C.cross_entropy_backward(np.ascontiguousarray(grad_loss), logits,
                                    np.ascontiguousarray(lse), target, weight, int(ignore_index),
                                    float(label_smoothing), glogits)
    if bad >= 0:
        reference.check_targets(target, logits.shape[1], ignore_index)
    return glogits


# ----------------------------------------------------------------------------- activations


def _c_order(a):
    """``a`` itself when C-contiguous (0-d too: np.ascontiguousarray would make it 1-d)."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


@_or_reference
def erf(x):
    """The error function, elementwise."""
    if not _native(x) or x.size == 0:
        return DECLINED
    x = _c_order(x)
    y = np.empty_like(x)
    _C.erf(x, y)
    return y


@_or_reference
def gelu_forward(x, approximate="none"):
    """(y, cdf) with cdf = Phi(x); the tanh form stays with the reference (NumPy's tanh)."""
    if approximate != "none" or not _native(x) or x.size == 0:
        return DECLINED
    x = _c_order(x)
    y, cdf = np.empty_like(x), np.empty_like(x)
    _C.gelu_forward(x, y, cdf)
    return y, cdf


@_or_reference
def gelu_backward(gy, x, cdf, approximate="none"):
    """gx = gy * dGELU/dx, from x and the cdf that forward kept."""
    if not _native(gy, x, cdf) or x.size == 0 or not gy.shape == x.shape == cdf.shape:
        return DECLINED
    x = _c_order(x)
    gx = np.empty_like(x)
    _C.gelu_backward(_c_order(gy), x, _c_order(cdf), gx, approximate == "tanh")
    return gx


# ----------------------------------------------------------------------------- recurrent cells
# One pass per step in C++ instead of a dozen NumPy passes; arrays _C cannot take (odd
# dtypes, a non-contiguous in-place or output array, empty) go to the reference.


def _cell_native(inplace, *arrays) -> bool:
    return (_native(inplace, *arrays) and inplace.ndim == 2 and inplace.size != 0
            and inplace.flags.c_contiguous)


def _out(out, like, shape):
    return np.empty(shape, like.dtype) if out is None else out


@_or_reference
def lstm_cell_forward(gates, c_prev):
    """(h, c, tanh_c) of one LSTM step; gates (N, 4H) becomes the activations, in place."""
    if not _cell_native(gates, c_prev):
        return DECLINED
    shape = c_prev.shape
    h, c, tanh_c = (np.empty(shape, gates.dtype) for _ in range(3))
    _C.lstm_cell_forward(gates, np.ascontiguousarray(c_prev), h, c, tanh_c)
    return h, c, tanh_c


@_or_reference
def lstm_cell_backward(dh, dc, acts, tanh_c, c_prev, dgates=None):
    """(dgates (N, 4H), dc_prev) of one LSTM step."""
    if not _cell_native(acts, dh, dc, tanh_c, c_prev) or (
            dgates is not None and not _cell_native(dgates, acts)):
        return DECLINED
    dgates = _out(dgates, acts, acts.shape)
    dc_prev = np.empty(tanh_c.shape, acts.dtype)
    c = np.ascontiguousarray
    _C.lstm_cell_backward(c(dh), c(dc), acts, c(tanh_c), c(c_prev), dgates, dc_prev)
    return dgates, dc_prev


@_or_reference
def gru_cell_forward(xg, hg, h_prev):
    """(h, n) of one GRU step; hg[:, :2H] becomes r, z, in place."""
    if not _cell_native(hg, xg, h_prev):
        return DECLINED
    shape = (hg.shape[0], hg.shape[1] // 3)
    h, n = np.empty(shape, hg.dtype), np.empty(shape, hg.dtype)
    _C.gru_cell_forward(np.ascontiguousarray(xg), hg, np.ascontiguousarray(h_prev), h, n)
    return h, n


@_or_reference
def gru_cell_backward(dh, rzh, n, h_prev, dxg=None, dhg=None):
    """(dxg, dhg, dh_prev) of one GRU step (dh_prev: the direct path dh * z only)."""
    outs_ok = all(o is None or _cell_native(o, rzh) for o in (dxg, dhg))
    if not _cell_native(rzh, dh, n, h_prev) or not outs_ok:
        return DECLINED
    dxg, dhg = _out(dxg, rzh, rzh.shape), _out(dhg, rzh, rzh.shape)
    dh_prev = np.empty(n.shape, rzh.dtype)
    c = np.ascontiguousarray
    _C.gru_cell_backward(c(dh), c(rzh), c(n), c(h_prev), dxg, dhg, dh_prev)
    return dxg, dhg, dh_prev


# ----------------------------------------------------------------------------- optimizers
# _C updates everything in place and returns True, or returns False having changed nothing
# when some array is not C-contiguous float32/float64 of its parameter's size and dtype.


@model_copies
@_or_reference
def sgd_step(params, grads, momentum_bufs, *, lr, momentum, dampening, weight_decay, nesterov,
             maximize, first_step):
    """Fused SGD step (momentum, dampening, Nesterov, weight decay, maximize), in place."""
    if not _C.sgd_step(params, grads, momentum_bufs, lr, momentum, dampening, weight_decay,
                       bool(nesterov), bool(maximize), bool(first_step)):
        return DECLINED


@model_copies
@_or_reference
def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, lr, beta1, beta2, eps,
              weight_decay, step, amsgrad, decoupled_weight_decay, maximize):
    """Fused Adam / AdamW (optionally AMSGrad) step, in place."""
    if not _C.adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, lr, beta1, beta2,
                        eps, weight_decay, int(step), bool(amsgrad), bool(decoupled_weight_decay),
                        bool(maximize)):
        return DECLINED


@model_copies
@_or_reference
def rmsprop_step(params, grads, square_avgs, momentum_bufs, grad_avgs, *, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize):
    """Fused RMSprop (centered, momentum) step, in place."""
    if not _C.rmsprop_step(params, grads, square_avgs, momentum_bufs, grad_avgs, lr, alpha, eps,
                           weight_decay, momentum, bool(centered), bool(maximize)):
        return DECLINED


@model_copies
@_or_reference
def adagrad_step(params, grads, state_sums, *, lr, lr_decay, weight_decay, eps, step, maximize):
    """Fused Adagrad step (lr decay, weight decay, maximize), in place."""
    if not _C.adagrad_step(params, grads, state_sums, lr, lr_decay, weight_decay, eps, int(step),
                           bool(maximize)):
        return DECLINED
