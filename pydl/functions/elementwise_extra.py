"""More elementwise math: ``tan sinh cosh asin acos atan log2 exp2 log10``, the rounding ops
``floor ceil round trunc``, and the binary ``lerp logaddexp copysign fmod remainder
floor_divide isclose`` (plus ``div(rounding_mode=...)``, which arith.div hands here).

As in PyTorch: the transcendental ops turn integer and bool tensors into float32; the
rounding ops keep integer dtypes and have a zero gradient; ``floor_divide``/rounded ``div``
have a zero gradient; ``fmod`` (sign of the dividend, C's fmod) and ``remainder`` (sign of the
divisor, Python's ``%``) pass the gradient ``g`` to the dividend and ``-g * q`` to the divisor,
with ``q`` the truncated or floored quotient. Integer division by zero raises
``ZeroDivisionError`` (PyTorch's error) instead of NumPy's silent 0.

Every backward here is written with Tensor-reading ops (``double_backward = True``).
"""

from __future__ import annotations

import math

from ..autograd import Function
from ..tensor import Tensor
from ._util import binary_operands, sum_to_shape, xp_of
from .unary import _as_tensor, _floating

__all__ = [
    "tan", "sinh", "cosh", "asin", "acos", "atan", "arcsin", "arccos", "arctan", "log2", "exp2",
    "log10", "floor", "ceil", "round", "trunc", "fix", "lerp", "logaddexp", "copysign", "fmod",
    "remainder", "floor_divide", "isclose",
]

_LN2, _LN10 = math.log(2.0), math.log(10.0)


def _shape(x):
    return getattr(x, "shape", ())


# -- unary with an elementwise derivative ----------------------------------------------------
class _SavesInput(Function):
    double_backward = True
    name = ""

    @classmethod
    def forward(cls, ctx, a):
        ctx.save_for_backward(a)
        return getattr(xp_of(a), cls.name)(a)


class Tan(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).tan(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * (1 + out * out)


class Sinh(_SavesInput):
    name = "sinh"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * xp_of(a).cosh(a)


class Cosh(_SavesInput):
    name = "cosh"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g * xp_of(a).sinh(a)


class Asin(_SavesInput):
    name = "arcsin"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / xp_of(a).sqrt(1 - a * a)


class Acos(_SavesInput):
    name = "arccos"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return -g / xp_of(a).sqrt(1 - a * a)


class Atan(_SavesInput):
    name = "arctan"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / (1 + a * a)


class Log2(_SavesInput):
    name = "log2"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / (a * _LN2)


class Log10(_SavesInput):
    name = "log10"

    @staticmethod
    def backward(ctx, g):
        (a,) = ctx.saved_tensors
        return g / (a * _LN10)


class Exp2(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        out = xp_of(a).exp2(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return g * out * _LN2


# -- piecewise constant: zero gradient -------------------------------------------------------
class Rounding(Function):
    """floor / ceil / round / trunc, and the rounded quotients: gradient zero everywhere."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, fn):
        ctx.shape = a.shape
        return fn(xp_of(a), a)

    @staticmethod
    def backward(ctx, g):
        return xp_of(g).zeros(ctx.shape, dtype=g.dtype), None


def _rounding(x, fn, op):
    x = _as_tensor(x, op)
    if x.dtype.kind != "f":  # integers are already whole: a copy, as in PyTorch
        return x.clone()
    return Rounding.apply(x, fn)


# -- binary ----------------------------------------------------------------------------------
class LogAddExp(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        out = xp_of(a).logaddexp(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        xp = xp_of(out)
        ga = sum_to_shape(g * xp.exp(a - out), a.shape) if ctx.needs_input_grad[0] else None
        gb = sum_to_shape(g * xp.exp(b - out), b.shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class CopySign(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        out = xp_of(a).copysign(a, b)
        ctx.save_for_backward(a, out)
        ctx.shape_b = _shape(b)
        return out

    @staticmethod
    def backward(ctx, g):
        a, out = ctx.saved_tensors
        xp = xp_of(out)
        ga = gb = None
        if ctx.needs_input_grad[0]:  # +-1, and 0 at a == 0 (PyTorch)
            zero = a == 0
            ga = sum_to_shape(g * xp.where(zero, 0, out / xp.where(zero, 1, a)), a.shape)
        if ctx.needs_input_grad[1]:
            gb = sum_to_shape(g * 0, ctx.shape_b)
        return ga, gb


class Modulo(Function):
    """``a - q * b`` with ``q`` the truncated (fmod) or floored (remainder) quotient."""

    double_backward = True

    @staticmethod
    def forward(ctx, a, b, floored):
        xp = xp_of(a if hasattr(a, "shape") else b)
        ctx.save_for_backward(a, b)
        ctx.floored, ctx.shapes = floored, (_shape(a), _shape(b))
        return xp.remainder(a, b) if floored else xp.fmod(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        ga = sum_to_shape(g, sa) if ctx.needs_input_grad[0] else None
        gb = None
        if ctx.needs_input_grad[1]:
            xp = xp_of(g)
            q = xp.floor(a / b) if ctx.floored else xp.trunc(a / b)
            gb = sum_to_shape(-g * q, sb)
        return ga, gb, None


def _check_int_divisor(b, op):
    if isinstance(b, Tensor):
        if b.dtype.kind in "iub" and bool((b.data == 0).any()):
            raise ZeroDivisionError(f"{op}: integer division by zero")
    elif isinstance(b, int) and b == 0:
        raise ZeroDivisionError(f"{op}: integer division by zero")


def _int_trunc_div(xp, a, b):
    q = xp.floor_divide(a, b)
    inexact = (q * b != a) & ((a < 0) != (b < 0))
    return q + inexact


def _float_or_int_div(mode):
    def run(xp, a, b):
        if mode == "floor":
            return xp.floor_divide(a, b)
        if getattr(a, "dtype", getattr(b, "dtype", None)).kind == "f":
            return xp.trunc(xp.true_divide(a, b))
        return _int_trunc_div(xp, a, b)

    return run


class RoundedDiv(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b, mode):
        xp = xp_of(a if hasattr(a, "shape") else b)
        ctx.shapes = (_shape(a), _shape(b))
        out = _float_or_int_div(mode)(xp, a, b)
        ctx.out_shape = out.shape
        return out

    @staticmethod
    def backward(ctx, g):
        xp = xp_of(g)
        zeros = xp.zeros(ctx.out_shape, dtype=g.dtype)
        sa, sb = ctx.shapes
        return sum_to_shape(zeros, sa), sum_to_shape(zeros, sb), None


# -- public wrappers -------------------------------------------------------------------------
def tan(x):
    """Elementwise tangent."""
    return Tan.apply(_floating(x, "tan"))


def sinh(x):
    """Elementwise hyperbolic sine."""
    return Sinh.apply(_floating(x, "sinh"))


def cosh(x):
    """Elementwise hyperbolic cosine."""
    return Cosh.apply(_floating(x, "cosh"))


def asin(x):
    """Elementwise arcsine (NaN outside [-1, 1])."""
    return Asin.apply(_floating(x, "asin"))


def acos(x):
    """Elementwise arccosine (NaN outside [-1, 1])."""
    return Acos.apply(_floating(x, "acos"))


def atan(x):
    """Elementwise arctangent."""
    return Atan.apply(_floating(x, "atan"))


arcsin, arccos, arctan = asin, acos, atan


def log2(x):
    """Base-2 logarithm."""
    return Log2.apply(_floating(x, "log2"))


def log10(x):
    """Base-10 logarithm."""
    return Log10.apply(_floating(x, "log10"))


def exp2(x):
    """Elementwise 2**x."""
    return Exp2.apply(_floating(x, "exp2"))


def floor(x):
    """Largest integer <= x (integer tensors are returned as a copy); zero gradient."""
    return _rounding(x, lambda xp, a: xp.floor(a), "floor")


def ceil(x):
    """Smallest integer >= x; zero gradient."""
    return _rounding(x, lambda xp, a: xp.ceil(a), "ceil")


def trunc(x):
    """x rounded toward zero; zero gradient."""
    return _rounding(x, lambda xp, a: xp.trunc(a), "trunc")


fix = trunc


def round(x, decimals=0):  # noqa: A001 - PyTorch's name
    """Round half to even (as PyTorch), to ``decimals`` places; zero gradient.

    >>> pydl.round(pydl.tensor([0.5, 1.5, 2.567]), decimals=0).tolist()
    [0.0, 2.0, 3.0]
    """
    decimals = int(decimals)
    return _rounding(x, lambda xp, a: xp.round(a, decimals), "round")


def lerp(input, end, weight):  # noqa: A002 - PyTorch's names
    """``input + weight * (end - input)``; ``weight`` a number or a tensor (broadcasts)."""
    for name, t in (("input", input), ("end", end)):
        if not isinstance(t, Tensor):
            raise TypeError(f"lerp: {name} must be a tensor, got {type(t).__name__}")
    if input.dtype != end.dtype or (isinstance(weight, Tensor) and weight.dtype != input.dtype):
        names = [str(t.dtype) for t in (input, end, weight) if isinstance(t, Tensor)]
        raise TypeError(f"lerp: expected input, end and weight of one dtype, got {names}")
    return input + weight * (end - input)


def logaddexp(a, b):
    """``log(exp(a) + exp(b))`` without overflow."""
    a, b = _float_pair(a, b, "logaddexp")
    return LogAddExp.apply(a, b)


def copysign(a, b):
    """``|a|`` with the sign of ``b`` (the sign bit: -0.0 counts as negative)."""
    a, b = _float_pair(a, b, "copysign")
    return CopySign.apply(a, b)


def fmod(a, b):
    """C's fmod: ``a - trunc(a / b) * b``, the sign of the dividend."""
    a, b = binary_operands(a, b, "fmod")
    _check_int_divisor(b, "fmod")
    return Modulo.apply(a, b, False)


def remainder(a, b):
    """Python's ``%``: ``a - floor(a / b) * b``, the sign of the divisor (``a % b``)."""
    a, b = binary_operands(a, b, "remainder")
    _check_int_divisor(b, "remainder")
    return Modulo.apply(a, b, True)


def floor_divide(a, b):
    """``floor(a / b)`` (``a // b``), kept in the operands' dtype; zero gradient."""
    return _rounded_div(a, b, "floor")


def _rounded_div(a, b, mode):
    """``div(a, b, rounding_mode=mode)`` for mode 'trunc' or 'floor'."""
    op = "floor_divide" if mode == "floor" else "div"
    a, b = binary_operands(a, b, op)
    _check_int_divisor(b, op)
    return RoundedDiv.apply(a, b, mode)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Elementwise ``|a - b| <= atol + rtol * |b|`` (infinities equal when they match); a bool
    tensor, not differentiable."""
    a, b = binary_operands(a, b, "isclose")
    t = a if isinstance(a, Tensor) else b
    xa = a.data if isinstance(a, Tensor) else a
    xb = b.data if isinstance(b, Tensor) else b
    out = xp_of(t.data).isclose(xa, xb, rtol=rtol, atol=atol, equal_nan=equal_nan)
    return Tensor._make(xp_of(t.data).asarray(out), False)


def _float_pair(a, b, op):
    a, b = binary_operands(a, b, op)
    if isinstance(a, Tensor) and a.dtype.kind != "f" or isinstance(b, Tensor) and \
            b.dtype.kind != "f":
        a = a.float() if isinstance(a, Tensor) else float(a)
        b = b.float() if isinstance(b, Tensor) else float(b)
    if not isinstance(a, Tensor):
        a = Tensor(a, dtype=b.dtype, device=b.device)
    if not isinstance(b, Tensor):
        b = Tensor(b, dtype=a.dtype, device=a.device)
    return a, b
