"""Higher-order helpers built on ``grad(..., create_graph=True)``, for small problems.

``vjp``, ``jvp`` (by the double-vjp trick: the vjp is linear in its cotangent, so
differentiating it with respect to the cotangent gives the jvp), ``hvp``, ``jacobian`` and
``hessian`` take a function of Tensors and Tensor inputs, as ``torch.autograd.functional``.
``jacobian`` and ``hessian`` run one backward pass per output element.
"""

from __future__ import annotations

from . import enable_grad, grad

__all__ = ["vjp", "jvp", "hvp", "jacobian", "hessian"]


def _prepare(inputs, create_graph):
    from ..tensor import Tensor

    single = isinstance(inputs, Tensor)
    xs = [inputs] if single else list(inputs)
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs[{i}] is a {type(x).__name__}, not a Tensor")
        if x.dtype.kind != "f":
            raise TypeError(f"inputs[{i}] must be floating point to be differentiated")
    # differentiate with respect to fresh leaves, so the caller's tensors keep no .grad
    xs = [x if create_graph and x.requires_grad else x.detach().requires_grad_() for x in xs]
    return single, xs


def _as_list(v, n, what):
    from ..tensor import Tensor

    vs = [v] if isinstance(v, Tensor) else list(v)
    if len(vs) != n:
        raise ValueError(f"{what}: expected {n} tensors, got {len(vs)}")
    return vs


def _zeros_for_none(gs, xs):
    from .. import creation

    return [creation.zeros_like(x) if g is None else g for g, x in zip(gs, xs)]


def _finish(gs, single, create_graph):
    gs = [g if create_graph else g.detach() for g in gs]
    return gs[0] if single else tuple(gs)


def vjp(func, inputs, v=None, create_graph=False):
    """``(func(inputs), v^T J)``: the vector-Jacobian product at ``inputs``.

    ``v`` has the output's shape (may be omitted for a single-element output).

    >>> out, g = vjp(lambda x: (x ** 2).sum(), pydl.tensor([1.0, 2.0]))   # g = [2., 4.]
    """
    single, xs = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*xs)
        gs = grad(out, xs, grad_outputs=v, create_graph=create_graph, allow_unused=True)
    result = _finish(_zeros_for_none(gs, xs), single, create_graph)
    return (out if create_graph else out.detach()), result


def jvp(func, inputs, v=None, create_graph=False):
    """``(func(inputs), J v)``: the Jacobian-vector product at ``inputs`` (single output).

    Computed as the derivative of the vjp with respect to its cotangent ``u``:
    ``d/du <u, J^T u> ... = J v``. ``v`` has the inputs' shapes (optional when each input
    has one element).
    """
    from .. import creation

    single, xs = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*xs)
        if v is None:
            for x in xs:
                if x.numel() != 1:
                    raise RuntimeError("jvp: v is needed unless each input has one element")
            vs = [creation.ones_like(x) for x in xs]
        else:
            vs = _as_list(v, len(xs), "jvp: v")
        u = creation.zeros_like(out).requires_grad_()
        gs = grad(out, xs, grad_outputs=u, create_graph=True, allow_unused=True)
        pairs = [(g, w) for g, w in zip(gs, vs) if g is not None]
        if not pairs:
            jv = creation.zeros_like(out)
        else:
            inner = sum((g * w).sum() for g, w in pairs)
            (jv,) = grad(inner, [u], create_graph=create_graph, allow_unused=True)
            jv = creation.zeros_like(out) if jv is None else jv
    return (out if create_graph else out.detach()), (jv if create_graph else jv.detach())


def hvp(func, inputs, v, create_graph=False):
    """``(func(inputs), H v)`` for a scalar ``func``: the Hessian-vector product."""
    single, xs = _prepare(inputs, create_graph)
    vs = _as_list(v, len(xs), "hvp: v")
    with enable_grad():
        out = func(*xs)
        if out.numel() != 1:
            raise RuntimeError(f"hvp: func must return a single element, got shape "
                               f"{tuple(out.shape)}")
        gs = grad(out, xs, create_graph=True, allow_unused=True)
        pairs = [(g, w) for g, w in zip(gs, vs) if g is not None]
        hv = [None] * len(xs)
        if pairs:
            inner = sum((g * w).sum() for g, w in pairs)
            if inner.requires_grad:
                hv = grad(inner, xs, create_graph=create_graph, allow_unused=True)
    result = _finish(_zeros_for_none(hv, xs), single, create_graph)
    return (out if create_graph else out.detach()), result


def jacobian(func, inputs, create_graph=False):
    """d func(inputs) / d inputs, of shape ``out.shape + input.shape`` (per input).

    One backward pass per output element; for a tuple of inputs, a tuple of Jacobians.
    """
    from .. import creation
    from ..functions import stack

    single, xs = _prepare(inputs, create_graph)
    with enable_grad():
        out = func(*xs)
        flat = out.reshape(-1)
        rows = [[] for _ in xs]
        for k in range(flat.shape[0]):
            if flat.requires_grad:
                gs = grad(flat[k], xs, retain_graph=True, create_graph=create_graph,
                          allow_unused=True)
            else:
                gs = [None] * len(xs)
            for r, g, x in zip(rows, gs, xs):
                r.append(creation.zeros_like(x) if g is None else g)
    jac = []
    for r, x in zip(rows, xs):
        j = stack(r).reshape(tuple(out.shape) + tuple(x.shape)) if r else \
            creation.zeros(*(tuple(out.shape) + tuple(x.shape)), dtype=x.dtype, device=x.device)
        jac.append(j if create_graph else j.detach())
    return jac[0] if single else tuple(jac)


def hessian(func, inputs, create_graph=False):
    """Second derivatives of a scalar ``func``: shape ``x.shape + x.shape`` for one input,
    a nested tuple ``H[i][j]`` of shape ``x_i.shape + x_j.shape`` for several."""
    single, xs = _prepare(inputs, create_graph)

    def gradient(*ys):
        out = func(*ys)
        if out.numel() != 1:
            raise RuntimeError(f"hessian: func must return a single element, got shape "
                               f"{tuple(out.shape)}")
        gs = grad(out, list(ys), create_graph=True, allow_unused=True)
        return tuple(_zeros_for_none(gs, ys))

    rows = []
    for i in range(len(xs)):
        rows.append(jacobian(lambda *ys, i=i: gradient(*ys)[i], xs, create_graph))
    if single:
        return rows[0][0]
    return tuple(tuple(r) for r in rows)
