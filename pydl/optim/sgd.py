"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay."""

from __future__ import annotations

from .optimizer import Optimizer, _check_nonnegative

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""Gradient descent: ``param -= lr * grad``, with optional momentum (PyTorch's SGD).

    What makes it *stochastic* is only the gradient you feed it. Computed on the whole
    dataset as one batch, each step is plain (full-batch) **gradient descent**: exact but
    costly per step. Computed on a single example (batch size 1) it is **stochastic**
    gradient descent: cheap, very noisy steps. In between, on a batch of e.g. 32-512
    examples, it is **mini-batch** SGD, the usual choice: the noise averages out enough to
    use a large learning rate, and the batch keeps the hardware busy.

    Per step, with ``g`` the gradient (negated when ``maximize``)::

        g = g + weight_decay * param                 # L2 penalty
        buf = g  (first step),  buf = momentum * buf + (1 - dampening) * g  (later)
        g = g + momentum * buf  if nesterov else buf     # when momentum > 0
        param -= lr * g

    Args:
        params: tensors or parameter-group dicts to optimize.
        lr: learning rate (default 1e-3).
        momentum: momentum factor (default 0: none); 0.9 is the usual value.
        dampening: scales the new gradient's share in the momentum buffer (default 0).
        weight_decay: L2 penalty coefficient (default 0).
        nesterov: Nesterov momentum (needs momentum > 0 and dampening 0).
        maximize: ascend the objective instead of descending it.

    >>> opt = pydl.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _validate(self, options):
        super()._validate(options)
        _check_nonnegative(options, "momentum", "momentum value")
        _check_nonnegative(options, "weight_decay", "weight_decay value")
        if options.get("nesterov") and (
            options.get("momentum", 0) <= 0 or options.get("dampening", 0) != 0
        ):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _update_group(self, group):
        momentum = group["momentum"]
        entries = []
        for p in self._params_with_grad(group):
            first = False
            if momentum != 0:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = self._zeros(p)
                    first = True
            entries.append((first, p))
        for (_, _, first), params in self._buckets(entries).items():
            self._launch(
                "sgd_step", params, ("momentum_buffer" if momentum != 0 else None,),
                lr=float(group["lr"]), momentum=float(momentum),
                dampening=float(group["dampening"]), weight_decay=float(group["weight_decay"]),
                nesterov=bool(group["nesterov"]), maximize=bool(group["maximize"]),
                first_step=first,
            )
