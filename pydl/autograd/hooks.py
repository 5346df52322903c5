"""Gradient hooks: removable handles, and the registry the backward engine consults.

``Tensor.register_hook(fn)`` runs ``fn(grad)`` when the gradient with respect to that tensor
is computed (a non-None return replaces it); ``register_post_accumulate_grad_hook(fn)``
runs ``fn(tensor)`` on a leaf after its ``.grad`` was updated. A non-leaf tensor's hooks
live on its graph node (``Context._hooks``, keyed by output index); a leaf's in
``_leaf_hooks``, keyed by id and dropped when the tensor dies, so Tensor needs no slot.
"""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict


class RemovableHandle:
    """What a ``register_*hook`` call returns: ``handle.remove()`` unregisters the hook."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


#: id(leaf) -> (weakref to the leaf, hooks on its gradient, hooks after accumulation)
_leaf_hooks: dict = {}


def _add(store: OrderedDict, hook) -> RemovableHandle:
    handle = RemovableHandle(store)
    store[handle.id] = hook
    return handle


def _leaf_entry(t):
    entry = _leaf_hooks.get(id(t))
    if entry is None or entry[0]() is not t:
        key = id(t)
        # the callback holds the dict itself: it may run at interpreter exit, after the
        # module globals were cleared
        entry = (weakref.ref(t, lambda _r, hooks=_leaf_hooks: hooks.pop(key, None)),
                 OrderedDict(), OrderedDict())
        _leaf_hooks[key] = entry
    return entry


def register_hook(t, hook) -> RemovableHandle:
    """``t.register_hook(hook)``: see :meth:`pydl.Tensor.register_hook`."""
    if not t.requires_grad:
        raise RuntimeError("register_hook: cannot register a hook on a tensor that does not "
                           "require grad")
    ctx = t._ctx
    if ctx is None:
        return _add(_leaf_entry(t)[1], hook)
    if ctx._hooks is None:
        ctx._hooks = {}
    return _add(ctx._hooks.setdefault(t._out_index, OrderedDict()), hook)


def register_post_accumulate_grad_hook(t, hook) -> RemovableHandle:
    """``t.register_post_accumulate_grad_hook(hook)``: ``hook(t)`` after ``t.grad`` is set."""
    if t._ctx is not None or not t.requires_grad:
        raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors that "
                           "require grad accumulate a .grad")
    return _add(_leaf_entry(t)[2], hook)


def run_hooks(hooks, g, shape):
    """Pass gradient ``g`` (an array, or a Tensor under create_graph) through ``hooks``."""
    from ..tensor import Tensor

    raw = not isinstance(g, Tensor)
    t = Tensor._make(g, False) if raw else g
    for hook in list(hooks.values()):
        res = hook(t)
        if res is not None:
            if not isinstance(res, Tensor) or tuple(res.shape) != tuple(shape):
                raise RuntimeError(
                    f"a tensor hook returned {type(res).__name__}"
                    f"{'' if not isinstance(res, Tensor) else ' of shape ' + str(res.shape)}; "
                    f"it must return None or a Tensor of shape {tuple(shape)}"
                )
            t = res
    return t.data if raw else t


def leaf_pre_hooks(t):
    entry = _leaf_hooks.get(id(t))
    return entry[1] if entry is not None and entry[0]() is t and entry[1] else None


def leaf_post_hooks(t):
    entry = _leaf_hooks.get(id(t))
    return entry[2] if entry is not None and entry[0]() is t and entry[2] else None
