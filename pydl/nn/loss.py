"""Loss modules: thin wrappers over ``pydl.nn.functional`` with PyTorch's names and options.

Every loss takes ``reduction`` = ``'mean'`` (default), ``'sum'`` or ``'none'``. Class
weights are registered as buffers (so ``state_dict`` and ``to()`` carry them), as in
PyTorch.

Which loss for which task (details in ``docs/nn.md``):

- regression: MSELoss (Gaussian noise), L1Loss (robust, median), HuberLoss / SmoothL1Loss
  (quadratic near zero, linear for outliers);
- binary or multi-label classification: BCEWithLogitsLoss on raw scores (stable), BCELoss
  on probabilities;
- multi-class classification: CrossEntropyLoss on raw scores, or NLLLoss after LogSoftmax;
- matching distributions (distillation, VAEs): KLDivLoss on log-probabilities.
"""

from __future__ import annotations

from . import functional as F
from .module import Module

__all__ = [
    "MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
    "CrossEntropyLoss", "NLLLoss", "KLDivLoss",
]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class _WeightedLoss(_Loss):
    def __init__(self, weight=None, reduction: str = "mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error ``(input - target)^2``: regression with Gaussian noise."""

    def forward(self, input, target):  # noqa: A002 - PyTorch's argument names
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error ``|input - target|``: regression robust to outliers."""

    def forward(self, input, target):  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class HuberLoss(_Loss):
    """0.5 d^2 for |d| < delta, else delta * (|d| - 0.5 delta), d = input - target."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class SmoothL1Loss(_Loss):
    """HuberLoss divided by ``beta``: 0.5 d^2 / beta for |d| < beta, else |d| - 0.5 beta."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy on probabilities in [0, 1] (after a Sigmoid)."""

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy in one stable step, on raw scores (logits).

    ``pos_weight`` (one value per class) scales the positive term: > 1 favours recall.
    """

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction,
            pos_weight=self.pos_weight)


class CrossEntropyLoss(_WeightedLoss):
    """Log-softmax + negative log-likelihood on raw class scores (N, C) or (N, C, d...).

    ``target`` holds class indices (int64), or class probabilities of the input's shape.
    ``weight`` rescales classes, ``ignore_index`` skips targets (e.g. padding), and
    ``label_smoothing`` mixes the target with the uniform distribution.
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of the target class, given log-probabilities (LogSoftmax)."""

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(weight, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class KLDivLoss(_Loss):
    """KL(target || model) with ``input`` = model log-probabilities.

    ``target`` is probabilities (or log-probabilities with ``log_target=True``). Use
    ``reduction='batchmean'`` for the mathematically correct per-sample mean.
    """

    def __init__(self, reduction: str = "mean", log_target: bool = False):
        Module.__init__(self)
        if reduction not in _REDUCTIONS + ("batchmean",):
            raise ValueError(f"reduction must be 'mean', 'batchmean', 'sum' or 'none', got "
                             f"{reduction!r}")
        self.reduction = reduction
        self.log_target = log_target

    def forward(self, input, target):  # noqa: A002
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
