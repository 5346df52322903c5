"""Two fused ops whose kernels are written with numba: bias + GELU, and a row-wise layer norm.

Each kernel has a CPU version (a ``prange`` loop, compiled with ``@njit(parallel=True)``) and a
CUDA version (one thread per element or per row, compiled with ``@cuda.jit``). The two versions
repeat the arithmetic on purpose: sharing it through a function both call
(``numba.extending.register_jitable`` or ``cuda.jit(device=True)``) works at run time, but then
``numba.cuda.compile_ptx`` asks the CUDA driver for the device while typing the call, so the
CI check that compiles the kernels without a GPU could not run (numba-cuda 0.30). They work in the
arrays' dtype and accumulate in float64. ``tests/test_custom_ops.py`` checks them against NumPy
and with ``gradcheck``, and compiles the CUDA versions to PTX for sm_80 and sm_90.
"""

from __future__ import annotations

import math

from ..creation import get_array_module
from ..functions._composed import composed_vjp, graph_inputs, keep_constants
from ..tensor import Tensor
from . import custom_op, kernel

try:
    from numba import cuda, prange
except ImportError:  # the kernels say what to install when they are first called
    cuda, prange = None, range

__all__ = ["bias_gelu", "layer_norm"]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------------------- bias + GELU
def _bias_gelu_forward_cpu(y, x, b):
    rows, cols = x.shape
    for i in prange(rows):
        for j in range(cols):
            v = x[i, j] + b[j]
            y[i, j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


def _bias_gelu_forward_cuda(y, x, b):
    rows, cols = x.shape
    k = cuda.grid(1)
    if k < rows * cols:
        i, j = k // cols, k % cols
        v = x[i, j] + b[j]
        y[i, j] = 0.5 * v * (1.0 + math.erf(v * _INV_SQRT2))


def _bias_gelu_backward_cpu(dx, gy, x, b):
    rows, cols = x.shape
    for i in prange(rows):
        for j in range(cols):
            v = x[i, j] + b[j]
            cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
            dx[i, j] = gy[i, j] * (cdf + v * math.exp(-0.5 * v * v) * _INV_SQRT_2PI)


def _bias_gelu_backward_cuda(dx, gy, x, b):
    rows, cols = x.shape
    k = cuda.grid(1)
    if k < rows * cols:
        i, j = k // cols, k % cols
        v = x[i, j] + b[j]
        cdf = 0.5 * (1.0 + math.erf(v * _INV_SQRT2))
        dx[i, j] = gy[i, j] * (cdf + v * math.exp(-0.5 * v * v) * _INV_SQRT_2PI)


bias_gelu_forward = kernel(_bias_gelu_forward_cpu, _bias_gelu_forward_cuda, "bias_gelu_forward")
bias_gelu_backward = kernel(_bias_gelu_backward_cpu, _bias_gelu_backward_cuda,
                            "bias_gelu_backward")


def _rows(x, cols):
    """``x`` as a contiguous (rows, cols) array."""
    return get_array_module(x).ascontiguousarray(x).reshape(-1, cols)


@custom_op
class BiasGELU:
    """``gelu(x + bias)`` (exact, erf form), bias broadcast over the last dimension.

    Under ``create_graph`` the backward is the gradient of ``F.gelu(x + bias)`` (built-in ops),
    so the op has derivatives of every order; first-order backward is the numba kernel."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, b):
        keep_constants(ctx, x, b)
        x2 = _rows(x, b.shape[0])
        b = get_array_module(b).ascontiguousarray(b)
        y = get_array_module(x).empty_like(x2)
        bias_gelu_forward(y, x2, b, threads=x2.size)
        ctx.save_for_backward(x2, b)
        ctx.shape = x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, gy):
        if isinstance(gy, Tensor):
            from ..nn import functional as F

            got = composed_vjp(lambda x, b: F.gelu(x + b), graph_inputs(ctx, 2), [gy])
            return tuple(g if n else None for g, n in zip(got, ctx.needs_input_grad))
        x2, b = ctx.saved_tensors
        gy2 = _rows(gy, b.shape[0])
        dx = get_array_module(gy).empty_like(x2)
        bias_gelu_backward(dx, gy2, x2, b, threads=x2.size)
        return dx.reshape(ctx.shape), dx.sum(axis=0)


def bias_gelu(x: Tensor, bias: Tensor) -> Tensor:
    """Fused ``gelu(x + bias)`` (exact GELU), with ``bias`` of shape ``(x.shape[-1],)``.

    >>> y = pydl.custom.bias_gelu(pydl.randn(4, 8), pydl.zeros(8))
    """
    _check_vector("bias_gelu", x, "bias", bias)
    return BiasGELU(x, bias)


# ---------------------------------------------------------------------------- layer norm
def _layer_norm_forward_cpu(y, mean, rstd, x, w, b, eps):
    rows, cols = x.shape
    for i in prange(rows):
        s = 0.0
        for j in range(cols):
            s += x[i, j]
        m = s / cols
        var = 0.0
        for j in range(cols):
            d = x[i, j] - m
            var += d * d
        r = 1.0 / math.sqrt(var / cols + eps)
        mean[i] = m
        rstd[i] = r
        for j in range(cols):
            y[i, j] = (x[i, j] - m) * r * w[j] + b[j]


def _layer_norm_forward_cuda(y, mean, rstd, x, w, b, eps):
    rows, cols = x.shape
    i = cuda.grid(1)
    if i < rows:
        s = 0.0
        for j in range(cols):
            s += x[i, j]
        m = s / cols
        var = 0.0
        for j in range(cols):
            d = x[i, j] - m
            var += d * d
        r = 1.0 / math.sqrt(var / cols + eps)
        mean[i] = m
        rstd[i] = r
        for j in range(cols):
            y[i, j] = (x[i, j] - m) * r * w[j] + b[j]


def _layer_norm_backward_cpu(dx, gy, x, w, mean, rstd):
    rows, cols = x.shape
    for i in prange(rows):
        m, r = mean[i], rstd[i]
        g_mean = 0.0
        gx_mean = 0.0
        for j in range(cols):
            g = gy[i, j] * w[j]
            g_mean += g
            gx_mean += g * (x[i, j] - m) * r
        g_mean /= cols
        gx_mean /= cols
        for j in range(cols):
            dx[i, j] = r * (gy[i, j] * w[j] - g_mean - (x[i, j] - m) * r * gx_mean)


def _layer_norm_backward_cuda(dx, gy, x, w, mean, rstd):
    rows, cols = x.shape
    i = cuda.grid(1)
    if i < rows:
        m, r = mean[i], rstd[i]
        g_mean = 0.0
        gx_mean = 0.0
        for j in range(cols):
            g = gy[i, j] * w[j]
            g_mean += g
            gx_mean += g * (x[i, j] - m) * r
        g_mean /= cols
        gx_mean /= cols
        for j in range(cols):
            dx[i, j] = r * (gy[i, j] * w[j] - g_mean - (x[i, j] - m) * r * gx_mean)


layer_norm_forward = kernel(_layer_norm_forward_cpu, _layer_norm_forward_cuda,
                            "layer_norm_forward")
layer_norm_backward = kernel(_layer_norm_backward_cpu, _layer_norm_backward_cuda,
                             "layer_norm_backward")


@custom_op
class LayerNormRows:
    """Layer norm over the last dimension with an elementwise affine ``weight`` and ``bias``.

    Under ``create_graph`` the backward is the gradient of ``F.layer_norm`` (built-in ops)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, w, b, eps):
        keep_constants(ctx, x, w, b)
        ctx.eps = eps
        xp = get_array_module(x)
        x2 = _rows(x, w.shape[0])
        w, b = xp.ascontiguousarray(w), xp.ascontiguousarray(b)
        y = xp.empty_like(x2)
        mean = xp.empty(x2.shape[0], dtype=x.dtype)
        rstd = xp.empty(x2.shape[0], dtype=x.dtype)
        layer_norm_forward(y, mean, rstd, x2, w, b, eps, threads=x2.shape[0])
        ctx.save_for_backward(x2, w, mean, rstd)
        ctx.shape = x.shape
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, gy):
        if isinstance(gy, Tensor):
            from ..nn import functional as F

            eps = ctx.eps

            def ref(x, w, b):
                return F.layer_norm(x, (x.shape[-1],), w, b, eps)

            got = composed_vjp(ref, graph_inputs(ctx, 3), [gy])
            return (*(g if n else None for g, n in zip(got, ctx.needs_input_grad)), None)
        x2, w, mean, rstd = ctx.saved_tensors
        gy2 = _rows(gy, w.shape[0])
        dx = get_array_module(gy).empty_like(x2)
        layer_norm_backward(dx, gy2, x2, w, mean, rstd, threads=x2.shape[0])
        x_hat = (x2 - mean[:, None]) * rstd[:, None]
        return dx.reshape(ctx.shape), (gy2 * x_hat).sum(axis=0), gy2.sum(axis=0), None


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dimension (``F.layer_norm(x, (C,), weight, bias, eps)``),
    with ``weight`` and ``bias`` of shape ``(C,)``; forward and backward are numba kernels.

    >>> y = pydl.custom.layer_norm(pydl.randn(4, 8), pydl.ones(8), pydl.zeros(8))
    """
    _check_vector("layer_norm", x, "weight", weight)
    _check_vector("layer_norm", x, "bias", bias)
    if x.shape[-1] == 0:
        raise ValueError("layer_norm: the normalized dimension has size 0")
    if not eps > 0:
        raise ValueError(f"layer_norm: eps must be positive, got {eps}")
    return LayerNormRows(x, weight, bias, float(eps))


def _check_vector(op, x, name, v):
    for label, t in (("x", x), (name, v)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: {label} must be a Tensor, got {type(t).__name__}")
        if t.dtype.kind != "f":
            raise TypeError(f"{op}: {label} must be floating point, got {t.dtype}")
    if x.ndim < 1 or v.shape != (x.shape[-1],):
        raise ValueError(f"{op}: {name} must have shape ({x.shape[-1] if x.ndim else '?'},) "
                         f"to match x of shape {tuple(x.shape)}, got {tuple(v.shape)}")
    if x.dtype != v.dtype:
        raise TypeError(f"{op}: x is {x.dtype} but {name} is {v.dtype}")
    if x.device != v.device:
        raise RuntimeError(f"{op}: x is on {x.device} but {name} is on {v.device}")


def ptx_signatures(dtype) -> dict:
    """Kernel -> the numba signature it is launched with for arrays of numba type ``dtype``
    (C-contiguous, as the ops pass them): what the CI compile check feeds ``compile_ptx``."""
    from numba import float64

    m, v = dtype[:, ::1], dtype[::1]
    return {
        bias_gelu_forward: (m, m, v),
        bias_gelu_backward: (m, m, m, v),
        layer_norm_forward: (m, v, v, m, v, v, float64),
        layer_norm_backward: (m, m, m, v, v, v),
    }
