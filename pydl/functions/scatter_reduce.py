"""``scatter_reduce``: reduce ``src`` into ``input`` at ``index`` along ``dim`` with sum, prod,
mean, amax or amin, as ``torch.Tensor.scatter_reduce``.

Gradients follow PyTorch: sum and mean pass ``g`` (divided by the count of contributors for
mean); amax/amin split ``g`` evenly among every contributor equal to the result (``input``'s
own element included when ``include_self``); prod gives each contributor the product of the
others (exact where contributors are 0). Those weights are fixed by forward; for sum, mean,
amax and amin the op is (piecewise) linear, so ``g * weight`` is also right under
``create_graph`` (``double_backward = True``); prod's second derivative is not supported.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, same_device
from ..tensor import Tensor, dtype_name
from ._util import xp_of
from .indexing import _check_index, _full_index, _index_add

__all__ = ["scatter_reduce"]

_REDUCES = ("sum", "prod", "mean", "amax", "amin")


def _ufunc_at(name, target, key, values):
    """In place ``target[key] = name(target[key], values)``, repeated indices combining."""
    xp = xp_of(target)
    at = getattr(getattr(xp, name), "at", None)
    if at is not None:
        try:
            at(target, key, values)
            return
        except NotImplementedError:  # pragma: no cover - a CuPy ufunc without .at
            pass
    cupyx = __import__("cupyx")  # pragma: no cover - GPU only
    getattr(cupyx, {"maximum": "scatter_max", "minimum": "scatter_min"}[name])(
        target, key, values)


def _multiply_at(target, key, values):
    """In place ``target[key] *= values`` with repeated positions multiplying.

    Not ``xp.multiply.at``: CuPy has no ``at`` for multiply. The contributors are sorted by
    position and combined by a segmented log-step scan (ceil(log2 n) whole-array steps); the
    last entry of each run is then the run's product, written once per position.
    """
    xp = xp_of(target)
    values = xp.broadcast_to(values, xp.broadcast(*key).shape).reshape(-1)
    flat = xp.zeros(values.shape, dtype=np.int64)
    for k, n in zip(key, target.shape):
        flat = flat * n + xp.broadcast_to(k, xp.broadcast(*key).shape).reshape(-1)
    order = xp.argsort(flat, kind="stable")
    pos, run = flat[order], values[order]
    step = 1
    while step < run.shape[0]:
        same = pos[step:] == pos[:-step]
        run[step:] = xp.where(same, run[step:] * run[:-step], run[step:])
        step *= 2
    last = xp.concatenate([pos[1:] != pos[:-1], xp.ones(min(1, pos.shape[0]), dtype=bool)])
    out = target.reshape(-1)  # a view: target is contiguous (made by where/astype above)
    out[pos[last]] = out[pos[last]] * run[last]


def _extreme(dtype, largest):
    if np.dtype(dtype).kind == "f":
        return -np.inf if largest else np.inf
    info = np.iinfo(dtype)
    return info.min if largest else info.max


def _targets(x, key, index_shape):
    """(bool array: is this position written by some src element, contributor counts)."""
    xp = xp_of(x)
    count = xp.zeros(x.shape, dtype=np.int64)
    _index_add(count, key, xp.ones(index_shape, dtype=np.int64))
    return count > 0, count


class ScatterReduceLinear(Function):
    """sum / mean / amax / amin: ``out = x * w_self + scatter(src * w_src)`` locally."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, src, index, dim, reduce, include_self):
        xp = xp_of(x)
        key = _full_index(index, dim)
        targeted, n_src = _targets(x, key, index.shape)
        keep = ~targeted if not include_self else xp.ones(x.shape, dtype=bool)
        if reduce in ("sum", "mean"):
            out = xp.where(keep, x, 0).astype(x.dtype)
            _index_add(out, key, src)
            count = (keep.astype(np.int64) + n_src) if reduce == "mean" else None
            if count is not None:
                count = xp.maximum(count, 1)
                out = out / count if x.dtype.kind == "f" else out // count
                w_self = keep / count
                w_src = 1.0 / count[key]
            else:
                w_self, w_src = keep, None
        else:
            largest = reduce == "amax"
            out = xp.where(keep, x, _extreme(x.dtype, largest)).astype(x.dtype)
            _ufunc_at("maximum" if largest else "minimum", out, key, src)
            self_hit = keep & (x == out)
            src_hit = src == out[key]
            count = self_hit.astype(np.int64)
            _index_add(count, key, src_hit.astype(np.int64))
            count = xp.maximum(count, 1)
            w_self, w_src = self_hit / count, src_hit / count[key]
        ctx.key = key
        ctx.w_self = w_self.astype(x.dtype) if x.dtype.kind == "f" else w_self
        ctx.w_src = None if w_src is None else (
            w_src.astype(x.dtype) if x.dtype.kind == "f" else w_src)
        return out

    @staticmethod
    def backward(ctx, g):
        gx = g * ctx.w_self if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1]:
            gs = g[ctx.key]
            if ctx.w_src is not None:
                gs = gs * ctx.w_src
        return gx, gs, None, None, None, None


class ScatterReduceProd(Function):
    @staticmethod
    def forward(ctx, x, src, index, dim, include_self):
        xp = xp_of(x)
        key = _full_index(index, dim)
        targeted, _ = _targets(x, key, index.shape)
        keep = ~targeted if not include_self else xp.ones(x.shape, dtype=bool)
        mine = xp.where(keep, x, 1).astype(x.dtype)
        # product of the non-zero contributors and count of zero ones, per position
        nonzero = xp.where(mine != 0, mine, 1).astype(x.dtype)
        zeros = (keep & (x == 0)).astype(np.int64)
        _multiply_at(nonzero, key, xp.where(src != 0, src, 1).astype(x.dtype))
        _index_add(zeros, key, (src == 0).astype(np.int64))
        out = xp.where(zeros > 0, 0, nonzero).astype(x.dtype)
        ctx.save_for_backward(x, src)
        ctx.key, ctx.keep, ctx.nonzero, ctx.zeros = key, keep, nonzero, zeros
        return out

    @staticmethod
    def backward(ctx, g):
        x, src = ctx.saved_tensors
        xp = xp_of(g)
        key, nonzero, zeros = ctx.key, ctx.nonzero, ctx.zeros

        def others(v, p, z):  # product of the other contributors at the same position
            safe = xp.where(v != 0, v, 1)
            return xp.where(v != 0, xp.where(z == 0, p / safe, 0), xp.where(z == 1, p, 0))

        gx = g * others(x, nonzero, zeros) * ctx.keep if ctx.needs_input_grad[0] else None
        gs = g[key] * others(src, nonzero[key], zeros[key]) if ctx.needs_input_grad[1] else None
        return gx, gs, None, None, None


def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):  # noqa: A002
    """Out-of-place ``torch.scatter_reduce``: ``out[index[i][j]][j] = reduce(out[...],
    src[i][j])`` (for dim=0), with ``reduce`` one of 'sum', 'prod', 'mean', 'amax', 'amin';
    ``include_self=False`` leaves the input's own value out at the written positions.

    >>> x = pydl.zeros(3)
    >>> x.scatter_reduce(0, pydl.tensor([0, 0, 2]), pydl.tensor([1., 2., 3.]), "amax").tolist()
    [2.0, 0.0, 3.0]
    """
    op = "scatter_reduce"
    if reduce not in _REDUCES:
        raise ValueError(f"{op}: reduce must be one of {', '.join(_REDUCES)}, got {reduce!r}")
    if not isinstance(src, Tensor):
        raise TypeError(f"{op}: src must be a Tensor, got {type(src).__name__}")
    d = _check_index(input, dim, index, op, src)
    same_device(op, input, src)
    if src.dtype != input.dtype:
        raise TypeError(f"{op}: expected src of dtype {dtype_name(input.dtype)}, got "
                        f"{dtype_name(src.dtype)}")
    if input.ndim == 0:
        raise RuntimeError(f"{op}: 0-d input is not supported")
    if src.ndim != input.ndim:
        raise RuntimeError(f"{op}: src {src.shape} must have as many dims as the input "
                           f"{input.shape}")
    if src.shape != index.shape:  # only src's leading index-shaped block takes part
        src = src[tuple(slice(0, n) for n in index.shape)]
    if reduce == "prod":
        return ScatterReduceProd.apply(input, src, index, d, bool(include_self))
    return ScatterReduceLinear.apply(input, src, index, d, reduce, bool(include_self))
