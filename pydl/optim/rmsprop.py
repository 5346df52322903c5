"""RMSprop: divide the gradient by a running root-mean-square of its recent values."""

from __future__ import annotations

from .optimizer import Optimizer, _check_nonnegative

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012; PyTorch's RMSprop): a per-parameter step size.

    Keeps a running average of the squared gradient and divides the gradient by its square
    root, so parameters with large gradients take smaller steps. A classic choice for
    recurrent networks and reinforcement learning.

    Per step (``g`` negated when ``maximize``)::

        g = g + weight_decay * param
        sq = alpha * sq + (1 - alpha) * g * g
        avg = sqrt(sq) + eps
        # centered: ga = alpha * ga + (1 - alpha) * g;  avg = sqrt(sq - ga * ga) + eps
        buf = momentum * buf + g / avg;  param -= lr * buf      # momentum > 0
        param -= lr * g / avg                                  # momentum == 0

    Args:
        params: tensors or parameter-group dicts to optimize.
        lr: learning rate (default 1e-2).
        alpha: smoothing constant of the squared-gradient average (default 0.99).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty (default 0).
        momentum: momentum factor (default 0).
        centered: normalize by the gradient's estimated variance instead of its second moment.
        maximize: ascend the objective instead of descending it.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, options):
        super()._validate(options)
        _check_nonnegative(options, "eps", "epsilon value")
        _check_nonnegative(options, "momentum", "momentum value")
        _check_nonnegative(options, "weight_decay", "weight_decay value")
        _check_nonnegative(options, "alpha", "alpha value")

    def _update_group(self, group):
        momentum, centered = group["momentum"], group["centered"]
        entries = []
        for p in self._params_with_grad(group):
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["square_avg"] = self._zeros(p)
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = self._zeros(p)
            if centered and "grad_avg" not in state:
                state["grad_avg"] = self._zeros(p)
            state["step"] += 1
            entries.append((None, p))
        for params in self._buckets(entries).values():
            self._launch(
                "rmsprop_step", params,
                ("square_avg", "momentum_buffer" if momentum > 0 else None,
                 "grad_avg" if centered else None),
                lr=float(group["lr"]), alpha=float(group["alpha"]), eps=float(group["eps"]),
                weight_decay=float(group["weight_decay"]), momentum=float(momentum),
                centered=bool(centered), maximize=bool(group["maximize"]),
            )
