"""The kernel protocol: the named kernels every backend exports, each with one signature.

Each stub below is the contract of one kernel: its parameters (names, order, defaults, which
are keyword-only) and what it computes. ``pydl.backend.cpu``, its NumPy reference module
(``pydl.backend.cpu.reference``), its C++ wrappers (``pydl.backend.cpu.ext``) and
``pydl.backend.cuda`` each export a function of the same name with the same parameters;
``tests/test_backend_protocol.py`` checks that with ``inspect.signature`` and checks that the
docs name no kernel missing from ``KERNELS``.

Functions in ``pydl.functions`` call these through ``backend_of(array)``; they never branch on
the device. Arrays are the backend's own (``numpy.ndarray`` or ``cupy.ndarray``), float32 or
float64, and kernels return new arrays unless they say "in place". Any size must work,
including empty arrays. Kernels may require C-contiguous inputs and make them so themselves.
Shapes use PyTorch's layouts: images are NCHW, conv weights are (C_out, C_in / groups, kH, kW).
Pairs such as ``stride`` are always tuples of two ints by the time they reach a kernel.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

#: a backend array: numpy.ndarray on the CPU, cupy.ndarray on a GPU
Array = Any
Pair = tuple[int, int]
Shape = Sequence[int]

_STUBS: dict[str, Callable] = {}


def _kernel(stub: Callable) -> Callable:
    """Register ``stub`` as a protocol entry (its name and signature are the contract)."""
    _STUBS[stub.__name__] = stub
    return stub


# ----------------------------------------------------------------------------- matmul
@_kernel
def matmul(a: Array, b: Array, trans_a: bool = False, trans_b: bool = False) -> Array:
    """op(a) @ op(b) for 2-D, or equally batched 3-D, arrays, in a's dtype.

    a is (M, K) or (B, M, K) (or (K, M) / (B, K, M) when trans_a), likewise b; both 2-D or
    both 3-D with the same B. Returns (M, N) or (B, M, N).
    """


# ----------------------------------------------------------------------------- convolution
@_kernel
def conv2d_forward(x: Array, w: Array, stride: Pair, padding: Pair, dilation: Pair,
                   groups: int) -> Array:
    """y (N, O, Ho, Wo): cross-correlation of x (N, C, H, W) with w (O, C // groups, kH, kW).

    Ho = (H + 2*ph - dh*(kH-1) - 1) // sh + 1 (same for W). No bias (the caller adds it).
    """


@_kernel
def conv2d_backward_data(gy: Array, w: Array, x_shape: Shape, stride: Pair, padding: Pair,
                         dilation: Pair, groups: int) -> Array:
    """gx (x_shape): the gradient of conv2d_forward with respect to x."""


@_kernel
def conv2d_backward_weight(gy: Array, x: Array, w_shape: Shape, stride: Pair, padding: Pair,
                           dilation: Pair, groups: int) -> Array:
    """gw (w_shape): the gradient of conv2d_forward with respect to w."""


# ----------------------------------------------------------------------------- pooling
@_kernel
def max_pool2d_forward(x: Array, kernel_size: Pair, stride: Pair,
                       padding: Pair) -> tuple[Array, Array]:
    """(y, argmax): window maxima with implicit -inf padding.

    argmax is int64 with y's shape: the flat index h * W + w into the input plane of the
    element chosen (the first maximum in row-major window order), -1 if the window saw only
    padding.
    """


@_kernel
def max_pool2d_backward(gy: Array, argmax: Array, x_shape: Shape) -> Array:
    """gx (x_shape): gy scatter-added at argmax."""


@_kernel
def avg_pool2d_forward(x: Array, kernel_size: Pair, stride: Pair, padding: Pair,
                       count_include_pad: bool = True) -> Array:
    """Window means with zero padding (divisor kH*kW, or only the real elements)."""


@_kernel
def avg_pool2d_backward(gy: Array, x_shape: Shape, kernel_size: Pair, stride: Pair,
                        padding: Pair, count_include_pad: bool = True) -> Array:
    """gx (x_shape): each window spreads gy / divisor over its inputs."""


# ----------------------------------------------------------------------------- softmax family
# Along the last axis; callers move the axis there and make x contiguous.
@_kernel
def softmax_forward(x: Array) -> Array:
    """Softmax along the last axis."""


@_kernel
def softmax_backward(gy: Array, y: Array) -> Array:
    """gx = y * (gy - sum(gy * y, -1))."""


@_kernel
def log_softmax_forward(x: Array) -> Array:
    """Log-softmax along the last axis."""


@_kernel
def log_softmax_backward(gy: Array, y: Array) -> Array:
    """gx = gy - exp(y) * sum(gy, -1)."""


@_kernel
def cross_entropy_forward(logits: Array, target: Array, weight: Array | None,
                          ignore_index: int, label_smoothing: float) -> tuple[Array, Array]:
    """(loss (N,), lse (N,)): cross-entropy fused with log-softmax; logits (N, C), target (N,).

    weight is None or a (C,) array. loss_i = (1 - eps) * w[t] * (lse - x[t])
    + (eps / C) * sum_c w[c] * (lse - x[c]) (w = 1 when weight is None), 0 where
    target == ignore_index; lse = logsumexp(logits, -1), kept for backward. Reduction is the
    caller's. A target outside [0, C) that is not ignore_index raises IndexError naming it.
    """


@_kernel
def cross_entropy_backward(grad_loss: Array, logits: Array, lse: Array, target: Array,
                           weight: Array | None, ignore_index: int,
                           label_smoothing: float) -> Array:
    """glogits (N, C) = d(sum_i grad_loss_i * loss_i) / d logits; ignored rows get zeros.

    glogits[i, c] = g_i * (softmax_ic * S_i - (1 - eps) * w[t_i] * [c == t_i] - (eps / C) * w[c]),
    S_i = (1 - eps) * w[t_i] + (eps / C) * sum_c w[c].
    """


# ----------------------------------------------------------------------------- activations
# Elementwise, any shape; outputs in x's shape and dtype.
@_kernel
def erf(x: Array) -> Array:
    """The error function."""


@_kernel
def gelu_forward(x: Array, approximate: str = "none") -> tuple[Array, Array]:
    """(y, cdf): y = x * cdf; approximate is "none" or "tanh".

    cdf = 0.5 * (1 + erf(x / sqrt(2))) ("none"), or
    0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) ("tanh"); cdf is kept for backward,
    so backward evaluates no erf or tanh.
    """


@_kernel
def gelu_backward(gy: Array, x: Array, cdf: Array, approximate: str = "none") -> Array:
    """gx = gy * (cdf + x * exp(-x^2 / 2) / sqrt(2 pi)) ("none"), or
    gy * (cdf + 2 x cdf (1 - cdf) sqrt(2/pi) (1 + 3 * 0.044715 x^2)) ("tanh")."""


# ----------------------------------------------------------------------------- recurrent cells
# The pointwise part of one LSTM / GRU step, after the matmuls: 2-D arrays, one row per sample,
# gates in PyTorch's order, sigmoid(x) = 0.5 * (1 + tanh(x / 2)).
@_kernel
def lstm_cell_forward(gates: Array, c_prev: Array) -> tuple[Array, Array, Array]:
    """(h, c, tanh_c), each (N, H), of one LSTM step.

    gates (N, 4H) holds the pre-activations i, f, g, o and is overwritten IN PLACE with
    sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) (the "acts" backward needs);
    c = f * c_prev + i * g, tanh_c = tanh(c), h = o * tanh_c.
    """


@_kernel
def lstm_cell_backward(dh: Array, dc: Array, acts: Array, tanh_c: Array, c_prev: Array,
                       dgates: Array | None = None) -> tuple[Array, Array]:
    """(dgates (N, 4H), dc_prev) of one LSTM step.

    dc' = dc + dh * o * (1 - tanh_c^2); dgates = [dc' * g * i(1-i), dc' * c_prev * f(1-f),
    dc' * i * (1 - g^2), dh * tanh_c * o(1-o)]; dc_prev = dc' * f. When given, dgates is a
    C-contiguous (N, 4H) array the result is written into.
    """


@_kernel
def gru_cell_forward(xg: Array, hg: Array, h_prev: Array) -> tuple[Array, Array]:
    """(h, n) of one GRU step.

    xg = x W_ih^T + b_ih, hg = h_prev W_hh^T + b_hh, (N, 3H) in order r, z, n; the first 2H
    columns of hg are overwritten IN PLACE with r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z)
    (hg then holds r, z, h_n: "rzh"); n = tanh(x_n + r * h_n), h = (1 - z) * n + z * h_prev.
    """


@_kernel
def gru_cell_backward(dh: Array, rzh: Array, n: Array, h_prev: Array, dxg: Array | None = None,
                      dhg: Array | None = None) -> tuple[Array, Array, Array]:
    """(dxg, dhg, dh_prev) of one GRU step.

    dn = dh (1 - z)(1 - n^2), dz = dh (h_prev - n) z (1 - z), dr = dn h_n r (1 - r);
    dxg = [dr, dz, dn], dhg = [dr, dz, dn * r] (N, 3H); dh_prev = dh * z (the direct path
    only; the caller adds dhg W_hh). dxg / dhg, when given, are C-contiguous outputs.
    """


# ----------------------------------------------------------------------------- optimizers
# In place, multi-tensor: lists of same-length arrays, one entry per parameter. Every
# hyperparameter is a Python number; ``step`` is the 1-based step count after this update.
# Semantics are PyTorch's (torch.optim, foreach=False) for the same options.
# ``model_params`` (float32 master weights): None, or float16 / bfloat16 arrays, one per
# float32 ``params`` entry; the step then also writes each updated master value, rounded to
# nearest even, into its model copy, and a gradient may be of its copy's low dtype (used as
# is, widened to float32 exactly) or float32. The states stay float32.
@_kernel
def sgd_step(params: list, grads: list, momentum_bufs: list, *, lr: float, momentum: float,
             dampening: float, weight_decay: float, nesterov: bool, maximize: bool,
             first_step: bool, model_params: list | None = None) -> None:
    """Fused SGD step. momentum_bufs are ignored when momentum == 0; on first_step the buffer
    is set to the gradient (after weight decay) instead of being blended."""


@_kernel
def adam_step(params: list, grads: list, exp_avgs: list, exp_avg_sqs: list,
              max_exp_avg_sqs: list | None, *, lr: float, beta1: float, beta2: float,
              eps: float, weight_decay: float, step: int, amsgrad: bool,
              decoupled_weight_decay: bool, maximize: bool,
              model_params: list | None = None) -> None:
    """Fused Adam / AdamW step. max_exp_avg_sqs is a list when amsgrad, else None;
    decoupled_weight_decay selects AdamW (param *= 1 - lr * wd) over Adam's L2."""


@_kernel
def rmsprop_step(params: list, grads: list, square_avgs: list, momentum_bufs: list | None,
                 grad_avgs: list | None, *, lr: float, alpha: float, eps: float,
                 weight_decay: float, momentum: float, centered: bool, maximize: bool,
                 model_params: list | None = None) -> None:
    """Fused RMSprop step; momentum_bufs used when momentum > 0, grad_avgs when centered."""


@_kernel
def adagrad_step(params: list, grads: list, state_sums: list, *, lr: float, lr_decay: float,
                 weight_decay: float, eps: float, step: int, maximize: bool,
                 model_params: list | None = None) -> None:
    """Fused Adagrad step with learning-rate decay lr / (1 + (step - 1) * lr_decay)."""


#: every protocol kernel, in the order above
KERNELS: tuple[str, ...] = tuple(_STUBS)


def stub(name: str) -> Callable:
    """The protocol stub of kernel ``name`` (its signature and docstring are the contract)."""
    return _STUBS[name]


def missing_kernels(module) -> list[str]:
    """The protocol kernels a backend module does not (yet) export."""
    return [name for name in KERNELS if not callable(getattr(module, name, None))]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
