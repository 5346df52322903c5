"""Central-difference gradient checks in float64, and ``assert_close`` for tensors."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor, bfloat16


def _host(x):
    if isinstance(x, Tensor):
        x = x.data
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def _scalarize(out, weights):
    """Reduce the function output(s) to a scalar with fixed random weights."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total = None
    for o, w in zip(outs, weights):
        term = (o * Tensor(w, dtype=o.dtype, device=o.device)).sum()
        total = term if total is None else total + term
    return total


def numerical_grad(fn, inputs, eps=1e-6):
    """d(sum of weighted outputs)/d(input) by central differences, one array per input."""
    from ..autograd import no_grad

    with no_grad():
        out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(o.shape) for o in outs]
    grads = []
    for x in inputs:
        if not (isinstance(x, Tensor) and x.requires_grad):
            grads.append(None)
            continue
        g = np.zeros(x.shape, dtype=np.float64)
        flat = x.data.reshape(-1) if x.data.flags.c_contiguous else None
        if flat is None:
            raise ValueError("numerical_grad needs contiguous inputs (use .contiguous())")
        for i in range(flat.size):
            orig = flat[i].item()
            with no_grad():
                flat[i] = orig + eps
                plus = _host(_scalarize(fn(*inputs), weights)).item()
                flat[i] = orig - eps
                minus = _host(_scalarize(fn(*inputs), weights)).item()
                flat[i] = orig
            g.reshape(-1)[i] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads, weights


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Compare autograd gradients of ``fn(*inputs)`` with central differences.

    Inputs that require grad must be float64 (rounding in float32 swamps the difference
    quotient). The output(s) are reduced to a scalar with fixed random weights, so every
    element of every output is checked. Returns True, or raises AssertionError naming the
    input and the worst element (returns False when ``raise_exception=False``).
    """
    inputs = list(inputs)
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor) and x.requires_grad and x.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} is {x.dtype}; use float64 inputs")
    numeric, weights = numerical_grad(fn, inputs, eps)
    for x in inputs:
        if isinstance(x, Tensor):
            x.grad = None
    out = _scalarize(fn(*inputs), weights)
    if out.requires_grad:  # else the output does not depend on the inputs: all zeros
        out.backward()
    for i, (x, num) in enumerate(zip(inputs, numeric)):
        if num is None:
            continue
        ana = np.zeros(x.shape) if x.grad is None else _host(x.grad)
        if ana.shape != num.shape:
            msg = f"gradcheck: input {i}: gradient shape {ana.shape} != input shape {num.shape}"
        elif np.allclose(ana, num, atol=atol, rtol=rtol):
            continue
        else:
            err = np.abs(ana - num) - rtol * np.abs(num)
            j = np.unravel_index(int(np.argmax(err)), num.shape) if num.size else ()
            msg = (
                f"gradcheck: input {i} of shape {num.shape}: analytic and numerical gradients "
                f"differ; worst at index {tuple(int(k) for k in j)}: analytic {ana[j]!r}, "
                f"numerical {num[j]!r} (max abs diff {np.max(np.abs(ana - num)):.3g})"
            )
        if raise_exception:
            raise AssertionError(msg)
        return False
    return True


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """Check second derivatives of ``fn(*inputs)`` against central differences.

    The output(s) are reduced to a scalar with fixed random weights, its gradient with
    respect to the inputs that require grad is taken with ``create_graph=True``, and that
    gradient (a function of the inputs) goes through :func:`gradcheck`, so every element
    of the Hessian-vector product is compared. Inputs that require grad must be float64.

    >>> x = pydl.randn(3, dtype=pydl.float64, requires_grad=True)
    >>> pydl.testing.gradgradcheck(lambda t: (t ** 3).sum(), [x])
    True
    """
    from ..autograd import enable_grad, grad, no_grad

    inputs = list(inputs)
    diff = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("gradgradcheck: no input requires grad")
    with no_grad():
        out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal(o.shape) for o in outs]

    def first_grads(*xs):
        with enable_grad():
            y = _scalarize(fn(*xs), weights)
            if not y.requires_grad:
                gs = (None,) * len(diff)
            else:
                gs = grad(y, [xs[i] for i in diff], create_graph=True, allow_unused=True)
        return tuple(
            Tensor._make(xs[i].data * 0, False) if g is None else g for i, g in zip(diff, gs)
        )

    return gradcheck(first_grads, inputs, eps, atol, rtol, raise_exception)


def assert_close(actual, expected, rtol=None, atol=None, msg=""):
    """Assert two tensors/arrays are equal in shape and close in value (defaults by dtype)."""
    a, e = _host(actual), _host(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{msg}shapes differ: {a.shape} vs {e.shape}")
    bf16 = bfloat16 in (a.dtype, e.dtype)  # compared in float32, with bfloat16's tolerance
    a, e = (x.astype(np.float32) if x.dtype == bfloat16 else x for x in (a, e))
    if (rtol is None or atol is None) and bf16:
        rtol = 1e-2 if rtol is None else rtol
        atol = 1e-2 if atol is None else atol
    if rtol is None or atol is None:
        dt = np.result_type(a.dtype, e.dtype) if a.dtype.kind == e.dtype.kind == "f" else None
        lo = a.dtype if a.dtype.kind == "f" else dt
        if lo is not None and (a.dtype == np.float32 or e.dtype == np.float32):
            d_rtol, d_atol = 1.3e-6 * 10, 1e-5
        elif lo is not None and (a.dtype == np.float16 or e.dtype == np.float16):
            d_rtol, d_atol = 1e-3, 1e-3
        else:
            d_rtol, d_atol = 1e-7, 1e-10
        rtol = d_rtol if rtol is None else rtol
        atol = d_atol if atol is None else atol
    if a.dtype.kind in "biu" and e.dtype.kind in "biu":
        if not np.array_equal(a, e):
            bad = np.argwhere(a != e)
            raise AssertionError(f"{msg}integer values differ at {len(bad)} positions, "
                                 f"first {tuple(bad[0])}: {a[tuple(bad[0])]} vs {e[tuple(bad[0])]}")
        return
    close = np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not close.all():
        bad = np.argwhere(~close)
        j = tuple(bad[0])
        raise AssertionError(
            f"{msg}{len(bad)} of {a.size} elements differ beyond rtol={rtol}, atol={atol}; "
            f"first at {j}: {a[j]!r} vs {e[j]!r}; max abs diff "
            f"{np.nanmax(np.abs(a.astype(np.float64) - e.astype(np.float64))):.3g}"
        )


