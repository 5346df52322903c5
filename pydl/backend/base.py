"""The kernel protocol: the named kernels every backend module exports, with one signature.

Functions in ``pydl.functions`` call these through ``backend_of(array)``; they never branch on
the device. Arrays are the backend's own (``numpy.ndarray`` or ``cupy.ndarray``), float32 or
float64, and kernels return new arrays unless they say "in place". Any size must work,
including empty arrays. Kernels may require C-contiguous inputs and make them so themselves.

Shapes use PyTorch's layouts: images are NCHW, conv weights are (C_out, C_in / groups, kH, kW).
Pairs such as ``stride`` are always tuples of two ints by the time they reach a kernel.

Matrix multiply
    matmul(a, b, trans_a=False, trans_b=False) -> c
        a is (M, K) or (B, M, K) (or (K, M) / (B, K, M) when trans_a), likewise b; both 2-D or
        both 3-D with the same B. Returns op(a) @ op(b), (M, N) or (B, M, N), in a's dtype.

Convolution (cross-correlation, as in PyTorch)
    conv2d_forward(x, w, stride, padding, dilation, groups) -> y
        x (N, C, H, W), w (O, C // groups, kH, kW) -> y (N, O, Ho, Wo) with
        Ho = (H + 2*ph - dh*(kH-1) - 1) // sh + 1 (same for W). No bias (added by the caller).
    conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups) -> gx (x_shape)
    conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups) -> gw (w_shape)

Pooling (padding is implicit -inf for max, zeros for avg)
    max_pool2d_forward(x, kernel_size, stride, padding) -> (y, argmax)
        argmax is int64 with y's shape: the flat index h * W + w into the input plane of the
        element chosen (the first maximum in row-major window order), -1 if the window saw
        only padding.
    max_pool2d_backward(gy, argmax, x_shape) -> gx (scatter-add of gy at argmax)
    avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad=True) -> y
    avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad=True) -> gx

Softmax family (along the last axis; callers move the axis there and make x contiguous)
    softmax_forward(x) -> y
    softmax_backward(gy, y) -> gx              gx = y * (gy - sum(gy * y, -1))
    log_softmax_forward(x) -> y
    log_softmax_backward(gy, y) -> gx          gx = gy - exp(y) * sum(gy, -1)

Cross-entropy fused with log-softmax (logits (N, C), target (N,) int64)
    cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing)
        -> (loss, lse)
        weight is None or a (C,) array. loss (N,) is the per-sample loss
            (1 - eps) * w[t] * (lse - x[t]) + (eps / C) * sum_c w[c] * (lse - x[c])
        (w = 1 when weight is None), 0 where target == ignore_index. lse (N,) is
        logsumexp(logits, -1), kept for backward. Reduction is the caller's.
    cross_entropy_backward(grad_loss, logits, lse, target, weight, ignore_index,
                           label_smoothing) -> glogits (N, C)
        grad_loss (N,) is d(total)/d(loss_i); rows with target == ignore_index get zeros.
        glogits[i, c] = g_i * (softmax_ic * S_i - (1 - eps) * w[t_i] * [c == t_i]
                               - (eps / C) * w[c]),
        S_i = (1 - eps) * w[t_i] + (eps / C) * sum_c w[c].
    A target outside [0, C) that is not ignore_index raises IndexError naming it.

Elementwise special functions (any shape; outputs in x's shape and dtype)
    erf(x) -> y                                the error function
    gelu_forward(x, approximate) -> (y, cdf)   approximate is "none" or "tanh"
        cdf = 0.5 * (1 + erf(x / sqrt(2)))                          ("none")
        cdf = 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))     ("tanh")
        y = x * cdf; cdf is kept for backward, so backward evaluates no erf or tanh.
    gelu_backward(gy, x, cdf, approximate) -> gx
        gx = gy * (cdf + x * exp(-x^2 / 2) / sqrt(2 pi))                         ("none")
        gx = gy * (cdf + 2 x cdf (1 - cdf) sqrt(2/pi) (1 + 3 * 0.044715 x^2))   ("tanh")
Recurrent cells: the pointwise part of one LSTM / GRU step, after the matmuls (2-D arrays,
one row per sample; gates in PyTorch's order; sigmoid(x) = 0.5 * (1 + tanh(x / 2)))
    lstm_cell_forward(gates, c_prev) -> (h, c, tanh_c)
        gates (N, 4H) pre-activations i, f, g, o, C-contiguous, overwritten IN PLACE with
        sigmoid(i), sigmoid(f), tanh(g), sigmoid(o) (the "acts" backward needs);
        c = f * c_prev + i * g, tanh_c = tanh(c), h = o * tanh_c, each (N, H).
    lstm_cell_backward(dh, dc, acts, tanh_c, c_prev, dgates=None) -> (dgates, dc_prev)
        dc' = dc + dh * o * (1 - tanh_c^2); dgates = [dc' * g * i(1-i), dc' * c_prev * f(1-f),
        dc' * i * (1 - g^2), dh * tanh_c * o(1-o)] (N, 4H); dc_prev = dc' * f. When given,
        dgates is a C-contiguous (N, 4H) array the result is written into.
    gru_cell_forward(xg, hg, h_prev) -> (h, n)
        xg = x W_ih^T + b_ih, hg = h_prev W_hh^T + b_hh, (N, 3H) in order r, z, n; hg is
        C-contiguous and its first 2H columns are overwritten IN PLACE with
        r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z) (hg then holds r, z, h_n: "rzh");
        n = tanh(x_n + r * h_n), h = (1 - z) * n + z * h_prev.
    gru_cell_backward(dh, rzh, n, h_prev, dxg=None, dhg=None) -> (dxg, dhg, dh_prev)
        dn = dh (1 - z)(1 - n^2), dz = dh (h_prev - n) z (1 - z), dr = dn h_n r (1 - r);
        dxg = [dr, dz, dn], dhg = [dr, dz, dn * r] (N, 3H); dh_prev = dh * z (the direct path
        only; the caller adds dhg W_hh). dxg / dhg, when given, are C-contiguous outputs.

Fused optimizer steps: in place, multi-tensor (lists of same-length arrays; one entry per
parameter). Every hyperparameter is a Python number. ``step`` is the 1-based step count after
this update. Semantics are PyTorch's (torch.optim, foreach=False) for the same options.
    sgd_step(params, grads, momentum_bufs, *, lr, momentum, dampening, weight_decay, nesterov,
             maximize, first_step)
        momentum_bufs entries are arrays (ignored when momentum == 0); on first_step the buffer
        is set to the gradient (after weight decay) instead of being blended.
    adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, lr, beta1, beta2, eps,
              weight_decay, step, amsgrad, decoupled_weight_decay, maximize)
        max_exp_avg_sqs is a list of arrays when amsgrad, else None. decoupled_weight_decay
        selects AdamW (param *= 1 - lr * wd) over Adam's L2 (grad += wd * param).
    rmsprop_step(params, grads, square_avgs, momentum_bufs, grad_avgs, *, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize)
        momentum_bufs used when momentum > 0, grad_avgs when centered (else may be None).
    adagrad_step(params, grads, state_sums, *, lr, lr_decay, weight_decay, eps, step, maximize)
"""

KERNELS = (
    "matmul",
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_weight",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "softmax_forward",
    "softmax_backward",
    "log_softmax_forward",
    "log_softmax_backward",
    "cross_entropy_forward",
    "cross_entropy_backward",
    "erf",
    "gelu_forward",
    "gelu_backward",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "gru_cell_forward",
    "gru_cell_backward",
    "sgd_step",
    "adam_step",
    "rmsprop_step",
    "adagrad_step",
)


def missing_kernels(module) -> list[str]:
    """The protocol kernels a backend module does not (yet) export."""
    return [name for name in KERNELS if not callable(getattr(module, name, None))]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
