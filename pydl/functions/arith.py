"""Arithmetic: + - * / ** and negation, with NumPy broadcasting and Python scalars.

Each Function's backward reduces its gradient to the input's shape with ``sum_to_shape``,
so ``(3, 1) + (4,)`` gives gradients of shapes (3, 1) and (4,).
"""

from __future__ import annotations

from ..autograd import Function
from ._util import binary_operands, sum_to_shape, xp_of

__all__ = ["add", "sub", "mul", "div", "neg", "pow"]


def _shape(x):
    return getattr(x, "shape", ())


class Add(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a + b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return (
            sum_to_shape(g, sa) if ctx.needs_input_grad[0] else None,
            sum_to_shape(g, sb) if ctx.needs_input_grad[1] else None,
        )


class Sub(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        return a - b

    @staticmethod
    def backward(ctx, g):
        sa, sb = ctx.shapes
        return (
            sum_to_shape(g, sa) if ctx.needs_input_grad[0] else None,
            sum_to_shape(-g, sb) if ctx.needs_input_grad[1] else None,
        )


class Mul(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        # keep only what backward needs (d/da needs b, d/db needs a): x * 2 saves nothing
        # of x, so writing into x in place afterwards stays legal
        need_a, need_b = ctx.needs_input_grad
        ctx.shapes = (_shape(a), _shape(b))
        ctx.save_for_backward(b if need_a else None, a if need_b else None)
        return a * b

    @staticmethod
    def backward(ctx, g):
        b, a = ctx.saved_tensors
        sa, sb = ctx.shapes
        return (
            sum_to_shape(g * b, sa) if ctx.needs_input_grad[0] else None,
            sum_to_shape(g * a, sb) if ctx.needs_input_grad[1] else None,
        )


class Div(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = (_shape(a), _shape(b))
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return a / b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        sa, sb = ctx.shapes
        ga = sum_to_shape(g / b, sa) if ctx.needs_input_grad[0] else None
        gb = sum_to_shape(-g * a / (b * b), sb) if ctx.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a):
        return -a

    @staticmethod
    def backward(ctx, g):
        return -g


class Pow(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        out = a ** b
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, g):
        a, b, out = ctx.saved_tensors
        ga = gb = None
        if ctx.needs_input_grad[0]:
            # b * a**(b-1); where b == 0 the slope is 0 (PyTorch's rule), not 0 * a**-1,
            # which is 0 * inf = nan at a == 0. The exponent is swapped for 1 there, so the
            # recorded graph (create_graph) stays finite too.
            if hasattr(b, "shape"):
                b1 = xp_of(out).where(b == 0, 1, b)
            else:
                b1 = 1 if b == 0 else b
            ga = sum_to_shape(g * b * a ** (b1 - 1), _shape(a))
        if ctx.needs_input_grad[1]:
            xp = xp_of(out)
            safe = xp.where(a > 0, a, 1)
            gb = sum_to_shape(g * out * xp.log(safe), _shape(b))
        return ga, gb


def add(a, b, alpha=1):
    """Elementwise ``a + alpha * b`` with broadcasting."""
    if alpha != 1:
        b = mul(b, alpha)
    a, b = binary_operands(a, b, "add")
    return Add.apply(a, b)


def sub(a, b, alpha=1):
    """Elementwise ``a - alpha * b`` with broadcasting."""
    if alpha != 1:
        b = mul(b, alpha)
    a, b = binary_operands(a, b, "sub")
    return Sub.apply(a, b)


def mul(a, b):
    """Elementwise product with broadcasting."""
    a, b = binary_operands(a, b, "mul")
    return Mul.apply(a, b)


def div(a, b, rounding_mode=None):
    """Elementwise division with broadcasting: true division (integer tensors give float32),
    or with ``rounding_mode='trunc'``/``'floor'`` the quotient rounded toward zero / down,
    in the operands' dtype, with a zero gradient (as PyTorch)."""
    from ..tensor import Tensor

    if rounding_mode is not None:
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError("div: rounding_mode must be None, 'trunc' or 'floor', got "
                             f"{rounding_mode!r}")
        from .elementwise_extra import _rounded_div

        return _rounded_div(a, b, rounding_mode)
    a, b = binary_operands(a, b, "div")
    for t in (a, b):
        if isinstance(t, Tensor) and t.dtype.kind != "f":
            a = a.float() if isinstance(a, Tensor) and a.dtype.kind != "f" else a
            b = b.float() if isinstance(b, Tensor) and b.dtype.kind != "f" else b
            a, b = binary_operands(a, b, "div")
            break
    return Div.apply(a, b)


def neg(a):
    """Elementwise negation."""
    return Neg.apply(a)


def pow(a, b):  # noqa: A001 - PyTorch's name
    """Elementwise ``a ** b``; either side may be a Python number."""
    a, b = binary_operands(a, b, "pow")
    return Pow.apply(a, b)
