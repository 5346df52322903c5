"""Helpers shared by the Functions: operand coercion, broadcasting, axis handling."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import autocast_active, same_device
from ..backend import backend_of
from ..tensor import Tensor, dtype_name, is_floating_dtype

_FLOAT_KINDS = "f"


def xp_of(array):
    """The array module (numpy or cupy) that owns ``array``.

    For a Tensor (a backward running under ``create_graph``) it is the namespace of
    recorded ops in ``_graph_xp``, never NumPy: NumPy would silently detach the tensor.
    """
    if isinstance(array, Tensor):
        from ._graph_xp import namespace_of

        return namespace_of(array)
    return backend_of(array).xp


def astype(x, dtype):
    """``x`` in ``dtype`` (no copy when it already is), for an array or a Tensor."""
    if isinstance(x, Tensor):
        return x if x.dtype == dtype else x.to(dtype)
    return x.astype(dtype, copy=False)


def copy(x):
    """A fresh copy of an array, or a recorded clone of a Tensor."""
    return x.clone() if isinstance(x, Tensor) else x.copy()


def sum_to_shape(grad, shape):
    """Reduce a broadcast gradient back to ``shape`` (undo NumPy broadcasting)."""
    shape = tuple(shape)
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and grad.shape[i + lead] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def binary_operands(a, b, op: str):
    """Coerce the operands of a binary elementwise op.

    Tensors keep their dtype; Python numbers take the tensor's dtype (an int or bool tensor
    meeting a float number becomes float32, as in PyTorch). Two tensors of different float
    dtypes are an error that names both; an int tensor meeting a float tensor is promoted.
    Returns (a, b), at least one a Tensor.
    """
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if not ta and not tb:
        raise TypeError(f"{op}: expected at least one tensor, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if ta and tb:
        da, db = a.dtype, b.dtype
        if da != db:
            fa, fb = is_floating_dtype(da), is_floating_dtype(db)
            if fa and fb:
                if autocast_active():  # Function.apply promotes them to the widest
                    if type(a.data) is not np.ndarray or type(b.data) is not np.ndarray:
                        same_device(op, a, b)
                    return a, b
                raise TypeError(
                    f"{op}: dtypes {dtype_name(da)} and {dtype_name(db)} differ; convert one "
                    "with .to(dtype) first"
                )
            if fa:
                b = b.to(da)
            elif fb:
                a = a.to(db)
            else:  # two integer/bool dtypes: the wider one
                common = np.promote_types(da, db)
                a, b = a.to(common), b.to(common)
        if type(a.data) is not np.ndarray or type(b.data) is not np.ndarray:
            same_device(op, a, b)
        return a, b
    t, other = (a, b) if ta else (b, a)
    other = _coerce_scalar(other, t, op)
    if isinstance(other, Tensor):
        return binary_operands(a if ta else other, other if ta else b, op)
    if not is_floating_dtype(t.dtype) and isinstance(other, float):
        t = t.to(np.float32)
    elif t.dtype.kind == "b" and isinstance(other, numbers.Integral) and \
            not isinstance(other, bool):
        t = t.to(np.int64)
    return (t, other) if ta else (other, t)


def _coerce_scalar(value, like: Tensor, op: str):
    if isinstance(value, (bool, numbers.Integral)):
        return int(value) if not isinstance(value, bool) else value
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (np.ndarray, list, tuple)) or type(value).__module__.startswith("cupy"):
        return Tensor(value, device=like.device,
                      dtype=like.dtype if np.asarray(value).dtype.kind == "f"
                      or is_floating_dtype(like.dtype) else None)
    raise TypeError(f"{op}: unsupported operand of type {type(value).__name__}")


def as_tensor_like(value, like: Tensor) -> Tensor:
    """``value`` as a tensor on ``like``'s device and in its dtype."""
    if isinstance(value, Tensor):
        return value
    return Tensor(value, dtype=like.dtype, device=like.device)


def normalize_axis(axis, ndim: int, op: str):
    """Axis (int, tuple or None) made non-negative; an out-of-range axis names the op."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        return tuple(normalize_axis(a, ndim, op) for a in axis)
    axis = int(axis)
    lim = max(ndim, 1)
    if not -lim <= axis < lim:
        raise IndexError(f"{op}: dimension {axis} is out of range for a tensor of {ndim} dims")
    return axis % lim
