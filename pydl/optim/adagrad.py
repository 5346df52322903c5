"""Adagrad: per-parameter step sizes from the sum of all past squared gradients."""

from __future__ import annotations

from .optimizer import Optimizer, _check_nonnegative

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad (Duchi et al., 2011; PyTorch's Adagrad).

    Accumulates the squares of every gradient seen and divides each step by their square
    root: rarely-updated parameters (e.g. embeddings of rare words) keep large steps, often
    updated ones slow down. The accumulator only grows, so the step size decays for good;
    RMSprop and Adam replace the sum by a running average.

    Per step ``t`` (``g`` negated when ``maximize``)::

        g = g + weight_decay * param
        clr = lr / (1 + (t - 1) * lr_decay)
        sum += g * g
        param -= clr * g / (sqrt(sum) + eps)

    Args:
        params: tensors or parameter-group dicts to optimize.
        lr: learning rate (default 1e-2).
        lr_decay: learning-rate decay per step (default 0).
        weight_decay: L2 penalty (default 0).
        initial_accumulator_value: starting value of ``sum`` (default 0).
        eps: added to the denominator for stability (default 1e-10).
        maximize: ascend the objective instead of descending it.
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, *, maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)
        for group in self.param_groups:  # as in PyTorch, state exists from the start
            for p in group["params"]:
                self._init_state(p, group)

    def _validate(self, options):
        super()._validate(options)
        _check_nonnegative(options, "lr_decay", "lr_decay value")
        _check_nonnegative(options, "weight_decay", "weight_decay value")
        _check_nonnegative(options, "initial_accumulator_value", "initial_accumulator_value value")
        _check_nonnegative(options, "eps", "epsilon value")

    def _init_state(self, p, group):
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["sum"] = self._zeros(p, float(group["initial_accumulator_value"]))
        return state

    def _update_group(self, group):
        entries = []
        for p in self._params_with_grad(group):
            state = self._init_state(p, group)
            state["step"] += 1
            entries.append((state["step"], p))
        for (_, _, step), params in self._buckets(entries).items():
            self._launch(
                "adagrad_step", params, ("sum",),
                lr=float(group["lr"]), lr_decay=float(group["lr_decay"]),
                weight_decay=float(group["weight_decay"]), eps=float(group["eps"]), step=step,
                maximize=bool(group["maximize"]),
            )
