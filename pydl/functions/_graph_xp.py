"""The array-module answer for Tensors: what ``xp_of(tensor)`` returns.

Backward methods are written once against a NumPy-style API (``xp.where``, ``xp.exp``,
``x.reshape``, ``x.sum(axis=..., keepdims=...)``). On the first-order path they get raw
arrays and ``xp`` is numpy or cupy; with ``create_graph`` the engine hands them Tensors, and
``xp_of`` answers this namespace, whose functions are pydl's recorded ops. It holds only the
names backward methods use; any other name raises ``AttributeError`` instead of falling
through to NumPy (which would silently detach the tensor from the graph).
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor


def _t(x, like):
    """``x`` as a Tensor on ``like``'s device (arrays and numbers become constants)."""
    if isinstance(x, Tensor):
        return x
    dtype = getattr(x, "dtype", None)  # a CuPy array refuses np.asarray
    kind = (dtype if dtype is not None else np.asarray(x).dtype).kind
    return Tensor(x, device=like.device, dtype=like.dtype if kind == "f" else None)


class GraphNamespace:
    """NumPy-named functions over Tensors for one device; each call is a recorded op."""

    nan, inf, pi = np.nan, np.inf, np.pi
    float32, float64, bool_ = np.float32, np.float64, np.bool_

    def __init__(self, device):
        self.device = device

    def __repr__(self):
        return f"GraphNamespace({self.device})"

    # -- creation (constants) -------------------------------------------------------------
    def zeros(self, shape, dtype=np.float32):
        from .. import creation

        return creation.zeros(*_shape_args(shape), dtype=dtype, device=self.device)

    def ones(self, shape, dtype=np.float32):
        from .. import creation

        return creation.ones(*_shape_args(shape), dtype=dtype, device=self.device)

    def full(self, shape, value, dtype=np.float32):
        from .. import creation

        return creation.full(tuple(_shape_args(shape)), value, dtype=dtype, device=self.device)

    def zeros_like(self, x):
        from .. import creation

        return creation.zeros_like(x)

    def ones_like(self, x):
        from .. import creation

        return creation.ones_like(x)

    # -- elementwise: exp, log, sqrt, sin, cos, tanh, abs, sign, isfinite (set below) ----
    def maximum(self, a, b):
        from .unary import maximum

        return maximum(a, b)

    def minimum(self, a, b):
        from .unary import minimum

        return minimum(a, b)

    def clip(self, x, lo, hi):
        from .unary import clamp

        return clamp(x, lo, hi)

    def matmul(self, a, b):
        from .matmul import matmul

        like = a if isinstance(a, Tensor) else b
        return matmul(_t(a, like), _t(b, like))

    def where(self, cond, a, b):
        from .unary import where

        like = next(v for v in (a, b, cond) if isinstance(v, Tensor))
        cond = _t(cond, like)
        if not isinstance(a, Tensor) and not isinstance(b, Tensor):
            a = _t(a, like)
        return where(cond, a, b)

    # -- shapes and reductions ---------------------------------------------------------
    def sum(self, x, axis=None, keepdims=False):
        return x.sum(axis=axis, keepdims=keepdims)

    def broadcast_to(self, x, shape):
        return x.broadcast_to(*shape)

    def expand_dims(self, x, axis):
        return x.unsqueeze(axis)

    def moveaxis(self, x, source, destination):
        return x.movedim(source, destination)

    def transpose(self, x, axes):
        return x.permute(*axes)

    def flip(self, x, axis):
        from .shape import flip

        return flip(x, *(axis if isinstance(axis, (tuple, list)) else (axis,)))

    def cumsum(self, x, axis):
        return x.cumsum(dim=axis)

    def concatenate(self, xs, axis=0):
        from .shape import cat

        return cat(list(xs), dim=axis)

    def stack(self, xs, axis=0):
        from .shape import stack

        return stack(list(xs), dim=axis)

    def copy(self, x):
        return x.clone()


def _method(name):
    def call(self, x):
        return getattr(x, name)()

    call.__name__ = name
    call.__doc__ = f"``x.{name}()``: pydl's recorded op."
    return call


for _name in ("exp", "log", "log1p", "sqrt", "sin", "cos", "tanh", "abs", "sign", "isfinite",
              "sinh", "cosh", "floor", "trunc"):
    setattr(GraphNamespace, _name, _method(_name))
del _name


def _shape_args(shape):
    return tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)


_namespaces = {}


def namespace_of(t: Tensor) -> GraphNamespace:
    """The (cached) namespace for ``t``'s device."""
    dev = t.device
    ns = _namespaces.get(dev)
    if ns is None:
        ns = _namespaces[dev] = GraphNamespace(dev)
    return ns
