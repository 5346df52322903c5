"""Regression and binary losses, as in ``torch.nn.functional``: mse_loss, l1_loss, huber_loss,
smooth_l1_loss, binary_cross_entropy, binary_cross_entropy_with_logits, kl_div.

Each is one Function computing the elementwise loss and its reduction, with stable formulas:
BCE clamps its logs at -100 as PyTorch does, BCE-with-logits uses softplus(-x) =
log1p(exp(-|x|)) + max(-x, 0) and has gradient sigmoid(x) - y. Input and target must have
the same shape: losses never broadcast silently (the error names both shapes).
The reduction helpers here are shared with ``softmax.py`` (cross_entropy, nll_loss).
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backend import backend_of
from ..tensor import Tensor
from ._composed import graph_inputs, keep_constants
from ._util import sum_to_shape, xp_of
from .conv import _check_float, _check_tensor

__all__ = [
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "kl_div",
]

_REDUCTIONS = ("mean", "sum", "none")


# -- shared helpers --------------------------------------------------------------------------
def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average / reduce flags turned into a reduction name."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is not None and not reduce:
        return "none"
    return "sum" if size_average is not None and not size_average else "mean"


def _check_reduction(op, reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{op}: reduction must be one of {names}, got {reduction!r}")


def _scalar(xp, value, dtype):
    """A 0-d array (NumPy reductions return scalars, which are not arrays)."""
    return xp.asarray(value, dtype=dtype)


def _reduce(xp, loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return _scalar(xp, loss.sum(), loss.dtype)
    count = loss.shape[0] if reduction == "batchmean" and loss.ndim else loss.size
    return _scalar(xp, loss.sum() / count if count else loss.sum() * np.nan, loss.dtype)


def _reduce_grad(xp, g, reduction, shape):
    """d(reduced loss)/d(elementwise loss) broadcast to ``shape``."""
    if reduction == "none":
        return g
    if reduction == "mean":
        g = g / max(int(np.prod(shape)), 1)
    elif reduction == "batchmean" and len(shape):
        g = g / max(shape[0], 1)
    return xp.broadcast_to(g, shape)


def _as_tensor(value, like, name, op):
    """``value`` as a tensor of ``like``'s dtype and device (int/bool tensors are converted)."""
    if value is None:
        return None
    if not isinstance(value, Tensor):
        return Tensor(value, dtype=like.dtype, device=like.device)
    if value.dtype != like.dtype:
        value = value.to(like.dtype)
    return value


def _coerce_weight(op, weight, input, classes):
    """A class-weight tensor of shape (classes,) in the input's dtype, or None."""
    weight = _as_tensor(weight, input, "weight", op)
    if weight is not None and weight.shape != (classes,):
        raise ValueError(f"{op}: weight of shape {weight.shape} must have one entry per class, "
                         f"shape ({classes},)")
    return weight


def _loss_operands(op, input, target, reduction, allowed=_REDUCTIONS):
    """Checked (input, target) of one shape and dtype."""
    _check_tensor(input, "input", op)
    _check_float(input, "input", op)
    _check_reduction(op, reduction, allowed)
    target = _as_tensor(target, input, "target", op)
    if target.shape != input.shape:
        raise ValueError(
            f"{op}: input of shape {input.shape} and target of shape {target.shape} differ; "
            "losses do not broadcast, reshape one of them"
        )
    return input, target


def _broadcast_weight(op, weight, input, name="weight"):
    """A weight that broadcasts to the input's shape (as PyTorch's BCE weights do)."""
    weight = _as_tensor(weight, input, name, op)
    if weight is not None:
        try:
            ok = np.broadcast_shapes(weight.shape, input.shape) == input.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: {name} of shape {weight.shape} does not broadcast to the "
                             f"input shape {input.shape}")
    return weight


# -- losses of the difference d = input - target ---------------------------------------------
class DifferenceLoss(Function):
    """reduce(f(x - t)) with f and its derivative given; d/dt = -d/dx.

    Under create_graph, d is rebuilt from the input tensors (forward keeps only the inputs
    that need no gradient) and ``df`` runs on it as recorded ops.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, x, t, f, df, reduction):
        d = x - t
        ctx.save_for_backward(d)
        keep_constants(ctx, x, t)
        ctx.df, ctx.reduction = df, reduction
        xp = backend_of(x).xp
        return _reduce(xp, f(xp, d), reduction)

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        if isinstance(g, Tensor):
            x, t = graph_inputs(ctx, 2)
            d = x - t
        xp = xp_of(g)
        gx = _reduce_grad(xp, g, ctx.reduction, d.shape) * ctx.df(xp, d)
        return (gx if ctx.needs_input_grad[0] else None,
                -gx if ctx.needs_input_grad[1] else None, None, None, None)


def _difference_loss(op, input, target, reduction, f, df):
    input, target = _loss_operands(op, input, target, reduction)
    return DifferenceLoss.apply(input, target, f, df, reduction)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    """Mean squared error ``(input - target) ** 2``, reduced ('mean', 'sum' or 'none').

    >>> mse_loss(pydl.tensor([1.0, 2.0]), pydl.tensor([1.0, 4.0]))   # 2.0
    """
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _difference_loss("mse_loss", input, target, reduction, lambda xp, d: d * d,
                            lambda xp, d: 2 * d)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):  # noqa: A002
    """Mean absolute error ``|input - target|`` (gradient sign(d), 0 at d = 0)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    return _difference_loss("l1_loss", input, target, reduction, lambda xp, d: abs(d),
                            lambda xp, d: xp.sign(d))


def huber_loss(input, target, reduction="mean", delta=1.0):  # noqa: A002
    """Huber loss of d = input - target: ``0.5 d**2`` where ``|d| < delta``, else
    ``delta * (|d| - 0.5 delta)``."""
    if delta <= 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")

    def f(xp, d):
        a = abs(d)
        return xp.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))

    return _difference_loss("huber_loss", input, target, reduction, f,
                            lambda xp, d: xp.clip(d, -delta, delta))


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean",  # noqa: A002
                   beta=1.0):
    """``0.5 d**2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``; beta=0 is l1_loss."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    if beta == 0:
        return l1_loss(input, target, reduction=reduction)

    def f(xp, d):
        a = abs(d)
        return xp.where(a < beta, (0.5 / beta) * d * d, a - 0.5 * beta)

    return _difference_loss("smooth_l1_loss", input, target, reduction, f,
                            lambda xp, d: xp.clip(d / beta, -1, 1))


# -- binary cross-entropy --------------------------------------------------------------------
def _clamped_log(xp, p):
    """log(p) clamped at -100 (PyTorch's BCE), without warnings at p = 0."""
    positive = p > 0
    return xp.where(positive, xp.maximum(xp.log(xp.where(positive, p, 1)), -100), -100)


class BinaryCrossEntropy(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, p, y, w, reduction):
        xp = backend_of(p).xp
        logp, log1mp = _clamped_log(xp, p), _clamped_log(xp, 1 - p)
        loss = -(y * logp + (1 - y) * log1mp)
        ctx.save_for_backward(p, y, w)
        ctx.reduction = reduction
        return _reduce(xp, loss if w is None else loss * w, reduction)

    @staticmethod
    def backward(ctx, g):
        p, y, w = ctx.saved_tensors
        xp = xp_of(g)
        ge = _reduce_grad(xp, g, ctx.reduction, p.shape)
        gew = ge if w is None else ge * w
        gp = gy = gw = None
        if ctx.needs_input_grad[0]:
            gp = gew * (p - y) / xp.maximum((1 - p) * p, 1e-12)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            logp, log1mp = _clamped_log(xp, p), _clamped_log(xp, 1 - p)
            if ctx.needs_input_grad[1]:
                gy = gew * (log1mp - logp)
            if ctx.needs_input_grad[2]:
                gw = sum_to_shape(-ge * (y * logp + (1 - y) * log1mp), w.shape)
        return gp, gy, gw, None


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,  # noqa: A002
                         reduction="mean"):
    """``-(y log p + (1 - y) log(1 - p))`` for probabilities p in [0, 1] (logs clamped at -100).

    ``weight`` broadcasts to the input's shape. Prefer
    :func:`binary_cross_entropy_with_logits` on logits: it is stable for any input.
    """
    op = "binary_cross_entropy"
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input, target = _loss_operands(op, input, target, reduction)
    p = input.data
    if bool(((p < 0) | (p > 1)).any()):
        raise ValueError(f"{op}: all elements of input should be between 0 and 1 "
                         "(use binary_cross_entropy_with_logits on logits)")
    weight = _broadcast_weight(op, weight, input)
    return BinaryCrossEntropy.apply(input, target, weight, reduction)


def _softplus_neg(xp, x):
    """softplus(-x) = log(1 + exp(-x)), stable for any x."""
    return xp.log1p(xp.exp(-abs(x))) + xp.maximum(-x, 0)


def _sigmoid(xp, x):
    e = xp.exp(-abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


class BinaryCrossEntropyWithLogits(Function):
    double_backward = True

    @staticmethod
    def forward(ctx, x, y, w, pw, reduction):
        xp = backend_of(x).xp
        sp = _softplus_neg(xp, x)
        loss = (1 - y) * x + (sp if pw is None else ((pw - 1) * y + 1) * sp)
        ctx.save_for_backward(x, y, w, pw)
        ctx.reduction = reduction
        return _reduce(xp, loss if w is None else loss * w, reduction)

    @staticmethod
    def backward(ctx, g):
        x, y, w, pw = ctx.saved_tensors
        xp = xp_of(g)
        ge = _reduce_grad(xp, g, ctx.reduction, x.shape)
        gew = ge if w is None else ge * w
        need = ctx.needs_input_grad
        gx = gy = gw = gpw = None
        if need[0]:
            if pw is None:
                gx = gew * (_sigmoid(xp, x) - y)
            else:
                gx = gew * ((1 - y) - ((pw - 1) * y + 1) * _sigmoid(xp, -x))
        if need[1] or need[2] or need[3]:
            sp = _softplus_neg(xp, x)
            if need[1]:
                gy = gew * (-x if pw is None else (pw - 1) * sp - x)
            if need[2]:
                loss = (1 - y) * x + (sp if pw is None else ((pw - 1) * y + 1) * sp)
                gw = sum_to_shape(ge * loss, w.shape)
            if need[3]:
                gpw = sum_to_shape(gew * y * sp, pw.shape)
        return gx, gy, gw, gpw, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,  # noqa: A002
                                     reduce=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable step, as ``F.binary_cross_entropy_with_logits``.

    ``(1 - y) x + (1 + (pos_weight - 1) y) * softplus(-x)``, finite for any logit; the gradient
    is ``sigmoid(x) - y``. ``weight`` and ``pos_weight`` (e.g. one per class, last dim)
    broadcast to the input's shape.

    >>> binary_cross_entropy_with_logits(pydl.tensor([100.0]), pydl.tensor([0.0]))   # 100.0
    """
    op = "binary_cross_entropy_with_logits"
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input, target = _loss_operands(op, input, target, reduction)
    weight = _broadcast_weight(op, weight, input)
    pos_weight = _broadcast_weight(op, pos_weight, input, "pos_weight")
    return BinaryCrossEntropyWithLogits.apply(input, target, weight, pos_weight, reduction)


# -- Kullback-Leibler divergence -------------------------------------------------------------
class KLDiv(Function):
    """target * (log(target) - input), or exp(t) * (t - input) with log_target."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, t, reduction, log_target):
        xp = backend_of(x).xp
        if log_target:
            loss = xp.exp(t) * (t - x)
        else:
            zero = t == 0  # xlogy: 0 * log(0) = 0
            loss = xp.where(zero, 0, t * xp.log(xp.where(zero, 1, t))) - t * x
        ctx.save_for_backward(x, t)
        ctx.reduction, ctx.log_target = reduction, log_target
        return _reduce(xp, loss, reduction)

    @staticmethod
    def backward(ctx, g):
        x, t = ctx.saved_tensors
        xp = xp_of(g)
        ge = _reduce_grad(xp, g, ctx.reduction, x.shape)
        p = xp.exp(t) if ctx.log_target else t
        gx = -ge * p if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.needs_input_grad[1]:
            if ctx.log_target:
                gt = ge * p * (t - x + 1)
            else:  # d/dt (t log t - t x) = log t + 1 - x, taken as 0 where t = 0
                positive = t > 0
                gt = ge * xp.where(positive, xp.log(xp.where(positive, t, 1)) + 1 - x, 0)
        return gx, gt, None, None


def kl_div(input, target, size_average=None, reduce=None, reduction="mean",  # noqa: A002
           log_target=False):
    """Kullback-Leibler divergence with log-probability ``input``, as ``F.kl_div``.

    Elementwise ``target * (log(target) - input)`` (``log_target``: the target is given as
    log-probabilities). ``reduction='batchmean'`` divides the sum by the batch size, the
    mathematical KL divergence; ``'mean'`` divides by the number of elements.
    """
    op = "kl_div"
    reduction = _legacy_reduction(size_average, reduce, reduction)
    input, target = _loss_operands(op, input, target, reduction, _REDUCTIONS + ("batchmean",))
    return KLDiv.apply(input, target, reduction, bool(log_target))
