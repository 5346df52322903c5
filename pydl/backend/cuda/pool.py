"""The pooling family (``csrc/cuda/pool.cu``): max and average pooling, forward and backward,
as 1-D grid-stride loops over output (or input) elements."""

from __future__ import annotations

import numpy as np

from ..cpu.reference import window_output_hw
from . import runtime as rt

SOURCE = "pool.cu"
KINDS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
         "avg_pool2d_backward")



def instances() -> list[str]:
    """Every pool.cu instance the backend may launch."""
    return rt.typed_instances(KINDS)


def _geometry(op, x_shape, kernel_size, stride, padding):
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = window_output_hw(op, (h, w), kernel_size, stride, padding)
    rt.check_i32(op, plane=max(h * w, ho * wo))
    return n, c, h, w, ho, wo


def _window_args(h, w, ho, wo, kernel_size, stride, padding):
    i32 = np.int32
    return (i32(h), i32(w), i32(ho), i32(wo), i32(kernel_size[0]), i32(kernel_size[1]),
            i32(stride[0]), i32(stride[1]), i32(padding[0]), i32(padding[1]))


@rt.on_device
def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, argmax): window maxima and the flat h * W + w index of each (-1: padding only)."""
    ctype = rt.ctype("max_pool2d", x.dtype)
    n, c, h, w, ho, wo = _geometry("max_pool2d", x.shape, kernel_size, stride, padding)
    y = rt.empty((n, c, ho, wo), x.dtype)
    argmax = rt.empty((n, c, ho, wo), np.int64)
    if y.size:
        rt.launch(SOURCE, rt.typed_name("max_pool2d_forward", ctype), (rt.grid_1d(y.size),),
                  rt.BLOCK, (rt.contig(x), y, argmax, np.int64(y.size))
                  + _window_args(h, w, ho, wo, kernel_size, stride, padding))
    return y, argmax


@rt.on_device
def max_pool2d_backward(gy, argmax, x_shape):
    """gx (x_shape): gy scatter-added at argmax."""
    ctype = rt.ctype("max_pool2d_backward", gy.dtype)
    n, c, h, w = (int(s) for s in x_shape)
    gx = rt.xp.zeros((n, c, h, w), gy.dtype)  # scatter-add target: zeros are part of the result
    if gy.size:
        rt.launch(SOURCE, rt.typed_name("max_pool2d_backward", ctype), (rt.grid_1d(gy.size),),
                  rt.BLOCK, (rt.contig(gy), rt.contig(argmax.astype(np.int64, copy=False)), gx,
                   np.int64(gy.size), np.int32(gy.shape[2] * gy.shape[3]), np.int32(h * w)))
    return gx


@rt.on_device
def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad=True):
    """Window means with zero padding (divisor kH*kW, or only the real elements)."""
    ctype = rt.ctype("avg_pool2d", x.dtype)
    n, c, h, w, ho, wo = _geometry("avg_pool2d", x.shape, kernel_size, stride, padding)
    y = rt.empty((n, c, ho, wo), x.dtype)
    if y.size:
        rt.launch(SOURCE, rt.typed_name("avg_pool2d_forward", ctype), (rt.grid_1d(y.size),),
                  rt.BLOCK, (rt.contig(x), y, np.int64(y.size))
                  + _window_args(h, w, ho, wo, kernel_size, stride, padding)
                  + (np.int32(bool(count_include_pad)),))
    return y


@rt.on_device
def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad=True):
    """gx (x_shape): each window spreads gy / divisor over its inputs."""
    ctype = rt.ctype("avg_pool2d_backward", gy.dtype)
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = gy.shape[2], gy.shape[3]
    rt.check_i32("avg_pool2d_backward", plane=max(h * w, ho * wo))
    gx = rt.empty((n, c, h, w), gy.dtype)
    if gx.size:
        if gy.size == 0:
            gx[...] = 0
        else:
            rt.launch(SOURCE, rt.typed_name("avg_pool2d_backward", ctype),
                      (rt.grid_1d(gx.size),), rt.BLOCK, (rt.contig(gy), gx, np.int64(gx.size))
                      + _window_args(h, w, ho, wo, kernel_size, stride, padding)
                      + (np.int32(bool(count_include_pad)),))
    return gx
