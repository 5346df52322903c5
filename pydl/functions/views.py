"""Autograd for views and for in-place writes through them.

A *view* (``x[1:3]``, ``x.reshape(...)``, ``x.t()``, ``x.split(...)``) shares memory with
the tensor it came from. pydl records on each view its *root* (the tensor that owns the
memory) and an array function ``fn`` with ``fn(root.data)`` giving the view's data. That is
enough to keep gradients right when someone writes into a view in place::

    y = x * 1
    y[0:2].mul_(0)          # changes y too
    y.sum().backward()      # x.grad == [0, 0, 1]

``Tensor._rebase_view`` computes the view's new value with autograd, writes it into the shared
memory, and then re-points the graph:

- the root becomes ``CopySlices(old root, new view value)``: its gradient flows to the old
  root everywhere except the view's region, and to the new value inside it;
- the view becomes ``ViewOf(root)``: a plain differentiable view of the updated root.

Other views of the same root made before the write are refreshed lazily: each remembers the
root's graph node it was built from, and ``Function.apply`` rebuilds a view's graph as
``ViewOf(root)`` when the root has moved on since (``Tensor._refresh_view``).
"""

from __future__ import annotations

from ..autograd import Function
from ..tensor import Tensor
from ._util import copy, xp_of


class ViewOf(Function):
    """``fn(root)`` as a differentiable view; backward scatters into zeros of root's shape."""

    double_backward = True

    @staticmethod
    def forward(ctx, root, fn):
        ctx.fn, ctx.shape, ctx.dtype = fn, root.shape, root.dtype
        return fn(root)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            return _ViewScatter.apply(g, ctx.fn, ctx.shape), None
        groot = xp_of(g).zeros(ctx.shape, dtype=g.dtype)
        ctx.fn(groot)[...] = g
        return groot, None


class _ViewScatter(Function):
    """zeros of root's shape with ``g`` written into the view ``fn``: ViewOf's backward as a
    recorded op (create_graph); its own backward reads the view, ``fn(u)``."""

    double_backward = True

    @staticmethod
    def forward(ctx, g, fn, shape):
        ctx.fn = fn
        groot = xp_of(g).zeros(shape, dtype=g.dtype)
        fn(groot)[...] = g
        return groot

    @staticmethod
    def backward(ctx, u):
        if isinstance(u, Tensor):
            return _ViewRead.apply(u, ctx.fn, None), None, None
        return copy(ctx.fn(u)), None, None


class _ViewRead(Function):
    """A copy of the view ``fn(root)`` (the adjoint of :class:`_ViewScatter`)."""

    double_backward = True

    @staticmethod
    def forward(ctx, root, fn, _unused):
        ctx.fn, ctx.shape = fn, root.shape
        return copy(fn(root))

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            return _ViewScatter.apply(g, ctx.fn, ctx.shape), None, None
        groot = xp_of(g).zeros(ctx.shape, dtype=g.dtype)
        ctx.fn(groot)[...] = g
        return groot, None, None


class _ZeroRegion(Function):
    """``g`` with the view ``fn`` zeroed (a projection: its own adjoint)."""

    double_backward = True

    @staticmethod
    def forward(ctx, g, fn):
        ctx.fn = fn
        out = copy(g)
        fn(out)[...] = 0
        return out

    @staticmethod
    def backward(ctx, u):
        if isinstance(u, Tensor):
            return _ZeroRegion.apply(u, ctx.fn), None
        out = copy(u)
        ctx.fn(out)[...] = 0
        return out, None


class CopySlices(Function):
    """The root after ``fn(root)[...] = value``; forward gets the already written root.

    The write itself happened in place on the shared memory before this node is made, so
    forward returns ``root`` as is. Backward: the old root gets the gradient outside the
    view's region (inside, its old values were overwritten); the value gets the region.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, root, value, fn):
        ctx.fn = fn
        return root

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):
            return _ZeroRegion.apply(g, ctx.fn), _ViewRead.apply(g, ctx.fn, None), None
        g_value = ctx.fn(g).copy()
        g_root = g.copy()
        ctx.fn(g_root)[...] = 0
        return g_root, g_value, None


def mark_view(out, base, fn):
    """Record that ``out`` is the view ``fn(base.data)``, sharing base's memory and versions."""
    out._version = base._version
    if base._view is not None:
        root, parent_fn, _ = base._view
        out._view = (root, lambda a: fn(parent_fn(a)), root._ctx)
    else:
        out._view = (base, fn, base._ctx)
    return out


def share_if_view(out, base, fn):
    """``mark_view`` when ``out`` really aliases ``base``'s memory (reshape may copy)."""
    a, b = out.data, base.data
    if a.size and b.size and xp_of(b).may_share_memory(a, b):
        mark_view(out, base, fn)
    return out
