"""Helpers shared by the Functions: operand coercion, broadcasting, axis handling."""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import same_device
from ..backend import backend_of
from ..dtypes import category, result_type
from ..tensor import Tensor, is_floating_dtype

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
    """Coerce the operands of a binary elementwise op to their common dtype.

    PyTorch's promotion (``pydl.result_type``): tensors of different dtypes meet in the wider
    one (``float32 + float64 -> float64``, ``int + float -> float``); a 0-d tensor or a
    Python number only lifts the category (``int32 tensor + 2.5 -> float32``, ``float32
    tensor * float64 0-d tensor -> float32``). Python numbers stay numbers (NumPy computes
    them in the tensor's dtype). Tensors on different devices raise naming both devices.
    Returns (a, b), at least one a Tensor.
    """
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if not ta and not tb:
        raise TypeError(f"{op}: expected at least one tensor, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    if not (ta and tb):
        t = a if ta else b
        other = _coerce_scalar(b if ta else a, t, op)
        if not isinstance(other, Tensor):  # a Python number: the common, fast case
            common = _with_number(t.dtype, other)
            if common is not t.dtype:
                t = t.to(common)
            return (t, other) if ta else (other, t)
        a, b = (t, other) if ta else (other, t)
    elif type(a.data) is not np.ndarray or type(b.data) is not np.ndarray:
        same_device(op, a, b)
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype:
        return a, b
    common = result_type(a, b)
    if isinstance(a, Tensor) and a.dtype != common:
        a = a.to(common)
    if isinstance(b, Tensor) and b.dtype != common:
        b = b.to(common)
    return a, b


_NUMBER_RANK = {bool: (0, np.dtype(np.bool_)), int: (1, np.dtype(np.int64)),
                float: (2, np.dtype(np.float32))}


def _with_number(dtype, number):
    """``result_type(tensor of dtype, number)``: the tensor's dtype unless the number is of a
    higher category (then that category's default: int64, or float32)."""
    rank, default = _NUMBER_RANK[type(number)]
    return default if rank > category(dtype) else dtype


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
