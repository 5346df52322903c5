"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

from .optimizer import Optimizer, _check_nonnegative

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015): momentum plus a per-parameter step size (PyTorch's Adam).

    Keeps running averages of the gradient (``exp_avg``, the momentum) and of its square
    (``exp_avg_sq``), corrects both for their zero start, and steps
    ``lr * m_hat / (sqrt(v_hat) + eps)``: every parameter moves about ``lr`` per step whatever
    its gradient's scale. A robust default for most networks (lr 1e-3, or 1e-4 to 3e-4 for
    transformers).

    Per step ``t`` (``g`` negated when ``maximize``)::

        g = g + weight_decay * param        # Adam: L2 penalty through the gradient
        param *= 1 - lr * weight_decay      # AdamW (decoupled_weight_decay=True) instead
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)               # amsgrad: use v_max in place of v
        param -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Args:
        params: tensors or parameter-group dicts to optimize.
        lr: learning rate (default 1e-3).
        betas: decay rates of the two averages (default (0.9, 0.999)).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty (default 0).
        amsgrad: use the running maximum of ``v`` (AMSGrad, Reddi et al. 2018).
        maximize: ascend the objective instead of descending it.
        decoupled_weight_decay: decay the weights directly, as AdamW does.

    >>> opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _validate(self, options):
        super()._validate(options)
        _check_nonnegative(options, "eps", "epsilon value")
        _check_nonnegative(options, "weight_decay", "weight_decay value")
        betas = options.get("betas")
        if betas is not None:
            if len(betas) != 2:
                raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
            for i, beta in enumerate(betas):
                if not 0.0 <= float(beta) < 1.0:
                    raise ValueError(
                        f"Invalid beta parameter at index {i}: {beta} (must be in [0, 1))"
                    )

    def _update_group(self, group):
        amsgrad = group["amsgrad"]
        entries = []
        for p in self._params_with_grad(group):
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = self._zeros(p)
                state["exp_avg_sq"] = self._zeros(p)
            if amsgrad and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = self._zeros(p)
            state["step"] += 1
            entries.append((state["step"], p))
        beta1, beta2 = group["betas"]
        for (_, _, step), params in self._buckets(entries).items():
            self._launch(
                "adam_step", params,
                ("exp_avg", "exp_avg_sq", "max_exp_avg_sq" if amsgrad else None),
                lr=float(group["lr"]), beta1=float(beta1), beta2=float(beta2),
                eps=float(group["eps"]), weight_decay=float(group["weight_decay"]), step=step,
                amsgrad=bool(amsgrad), decoupled_weight_decay=bool(group["decoupled_weight_decay"]),
                maximize=bool(group["maximize"]),
            )


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter, 2019; PyTorch's AdamW).

    Adam's L2 penalty passes through the adaptive denominator, so heavily-updated weights
    are barely regularized. AdamW instead shrinks every weight directly,
    ``param *= 1 - lr * weight_decay``, before the Adam update. The default for
    transformers; ``weight_decay`` defaults to 1e-2.

    Args: as :class:`Adam`, with ``weight_decay=1e-2``.

    >>> opt = pydl.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)
