"""3-D convolution and pooling over (N, C, D, H, W), composed from the 2-D/1-D kernels.

No kernel of their own (yet): they run on the existing conv2d and pool kernels of each
backend, so they work, with gradients, on every device.

- ``conv3d``: the depth axis is unrolled over the kernel's depth taps. For tap ``k`` the input
  planes ``k*dilation + d*stride`` (one per output depth ``d``) are stacked into the batch and
  convolved in 2-D with the weight's slice ``[:, :, k]``; the taps' results are summed. One
  Python step per depth tap (``kD`` of them, e.g. 3), never per element.
- ``max_pool3d`` / ``avg_pool3d``: a box is the product of a (H, W) window and a depth
  window, and max and mean both factor over it: pool (H, W) with ``*_pool2d``, then depth
  with ``*_pool1d``. Padding, ``ceil_mode`` and ``count_include_pad`` factor per dim too.
  ``return_indices``: the 1-D pool's argmax says which depth plane won, the 2-D pool's
  argmax in that plane says where; together PyTorch's flat ``(d * H + h) * W + w``. Both
  parts keep the first maximum, so ties go to the first in (d, h, w) order, as in PyTorch.

Second derivatives: those of their 2-D parts (conv2d's and the pools' double backward).
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._util import xp_of
from .conv import _check_conv_args, _check_nonneg, _check_positive, _ntuple, conv2d
from .pool import _avg_pool, _max_pool

__all__ = ["conv3d", "max_pool3d", "avg_pool3d"]


def _same_padding(effective):
    low = tuple((e - 1) // 2 for e in effective)  # PyTorch: the extra one goes last
    return low, tuple(e - 1 - lo for e, lo in zip(effective, low, strict=True))


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):  # noqa: A002
    """3-D cross-correlation over (N, C, D, H, W) or (C, D, H, W), as ``F.conv3d``.

    weight is (C_out, C_in / groups, kD, kH, kW), bias (C_out,); ``stride``, ``padding``,
    ``dilation`` are ints or triples, ``padding`` also ``'valid'``/``'same'`` (stride 1).

    >>> conv3d(pydl.randn(1, 2, 5, 6, 6), pydl.randn(4, 2, 3, 3, 3), padding=1).shape
    (1, 4, 5, 6, 6)
    """
    op = "conv3d"
    _check_conv_args(op, 3, input, weight, bias, groups)
    unbatched = input.ndim == 4
    x = input.unsqueeze(0) if unbatched else input
    out_c, c_per_group, kd = weight.shape[:3]
    if x.shape[1] != c_per_group * groups or out_c % groups:
        raise ValueError(f"{op}: input of shape {input.shape} and weight of shape "
                         f"{weight.shape} do not match with groups={groups} (the input needs "
                         f"{c_per_group * groups} channels; {out_c} output channels must "
                         f"divide by groups)")
    if bias is not None and bias.shape != (out_c,):
        raise ValueError(f"{op}: bias of shape {bias.shape} does not match {out_c} output "
                         f"channels (expected shape ({out_c},))")
    stride = _ntuple(stride, 3, "stride", op)
    dilation = _ntuple(dilation, 3, "dilation", op)
    _check_positive(stride, "stride", op)
    _check_positive(dilation, "dilation", op)
    kernel = tuple(weight.shape[2:])
    effective = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel, strict=True))
    if isinstance(padding, str):
        if padding == "valid":
            low = high = (0, 0, 0)
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            low, high = _same_padding(effective)
        else:
            raise ValueError(f"{op}: padding must be 'valid', 'same', an int or a tuple, "
                             f"got {padding!r}")
    else:
        low = high = _ntuple(padding, 3, "padding", op)
        _check_nonneg(low, "padding", op)
    padded = tuple(s + lo + hi for s, lo, hi in zip(x.shape[2:], low, high, strict=True))
    if any(p < e for p, e in zip(padded, effective, strict=True)):
        raise ValueError(f"{op}: input of shape {input.shape} (padded spatial size {padded}) "
                         f"is smaller than the kernel (size {kernel}, dilation {dilation})")
    if any(low) or any(high):
        from .shape import pad

        x = pad(x, (low[2], high[2], low[1], high[1], low[0], high[0]))
    n, c, depth, h, w = x.shape
    out_d = (depth - effective[0]) // stride[0] + 1
    y = None
    for k in range(kd):
        start = k * dilation[0]
        planes = x[:, :, start:start + stride[0] * (out_d - 1) + 1:stride[0]]
        planes = planes.permute(0, 2, 1, 3, 4).reshape(n * out_d, c, h, w)
        part = conv2d(planes, weight[:, :, k], None, stride[1:], 0, dilation[1:], groups)
        y = part if y is None else y + part
    y = y.reshape(n, out_d, out_c, y.shape[-2], y.shape[-1]).permute(0, 2, 1, 3, 4)
    if bias is not None:
        y = y + bias.reshape(1, out_c, 1, 1, 1)
    return y.squeeze(0) if unbatched else y.contiguous()


def _pool3d(op, input, kernel_size, stride, padding, dilation, pool2d, pool1d,
            return_indices=False):
    from .conv import _check_tensor

    _check_tensor(input, "input", op)
    if input.ndim not in (4, 5):
        raise ValueError(f"{op}: expected a 4-D (C, D, H, W) or 5-D (N, C, D, H, W) input, "
                         f"got shape {input.shape}")
    kernel = _ntuple(kernel_size, 3, "kernel_size", op)
    stride = kernel if stride is None or stride == [] or stride == () else (
        _ntuple(stride, 3, "stride", op))
    padding = _ntuple(padding, 3, "padding", op)
    dilation = _ntuple(dilation, 3, "dilation", op)
    unbatched = input.ndim == 4
    x = input.unsqueeze(0) if unbatched else input
    n, c, d, h, w = x.shape
    y = pool2d(x.reshape(n, c * d, h, w), kernel[1:], stride[1:], padding[1:], dilation[1:])
    if return_indices:
        y, idx_hw = y
    ho, wo = y.shape[-2:]
    y = y.reshape(n, c, d, ho, wo).permute(0, 1, 3, 4, 2).reshape(n, c * ho * wo, d)
    y = pool1d(y, kernel[0], stride[0], padding[0], dilation[0])
    if return_indices:
        y, idx_d = y
    do = y.shape[-1]
    y = y.reshape(n, c, ho, wo, do).permute(0, 1, 4, 2, 3).contiguous()
    if not return_indices:
        return y.squeeze(0) if unbatched else y
    idx = _flat_indices(idx_hw.data, idx_d.data, (n, c, d, ho, wo, do), h * w)
    if unbatched:
        y, idx = y.squeeze(0), idx[0]
    return y, Tensor._make(idx)


def _flat_indices(idx_hw, idx_d, shape, plane):
    """PyTorch's flat ``(d * H + h) * W + w`` index of each 3-D maximum: the depth the 1-D pool
    picked, and the in-plane index the 2-D pool found in that depth plane."""
    n, c, d, ho, wo, do = shape
    xp = xp_of(idx_hw)
    depth = idx_d.reshape(n, c, ho, wo, do)
    in_plane = xp.moveaxis(idx_hw.reshape(n, c, d, ho, wo), 2, -1)  # (n, c, ho, wo, d)
    hw = xp.take_along_axis(in_plane, depth, axis=-1)
    flat = depth.astype(np.int64) * plane + hw
    return xp.ascontiguousarray(xp.moveaxis(flat, -1, 2))  # (n, c, do, ho, wo)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,  # noqa: A002
               return_indices=False):
    """3-D max pooling over (N, C, D, H, W) or (C, D, H, W), as ``F.max_pool3d``.

    With ``return_indices`` also returns the int64 flat index ``(d * H + h) * W + w`` of each
    maximum in its input volume, as PyTorch (the first one in (d, h, w) order on ties)."""

    def pool2d(x, k, s, p, dil):
        return _max_pool("max_pool3d", 2, x, k, s, p, dil, ceil_mode, return_indices)

    def pool1d(x, k, s, p, dil):
        return _max_pool("max_pool3d", 1, x, k, s, p, dil, ceil_mode, return_indices)

    return _pool3d("max_pool3d", input, kernel_size, stride, padding, dilation, pool2d, pool1d,
                   return_indices)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,  # noqa: A002
               count_include_pad=True, divisor_override=None):
    """3-D average pooling over (N, C, D, H, W) or (C, D, H, W), as ``F.avg_pool3d``."""
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("avg_pool3d: divisor_override must be non-zero")
    # with divisor_override: sum each box (divisor 1 in both parts), then divide
    div = None if divisor_override is None else 1

    def pool2d(x, k, s, p, dil):
        return _avg_pool("avg_pool3d", 2, x, k, s, p, ceil_mode, count_include_pad, div)

    def pool1d(x, k, s, p, dil):
        return _avg_pool("avg_pool3d", 1, x, k, s, p, ceil_mode, count_include_pad, div)

    y = _pool3d("avg_pool3d", input, kernel_size, stride, padding, 1, pool2d, pool1d)
    return y if divisor_override is None else y / float(divisor_override)
