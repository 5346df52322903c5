"""The activation family (``csrc/cuda/activation.cu``): ``erf``, ``gelu_forward`` and
``gelu_backward``, elementwise over any shape. float16 computes in float32."""

from __future__ import annotations

import numpy as np

from . import runtime as rt

SOURCE = "activation.cu"


def act_name(kind, ctype, approximate=None):
    tail = () if approximate is None else (approximate == "tanh",)
    return rt.template_name(f"{kind}_kernel", ctype, *tail)


def instances() -> list[str]:
    """Every activation.cu instance the backend may launch."""
    out = []
    for ctype in rt.CTYPES.values():
        out.append(act_name("erf", ctype))
        for kind in ("gelu_forward", "gelu_backward"):
            out += [act_name(kind, ctype, a) for a in ("none", "tanh")]
    return out


def _compute_dtype(x):
    """The dtype the kernels compute x's dtype in (float16 goes through float32)."""
    if x.dtype == np.float16:
        return np.dtype(np.float32)
    rt.ctype("activation", x.dtype)
    return x.dtype


def _elementwise(kind, approximate, x, inputs, n_out):
    """Launch ``kind`` over ``inputs`` (cast to x's compute dtype, broadcast to x's shape and
    made contiguous); returns ``n_out`` new arrays in x's shape and dtype."""
    dtype = _compute_dtype(x)
    arrays = [rt.contig(rt.xp.broadcast_to(a.astype(dtype, copy=False), x.shape))
              for a in inputs]
    outs = [rt.empty(x.shape, dtype) for _ in range(n_out)]
    if x.size:
        rt.launch(SOURCE, act_name(kind, rt.CTYPES[dtype], approximate),
                  (rt.grid_1d(x.size),), rt.BLOCK,
                  tuple(arrays) + tuple(outs) + (np.int64(x.size),))
    return [o.astype(x.dtype, copy=False) for o in outs]


@rt.on_device
def erf(x):
    """The error function, elementwise."""
    return _elementwise("erf", None, x, (x,), 1)[0]


@rt.on_device
def gelu_forward(x, approximate="none"):
    """(y, cdf) with y = x * cdf; cdf = Phi(x) or its tanh approximation."""
    y, cdf = _elementwise("gelu_forward", approximate, x, (x,), 2)
    return y, cdf


@rt.on_device
def gelu_backward(gy, x, cdf, approximate="none"):
    """gx = gy * dGELU/dx, from x and the cdf that forward kept."""
    return _elementwise("gelu_backward", approximate, x, (gy, x, cdf), 1)[0]
