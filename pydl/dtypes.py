"""Type promotion, PyTorch's rules, in one place: ``promote_types`` and ``result_type``.

Every op that combines dtypes asks here (``functions._util.binary_operands`` for the
elementwise ops, ``cat``/``stack``, ``where``, ``clamp``...), so the rule is the same on every
device.

The rules (``torch.promote_types`` / ``torch.result_type``):

- dtypes fall in categories, ``bool < integer < floating``; two dtypes of different
  categories give the higher category's dtype (``int64 + float16 -> float16``); within a
  category the wider one (``int32 + int64 -> int64``, ``float32 + float64 -> float64``), except
  ``float16 + bfloat16 -> float32`` (neither holds the other).
- ``result_type`` of several operands sorts them into three groups: tensors with at least one
  dim, 0-d tensors, and Python numbers (``bool``, ``int`` as int64, ``float`` as the default
  float32). A 0-d tensor or a number changes the result only when its category is higher
  than every dimensioned tensor's: ``float32 tensor * float64 0-d tensor -> float32``,
  ``int32 tensor + 2.5 -> float32``, ``int32 tensor + 7 -> int32``.

bfloat16 is the ``ml_dtypes.bfloat16`` NumPy dtype; without ml_dtypes it is absent from the
lattice (``BFLOAT16`` is None).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np

__all__ = ["promote_types", "result_type"]

try:  # bfloat16 for NumPy arrays; optional
    import ml_dtypes as _ml_dtypes

    BFLOAT16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes is in the default install
    BFLOAT16 = None

_BOOL, _INT, _FLOAT = 0, 1, 2
_DEFAULT_FLOAT = np.dtype(np.float32)


def _as_np_dtype(dtype) -> np.dtype:
    if dtype is float:
        return _DEFAULT_FLOAT
    if dtype is int:
        return np.dtype(np.int64)
    if dtype is bool:
        return np.dtype(np.bool_)
    if isinstance(dtype, str):
        from .tensor import as_dtype

        return as_dtype(dtype)
    return np.dtype(dtype)


def category(dtype) -> int:
    """0 for bool, 1 for integers, 2 for floating dtypes (bfloat16 included)."""
    known = _CATEGORIES.get(dtype)
    if known is not None:
        return known
    dtype = _as_np_dtype(dtype)
    if dtype == BFLOAT16 or dtype.kind == "f":
        return _FLOAT
    if dtype.kind in "iu":
        return _INT
    if dtype.kind == "b":
        return _BOOL
    raise TypeError(f"dtype {dtype} has no place in pydl's type promotion")


_CATEGORIES = {np.dtype(t): c for t, c in ((np.bool_, _BOOL), (np.int32, _INT), (np.int64, _INT),
                                             (np.float16, _FLOAT), (np.float32, _FLOAT),
                                             (np.float64, _FLOAT))}
if BFLOAT16 is not None:
    _CATEGORIES[BFLOAT16] = _FLOAT


def promote_types(a, b) -> np.dtype:
    """The smallest dtype both ``a`` and ``b`` convert to, as ``torch.promote_types``.

    >>> pydl.promote_types(pydl.float32, pydl.float64)
    dtype('float64')
    >>> pydl.promote_types(pydl.int64, pydl.float16)
    dtype('float16')
    """
    return _promote(_as_np_dtype(a), _as_np_dtype(b))


@functools.lru_cache(maxsize=256)
def _promote(a: np.dtype, b: np.dtype) -> np.dtype:
    if a == b:
        return a
    ca, cb = category(a), category(b)
    if ca != cb:
        return a if ca > cb else b
    if BFLOAT16 is not None and BFLOAT16 in (a, b):
        other = b if a == BFLOAT16 else a
        return np.dtype(np.float32) if other.itemsize <= 2 else other
    return np.promote_types(a, b)


_Tensor = None  # pydl.Tensor, set on first use (pydl.tensor imports this module's users)


def _operand_dtype(x):
    """(group, dtype) of one operand: group 0 dimensioned tensor, 1 0-d tensor, 2 number."""
    global _Tensor
    if _Tensor is None:
        from .tensor import Tensor as _Tensor
    if isinstance(x, _Tensor):
        return (0 if x.data.ndim else 1), x.data.dtype
    if isinstance(x, (bool, np.bool_)):
        return 2, np.dtype(np.bool_)
    if isinstance(x, numbers.Integral):
        return 2, np.dtype(np.int64)
    if isinstance(x, numbers.Real):
        return 2, _DEFAULT_FLOAT
    if hasattr(x, "dtype") and hasattr(x, "ndim"):  # a raw array
        return (0 if x.ndim else 1), np.dtype(x.dtype)
    raise TypeError(f"result_type: unsupported operand of type {type(x).__name__}")


def _combine(higher, lower):
    """torch's combine_categories: ``lower`` counts only if its category is higher."""
    if higher is None:
        return lower
    if lower is None:
        return higher
    ch, cl = category(higher), category(lower)
    if ch == _FLOAT:
        return higher
    if ch == _BOOL or cl == _FLOAT or cl > ch:
        return promote_types(higher, lower)
    return higher


def result_type(*operands) -> np.dtype:
    """The dtype an elementwise op on ``operands`` (Tensors and Python numbers) computes in,
    as ``torch.result_type``.

    >>> pydl.result_type(pydl.ones(3, dtype=pydl.int32), 2.5)
    dtype('float32')
    >>> pydl.result_type(pydl.ones(3), pydl.tensor(1.0, dtype=pydl.float64))
    dtype('float32')
    """
    if not operands:
        raise TypeError("result_type: expected at least one operand")
    groups = [None, None, None]
    for x in operands:
        g, dt = _operand_dtype(x)
        groups[g] = dt if groups[g] is None else promote_types(groups[g], dt)
    return _combine(groups[0], _combine(groups[1], groups[2]))
