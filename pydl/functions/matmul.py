"""Matrix products: ``matmul`` (``a @ b``), ``mm``, ``bmm``, ``dot``, ``outer``.

``matmul`` has NumPy/PyTorch semantics: a 1-D left operand is a row vector (a dim is
prepended, then removed), a 1-D right operand a column vector; N-D operands are stacks of
matrices whose batch dims broadcast. The arithmetic is the backend's ``matmul`` kernel, which
takes 2-D or equally batched 3-D arrays and transpose flags: batch dims are broadcast and folded
to (B, M, K) here. Backward uses the same kernel with transpose flags (dA = dC @ B^T,
dB = A^T @ dC) and sums over broadcast batch dims.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function, autocast_active, same_device
from ..backend import backend_of
from ..tensor import Tensor, bfloat16, dtype_name
from ._util import sum_to_shape, xp_of

__all__ = ["matmul", "mm", "bmm", "dot", "outer", "inner", "vdot"]


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16), bfloat16)


def _operand(x, t: Tensor | None, op: str):
    """Python numbers and arrays next to a tensor become tensors of its dtype and device."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number):
        raise RuntimeError(f"{op}: both arguments need to be at least 1-D, got a scalar")
    if t is None:
        raise TypeError(f"{op}: expected tensors, got {type(x).__name__}")
    return Tensor(x, dtype=t.dtype, device=t.device)


def _check_operands(a, b, op: str):
    a = _operand(a, b if isinstance(b, Tensor) else None, op)
    b = _operand(b, a, op)
    same_device(op, a, b)
    for t in (a, b):
        if t.dtype not in _FLOATS:
            raise TypeError(
                f"{op}: only float tensors (float16, bfloat16, float32, float64) are supported, "
                f"got {dtype_name(t.dtype)}; convert with .float() or .double()"
            )
    if a.dtype != b.dtype and not autocast_active():  # autocast casts both in apply
        raise TypeError(
            f"{op}: dtypes {dtype_name(a.dtype)} and {dtype_name(b.dtype)} differ; convert one "
            "with .to(dtype) first"
        )
    return a, b


def _kernel_operand(x, trans: bool):
    """Hand the kernel a C-contiguous array where a transpose flag avoids a copy.

    A transposed view (e.g. ``w.T``) is C-contiguous once its last two dims are swapped back,
    so pass that with the flag flipped instead of copying.
    """
    if not x.flags.c_contiguous and x.ndim >= 2:
        swapped = x.swapaxes(-1, -2)
        if swapped.flags.c_contiguous:
            return swapped, not trans
    return x, trans


def _mm(a, b, trans_a=False, trans_b=False):
    a, trans_a = _kernel_operand(a, trans_a)
    b, trans_b = _kernel_operand(b, trans_b)
    return backend_of(a).matmul(a, b, trans_a, trans_b)


def _plan(a_shape, b_shape):
    """Shapes for the 2-D/3-D kernel call; raises on a mismatch naming both shapes."""
    a2 = (1,) + a_shape if len(a_shape) == 1 else a_shape
    b2 = b_shape + (1,) if len(b_shape) == 1 else b_shape
    if a2[-1] != b2[-2]:
        raise RuntimeError(f"matmul: shapes {a_shape} and {b_shape} cannot be multiplied")
    try:
        batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    except ValueError:
        raise RuntimeError(
            f"matmul: shapes {a_shape} and {b_shape} cannot be multiplied (batch dims "
            f"{a2[:-2]} and {b2[:-2]} do not broadcast)"
        ) from None
    m, k, n = a2[-2], a2[-1], b2[-1]
    out = batch + (m, n)
    if len(a_shape) == 1:
        out = out[:-2] + out[-1:]
    if len(b_shape) == 1:
        out = out[:-1]
    return a2, b2, batch, (m, k, n), out


def _rows(shape) -> int:
    """Rows once every dim but the last is folded together."""
    return int(np.prod(shape[:-1], dtype=np.int64))


class MatMul(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, a, b):
        a2s, b2s, batch, (m, k, n), out_shape = _plan(a.shape, b.shape)
        ctx.save_for_backward(a, b)
        ctx.plan = (a2s, b2s, batch, (m, k, n))
        a2, b2 = a.reshape(a2s), b.reshape(b2s)
        if not batch:
            c = _mm(a2, b2)
        elif len(b2s) == 2:  # (..., M, K) @ (K, N): fold the batch into M, one 2-D product
            c = _mm(a2.reshape(_rows(a2s), k), b2)
        else:
            nb = int(np.prod(batch, dtype=np.int64))
            xp = xp_of(a)
            a3 = xp.broadcast_to(a2, batch + (m, k)).reshape(nb, m, k)
            b3 = xp.broadcast_to(b2, batch + (k, n)).reshape(nb, k, n)
            c = _mm(a3, b3)
        return c.reshape(out_shape)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        a2s, b2s, batch, (m, k, n) = ctx.plan
        need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if isinstance(g, Tensor):  # create_graph: the same products as recorded matmuls
            g2 = g.reshape(batch + (m, n))
            ga = sum_to_shape(g2 @ b.reshape(b2s).mT, a2s).reshape(a.shape) if need_a else None
            gb = sum_to_shape(a.reshape(a2s).mT @ g2, b2s).reshape(b.shape) if need_b else None
            return ga, gb
        xp = xp_of(g)
        ga = gb = None
        a2, b2 = a.reshape(a2s), b.reshape(b2s)
        if not batch:
            g2 = g.reshape(m, n)
            if need_a:
                ga = _mm(g2, b2, trans_b=True)
            if need_b:
                gb = _mm(a2, g2, trans_a=True)
        elif len(b2s) == 2:
            g2 = g.reshape(_rows(a2s), n)
            if need_a:
                ga = _mm(g2, b2, trans_b=True).reshape(a2s)
            if need_b:
                gb = _mm(a2.reshape(_rows(a2s), k), g2, trans_a=True)
        else:
            nb = int(np.prod(batch, dtype=np.int64))
            g3 = g.reshape(nb, m, n)
            if need_a:
                b3 = xp.broadcast_to(b2, batch + (k, n)).reshape(nb, k, n)
                ga = sum_to_shape(_mm(g3, b3, trans_b=True).reshape(batch + (m, k)), a2s)
            if need_b:
                a3 = xp.broadcast_to(a2, batch + (m, k)).reshape(nb, m, k)
                gb = sum_to_shape(_mm(a3, g3, trans_a=True).reshape(batch + (k, n)), b2s)
        if ga is not None:
            ga = ga.reshape(a.shape)
        if gb is not None:
            gb = gb.reshape(b.shape)
        return ga, gb


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy/PyTorch semantics (1-D vectors, broadcast batch dims)."""
    a, b = _check_operands(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(
            f"matmul: both arguments need to be at least 1-D, but they are {a.ndim}-D and "
            f"{b.ndim}-D (shapes {a.shape} and {b.shape})"
        )
    _plan(a.shape, b.shape)  # shape errors before any work
    return MatMul.apply(a, b)


def mm(a, b) -> Tensor:
    """Product of two matrices: (M, K) @ (K, N) -> (M, N)."""
    a, b = _check_operands(a, b, "mm")
    if a.ndim != 2 or b.ndim != 2:
        raise RuntimeError(f"mm: expected 2-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise RuntimeError(f"mm: shapes {a.shape} and {b.shape} cannot be multiplied")
    return MatMul.apply(a, b)


def bmm(a, b) -> Tensor:
    """Batched product: (B, M, K) @ (B, K, N) -> (B, M, N); batch sizes must be equal."""
    a, b = _check_operands(a, b, "bmm")
    if a.ndim != 3 or b.ndim != 3:
        raise RuntimeError(f"bmm: expected 3-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise RuntimeError(f"bmm: shapes {a.shape} and {b.shape} cannot be multiplied")
    return MatMul.apply(a, b)


def dot(a, b) -> Tensor:
    """Inner product of two 1-D tensors of the same length (a 0-d tensor)."""
    a, b = _check_operands(a, b, "dot")
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"dot: expected 1-D tensors, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise RuntimeError(
            f"dot: inconsistent tensor size, expected tensors of the same length, got shapes "
            f"{a.shape} and {b.shape}"
        )
    return MatMul.apply(a, b)


vdot = dot


def inner(a, b) -> Tensor:
    """Sum product over the last dims (``torch.inner``): shape a.shape[:-1] + b.shape[:-1]."""
    from .shape import reshape, transpose

    a, b = _check_operands(a, b, "inner")
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if a.shape[-1] != b.shape[-1]:
        raise RuntimeError(f"inner: last dims of shapes {a.shape} and {b.shape} differ")
    k = a.shape[-1]
    a2 = reshape(a, (int(np.prod(a.shape[:-1])), k))
    b2 = reshape(b, (int(np.prod(b.shape[:-1])), k))
    return reshape(matmul(a2, transpose(b2, 0, 1)), a.shape[:-1] + b.shape[:-1])


def outer(a, b) -> Tensor:
    """Outer product of two 1-D tensors: (n,) x (m,) -> (n, m)."""
    from .shape import unsqueeze

    a, b = _check_operands(a, b, "outer")
    if a.ndim != 1 or b.ndim != 1:
        raise RuntimeError(f"outer: expected 1-D tensors, got shapes {a.shape} and {b.shape}")
    return matmul(unsqueeze(a, 1), unsqueeze(b, 0))

