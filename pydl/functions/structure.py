"""Ops that pick or arrange elements: ``triu tril roll diagonal diag repeat_interleave
unfold meshgrid nonzero``.

Each is composed from recorded ops (``where`` with a constant mask, ``cat``/``narrow``,
``x[key]`` with integer arrays, ``reshape``/``expand``), so its gradients, first and second
order, are those ops' and it runs on every device. ``diagonal`` is a view of ``x`` (the
view machinery of ``views.py``: ``ViewOf`` gives its gradient, first and second order);
``unfold`` returns a copy (PyTorch returns a view: writing into it does not reach ``x``).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..tensor import Tensor
from ._util import normalize_axis, xp_of
from .unary import _as_tensor
from .views import ViewOf, share_if_view

__all__ = ["triu", "tril", "roll", "diagonal", "diag", "repeat_interleave", "unfold",
           "meshgrid", "nonzero"]


def _matrix(x, op):
    x = _as_tensor(x, op)
    if x.ndim < 2:
        raise RuntimeError(f"{op}: expected a tensor with at least 2 dims, got shape {x.shape}")
    return x


def _tri_masked(x, keep):
    from .unary import where

    zero = Tensor._make(xp_of(x.data).zeros((), dtype=x.dtype))
    return where(Tensor._make(keep), x, zero)


def triu(x, diagonal=0):
    """The upper triangle of the last two dims (``j - i >= diagonal``), zeros elsewhere."""
    x = _matrix(x, "triu")
    m, n = x.shape[-2:]
    return _tri_masked(x, ~xp_of(x.data).tri(m, n, int(diagonal) - 1, dtype=bool))


def tril(x, diagonal=0):
    """The lower triangle of the last two dims (``j - i <= diagonal``), zeros elsewhere."""
    x = _matrix(x, "tril")
    m, n = x.shape[-2:]
    return _tri_masked(x, xp_of(x.data).tri(m, n, int(diagonal), dtype=bool))


def roll(x, shifts, dims=None):
    """Shift elements along ``dims`` cyclically (flattened first when ``dims`` is None)."""
    from .shape import cat, narrow

    x = _as_tensor(x, "roll")
    if x.ndim == 0:  # one element: every roll is itself
        normalize_axis(0 if dims is None else dims, 0, "roll")
        return x.clone()
    if dims is None:
        if not isinstance(shifts, numbers.Integral):
            raise RuntimeError("roll: without dims, shifts must be a single int")
        return roll(x.reshape(-1), shifts, 0).reshape(x.shape)
    shifts = (shifts,) if isinstance(shifts, numbers.Integral) else tuple(shifts)
    dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"roll: shifts {shifts} and dims {dims} must have the same length")
    out = x
    for shift, dim in zip(shifts, dims):
        d = normalize_axis(dim, x.ndim, "roll")
        n = x.shape[d]
        s = int(shift) % n if n else 0
        if s:
            out = cat([narrow(out, d, n - s, s), narrow(out, d, 0, n - s)], d)
    return out if out is not x else x.clone()


def diagonal(x, offset=0, dim1=0, dim2=1):
    """The diagonal of the (dim1, dim2) planes, as a new last dim: a view, as in PyTorch
    (an in-place write into it reaches ``x``, and autograd follows the write)."""
    x = _matrix(x, "diagonal")
    d1, d2 = normalize_axis(dim1, x.ndim, "diagonal"), normalize_axis(dim2, x.ndim, "diagonal")
    if d1 == d2:
        raise RuntimeError(f"diagonal: dim1 and dim2 must differ, both are {dim1}")
    offset = int(offset)

    def fn(a):
        return _diagonal_view(a, offset, d1, d2)

    return share_if_view(ViewOf.apply(x, fn), x, fn)


def _diagonal_view(a, offset, d1, d2):
    """``a.diagonal(...)``, writable: NumPy hands the diagonal out read-only, CuPy does not
    (its flags have no ``writeable``); a read-only ``a`` keeps a read-only diagonal."""
    v = a.diagonal(offset, d1, d2)
    if not getattr(v.flags, "writeable", True) and getattr(a.flags, "writeable", True):
        v.flags.writeable = True
    return v


def diag(x, diagonal=0):
    """A 1-D tensor placed on a diagonal of a square matrix, or a matrix's diagonal (1-D).

    >>> pydl.diag(pydl.tensor([1, 2])).tolist()
    [[1, 0], [0, 2]]
    """
    x = _as_tensor(x, "diag")
    k = int(diagonal)
    if x.ndim == 2:
        return globals()["diagonal"](x, k).clone()  # a copy, as torch.diag
    if x.ndim != 1:
        raise RuntimeError(f"diag: expected a 1-D or 2-D tensor, got shape {x.shape}")
    from .unary import where

    n = x.shape[0] + abs(k)
    xp = xp_of(x.data)
    rows, cols = xp.arange(n)[:, None], xp.arange(n)[None, :]
    on = (cols - rows) == k
    src = xp.clip(xp.minimum(rows, cols), 0, max(x.shape[0] - 1, 0))  # element on (i, i + k)
    if x.shape[0] == 0:
        return Tensor._make(xp.zeros((n, n), dtype=x.dtype))
    zero = Tensor._make(xp.zeros((), dtype=x.dtype))
    return where(Tensor._make(on), x[src], zero)


def repeat_interleave(x, repeats=None, dim=None, *, output_size=None):
    """Repeat each element (or slice along ``dim``) ``repeats`` times, in place order:
    ``[1, 2] -> [1, 1, 2, 2]``. ``repeats`` is an int or a 1-D tensor of counts; with no
    ``repeats``, ``x`` holds the counts and the result repeats their positions."""
    x = _as_tensor(x, "repeat_interleave")
    xp = xp_of(x.data)
    if repeats is None:  # x holds the counts
        counts = np.asarray(x).reshape(-1)
        _check_counts(counts)
        return Tensor._make(xp.asarray(np.repeat(np.arange(counts.shape[0]), counts),
                                       dtype=np.int64))
    if dim is None:
        x, d = x.reshape(-1), 0
    else:
        x = x.reshape(1) if x.ndim == 0 else x
        d = normalize_axis(dim, x.ndim, "repeat_interleave")
    n = x.shape[d]
    counts = np.asarray(repeats).reshape(-1)  # the counts on the host: they size the output
    if counts.shape[0] not in (1, n):
        raise RuntimeError(f"repeat_interleave: repeats has {counts.shape[0]} entries for a "
                           f"dimension of size {n}")
    _check_counts(counts)
    index = xp.asarray(np.repeat(np.arange(n), counts if counts.shape[0] == n else counts[0]))
    return x[(slice(None),) * d + (index,)]


def _check_counts(counts):
    if counts.dtype.kind not in "iu":
        raise RuntimeError(f"repeat_interleave: repeats must be integers, got {counts.dtype}")
    if counts.size and counts.min() < 0:
        raise RuntimeError("repeat_interleave: repeats must be non-negative")


def unfold(x, dimension, size, step):
    """Tensor.unfold: every window of ``size`` elements along ``dimension``, ``step`` apart,
    as a new last dim (a copy). ``(5,).unfold(0, 2, 1)`` has shape (4, 2)."""
    x = _as_tensor(x, "unfold")
    if x.ndim == 0:
        x = x.reshape(1)
    d = normalize_axis(dimension, x.ndim, "unfold")
    n, size, step = x.shape[d], int(size), int(step)
    if size < 0 or size > n:
        raise RuntimeError(f"unfold: size {size} is out of range for dimension {d} of size {n}")
    if step <= 0:
        raise RuntimeError(f"unfold: step must be positive, got {step}")
    xp = xp_of(x.data)
    windows = (n - size) // step + 1
    index = xp.arange(windows)[:, None] * step + xp.arange(size)[None, :]
    out = x[(slice(None),) * d + (index,)]  # (..., windows, size, ...)
    return out.movedim(d + 1, -1)


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-D tensors: output ``i`` varies along dim ``i`` (``'ij'``) or,
    with ``indexing='xy'``, the first two swapped (NumPy's default)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = [_as_tensor(t, "meshgrid") for t in tensors]
    for i, t in enumerate(ts):
        if t.ndim > 1:
            raise RuntimeError(f"meshgrid: expected 0-D or 1-D tensors, got shape {t.shape} "
                               f"at position {i}")
    ts = [t.reshape(-1) for t in ts]
    order = list(range(len(ts)))
    if indexing == "xy" and len(ts) >= 2:
        order[0], order[1] = 1, 0
    shape = tuple(ts[i].shape[0] for i in order)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[order.index(i)] = -1
        out.append(t.reshape(*view).expand(*shape))
    return tuple(out)


def nonzero(x, *, as_tuple=False):
    """The indices of the non-zero elements: an int64 (n, ndim) tensor, or with ``as_tuple``
    one 1-D tensor per dim."""
    x = _as_tensor(x, "nonzero")
    xp = xp_of(x.data)
    a = x.data if x.ndim else x.data.reshape(1)
    idx = [Tensor._make(i.astype(np.int64)) for i in xp.nonzero(a)]
    if as_tuple:
        return tuple(idx)
    return Tensor._make(xp.stack([i.data for i in idx], axis=1).reshape(-1, x.ndim)
                        if x.ndim else xp.zeros((int(idx[0].data.shape[0]), 0), dtype=np.int64))
