"""Reductions: ``sum mean prod var std logsumexp norm max min amax amin argmax argmin all any``
and the scan ``cumsum``.

Dimensions are given as PyTorch does (``dim=``, ``keepdim=``) or as NumPy does (``axis=``,
``keepdims=``): an int, a tuple of ints, or None for all of them. Positional use follows
PyTorch: ``x.sum(1, True)``.

Gradient conventions (as PyTorch): a full ``max``/``min`` (and ``amax``/``amin``, and the
inf-norm) shares the gradient evenly among tied maxima; ``max(x, dim)`` returns
``(values, indices)`` and routes the gradient to the returned index only.

Numerical care: ``var``/``std`` take the mean first and then the mean of squared
deviations (two-pass, with the rounding-error correction of Chan, Golub and LeVeque), so data
far from zero (mean 1e4, std 1e-2) keeps its precision. ``logsumexp`` subtracts the maximum;
a slice that is all ``-inf`` gives ``-inf`` and a zero gradient instead of NaN.
"""

from __future__ import annotations

import builtins
import collections
import math
import numbers

import numpy as np

from ..autograd import Function
from ..tensor import Tensor, dtype_name, is_floating_dtype
from ._util import astype, copy, normalize_axis, xp_of
from .unary import _as_tensor

__all__ = [
    "sum", "mean", "prod", "var", "std", "logsumexp", "norm", "max", "min", "amax", "amin",
    "argmax", "argmin", "all", "any", "cumsum",
]


_max_result = collections.namedtuple("max", ["values", "indices"])
_min_result = collections.namedtuple("min", ["values", "indices"])


# -- argument handling -------------------------------------------------------------------------
def _axes(x, dim, axis, op):
    """The reduced axes as a sorted tuple; None or () means all of them."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: give either dim or axis, not both")
        dim = axis
    ndim = x.ndim
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    if isinstance(dim, Tensor):
        dim = int(dim)
    if not isinstance(dim, (numbers.Integral, tuple, list)):
        raise TypeError(f"{op}: dim must be an int, a tuple of ints or None, got "
                        f"{type(dim).__name__}")
    axes = normalize_axis(dim, ndim, op)
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: dim {tuple(dim)} names a dimension more than once")
    if ndim == 0:
        return ()
    return tuple(sorted(axes))


def _keep(keepdim, keepdims):
    return bool(keepdim if keepdims is None else keepdims)


def _count(shape, axes) -> int:
    return math.prod(shape[a] for a in axes)


def _kept_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _reduced_shape(shape, axes, keepdim):
    if keepdim:
        return _kept_shape(shape, axes)
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _expand(g, shape, axes, keepdim):
    """Broadcast the gradient of a reduction back to the input's shape (a fresh array)."""
    xp = xp_of(g)
    if not keepdim:
        g = g.reshape(_kept_shape(shape, axes))
    return copy(xp.broadcast_to(g, shape))


def _keepdims_view(out, shape, axes, keepdim):
    return out if keepdim else out.reshape(_kept_shape(shape, axes))


def _need_float(x, op):
    if not is_floating_dtype(x.dtype):
        raise RuntimeError(
            f"{op}(): input dtype must be floating point, got {dtype_name(x.dtype)}; convert it "
            f"with .float() (or pass dtype=pydl.float32)"
        )


def _need_nonempty(x, axes, op):
    if _count(x.shape, axes) == 0 and x.ndim > 0:
        raise RuntimeError(
            f"{op}(): cannot reduce over a dimension of size 0 (input shape {x.shape}); the "
            "operation has no identity"
        )


def _int_accumulator(x, dtype):
    """PyTorch's rule: integer and bool sums/products accumulate in int64 unless told."""
    from ..tensor import as_dtype

    if dtype is not None:
        dt = as_dtype(dtype)
        return x if x.dtype == dt else x.to(dt)
    if x.dtype.kind in "biu" and x.dtype != np.int64:
        return x.to(np.int64)
    return x


# -- Functions ---------------------------------------------------------------------------------
class Sum(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdim):
        ctx.meta = (a.shape, axes, keepdim)
        return xp_of(a).sum(a, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        shape, axes, keepdim = ctx.meta
        return _expand(g, shape, axes, keepdim), None, None


class Mean(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdim):
        xp = xp_of(a)
        n = _count(a.shape, axes)
        ctx.meta = (a.shape, axes, keepdim, n)
        total = xp.sum(a, axis=axes, keepdims=keepdim)
        if n == 0:
            return xp.full(total.shape, xp.nan, dtype=a.dtype)
        return total * (1.0 / n)

    @staticmethod
    def backward(ctx, g):
        shape, axes, keepdim, n = ctx.meta
        return _expand(g * (1.0 / builtins.max(n, 1)), shape, axes, keepdim), None, None


class Var(Function):
    """Variance (``root=False``) or standard deviation (``root=True``), two-pass."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdim, correction, root):
        xp = xp_of(a)
        n = _count(a.shape, axes)
        denom = n - correction
        ctx.meta = (a.shape, axes, keepdim, n, denom, root)
        if n == 0:
            ctx.save_for_backward(a)
            return xp.full(_reduced_shape(a.shape, axes, keepdim), xp.nan, dtype=a.dtype)
        dev = a - xp.sum(a, axis=axes, keepdims=True) * (1.0 / n)
        ssq = xp.sum(dev * dev, axis=axes, keepdims=keepdim)
        drift = xp.sum(dev, axis=axes, keepdims=keepdim)  # ~0; corrects the mean's rounding
        ssq = xp.maximum(ssq - drift * drift * (1.0 / n), 0)
        if denom > 0:
            out = ssq * (1.0 / denom)
        else:  # as PyTorch: inf where there is spread, NaN where there is none
            out = xp.where(ssq > 0, xp.inf, xp.nan).astype(a.dtype)
        if root:
            out = xp.sqrt(out)
            ctx.save_for_backward(a, out)
        else:
            ctx.save_for_backward(a)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = (ctx.saved_tensors + (None,))[:2]  # out is saved for std only
        shape, axes, keepdim, n, denom, root = ctx.meta
        xp = xp_of(a)
        if n == 0:
            return xp.zeros_like(a), None, None, None, None
        if denom <= 0:
            return xp.full(a.shape, xp.nan, dtype=a.dtype), None, None, None, None
        dev = a - xp.sum(a, axis=axes, keepdims=True) * (1.0 / n)
        if root:  # d std = d var / (2 std); zero where std is zero (as PyTorch)
            std = _keepdims_view(out, shape, axes, keepdim)
            scale = xp.where(std > 0, 1.0 / (denom * xp.where(std > 0, std, 1)), 0)
            scale = astype(scale, a.dtype)
        else:
            scale = 2.0 / denom
        return dev * scale * _expand(g, shape, axes, keepdim), None, None, None, None


class Std(Var):
    """Standard deviation: ``Var`` with ``root=True`` (its own name in ``grad_fn``)."""

    double_backward = True


class LogSumExp(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdim):
        xp = xp_of(a)
        ctx.meta = (a.shape, axes, keepdim)
        if a.size == 0:
            out = xp.full(_reduced_shape(a.shape, axes, keepdim), -xp.inf, dtype=a.dtype)
            ctx.save_for_backward(a, out)
            return out
        m = xp.max(a, axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)  # all -inf (or +inf) slices: shift by 0
        s = xp.sum(xp.exp(a - m), axis=axes, keepdims=True)
        positive = s > 0
        lse = xp.where(positive, xp.log(xp.where(positive, s, 1)), -xp.inf) + m
        out = lse if keepdim else lse.reshape(_reduced_shape(a.shape, axes, False))
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        shape, axes, keepdim = ctx.meta
        xp = xp_of(a)
        lse = _keepdims_view(out, shape, axes, keepdim)
        lse = xp.where(xp.isfinite(lse), lse, 0)  # -inf: every exp(a - 0) is 0, so no NaN
        return xp.exp(a - lse) * _expand(g, shape, axes, keepdim), None, None


class Prod(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, axis, keepdim):
        ctx.save_for_backward(a)
        ctx.meta = (axis, keepdim)
        axes = None if axis is None else (axis,)
        return xp_of(a).prod(a, axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        axis, keepdim = ctx.meta
        if isinstance(g, Tensor):
            return _prod_backward_graph(a, g, axis, keepdim), None, None
        xp = xp_of(a)
        # d prod / d a_i = (product left of i) * (product right of i): exact with zeros
        b = a.reshape(-1) if axis is None else xp.moveaxis(a, axis, -1)
        ones = xp.ones(b.shape[:-1] + (1,), dtype=a.dtype)
        left = xp.concatenate([ones, xp.cumprod(b, axis=-1)[..., :-1]], axis=-1)
        right = xp.flip(xp.cumprod(xp.flip(b, axis=-1), axis=-1), axis=-1)
        right = xp.concatenate([right[..., 1:], ones], axis=-1)
        others = left * right
        others = others.reshape(a.shape) if axis is None else xp.moveaxis(others, -1, axis)
        axes = tuple(range(a.ndim)) if axis is None else (axis,)
        return others * _expand(g, a.shape, axes, keepdim), None, None


def _prod_backward_graph(a, g, axis, keepdim):
    """Prod's backward as recorded ops: running products from the left and the right along
    the axis (one multiply per element: no cumprod op is needed, and zeros stay exact)."""
    from .shape import stack

    b = a.reshape(-1) if axis is None else a.movedim(axis, -1)
    cols = b.unbind(-1) if b.ndim > 1 else b.unbind(0)
    n = len(cols)
    ones = xp_of(cols[0]).ones_like(cols[0]) if n else None  # a constant
    left, right = [ones], [ones]
    for k in range(1, n):
        left.append(left[-1] * cols[k - 1])
        right.append(right[-1] * cols[n - k])
    others = stack([lt * rt for lt, rt in zip(left, right[::-1])], dim=-1) if n else b
    others = others.reshape(a.shape) if axis is None else others.movedim(-1, axis)
    axes = tuple(range(a.ndim)) if axis is None else (axis,)
    return others * _expand(g, a.shape, axes, keepdim)


class Amax(Function):
    """max/min over several axes; ties share the gradient evenly (as PyTorch's amax)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, axes, keepdim, largest):
        xp = xp_of(a)
        out = (xp.max if largest else xp.min)(a, axis=axes, keepdims=keepdim)
        ctx.save_for_backward(a, out)
        ctx.meta = (axes, keepdim)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        axes, keepdim = ctx.meta
        xp = xp_of(a)
        hit = a == _keepdims_view(out, a.shape, axes, keepdim)
        count = xp.maximum(xp.sum(hit, axis=axes, keepdims=True), 1)
        share = astype(hit, a.dtype) / count
        return astype(share * _expand(g, a.shape, axes, keepdim), a.dtype), None, None, None


class MaxDim(Function):
    """max/min along one axis returning (values, indices); gradient to the index only."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, axis, keepdim, largest):
        xp = xp_of(a)
        ctx.meta = (a.shape, axis, keepdim)
        if a.ndim == 0:
            idx = xp.zeros((), dtype=np.int64)
            ctx.idx = idx
            return a.copy(), idx
        idx = (xp.argmax if largest else xp.argmin)(a, axis=axis)
        idx = xp.expand_dims(idx.astype(np.int64, copy=False), axis)
        values = xp.take_along_axis(a, idx, axis)
        ctx.idx = idx
        if not keepdim:
            values, idx = values.squeeze(axis), idx.squeeze(axis)
        ctx.mark_non_differentiable(idx)
        return values, idx

    @staticmethod
    def backward(ctx, g, _g_indices):
        shape, axis, keepdim = ctx.meta
        xp = xp_of(g)
        if len(shape) == 0:
            return copy(g), None, None, None
        if not keepdim:
            g = xp.expand_dims(g, axis)
        iota_shape = [1] * len(shape)
        iota_shape[axis] = shape[axis]
        iota = xp_of(ctx.idx).arange(shape[axis]).reshape(iota_shape)
        return astype(xp.where(iota == ctx.idx, g, 0), g.dtype), None, None, None


class Cumsum(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, axis):
        ctx.axis = axis
        if a.ndim == 0:
            return a.copy()
        return xp_of(a).cumsum(a, axis=axis)

    @staticmethod
    def backward(ctx, g):
        xp = xp_of(g)
        if g.ndim == 0:
            return copy(g), None
        ax = ctx.axis
        return xp.flip(xp.cumsum(xp.flip(g, axis=ax), axis=ax), axis=ax), None


class Norm(Function):
    """Vector p-norm over ``axes`` (p = 2, 1, inf, -inf, 0 or any other real)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, p, axes, keepdim):
        xp = xp_of(a)
        ctx.meta = (p, axes, keepdim)
        mag = xp.abs(a)
        if p == 2:
            out = xp.sqrt(xp.sum(a * a, axis=axes, keepdims=keepdim))
        elif p == 1:
            out = xp.sum(mag, axis=axes, keepdims=keepdim)
        elif p == math.inf:
            out = xp.max(mag, axis=axes, keepdims=keepdim)
        elif p == -math.inf:
            out = xp.min(mag, axis=axes, keepdims=keepdim)
        elif p == 0:
            out = xp.sum(a != 0, axis=axes, keepdims=keepdim).astype(a.dtype)
        else:
            out = xp.sum(mag ** p, axis=axes, keepdims=keepdim) ** (1.0 / p)
        ctx.save_for_backward(a, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        p, axes, keepdim = ctx.meta
        xp = xp_of(a)
        gx = _expand(g, a.shape, axes, keepdim)
        nrm = _keepdims_view(out, a.shape, axes, keepdim)
        if p == 0:
            return xp.zeros_like(a), None, None, None
        if p == 1:
            return xp.sign(a) * gx, None, None, None
        if p in (math.inf, -math.inf):
            hit = xp.abs(a) == nrm
            count = xp.maximum(xp.sum(hit, axis=axes, keepdims=True), 1)
            return astype(xp.sign(a) * hit / count * gx, a.dtype), None, None, None
        safe = xp.where(nrm > 0, nrm, 1)
        if p == 2:
            scale = a / safe
        else:
            scale = xp.sign(a) * (xp.abs(a) / safe) ** (p - 1)
        return xp.where(nrm > 0, scale, 0) * gx, None, None, None


# -- public wrappers ---------------------------------------------------------------------------
def sum(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):  # noqa: A001
    """Sum over ``dim`` (all dims by default); int and bool tensors sum to int64."""
    x = _int_accumulator(_as_tensor(x, "sum"), dtype)
    return Sum.apply(x, _axes(x, dim, axis, "sum"), _keep(keepdim, keepdims))


def mean(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Arithmetic mean over ``dim``; integer tensors are refused, as in PyTorch."""
    x = _as_tensor(x, "mean")
    if dtype is not None:
        x = _int_accumulator(x, dtype)
    _need_float(x, "mean")
    return Mean.apply(x, _axes(x, dim, axis, "mean"), _keep(keepdim, keepdims))


def _correction(unbiased, correction, op):
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}: give either unbiased or correction, not both")
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def _var(x, dim, unbiased, keepdim, correction, axis, keepdims, ddof, root, op):
    x = _as_tensor(x, op)
    if isinstance(dim, bool):  # legacy positional form var(x, unbiased)
        dim, unbiased = None, dim
    if ddof is not None:  # NumPy's spelling
        correction = ddof if correction is None else correction
    _need_float(x, op)
    axes = _axes(x, dim, axis, op)
    fn = Std if root else Var
    return fn.apply(x, axes, _keep(keepdim, keepdims), _correction(unbiased, correction, op), root)


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None, ddof=None):
    """Variance over ``dim``; by default unbiased (``correction=1``), as in PyTorch.

    ``correction=0`` (or ``unbiased=False``, or NumPy's ``ddof=0``) gives the population
    variance. Computed in two passes, so a large mean does not swamp a small spread.
    """
    return _var(x, dim, unbiased, keepdim, correction, axis, keepdims, ddof, False, "var")


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None, ddof=None):
    """Standard deviation over ``dim`` (unbiased by default); zero gradient where it is 0."""
    return _var(x, dim, unbiased, keepdim, correction, axis, keepdims, ddof, True, "std")


def logsumexp(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """log(sum(exp(x))) over ``dim``, stable for large inputs and for all -inf slices."""
    x = _as_tensor(x, "logsumexp")
    if not is_floating_dtype(x.dtype):
        x = x.to(np.float32)
    return LogSumExp.apply(x, _axes(x, dim, axis, "logsumexp"), _keep(keepdim, keepdims))


def prod(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Product over one dim (or all); its gradient is exact when some entries are zero."""
    x = _int_accumulator(_as_tensor(x, "prod"), dtype)
    if axis is not None:
        if dim is not None:
            raise TypeError("prod: give either dim or axis, not both")
        dim = axis
    if isinstance(dim, (tuple, list)):
        raise TypeError("prod: dim must be a single int (or None for all dims)")
    keep = _keep(keepdim, keepdims)
    if dim is None:  # as PyTorch: the full product has no keepdim
        return Prod.apply(x, None, False)
    ax = normalize_axis(dim, x.ndim, "prod")
    return Prod.apply(x, None if x.ndim == 0 else ax, keep)


def _maxmin(x, dim, keepdim, axis, keepdims, largest, op):
    x = _as_tensor(x, op)
    if isinstance(dim, Tensor) or (dim is not None and not isinstance(
            dim, (numbers.Integral, tuple, list))):
        from .unary import maximum, minimum

        return (maximum if largest else minimum)(x, dim)
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: give either dim or axis, not both")
        dim = axis
    keep = _keep(keepdim, keepdims)
    if dim is None:
        if x.numel() == 0:
            raise RuntimeError(f"{op}(): cannot reduce an empty tensor (shape {x.shape}); "
                               "specify a dim or use amax/amin with a dim")
        return Amax.apply(x, tuple(range(x.ndim)), False, largest)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{op}: dim must be a single int; use amax/amin to reduce several dims")
    ax = normalize_axis(dim, x.ndim, op)
    if x.ndim:
        _need_nonempty(x, (ax,), op)
    values, indices = MaxDim.apply(x, ax, keep, largest)
    return (_max_result if largest else _min_result)(values, indices)


def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """Largest value: ``max(x)`` is a 0-d tensor; ``max(x, dim)`` is ``(values, indices)``.

    ``max(x, other_tensor)`` is ``maximum(x, other)``. A full reduction shares the gradient
    evenly among ties; a reduction along ``dim`` sends it to the returned index.
    """
    return _maxmin(x, dim, keepdim, axis, keepdims, True, "max")


def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """Smallest value; see :func:`max`."""
    return _maxmin(x, dim, keepdim, axis, keepdims, False, "min")


def _amax(x, dim, keepdim, axis, keepdims, largest, op):
    x = _as_tensor(x, op)
    axes = _axes(x, dim, axis, op)
    _need_nonempty(x, axes, op)
    return Amax.apply(x, axes, _keep(keepdim, keepdims), largest)


def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Largest value over one or several dims; ties share the gradient evenly."""
    return _amax(x, dim, keepdim, axis, keepdims, True, "amax")


def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Smallest value over one or several dims; ties share the gradient evenly."""
    return _amax(x, dim, keepdim, axis, keepdims, False, "amin")


def _arg(x, dim, keepdim, axis, keepdims, largest, op):
    x = _as_tensor(x, op)
    xp = xp_of(x.data)
    fn = xp.argmax if largest else xp.argmin
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: give either dim or axis, not both")
        dim = axis
    keep = _keep(keepdim, keepdims)
    if x.numel() == 0:
        raise RuntimeError(f"{op}(): cannot take the {op} of an empty tensor")
    if dim is None or x.ndim == 0:
        if dim is not None:
            normalize_axis(dim, x.ndim, op)
        idx = xp.asarray(fn(x.data.reshape(-1))).astype(np.int64)
        return Tensor._make(idx.reshape((1,) * x.ndim) if keep else idx, False)
    ax = normalize_axis(dim, x.ndim, op)
    _need_nonempty(x, (ax,), op)
    idx = xp.asarray(fn(x.data, axis=ax)).astype(np.int64)
    return Tensor._make(xp.expand_dims(idx, ax) if keep else idx, False)


def argmax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the largest value (of the flattened tensor when dim is None); int64."""
    return _arg(x, dim, keepdim, axis, keepdims, True, "argmax")


def argmin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the smallest value (of the flattened tensor when dim is None); int64."""
    return _arg(x, dim, keepdim, axis, keepdims, False, "argmin")


def _logical(x, dim, keepdim, axis, keepdims, fn_name):
    x = _as_tensor(x, fn_name)
    xp = xp_of(x.data)
    axes = _axes(x, dim, axis, fn_name)
    out = getattr(xp, fn_name)(x.data, axis=axes, keepdims=_keep(keepdim, keepdims))
    return Tensor._make(xp.asarray(out), False)


def all(x, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """True where every element over ``dim`` is non-zero (a bool tensor)."""
    return _logical(x, dim, keepdim, axis, keepdims, "all")


def any(x, dim=None, keepdim=False, *, axis=None, keepdims=None):  # noqa: A001
    """True where some element over ``dim`` is non-zero (a bool tensor)."""
    return _logical(x, dim, keepdim, axis, keepdims, "any")


def cumsum(x, dim=None, *, dtype=None, axis=None):
    """Running sum along ``dim`` (required, as in PyTorch); int tensors give int64."""
    x = _int_accumulator(_as_tensor(x, "cumsum"), dtype)
    if axis is not None:
        if dim is not None:
            raise TypeError("cumsum: give either dim or axis, not both")
        dim = axis
    if dim is None or isinstance(dim, (tuple, list)):
        raise TypeError("cumsum: dim must be a single int")
    return Cumsum.apply(x, normalize_axis(dim, x.ndim, "cumsum"))


def norm(x, p="fro", dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Vector p-norm over ``dim`` (all elements by default): p = 2 ('fro'), 1, inf, -inf, 0,
    or any other real. The gradient of the 2-norm at zero is zero, as in PyTorch."""
    x = _as_tensor(x, "norm")
    _need_float(x, "norm")
    if p in ("fro", None):
        p = 2
    if isinstance(p, str):
        raise ValueError(f"norm: unsupported p {p!r}; use a number, inf or 'fro'")
    p = float(p)
    axes = _axes(x, dim, axis, "norm")
    if p in (math.inf, -math.inf):
        _need_nonempty(x, axes, "norm")
    return Norm.apply(x, p, axes, _keep(keepdim, keepdims))
