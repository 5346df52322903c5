"""Convolutions, as in ``torch.nn.functional``: conv1d, conv2d, conv_transpose1d/2d.

Every variant runs on the three convolution kernels of the protocol (``backend/protocol.py``).
A transposed convolution is the adjoint of a convolution, so its forward is
``conv2d_backward_data``, its input gradient is ``conv2d_forward`` and its weight gradient is
``conv2d_backward_weight`` with the roles of input and output swapped. 1-D and unbatched
inputs are viewed as 4-D (N, C, H, W) inside the Functions.
"""

from __future__ import annotations

import numbers

from ..autograd import Function, autocast_active
from ..backend import backend_of
from ..backend.protocol import conv_output_size
from ..tensor import Tensor, dtype_name, is_floating_dtype

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]


# -- argument helpers shared with pool.py ----------------------------------------------------
def _ntuple(value, n: int, name: str, op: str) -> tuple:
    """An int or a sequence of ``n`` ints as a tuple of ``n`` ints."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
    ):
        if len(value) == n:
            return tuple(int(v) for v in value)
        if len(value) == 1:
            return (int(value[0]),) * n
    raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, got {value!r}")


def _check_tensor(t, name: str, op: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")


def _check_float(t, name: str, op: str) -> None:
    if not is_floating_dtype(t.dtype):
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got {dtype_name(t.dtype)}")


def _check_same_dtype(a, b, names, op: str) -> None:
    if a.dtype != b.dtype and not (autocast_active() and is_floating_dtype(a.dtype)
                                   and is_floating_dtype(b.dtype)):  # apply casts them
        raise TypeError(
            f"{op}: {names[0]} is {dtype_name(a.dtype)} but {names[1]} is "
            f"{dtype_name(b.dtype)}; convert one with .to(dtype)"
        )


def _pad_high(xp, x, extra, value=0.0):
    """``x`` (N, C, H, W) padded by ``extra = (rows, cols)`` on the bottom and right."""
    if extra == (0, 0):
        return x
    return xp.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])), constant_values=value)


def _crop_high(xp, g, hw):
    """Undo :func:`_pad_high`: the first ``hw = (H, W)`` rows and columns of ``g``."""
    if tuple(g.shape[2:]) == tuple(hw):
        return g
    return xp.ascontiguousarray(g[:, :, : hw[0], : hw[1]])


def _spatial_view(shape: tuple, dims: int) -> tuple:
    """The 4-D (N, C, H, W) shape under which an input of ``dims`` spatial dims is computed."""
    if len(shape) == dims + 1:  # unbatched
        shape = (1,) + tuple(shape)
    if dims == 1:
        return (shape[0], shape[1], 1, shape[2])
    return tuple(shape)


# -- the three kernels as recorded ops (the create_graph path) --------------------------------
# With C(x, w) = conv2d_forward, its adjoints C^T(g, w) = conv2d_backward_data and
# W(g, x) = conv2d_backward_weight all come from one trilinear form <C(x, w), g>, so the
# derivatives of each are the other two (Chainer's Convolution2DGradW pattern):
#   y = C(x, w):   gx = C^T(u, w),  gw = W(u, x)
#   x = C^T(g, w): gg = C(u, w),    gw = W(g, u)
#   w = W(g, x):   gg = C(x, u),    gx = C^T(g, u)
class _ConvKernel(Function):
    """One convolution kernel on 4-D arrays: ``kind`` 'y' (a=x, b=w), 'x' (a=g, b=w) or
    'w' (a=g, b=x); ``shape`` is the result's shape for 'x' and 'w'."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, b, kind, shape, conf):
        ctx.save_for_backward(a, b)  # as given: saved inputs come back as the input tensors
        ctx.kind, ctx.conf, ctx.shapes = kind, conf, (a.shape, b.shape)
        return _conv_kernel(kind, a, b, shape, conf)

    @staticmethod
    def backward(ctx, u):
        a, b = ctx.saved_tensors
        kind, conf, (a_shape, b_shape) = ctx.kind, ctx.conf, ctx.shapes
        need = ctx.needs_input_grad
        ga = gb = None
        if kind == "y":  # a = x, b = w
            ga = _conv_kernel("x", u, b, a_shape, conf) if need[0] else None
            gb = _conv_kernel("w", u, a, b_shape, conf) if need[1] else None
        elif kind == "x":  # a = g, b = w
            ga = _conv_kernel("y", u, b, None, conf) if need[0] else None
            gb = _conv_kernel("w", a, u, b_shape, conf) if need[1] else None
        else:  # a = g, b = x
            ga = _conv_kernel("y", b, u, None, conf) if need[0] else None
            gb = _conv_kernel("x", a, u, b_shape, conf) if need[1] else None
        return ga, gb, None, None, None


def _conv_kernel(kind, a, b, shape, conf):
    """A recorded :class:`_ConvKernel` on Tensors, the kernel itself on arrays."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return _ConvKernel.apply(a, b, kind, shape, conf)
    be = backend_of(a)
    a, b = be.xp.ascontiguousarray(a), be.xp.ascontiguousarray(b)
    if kind == "y":
        return be.conv2d_forward(a, b, *conf)
    if kind == "x":
        return be.conv2d_backward_data(a, b, shape, *conf)
    return be.conv2d_backward_weight(a, b, shape, *conf)


def _pad_high_graph(x, extra):
    from .shape import pad

    return x if extra == (0, 0) else pad(x, (0, extra[1], 0, extra[0]))


def _crop_high_graph(g, hw):
    if tuple(g.shape[2:]) == tuple(hw):
        return g
    return g[:, :, : hw[0], : hw[1]]


def _conv_backward_graph(ctx, gy, transposed):
    """Conv2d / ConvTranspose2d backward as recorded kernel ops (create_graph)."""
    x, w = ctx.saved_tensors
    stride, padding, dilation, groups, extra, views = ctx.conf
    x4_shape, w4_shape, y4_shape = views[0], views[1], views[2]
    conf = (stride, padding, dilation, groups)
    gy4 = gy.reshape(y4_shape)
    w4 = w.reshape(w4_shape)
    x4 = _pad_high_graph(x.reshape(x4_shape), extra)
    need = ctx.needs_input_grad
    gx = gw = gb = None
    if need[0]:
        gx = (_conv_kernel("y", gy4, w4, None, conf) if transposed
              else _conv_kernel("x", gy4, w4, tuple(x4.shape), conf))
        gx = _crop_high_graph(gx, x4_shape[2:]).reshape(x.shape)
    if need[1]:
        gw = (_conv_kernel("w", x4, gy4, w4_shape, conf) if transposed
              else _conv_kernel("w", gy4, x4, w4_shape, conf))
        gw = gw.reshape(w.shape)
    if need[2]:
        gb = gy4.sum(axis=(0, 2, 3))
    return gx, gw, gb


# -- Functions -------------------------------------------------------------------------------
class Conv2d(Function):
    """y = conv(x, w) + b on 4-D views of x, w and y; ``extra`` pads x on the high side."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, extra, views):
        x4_shape, w4_shape, _, y_shape = views
        be = backend_of(x)
        x4 = _pad_high(be.xp, x.reshape(x4_shape), extra)
        y = be.conv2d_forward(x4, w.reshape(w4_shape), stride, padding, dilation, groups)
        if b is not None:
            y = y + b.reshape(1, -1, 1, 1)
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups, extra, views)
        return y.reshape(y_shape)

    @staticmethod
    def backward(ctx, gy):
        if isinstance(gy, Tensor):
            return (*_conv_backward_graph(ctx, gy, False), *(None,) * 6)
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups, extra, (x4_shape, w4_shape, y4_shape, _) = ctx.conf
        be = backend_of(gy)
        xp = be.xp
        gy4 = xp.ascontiguousarray(gy).reshape(y4_shape)
        x4 = _pad_high(xp, x.reshape(x4_shape), extra)
        w4 = w.reshape(w4_shape)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = be.conv2d_backward_data(gy4, w4, x4.shape, stride, padding, dilation, groups)
            gx = _crop_high(xp, gx, x4_shape[2:]).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            gw = be.conv2d_backward_weight(gy4, x4, w4_shape, stride, padding, dilation, groups)
            gw = gw.reshape(w.shape)
        if ctx.needs_input_grad[2]:
            gb = gy4.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None, None, None


class ConvTranspose2d(Function):
    """y = conv_transpose(x, w) + b: the adjoint of conv2d applied to x."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups, views):
        x4_shape, w4_shape, y4_shape, y_shape, natural = views
        be = backend_of(x)
        # x may be smaller than the conv output that y's size implies (output_padding >= stride):
        # the missing rows and columns are zeros
        extra = (natural[0] - x4_shape[2], natural[1] - x4_shape[3])
        x4 = _pad_high(be.xp, x.reshape(x4_shape), extra)
        y = be.conv2d_backward_data(x4, w.reshape(w4_shape), y4_shape, stride, padding,
                                    dilation, groups)
        if b is not None:
            y = y + b.reshape(1, -1, 1, 1)
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups, extra, views)
        return y.reshape(y_shape)

    @staticmethod
    def backward(ctx, gy):
        if isinstance(gy, Tensor):
            return (*_conv_backward_graph(ctx, gy, True), *(None,) * 5)
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups, extra, views = ctx.conf
        x4_shape, w4_shape, y4_shape, _, _ = views
        be = backend_of(gy)
        xp = be.xp
        gy4 = xp.ascontiguousarray(gy).reshape(y4_shape)
        w4 = w.reshape(w4_shape)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = be.conv2d_forward(gy4, w4, stride, padding, dilation, groups)
            gx = _crop_high(xp, gx, x4_shape[2:]).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            x4 = _pad_high(xp, x.reshape(x4_shape), extra)
            gw = be.conv2d_backward_weight(x4, gy4, w4_shape, stride, padding, dilation, groups)
            gw = gw.reshape(w.shape)
        if ctx.needs_input_grad[2]:
            gb = gy4.sum(axis=(0, 2, 3))
        return gx, gw, gb, None, None, None, None, None


# -- argument checking -----------------------------------------------------------------------
def _check_conv_args(op, dims, input, weight, bias, groups):
    _check_tensor(input, "input", op)
    _check_tensor(weight, "weight", op)
    _check_float(input, "input", op)
    _check_same_dtype(input, weight, ("input", "weight"), op)
    layout = "(C, L)" if dims == 1 else "(C, H, W)"
    if input.ndim not in (dims + 1, dims + 2):
        raise ValueError(
            f"{op}: expected a {dims + 1}-D {layout} or {dims + 2}-D (N, {layout[1:]} input, "
            f"got shape {input.shape}"
        )
    if weight.ndim != dims + 2:
        raise ValueError(f"{op}: expected a {dims + 2}-D weight, got shape {weight.shape}")
    if not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    if bias is not None:
        _check_tensor(bias, "bias", op)
        _check_same_dtype(input, bias, ("input", "bias"), op)


def _check_positive(values, name, op):
    if any(v < 1 for v in values):
        raise ValueError(f"{op}: {name} must be positive, got {values}")


def _check_nonneg(values, name, op):
    if any(v < 0 for v in values):
        raise ValueError(f"{op}: {name} must be non-negative, got {values}")


def _conv(op, dims, input, weight, bias, stride, padding, dilation, groups):
    _check_conv_args(op, dims, input, weight, bias, groups)
    out_c, c_per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    channels = input.shape[-dims - 1]
    if out_c % groups:
        raise ValueError(
            f"{op}: weight of shape {weight.shape} has {out_c} output channels, which is not "
            f"divisible by groups={groups}"
        )
    if channels != c_per_group * groups:
        raise ValueError(
            f"{op}: input of shape {input.shape} has {channels} channels, but weight of shape "
            f"{weight.shape} with groups={groups} expects {c_per_group * groups}"
        )
    if bias is not None and bias.shape != (out_c,):
        raise ValueError(f"{op}: bias of shape {bias.shape} does not match {out_c} output "
                         f"channels (expected shape ({out_c},))")
    stride = _ntuple(stride, dims, "stride", op)
    dilation = _ntuple(dilation, dims, "dilation", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    effective = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True))
    if isinstance(padding, str):
        if padding == "valid":
            low, high = (0,) * dims, (0,) * dims
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            low = tuple((e - 1) // 2 for e in effective)  # PyTorch: the extra one goes last
            high = tuple(e - 1 - lo for e, lo in zip(effective, low, strict=True))
        else:
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a tuple, "
                             f"got {padding!r}")
    else:
        low = high = _ntuple(padding, dims, "padding", op)
        _check_nonneg(low, "padding", op)
    size = input.shape[-dims:]
    padded = tuple(s + lo + hi for s, lo, hi in zip(size, low, high, strict=True))
    if any(p < e for p, e in zip(padded, effective, strict=True)):
        raise ValueError(
            f"{op}: input of shape {input.shape} (padded spatial size {padded}) is smaller "
            f"than the kernel (size {kernel}, dilation {dilation}: effective {effective})"
        )
    extra = tuple(hi - lo for lo, hi in zip(low, high, strict=True))
    if dims == 1:  # view as 2-D with H = 1
        stride, dilation, low, extra = (1,) + stride, (1,) + dilation, (0,) + low, (0,) + extra
    x4_shape = _spatial_view(input.shape, dims)
    w4_shape = (out_c, c_per_group, 1, kernel[0]) if dims == 1 else tuple(weight.shape)
    out = tuple(
        conv_output_size(s + e, k, st, p, d)
        for s, e, k, st, p, d in zip(x4_shape[2:], extra, w4_shape[2:], stride, low, dilation,
                                     strict=True)
    )
    y4_shape = (x4_shape[0], out_c) + out
    y_shape = input.shape[:-dims - 1] + (out_c,) + (out[1:] if dims == 1 else out)
    views = (x4_shape, w4_shape, y4_shape, y_shape)
    return Conv2d.apply(input, weight, bias, stride, low, dilation, int(groups), extra, views)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """2-D cross-correlation over an (N, C, H, W) or (C, H, W) input, as ``F.conv2d``.

    weight is (C_out, C_in / groups, kH, kW), bias (C_out,). ``stride``, ``padding`` and
    ``dilation`` are ints or pairs; ``padding`` may also be ``'valid'`` or ``'same'``
    (stride 1; an odd total padding puts the extra row/column at the bottom/right).

    >>> y = conv2d(pydl.randn(2, 3, 8, 8), pydl.randn(4, 3, 3, 3), padding=1)  # (2, 4, 8, 8)
    """
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """1-D cross-correlation over an (N, C, L) or (C, L) input, as ``F.conv1d``.

    weight is (C_out, C_in / groups, k); the other arguments are as for :func:`conv2d`.
    """
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(op, dims, input, weight, bias, stride, padding, output_padding, groups,
                    dilation):
    _check_conv_args(op, dims, input, weight, bias, groups)
    in_c, out_per_group = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    channels = input.shape[-dims - 1]
    if in_c % groups:
        raise ValueError(
            f"{op}: weight of shape {weight.shape} has {in_c} input channels, which is not "
            f"divisible by groups={groups}"
        )
    if channels != in_c:
        raise ValueError(
            f"{op}: input of shape {input.shape} has {channels} channels, but weight of shape "
            f"{weight.shape} (C_in, C_out / groups, ...) expects {in_c}"
        )
    out_c = out_per_group * groups
    if bias is not None and bias.shape != (out_c,):
        raise ValueError(f"{op}: bias of shape {bias.shape} does not match {out_c} output "
                         f"channels (expected shape ({out_c},))")
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple, got {padding!r}")
    stride = _ntuple(stride, dims, "stride", op)
    dilation = _ntuple(dilation, dims, "dilation", op)
    padding = _ntuple(padding, dims, "padding", op)
    output_padding = _ntuple(output_padding, dims, "output_padding", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    _check_nonneg(padding, "padding", op)
    _check_nonneg(output_padding, "output_padding", op)
    for op_, s, d in zip(output_padding, stride, dilation, strict=True):
        if op_ >= max(s, d):
            raise ValueError(
                f"{op}: output_padding {output_padding} must be smaller than either stride "
                f"{stride} or dilation {dilation}"
            )
    size = input.shape[-dims:]
    out = tuple(
        (n - 1) * s - 2 * p + d * (k - 1) + o + 1
        for n, s, p, d, k, o in zip(size, stride, padding, dilation, kernel, output_padding,
                                    strict=True)
    )
    if any(o < 1 for o in out):
        raise ValueError(f"{op}: input of shape {input.shape} gives an output of spatial size "
                         f"{out}, which is too small (padding {padding} is too large)")
    if dims == 1:
        stride, dilation, padding = (1,) + stride, (1,) + dilation, (0,) + padding
        out = (1,) + out
    x4_shape = _spatial_view(input.shape, dims)
    w4_shape = (in_c, out_per_group, 1, kernel[0]) if dims == 1 else tuple(weight.shape)
    y4_shape = (x4_shape[0], out_c) + out
    natural = tuple(
        conv_output_size(o, k, s, p, d)
        for o, k, s, p, d in zip(out, w4_shape[2:], stride, padding, dilation, strict=True)
    )
    y_shape = input.shape[:-dims - 1] + (out_c,) + (out[1:] if dims == 1 else out)
    views = (x4_shape, w4_shape, y4_shape, y_shape, natural)
    return ConvTranspose2d.apply(input, weight, bias, stride, padding, dilation, int(groups),
                                 views)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,  # noqa: A002
                     groups=1, dilation=1):
    """2-D transposed convolution ("deconvolution"), as ``F.conv_transpose2d``.

    weight is (C_in, C_out / groups, kH, kW) (PyTorch's layout); the output size is
    ``(H - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1``.

    >>> y = conv_transpose2d(pydl.randn(2, 4, 5, 5), pydl.randn(4, 3, 3, 3), stride=2)
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,  # noqa: A002
                     groups=1, dilation=1):
    """1-D transposed convolution over (N, C, L) or (C, L), as ``F.conv_transpose1d``."""
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding,
                           output_padding, groups, dilation)
