"""Training utilities: gradient clipping, parameters <-> one flat vector, weight penalties.

>>> loss.backward()
>>> nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)   # before optimizer.step()
"""

from __future__ import annotations

import math

from ..autograd import no_grad
from ..creation import get_array_module
from ..tensor import Tensor

__all__ = [
    "clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters",
    "l1_penalty", "l2_penalty", "count_parameters",
]


def _as_list(parameters):
    if isinstance(parameters, Tensor):
        return [parameters]
    return list(parameters)


def _grad_norm(grads, norm_type):
    """The norm of all gradients together, as a 0-d array on their device."""
    xp = get_array_module(grads[0])
    if norm_type == math.inf:
        return xp.max(xp.stack([xp.abs(g).max() if g.size else xp.zeros((), g.dtype)
                                for g in grads]))
    if norm_type == 2.0:
        total = sum(xp.vdot(g.ravel(), g.ravel()) for g in grads)
        return xp.sqrt(xp.asarray(total))
    total = sum((xp.abs(g) ** norm_type).sum() for g in grads)
    return xp.asarray(total) ** (1.0 / norm_type)


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach=None) -> Tensor:
    """Scale all gradients together so their combined norm is at most ``max_norm``.

    The norm is taken over all gradients as if they were one vector (``norm_type`` 2 by
    default, ``float('inf')`` for the max). Gradients are scaled in place by
    ``min(1, max_norm / (norm + 1e-6))``. Returns the total norm before clipping (a 0-d
    tensor), handy to log.

    >>> norm = nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    """
    params = [p for p in _as_list(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not params:
        from ..creation import tensor

        return tensor(0.0)
    grads = [p.grad.data for p in params]
    devices = {str(p.grad.device) for p in params}
    if len(devices) > 1:
        raise RuntimeError(f"clip_grad_norm_: gradients live on several devices {devices}")
    total = _grad_norm(grads, norm_type)
    xp = get_array_module(grads[0])
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"the total norm of order {norm_type} for gradients is non-finite, so it cannot "
            "be clipped; pass error_if_nonfinite=False to clip anyway"
        )
    coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
    with no_grad():
        for p in params:
            p.grad.data *= coef.astype(p.grad.dtype)
            p.grad._bump()
    return Tensor._make(xp.asarray(total), False)


def clip_grad_value_(parameters, clip_value: float, foreach=None) -> None:
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    clip_value = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            xp = get_array_module(p.grad.data)
            xp.clip(p.grad.data, -clip_value, clip_value, out=p.grad.data)
            p.grad._bump()


def parameters_to_vector(parameters) -> Tensor:
    """All parameters flattened and concatenated into one 1-D tensor (differentiable)."""
    from .. import functions

    params = _as_list(parameters)
    if not params:
        raise ValueError("parameters_to_vector: no parameters given")
    return functions.cat([p.reshape(-1) for p in params], 0)


def vector_to_parameters(vec: Tensor, parameters) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters, in place."""
    params = _as_list(parameters)
    total = sum(p.numel() for p in params)
    if vec.ndim != 1 or vec.shape[0] != total:
        raise ValueError(f"vector_to_parameters: expected a 1-D vector of {total} elements, "
                         f"got shape {tuple(vec.shape)}")
    offset = 0
    for p in params:
        if p.device != vec.device:
            raise RuntimeError(f"vector_to_parameters: vector on {vec.device}, parameter on "
                               f"{p.device}")
        n = p.numel()
        p.data[...] = vec.data[offset:offset + n].reshape(p.shape).astype(p.dtype, copy=False)
        p._bump()
        offset += n


def l1_penalty(parameters) -> Tensor:
    """Sum of |w| over all parameters (differentiable): add ``lam * l1_penalty(...)`` to a
    loss for L1 regularization (pushes weights to exactly zero: sparsity)."""
    params = _as_list(parameters)
    total = None
    for p in params:
        term = p.abs().sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l1_penalty: no parameters given")
    return total


def l2_penalty(parameters) -> Tensor:
    """Sum of w^2 over all parameters (differentiable): add ``lam * l2_penalty(...)`` to a
    loss for L2 regularization (weight decay with coefficient 2 * lam under plain SGD)."""
    params = _as_list(parameters)
    total = None
    for p in params:
        term = (p * p).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("l2_penalty: no parameters given")
    return total


def count_parameters(module, trainable_only: bool = False) -> int:
    """The number of scalar parameters of ``module`` (shared ones counted once)."""
    return sum(p.numel() for p in module.parameters()
               if p.requires_grad or not trainable_only)
