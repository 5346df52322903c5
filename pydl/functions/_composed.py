"""Double backward of fused ops by composition: the vector-Jacobian product of a function
written with differentiable ops, as one recorded op that can be differentiated again.

A fused op (an LSTM sequence, a normalisation, a cross-entropy kernel) has a fast raw-array
backward that is not itself differentiable. Under ``create_graph`` its backward instead calls
:func:`composed_vjp` with a *reference* function that computes the op's outputs from its
inputs with pydl's double-differentiable ops (``sigmoid``, ``matmul``, ``log_softmax``...).
:class:`ComposedVJP` evaluates the VJP by running the reference on fresh leaves and calling
the engine on that private graph (which stops at those leaves, so nothing upstream of the
op is touched); its own backward is again a :func:`composed_vjp`, of the VJP, so every order
of derivative is available (each order recomputes the reference once more: meant for
gradient penalties and Hessian-vector products, not for the training loop).

:func:`graph_inputs` gives the op's inputs as Tensors for such a backward: the input tensor
itself where it needs a gradient (the graph edge), otherwise the constant kept by forward
with :func:`keep_constants` (only inputs that need no gradient are kept, so the first-order
path holds no extra memory for activations it differentiates).
"""

from __future__ import annotations

from ..autograd import Function, enable_grad
from ..tensor import Tensor


def keep_constants(ctx, *arrays):
    """In forward: remember the inputs that need no gradient (the rest come from the graph)."""
    need = ctx.needs_input_grad
    ctx.constants = tuple(None if (k < len(need) and need[k]) else a
                          for k, a in enumerate(arrays))


def graph_inputs(ctx, count):
    """The first ``count`` inputs of ``ctx``'s op as Tensors (None stays None)."""
    out = []
    consts = getattr(ctx, "constants", ())
    for k in range(count):
        edge = ctx._inputs[k] if k < len(ctx._inputs) else None
        if edge is not None:
            t = edge[0]
            if t._ctx is not edge[1] or (edge[1] is not None and t._out_index != edge[2]):
                raise RuntimeError(
                    f"{ctx._fn.__name__}: input {k} (shape {tuple(t.shape)}) was modified by "
                    "an in-place operation after this op used it, so its create_graph "
                    "backward cannot rebuild the op from it; use an out-of-place op or "
                    ".clone() the tensor first"
                )
            out.append(t)
            continue
        value = consts[k] if k < len(consts) else None
        out.append(None if value is None else _constant(value))
    return out


def _constant(value):
    return value if isinstance(value, Tensor) else Tensor._make(value, False)


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _vjp_graph(fn, xs, us):
    """<fn(xs), us> differentiated with respect to the float tensors ``xs`` (a graph)."""
    from ..autograd import grad

    leaves = [x for x in xs if x is not None and x.requires_grad]
    outs = _as_tuple(fn(*xs))
    pairs = [(o, u) for o, u in zip(outs, us) if u is not None and o.requires_grad]
    if not leaves or not pairs:
        return tuple(None if x is None else x.detach() * 0 for x in xs)
    got = grad([o for o, _ in pairs], leaves, grad_outputs=[u for _, u in pairs],
               create_graph=True, allow_unused=True)
    got = iter(got)
    result = []
    for x in xs:
        if x is None or not x.requires_grad:
            result.append(None)
            continue
        g = next(got)
        result.append(g if g is not None else x * 0)  # unused: a zero that keeps the graph
    return tuple(result)


def _leaf(array):
    if array is None:
        return None
    return Tensor._make(array, array.dtype.kind == "f")


class ComposedVJP(Function):
    """The VJP of ``fn`` at inputs ``xs`` with cotangents ``us`` (``n_in`` inputs first)."""

    double_backward = True

    @staticmethod
    def forward(ctx, *arrays, fn, n_in):
        ctx.fn, ctx.n_in = fn, n_in
        ctx.save_for_backward(*arrays)
        with enable_grad():
            xs = [_leaf(a) for a in arrays[:n_in]]
            us = [None if u is None else Tensor._make(u, False) for u in arrays[n_in:]]
            grads = _vjp_graph(fn, xs, us)
        present = [g.data for g in grads if g is not None]
        ctx.present = tuple(g is not None for g in grads)
        return tuple(present) if len(present) != 1 else present[0]

    @staticmethod
    def backward(ctx, *ws):
        saved = ctx.saved_tensors
        fn, n_in, present = ctx.fn, ctx.n_in, ctx.present

        def vjp(*args):
            got = _vjp_graph(fn, list(args[:n_in]), list(args[n_in:]))
            return tuple(g for g, p in zip(got, present) if p)

        return composed_vjp(vjp, list(saved), list(ws))


def composed_vjp(fn, xs, us):
    """Gradients of ``<fn(*xs), us>`` for each of ``xs`` (None where an input is None): a
    recorded :class:`ComposedVJP` when any of ``xs``/``us`` is a Tensor, else raw arrays.

    ``xs`` are float tensors/arrays or None (indices and other constants belong in ``fn``'s
    closure); ``us`` holds one cotangent (or None) per output of ``fn``.
    """
    if not any(isinstance(v, Tensor) for v in list(xs) + list(us)):
        with enable_grad():
            got = _vjp_graph(fn, [_leaf(a) for a in xs],
                             [None if u is None else Tensor._make(u, False) for u in us])
        return tuple(None if g is None else g.data for g in got)
    xs = [None if x is None else _constant(x) for x in xs]
    us = [None if u is None else _constant(u) for u in us]
    made = ComposedVJP.apply(*xs, *us, fn=fn, n_in=len(xs))
    made = iter(made if isinstance(made, tuple) else (made,))
    return tuple(None if x is None else next(made) for x in xs)
