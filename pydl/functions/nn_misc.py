"""Layer building blocks, as in ``torch.nn.functional``: linear, dropout (and its channel-wise
forms), embedding, and the normalizations layer_norm, batch_norm, group_norm, instance_norm.

``linear`` runs on the backend's ``matmul`` kernel (weight in PyTorch's (out, in) layout, any
leading dims). Dropout masks come from the backend's generator, so ``pydl.manual_seed``
makes them reproducible. The normalizations share one Function: statistics over some axes of
a view of the input, then a per-feature affine map.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..autograd import Function, no_grad
from ..backend import backend_of
from ..tensor import Tensor, dtype_name
from ._composed import composed_vjp, graph_inputs, keep_constants
from ._util import sum_to_shape
from .conv import _check_float, _check_same_dtype, _check_tensor

__all__ = [
    "linear", "dropout", "dropout1d", "dropout2d", "dropout3d", "embedding", "layer_norm",
    "batch_norm", "group_norm", "instance_norm",
]


# -- linear ----------------------------------------------------------------------------------
class Linear(Function):
    """y = x @ w.T + b over the last axis of x (any leading dims)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, w, b):
        be = backend_of(x)
        x2 = be.xp.ascontiguousarray(x).reshape(-1, x.shape[-1])
        y = be.matmul(x2, w, trans_b=True)
        if b is not None:
            y = y + b
        ctx.save_for_backward(x, w)
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        if isinstance(gy, Tensor):  # create_graph: the same products as recorded matmuls
            gy2 = gy.reshape(-1, w.shape[0])
            need = ctx.needs_input_grad
            return ((gy2 @ w).reshape(x.shape) if need[0] else None,
                    gy2.mT @ x.reshape(-1, x.shape[-1]) if need[1] else None,
                    gy2.sum(axis=0) if need[2] else None)
        be = backend_of(gy)
        xp = be.xp
        gy2 = xp.ascontiguousarray(gy).reshape(-1, w.shape[0])
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = be.matmul(gy2, w).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            gw = be.matmul(gy2, xp.ascontiguousarray(x).reshape(-1, x.shape[-1]), trans_a=True)
        if ctx.needs_input_grad[2]:
            gb = gy2.sum(axis=0)
        return gx, gw, gb


def linear(input, weight, bias=None):  # noqa: A002
    """``input @ weight.T + bias``, as ``F.linear``: weight (out, in), bias (out,).

    >>> linear(pydl.randn(8, 5, 3), pydl.randn(4, 3)).shape
    (8, 5, 4)
    """
    op = "linear"
    _check_tensor(input, "input", op)
    _check_tensor(weight, "weight", op)
    _check_float(input, "input", op)
    _check_same_dtype(input, weight, ("input", "weight"), op)
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (out_features, in_features), got shape "
                         f"{weight.shape}")
    if input.ndim == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{op}: input of shape {input.shape} cannot be multiplied with weight of shape "
            f"{weight.shape}: the input's last dim must be in_features = {weight.shape[1]}"
        )
    if bias is not None:
        _check_tensor(bias, "bias", op)
        _check_same_dtype(input, bias, ("input", "bias"), op)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"{op}: bias of shape {bias.shape} does not match weight of shape "
                             f"{weight.shape} (expected ({weight.shape[0]},))")
    return Linear.apply(input, weight, bias)


# -- dropout ---------------------------------------------------------------------------------
class Dropout(Function):
    """x * mask, the mask already scaled by 1 / (1 - p)."""

    double_backward = True

    @staticmethod
    def forward(ctx, x, mask):
        ctx.mask = mask
        return x * mask

    @staticmethod
    def backward(ctx, g):
        return g * ctx.mask, None


def _dropout(op, input, p, training, mask_shape):
    _check_tensor(input, "input", op)
    if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    _check_float(input, "input", op)
    be = backend_of(input.data)
    if p == 1.0:
        mask = be.xp.zeros(mask_shape, dtype=input.dtype)
    else:
        draw = np.float64 if input.dtype == np.float64 else np.float32
        keep = be.rng().random(mask_shape, dtype=draw) >= p
        mask = keep.astype(input.dtype) * input.dtype.type(1.0 / (1.0 - p))
    return Dropout.apply(input, mask)


def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Returns ``input`` itself when ``training`` is False or ``p == 0``. ``inplace`` is accepted
    for PyTorch compatibility; the result is always a new tensor.

    >>> dropout(pydl.ones(4, 4), p=0.5)   # about half zeros, the rest 2.0
    """
    return _dropout("dropout", input, p, training, input.shape)


def _feature_dropout(op, input, p, training, spatial):
    _check_tensor(input, "input", op)
    if input.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(f"{op}: expected a {spatial + 1}-D or {spatial + 2}-D input, got "
                         f"shape {input.shape}")
    return _dropout(op, input, p, training, input.shape[:-spatial] + (1,) * spatial)


def dropout1d(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero whole channels of (N, C, L) or (C, L) with probability ``p``, scale the rest."""
    return _feature_dropout("dropout1d", input, p, training, 1)


def dropout2d(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p``, scale the rest."""
    return _feature_dropout("dropout2d", input, p, training, 2)


def dropout3d(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability ``p``."""
    return _feature_dropout("dropout3d", input, p, training, 3)


# -- embedding -------------------------------------------------------------------------------
def _scatter_add_rows(xp, target, rows, values):
    """target[rows[i]] += values[i], accumulating repeated rows."""
    at = getattr(getattr(xp, "add", None), "at", None)
    if at is not None:
        at(target, rows, values)
    else:  # older CuPy: no ufunc.at
        import cupyx

        cupyx.scatter_add(target, rows, values)


class Embedding(Function):
    """weight[indices]; the gradient is scatter-added into the rows of weight."""

    double_backward = True

    @staticmethod
    def forward(ctx, indices, weight, padding_idx):
        xp = backend_of(weight).xp
        ctx.indices, ctx.padding_idx, ctx.w_shape = indices, padding_idx, weight.shape
        return xp.take(weight, indices, axis=0)

    @staticmethod
    def backward(ctx, g):
        if isinstance(g, Tensor):  # create_graph: a recorded scatter-add of the rows
            from .indexing import scatter_add_graph

            rows = ctx.indices.reshape(-1)
            g2 = g.reshape(rows.size, -1)
            if ctx.padding_idx is not None:
                keep = (rows != ctx.padding_idx).astype(g.dtype)[:, None]
                g2 = g2 * Tensor._make(keep, False)
            return None, scatter_add_graph(ctx.w_shape, (rows,), g2), None
        xp = backend_of(g).xp
        gw = xp.zeros(ctx.w_shape, dtype=g.dtype)
        rows = ctx.indices.reshape(-1)
        _scatter_add_rows(xp, gw, rows, xp.ascontiguousarray(g).reshape(rows.size, -1))
        if ctx.padding_idx is not None:
            gw[ctx.padding_idx] = 0
        return None, gw, None


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,  # noqa: A002
              scale_grad_by_freq=False, sparse=False):
    """Look up rows of ``weight`` (num_embeddings, dim) at integer ``input``, as ``F.embedding``.

    The result has shape ``input.shape + (dim,)``. The row ``padding_idx`` gets no gradient.

    >>> embedding(pydl.tensor([[0, 2], [1, 1]]), pydl.randn(5, 3)).shape
    (2, 2, 3)
    """
    op = "embedding"
    _check_tensor(weight, "weight", op)
    if not isinstance(input, Tensor):
        input = Tensor(input, device=weight.device)
    if input.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, got {dtype_name(input.dtype)}")
    if weight.ndim != 2:
        raise ValueError(f"{op}: weight must be 2-D (num_embeddings, embedding_dim), got shape "
                         f"{weight.shape}")
    if max_norm is not None or scale_grad_by_freq or sparse:
        raise NotImplementedError(f"{op}: max_norm, scale_grad_by_freq and sparse are not "
                                  "supported")
    num = weight.shape[0]
    if padding_idx is not None:
        if not -num <= padding_idx < num:
            raise ValueError(f"{op}: padding_idx {padding_idx} must be within num_embeddings "
                             f"{num}")
        padding_idx = int(padding_idx) % num
    idx = input.data
    if idx.size:
        bad = (idx < 0) | (idx >= num)
        if bool(bad.any()):
            value = int(idx.reshape(-1)[int(backend_of(idx).xp.argmax(bad.reshape(-1)))])
            raise IndexError(f"{op}: index {value} is out of range for {num} embeddings")
    return Embedding.apply(input, weight, padding_idx)


# -- normalization ---------------------------------------------------------------------------
class Normalize(Function):
    """y = (x - mean) / sqrt(var + eps) * w + b.

    Statistics are taken over ``axes`` of ``x.reshape(view)`` (biased variance), or are the
    given ``stats`` (mean, var) broadcasting against the view. ``w`` and ``b`` (or None)
    broadcast against x once reshaped to ``affine``. Also returns the batch mean and variance
    (non-differentiable) for running statistics.

    Under create_graph the backward is the VJP of :func:`_ref_normalize`, the same formula
    in recorded ops (mean, var, rsqrt), so it can be differentiated again.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, x, w, b, view, axes, affine, eps, stats):
        keep_constants(ctx, x, w, b)
        ctx.eps, ctx.stats = eps, stats
        xp = backend_of(x).xp
        xv = x.reshape(view)
        if stats is None:
            mean = xv.mean(axis=axes, keepdims=True)
            var = ((xv - mean) ** 2).mean(axis=axes, keepdims=True)
        else:
            mean, var = stats
        rstd = 1 / xp.sqrt(var + eps)
        xhat = ((xv - mean) * rstd).reshape(x.shape)
        y = xhat
        if w is not None:
            y = y * w.reshape(affine)
        if b is not None:
            y = y + b.reshape(affine)
        ctx.save_for_backward(xhat, rstd, w)
        ctx.conf = (view, axes, affine, stats is None, None if b is None else b.shape)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, gy, _gmean, _gvar):
        xhat, rstd, w = ctx.saved_tensors
        view, axes, affine, batch_stats, b_shape = ctx.conf
        if isinstance(gy, Tensor):
            eps, stats = ctx.eps, ctx.stats

            def ref(x, w, b):
                return _ref_normalize(x, w, b, view, axes, affine, eps, stats)

            got = composed_vjp(ref, graph_inputs(ctx, 3), [gy])
            return (*(g if n else None for g, n in zip(got, ctx.needs_input_grad)),
                    None, None, None, None, None)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gxhat = (gy if w is None else gy * w.reshape(affine)).reshape(view)
            if batch_stats:
                xv = xhat.reshape(view)
                gxhat = (gxhat - gxhat.mean(axis=axes, keepdims=True)
                         - xv * (gxhat * xv).mean(axis=axes, keepdims=True))
            gx = (gxhat * rstd).reshape(gy.shape)
        if ctx.needs_input_grad[1]:
            gw = sum_to_shape(gy * xhat, affine).reshape(w.shape)
        if ctx.needs_input_grad[2]:
            gb = sum_to_shape(gy, affine).reshape(b_shape)
        return gx, gw, gb, None, None, None, None, None


def _ref_normalize(x, w, b, view, axes, affine, eps, stats):
    """:class:`Normalize`'s output with differentiable ops (the create_graph backward)."""
    xv = x.reshape(view)
    if stats is None:
        mean = xv.mean(axis=axes, keepdim=True)
        var = ((xv - mean) ** 2).mean(axis=axes, keepdim=True)
    else:
        mean, var = (Tensor._make(s, False) for s in stats)
    y = ((xv - mean) * (var + eps).rsqrt()).reshape(x.shape)
    if w is not None:
        y = y * w.reshape(affine)
    if b is not None:
        y = y + b.reshape(affine)
    return y


def _affine_params(op, input, weight, bias, shape):
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        _check_tensor(p, name, op)
        _check_same_dtype(input, p, ("input", name), op)
        if p.numel() != int(np.prod(shape)) or p.shape not in (tuple(shape), (p.numel(),)):
            raise ValueError(f"{op}: {name} of shape {p.shape} does not match {tuple(shape)}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """Normalize over the trailing ``normalized_shape`` dims, then scale and shift.

    >>> layer_norm(pydl.randn(2, 5, 8), (8,), pydl.ones(8), pydl.zeros(8)).shape
    (2, 5, 8)
    """
    op = "layer_norm"
    _check_tensor(input, "input", op)
    _check_float(input, "input", op)
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (int(normalized_shape),)
    shape = tuple(int(s) for s in normalized_shape)
    k = len(shape)
    if k == 0 or input.ndim < k or input.shape[input.ndim - k:] != shape:
        raise ValueError(f"{op}: input of shape {input.shape} does not end with "
                         f"normalized_shape {shape}")
    _affine_params(op, input, weight, bias, shape)
    lead = input.shape[:input.ndim - k]
    view = (int(np.prod(lead)), int(np.prod(shape)))
    y, _, _ = Normalize.apply(input, weight, bias, view, (1,), shape, float(eps), None)
    return y


def _channels(op, input, min_ndim=2):
    _check_tensor(input, "input", op)
    _check_float(input, "input", op)
    if input.ndim < min_ndim:
        raise ValueError(f"{op}: expected an input (N, C, ...) of at least {min_ndim} dims, got "
                         f"shape {input.shape}")
    return input.shape[1], (input.shape[1],) + (1,) * (input.ndim - 2)


def _update_running(stat, value, momentum, correction):
    """stat = (1 - momentum) * stat + momentum * value * correction, in place."""
    if stat is None:
        return
    with no_grad():
        data = stat.data
        data *= 1 - momentum
        data += (momentum * correction) * value.reshape(data.shape).astype(data.dtype)
        stat._bump()


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,  # noqa: A002
               momentum=0.1, eps=1e-5):
    """Batch normalization over (N, C, ...), as ``F.batch_norm``.

    Training: normalize with the batch statistics of each channel and update
    ``running_mean`` / ``running_var`` (unbiased) in place with ``momentum``. Otherwise
    normalize with the running statistics.
    """
    op = "batch_norm"
    c, affine = _channels(op, input)
    _affine_params(op, input, weight, bias, (c,))
    for name, s in (("running_mean", running_mean), ("running_var", running_var)):
        if s is not None and s.shape != (c,):
            raise ValueError(f"{op}: {name} of shape {s.shape} does not match {c} channels")
    if training:
        n = input.numel() // max(c, 1)
        if n <= 1:
            raise ValueError(f"{op}: expected more than 1 value per channel when training, got "
                             f"input of shape {input.shape}")
        axes = (0,) + tuple(range(2, input.ndim))
        y, mean, var = Normalize.apply(input, weight, bias, input.shape, axes, affine,
                                       float(eps), None)
        _update_running(running_mean, mean.data, momentum, 1.0)
        _update_running(running_var, var.data, momentum, n / (n - 1))
        return y
    if running_mean is None or running_var is None:
        raise ValueError(f"{op}: running_mean and running_var are needed when not training")
    stats = (running_mean.data.reshape(affine).astype(input.dtype),
             running_var.data.reshape(affine).astype(input.dtype))
    y, _, _ = Normalize.apply(input, weight, bias, input.shape, (), affine, float(eps), stats)
    return y


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):  # noqa: A002
    """Normalize (N, C, ...) over groups of ``C / num_groups`` channels, as ``F.group_norm``."""
    op = "group_norm"
    c, affine = _channels(op, input)
    if num_groups < 1 or c % num_groups:
        raise ValueError(f"{op}: num_groups={num_groups} must divide the {c} channels of "
                         f"input of shape {input.shape}")
    _affine_params(op, input, weight, bias, (c,))
    view = (input.shape[0], num_groups, input.numel() // max(input.shape[0] * num_groups, 1))
    y, _, _ = Normalize.apply(input, weight, bias, view, (2,), affine, float(eps), None)
    return y


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,  # noqa: A002
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalize each channel of each sample of (N, C, ...) over its spatial dims."""
    op = "instance_norm"
    c, affine = _channels(op, input, 3)
    _affine_params(op, input, weight, bias, (c,))
    n, spatial = input.shape[0], input.numel() // max(input.shape[0] * c, 1)
    view = (n, c, spatial)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError(f"{op}: running statistics are needed when use_input_stats=False")
        stats = (running_mean.data.reshape(1, c, 1).astype(input.dtype),
                 running_var.data.reshape(1, c, 1).astype(input.dtype))
        y, _, _ = Normalize.apply(input, weight, bias, view, (), affine, float(eps), stats)
        return y
    if spatial <= 1:
        raise ValueError(f"{op}: expected more than 1 spatial element when using input "
                         f"statistics, got input of shape {input.shape}")
    y, mean, var = Normalize.apply(input, weight, bias, view, (2,), affine, float(eps), None)
    _update_running(running_mean, mean.data.mean(axis=0), momentum, 1.0)
    _update_running(running_var, var.data.mean(axis=0), momentum, spatial / (spatial - 1))
    return y
