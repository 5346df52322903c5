"""Sorting and running reductions: ``sort argsort topk``, ``cumprod cummax cummin
logcumsumexp``.

Sorting is always stable (equal elements keep their order, also when descending), which is
what PyTorch promises for ``stable=True`` and what its CPU sort does anyway; NaN sorts as the
largest value. The sorted values are ``x`` picked at the sorted indices with ``x[key]``, so
their gradient (first and second order) is the indexing one: each value's gradient goes back
to the element it came from.

The running reductions run as a log-step scan (Hillis-Steele): ``ceil(log2(n))`` whole-array
steps, each combining the array with itself shifted by 1, 2, 4... along ``dim``; no Python
loop over elements, and the same code on every device. ``cumprod`` and ``logcumsumexp`` scan
with recorded ``*`` and ``logaddexp``, so autograd differentiates the scan itself (exact at
zeros, where a ``/ x`` formula would divide by zero, and twice differentiable); ``cumprod``
takes the one-pass ``xp.cumprod`` with a ``/ x`` backward instead where no zero can hurt it
(no gradient needed, or no zero in ``x``). ``cummax`` /
``cummin`` scan the raw values and indices (ties pick the later index, as PyTorch) and
return ``x`` picked at the indices.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor
from ._util import normalize_axis, xp_of
from .elementwise_extra import logaddexp
from .unary import _as_tensor

__all__ = ["sort", "argsort", "msort", "topk", "cumprod", "cummax", "cummin", "logcumsumexp"]

SortResult = namedtuple("SortResult", ["values", "indices"])


def _pick(x: Tensor, dim: int, index) -> Tensor:
    """``x`` at ``index`` (a raw int array shaped like the result) along ``dim``: a recorded
    ``x[key]`` whose other key entries are broadcasting aranges."""
    xp = xp_of(x.data)
    key = []
    for d in range(x.ndim):
        if d == dim:
            key.append(index)
        else:
            shape = [1] * x.ndim
            shape[d] = index.shape[d]
            key.append(xp.arange(index.shape[d]).reshape(shape))
    return x[tuple(key)]


def _stable_argsort(a, axis, descending):
    """Stable argsort along ``axis`` (ties in their original order, ascending or not)."""
    xp = xp_of(a)
    if not descending:
        return xp.argsort(a, axis=axis, kind="stable")
    # sort the reversed array ascending and reverse the result: descending with ties still in
    # their original order (a stable sort of -a would break on ints and NaN)
    n = a.shape[axis]
    idx = xp.argsort(xp.flip(a, axis), axis=axis, kind="stable")
    return (n - 1) - xp.flip(idx, axis)


def _sort_dim(x, dim, op):
    x = _as_tensor(x, op)
    return x, normalize_axis(dim, x.ndim, op) if x.ndim else None


def sort(x, dim=-1, descending=False, stable=False):
    """Sorted values and their indices along ``dim`` (a ``(values, indices)`` pair).

    Always stable; ``stable`` is accepted for PyTorch's signature.

    >>> pydl.sort(pydl.tensor([3.0, 1.0, 2.0])).indices.tolist()
    [1, 2, 0]
    """
    x, d = _sort_dim(x, dim, "sort")
    if d is None:  # a 0-d tensor is its own sort
        return SortResult(x.clone(), Tensor._make(xp_of(x.data).zeros((), dtype=np.int64)))
    idx = _stable_argsort(x.data, d, descending).astype(np.int64, copy=False)
    return SortResult(_pick(x, d, idx), Tensor._make(idx))


def argsort(x, dim=-1, descending=False, stable=False):
    """The indices that sort ``x`` along ``dim`` (stable)."""
    return sort(x, dim, descending, stable).indices


def msort(x):
    """``x`` sorted along its first dim."""
    return sort(x, 0).values


def topk(x, k, dim=-1, largest=True, sorted=True):  # noqa: A002 - PyTorch's names
    """The ``k`` largest (or smallest) values along ``dim`` and their indices, in sorted order
    (ties keep their original order; among equal values at the cut the first ones are kept).

    Does not sort the whole dimension: a partition finds the k-th value, the ``k`` winners are
    picked in index order, and only they are sorted (``O(n + k log k)`` per row)."""
    x, d = _sort_dim(x, dim, "topk")
    n = 1 if d is None else x.shape[d]
    k = int(k)
    if not 0 <= k <= n:
        raise RuntimeError(f"topk: k ({k}) is out of range for a dimension of size {n}")
    if d is None:
        return sort(x)
    idx = _topk_indices(x.data, k, d, largest).astype(np.int64, copy=False)
    return SortResult(_pick(x, d, idx), Tensor._make(idx))


def _topk_indices(a, k, axis, largest):
    """The indices of the top ``k`` along ``axis``, sorted as a stable sort would (NaN largest)."""
    xp = xp_of(a)
    a = xp.moveaxis(a, axis, -1)
    n = a.shape[-1]
    if k == 0 or k == n:  # nothing to cut: the (short) answer is a full stable sort
        idx = _stable_argsort(a, -1, largest)[..., :k]
        return xp.moveaxis(idx, -1, axis)
    # the k-th value of each row (partition puts NaN last, i.e. treats it as the largest)
    pos = n - k if largest else k - 1
    kth = xp.partition(a, pos, axis=-1)[..., pos:pos + 1]
    a_nan, kth_nan = a != a, kth != kth  # (always False for ints)
    if largest:
        beats = (a > kth) | (a_nan & ~kth_nan)
    else:
        beats = (a < kth) | (~a_nan & kth_nan)
    ties = (a == kth) | (a_nan & kth_nan)
    # all strict winners, then the first of the values equal to the k-th one: exactly k a row
    room = k - beats.sum(axis=-1, keepdims=True)
    keep = beats | (ties & (xp.cumsum(ties, axis=-1) <= room))
    chosen = xp.nonzero(keep.reshape(-1, n))[1].reshape(a.shape[:-1] + (k,))
    order = _stable_argsort(xp.take_along_axis(a, chosen, axis=-1), -1, largest)
    idx = xp.take_along_axis(chosen, order, axis=-1)
    return xp.moveaxis(idx, -1, axis)


# -- log-step scans ---------------------------------------------------------------------------
def _shifted_raw(a, axis, s, fill):
    """``a`` shifted by ``s`` along ``axis``, the first ``s`` entries ``fill``."""
    xp = xp_of(a)
    pad_shape = list(a.shape)
    pad_shape[axis] = s
    head = xp.full(pad_shape, fill, dtype=a.dtype)
    body = xp.take(a, xp.arange(a.shape[axis] - s), axis=axis)
    return xp.concatenate([head, body], axis=axis)


def _shifted(t: Tensor, dim, s, fill):
    from ..creation import full
    from .shape import cat, narrow

    pad_shape = list(t.shape)
    pad_shape[dim] = s
    head = full(tuple(pad_shape), fill, dtype=t.dtype, device=t.device)
    return cat([head, narrow(t, dim, 0, t.shape[dim] - s)], dim)


def _scan(t, dim, combine, fill):
    """Inclusive scan of ``combine`` along ``dim`` in ceil(log2 n) steps."""
    n = t.shape[dim]
    shifted = _shifted if isinstance(t, Tensor) else _shifted_raw
    s = 1
    while s < n:
        t = combine(t, shifted(t, dim, s, fill))
        s *= 2
    return t


def _scan_dim(x, dim, op):
    x = _as_tensor(x, op)
    if dim is None:
        raise TypeError(f"{op}: dim must be a single int")
    return x, normalize_axis(dim, x.ndim, op)


class CumProd(Function):
    """``xp.cumprod`` forward; backward ``rev_cumsum(g * y) / x``, which divides by ``x``: only
    used where ``x`` has no zeros (``cumprod`` sends inputs with zeros to the scan)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        ctx.save_for_backward(x)
        return xp_of(x).cumprod(x, axis=axis)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xp = xp_of(x)
        # with create_graph x is a Tensor: y is then recorded (by this Function again)
        y = cumprod(x, ctx.axis) if isinstance(x, Tensor) else xp.cumprod(x, axis=ctx.axis)
        tail = xp.flip(xp.cumsum(xp.flip(g * y, ctx.axis), ctx.axis), ctx.axis)
        return tail / x, None


def cumprod(x, dim, *, dtype=None):
    """Running product along ``dim``; differentiable (twice), also where x has zeros.

    ``xp.cumprod`` (one pass) unless a gradient is needed and ``x`` has a zero: then the
    log-step scan, whose recorded ``*`` differentiates exactly at the zeros."""
    x, d = _scan_dim(x, dim, "cumprod")
    if dtype is not None:
        x = x.to(dtype)
    elif x.dtype.kind in "biu":
        x = x.to(np.int64)
    if x.ndim == 0:
        return x.clone()
    if x.requires_grad and is_grad_enabled() and bool((x.data == 0).any()):
        return _scan(x, d, lambda a, b: a * b, 1)
    return CumProd.apply(x, d)


def logcumsumexp(x, dim):
    """``log(cumsum(exp(x)))`` along ``dim``, without overflow."""
    x, d = _scan_dim(x, dim, "logcumsumexp")
    if x.dtype.kind != "f":
        x = x.float()
    if x.ndim == 0:
        return x.clone()
    return _scan(x, d, logaddexp, -np.inf)


def _cum_extreme(x, dim, largest, op):
    x, d = _scan_dim(x, dim, op)
    if x.ndim == 0:
        return SortResult(x.clone(), Tensor._make(xp_of(x.data).zeros((), dtype=np.int64)))
    a = x.data
    xp = xp_of(a)
    better = xp.maximum if largest else xp.minimum
    running = _scan(a, d, better, _lowest(a.dtype) if largest else _highest(a.dtype))
    shape = [1] * a.ndim
    shape[d] = a.shape[d]
    pos = xp.broadcast_to(xp.arange(a.shape[d]).reshape(shape), a.shape)
    # an element that reaches the running extreme (>=, so ties pick the later one), or a NaN
    # (which then stays the extreme), is where the index moves
    record = (a == running) | (a != a)
    idx = _scan(xp.where(record, pos, 0), d, xp.maximum, 0).astype(np.int64, copy=False)
    return SortResult(_pick(x, d, idx), Tensor._make(idx))


def _lowest(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else np.iinfo(dtype).min


def _highest(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.inf
    return True if dtype.kind == "b" else np.iinfo(dtype).max


def cummax(x, dim):
    """Running maximum along ``dim`` and where it was found (``(values, indices)``)."""
    return _cum_extreme(x, dim, True, "cummax")


def cummin(x, dim):
    """Running minimum along ``dim`` and where it was found (``(values, indices)``)."""
    return _cum_extreme(x, dim, False, "cummin")
