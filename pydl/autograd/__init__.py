"""Reverse-mode automatic differentiation.

A differentiable op is a subclass of :class:`Function` with two static methods that sit
together, as in PyTorch::

    class Mul(Function):
        @staticmethod
        def forward(ctx, a, b):           # a, b: raw backend arrays (numpy or cupy)
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):          # one gradient per forward input
            a, b = ctx.saved_tensors
            return grad * b, grad * a

``Mul.apply(x, y)`` unwraps Tensor arguments to arrays, runs ``forward``, wraps the result in
a Tensor and, when a gradient is needed, links it to ``ctx`` (the graph node). ``backward``
receives arrays and returns arrays (or ``None``), one per positional argument of
``forward``; gradients already have the input's shape. With ``create_graph=True`` a
Function that declares ``double_backward = True`` gets Tensors instead, and its backward is
recorded (docs/architecture.md, "Higher-order gradients").

:func:`backward` walks the graph iteratively in reverse topological order, so graphs of any
depth (a 100,000-op chain, a long RNN unroll) work without recursion.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import ml_dtypes
import numpy as np

from . import hooks as _hooks

__all__ = [
    "Function",
    "Context",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "is_grad_enabled",
    "detect_anomaly",
    "is_anomaly_enabled",
    "queue_callback",
]

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


def is_anomaly_enabled() -> bool:
    return getattr(_state, "anomaly", False)


class _GradMode(contextlib.ContextDecorator):
    """Context manager and decorator that sets whether ops record the graph."""

    enabled = True

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False

    def __call__(self, func):  # a fresh instance per call keeps nested use re-entrant
        mode = type(self)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with mode():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Ops inside record no graph: ``with pydl.no_grad(): ...`` or ``@pydl.no_grad()``."""

    enabled = False


class enable_grad(_GradMode):
    """Turn graph recording back on inside a ``no_grad`` block."""

    enabled = True


class set_grad_enabled(_GradMode):
    """``with set_grad_enabled(flag):`` records the graph only when ``flag`` is true."""

    def __init__(self, mode: bool):
        self.enabled = bool(mode)

    def __call__(self, func):
        flag = self.enabled

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(flag):
                return func(*args, **kwargs)

        return wrapper


class detect_anomaly(contextlib.ContextDecorator):
    """Raise at the first op whose forward or backward produces NaN or Inf, naming it."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled

    def __enter__(self):
        self._prev = is_anomaly_enabled()
        _state.anomaly = self.enabled
        return self

    def __exit__(self, *exc):
        _state.anomaly = self._prev
        return False


def _check_finite(array, what: str) -> None:
    kind = getattr(array.dtype, "kind", "")
    if kind not in "fc" and array.dtype != _BFLOAT16:
        return
    xp = _xp(array)
    if not bool(xp.isfinite(array).all()):
        bad = "NaN" if bool(xp.isnan(array).any()) else "Inf"
        raise FloatingPointError(f"anomaly detected: {what} produced {bad}")


def _xp(array):
    from ..backend import backend_of

    return backend_of(array).xp


class Context:
    """What a Function's forward leaves for its backward: saved arrays and flags.

    Attributes set by forward (``ctx.shape = a.shape``) are kept as they are. Arrays saved
    with :meth:`save_for_backward` are checked at backward: if the tensor that owned one was
    modified in place in between, backward raises instead of computing a wrong gradient.
    """

    # class-level defaults: set per instance only when used (keeps Function.apply cheap)
    _saved_src = ()  # per saved array: the input Tensor it is, an output index, or None
    _tensor_mode = False  # True while the engine runs backward with create_graph
    _hooks = None  # output index -> hooks registered on that output tensor (hooks.py)

    def __init__(self):
        self.needs_input_grad = ()
        self._saved = ()
        self._saved_versions = ()
        self._inputs = ()
        self._outputs_meta = ()
        self._released = False
        self._fn = None
        self._retained = None
        self._non_diff = ()

    # -- what forward keeps ---------------------------------------------------------------
    def save_for_backward(self, *arrays):
        """Keep arrays (inputs, outputs or intermediates) for backward."""
        self._saved = arrays

    def mark_non_differentiable(self, *arrays):
        """Declare outputs that never get a gradient (indices, masks)."""
        self._non_diff = {id(a) for a in arrays}

    @property
    def saved_tensors(self):
        if self._released:
            raise RuntimeError(
                f"{self._fn.__name__}: trying to backward through the graph a second time; "
                "its saved arrays were freed. Pass retain_graph=True to the first backward()."
            )
        for box, version, shape in self._saved_versions:
            if box[0] != version:
                raise RuntimeError(
                    f"{self._fn.__name__}: a tensor of shape {tuple(shape)} that this op saved "
                    f"for backward was modified by an in-place operation (it is at version "
                    f"{box[0]}, expected {version}). Use an out-of-place op (x = x + y instead "
                    "of x += y) or .clone() the tensor first."
                )
        if self._tensor_mode:
            return self._saved_as_tensors()
        return self._saved

    def output_tensor(self, index, array):
        """Output ``index`` of this node as a Tensor holding ``array`` (its value, in any
        layout-equivalent copy): for a backward under create_graph that needs the output
        it saved in another layout. Its gradient flows back into this node."""
        t = _Tensor._make(array, True)
        t._ctx = self
        t._out_index = index
        return t

    def _saved_as_tensors(self):
        """The saved arrays as Tensors linked to the graph (the create_graph path).

        A saved input is the input Tensor itself; a saved output is a fresh Tensor that is
        output ``i`` of this node (so no tensor is kept alive by the node: no cycle); any
        other array is a constant.
        """
        out = []
        for k, array in enumerate(self._saved):
            if array is None:
                out.append(None)
                continue
            src = self._saved_src[k] if k < len(self._saved_src) else None
            if src is None:  # an intermediate: a constant (numbers stay numbers)
                out.append(_Tensor._make(array, False) if hasattr(array, "dtype") else array)
            elif isinstance(src, int):
                t = _Tensor._make(array, True)
                t._ctx = self
                t._out_index = src
                out.append(t)
            else:
                out.append(src)
        return tuple(out)

    def _bind_versions(self, tensors, n_inputs, raw_outputs):
        """Record the version of every saved array that is the data of one of ``tensors``.

        ``tensors`` are the op's input tensors and then its outputs (the first ``n_inputs``
        are inputs); each saved array also remembers which one it is, for create_graph.
        ``raw_outputs`` are what forward returned (a NumPy scalar from a 0-d op is wrapped
        into a new array, so it is matched here by identity with forward's value).
        """
        versions = []
        src = []
        for array in self._saved:
            found = None
            if array is not None:
                for k, t in enumerate(tensors):
                    if t.data is array:
                        versions.append((t._version, t._version[0], array.shape))
                        found = t if k < n_inputs else k - n_inputs
                        break
                else:
                    for k, o in enumerate(raw_outputs):
                        if o is array:
                            found = k
                            break
            src.append(found)
        self._saved_versions = tuple(versions)
        self._saved_src = tuple(src)

    def _release(self):
        self._saved = ()
        self._saved_src = ()
        self._inputs = ()
        self._released = True


class Function:
    """Base class of differentiable ops; subclass it and call ``YourOp.apply(...)``.

    ``forward(ctx, *args, **kwargs)`` gets Tensor arguments as raw arrays and returns an array
    or a tuple of arrays. ``backward(ctx, *grads)`` gets one gradient array per output and
    returns one gradient (or ``None``) per positional argument of forward.

    ``double_backward = True`` declares that ``backward`` also reads correctly on Tensors
    (written with operators, methods and ``xp_of(x)``, which answers a Tensor namespace for
    a Tensor): with ``create_graph`` the engine then calls it with Tensors, recording it.
    Without it, create_graph still gives correct first derivatives through the op, but
    differentiating them again raises naming the op.
    """

    double_backward = False

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        # the hot path of every op: kept free of imports, generators and repeated lookups
        if _autocast_hook is not None:  # set while a pydl.autocast region is open (pydl/amp)
            args = _autocast_hook(cls, args)
        tensors = [a for a in args if isinstance(a, _Tensor)]
        record = False
        data_type = None
        for t in tensors:
            if t._view is not None and t._view[0]._ctx is not t._view[2]:
                t._refresh_view()  # t._sync_view(), inlined: this runs for every op
            if t._requires_grad:
                record = True
            if data_type is None:
                data_type = type(t.data)
            elif type(t.data) is not data_type or data_type is not np.ndarray:
                same_device(cls.__name__, *tensors)
        record = record and getattr(_state, "grad_enabled", True)
        ctx = Context()
        ctx._fn = cls
        if record:
            ctx.needs_input_grad = tuple(isinstance(a, _Tensor) and a._requires_grad for a in args)
        else:
            ctx.needs_input_grad = (False,) * len(args)
        raw = [a.data if isinstance(a, _Tensor) else a for a in args]
        out = cls.forward(ctx, *raw, **kwargs)
        multiple = type(out) is tuple
        outs = tuple(_as_array(o) for o in out) if multiple else (_as_array(out),)
        if getattr(_state, "anomaly", False):
            for o in outs:
                _check_finite(o, f"{cls.__name__}.forward")
        non_diff = ctx._non_diff
        results = []
        for i, o in enumerate(outs):
            differentiable = record and (o.dtype.kind == "f" or o.dtype == _BFLOAT16) and \
                id(o) not in non_diff
            t = _Tensor._make(o, differentiable)
            if differentiable:
                t._ctx = ctx
                t._out_index = i
            results.append(t)
        if record:
            # the graph edge of each input: the node that produced it *now* (a later in-place
            # op may give the tensor a new node; this op must still send its gradient here)
            ctx._inputs = tuple(
                (a, a._ctx, a._out_index) if isinstance(a, _Tensor) and a._requires_grad else None
                for a in args
            )
            ctx._outputs_meta = tuple((o.shape, o.dtype) for o in outs)
            if ctx._saved:
                ctx._bind_versions(tensors + results, len(tensors), out if multiple else (out,))
        return tuple(results) if multiple else results[0]


def same_device(op: str, *tensors) -> None:
    """Raise RuntimeError naming ``op`` and two devices unless all ``tensors`` share one.

    The one device check of pydl: ``Function.apply`` runs it for every op whose inputs are
    not all NumPy arrays, and ops that take tensors outside ``apply`` call it themselves.
    """
    dev = tensors[0].device
    for t in tensors[1:]:
        if t.device != dev:
            raise RuntimeError(
                f"{op}: expected all tensors on the same device, got {dev} and {t.device}; "
                "move one with .to(device)"
            )


_Tensor = None  # pydl.tensor.Tensor, set by tensor.py once it is defined (import cycle)
_BFLOAT16 = np.dtype(ml_dtypes.bfloat16)  # a float whose NumPy kind is "V"

#: ``hook(cls, args) -> args``, called by every ``Function.apply`` while any thread has a
#: ``pydl.autocast`` region open (pydl/amp/autocast.py sets and clears it); None otherwise,
#: so ops outside autocast pay one global read.
_autocast_hook = None


def autocast_active() -> bool:
    """True inside an enabled ``pydl.autocast`` region on this thread.

    Dtype checks of op wrappers (``a + b``, ``matmul``, ``conv2d``...) let mixed float dtypes
    through then: ``Function.apply`` casts them by autocast's op table (pydl/amp).
    """
    return getattr(_state, "autocast", None) is not None


def _as_array(value):
    """NumPy ufuncs on 0-d arrays return scalars; keep everything an array."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def _zeros_like_meta(meta, like):
    shape, dtype = meta
    return _xp(like).zeros(shape, dtype=dtype)


def _topological_order(roots, leaf_uses=None):
    """Graph nodes (contexts) reachable from ``roots``, consumers before producers.

    With a dict ``leaf_uses``, also count the edges from those nodes into each leaf
    (id(leaf) -> count): the engine writes a leaf's ``.grad`` when its count drops to 0.
    """
    order, visited = [], set()
    stack = [(ctx, False) for ctx in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for edge in node._inputs:
            if edge is None:
                continue
            if edge[1] is None:
                if leaf_uses is not None:
                    key = id(edge[0])
                    leaf_uses[key] = leaf_uses.get(key, 0) + 1
            elif id(edge[1]) not in visited:
                stack.append((edge[1], False))
    order.reverse()
    return order


class _Pass:
    """One backward pass: its end-of-pass callbacks and, when it writes leaves' ``.grad``,
    ``leaf_uses`` (id(leaf) -> edges into it not processed yet; a leaf absent from it gets
    no more gradient in this pass: never reached, or already written)."""

    __slots__ = ("callbacks", "leaf_uses")

    def __init__(self, writes_leaves):
        self.callbacks = []
        self.leaf_uses = {} if writes_leaves else None


def queue_callback(callback) -> None:
    """Run ``callback()`` when the backward pass now running ends: after every leaf's
    ``.grad`` is written and its post-accumulate-grad hooks ran (as PyTorch's
    ``Variable._execution_engine.queue_callback``). Call it from a hook during backward;
    callbacks run in the order queued, and only if the pass completes without an error.
    """
    current = getattr(_state, "backward_pass", None)
    if current is None:
        raise RuntimeError("queue_callback: no backward pass is running; call it from a hook "
                           "during backward")
    current.callbacks.append(callback)


def _current_pass():
    """The :class:`_Pass` now running (a new object per pass), or None outside backward."""
    return getattr(_state, "backward_pass", None)


def _in_pass(run, args):
    """``run(*args, leaf_uses)`` as one backward pass, then the callbacks it queued
    (``args`` end with ``capture``: the pass writes leaves unless it captures)."""
    outer = getattr(_state, "backward_pass", None)
    current = _state.backward_pass = _Pass(args[-1] is None)
    try:
        result = run(*args, current.leaf_uses)
        queue = current.callbacks
        i = 0
        while i < len(queue):  # a callback may queue another
            queue[i]()
            i += 1
    finally:
        _state.backward_pass = outer
    return result


def _leaves_done(ctx, leaf_uses, leaf_grads, accumulate):
    """Node ``ctx`` was processed: count down its edges into leaves; a leaf whose last
    edge this was has its final gradient, so ``accumulate(leaf, gradient)`` it now."""
    for edge in ctx._inputs:
        if edge is not None and edge[1] is None:
            key = id(edge[0])
            left = leaf_uses[key] - 1
            leaf_uses[key] = left
            if not left:
                del leaf_uses[key]
                if key in leaf_grads:
                    accumulate(*leaf_grads.pop(key))


def _run(outputs, grad_outputs, retain_graph, capture=None, create_graph=False):
    """Propagate gradients from ``outputs``; accumulate into leaves, or into ``capture``.

    ``capture`` maps id(tensor) -> slot index for pydl.grad(); when given, leaves' ``.grad``
    is left untouched and the gradients of the captured tensors are returned.

    Gradients are raw arrays (the fast path), or, with ``create_graph``, Tensors: each
    Function's backward then runs with grad recording on, its saved arrays come back as
    Tensors (``Context.saved_tensors``), and what it computes is itself a graph.
    """
    args = (outputs, grad_outputs, retain_graph, capture)
    if create_graph:
        with enable_grad():
            return _in_pass(_run_graph, args)
    return _in_pass(_run_arrays, args)


def _run_arrays(outputs, grad_outputs, retain_graph, capture, leaf_uses):
    """``_run`` without create_graph: gradients are raw arrays.

    A leaf's ``.grad`` is written (and its post-accumulate-grad hooks run) as soon as the
    last node with an edge into it was processed, while backward goes on with the rest of
    the graph (DistributedDataParallel starts its all-reduces from those hooks); leaves
    still waiting at the end (outputs that are leaves, edges from skipped nodes) are written
    then.
    """
    anomaly = is_anomaly_enabled()
    pending = {}  # id(ctx) -> list of gradient arrays, one per output of that ctx
    leaf_grads = {}  # id(leaf) -> (leaf, gradient), until the leaf's last edge is processed
    captured = {}
    used = set()  # ids of arrays already handed to a leaf: the next leaf gets a copy
    send = _sender(capture, pending, leaf_grads, captured, _as_array)
    roots = _roots(outputs, grad_outputs, send, used, leaf_uses)

    def accumulate(t, g):
        _accumulate_array(t, g, used)

    for ctx in _topological_order(roots, leaf_uses):
        slots = pending.pop(id(ctx), None)
        if slots is None:
            if leaf_uses is not None:
                _leaves_done(ctx, leaf_uses, leaf_grads, accumulate)
            continue
        _check_not_released(ctx)
        ref = next(s for s in slots if s is not None)
        grads = [
            s if s is not None else _zeros_like_meta(m, ref)
            for s, m in zip(slots, ctx._outputs_meta)
        ]
        if ctx._hooks:
            _node_hooks(ctx, grads)
        if ctx._retained:
            for idx, t in ctx._retained.items():
                t.grad = _Tensor._make(grads[idx].copy(), False)
        in_grads = ctx._fn.backward(ctx, *grads)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        inputs = ctx._inputs
        if len(in_grads) != len(inputs):
            _wrong_count(ctx, in_grads)
        for edge, g in zip(inputs, in_grads):  # the hot loop: _checked_grads, inlined
            if edge is None:
                continue
            inp = edge[0]
            if g is not None:
                if g.shape != inp.data.shape:
                    _wrong_shape(ctx, g, inp)
                if anomaly:
                    _check_finite(g, f"{ctx._fn.__name__}.backward")
                if g.dtype != inp.data.dtype:
                    g = g.astype(inp.data.dtype)
            if edge[1] is None and leaf_uses is not None:  # a leaf: _leaves_done, inlined
                key = id(inp)
                left = leaf_uses[key] - 1
                if left:  # more edges into it to come: hold the gradient
                    leaf_uses[key] = left
                else:  # its last edge: the gradient is final, write it now
                    del leaf_uses[key]
                    if key in leaf_grads:
                        held = leaf_grads.pop(key)[1]
                        g = held if g is None else _as_array(held + g)
                    if g is not None:
                        _accumulate_array(inp, g, used)
                    continue
            if g is not None:
                send(inp, edge[1], edge[2], g)
        if not retain_graph:
            ctx._release()

    for t, g in leaf_grads.values():
        _accumulate_array(t, g, used)
    return captured


def _accumulate_array(t, g, used):
    """Add gradient array ``g`` into leaf ``t``'s ``.grad``, with the leaf's hooks."""
    hooked = _hooks._leaf_hooks
    pre = hooked and _hooks.leaf_pre_hooks(t)
    if pre:
        g = _hooks.run_hooks(pre, g, t.shape)
    if id(g) in used or getattr(g, "base", None) is not None:
        g = g.copy()  # never let two leaves (or the caller) share one gradient array
    used.add(id(g))
    if t.grad is None:
        t.grad = _Tensor._make(g, False)
    else:
        t.grad = _Tensor._make(_as_array(t.grad.data + g), False)
    post = hooked and _hooks.leaf_post_hooks(t)
    if post:
        for hook in list(post.values()):
            hook(t)


def _accumulate_tensor(t, g, used):
    """``_accumulate_array`` for a Tensor gradient (create_graph): ``.grad`` keeps its graph."""
    pre = _hooks._leaf_hooks and _hooks.leaf_pre_hooks(t)
    if pre:
        g = _hooks.run_hooks(pre, g, t.shape)
    if id(g.data) in used:
        g = g.clone()  # never let two leaves (or the caller) share one gradient array
    used.add(id(g.data))
    t.grad = g if t.grad is None else t.grad + g
    post = _hooks._leaf_hooks and _hooks.leaf_post_hooks(t)
    if post:
        for hook in list(post.values()):
            hook(t)


def _node_hooks(ctx, grads):
    """Run the hooks registered on a node's output tensors over their gradients."""
    for idx, hooks in ctx._hooks.items():
        if hooks:
            grads[idx] = _hooks.run_hooks(hooks, grads[idx], ctx._outputs_meta[idx][0])


def _same(g):
    return g


def _sender(capture, pending, leaf_grads, captured, wrap):
    """The function that adds a gradient ``g`` to output ``index`` of graph node ``node``
    (tensor ``t``): into ``pending`` (per node), ``leaf_grads`` or ``captured``. ``wrap``
    keeps NumPy scalars arrays (``_as_array``) or, for Tensors, is ``_same``."""

    def send(t, node, index, g):
        g = wrap(g)
        if capture is not None and id(t) in capture:
            prev = captured.get(id(t))
            captured[id(t)] = g if prev is None else wrap(prev + g)
            if node is None:
                return
        if node is not None:
            slots = pending.setdefault(id(node), [None] * len(node._outputs_meta))
            prev = slots[index]
            slots[index] = g if prev is None else wrap(prev + g)
        elif capture is None and t.requires_grad:
            prev = leaf_grads.get(id(t))
            leaf_grads[id(t)] = (t, g if prev is None else wrap(prev[1] + g))

    return send


def _roots(outputs, grad_outputs, send, used, leaf_uses=None):
    """Seed ``send`` with each output's gradient; return the graph nodes to start from.

    An output that is a leaf gets one use in ``leaf_uses`` that no edge counts down: it is
    written at the end of the pass."""
    roots = []
    for t, g in zip(outputs, grad_outputs):
        if leaf_uses is not None and t._ctx is None:
            leaf_uses[id(t)] = leaf_uses.get(id(t), 0) + 1
        if not t.requires_grad:
            raise RuntimeError(
                "element of the outputs does not require grad and has no grad_fn: nothing "
                "to differentiate (did you compute it under no_grad, or from tensors without "
                "requires_grad=True?)"
            )
        used.add(id(g.data) if isinstance(g, _Tensor) else id(g))
        t._sync_view()
        send(t, t._ctx, t._out_index, g)
        if t._ctx is not None:
            roots.append(t._ctx)
    return roots


def _check_not_released(ctx):
    if ctx._released:
        raise RuntimeError(
            f"{ctx._fn.__name__}: trying to backward through the graph a second time; its "
            "saved arrays were freed. Pass retain_graph=True to the first backward()."
        )


def _wrong_count(ctx, in_grads):
    raise RuntimeError(
        f"{ctx._fn.__name__}.backward returned {len(in_grads)} gradients but forward "
        f"took {len(ctx._inputs)} inputs"
    )


def _wrong_shape(ctx, g, inp):
    raise RuntimeError(
        f"{ctx._fn.__name__}.backward returned a gradient of shape {tuple(g.shape)} "
        f"for an input of shape {tuple(inp.data.shape)}"
    )


def _checked_grads(ctx, in_grads, anomaly):
    """(edge, gradient) pairs of a node's backward result, checked for count and shape."""
    if not isinstance(in_grads, tuple):
        in_grads = (in_grads,)
    inputs = ctx._inputs
    if len(in_grads) != len(inputs):
        _wrong_count(ctx, in_grads)
    for edge, g in zip(inputs, in_grads):
        if g is None or edge is None:
            continue
        inp = edge[0]
        if g.shape != inp.data.shape:
            _wrong_shape(ctx, g, inp)
        if anomaly:
            _check_finite(g.data if isinstance(g, _Tensor) else g, f"{ctx._fn.__name__}.backward")
        yield edge, g


def _run_graph(outputs, grad_outputs, retain_graph, capture, leaf_uses):
    """``_run`` with create_graph: gradients are Tensors and every step is recorded."""
    Tensor = _Tensor
    anomaly = is_anomaly_enabled()
    pending, leaf_grads, captured, used = {}, {}, {}, set()
    send = _sender(capture, pending, leaf_grads, captured, _same)
    roots = _roots(outputs, grad_outputs, send, used, leaf_uses)  # leaves as in _run_arrays

    def accumulate(t, g):
        _accumulate_tensor(t, g, used)

    for ctx in _topological_order(roots, leaf_uses):
        slots = pending.pop(id(ctx), None)
        if slots is None:
            if leaf_uses is not None:
                _leaves_done(ctx, leaf_uses, leaf_grads, accumulate)
            continue
        _check_not_released(ctx)
        ref = next(s for s in slots if s is not None)
        grads = [
            s if s is not None else Tensor._make(_zeros_like_meta(m, ref.data), False)
            for s, m in zip(slots, ctx._outputs_meta)
        ]
        if ctx._hooks:
            _node_hooks(ctx, grads)
        if ctx._retained:
            for idx, t in ctx._retained.items():
                t.grad = grads[idx]
        if getattr(ctx._fn, "double_backward", False):
            ctx._tensor_mode = True
            try:
                in_grads = ctx._fn.backward(ctx, *grads)
            finally:
                ctx._tensor_mode = False
        else:
            in_grads = _backward_without_graph(ctx, grads)
        depends = None
        for edge, g in _checked_grads(ctx, in_grads, anomaly):
            if not isinstance(g, Tensor):
                g = Tensor._make(_as_array(g), False)
            if not g._requires_grad:
                # piecewise-linear ops (relu, clamp...): the gradient is constant in what it
                # came from; as in PyTorch it still has a graph, whose derivative is zero
                if depends is None:
                    depends = [t for t in grads if t._requires_grad] + [
                        e[0] for e in ctx._inputs if e is not None and e[0]._requires_grad]
                if depends:
                    g = _ZeroDerivative.apply(g, *depends)
            if g.dtype != edge[0].data.dtype:
                g = g.to(edge[0].data.dtype)
            send(edge[0], edge[1], edge[2], g)
        if leaf_uses is not None:
            _leaves_done(ctx, leaf_uses, leaf_grads, accumulate)
        if not retain_graph:
            ctx._release()

    for t, g in leaf_grads.values():
        accumulate(t, g)
    return captured


class _ZeroDerivative(Function):
    """``value``, recorded as a function of ``depends`` whose derivative is zero."""

    double_backward = True  # its backward is constant zeros: a third derivative passes it

    @staticmethod
    def forward(ctx, value, *depends):
        ctx.metas = [(d.shape, d.dtype) for d in depends]
        return value.copy()

    @staticmethod
    def backward(ctx, g):
        return (None,) + tuple(_zeros_like_meta(m, g.data if isinstance(g, _Tensor) else g)
                               for m in ctx.metas)


class _NoDoubleBackward(Function):
    """Stands for the backward of an op whose backward is not differentiable yet.

    Its outputs are that op's input gradients, computed by the raw-array backward; they are
    correct, and differentiating them again raises naming the op (never a silently wrong
    second derivative).
    """

    @staticmethod
    def forward(ctx, *unused, results, op):
        ctx.op = op
        return results if len(results) > 1 else results[0]

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(
            f"{ctx.op}: its backward is not differentiable yet, so a gradient computed with "
            "create_graph=True cannot be differentiated through it again (double backward "
            f"of {ctx.op} is not implemented)"
        )


def _backward_without_graph(ctx, grads):
    """Run ``ctx``'s raw-array backward; tie its results to a :class:`_NoDoubleBackward`."""
    raw = ctx._fn.backward(ctx, *(g.data for g in grads))
    if not isinstance(raw, tuple):
        raw = (raw,)
    present = [k for k, g in enumerate(raw) if g is not None]
    if not present:
        return raw
    depends = list(grads) + [e[0] for e in ctx._inputs if e is not None]
    made = _NoDoubleBackward.apply(
        *depends, results=tuple(_as_array(raw[k]) for k in present), op=ctx._fn.__name__
    )
    made = made if isinstance(made, tuple) else (made,)
    out = list(raw)
    for k, t in zip(present, made):
        out[k] = t
    return tuple(out)


def _default_grads(outputs, grad_outputs, create_graph=False, op="backward()"):
    """One gradient per output: arrays, or Tensors when ``create_graph``."""
    from ..tensor import Tensor

    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif len(grad_outputs) != len(outputs):
        raise RuntimeError(
            f"{op}: got {len(grad_outputs)} gradients for {len(outputs)} outputs"
        )
    result = []
    for i, (t, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: output {i} is a {type(t).__name__}, not a Tensor")
        if g is None:
            if t.data.size != 1:
                raise RuntimeError(
                    f"{op}: output {i} of shape {tuple(t.shape)} needs a gradient: grad can be "
                    "implicitly created only for scalar outputs. Pass one of that shape "
                    "(gradient=/grad_outputs=pydl.ones_like(out)), or reduce first, e.g. "
                    "out.sum().backward()"
                )
            g = _xp(t.data).ones_like(t.data)
        elif isinstance(g, Tensor):
            g = g if create_graph else g.data
        else:
            g = _xp(t.data).asarray(g, dtype=t.data.dtype)
        if g.shape != t.data.shape:
            raise RuntimeError(
                f"{op}: gradient of shape {tuple(g.shape)} given for output {i} of shape "
                f"{tuple(t.shape)}"
            )
        if create_graph and not isinstance(g, Tensor):
            g = Tensor._make(g, False)
        result.append(g)
    return result


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensors)/d(leaf) into every leaf's ``.grad``.

    With ``create_graph=True`` the backward pass is itself recorded, so the gradients in
    ``.grad`` can be differentiated again; ``retain_graph`` defaults to ``create_graph``.
    """
    from ..tensor import Tensor

    if isinstance(tensors, Tensor):
        tensors = [tensors]
        if grad_tensors is not None:
            grad_tensors = [grad_tensors]
    tensors = list(tensors)
    if retain_graph is None:
        retain_graph = create_graph
    if grad_tensors is None and not create_graph and len(tensors) == 1 and \
            type(tensors[0]) is Tensor and tensors[0].data.size == 1:
        grads = [_xp(tensors[0].data).ones_like(tensors[0].data)]  # loss.backward(): fast
    else:
        grads = _default_grads(tensors, grad_tensors, create_graph)
    _run(tensors, grads, retain_graph, create_graph=create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned (not stored in ``.grad``).

    ``grad_outputs`` weights non-scalar outputs (needed unless each output has one
    element); ``create_graph=True`` records the computation so the results can be
    differentiated again (``retain_graph`` defaults to it); an input the outputs do not
    depend on raises unless ``allow_unused=True``, which gives ``None`` for it.

    >>> x = pydl.tensor(3.0, requires_grad=True)
    >>> (dx,) = pydl.autograd.grad(x * x, [x], create_graph=True)   # 6.0, with a graph
    >>> (ddx,) = pydl.autograd.grad(dx, [x])                         # 2.0
    """
    from ..tensor import Tensor

    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    if grad_outputs is not None and not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not inputs:
        raise RuntimeError("grad: inputs is empty; pass the tensors to differentiate against")
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"grad: input {i} is a {type(t).__name__}, not a Tensor")
        if not t.requires_grad:
            raise RuntimeError(
                f"grad: input {i} (shape {tuple(t.shape)}) does not require grad; set "
                "requires_grad=True on it before computing the outputs"
            )
    if retain_graph is None:
        retain_graph = create_graph
    capture = {id(t): i for i, t in enumerate(inputs)}
    grads = _default_grads(outputs, grad_outputs, create_graph, "grad")
    got = _run(outputs, grads, retain_graph, capture, create_graph)
    result = []
    for i, t in enumerate(inputs):
        g = got.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {i} (shape {tuple(t.shape)}) was not used to compute the "
                "outputs; pass allow_unused=True to get None for it"
            )
        result.append(g if g is None or isinstance(g, Tensor) else Tensor._make(g, False))
    return tuple(result)
