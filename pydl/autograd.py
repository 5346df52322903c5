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
``forward``; gradients already have the input's shape.

:func:`backward` walks the graph iteratively in reverse topological order, so graphs of any
depth (a 100,000-op chain, a long RNN unroll) work without recursion.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

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
    if kind not in "fc":
        return
    xp = _xp(array)
    if not bool(xp.isfinite(array).all()):
        bad = "NaN" if bool(xp.isnan(array).any()) else "Inf"
        raise FloatingPointError(f"anomaly detected: {what} produced {bad}")


def _xp(array):
    from .backend import backend_of

    return backend_of(array).xp


class Context:
    """What a Function's forward leaves for its backward: saved arrays and flags.

    Attributes set by forward (``ctx.shape = a.shape``) are kept as they are. Arrays saved
    with :meth:`save_for_backward` are checked at backward: if the tensor that owned one was
    modified in place in between, backward raises instead of computing a wrong gradient.
    """

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
        return self._saved

    def _bind_versions(self, tensors):
        """Record the version of every saved array that is the data of one of ``tensors``."""
        versions = []
        for array in self._saved:
            if array is None:
                continue
            for t in tensors:
                if t.data is array:
                    versions.append((t._version, t._version[0], array.shape))
                    break
        self._saved_versions = tuple(versions)

    def _release(self):
        self._saved = ()
        self._inputs = ()
        self._released = True


class Function:
    """Base class of differentiable ops; subclass it and call ``YourOp.apply(...)``.

    ``forward(ctx, *args, **kwargs)`` gets Tensor arguments as raw arrays and returns an array
    or a tuple of arrays. ``backward(ctx, *grads)`` gets one gradient array per output and
    returns one gradient (or ``None``) per positional argument of forward.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        # the hot path of every op: kept free of imports, generators and repeated lookups
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
            differentiable = record and o.dtype.kind == "f" and id(o) not in non_diff
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
                ctx._bind_versions(tensors + results)
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


def _as_array(value):
    """NumPy ufuncs on 0-d arrays return scalars; keep everything an array."""
    return np.asarray(value) if isinstance(value, np.generic) else value


def _zeros_like_meta(meta, like):
    shape, dtype = meta
    return _xp(like).zeros(shape, dtype=dtype)


def _topological_order(roots):
    """Graph nodes (contexts) reachable from ``roots``, consumers before producers."""
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
            if edge is not None and edge[1] is not None and id(edge[1]) not in visited:
                stack.append((edge[1], False))
    order.reverse()
    return order


def _run(outputs, grad_outputs, retain_graph, capture=None):
    """Propagate gradients from ``outputs``; accumulate into leaves, or into ``capture``.

    ``capture`` maps id(tensor) -> slot index for pydl.grad(); when given, leaves' ``.grad``
    is left untouched and the gradients of the captured tensors are returned.
    """
    Tensor = _Tensor
    anomaly = is_anomaly_enabled()
    pending = {}  # id(ctx) -> list of gradient arrays, one per output of that ctx
    leaf_grads = {}  # id(leaf) -> (leaf, gradient)
    captured = {}
    used = set()  # ids of arrays already handed to a leaf: the next leaf gets a copy

    def send(t, node, index, g):
        """Add gradient ``g`` to output ``index`` of graph node ``node`` (tensor ``t``)."""
        g = _as_array(g)
        if capture is not None and id(t) in capture:
            prev = captured.get(id(t))
            captured[id(t)] = g if prev is None else _as_array(prev + g)
            if node is None:
                return
        if node is not None:
            slots = pending.setdefault(id(node), [None] * len(node._outputs_meta))
            prev = slots[index]
            slots[index] = g if prev is None else _as_array(prev + g)
        elif capture is None and t.requires_grad:
            prev = leaf_grads.get(id(t))
            leaf_grads[id(t)] = (t, g if prev is None else _as_array(prev[1] + g))

    roots = []
    for t, g in zip(outputs, grad_outputs):
        if not t.requires_grad:
            raise RuntimeError(
                "element of the outputs does not require grad and has no grad_fn: nothing "
                "to differentiate (did you compute it under no_grad, or from tensors without "
                "requires_grad=True?)"
            )
        used.add(id(g))
        t._sync_view()
        send(t, t._ctx, t._out_index, g)
        if t._ctx is not None:
            roots.append(t._ctx)

    for ctx in _topological_order(roots):
        slots = pending.pop(id(ctx), None)
        if slots is None:
            continue
        if ctx._released:
            raise RuntimeError(
                f"{ctx._fn.__name__}: trying to backward through the graph a second time; its "
                "saved arrays were freed. Pass retain_graph=True to the first backward()."
            )
        ref = next(s for s in slots if s is not None)
        grads = [
            s if s is not None else _zeros_like_meta(m, ref)
            for s, m in zip(slots, ctx._outputs_meta)
        ]
        if ctx._retained:
            for idx, t in ctx._retained.items():
                t.grad = Tensor._make(grads[idx].copy(), False)
        in_grads = ctx._fn.backward(ctx, *grads)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        inputs = ctx._inputs
        if len(in_grads) != len(inputs):
            raise RuntimeError(
                f"{ctx._fn.__name__}.backward returned {len(in_grads)} gradients but forward "
                f"took {len(inputs)} inputs"
            )
        for edge, g in zip(inputs, in_grads):
            if g is None or edge is None:
                continue
            inp = edge[0]
            if g.shape != inp.data.shape:
                raise RuntimeError(
                    f"{ctx._fn.__name__}.backward returned a gradient of shape {tuple(g.shape)} "
                    f"for an input of shape {tuple(inp.data.shape)}"
                )
            if anomaly:
                _check_finite(g, f"{ctx._fn.__name__}.backward")
            if g.dtype != inp.data.dtype:
                g = g.astype(inp.data.dtype)
            send(inp, edge[1], edge[2], g)
        if not retain_graph:
            ctx._release()

    for t, g in leaf_grads.values():
        if id(g) in used or getattr(g, "base", None) is not None:
            g = g.copy()  # never let two leaves (or the caller) share one gradient array
        used.add(id(g))
        if t.grad is None:
            t.grad = Tensor._make(g, False)
        else:
            t.grad = Tensor._make(_as_array(t.grad.data + g), False)
    return captured


def _default_grads(outputs, grad_outputs):
    from .tensor import Tensor

    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    arrays = []
    for t, g in zip(outputs, grad_outputs):
        if g is None:
            if t.data.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {tuple(t.shape)} needs a gradient: it is "
                    "only implicit for single-element outputs. Pass gradient=pydl.ones_like(out) "
                    "(or reduce first, e.g. out.sum().backward())"
                )
            g = _xp(t.data).ones_like(t.data)
        elif isinstance(g, Tensor):
            g = g.data
        else:
            g = _xp(t.data).asarray(g, dtype=t.data.dtype)
        if g.shape != t.data.shape:
            raise RuntimeError(
                f"gradient of shape {tuple(g.shape)} given for an output of shape "
                f"{tuple(t.shape)}"
            )
        arrays.append(g)
    return arrays


def backward(tensors, grad_tensors=None, retain_graph=False):
    """Accumulate d(tensors)/d(leaf) into every leaf's ``.grad``."""
    from .tensor import Tensor

    if isinstance(tensors, Tensor):
        tensors = [tensors]
        if grad_tensors is not None:
            grad_tensors = [grad_tensors]
    tensors = list(tensors)
    _run(tensors, _default_grads(tensors, grad_tensors), retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, returned (not stored in ``.grad``).

    >>> x = pydl.tensor(3.0, requires_grad=True)
    >>> (dx,) = pydl.grad(x * x, [x])   # 6.0
    """
    from .tensor import Tensor

    single_out = isinstance(outputs, Tensor)
    outputs = [outputs] if single_out else list(outputs)
    if grad_outputs is not None and single_out and not isinstance(grad_outputs, (list, tuple)):
        grad_outputs = [grad_outputs]
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for t in inputs:
        if not t.requires_grad:
            raise RuntimeError("pydl.grad: an input does not require grad")
    capture = {id(t): i for i, t in enumerate(inputs)}
    got = _run(outputs, _default_grads(outputs, grad_outputs), retain_graph, capture)
    result = []
    for t in inputs:
        g = got.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                "pydl.grad: one of the inputs was not used to compute the outputs; pass "
                "allow_unused=True to get None for it"
            )
        result.append(None if g is None else Tensor._make(g, False))
    return tuple(result)
