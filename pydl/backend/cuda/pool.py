"""The pooling family (``csrc/cuda/pool.cu``): max and average pooling, forward and backward,
as 1-D grid-stride loops over output (or input) elements.

float16 / bfloat16 arrays run natively (instances with a storage tag, float32 math); max
pooling's backward scatter-adds into a float32 buffer that is rounded to the dtype once."""

from __future__ import annotations

import numpy as np

from ..cpu.reference import window_output_hw
from ..low_precision import native_low
from . import runtime as rt
from .gemm_half import FORMATS

SOURCE = "pool.cu"
KINDS = ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
         "avg_pool2d_backward")



def instances() -> list[str]:
    """Every pool.cu instance the backend may launch."""
    low = [rt.template_name(f"{kind}_kernel", "float", fmt)
           for fmt in FORMATS.values() for kind in KINDS]
    return rt.typed_instances(KINDS) + low


def _name(op, kind, dtype):
    """The instance of ``kind`` for arrays of ``dtype`` (TypeError naming ``op`` otherwise)."""
    fmt = FORMATS.get(np.dtype(dtype))
    if fmt is not None:
        return rt.template_name(f"{kind}_kernel", "float", fmt)
    return rt.typed_name(kind, rt.ctype(op, dtype))


def _geometry(op, x_shape, kernel_size, stride, padding):
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = window_output_hw(op, (h, w), kernel_size, stride, padding)
    rt.check_i32(op, plane=max(h * w, ho * wo))
    return n, c, h, w, ho, wo


def _window_args(h, w, ho, wo, kernel_size, stride, padding):
    i32 = np.int32
    return (i32(h), i32(w), i32(ho), i32(wo), i32(kernel_size[0]), i32(kernel_size[1]),
            i32(stride[0]), i32(stride[1]), i32(padding[0]), i32(padding[1]))


@native_low
@rt.on_device
def max_pool2d_forward(x, kernel_size, stride, padding):
    """(y, argmax): window maxima and the flat h * W + w index of each (-1: padding only)."""
    name = _name("max_pool2d", "max_pool2d_forward", x.dtype)
    n, c, h, w, ho, wo = _geometry("max_pool2d", x.shape, kernel_size, stride, padding)
    y = rt.empty((n, c, ho, wo), x.dtype)
    argmax = rt.empty((n, c, ho, wo), np.int64)
    if y.size:
        rt.launch(SOURCE, name, (rt.grid_1d(y.size),),
                  rt.BLOCK, (rt.contig(x), y, argmax, np.int64(y.size))
                  + _window_args(h, w, ho, wo, kernel_size, stride, padding))
    return y, argmax


@native_low
@rt.on_device
def max_pool2d_backward(gy, argmax, x_shape):
    """gx (x_shape): gy scatter-added at argmax."""
    name = _name("max_pool2d_backward", "max_pool2d_backward", gy.dtype)
    low = np.dtype(gy.dtype) in FORMATS
    n, c, h, w = (int(s) for s in x_shape)
    # scatter-add target (zeros are part of the result); float32 for 16-bit gy, rounded once
    gx = rt.xp.zeros((n, c, h, w), np.float32 if low else gy.dtype)
    if gy.size:
        rt.launch(SOURCE, name, (rt.grid_1d(gy.size),),
                  rt.BLOCK, (rt.contig(gy), rt.contig(argmax.astype(np.int64, copy=False)), gx,
                   np.int64(gy.size), np.int32(gy.shape[2] * gy.shape[3]), np.int32(h * w)))
    return gx.astype(gy.dtype) if low else gx


@native_low
@rt.on_device
def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad=True):
    """Window means with zero padding (divisor kH*kW, or only the real elements)."""
    name = _name("avg_pool2d", "avg_pool2d_forward", x.dtype)
    n, c, h, w, ho, wo = _geometry("avg_pool2d", x.shape, kernel_size, stride, padding)
    y = rt.empty((n, c, ho, wo), x.dtype)
    if y.size:
        rt.launch(SOURCE, name, (rt.grid_1d(y.size),),
                  rt.BLOCK, (rt.contig(x), y, np.int64(y.size))
                  + _window_args(h, w, ho, wo, kernel_size, stride, padding)
                  + (np.int32(bool(count_include_pad)),))
    return y


@native_low
@rt.on_device
def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad=True):
    """gx (x_shape): each window spreads gy / divisor over its inputs."""
    name = _name("avg_pool2d_backward", "avg_pool2d_backward", gy.dtype)
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = gy.shape[2], gy.shape[3]
    rt.check_i32("avg_pool2d_backward", plane=max(h * w, ho * wo))
    gx = rt.empty((n, c, h, w), gy.dtype)
    if gx.size:
        if gy.size == 0:
            gx[...] = 0
        else:
            rt.launch(SOURCE, name, (rt.grid_1d(gx.size),), rt.BLOCK,
                      (rt.contig(gy), gx, np.int64(gx.size))
                      + _window_args(h, w, ho, wo, kernel_size, stride, padding)
                      + (np.int32(bool(count_include_pad)),))
    return gx
