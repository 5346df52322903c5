"""Indexing: ``x[key]``, ``x[key] = v``, gather, scatter, index_select, masked_fill, one_hot.

``getitem`` takes what NumPy takes (ints, slices with steps, ``...``, ``None``, integer
lists/arrays/tensors, boolean masks, tuples mixing them) with PyTorch's result order (integers
select before index tensors index, see ``_split_int_selects``) and errors: an index out
of range raises IndexError naming the index, the dimension and its size (also on a GPU, where
CuPy would silently wrap). Basic indexing (ints, slices, ``...``, ``None``) returns a view that
shares the input's version counter; advanced indexing copies. The backward scatters the
gradient into zeros of the input's shape, accumulating where an index repeats.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function, same_device
from ..tensor import Tensor, dtype_name
from ._util import astype, sum_to_shape, xp_of
from .views import share_if_view

__all__ = [
    "getitem", "index_put", "index_put_", "gather", "scatter", "scatter_add", "index_select",
    "take_along_dim", "masked_fill", "masked_fill_", "masked_select", "one_hot",
]



def _grad_past_put(g, key, accumulated):
    """The gradient of the tensor written into by ``out[key] = v`` (or ``+= v``): the
    overwritten elements contributed nothing, so their gradient is 0."""
    if accumulated:
        return g
    if isinstance(g, Tensor):  # create_graph: a recorded write of zeros
        return IndexPut.apply(g, 0.0, key=key, accumulate=False)
    g = g.copy()
    g[key] = 0
    return g


def scatter_add_graph(shape, key, g):
    """zeros(shape) with ``g`` added at ``key`` (repeats accumulate), as a recorded op whose
    own backward is ``g[key]``: the create_graph form of the ``_index_add`` backwards."""
    zeros = Tensor._make(xp_of(g.data).zeros(shape, dtype=g.dtype), False)
    return IndexPut.apply(zeros, g, key=key, accumulate=True)


def _index_add(target, key, values):
    """In place ``target[key] += values`` with repeated indices accumulating (np.add.at).

    Backend-neutral stand-in for a protocol kernel ``index_add``: NumPy (and CuPy >= 13) have
    ``xp.add.at``; older CuPy has ``cupyx.scatter_add`` with the same semantics. The lead is to
    move this into the backends; until then it is the one place that knows about both.
    """
    xp = xp_of(target)
    add_at = getattr(xp.add, "at", None)
    if add_at is not None:
        try:
            add_at(target, key, values)
            return
        except NotImplementedError:  # pragma: no cover - an ufunc.at that refuses
            pass
    __import__("cupyx").scatter_add(target, key, values)  # pragma: no cover - GPU only


# -- keys ------------------------------------------------------------------------------------
def _is_array(k) -> bool:
    return isinstance(k, np.ndarray) or type(k).__module__.startswith("cupy")


_BASIC = (int, slice, type(None), type(Ellipsis))


def _basic_key(shape, key, op):
    """Fast path for keys of plain ints, int slices, None and one ``...`` (else None)."""
    used = 0
    for k in key:
        t = type(k)
        if t is int:
            used += 1
        elif t is slice:
            if not all(v is None or type(v) is int for v in (k.start, k.stop, k.step)):
                return None
            if k.step == 0:
                raise ValueError(f"{op}: slice step cannot be zero")
            used += 1
        elif t not in _BASIC:
            return None
    ellipses = sum(k is Ellipsis for k in key)
    if ellipses > 1 or used > len(shape):
        return None  # the general path raises the error
    d = 0
    for k in key:
        if k is Ellipsis:
            d += len(shape) - used
        elif type(k) is int:
            n = shape[d]
            if not -n <= k < n:
                raise IndexError(
                    f"{op}: index {k} is out of range for dimension {d} with size {n}"
                )
            d += 1
        elif k is not None:
            d += 1
    return key if ellipses else key + (Ellipsis,)


def _normalize_key(x: Tensor, key, op: str = "index"):
    """Turn ``key`` into a tuple NumPy/CuPy can index ``x.data`` with, checking bounds.

    Returns (key, advanced) where ``advanced`` tells whether an integer array is in it (the
    only case where one element can be picked twice).
    """
    if not isinstance(key, tuple):
        key = (key,)
    fast = _basic_key(x.shape, key, op)
    if fast is not None:
        return fast, False
    xp = xp_of(x.data)
    items = []
    for k in key:
        if isinstance(k, Tensor):
            if k.device != x.device:
                if k.device.type != "cpu":  # CPU indices may index any device, as in PyTorch
                    raise RuntimeError(
                        f"{op}: indices on {k.device} can't index a tensor on {x.device}"
                    )
                k = xp.asarray(k.data)
            else:
                k = k.data
        elif isinstance(k, (list, tuple)) or (_is_array(k) and not isinstance(k, xp.ndarray)):
            probe = np.asarray(
                [v.tolist() if isinstance(v, Tensor) else v for v in k]
                if isinstance(k, (list, tuple)) else k if isinstance(k, np.ndarray) else k.get()
            )
            if probe.size == 0 and probe.dtype.kind == "f":
                probe = probe.astype(np.int64)
            k = xp.asarray(probe)
        elif isinstance(k, np.bool_):
            k = bool(k)
        elif isinstance(k, numbers.Integral) and not isinstance(k, bool):
            k = int(k)
        elif isinstance(k, slice):
            k = slice(
                *(None if v is None else int(v.__index__()) for v in (k.start, k.stop, k.step))
            )
            if k.step == 0:
                raise ValueError(f"{op}: slice step cannot be zero")
        elif k is None or k is Ellipsis or isinstance(k, bool):
            pass
        elif _is_array(k):
            pass
        else:
            raise IndexError(
                f"{op}: only integers, slices, '...', None, and integer or boolean "
                f"arrays/tensors are valid indices, got {type(k).__name__}"
            )
        if _is_array(k):
            if k.dtype.kind not in "biu":
                raise IndexError(
                    f"{op}: tensors used as indices must be long, int or bool, got "
                    f"{dtype_name(k.dtype) if k.dtype.kind in 'biuf' else k.dtype}"
                )
            if k.dtype.kind == "b" and k.ndim == 0:
                k = bool(k)
        items.append(k)

    def width(k):
        if k is None or k is Ellipsis or isinstance(k, bool):
            return 0
        if _is_array(k) and k.dtype.kind == "b":
            return k.ndim
        return 1

    if sum(k is Ellipsis for k in items) > 1:
        raise IndexError(f"{op}: an index can only have a single ellipsis ('...')")
    used = sum(width(k) for k in items)
    shape = x.shape
    if used > len(shape):
        raise IndexError(
            f"{op}: too many indices for tensor of dimension {len(shape)} (shape {shape}); "
            f"the key indexes {used} dims"
        )
    d = 0
    advanced = False
    for k in items:
        if k is Ellipsis:
            d += len(shape) - used
            continue
        w = width(k)
        if _is_array(k) and k.dtype.kind == "b":
            want = shape[d:d + w]
            if tuple(k.shape) != tuple(want):
                raise IndexError(
                    f"{op}: the shape of the mask {tuple(k.shape)} at index {d} does not match "
                    f"the shape of the indexed tensor {shape}"
                )
        elif _is_array(k):
            advanced = True
            n = shape[d]
            if k.size:
                lo, hi = int(k.min()), int(k.max())
                if hi >= n or lo < -n:
                    bad = hi if hi >= n else lo
                    raise IndexError(
                        f"{op}: index {bad} is out of range for dimension {d} with size {n}"
                    )
        elif isinstance(k, int) and not isinstance(k, bool):
            n = shape[d]
            if not -n <= k < n:
                raise IndexError(
                    f"{op}: index {k} is out of range for dimension {d} with size {n}"
                )
        d += w
    if not advanced and not any(k is Ellipsis for k in items):
        items.append(Ellipsis)  # x[1, 2] then gives a 0-d view, not a scalar copy
    return tuple(items), advanced


def _split_int_selects(key):
    """PyTorch's rule for integers in a key that also holds index arrays: the integers select
    first (as ``x.select``), then the arrays index what is left. NumPy instead counts an
    integer as an index array, which moves the indexed dims to the front when a slice
    separates it from an array (``x[:, I, :, 1]``: PyTorch (5, 3, 3), NumPy (3, 5, 3)).

    For a normalized key with both, returns ``(selects, rest)`` with
    ``x[key] == x[selects][rest]`` in PyTorch's sense; otherwise None.
    """
    if not any(_is_array(k) for k in key) or not any(_is_int(k) for k in key):
        return None
    selects, rest = [], []
    for k in key:
        if _is_int(k):
            selects.append(k)
            continue
        rest.append(k)
        if k is Ellipsis:
            selects.append(k)
        elif isinstance(k, slice):
            selects.append(slice(None))
        elif _is_array(k):
            selects.extend([slice(None)] * (k.ndim if k.dtype.kind == "b" else 1))
    return tuple(selects), tuple(rest)


def _is_int(k) -> bool:
    return isinstance(k, int) and not isinstance(k, bool)


# -- x[key] ----------------------------------------------------------------------------------
class GetItem(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, key, advanced):
        ctx.key, ctx.advanced, ctx.in_shape = key, advanced, a.shape
        out = a[key]
        if not _is_array(out):  # CuPy/NumPy scalars from full integer indexing
            out = xp_of(a).asarray(out)
        return out

    @staticmethod
    def backward(ctx, g):
        gx = xp_of(g).zeros(ctx.in_shape, dtype=g.dtype)
        if isinstance(g, Tensor):  # create_graph: a recorded scatter-add of g
            return index_put(gx, ctx.key, g, accumulate=True), None, None
        if ctx.advanced:
            _index_add(gx, ctx.key, g)
        else:
            gx[ctx.key] = g
        return gx, None, None


def getitem(x, key) -> Tensor:
    """``x[key]`` with NumPy semantics, except PyTorch's rule for integers beside index
    tensors (``_split_int_selects``); basic indexing gives a view, advanced a copy."""
    key, advanced = _normalize_key(x, key)
    split = _split_int_selects(key) if advanced else None
    if split is not None:
        return getitem(getitem(x, split[0]), split[1])
    out = GetItem.apply(x, key, advanced)
    if advanced:  # a copy
        return out
    return share_if_view(out, x, lambda a: a[key])


# -- x[key] = value, out of place ------------------------------------------------------------
class IndexPut(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, value, key, accumulate):
        ctx.key, ctx.accumulate = key, accumulate
        ctx.vshape = getattr(value, "shape", ())
        xp = xp_of(a)
        out = a.copy()
        target = a[key].shape
        vshape = tuple(ctx.vshape)
        extra = max(0, len(vshape) - len(target))
        try:  # assignment drops leading size-1 dims of value, as NumPy and PyTorch do
            if any(s != 1 for s in vshape[:extra]):
                raise ValueError
            if np.broadcast_shapes(vshape[extra:], target) != tuple(target):
                raise ValueError
        except ValueError:
            raise RuntimeError(
                f"index_put: value of shape {vshape} cannot be broadcast to the indexed shape "
                f"{tuple(target)}"
            ) from None
        if accumulate:
            vals = value.reshape(vshape[extra:]) if _is_array(value) else value
            vals = xp.broadcast_to(xp.asarray(vals, dtype=a.dtype), target)
            _index_add(out, key, vals)
        else:
            out[key] = value
        return out

    @staticmethod
    def backward(ctx, g):
        gx = _grad_past_put(g, ctx.key, ctx.accumulate) if ctx.needs_input_grad[0] else None
        gv = None
        if len(ctx.needs_input_grad) > 1 and ctx.needs_input_grad[1]:
            gv = GetItem.apply(g, ctx.key, True) if isinstance(g, Tensor) else g[ctx.key]
            if not _is_array(gv) and not isinstance(gv, Tensor):
                gv = xp_of(g).asarray(gv)
            extra = len(ctx.vshape) - gv.ndim
            if extra > 0:  # value had leading size-1 dims that assignment dropped
                gv = gv.reshape((1,) * extra + gv.shape)
            gv = sum_to_shape(gv, ctx.vshape)
        return gx, gv


def index_put(x, key, value, accumulate=False) -> Tensor:
    """``x`` with ``x[key] = value`` (``+= value`` when ``accumulate``), out of place.

    ``value`` broadcasts to ``x[key]``'s shape and takes ``x``'s dtype. Gradients: to ``x``,
    ``grad`` with zeros at ``key`` (all of it when accumulating); to ``value``, ``grad[key]``
    summed to ``value``'s shape. ``x[key] = value`` on a tensor runs this through ``_rebase``.
    """
    if isinstance(key, list) and key and all(isinstance(k, Tensor) for k in key):
        key = tuple(key)  # torch's index_put(indices=[t0, t1], ...)
    nkey, advanced = _normalize_key(x, key, "index_put")
    split = _split_int_selects(nkey) if advanced else None
    if split is not None:  # write into the selected part, then put that part back
        part = index_put(getitem(x, split[0]), split[1], value, accumulate)
        return index_put(x, split[0], part)
    if isinstance(value, Tensor):
        same_device("index_put", x, value)
        if value.dtype != x.dtype:
            value = value.to(x.dtype)
    elif isinstance(value, (numbers.Number, np.bool_, np.number)):
        value = value.item() if isinstance(value, (np.bool_, np.number)) else value
    else:
        value = Tensor(value, dtype=x.dtype, device=x.device)
    return IndexPut.apply(x, value, key=nkey, accumulate=bool(accumulate))


def _write_inplace(x, key, value) -> Tensor:
    """``x[key] = value`` written straight into ``x.data`` (no graph, no full copy).

    For ``Tensor.__setitem__`` when no gradient is being recorded (grad mode off, or neither
    ``x`` nor ``value`` requires grad): ``_rebase`` would copy the whole tensor twice per
    assignment. Bumps the version counter like every in-place write.
    """
    nkey, advanced = _normalize_key(x, key, "index_put")
    split = _split_int_selects(nkey) if advanced else None
    if split is not None:  # x.data[selects] is a view: write through it
        part = Tensor._make(x.data[split[0]])
        _write_inplace(part, split[1], value)
        x._bump()
        return x
    if isinstance(value, Tensor):
        same_device("index_put", x, value)
        value = value.data
    elif not isinstance(value, (numbers.Number, np.bool_, np.number)):
        value = Tensor(value, dtype=x.dtype, device=x.device).data
    target = x.data[nkey]
    vshape = tuple(getattr(value, "shape", ()))
    extra = max(0, len(vshape) - target.ndim)
    try:
        if any(s != 1 for s in vshape[:extra]) or \
                np.broadcast_shapes(vshape[extra:], target.shape) != tuple(target.shape):
            raise ValueError
    except ValueError:
        raise RuntimeError(
            f"index_put: value of shape {vshape} cannot be broadcast to the indexed shape "
            f"{tuple(target.shape)}"
        ) from None
    x.data[nkey] = value
    x._bump()
    return x


def index_put_(x, key, value, accumulate=False) -> Tensor:
    """In place ``x[key] = value`` (or ``+=`` with ``accumulate``), recorded by autograd."""
    return x._rebase(lambda t, v: index_put(t, key, v, accumulate), value)


# -- gather / scatter ------------------------------------------------------------------------
def _check_index(x: Tensor, dim, index, op: str, src=None):
    if not isinstance(index, Tensor):
        raise TypeError(f"{op}: index must be a Tensor, got {type(index).__name__}")
    if index.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got {dtype_name(index.dtype)}")
    same_device(op, x, index)
    nd = max(x.ndim, 1)
    d = int(dim)
    if not -nd <= d < nd:
        raise IndexError(f"{op}: dimension {dim} is out of range for a tensor of {x.ndim} dims")
    d %= nd
    if index.ndim != x.ndim and not (index.ndim <= 1 and x.ndim <= 1):
        raise RuntimeError(
            f"{op}: index tensor must have the same number of dimensions as the input; "
            f"got index shape {index.shape} and input shape {x.shape}"
        )
    for k in range(index.ndim):
        if k != d and x.ndim and index.shape[k] > x.shape[k]:
            raise RuntimeError(
                f"{op}: size of index {index.shape} exceeds the input {x.shape} at dimension "
                f"{k}"
            )
        if src is not None and src.ndim and index.shape[k] > src.shape[k]:
            raise RuntimeError(
                f"{op}: size of index {index.shape} exceeds src {src.shape} at dimension {k}"
            )
    n = x.shape[d] if x.ndim else 1
    if index.numel():
        lo, hi = int(index.data.min()), int(index.data.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{op}: index {bad} is out of range for dimension {d} with size {n}")
    return d


def _full_index(index, dim):
    """Index tuple addressing ``out[i][j][k] -> (i, index[i][j][k], k)`` (for dim 1)."""
    xp = xp_of(index)
    nd = index.ndim
    key = []
    for k in range(nd):
        if k == dim:
            key.append(index)
        else:
            shape = [1] * nd
            shape[k] = index.shape[k]
            key.append(xp.arange(index.shape[k]).reshape(shape))
    return tuple(key)


class Gather(Function):
    @staticmethod
    def forward(ctx, a, index, dim):
        ctx.in_shape, ctx.dim = a.shape, dim
        if a.ndim == 0:
            ctx.key = None
            return a.reshape(index.shape).copy() if index.size else a.reshape(index.shape)
        ctx.key = _full_index(index, dim)
        return a[ctx.key]

    double_backward = True

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            if ctx.key is None:
                return g.sum().reshape(ctx.in_shape), None, None
            return scatter_add_graph(ctx.in_shape, ctx.key, g), None, None
        gx = xp_of(g).zeros(ctx.in_shape, dtype=g.dtype)
        if ctx.key is None:
            gx[...] = g.sum()
        else:
            _index_add(gx, ctx.key, g)
        return gx, None, None


def gather(x, dim, index) -> Tensor:
    """``out[i][j][k] = x[index[i][j][k]][j][k]`` (for ``dim=0``), as ``torch.gather``."""
    d = _check_index(x, dim, index, "gather")
    return Gather.apply(x, index, d)


def take_along_dim(x, indices, dim=None) -> Tensor:
    """``torch.take_along_dim``: gather with ``indices`` broadcast against ``x``."""
    from .shape import broadcast_to, reshape

    if dim is None:
        return gather(reshape(x, -1), 0, reshape(indices, -1))
    d = int(dim) % max(x.ndim, 1)
    if indices.ndim != x.ndim:
        raise RuntimeError(
            f"take_along_dim: input {x.shape} and indices {indices.shape} should have the "
            "same number of dimensions"
        )
    xs, ishape = list(x.shape), list(indices.shape)
    xs[d] = ishape[d] = 1
    try:
        common = np.broadcast_shapes(tuple(xs), tuple(ishape))
    except ValueError:
        raise RuntimeError(
            f"take_along_dim: input {x.shape} and indices {indices.shape} do not broadcast"
        ) from None
    xb = list(common)
    xb[d] = x.shape[d]
    ib = list(common)
    ib[d] = indices.shape[d]
    return gather(broadcast_to(x, tuple(xb)), d, broadcast_to(indices, tuple(ib)))


class Scatter(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, src, index, dim, add, src_is_array):
        key = _full_index(index, dim)
        ctx.key, ctx.add, ctx.src_shape = key, add, getattr(src, "shape", ())
        ctx.index_shape = index.shape
        out = a.copy()
        vals = src[tuple(slice(0, n) for n in index.shape)] if src_is_array else src
        if add:
            vals = xp_of(a).broadcast_to(xp_of(a).asarray(vals, dtype=a.dtype), index.shape)
            _index_add(out, key, vals)
        else:
            out[key] = vals
        return out

    @staticmethod
    def backward(ctx, g):
        gx = _grad_past_put(g, ctx.key, ctx.add) if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1] and isinstance(g, Tensor):
            zeros = Tensor._make(xp_of(g.data).zeros(ctx.src_shape, dtype=g.dtype), False)
            picked = GetItem.apply(g, ctx.key, True)
            gs = IndexPut.apply(zeros, picked, key=tuple(slice(0, n) for n in ctx.index_shape),
                                accumulate=False)
        elif ctx.needs_input_grad[1]:
            gs = xp_of(g).zeros(ctx.src_shape, dtype=g.dtype)
            gs[tuple(slice(0, n) for n in ctx.index_shape)] = g[ctx.key]
        return gx, gs, None, None, None, None


def _scatter(x, dim, index, src, add, op):
    d = _check_index(x, dim, index, op, src if isinstance(src, Tensor) else None)
    if x.ndim == 0:
        raise RuntimeError(f"{op}: 0-d input is not supported")
    if isinstance(src, Tensor):
        same_device(op, x, src)
        if src.dtype != x.dtype:
            raise TypeError(
                f"{op}: expected src of dtype {dtype_name(x.dtype)}, got {dtype_name(src.dtype)}"
            )
        if src.ndim != x.ndim:
            raise RuntimeError(
                f"{op}: src {src.shape} must have as many dims as the input {x.shape}"
            )
        return Scatter.apply(x, src, index, d, add, True)
    if add:
        raise TypeError(f"{op}: src must be a Tensor")
    return Scatter.apply(x, float(src) if x.dtype.kind == "f" else src, index, d, add, False)


def scatter(x, dim, index, src=None, value=None) -> Tensor:
    """Out-of-place ``torch.scatter``: ``out[i][index[i][j]] = src[i][j]`` (for dim=1)."""
    if src is None:
        src = value
    return _scatter(x, dim, index, src, False, "scatter")


def scatter_add(x, dim, index, src) -> Tensor:
    """Out-of-place ``torch.scatter_add``: repeated indices accumulate."""
    return _scatter(x, dim, index, src, True, "scatter_add")


class IndexSelect(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, index, dim):
        ctx.in_shape, ctx.dim, ctx.index = a.shape, dim, index
        return xp_of(a).take(a, index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        key = (slice(None),) * ctx.dim + (ctx.index,)
        if isinstance(g, Tensor):
            return scatter_add_graph(ctx.in_shape, key, g), None, None
        gx = xp_of(g).zeros(ctx.in_shape, dtype=g.dtype)
        _index_add(gx, key, g)
        return gx, None, None


def index_select(x, dim, index) -> Tensor:
    """The entries ``index`` (1-D int) of ``x`` along ``dim``."""
    if not isinstance(index, Tensor):
        index = Tensor(index, dtype=np.int64, device=x.device)
    if index.ndim > 1:
        raise IndexError(f"index_select: index must be 0-D or 1-D, got shape {index.shape}")
    if index.dtype.kind not in "iu":
        raise TypeError(
            f"index_select: index must be an integer tensor, got {dtype_name(index.dtype)}"
        )
    same_device("index_select", x, index)
    if x.ndim == 0:
        d = int(dim)
        if d not in (0, -1):
            raise IndexError(f"index_select: dimension {dim} is out of range for a 0-d tensor")
        from .shape import reshape

        return reshape(index_select(reshape(x, 1), 0, index), index.shape)
    nd = x.ndim
    d = int(dim)
    if not -nd <= d < nd:
        raise IndexError(f"index_select: dimension {dim} is out of range for {nd} dims")
    d %= nd
    n = x.shape[d]
    if index.numel():
        lo, hi = int(index.data.min()), int(index.data.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise IndexError(
                f"index_select: index {bad} is out of range for dimension {d} with size {n}"
            )
    if index.ndim == 0:
        index = index.reshape(1)
    return IndexSelect.apply(x, index, d)


# -- masks -----------------------------------------------------------------------------------
class MaskedFill(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, mask, value):
        xp = xp_of(a)
        ctx.a_shape, ctx.mask = a.shape, mask
        ctx.v_shape = getattr(value, "shape", None)
        v = value.astype(a.dtype) if _is_array(value) else xp.asarray(value, dtype=a.dtype)
        return xp.where(mask, v, a)

    @staticmethod
    def backward(ctx, g):
        xp = xp_of(g)
        ga = gv = None
        if ctx.needs_input_grad[0]:
            ga = sum_to_shape(astype(xp.where(ctx.mask, 0, g), g.dtype), ctx.a_shape)
        if ctx.needs_input_grad[2]:
            gv = astype(xp.where(ctx.mask, g, 0), g.dtype).sum().reshape(ctx.v_shape)
        return ga, None, gv


def masked_fill(x, mask, value) -> Tensor:
    """``x`` with ``value`` where ``mask`` (bool, broadcast against ``x``) is True."""
    if not isinstance(mask, Tensor):
        mask = Tensor(mask, device=x.device)
    if mask.dtype.kind != "b":
        raise TypeError(f"masked_fill: mask must be a bool tensor, got {dtype_name(mask.dtype)}")
    same_device("masked_fill", x, mask)
    try:
        np.broadcast_shapes(x.shape, mask.shape)
    except ValueError:
        raise RuntimeError(
            f"masked_fill: mask of shape {mask.shape} does not broadcast with the input of "
            f"shape {x.shape}"
        ) from None
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(
                f"masked_fill: only supports a 0-dimensional value tensor, got shape "
                f"{value.shape}"
            )
        same_device("masked_fill", x, value)
        if value.dtype != x.dtype and x.dtype.kind == "f":
            value = value.to(x.dtype)
    elif isinstance(value, (np.bool_, np.number)):
        value = value.item()
    return MaskedFill.apply(x, mask, value)


def masked_fill_(x, mask, value) -> Tensor:
    """In-place ``masked_fill`` (the mask must broadcast to ``x``'s shape)."""
    return x._rebase(lambda t, m, v: masked_fill(t, m, v), mask, value)


def masked_select(x, mask) -> Tensor:
    """The 1-D tensor of elements of ``x`` where ``mask`` is True (both broadcast)."""
    from .shape import broadcast_tensors

    if not isinstance(mask, Tensor):
        mask = Tensor(mask, device=x.device)
    if mask.dtype.kind != "b":
        raise TypeError(f"masked_select: mask must be bool, got {dtype_name(mask.dtype)}")
    if mask.shape != x.shape:
        x, mask = broadcast_tensors(x, mask)
    return getitem(x, mask)


def one_hot(index, num_classes=-1) -> Tensor:
    """int64 tensor of shape ``index.shape + (num_classes,)`` with 1 at each index (no grad)."""
    if not isinstance(index, Tensor):
        index = Tensor(index, dtype=np.int64)
    if index.dtype.kind not in "iu":
        raise TypeError(
            f"one_hot: index must be an integer tensor, got {dtype_name(index.dtype)}"
        )
    data = index.data
    xp = xp_of(data)
    n = int(num_classes)
    if data.size:
        lo, hi = int(data.min()), int(data.max())
        if lo < 0:
            raise RuntimeError(f"one_hot: class values must be non-negative, got {lo}")
        if n == -1:
            n = hi + 1
        elif hi >= n:
            raise RuntimeError(
                f"one_hot: class value {hi} is out of range for num_classes={n}"
            )
    elif n == -1:
        raise RuntimeError("one_hot: can not infer the number of classes from an empty tensor")
    if n < 0:
        raise RuntimeError(f"one_hot: num_classes must be -1 or non-negative, got {n}")
    out = (data[..., None] == xp.arange(n)).astype(np.int64)
    return Tensor._make(out, False)
