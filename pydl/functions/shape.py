"""Shape ops: reshape, view, transpose, permute, squeeze, expand, cat, stack, split, pad, ...

Semantics are PyTorch's. ``reshape``, ``view``, ``flatten``, ``transpose``, ``permute``,
``squeeze``, ``unsqueeze``, ``expand`` and ``split`` / ``chunk`` / ``unbind`` / ``narrow``
return views of the input's memory where NumPy (or CuPy) can make one; such an output shares
the input's version counter, so writing in place through a view before ``backward()`` is seen
by the version check of every op that saved the base (and vice versa). ``flip``, ``repeat``,
``cat``, ``stack`` and ``pad`` always copy.

Every backward is the adjoint of a re-indexing: reshape back, transpose back, sum over the
expanded dims, slice the concatenated gradient, and so on.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function, same_device
from ..tensor import Tensor
from ._util import sum_to_shape, xp_of
from .views import share_if_view

__all__ = [
    "reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "transpose",
    "swapaxes", "swapdims", "t", "permute", "movedim", "moveaxis", "squeeze", "unsqueeze",
    "expand", "expand_as", "broadcast_to", "broadcast_tensors", "cat", "concatenate", "concat",
    "stack", "split", "chunk", "unbind", "narrow", "pad", "flip", "repeat", "tile",
]



# -- helpers ---------------------------------------------------------------------------------
def _dim(d, ndim: int, op: str, extra: int = 0) -> int:
    """A dimension index made non-negative; ``extra`` widens the range (unsqueeze: 1)."""
    if not isinstance(d, numbers.Integral) or isinstance(d, bool):
        raise TypeError(f"{op}: dimension must be an int, got {d!r}")
    d = int(d)
    n = ndim + extra
    lo, hi = -max(n, 1), max(n, 1) - 1
    if not lo <= d <= hi:
        raise IndexError(
            f"{op}: dimension {d} is out of range for a tensor of {ndim} dims "
            f"(expected to be in range of [{lo}, {hi}])"
        )
    return d % max(n, 1)


def _sizes(args, op: str) -> tuple:
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` both give (2, 3)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = tuple(args[0])
    elif len(args) == 1 and isinstance(args[0], Tensor):
        args = tuple(int(v) for v in args[0].tolist())
    out = []
    for s in args:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{op}: sizes must be ints, got {tuple(args)!r}")
        out.append(int(s))
    return tuple(out)


def _infer_shape(shape: tuple, numel: int, in_shape: tuple, op: str) -> tuple:
    """Resolve one ``-1`` in ``shape`` and check the element count."""
    unknown = [i for i, s in enumerate(shape) if s == -1]
    if len(unknown) > 1:
        raise RuntimeError(f"{op}: only one dimension can be inferred (-1), got {shape}")
    if any(s < -1 for s in shape):
        raise RuntimeError(f"{op}: invalid shape dimension in {shape}")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if unknown:
        if known == 0 or numel % known:
            raise RuntimeError(
                f"{op}: shape {shape} is invalid for input of shape {in_shape} "
                f"({numel} elements)"
            )
        shape = tuple(numel // known if s == -1 else s for s in shape)
    elif known != numel:
        raise RuntimeError(
            f"{op}: shape {shape} is invalid for input of shape {in_shape} ({numel} elements)"
        )
    return shape


def _view_possible(shape, strides, new_shape) -> bool:
    """Whether ``new_shape`` can view memory laid out as (shape, strides) without a copy.

    PyTorch's rule (ATen ``computeStride``): every run of input dims that is contiguous
    with respect to itself must map onto a whole run of output dims.
    """
    numel = 1
    for s in shape:
        numel *= s
    if numel == 0 or len(shape) == 0:
        return True
    view_d = len(new_shape) - 1
    chunk_base_stride = strides[-1]
    tensor_numel = 1
    view_numel = 1
    for tensor_d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[tensor_d]
        if tensor_d == 0 or (
            shape[tensor_d - 1] != 1
            and strides[tensor_d - 1] != tensor_numel * chunk_base_stride
        ):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return False
            if tensor_d > 0:
                chunk_base_stride = strides[tensor_d - 1]
                tensor_numel = 1
                view_numel = 1
    return view_d == -1


def _check_tensor(x, op: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    return x


# -- reshape family --------------------------------------------------------------------------
class Reshape(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, g):
        return g.reshape(ctx.in_shape), None


def _reshape(x: Tensor, shape: tuple) -> Tensor:
    return share_if_view(Reshape.apply(x, shape), x, lambda a: a.reshape(shape))


def reshape(x, *shape) -> Tensor:
    """``x`` with a new shape (one dim may be -1): a view when possible, else a copy."""
    _check_tensor(x, "reshape")
    shape = _infer_shape(_sizes(shape, "reshape"), x.numel(), x.shape, "reshape")
    return _reshape(x, shape)


def view(x, *shape) -> Tensor:
    """``x`` with a new shape, always sharing memory; raises where ``reshape`` would copy."""
    _check_tensor(x, "view")
    shape = _infer_shape(_sizes(shape, "view"), x.numel(), x.shape, "view")
    strides = x.data.strides
    if not _view_possible(x.shape, strides, shape):
        raise RuntimeError(
            f"view size is not compatible with input tensor's size and stride (at least one "
            f"dimension spans across two contiguous subspaces): can't view shape {x.shape} "
            f"(strides {tuple(s // x.data.itemsize for s in strides)}) as {shape}. "
            "Use .reshape(...) instead."
        )
    return _reshape(x, shape)


def view_as(x, other) -> Tensor:
    return view(x, other.shape)


def reshape_as(x, other) -> Tensor:
    return reshape(x, other.shape)


def flatten(x, start_dim=0, end_dim=-1) -> Tensor:
    """Merge dims ``start_dim..end_dim`` into one (a 0-d tensor becomes shape (1,))."""
    _check_tensor(x, "flatten")
    if x.ndim == 0:
        return _reshape(x, (1,))
    s = _dim(start_dim, x.ndim, "flatten")
    e = _dim(end_dim, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    if s == e:
        return _reshape(x, x.shape)
    merged = 1
    for n in x.shape[s:e + 1]:
        merged *= n
    return _reshape(x, x.shape[:s] + (merged,) + x.shape[e + 1:])


def unflatten(x, dim, sizes) -> Tensor:
    """Split dim ``dim`` into ``sizes`` (one may be -1)."""
    _check_tensor(x, "unflatten")
    d = _dim(dim, x.ndim, "unflatten")
    sizes = _sizes((sizes,), "unflatten")
    sizes = _infer_shape(sizes, x.shape[d], (x.shape[d],), "unflatten")
    return _reshape(x, x.shape[:d] + sizes + x.shape[d + 1:])


# -- transposes ------------------------------------------------------------------------------
class Permute(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.inverse = tuple(int(i) for i in np.argsort(dims))
        return a.transpose(dims)

    @staticmethod
    def backward(ctx, g):
        return xp_of(g).transpose(g, ctx.inverse), None


def permute(x, *dims) -> Tensor:
    """Reorder the dims of ``x`` (a view): ``x.permute(2, 0, 1)``."""
    _check_tensor(x, "permute")
    dims = _sizes(dims, "permute")
    if len(dims) != x.ndim:
        raise RuntimeError(
            f"permute: number of dims {len(dims)} ({dims}) doesn't match the tensor's "
            f"{x.ndim} dims (shape {x.shape})"
        )
    norm = tuple(_dim(d, x.ndim, "permute") for d in dims)
    if sorted(norm) != list(range(x.ndim)):
        raise RuntimeError(f"permute: dims {dims} are not a permutation of {x.ndim} dims")
    return share_if_view(Permute.apply(x, norm), x, lambda a: a.transpose(norm))


def transpose(x, dim0, dim1) -> Tensor:
    """Swap two dims (a view)."""
    _check_tensor(x, "transpose")
    if x.ndim == 0:
        _dim(dim0, 0, "transpose")
        _dim(dim1, 0, "transpose")
        return _reshape(x, ())
    d0, d1 = _dim(dim0, x.ndim, "transpose"), _dim(dim1, x.ndim, "transpose")
    perm = list(range(x.ndim))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    perm = tuple(perm)
    return share_if_view(Permute.apply(x, perm), x, lambda a: a.transpose(perm))


swapaxes = transpose
swapdims = transpose


def t(x) -> Tensor:
    """Transpose a tensor of at most 2 dims (``x.t()``)."""
    _check_tensor(x, "t")
    if x.ndim > 2:
        raise RuntimeError(f"t: expects a tensor with <= 2 dims, got shape {x.shape}")
    return transpose(x, 0, 1) if x.ndim == 2 else _reshape(x, x.shape)


def movedim(x, source, destination) -> Tensor:
    """Move dims ``source`` to positions ``destination`` (ints or sequences)."""
    _check_tensor(x, "movedim")
    src = (source,) if isinstance(source, numbers.Integral) else tuple(source)
    dst = (destination,) if isinstance(destination, numbers.Integral) else tuple(destination)
    if len(src) != len(dst):
        raise RuntimeError(
            f"movedim: source {src} and destination {dst} must have the same number of dims"
        )
    src = tuple(_dim(d, x.ndim, "movedim") for d in src)
    dst = tuple(_dim(d, x.ndim, "movedim") for d in dst)
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise RuntimeError(f"movedim: repeated dim in source {src} or destination {dst}")
    order = [d for d in range(x.ndim) if d not in src]
    for d, s in sorted(zip(dst, src, strict=True)):
        order.insert(d, s)
    return permute(x, tuple(order))


moveaxis = movedim


# -- squeeze / unsqueeze ---------------------------------------------------------------------
def squeeze(x, dim=None) -> Tensor:
    """Remove size-1 dims (all, or those in ``dim``; a dim whose size is not 1 is kept)."""
    _check_tensor(x, "squeeze")
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
        dims = {_dim(d, x.ndim, "squeeze") for d in dims}
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in dims and s == 1))
    return _reshape(x, shape)


def unsqueeze(x, dim) -> Tensor:
    """Insert a size-1 dim at ``dim`` (in ``[-ndim-1, ndim]``)."""
    _check_tensor(x, "unsqueeze")
    d = _dim(dim, x.ndim, "unsqueeze", extra=1)
    return _reshape(x, x.shape[:d] + (1,) + x.shape[d:])


# -- broadcasting ----------------------------------------------------------------------------
class Expand(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, shape):
        ctx.in_shape = a.shape
        return xp_of(a).broadcast_to(a, shape)

    @staticmethod
    def backward(ctx, g):
        return sum_to_shape(g, ctx.in_shape), None


def expand(x, *sizes) -> Tensor:
    """Broadcast size-1 dims to ``sizes`` without copying; -1 keeps a dim's size."""
    _check_tensor(x, "expand")
    sizes = _sizes(sizes, "expand")
    if len(sizes) < x.ndim:
        raise RuntimeError(
            f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
            f"the number of dims of the tensor ({x.ndim}); target sizes {sizes}, tensor shape "
            f"{x.shape}"
        )
    lead = len(sizes) - x.ndim
    out = []
    for i, s in enumerate(sizes):
        if i < lead:
            if s < 0:
                raise RuntimeError(
                    f"expand: the size -1 is not allowed in a leading, new dimension {i}; "
                    f"target sizes {sizes}, tensor shape {x.shape}"
                )
            out.append(s)
            continue
        cur = x.shape[i - lead]
        if s == -1:
            out.append(cur)
        elif cur == s or cur == 1:
            if s < 0:
                raise RuntimeError(f"expand: invalid size {s} in {sizes}")
            out.append(s)
        else:
            raise RuntimeError(
                f"expand: the expanded size {s} must match the existing size {cur} at "
                f"non-singleton dimension {i}; target sizes {sizes}, tensor shape {x.shape}"
            )
    out = tuple(out)
    return share_if_view(Expand.apply(x, out), x, lambda a: xp_of(a).broadcast_to(a, out))


def expand_as(x, other) -> Tensor:
    return expand(x, other.shape)


def broadcast_to(x, *shape) -> Tensor:
    """``x`` broadcast to ``shape`` (NumPy rules; -1 keeps a dim, as in ``expand``)."""
    shape = _sizes(shape, "broadcast_to")
    if len(shape) < x.ndim:
        raise RuntimeError(f"broadcast_to: can't broadcast shape {x.shape} to {shape}")
    return expand(x, shape)


def broadcast_tensors(*tensors) -> tuple:
    """The tensors broadcast to their common shape (views)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    try:
        shape = np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        raise RuntimeError(
            "broadcast_tensors: shapes " + ", ".join(str(t.shape) for t in tensors)
            + " do not broadcast"
        ) from None
    return tuple(expand(t, shape) for t in tensors)


# -- joining ---------------------------------------------------------------------------------
class Cat(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return xp_of(arrays[0]).concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        out, start = [], 0
        lead = (slice(None),) * ctx.dim
        for n, need in zip(ctx.sizes, ctx.needs_input_grad, strict=True):
            out.append(g[lead + (slice(start, start + n),)] if need else None)
            start += n
        return tuple(out)


class Stack(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, *arrays, dim):
        ctx.dim = dim
        return xp_of(arrays[0]).stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx, g):
        lead = (slice(None),) * ctx.dim
        return tuple(
            g[lead + (i,)] if need else None for i, need in enumerate(ctx.needs_input_grad)
        )


def _check_join(tensors, op: str) -> list:
    if isinstance(tensors, Tensor):
        raise TypeError(f"{op}: expected a list or tuple of tensors, got a single Tensor")
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError(f"{op}: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(t).__name__} at position {i}")
    same_device(op, *tensors)
    if any(t.dtype != tensors[0].dtype for t in tensors):  # PyTorch promotes, as torch.cat
        from ..dtypes import promote_types

        common = tensors[0].dtype
        for t in tensors[1:]:
            common = promote_types(common, t.dtype)
        tensors = [t if t.dtype == common else t.to(common) for t in tensors]
    return tensors


def cat(tensors, dim=0) -> Tensor:
    """Join tensors along an existing dim; all other dims must match."""
    tensors = _check_join(tensors, "cat")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if t.ndim == 0:
            raise RuntimeError(
                f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated"
            )
    d = _dim(dim, first.ndim, "cat")
    for i, t in enumerate(tensors[1:], 1):
        if t.ndim != first.ndim or any(
            a != b for k, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if k != d
        ):
            raise RuntimeError(
                f"cat: sizes of tensors must match except in dimension {d}; got shapes "
                f"{first.shape} (position 0) and {t.shape} (position {i})"
            )
    return Cat.apply(*tensors, dim=d)


concatenate = cat
concat = cat


def stack(tensors, dim=0) -> Tensor:
    """Join same-shaped tensors along a new dim ``dim``."""
    tensors = _check_join(tensors, "stack")
    first = tensors[0]
    d = _dim(dim, first.ndim, "stack", extra=1)
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != first.shape:
            raise RuntimeError(
                f"stack: expects each tensor to be equal size, but got {first.shape} at "
                f"position 0 and {t.shape} at position {i}"
            )
    return Stack.apply(*tensors, dim=d)


# -- splitting -------------------------------------------------------------------------------
class Split(Function):
    """Views of consecutive pieces along ``dim``; backward concatenates the gradients."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, sizes, dim):
        ctx.dim, ctx.in_shape = dim, a.shape
        lead = (slice(None),) * dim
        out, start = [], 0
        for n in sizes:
            out.append(a[lead + (slice(start, start + n),)])
            start += n
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        return xp_of(grads[0]).concatenate(grads, axis=ctx.dim), None, None


class Unbind(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = dim
        lead = (slice(None),) * dim
        return tuple(a[lead + (i,)] for i in range(a.shape[dim]))

    @staticmethod
    def backward(ctx, *grads):
        return xp_of(grads[0]).stack(grads, axis=ctx.dim), None


def _split_sizes(x, d, sizes, op):
    outs = Split.apply(x, tuple(sizes), d)
    lead = (slice(None),) * d
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return tuple(
        share_if_view(o, x, lambda a, k=lead + (slice(s, s + n),): a[k])
        for o, s, n in zip(outs, starts, sizes)
    )


def split(x, split_size_or_sections, dim=0) -> tuple:
    """Split into pieces of ``split_size`` (the last may be smaller), or of the given sizes."""
    _check_tensor(x, "split")
    d = _dim(dim, x.ndim, "split")
    n = x.shape[d]
    if isinstance(split_size_or_sections, numbers.Integral):
        size = int(split_size_or_sections)
        if size < 0 or (size == 0 and n != 0):
            raise RuntimeError(
                f"split: split_size can only be 0 if dimension size is 0, and must be "
                f"non-negative; got split_size {size} for dimension {d} of size {n}"
            )
        if n == 0:
            sizes = [0]
        else:
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise RuntimeError(
                f"split: split sizes {tuple(sizes)} must be non-negative and sum to the size "
                f"{n} of dimension {d} (tensor shape {x.shape})"
            )
    return _split_sizes(x, d, sizes, "split")


def chunk(x, chunks, dim=0) -> tuple:
    """Split into ``chunks`` pieces of equal size (the last may be smaller, or fewer pieces)."""
    _check_tensor(x, "chunk")
    if not isinstance(chunks, numbers.Integral) or chunks <= 0:
        raise RuntimeError(f"chunk: number of chunks must be a positive int, got {chunks!r}")
    d = _dim(dim, x.ndim, "chunk")
    n = x.shape[d]
    if n == 0:
        return _split_sizes(x, d, [0] * int(chunks), "chunk")
    return split(x, -(-n // int(chunks)), d)


def unbind(x, dim=0) -> tuple:
    """The slices of ``x`` along ``dim``, each without that dim (views)."""
    _check_tensor(x, "unbind")
    if x.ndim == 0:
        raise RuntimeError("unbind: dimension specified as 0 but tensor has no dimensions")
    d = _dim(dim, x.ndim, "unbind")
    if x.shape[d] == 0:
        return ()
    lead = (slice(None),) * d
    return tuple(
        share_if_view(o, x, lambda a, k=lead + (i,): a[k])
        for i, o in enumerate(Unbind.apply(x, d))
    )


def narrow(x, dim, start, length) -> Tensor:
    """The slice ``start:start+length`` of dim ``dim`` (a view)."""
    _check_tensor(x, "narrow")
    d = _dim(dim, x.ndim, "narrow")
    n = x.shape[d]
    start = int(start)
    if start < 0:
        start += n
    if not 0 <= start <= n or length < 0 or start + length > n:
        raise IndexError(
            f"narrow: start {start} + length {length} exceeds dimension {d} of size {n}"
        )
    return _split_sizes(x, d, [start, int(length), n - start - int(length)], "narrow")[1]


# -- padding ---------------------------------------------------------------------------------
class ConstantPad(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, pads, value):
        xp = xp_of(a)
        out_shape = tuple(n + lo + hi for n, (lo, hi) in zip(a.shape, pads, strict=True))
        src, dst = [], []
        for n, (lo, hi) in zip(a.shape, pads, strict=True):
            s0, s1 = max(-lo, 0), n - max(-hi, 0)
            length = max(s1 - s0, 0)
            src.append(slice(s0, s0 + length))
            d0 = max(lo, 0)
            dst.append(slice(d0, d0 + length))
        ctx.in_shape, ctx.src, ctx.dst = a.shape, tuple(src), tuple(dst)
        out = xp.full(out_shape, value, dtype=a.dtype)
        out[ctx.dst] = a[ctx.src]
        return out

    @staticmethod
    def backward(ctx, g):
        gx = xp_of(g).zeros(ctx.in_shape, dtype=g.dtype)
        gx[ctx.src] = g[ctx.dst]
        return gx, None, None


class IndexPad(Function):
    """reflect / replicate / circular padding as a gather along each padded dim."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, indices):
        xp = xp_of(a)
        ctx.in_shape = a.shape
        ctx.indices = {}
        out = a
        for d, idx in indices.items():
            idx = xp.asarray(idx)
            ctx.indices[d] = idx
            out = xp.take(out, idx, axis=d)
        return out if out is not a else a.copy()

    @staticmethod
    def backward(ctx, g):
        from .indexing import _index_add, scatter_add_graph

        xp = xp_of(g)
        shape = list(g.shape)
        for d in sorted(ctx.indices, reverse=True):
            shape[d] = ctx.in_shape[d]
            if isinstance(g, Tensor):  # create_graph: a recorded scatter-add
                g = scatter_add_graph(tuple(shape), (slice(None),) * d + (ctx.indices[d],), g)
                continue
            gx = xp.zeros(tuple(shape), dtype=g.dtype)
            _index_add(gx, (slice(None),) * d + (ctx.indices[d],), g)
            g = gx
        return g, None


def _pad_index(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    pos = np.arange(-lo, n + hi)
    if mode == "replicate":
        return np.clip(pos, 0, n - 1)
    if mode == "circular":
        return pos % n
    # reflect (no edge repeat): period 2n - 2
    if n == 1:
        return np.zeros_like(pos)
    period = 2 * n - 2
    r = pos % period
    return np.where(r < n, r, period - r)


def pad(x, pad, mode="constant", value=0) -> Tensor:  # noqa: A002 - shadows name, as torch
    """Pad ``x``; ``pad`` lists (left, right) pairs starting from the LAST dim, as in PyTorch.

    ``mode``: ``'constant'`` (fill with ``value``; negative pads crop), ``'reflect'``
    (mirror without repeating the edge), ``'replicate'`` (repeat the edge) or ``'circular'``.
    """
    _check_tensor(x, "pad")
    pad = tuple(int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise RuntimeError(
            f"pad: padding length {len(pad)} must be even and at most twice the number of "
            f"dims ({x.ndim}) of the input of shape {x.shape}"
        )
    pads = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        pads[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    for d, (lo, hi) in enumerate(pads):
        if x.shape[d] + lo + hi < 0:
            raise RuntimeError(
                f"pad: padding {(lo, hi)} of dimension {d} (size {x.shape[d]}) gives a "
                f"negative size; input shape {x.shape}, pad {pad}"
            )
    if mode == "constant":
        if isinstance(value, Tensor):
            value = value.item()
        return ConstantPad.apply(x, tuple(pads), value)
    if mode not in ("reflect", "replicate", "circular"):
        raise ValueError(
            f"pad: unknown mode {mode!r}; use 'constant', 'reflect', 'replicate' or 'circular'"
        )
    indices = {}
    for d, (lo, hi) in enumerate(pads):
        if lo == 0 and hi == 0:
            continue
        n = x.shape[d]
        if lo < 0 or hi < 0:
            raise RuntimeError(f"pad: negative padding {(lo, hi)} needs mode 'constant'")
        if mode == "reflect" and (lo >= n or hi >= n):
            raise RuntimeError(
                f"pad: reflect padding {(lo, hi)} must be smaller than the size {n} of "
                f"dimension {d} (input shape {x.shape})"
            )
        if n == 0:
            raise RuntimeError(f"pad: can't {mode}-pad dimension {d} of size 0")
        if mode == "circular" and (lo > n or hi > n):
            raise RuntimeError(
                f"pad: circular padding {(lo, hi)} can't exceed the size {n} of dimension {d}"
            )
        indices[d] = _pad_index(n, lo, hi, mode)
    return IndexPad.apply(x, indices)


# -- flip / repeat ---------------------------------------------------------------------------
class Flip(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, dims):
        ctx.dims = dims
        if not dims:
            return a.copy()
        return xp_of(a).flip(a, axis=dims).copy()

    @staticmethod
    def backward(ctx, g):
        return (xp_of(g).flip(g, axis=ctx.dims) if ctx.dims else g), None


def flip(x, *dims) -> Tensor:
    """Reverse the order of elements along ``dims`` (a copy, as in PyTorch)."""
    _check_tensor(x, "flip")
    dims = _sizes(dims, "flip")
    norm = tuple(_dim(d, x.ndim, "flip") for d in dims)
    if len(set(norm)) != len(norm):
        raise RuntimeError(f"flip: dim appears multiple times in the list of dims {dims}")
    if x.ndim == 0:
        norm = ()
    return Flip.apply(x, norm)


class Repeat(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, reps):
        shape = (1,) * (len(reps) - a.ndim) + a.shape
        ctx.in_shape, ctx.shape, ctx.reps = a.shape, shape, reps
        return xp_of(a).tile(a.reshape(shape), reps)

    @staticmethod
    def backward(ctx, g):
        inter = []
        for r, s in zip(ctx.reps, ctx.shape, strict=True):
            inter += [r, s]
        g = g.reshape(tuple(inter)).sum(axis=tuple(range(0, len(inter), 2)))
        return g.reshape(ctx.in_shape), None


def repeat(x, *sizes) -> Tensor:
    """Tile ``x`` ``sizes[i]`` times along each dim (PyTorch's ``repeat`` = ``np.tile``)."""
    _check_tensor(x, "repeat")
    sizes = _sizes(sizes, "repeat")
    if len(sizes) < x.ndim:
        raise RuntimeError(
            f"repeat: number of repeat dims {len(sizes)} ({sizes}) can not be smaller than the "
            f"number of dims of the tensor ({x.ndim}, shape {x.shape})"
        )
    if any(s < 0 for s in sizes):
        raise RuntimeError(f"repeat: repeats can't be negative, got {sizes}")
    return Repeat.apply(x, sizes)


def tile(x, *dims) -> Tensor:
    """Like ``repeat`` but fewer ``dims`` than tensor dims are padded with leading 1s."""
    _check_tensor(x, "tile")
    dims = _sizes(dims, "tile")
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)
