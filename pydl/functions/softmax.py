"""Softmax family and classification losses: softmax, log_softmax, softmin, cross_entropy,
nll_loss, as in ``torch.nn.functional``.

The kernels work along the last axis of a contiguous array; the Functions move ``dim``
there and back. ``cross_entropy`` with class-index targets is the fused kernel
(``cross_entropy_forward/backward``): inputs (N, C, d1, ...) are viewed as (N*d1*..., C)
with classes last. Class-probability targets go through ``log_softmax_forward``.
"""

from __future__ import annotations

from ..autograd import Function
from ..backend import backend_of
from ..tensor import Tensor, dtype_name
from ._composed import composed_vjp, graph_inputs, keep_constants
from ._util import normalize_axis
from .conv import _check_float, _check_tensor
from .loss import _check_reduction, _coerce_weight, _legacy_reduction, _scalar

__all__ = ["softmax", "log_softmax", "softmin", "cross_entropy", "nll_loss"]


class _Softmax(Function):
    """softmax or log_softmax along ``axis`` through the last-axis kernels."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, axis, log):
        be = backend_of(x)
        xp = be.xp
        last = axis == x.ndim - 1 or x.ndim == 0
        moved = xp.ascontiguousarray(x.reshape(1) if x.ndim == 0 else xp.moveaxis(x, axis, -1))
        y = (be.log_softmax_forward if log else be.softmax_forward)(moved)
        ctx.save_for_backward(y)
        ctx.axis, ctx.log, ctx.shape = axis, log, x.shape
        # at the last axis the output is y itself, so an in-place edit of it is caught
        return y.reshape(x.shape) if last else xp.ascontiguousarray(xp.moveaxis(y, -1, axis))

    @staticmethod
    def backward(ctx, gy):
        (y,) = ctx.saved_tensors
        if isinstance(gy, Tensor):  # create_graph: compose differentiable ops over the output
            return _softmax_backward_graph(ctx, gy, y), None, None
        be = backend_of(gy)
        xp = be.xp
        axis = ctx.axis
        moved = gy.reshape(1) if gy.ndim == 0 else xp.moveaxis(gy, axis, -1)
        moved = xp.ascontiguousarray(moved)
        gx = (be.log_softmax_backward if ctx.log else be.softmax_backward)(moved, y)
        if gy.ndim == 0:
            return gx.reshape(()), None, None
        return xp.ascontiguousarray(xp.moveaxis(gx, -1, axis)), None, None


def _softmax_dim(input, dim, dtype, op):
    _check_tensor(input, "input", op)
    if dtype is not None:
        input = input.to(dtype)
    _check_float(input, "input", op)
    if dim is None:  # PyTorch's legacy implicit choice
        dim = 0 if input.ndim in (0, 1, 3) else 1
    return input, normalize_axis(dim, input.ndim, op)


def _softmax_backward_graph(ctx, gy, y):
    """The softmax / log_softmax backward as recorded ops on the output tensor ``out``:
    ``out * (g - sum(g * out))`` and ``g - exp(out) * sum(g)`` along the axis."""
    y = y.data  # the kernel's layout of the output: rebuilt as the output tensor below
    xp = backend_of(y).xp
    axis = None if len(ctx.shape) == 0 else ctx.axis
    layout = y.reshape(ctx.shape) if axis is None else xp.moveaxis(y, -1, axis)
    out = ctx.output_tensor(0, layout)
    if ctx.log:
        return gy - out.exp() * gy.sum(axis=axis, keepdims=axis is not None)
    return out * (gy - (gy * out).sum(axis=axis, keepdims=axis is not None))


def softmax(input, dim=None, dtype=None):  # noqa: A002
    """exp(x) / sum(exp(x)) along ``dim`` (numerically stable), as ``F.softmax``.

    ``dtype`` converts the input first. >>> softmax(pydl.randn(2, 5), dim=-1).sum(-1) -> ones
    """
    input, axis = _softmax_dim(input, dim, dtype, "softmax")
    return _Softmax.apply(input, axis, False)


def log_softmax(input, dim=None, dtype=None):  # noqa: A002
    """log(softmax(x)) along ``dim``, computed directly (stable for large logits)."""
    input, axis = _softmax_dim(input, dim, dtype, "log_softmax")
    return _Softmax.apply(input, axis, True)


def softmin(input, dim=None, dtype=None):  # noqa: A002
    """softmax(-x) along ``dim``."""
    input, axis = _softmax_dim(input, dim, dtype, "softmin")
    return _Softmax.apply(-input, axis, False)


# -- classification losses -------------------------------------------------------------------
def _classes_last(xp, x):
    """(N, C, d1, ...) -> contiguous (N*d1*..., C); (C,) -> (1, C); (N, C) unchanged."""
    if x.ndim == 1:
        return xp.ascontiguousarray(x).reshape(1, -1)
    if x.ndim == 2:
        return xp.ascontiguousarray(x)
    return xp.ascontiguousarray(xp.moveaxis(x, 1, -1)).reshape(-1, x.shape[1])


def _classes_back(xp, g2, shape):
    """Inverse of :func:`_classes_last`."""
    if len(shape) <= 2:
        return g2.reshape(shape)
    moved = g2.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return xp.ascontiguousarray(xp.moveaxis(moved, -1, 1))


def _class_weights_of_targets(xp, target, weight, ignore_index, dtype):
    """w[t_i] for kept samples and 0 for ignored ones (w = 1 without a weight)."""
    kept = target != ignore_index
    if weight is None:
        return kept.astype(dtype)
    return xp.where(kept, weight[xp.where(kept, target, 0)], 0).astype(dtype)


def _grad_per_sample(xp, g, reduction, n, den, dtype):
    """d(reduced loss)/d(per-sample loss), shape (n,)."""
    if reduction == "none":
        return xp.ascontiguousarray(g).reshape(n)
    scale = g if reduction == "sum" else g / den
    return xp.ascontiguousarray(xp.broadcast_to(xp.asarray(scale, dtype=dtype), (n,)))


def _reduce_samples(xp, loss, reduction, den, out_shape, dtype):
    if reduction == "none":
        return loss.reshape(out_shape)
    total = loss.sum()
    return _scalar(xp, total if reduction == "sum" else total / den, dtype)


class CrossEntropy(Function):
    """Fused log-softmax + negative log-likelihood at class-index targets.

    Under create_graph the backward is the VJP of :func:`_cross_entropy_graph` (log_softmax
    and indexing ops), which can be differentiated again.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, label_smoothing, reduction):
        be = backend_of(x)
        xp = be.xp
        x2 = _classes_last(xp, x)
        t1 = xp.ascontiguousarray(target).reshape(-1).astype("int64", copy=False)
        loss, lse = be.cross_entropy_forward(x2, t1, weight, ignore_index, label_smoothing)
        den = None
        if reduction == "mean":
            den = _class_weights_of_targets(xp, t1, weight, ignore_index, x.dtype).sum()
        ctx.save_for_backward(x2, lse, t1)
        keep_constants(ctx, x)
        ctx.conf = (weight, ignore_index, label_smoothing, reduction, den, x.shape)
        ctx.out_shape = target.shape
        return _reduce_samples(xp, loss, reduction, den, target.shape, x.dtype)

    @staticmethod
    def backward(ctx, g):
        x2, lse, t1 = ctx.saved_tensors
        weight, ignore_index, label_smoothing, reduction, den, shape = ctx.conf
        if isinstance(g, Tensor):
            def ref(x):
                return _cross_entropy_graph(x, t1, weight, ignore_index, label_smoothing,
                                            reduction, den, ctx.out_shape)

            (gx,) = composed_vjp(ref, graph_inputs(ctx, 1), [g])
            return gx, None, None, None, None, None
        be = backend_of(g)
        xp = be.xp
        gl = _grad_per_sample(xp, g, reduction, t1.shape[0], den, x2.dtype)
        gx2 = be.cross_entropy_backward(gl, x2, lse, t1, weight, ignore_index, label_smoothing)
        return _classes_back(xp, gx2, shape), None, None, None, None, None


class SoftCrossEntropy(Function):
    """Cross-entropy against class probabilities of the input's shape."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, target, weight, label_smoothing, reduction):
        keep_constants(ctx, x, target)
        be = backend_of(x)
        xp = be.xp
        x2, t2 = _classes_last(xp, x), _classes_last(xp, target)
        c = x2.shape[1]
        logp = be.log_softmax_forward(x2)
        smooth = t2 * (1 - label_smoothing) + label_smoothing / c if label_smoothing else t2
        wt = smooth if weight is None else smooth * weight
        loss = -(logp * wt).sum(axis=-1)
        ctx.save_for_backward(logp, wt)
        ctx.conf = (weight, label_smoothing, reduction, x.shape)
        out_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
        return _reduce_samples(xp, loss, reduction, x2.shape[0], out_shape, x.dtype)

    @staticmethod
    def backward(ctx, g):
        logp, wt = ctx.saved_tensors
        weight, label_smoothing, reduction, shape = ctx.conf
        if isinstance(g, Tensor):
            def ref(x, t):
                return _soft_cross_entropy_graph(x, t, weight, label_smoothing, reduction)

            gx, gt = composed_vjp(ref, graph_inputs(ctx, 2), [g])
            need = ctx.needs_input_grad
            return gx if need[0] else None, gt if need[1] else None, None, None, None
        xp = backend_of(g).xp
        gl = _grad_per_sample(xp, g, reduction, logp.shape[0], logp.shape[0], logp.dtype)
        gl = gl[:, None]
        gx = gt = None
        if ctx.needs_input_grad[0]:
            gx = _classes_back(xp, gl * (xp.exp(logp) * wt.sum(axis=-1, keepdims=True) - wt),
                               shape)
        if ctx.needs_input_grad[1]:
            gt2 = -gl * logp * (1 - label_smoothing)
            gt = _classes_back(xp, gt2 if weight is None else gt2 * weight, shape)
        return gx, gt, None, None, None


class NLLLoss(Function):
    """-w[t] * input[t] at class-index targets (input holds log-probabilities)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction):
        xp = backend_of(x).xp
        x2 = _classes_last(xp, x)
        t1 = xp.ascontiguousarray(target).reshape(-1).astype("int64", copy=False)
        c = x2.shape[1]
        kept = t1 != ignore_index
        bad = kept & ((t1 < 0) | (t1 >= c))
        if bool(bad.any()):
            value = int(t1[int(xp.argmax(bad))])
            raise IndexError(f"nll_loss: target {value} is out of bounds for {c} classes")
        safe = xp.where(kept, t1, 0)
        wt = _class_weights_of_targets(xp, t1, weight, ignore_index, x.dtype)
        picked = xp.take_along_axis(x2, safe[:, None], axis=1)[:, 0] if c else wt * 0
        loss = -wt * picked
        den = wt.sum() if reduction == "mean" else None
        ctx.conf = (safe, wt, reduction, den, x.shape, x2.shape)
        return _reduce_samples(xp, loss, reduction, den, target.shape, x.dtype)

    @staticmethod
    def backward(ctx, g):
        safe, wt, reduction, den, shape, shape2 = ctx.conf
        if isinstance(g, Tensor):  # linear in g: a recorded scatter of -w[t] * g
            from .indexing import IndexPut

            xp = backend_of(g.data).xp
            gl = _grad_per_sample_graph(g, reduction, shape2[0], den)
            gx2 = Tensor._make(xp.zeros(shape2, dtype=g.dtype), False)
            if shape2[1]:
                gx2 = IndexPut.apply(gx2, gl * Tensor._make(-wt, False),
                                     key=(xp.arange(shape2[0]), safe), accumulate=False)
            return _classes_back_graph(gx2, shape), None, None, None, None
        xp = backend_of(g).xp
        gl = _grad_per_sample(xp, g, reduction, shape2[0], den, g.dtype)
        gx2 = xp.zeros(shape2, dtype=g.dtype)
        if shape2[1]:
            gx2[xp.arange(shape2[0]), safe] = -wt * gl
        return _classes_back(xp, gx2, shape), None, None, None, None


# -- the same losses as recorded ops (the create_graph path) -----------------------------------
def _classes_last_graph(x):
    """:func:`_classes_last` on a Tensor."""
    if x.ndim == 1:
        return x.reshape(1, -1)
    if x.ndim == 2:
        return x
    return x.movedim(1, -1).reshape(-1, x.shape[1])


def _classes_back_graph(g2, shape):
    """:func:`_classes_back` on a Tensor."""
    if len(shape) <= 2:
        return g2.reshape(shape)
    return g2.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],)).movedim(-1, 1)


def _grad_per_sample_graph(g, reduction, n, den):
    if reduction == "none":
        return g.reshape(n)
    scale = g if reduction == "sum" else g / den
    return scale.reshape(1).expand(n)


def _reduce_samples_graph(loss, reduction, den, out_shape):
    if reduction == "none":
        return loss.reshape(out_shape)
    total = loss.sum()
    return total if reduction == "sum" else total / den


def _cross_entropy_graph(x, t1, weight, ignore_index, eps, reduction, den, out_shape):
    """The class-index cross-entropy of :class:`CrossEntropy` with log_softmax and
    indexing ops (the kernel's formula: ``(1 - eps) w[t] nll + eps / C sum_c w_c (-logp_c)``,
    0 at ignored samples)."""
    xp = backend_of(t1).xp
    x2 = _classes_last_graph(x)
    n, c = x2.shape
    if c == 0:
        return _reduce_samples_graph(x2.sum(axis=-1), reduction, den, out_shape)
    logp = log_softmax(x2, dim=-1)
    kept = t1 != ignore_index
    safe = xp.where(kept, t1, 0)
    w = xp.ones(c, dtype=x2.dtype) if weight is None else weight
    wt = xp.where(kept, w[safe], 0).astype(x2.dtype)
    loss = -logp[xp.arange(n), safe] * Tensor._make(wt * (1 - eps), False)
    if eps:
        smooth = Tensor._make(xp.where(kept, eps / c, 0).astype(x2.dtype)[:, None] * w, False)
        loss = loss - (logp * smooth).sum(axis=-1)
    return _reduce_samples_graph(loss, reduction, den, out_shape)


def _soft_cross_entropy_graph(x, t, weight, eps, reduction):
    """:class:`SoftCrossEntropy` with log_softmax and elementwise ops."""
    x2, t2 = _classes_last_graph(x), _classes_last_graph(t)
    c = x2.shape[1]
    smooth = t2 * (1 - eps) + eps / c if eps else t2
    wt = smooth if weight is None else smooth * Tensor._make(weight, False)
    loss = -(log_softmax(x2, dim=-1) * wt).sum(axis=-1)
    out_shape = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    return _reduce_samples_graph(loss, reduction, x2.shape[0], out_shape)


def _check_class_target(op, input, target):
    """Class-index targets: int dtype and the shape (N, d1, ...) of an (N, C, d1, ...) input."""
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: expected class-index targets of an integer dtype (or class probabilities "
            f"of the input's shape {input.shape}), got {dtype_name(target.dtype)} of shape "
            f"{target.shape}"
        )
    expected = () if input.ndim == 1 else input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise ValueError(
            f"{op}: input of shape {input.shape} needs a target of shape {expected}, got "
            f"target of shape {target.shape}"
        )


def _class_input(op, input, target):
    _check_tensor(input, "input", op)
    _check_float(input, "input", op)
    if input.ndim < 1:
        raise ValueError(f"{op}: input must have a class dimension, got shape {input.shape}")
    if not isinstance(target, Tensor):
        target = Tensor(target, device=input.device)
    return target


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,  # noqa: A002
                  reduce=None, reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits and targets, as ``F.cross_entropy``.

    input: logits (N, C), (N, C, d1, ...) or (C,). target: class indices (N,), (N, d1, ...)
    or (), int; or class probabilities of the input's shape (float). ``weight`` (C,) rescales
    classes; samples whose target is ``ignore_index`` count nothing. ``'mean'`` divides by the
    summed weights of the counted samples (by the number of samples for probabilities).
    ``label_smoothing`` mixes the target with the uniform distribution. ``size_average`` and
    ``reduce`` are PyTorch's deprecated spellings of ``reduction``.

    >>> cross_entropy(pydl.randn(4, 10), pydl.tensor([1, 0, 9, 3]))
    """
    op = "cross_entropy"
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _class_input(op, input, target)
    _check_reduction(op, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {label_smoothing}")
    weight = _coerce_weight(op, weight, input, input.shape[1 if input.ndim > 1 else 0])
    if target.dtype.kind == "f":
        if target.shape != input.shape:
            raise ValueError(
                f"{op}: class-probability target of shape {target.shape} must match the input "
                f"shape {input.shape} (use int64 class indices otherwise)"
            )
        if target.dtype != input.dtype:
            target = target.to(input.dtype)
        return SoftCrossEntropy.apply(input, target, weight, float(label_smoothing), reduction)
    _check_class_target(op, input, target)
    return CrossEntropy.apply(input, target, weight, int(ignore_index), float(label_smoothing),
                              reduction)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100,  # noqa: A002
             reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities at class targets, as ``F.nll_loss``.

    Shapes, ``weight``, ``ignore_index`` and ``reduction`` are as for :func:`cross_entropy`
    with class-index targets; ``nll_loss(log_softmax(x, 1), t)`` equals ``cross_entropy(x, t)``.
    """
    op = "nll_loss"
    reduction = _legacy_reduction(size_average, reduce, reduction)
    target = _class_input(op, input, target)
    _check_reduction(op, reduction)
    weight = _coerce_weight(op, weight, input, input.shape[1 if input.ndim > 1 else 0])
    _check_class_target(op, input, target)
    return NLLLoss.apply(input, target, weight, int(ignore_index), reduction)
