"""Elementwise math, activations, comparisons and logical ops.

Differentiable: ``exp log log1p sqrt rsqrt reciprocal square abs sin cos tanh sigmoid erf
relu leaky_relu gelu elu softplus silu clamp (clip) where maximum minimum``; ``sign`` has a
zero gradient, as in PyTorch. Not differentiable (bool results): ``lt le gt ge eq ne``,
``logical_not/and/or/xor``, ``isnan isinf isfinite``.

Each Function saves only what its backward needs: the output for ``exp``, ``sigmoid``,
``tanh``, ``sqrt``, ``rsqrt``, ``reciprocal`` and ``relu``; the input otherwise.

Ops that only make sense on real numbers (``exp``, ``log``, ``sqrt``, ``sigmoid``...) turn
integer and bool tensors into float32 first, as PyTorch does; ``abs``, ``square``, ``relu``,
``clamp``, ``maximum``, ``minimum`` and ``sign`` keep integer dtypes.

Numerical care: ``sigmoid``, ``softplus`` and ``silu`` never call ``exp`` on a positive
argument, so +-1000 gives finite results without overflow warnings; ``elu`` calls ``expm1``
only on the non-positive part; ``gelu`` uses the exact erf form by default and the tanh
form with ``approximate='tanh'``.

``erf`` and ``gelu`` run as backend kernels (``erf``, ``gelu_forward``, ``gelu_backward``):
the NumPy reference evaluates erf in float64 (``pydl.functions._special``); the C++ and CUDA
kernels evaluate float32 in float32 (a few float32 ulp) and float64 to about 1 ulp. ``gelu``
keeps the CDF from forward, so its backward needs one exp and no erf.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..autograd import Function, same_device
from ..backend import backend_of
from ..tensor import Tensor, is_floating_dtype
from ._util import astype, binary_operands, sum_to_shape, xp_of

__all__ = [
    "exp", "log", "log1p", "sqrt", "rsqrt", "reciprocal", "square", "abs", "sign", "sin",
    "cos", "tanh", "sigmoid", "erf", "relu", "leaky_relu", "gelu", "elu", "softplus", "silu",
    "clamp", "clip", "where", "maximum", "minimum",
    "lt", "le", "gt", "ge", "eq", "ne",
    "logical_not", "logical_and", "logical_or", "logical_xor",
    "isnan", "isinf", "isfinite",
]


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


# -- helpers ---------------------------------------------------------------------------------
def _as_tensor(x, op: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (numbers.Number, np.ndarray, list, tuple)) or type(x).__module__.startswith(
        "cupy"
    ):
        return Tensor(x)
    raise TypeError(f"{op}: expected a tensor, got {type(x).__name__}")


def _floating(x, op: str) -> Tensor:
    """``x`` as a tensor of a floating dtype (integers and bools become float32)."""
    x = _as_tensor(x, op)
    return x if is_floating_dtype(x.dtype) else x.to(np.float32)


def _sigmoid(xp, x):
    """Logistic function that never exponentiates a positive number (no overflow)."""
    e = xp.exp(-xp.abs(x))
    return astype(xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), x.dtype)


# -- exponentials and powers -----------------------------------------------------------------
class Exp(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).log(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / a


class Log1p(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).log1p(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / (1 + a)


class Sqrt(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Rsqrt(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = 1 / xp_of(a).sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return -0.5 * g * out * out * out


class Reciprocal(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = 1 / a
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return -g * out * out


class Square(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * a

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return 2 * g * a


class Abs(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).abs(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * xp_of(a).sign(a)


class Sign(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.meta = (a.shape, a.dtype)
        return xp_of(a).sign(a)

    @staticmethod
    def backward(ctx, g):
        return xp_of(g).zeros(*ctx.meta)


# -- trigonometric and squashing -------------------------------------------------------------
class Sin(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).sin(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * xp_of(a).cos(a)


class Cos(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return xp_of(a).cos(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return -g * xp_of(a).sin(a)


class Tanh(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 - out * out)


class Sigmoid(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = _sigmoid(xp_of(a), a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out * (1 - out)


class Erf(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return backend_of(a).erf(a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * (_TWO_OVER_SQRT_PI * xp_of(a).exp(-a * a))


# -- activations -----------------------------------------------------------------------------
class Relu(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).maximum(a, 0)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (out > 0)


class LeakyRelu(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, negative_slope):
        ctx.save_for_backward(a)
        ctx.slope = negative_slope
        return xp_of(a).where(a > 0, a, a * negative_slope)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return xp_of(a).where(a > 0, g, g * ctx.slope), None


class Gelu(Function):
    """Saves x and the CDF that forward computed, so backward evaluates no erf (or tanh)."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, approximate):
        y, cdf = backend_of(a).gelu_forward(a, approximate)
        ctx.save_for_backward(a, cdf)
        ctx.approximate = approximate
        return y

    @staticmethod
    def backward(ctx, g):
        a, cdf = ctx.saved_tensors
        if isinstance(g, Tensor):  # create_graph: the derivative composed from recorded ops
            return g * _gelu_derivative(a, ctx.approximate), None
        return backend_of(a).gelu_backward(g, a, cdf, ctx.approximate), None


def _gelu_derivative(a, approximate):
    """d gelu / da on a Tensor, from differentiable ops (the create_graph path)."""
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        t = (c * (a + 0.044715 * a * a * a)).tanh()
        return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * (c * (1 + 3 * 0.044715 * a * a))
    cdf = 0.5 * (1 + (a * (1 / math.sqrt(2.0))).erf())
    return cdf + a * (-0.5 * a * a).exp() * (1 / math.sqrt(2 * math.pi))


class Elu(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, alpha):
        xp = xp_of(a)
        ctx.save_for_backward(a)
        ctx.alpha = alpha
        return xp.where(a > 0, a, alpha * xp.expm1(xp.minimum(a, 0)))

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        xp = xp_of(a)
        return xp.where(a > 0, g, g * (ctx.alpha * xp.exp(xp.minimum(a, 0)))), None


class Softplus(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, beta, threshold):
        xp = xp_of(a)
        ctx.save_for_backward(a)
        ctx.beta, ctx.threshold = beta, threshold
        ba = a * beta
        smooth = (xp.maximum(ba, 0) + xp.log1p(xp.exp(-xp.abs(ba)))) / beta
        return xp.where(ba > threshold, a, smooth)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        xp = xp_of(a)
        ba = a * ctx.beta
        return xp.where(ba > ctx.threshold, g, g * _sigmoid(xp, ba)), None, None


class Silu(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a * _sigmoid(xp_of(a), a)

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        s = _sigmoid(xp_of(a), a)
        return g * (s * (1 + a * (1 - s)))


# -- selection ---------------------------------------------------------------------------------
def _shape(x):
    return getattr(x, "shape", ())


class Clamp(Function):
    """``min(max(x, lo), hi)``; lo/hi are scalars, arrays or None. Ties pass to ``x``."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, lo, hi):
        xp = xp_of(a)
        ctx.save_for_backward(a, lo, hi)
        ctx.shapes = (_shape(a), _shape(lo), _shape(hi))
        out = a
        if lo is not None:
            out = xp.maximum(out, lo)
        if hi is not None:
            out = xp.minimum(out, hi)
        return out if out is not a else a.copy()

    @staticmethod
    def backward(ctx, g):
        a, lo, hi = ctx.saved_tensors
        sa, slo, shi = ctx.shapes
        xp = xp_of(g)
        keep = xp.ones(a.shape, dtype=bool)
        mid = a
        if lo is not None:
            keep = keep & (a >= lo)
            mid = xp.maximum(a, lo)
        if hi is not None:
            keep = keep & (a <= hi)
        ga = glo = ghi = None
        if ctx.needs_input_grad[0]:
            ga = sum_to_shape(g * keep, sa)
        if ctx.needs_input_grad[1]:
            to_lo = a < lo
            if hi is not None:
                to_lo = to_lo & (lo <= hi)
            glo = sum_to_shape(g * to_lo, slo)
        if ctx.needs_input_grad[2]:
            ghi = sum_to_shape(g * (mid > hi), shi)
        return ga, glo, ghi


class Where(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        ctx.shapes = (_shape(a), _shape(b))
        return xp_of(cond).where(cond, a, b)

    @staticmethod
    def backward(ctx, g):
        (cond,) = ctx.saved_tensors
        sa, sb = ctx.shapes
        ga = gb = None
        if ctx.needs_input_grad[1]:
            ga = sum_to_shape(g * cond, sa)
        if ctx.needs_input_grad[2]:
            gb = sum_to_shape(g * ~cond, sb)
        return None, ga, gb


class Maximum(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp_of(a if hasattr(a, "shape") else b).maximum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _minmax_grads(ctx, g, a, b, a > b)


class Minimum(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return xp_of(a if hasattr(a, "shape") else b).minimum(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _minmax_grads(ctx, g, a, b, a < b)


def _minmax_grads(ctx, g, a, b, a_wins):
    """Gradient of max/min: to the winner, split 0.5/0.5 on ties (as PyTorch)."""
    xp = xp_of(g)
    share = astype(xp.where(a_wins, 1.0, xp.where(a == b, 0.5, 0.0)), g.dtype)
    ga = sum_to_shape(g * share, _shape(a)) if ctx.needs_input_grad[0] else None
    gb = sum_to_shape(g * (1 - share), _shape(b)) if ctx.needs_input_grad[1] else None
    return ga, gb


# -- non-differentiable: comparisons, logic, tests ---------------------------------------------
_COMPARE = {
    "lt": lambda xp, a, b: xp.less(a, b),
    "le": lambda xp, a, b: xp.less_equal(a, b),
    "gt": lambda xp, a, b: xp.greater(a, b),
    "ge": lambda xp, a, b: xp.greater_equal(a, b),
    "eq": lambda xp, a, b: xp.equal(a, b),
    "ne": lambda xp, a, b: xp.not_equal(a, b),
    "logical_and": lambda xp, a, b: xp.logical_and(a, b),
    "logical_or": lambda xp, a, b: xp.logical_or(a, b),
    "logical_xor": lambda xp, a, b: xp.logical_xor(a, b),
}

_TESTS = {
    "logical_not": lambda xp, a: xp.logical_not(a),
    "isnan": lambda xp, a: xp.isnan(a),
    "isinf": lambda xp, a: xp.isinf(a),
    "isfinite": lambda xp, a: xp.isfinite(a),
}


class Compare(Function):
    """A bool-valued binary op (comparison or logical); never differentiable."""

    @staticmethod
    def forward(ctx, a, b, op):
        xp = xp_of(a if hasattr(a, "shape") else b)
        return _COMPARE[op](xp, a, b)

    @staticmethod
    def backward(ctx, g):  # pragma: no cover - bool outputs never get a gradient
        return None, None


class Predicate(Function):
    """A bool-valued unary op; never differentiable."""

    @staticmethod
    def forward(ctx, a, op):
        return _TESTS[op](xp_of(a), a)

    @staticmethod
    def backward(ctx, g):  # pragma: no cover - bool outputs never get a gradient
        return None


def _compare_operands(a, b, op):
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if not ta and not tb:
        raise TypeError(f"{op}: expected at least one tensor, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    like = a if ta else b
    out = []
    for v in (a, b):
        if isinstance(v, Tensor):
            out.append(v)
        elif isinstance(v, (bool, numbers.Number)):
            out.append(v)
        elif isinstance(v, (np.ndarray, list, tuple)) or type(v).__module__.startswith("cupy"):
            out.append(Tensor(v, device=like.device))
        else:
            raise TypeError(f"{op}: unsupported operand of type {type(v).__name__}")
    if ta and tb:
        same_device(op, a, b)
    return out


def _compare(a, b, op):
    a, b = _compare_operands(a, b, op)
    return Compare.apply(a, b, op)


# -- public wrappers ---------------------------------------------------------------------------
def exp(x):
    """Elementwise e**x."""
    return Exp.apply(_floating(x, "exp"))


def log(x):
    """Natural logarithm (NaN for negative inputs, -inf at 0)."""
    return Log.apply(_floating(x, "log"))


def log1p(x):
    """log(1 + x), accurate for small x."""
    return Log1p.apply(_floating(x, "log1p"))


def sqrt(x):
    """Elementwise square root."""
    return Sqrt.apply(_floating(x, "sqrt"))


def rsqrt(x):
    """Elementwise 1 / sqrt(x)."""
    return Rsqrt.apply(_floating(x, "rsqrt"))


def reciprocal(x):
    """Elementwise 1 / x (integers give float32)."""
    return Reciprocal.apply(_floating(x, "reciprocal"))


def square(x):
    """Elementwise x * x (integer dtypes kept)."""
    return Square.apply(_as_tensor(x, "square"))


def abs(x):  # noqa: A001 - PyTorch's name
    """Elementwise absolute value; gradient sign(x) (0 at 0)."""
    return Abs.apply(_as_tensor(x, "abs"))


def sign(x):
    """-1, 0 or 1 elementwise; its gradient is zero everywhere."""
    x = _as_tensor(x, "sign")
    return Sign.apply(x)


def sin(x):
    return Sin.apply(_floating(x, "sin"))


def cos(x):
    return Cos.apply(_floating(x, "cos"))


def tanh(x):
    return Tanh.apply(_floating(x, "tanh"))


def sigmoid(x):
    """1 / (1 + exp(-x)), computed without overflow for any input."""
    return Sigmoid.apply(_floating(x, "sigmoid"))


def erf(x):
    """The Gauss error function."""
    return Erf.apply(_floating(x, "erf"))


def relu(x):
    """max(x, 0); gradient 0 at x == 0, as in PyTorch."""
    return Relu.apply(_as_tensor(x, "relu"))


def leaky_relu(x, negative_slope=0.01):
    """x for x > 0, negative_slope * x otherwise."""
    return LeakyRelu.apply(_floating(x, "leaky_relu"), float(negative_slope))


def gelu(x, approximate="none"):
    """x * Phi(x) with the exact erf form, or the tanh approximation (``approximate='tanh'``)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(_floating(x, "gelu"), approximate)


def elu(x, alpha=1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return Elu.apply(_floating(x, "elu"), float(alpha))


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (as PyTorch)."""
    if beta == 0:
        raise ValueError("softplus: beta must be non-zero")
    return Softplus.apply(_floating(x, "softplus"), float(beta), float(threshold))


def silu(x):
    """x * sigmoid(x) (a.k.a. swish)."""
    return Silu.apply(_floating(x, "silu"))


def clamp(x, min=None, max=None):  # noqa: A002 - PyTorch's names
    """Limit values to [min, max]; either bound may be None, a number or a tensor.

    The gradient reaches ``x`` where min <= x <= max (bounds included, as in PyTorch), and
    a tensor bound where it is the value chosen.
    """
    if min is None and max is None:
        raise ValueError("clamp: at least one of 'min' or 'max' must not be None")
    x = _as_tensor(x, "clamp")
    bounds = []
    for bound in (min, max):
        if bound is None:
            bounds.append(None)
            continue
        if not isinstance(bound, Tensor) and isinstance(bound, float) and x.dtype.kind != "f":
            x = x.to(np.float32)
        x, bound = binary_operands(x, bound, "clamp")
        bounds.append(bound)
    lo, hi = bounds
    if isinstance(lo, Tensor) and lo.dtype != x.dtype:
        x, lo = binary_operands(x, lo, "clamp")
    return Clamp.apply(x, lo, hi)


clip = clamp


def where(condition, input=None, other=None):  # noqa: A002 - PyTorch's names
    """Elementwise ``input if condition else other``, broadcasting all three.

    ``input`` and ``other`` may be tensors or numbers; the gradient goes to each where it
    was chosen, summed back to its shape. ``where(condition)`` alone returns the indices of
    the true elements, one int64 tensor per dimension (as ``nonzero(as_tuple=True)``).
    """
    cond = condition if isinstance(condition, Tensor) else Tensor(condition)
    if cond.dtype.kind != "b":
        cond = cond.to(np.bool_)
    if input is None and other is None:
        xp = xp_of(cond.data)
        return tuple(Tensor._make(i.astype(np.int64), False) for i in xp.nonzero(cond.data))
    if input is None or other is None:
        raise TypeError("where: give both input and other, or neither")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        input = Tensor(input, device=cond.device)
    a, b = binary_operands(input, other, "where")
    return Where.apply(cond, a, b)


def maximum(a, b):
    """Elementwise maximum; on ties each side gets half the gradient (as PyTorch)."""
    a, b = binary_operands(a, b, "maximum")
    return Maximum.apply(a, b)


def minimum(a, b):
    """Elementwise minimum; on ties each side gets half the gradient (as PyTorch)."""
    a, b = binary_operands(a, b, "minimum")
    return Minimum.apply(a, b)


def lt(a, b):
    """a < b elementwise, as a bool tensor."""
    return _compare(a, b, "lt")


def le(a, b):
    """a <= b elementwise, as a bool tensor."""
    return _compare(a, b, "le")


def gt(a, b):
    """a > b elementwise, as a bool tensor."""
    return _compare(a, b, "gt")


def ge(a, b):
    """a >= b elementwise, as a bool tensor."""
    return _compare(a, b, "ge")


def eq(a, b):
    """a == b elementwise, as a bool tensor (``t == None`` is False, as in PyTorch)."""
    if a is None or b is None:
        return False
    return _compare(a, b, "eq")


def ne(a, b):
    """a != b elementwise, as a bool tensor."""
    if a is None or b is None:
        return True
    return _compare(a, b, "ne")


def logical_and(a, b):
    return _compare(a, b, "logical_and")


def logical_or(a, b):
    return _compare(a, b, "logical_or")


def logical_xor(a, b):
    return _compare(a, b, "logical_xor")


def logical_not(x):
    return Predicate.apply(_as_tensor(x, "logical_not"), "logical_not")


def isnan(x):
    return Predicate.apply(_as_tensor(x, "isnan"), "isnan")


def isinf(x):
    return Predicate.apply(_as_tensor(x, "isinf"), "isinf")


def isfinite(x):
    return Predicate.apply(_as_tensor(x, "isfinite"), "isfinite")
