"""NumPy reference kernels of the protocol (see ``pydl.backend.protocol``): readable, the oracle.

Every kernel here is the plain NumPy statement of what the protocol entry computes. The C++
versions (``ext.py``) and the CUDA versions (``pydl.backend.cuda``) are tested against these.
Each kernel computes in its input's dtype (float32 or float64) and accepts empty arrays;
float16 and bfloat16 inputs are widened to float32, computed, and the results rounded back
once (float32 accumulation, as the CUDA kernels do; ``backend/low_precision.py``).

Convolution and pooling share one idea: pad the input, then take a strided *view* of shape
(N, C, kH, kW, Ho, Wo) whose element [n, c, i, j, p, q] is the padded input at row
``p * sh + i * dh`` and column ``q * sw + j * dw`` (im2col without a copy). Backward passes
scatter back with one strided slice-add per kernel offset (col2im).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...functions._special import erf as special_erf
from .. import protocol
from ..low_precision import model_copies, wrap_kernels
from ..protocol import conv_output_size


def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D or equally batched 3-D arrays."""
    if trans_a:
        a = np.swapaxes(a, -1, -2)
    if trans_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


# ----------------------------------------------------------------------------- windows


def window_output_hw(name, hw, kernel, stride, padding, dilation=(1, 1)):
    """(Ho, Wo) of a window op; a ValueError naming the sizes when the output would be empty."""
    out = tuple(
        conv_output_size(hw[a], kernel[a], stride[a], padding[a], dilation[a]) for a in (0, 1)
    )
    if out[0] <= 0 or out[1] <= 0:
        raise ValueError(
            f"{name}: input of size {tuple(hw)} with kernel {tuple(kernel)}, stride "
            f"{tuple(stride)}, padding {tuple(padding)}, dilation {tuple(dilation)} gives an "
            f"empty output {out}"
        )
    return out


def _pad(x, padding, value=0.0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return np.ascontiguousarray(x)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xp, kernel, stride, dilation, out_hw):
    """Strided view (N, C, kH, kW, Ho, Wo) of the padded input ``xp`` (no copy)."""
    sn, sc, sh, sw = xp.strides
    shape = xp.shape[:2] + tuple(kernel) + tuple(out_hw)
    strides = (sn, sc, sh * dilation[0], sw * dilation[1], sh * stride[0], sw * stride[1])
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def _col2im(cols, padded_hw, stride, dilation, padding, out_hw):
    """Sum ``cols`` (N, C, kH, kW, Ho, Wo) back into the (unpadded) input plane."""
    n, c, kh, kw, ho, wo = cols.shape
    gxp = np.zeros((n, c) + tuple(padded_hw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            gxp[
                :,
                :,
                r0 : r0 + stride[0] * (ho - 1) + 1 : stride[0],
                c0 : c0 + stride[1] * (wo - 1) + 1 : stride[1],
            ] += cols[:, :, i, j]
    ph, pw = padding
    return gxp[:, :, ph : padded_hw[0] - ph, pw : padded_hw[1] - pw]


# ----------------------------------------------------------------------------- convolution


def _im2col(x, kernel, stride, padding, dilation, groups, out_hw):
    """Columns (N, G, Cg*kH*kW, Ho*Wo) of x for a grouped convolution (a copy)."""
    n, c = x.shape[:2]
    cols = _windows(_pad(x, padding), kernel, stride, dilation, out_hw)
    return cols.reshape(n, groups, (c // groups) * kernel[0] * kernel[1], out_hw[0] * out_hw[1])


def check_conv_shapes(name, x_shape, w_shape, groups):
    """ValueError naming both shapes unless x (N, C, H, W) and w (O, C // groups, kH, kW) fit."""
    fits = len(x_shape) == 4 and len(w_shape) == 4 and groups >= 1
    if not fits or x_shape[1] != w_shape[1] * groups or w_shape[0] % groups:
        raise ValueError(
            f"{name}: input {tuple(x_shape)} and weight {tuple(w_shape)} do not fit "
            f"groups={groups} (need x (N, C, H, W), w (O, C // groups, kH, kW), O % groups == 0)"
        )


def conv2d_forward(x, w, stride, padding, dilation, groups):
    """Cross-correlation y (N, O, Ho, Wo) of x (N, C, H, W) with w (O, C // groups, kH, kW)."""
    check_conv_shapes("conv2d", x.shape, w.shape, groups)
    n, o, kernel = x.shape[0], w.shape[0], w.shape[2:]
    out_hw = window_output_hw("conv2d", x.shape[2:], kernel, stride, padding, dilation)
    cols = _im2col(x, kernel, stride, padding, dilation, groups, out_hw)
    wg = w.reshape(groups, o // groups, cols.shape[2])
    y = np.matmul(wg, cols)  # (N, G, Og, Ho*Wo)
    return np.ascontiguousarray(y.reshape(n, o, *out_hw))


def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups):
    """Gradient of conv2d_forward with respect to x: gx of shape ``x_shape``."""
    check_conv_shapes("conv2d_backward_data", x_shape, w.shape, groups)
    n, c, h, wd = x_shape
    o, cg, kh, kw = w.shape
    out_hw = gy.shape[2:]
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    gyg = gy.reshape(n, groups, o // groups, out_hw[0] * out_hw[1])
    cols = np.matmul(np.swapaxes(wg, 1, 2), gyg)  # (N, G, Cg*kH*kW, Ho*Wo)
    cols = cols.reshape(n, c, kh, kw, *out_hw)
    padded = (h + 2 * padding[0], wd + 2 * padding[1])
    return np.ascontiguousarray(_col2im(cols, padded, stride, dilation, padding, out_hw))


def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """Gradient of conv2d_forward with respect to w: gw of shape ``w_shape``."""
    check_conv_shapes("conv2d_backward_weight", x.shape, w_shape, groups)
    n = x.shape[0]
    o, kernel = w_shape[0], w_shape[2:]
    out_hw = gy.shape[2:]
    cols = _im2col(x, kernel, stride, padding, dilation, groups, out_hw)
    gyg = gy.reshape(n, groups, o // groups, out_hw[0] * out_hw[1])
    gw = np.matmul(gyg, np.swapaxes(cols, 2, 3)).sum(axis=0)  # (G, Og, Cg*kH*kW)
    return gw.reshape(w_shape).astype(gy.dtype, copy=False)


# ----------------------------------------------------------------------------- pooling


def max_pool2d_forward(x, kernel_size, stride, padding):
    """Max over each window; argmax is the flat h * W + w input index (-1: only padding)."""
    n, c, h, w = x.shape
    kh, kw = kernel_size
    ho, wo = window_output_hw("max_pool2d", (h, w), kernel_size, stride, padding)
    win = _windows(_pad(x, padding, -np.inf), kernel_size, stride, (1, 1), (ho, wo))
    # a padded mask says which window slots are real input, so a real -inf beats padding
    valid = _windows(_pad(np.ones((1, 1, h, w), bool), padding, False),
                     kernel_size, stride, (1, 1), (ho, wo))
    win = win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c, ho, wo, kh * kw)
    valid = valid.transpose(0, 1, 4, 5, 2, 3).reshape(1, 1, ho, wo, kh * kw)
    if win.size == 0:
        return np.full((n, c, ho, wo), -np.inf, x.dtype), np.full((n, c, ho, wo), -1, np.int64)
    y = win.max(axis=-1)  # NaN propagates
    hit = (win == y[..., None]) | (np.isnan(win) & np.isnan(y)[..., None])
    hit &= valid
    k = hit.argmax(axis=-1)  # the first maximum in row-major window order
    rows = np.arange(ho)[:, None] * stride[0] - padding[0] + k // kw
    cols = np.arange(wo)[None, :] * stride[1] - padding[1] + k % kw
    argmax = np.where(hit.any(axis=-1), rows * w + cols, -1).astype(np.int64)
    return np.ascontiguousarray(y), argmax


def max_pool2d_backward(gy, argmax, x_shape):
    """Scatter-add gy into a zero gx of ``x_shape`` at the argmax of each window."""
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), dtype=gy.dtype)
    per_plane = argmax.shape[2] * argmax.shape[3]
    planes = np.broadcast_to(np.arange(n * c)[:, None], (n * c, per_plane))
    flat = argmax.reshape(n * c, per_plane)
    keep = flat >= 0
    np.add.at(gx, (planes[keep], flat[keep]), gy.reshape(n * c, per_plane)[keep])
    return gx.reshape(x_shape)


def _avg_divisor(hw, kernel_size, stride, padding, out_hw, count_include_pad, dtype):
    """Per-window divisor, shape (Ho, Wo): kH*kW, or the number of real input elements."""
    if count_include_pad:
        return np.full(out_hw, kernel_size[0] * kernel_size[1], dtype)
    ones = _pad(np.ones((1, 1) + tuple(hw), dtype), padding)
    return _windows(ones, kernel_size, stride, (1, 1), out_hw).sum(axis=(2, 3))[0, 0]


def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad=True):
    """Mean over each window (zero padding; count_include_pad as in PyTorch)."""
    hw = x.shape[2:]
    out_hw = window_output_hw("avg_pool2d", hw, kernel_size, stride, padding)
    win = _windows(_pad(x, padding), kernel_size, stride, (1, 1), out_hw)
    div = _avg_divisor(hw, kernel_size, stride, padding, out_hw, count_include_pad, x.dtype)
    return np.ascontiguousarray(win.sum(axis=(2, 3)) / div)


def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad=True):
    """Gradient of avg_pool2d_forward: each window spreads gy / divisor over its inputs."""
    n, c, h, w = x_shape
    out_hw = gy.shape[2:]
    div = _avg_divisor((h, w), kernel_size, stride, padding, out_hw, count_include_pad, gy.dtype)
    share = gy / div
    cols = np.broadcast_to(share[:, :, None, None], (n, c) + tuple(kernel_size) + tuple(out_hw))
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    return np.ascontiguousarray(_col2im(cols, padded, stride, (1, 1), padding, out_hw))


# ----------------------------------------------------------------------------- softmax


def softmax_forward(x):
    """exp(x - max) / sum, along the last axis."""
    if x.size == 0:
        return np.empty_like(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(gy, y):
    """gx = y * (gy - sum(gy * y, -1))."""
    return y * (gy - (gy * y).sum(axis=-1, keepdims=True))


def log_softmax_forward(x):
    """(x - max) - log(sum(exp(x - max))), along the last axis."""
    if x.size == 0:
        return np.empty_like(x)
    shifted, log_sum, _ = _shifted_logsumexp(x)
    return shifted - log_sum


def log_softmax_backward(gy, y):
    """gx = gy - exp(y) * sum(gy, -1)."""
    return gy - np.exp(y) * gy.sum(axis=-1, keepdims=True)


def _shifted_logsumexp(x):
    """(x - m, log(sum(exp(x - m))), m) along the last axis, m the row max (0 if not finite).

    Subtracting the shift before the log-sum keeps log_softmax exact for large logits.
    """
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype, copy=False)
    shifted = x - m
    with np.errstate(divide="ignore"):  # an all -inf row: log(0) = -inf, on purpose
        log_sum = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return shifted, log_sum, m


def _logsumexp(x):
    """Stable logsumexp along the last axis (-inf for an empty axis or an all -inf row)."""
    if x.shape[-1] == 0:
        return np.full(x.shape[:-1], -np.inf, x.dtype)
    _, log_sum, m = _shifted_logsumexp(x)
    return (log_sum + m)[..., 0]


# ----------------------------------------------------------------------------- cross-entropy


def check_targets(target, num_classes, ignore_index):
    """IndexError naming the first target outside [0, C) that is not ignore_index."""
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bad.any():
        value = int(target[np.argmax(bad)])
        raise IndexError(
            f"cross_entropy: target {value} is out of bounds for {num_classes} classes"
        )


def _xent_parts(logits, target, weight, ignore_index):
    """(kept rows mask, safe targets, class weights (C,)) shared by forward and backward."""
    n, c = logits.shape
    check_targets(target, c, ignore_index)
    kept = target != ignore_index
    safe = np.where(kept, target, 0)
    w = np.ones(c, logits.dtype) if weight is None else np.asarray(weight, logits.dtype)
    return kept, safe, w


def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    """Per-sample cross-entropy of logits (N, C) at int targets (N,); returns (loss, lse)."""
    n, c = logits.shape
    kept, safe, w = _xent_parts(logits, target, weight, ignore_index)
    lse = _logsumexp(logits)
    eps = label_smoothing
    rows = np.arange(n)
    nll = w[safe] * (lse - logits[rows, safe]) if c else np.zeros(n, logits.dtype)
    loss = (1 - eps) * nll
    if eps and c:
        loss = loss + (eps / c) * ((lse[:, None] - logits) * w).sum(axis=-1)
    loss = np.where(kept, loss, 0).astype(logits.dtype, copy=False)
    return loss, lse


def cross_entropy_backward(grad_loss, logits, lse, target, weight, ignore_index,
                           label_smoothing):
    """d(sum_i grad_loss_i * loss_i) / d logits, shape (N, C)."""
    n, c = logits.shape
    kept, safe, w = _xent_parts(logits, target, weight, ignore_index)
    if c == 0:
        return np.zeros_like(logits)
    eps = label_smoothing
    rows = np.arange(n)
    wt = w[safe]
    s = (1 - eps) * wt + (eps / c) * w.sum()
    g = np.exp(logits - lse[:, None]) * s[:, None] - (eps / c) * w
    g[rows, safe] -= (1 - eps) * wt
    g *= np.where(kept, grad_loss, 0)[:, None]
    return g.astype(logits.dtype, copy=False)


# ----------------------------------------------------------------------------- activations

_SQRT_HALF = 0.70710678118654752440
_INV_SQRT_2PI = 0.39894228040143267794
_SQRT_2_OVER_PI = 0.79788456080286535588
_GELU_C = 0.044715


def erf(x):
    """The error function (FDLIBM's method, float64 inside; see pydl.functions._special)."""
    return np.asarray(special_erf(np, x))


def gelu_forward(x, approximate="none"):
    """(y, cdf): cdf = Phi(x) (or its tanh approximation), y = x * cdf."""
    if approximate == "tanh":
        cdf = 0.5 * (1 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)))
    else:
        cdf = 0.5 * (1 + special_erf(np, x * x.dtype.type(_SQRT_HALF)))
    cdf = np.asarray(cdf, dtype=x.dtype)
    return np.asarray(x * cdf), cdf


def gelu_backward(gy, x, cdf, approximate="none"):
    """gx from the saved cdf: gy * (cdf + x * phi(x)) (tanh form: see the protocol)."""
    if approximate == "tanh":
        slope = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
        return gy * (cdf + 2 * x * cdf * (1 - cdf) * slope)
    return gy * (cdf + x * (_INV_SQRT_2PI * np.exp(-0.5 * x * x)))


# ----------------------------------------------------------------------------- recurrent cells
# The pointwise part of one LSTM / GRU step, after the matmuls. sigmoid is written as
# 0.5 * (1 + tanh(x / 2)): no overflow warning for large |x|.


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def lstm_cell_forward(gates, c_prev):
    """(h, c, tanh_c) of one LSTM step; ``gates`` (N, 4H) becomes the activations, in place.

    gates holds the pre-activations in the order i, f, g, o; afterwards it holds
    sigmoid(i), sigmoid(f), tanh(g), sigmoid(o), which is what backward needs.
    c = f * c_prev + i * g, tanh_c = tanh(c), h = o * tanh_c.
    """
    H = gates.shape[-1] // 4
    gates[:, :2 * H] = _sigmoid(gates[:, :2 * H])
    gates[:, 2 * H:3 * H] = np.tanh(gates[:, 2 * H:3 * H])
    gates[:, 3 * H:] = _sigmoid(gates[:, 3 * H:])
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    return o * tanh_c, c, tanh_c


def lstm_cell_backward(dh, dc, acts, tanh_c, c_prev, dgates=None):
    """(dgates (N, 4H), dc_prev) of one LSTM step, from the forward's acts and tanh_c.

    dh, dc: gradients of h and c (dc only through later steps). ``dgates`` (optional) is a
    C-contiguous (N, 4H) array to write the result into.
    """
    H = acts.shape[-1] // 4
    i, f, g, o = acts[:, :H], acts[:, H:2 * H], acts[:, 2 * H:3 * H], acts[:, 3 * H:]
    if dgates is None:
        dgates = np.empty_like(acts)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    dgates[:, :H] = dc * g * i * (1.0 - i)
    dgates[:, H:2 * H] = dc * c_prev * f * (1.0 - f)
    dgates[:, 2 * H:3 * H] = dc * i * (1.0 - g * g)
    dgates[:, 3 * H:] = dh * tanh_c * o * (1.0 - o)
    return dgates, dc * f


def gru_cell_forward(xg, hg, h_prev):
    """(h, n) of one GRU step; ``hg[:, :2H]`` becomes r, z, in place.

    xg = x W_ih^T + b_ih and hg = h_prev W_hh^T + b_hh, both (N, 3H) in the order r, z, n.
    r = sigmoid(x_r + h_r), z = sigmoid(x_z + h_z), n = tanh(x_n + r * h_n),
    h = (1 - z) * n + z * h_prev. Afterwards hg holds r, z, h_n: what backward needs.
    """
    H = xg.shape[-1] // 3
    hg[:, :2 * H] = _sigmoid(xg[:, :2 * H] + hg[:, :2 * H])
    r, z, hn = hg[:, :H], hg[:, H:2 * H], hg[:, 2 * H:]
    n = np.tanh(xg[:, 2 * H:] + r * hn)
    return n + z * (h_prev - n), n


def gru_cell_backward(dh, rzh, n, h_prev, dxg=None, dhg=None):
    """(dxg, dhg, dh_prev) of one GRU step; rzh is the forward's hg (r, z, h_n), n its n.

    dxg, dhg (N, 3H) are the gradients of xg and hg; dh_prev = dh * z is the direct path
    only (the caller adds dhg W_hh). ``dxg`` / ``dhg`` (optional) are C-contiguous (N, 3H)
    arrays to write the results into.
    """
    H = n.shape[-1]
    r, z, hn = rzh[:, :H], rzh[:, H:2 * H], rzh[:, 2 * H:]
    dxg = np.empty_like(rzh) if dxg is None else dxg
    dhg = np.empty_like(rzh) if dhg is None else dhg
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dxg[:, H:2 * H] = dh * (h_prev - n) * z * (1.0 - z)
    dxg[:, :H] = dn * hn * r * (1.0 - r)
    dxg[:, 2 * H:] = dn
    dhg[:, :2 * H] = dxg[:, :2 * H]
    dhg[:, 2 * H:] = dn * r
    return dxg, dhg, dh * z


# ----------------------------------------------------------------------------- optimizers
# In place over lists of arrays; each line mirrors torch.optim's single-tensor code path.


def _effective_grad(p, g, weight_decay, maximize):
    g = -g if maximize else g
    return g + weight_decay * p if weight_decay != 0 else g


@model_copies
def sgd_step(params, grads, momentum_bufs, *, lr, momentum, dampening, weight_decay, nesterov,
             maximize, first_step):
    """SGD with optional momentum, dampening, Nesterov, weight decay and maximize."""
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        d = _effective_grad(p, g, weight_decay, maximize)
        if momentum != 0:
            buf = momentum_bufs[i]
            if first_step:
                buf[...] = d
            else:
                buf *= momentum
                buf += (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p -= lr * d


@model_copies
def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, lr, beta1, beta2, eps,
              weight_decay, step, amsgrad, decoupled_weight_decay, maximize):
    """Adam / AdamW (decoupled_weight_decay), optionally AMSGrad."""
    bias1 = 1 - beta1**step
    bias2_sqrt = (1 - beta2**step) ** 0.5
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = -g if maximize else g
        if weight_decay != 0:
            if decoupled_weight_decay:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m, v = exp_avgs[i], exp_avg_sqs[i]
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * g * g
        if amsgrad:
            np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]
        denom = np.sqrt(v) / bias2_sqrt + eps
        p -= (lr / bias1) * m / denom


@model_copies
def rmsprop_step(params, grads, square_avgs, momentum_bufs, grad_avgs, *, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize):
    """RMSprop, optionally centered and with momentum."""
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = _effective_grad(p, g, weight_decay, maximize)
        sq = square_avgs[i]
        sq *= alpha
        sq += (1 - alpha) * g * g
        if centered:
            ga = grad_avgs[i]
            ga += (1 - alpha) * (g - ga)
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if momentum > 0:
            buf = momentum_bufs[i]
            buf *= momentum
            buf += g / avg
            p -= lr * buf
        else:
            p -= lr * g / avg


@model_copies
def adagrad_step(params, grads, state_sums, *, lr, lr_decay, weight_decay, eps, step, maximize):
    """Adagrad with learning-rate decay: lr / (1 + (step - 1) * lr_decay)."""
    clr = lr / (1 + (step - 1) * lr_decay)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        g = _effective_grad(p, g, weight_decay, maximize)
        s = state_sums[i]
        s += g * g
        p -= clr * g / (np.sqrt(s) + eps)


# ----------------------------------------------------------------------------- low precision
# float16 / bfloat16 inputs: widened to float32, results rounded back (backend/low_precision.py)
wrap_kernels(globals(), protocol.KERNELS)
