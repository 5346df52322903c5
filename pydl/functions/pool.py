"""Pooling, as in ``torch.nn.functional``: max / avg / adaptive pooling in 1-D and 2-D.

Windowed pooling runs on the protocol kernels ``max_pool2d_*`` and ``avg_pool2d_*``; 1-D and
unbatched inputs are viewed as (N, C, H, W). ``ceil_mode`` pads the high side (with -inf for
max, zeros for avg and a divisor map matching PyTorch's). Adaptive pooling uses the kernels
when the input divides evenly and PyTorch's start/end windows otherwise:
``start = floor(i * size / out)``, ``end = ceil((i + 1) * size / out)``.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import backend_of
from ..tensor import Tensor
from ._util import xp_of
from .conv import _check_float, _check_tensor, _crop_high, _ntuple, _pad_high, _spatial_view

__all__ = [
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
]


class MaxPool2d(Function):
    """(y, argmax) of max pooling over a 4-D view; ``extra`` pads the high side with -inf."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, extra, views):
        x4_shape, y_shape = views
        be = backend_of(x)
        xp = be.xp
        x4 = _pad_high(xp, x.reshape(x4_shape), extra, value=-np.inf)
        y, idx = be.max_pool2d_forward(x4, kernel, stride, padding)
        if extra != (0, 0):  # indices into the padded plane -> into the input plane
            wide, (height, width) = x4.shape[3], x4_shape[2:]
            row, col = idx // wide, idx % wide
            real = (idx >= 0) & (row < height) & (col < width)  # not the ceil_mode padding
            idx = xp.where(real, row * width + col, -1)
        return _argmax_outputs(ctx, y, idx, x4_shape, x.shape, y_shape)

    @staticmethod
    def backward(ctx, gy, _gidx):
        return _scatter_to_argmax(ctx, gy), *(None,) * 5


def _argmax_outputs(ctx, y, idx, x4_shape, x_shape, y_shape):
    """(y, idx) in the output shape; keeps the 4-D argmax for :func:`_scatter_to_argmax`."""
    ctx.save_for_backward(idx)
    ctx.x4_shape, ctx.x_shape = x4_shape, x_shape
    idx_out = idx.reshape(y_shape)
    ctx.mark_non_differentiable(idx_out)
    return y.reshape(y_shape), idx_out


def _scatter_to_argmax(ctx, gy):
    """The input gradient of a max pooling: gy added at each window's argmax."""
    (idx,) = ctx.saved_tensors
    if isinstance(gy, Tensor):  # create_graph: a recorded scatter-add (linear in gy)
        return _scatter_to_argmax_graph(ctx, gy, idx.data if isinstance(idx, Tensor) else idx)
    be = backend_of(gy)
    gy4 = be.xp.ascontiguousarray(gy).reshape(idx.shape)
    return be.max_pool2d_backward(gy4, idx, ctx.x4_shape).reshape(ctx.x_shape)


def _scatter_to_argmax_graph(ctx, gy, idx):
    """:func:`_scatter_to_argmax` as a recorded scatter-add into the flattened planes (its
    own backward gathers at the argmax; an index of -1, the ceil_mode padding, adds 0)."""
    from .indexing import scatter_add_graph

    xp = backend_of(idx).xp
    n, c, height, width = ctx.x4_shape
    flat = idx.reshape(n, c, -1)
    real = flat >= 0
    key = (xp.arange(n).reshape(n, 1, 1), xp.arange(c).reshape(1, c, 1), xp.where(real, flat, 0))
    vals = gy.reshape(flat.shape) * Tensor._make(real.astype(gy.dtype), False)
    return scatter_add_graph((n, c, height * width), key, vals).reshape(ctx.x_shape)


class AvgPool2d(Function):
    """Average pooling over a 4-D view.

    With ``divisor`` None this is the kernel as it is. Otherwise (ceil_mode, divisor_override)
    the kernel's window sums are divided by ``divisor``, an array broadcasting to (Ho, Wo).
    """

    double_backward = True

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, count_include_pad, extra, divisor, views):
        x4_shape, y_shape = views
        be = backend_of(x)
        x4 = _pad_high(be.xp, x.reshape(x4_shape), extra)
        if divisor is None:
            y = be.avg_pool2d_forward(x4, kernel, stride, padding, count_include_pad)
        else:
            area = kernel[0] * kernel[1]
            y = be.avg_pool2d_forward(x4, kernel, stride, padding, True) * (area / divisor)
        ctx.conf = (kernel, stride, padding, count_include_pad, extra, divisor, x4.shape)
        ctx.x4_shape, ctx.x_shape, ctx.y4_shape = x4_shape, x.shape, y.shape
        ctx.args = (kernel, stride, padding, count_include_pad, extra, divisor, views)
        return y.reshape(y_shape)

    @staticmethod
    def backward(ctx, gy):
        if isinstance(gy, Tensor):  # create_graph: linear in gy, its adjoint is the pooling
            return _AvgPoolGrad.apply(gy, ctx), *(None,) * 7
        return _avg_pool_backward(ctx, gy), *(None,) * 7


def _avg_pool_backward(ctx, gy):
    """The input gradient of :class:`AvgPool2d` (arrays), by the backward kernel."""
    kernel, stride, padding, count_include_pad, extra, divisor, padded = ctx.conf
    be = backend_of(gy)
    xp = be.xp
    gy4 = xp.ascontiguousarray(gy).reshape(ctx.y4_shape)
    if divisor is None:
        gx = be.avg_pool2d_backward(gy4, padded, kernel, stride, padding, count_include_pad)
    else:
        gy4 = xp.ascontiguousarray(gy4 * (kernel[0] * kernel[1] / divisor))
        gx = be.avg_pool2d_backward(gy4, padded, kernel, stride, padding, True)
    return _crop_high(xp, gx, ctx.x4_shape[2:]).reshape(ctx.x_shape)


class _AvgPoolGrad(Function):
    """AvgPool2d's backward as a recorded op (create_graph): linear in ``gy``, so its own
    backward is the average pooling again, of the incoming gradient."""

    double_backward = True

    @staticmethod
    def forward(ctx, gy, pool_ctx):
        ctx.pool = pool_ctx
        return _avg_pool_backward(pool_ctx, gy)

    @staticmethod
    def backward(ctx, u):
        if isinstance(u, Tensor):
            return AvgPool2d.apply(u, *ctx.pool.args), None
        probe = type("PoolCtx", (), {})()  # a throwaway context for the raw forward
        probe.needs_input_grad = (False,)
        return AvgPool2d.forward(probe, u, *ctx.pool.args), None


def _pool_args(op, dims, input, kernel_size, stride, padding, ceil_mode, dilation=1):
    """Checked pooling geometry as 2-D tuples, plus the high-side padding and output size."""
    _check_tensor(input, "input", op)
    _check_float(input, "input", op)
    if input.ndim not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: expected a {dims + 1}-D or {dims + 2}-D input, got shape "
                         f"{input.shape}")
    kernel = _ntuple(kernel_size, dims, "kernel_size", op)
    stride = kernel if stride is None or stride == [] or stride == () else (
        _ntuple(stride, dims, "stride", op))
    padding = _ntuple(padding, dims, "padding", op)
    dilation = _ntuple(dilation, dims, "dilation", op)
    if any(d < 1 for d in dilation):
        raise ValueError(f"{op}: dilation {dilation} must be positive")
    if any(k < 1 for k in kernel) or any(s < 1 for s in stride):
        raise ValueError(f"{op}: kernel_size {kernel} and stride {stride} must be positive")
    if any(p < 0 or p > k // 2 for p, k in zip(padding, kernel, strict=True)):
        raise ValueError(f"{op}: padding should be at most half of the kernel size, but got "
                         f"padding={padding} and kernel_size={kernel}")
    size = input.shape[-dims:]
    out = []
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True))  # window extent
    for n, k, s, p in zip(size, span, stride, padding, strict=True):
        o = (n + 2 * p - k + ((s - 1) if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= n + p:  # the last window must start inside
            o -= 1
        out.append(o)
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: input of shape {input.shape} is too small for kernel_size "
                         f"{kernel} with padding {padding} (output size would be {tuple(out)})")
    extra = tuple(max(0, (o - 1) * s + k - n - 2 * p)
                  for o, s, k, n, p in zip(out, stride, span, size, padding, strict=True))
    if dims == 1:
        kernel, stride, padding, extra = (1,) + kernel, (1,) + stride, (0,) + padding, (0,) + extra
        dilation = (1,) + dilation
    x4_shape = _spatial_view(input.shape, dims)
    y_shape = input.shape[:-dims] + tuple(out)
    return kernel, stride, padding, extra, (x4_shape, y_shape), dilation


class MaxPool2dDilated(Function):
    """Max pooling with dilation > 1: a running max over the k*k strided slices of the input.

    No kernel of its own: the window offsets are visited one at a time (each a strided view of
    the -inf padded input), keeping the max and which offset gave it (the first, on ties, as
    in PyTorch; NaN wins). Backward is the usual scatter to the argmax.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, out_hw, views):
        x4_shape, y_shape = views
        xp = backend_of(x).xp
        n, c, height, width = x4_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel, stride, padding, dilation, out_hw
        need_h, need_w = (oh - 1) * sh + dh * (kh - 1) + 1, (ow - 1) * sw + dw * (kw - 1) + 1
        padded = xp.full((n, c, max(need_h, ph + height), max(need_w, pw + width)), -np.inf,
                         dtype=x.dtype)
        padded[:, :, ph:ph + height, pw:pw + width] = x.reshape(x4_shape)
        y = arg = None
        for i in range(kh):
            for j in range(kw):
                win = padded[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                             j * dw:j * dw + (ow - 1) * sw + 1:sw]
                if y is None:
                    y, arg = win.copy(), xp.zeros(win.shape, dtype=np.int64)
                    continue
                better = (win > y) | (xp.isnan(win) & ~xp.isnan(y))
                y = xp.where(better, win, y)
                arg = xp.where(better, i * kw + j, arg)
        rows = xp.arange(oh).reshape(oh, 1) * sh - ph + (arg // kw) * dh
        cols = xp.arange(ow).reshape(1, ow) * sw - pw + (arg % kw) * dw
        real = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        idx = xp.where(real, rows * width + cols, -1)
        return _argmax_outputs(ctx, y, idx, x4_shape, x.shape, y_shape)

    @staticmethod
    def backward(ctx, gy, _gidx):
        return _scatter_to_argmax(ctx, gy), *(None,) * 6


def _max_pool(op, dims, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    kernel, stride, padding, extra, views, dilation = _pool_args(
        op, dims, input, kernel_size, stride, padding, ceil_mode, dilation)
    if dilation != (1, 1):
        out_hw = views[1][-2:] if dims == 2 else (1, views[1][-1])
        y, idx = MaxPool2dDilated.apply(input, kernel, stride, padding, dilation, out_hw, views)
    else:
        y, idx = MaxPool2d.apply(input, kernel, stride, padding, extra, views)
    return (y, idx) if return_indices else y


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """2-D max pooling over (N, C, H, W) or (C, H, W), as ``F.max_pool2d``.

    ``stride`` defaults to ``kernel_size``; implicit padding is -inf and at most half the
    kernel. With ``return_indices`` also returns the int64 flat index ``h * W + w`` of each
    maximum in its input plane.

    >>> y = max_pool2d(pydl.randn(1, 3, 8, 8), 2)   # (1, 3, 4, 4)
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """1-D max pooling over (N, C, L) or (C, L), as ``F.max_pool1d``."""
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode,
                     return_indices)


def _avg_divisor(xp, dtype, size, kernel, stride, padding, out, count_include_pad):
    """PyTorch's per-window divisor (Ho, Wo) when windows may run past the padded input."""
    parts = []
    for n, k, s, p, o in zip(size, kernel, stride, padding, out, strict=True):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if count_include_pad:
            parts.append(end - start)
        else:
            parts.append(np.minimum(end, n) - np.maximum(start, 0))
    return xp.asarray(np.outer(parts[0], parts[1]).astype(dtype))


def _avg_pool(op, dims, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override):
    kernel, stride, padding, extra, views, _ = _pool_args(op, dims, input, kernel_size, stride,
                                                          padding, ceil_mode)
    divisor = None
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be non-zero")
        divisor = float(divisor_override)
    elif extra != (0, 0):
        x4_shape, y_shape = views
        out = y_shape[-2:] if dims == 2 else (1,) + y_shape[-1:]
        divisor = _avg_divisor(backend_of(input.data).xp, input.dtype, x4_shape[2:], kernel,
                               stride, padding, out, count_include_pad)
    return AvgPool2d.apply(input, kernel, stride, padding, bool(count_include_pad), extra,
                           divisor, views)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True, divisor_override=None):
    """2-D average pooling over (N, C, H, W) or (C, H, W), as ``F.avg_pool2d``.

    ``count_include_pad`` counts the zero padding in the divisor; ``divisor_override``
    replaces the divisor.

    >>> y = avg_pool2d(pydl.randn(1, 3, 8, 8), 3, stride=2, padding=1)   # (1, 3, 4, 4)
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, divisor_override)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True):
    """1-D average pooling over (N, C, L) or (C, L), as ``F.avg_pool1d``."""
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode,
                     count_include_pad, None)


# -- adaptive pooling ------------------------------------------------------------------------
def _windows(size: int, out: int):
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging matrix of PyTorch's adaptive windows."""
    m = np.zeros((out, size))
    for i, (lo, hi) in enumerate(_windows(size, out)):
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class AdaptiveAvgPool2d(Function):
    """Adaptive average pooling with uneven windows: y = Ph @ x @ Pw^T (windows separate)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, views):
        x4_shape, y_shape, out = views
        xp = backend_of(x).xp
        ph = xp.asarray(_adaptive_matrix(x4_shape[2], out[0]).astype(x.dtype))
        pw = xp.asarray(_adaptive_matrix(x4_shape[3], out[1]).astype(x.dtype))
        ctx.mats, ctx.x_shape, ctx.x4_shape = (ph, pw), x.shape, x4_shape
        return xp.matmul(xp.matmul(ph, x.reshape(x4_shape)), pw.T).reshape(y_shape)

    @staticmethod
    def backward(ctx, gy):
        ph, pw = ctx.mats
        xp = xp_of(gy)
        gy4 = gy.reshape(ctx.x4_shape[:2] + (ph.shape[0], pw.shape[0]))
        return xp.matmul(xp.matmul(ph.T, gy4), pw).reshape(ctx.x_shape), None


class AdaptiveMaxPool2d(Function):
    """Adaptive max pooling with uneven windows (a loop over output positions)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, views):
        x4_shape, y_shape, out = views
        xp = backend_of(x).xp
        x4 = x.reshape(x4_shape)
        n, c, height, width = x4_shape
        y = xp.empty((n, c) + out, dtype=x.dtype)
        idx = xp.empty((n, c) + out, dtype=np.int64)
        for i, (h0, h1) in enumerate(_windows(height, out[0])):
            for j, (w0, w1) in enumerate(_windows(width, out[1])):
                win = x4[:, :, h0:h1, w0:w1].reshape(n, c, -1)
                arg = xp.argmax(win, axis=-1)
                y[:, :, i, j] = xp.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
                idx[:, :, i, j] = (h0 + arg // (w1 - w0)) * width + w0 + arg % (w1 - w0)
        return _argmax_outputs(ctx, y, idx, x4_shape, x.shape, y_shape)

    @staticmethod
    def backward(ctx, gy, _gidx):
        return _scatter_to_argmax(ctx, gy), None


def _adaptive_args(op, dims, input, output_size):
    _check_tensor(input, "input", op)
    _check_float(input, "input", op)
    if input.ndim not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: expected a {dims + 1}-D or {dims + 2}-D input, got shape "
                         f"{input.shape}")
    size = input.shape[-dims:]
    if output_size is None or isinstance(output_size, int):
        output_size = (output_size,) * dims
    if len(output_size) != dims:
        raise ValueError(f"{op}: output_size must be an int or a tuple of {dims}, got "
                         f"{output_size!r}")
    out = tuple(s if o is None else int(o) for s, o in zip(size, output_size, strict=True))
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: output_size must be positive, got {out}")
    if any(s < 1 for s in size):
        raise ValueError(f"{op}: input of shape {input.shape} has an empty spatial dimension")
    x4_shape = _spatial_view(input.shape, dims)
    y_shape = input.shape[:-dims] + out
    return (out if dims == 2 else (1,) + out), x4_shape, y_shape


def _adaptive_avg(op, dims, input, output_size):
    out4, x4_shape, y_shape = _adaptive_args(op, dims, input, output_size)
    if all(s % o == 0 for s, o in zip(x4_shape[2:], out4, strict=True)):
        kernel = tuple(s // o for s, o in zip(x4_shape[2:], out4, strict=True))
        return AvgPool2d.apply(input, kernel, kernel, (0, 0), True, (0, 0), None,
                               (x4_shape, y_shape))
    return AdaptiveAvgPool2d.apply(input, (x4_shape, y_shape, out4))


def _adaptive_max(op, dims, input, output_size, return_indices):
    out4, x4_shape, y_shape = _adaptive_args(op, dims, input, output_size)
    if all(s % o == 0 for s, o in zip(x4_shape[2:], out4, strict=True)):
        kernel = tuple(s // o for s, o in zip(x4_shape[2:], out4, strict=True))
        y, idx = MaxPool2d.apply(input, kernel, kernel, (0, 0), (0, 0), (x4_shape, y_shape))
    else:
        y, idx = AdaptiveMaxPool2d.apply(input, (x4_shape, y_shape, out4))
    return (y, idx) if return_indices else y


def adaptive_avg_pool2d(input, output_size):  # noqa: A002
    """Average pooling to a fixed output size (an int, a pair, None keeps that size).

    >>> adaptive_avg_pool2d(pydl.randn(2, 8, 7, 7), 1).shape   # global average pooling
    (2, 8, 1, 1)
    """
    return _adaptive_avg("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool1d(input, output_size):  # noqa: A002
    """Average pooling of (N, C, L) or (C, L) to length ``output_size``."""
    return _adaptive_avg("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_max_pool2d(input, output_size, return_indices=False):  # noqa: A002
    """Max pooling to a fixed output size; ``return_indices`` as in :func:`max_pool2d`."""
    return _adaptive_max("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool1d(input, output_size, return_indices=False):  # noqa: A002
    """Max pooling of (N, C, L) or (C, L) to length ``output_size``."""
    return _adaptive_max("adaptive_max_pool1d", 1, input, output_size, return_indices)

