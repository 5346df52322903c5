"""Copies and conversions: dtype casts, device moves, clone, contiguous."""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import backend_of, get_backend
from ..tensor import LOW_PRECISION, Tensor, is_floating_dtype
from ._util import astype

__all__ = ["cast", "to_device", "clone", "contiguous"]


class Cast(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dtype):
        ctx.src = a.dtype
        if dtype in LOW_PRECISION:  # out-of-range values become +-inf, as IEEE rounding says
            with np.errstate(over="ignore"):
                return a.astype(dtype)
        return a.astype(dtype)

    @staticmethod
    def backward(ctx, g):
        return astype(g, ctx.src) if is_floating_dtype(ctx.src) else None, None


class ToDevice(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, device):
        ctx.src = backend_of(a)
        ctx.src_device = _device_of(a)
        return get_backend(device).from_numpy(ctx.src.to_numpy(a), dtype=a.dtype, device=device)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):  # create_graph: a recorded copy back
            return ToDevice.apply(g, ctx.src_device), None
        host = backend_of(g).to_numpy(g)
        return ctx.src.from_numpy(host, dtype=g.dtype, device=ctx.src_device), None


def _device_of(a):
    from ..backend import device_of

    return device_of(a)


class Clone(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        return a.copy()

    @staticmethod
    def backward(ctx, g):
        return g


class ModuleBackwardHook(Function):
    """Identity on a module's tensor inputs; its backward calls the module's full backward
    hooks with all input gradients at once (``state.call``), which may replace them."""

    double_backward = True

    @staticmethod
    def forward(ctx, *arrays, state):
        ctx.state = state
        return tuple(a.copy() for a in arrays)

    @staticmethod
    def backward(ctx, *grads):
        return ctx.state.call(grads)


def cast(t, dtype):
    """``t`` converted to ``dtype``; the gradient flows back between float dtypes."""
    return Cast.apply(t, dtype)


def to_device(t, device):
    """A copy of ``t`` on ``device``; gradients flow back to the source device."""
    return ToDevice.apply(t, device)


def clone(t):
    """A copy of ``t`` that stays in the graph."""
    return Clone.apply(t)


def contiguous(t):
    """``t`` itself if its data is C-contiguous, else a contiguous copy."""
    if t.data.flags.c_contiguous:
        return t
    return Clone.apply(t)
