"""Activation modules: thin wrappers over ``pydl.nn.functional`` (PyTorch's names).

A nonlinearity between linear layers is what lets a network represent more than a linear
map. ``docs/nn.md`` discusses which to pick and their failure modes (saturating sigmoid/tanh
gradients, dying ReLUs). ``inplace=True`` writes the result into the input, as in PyTorch.
"""

from __future__ import annotations

from ..creation import full
from . import functional as F
from .module import Module
from .parameter import Parameter

__all__ = [
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Sigmoid", "Tanh", "Softplus", "Softsign", "Hardtanh", "Hardsigmoid", "Hardswish",
    "LogSigmoid", "Tanhshrink", "GLU", "Softmax", "LogSoftmax", "Softmin",
]


class _Inplace(Module):
    """An activation with only an ``inplace`` option."""

    _fn = None

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return type(self)._fn(x, inplace=self.inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class _Plain(Module):
    """An activation without options."""

    _fn = None

    def forward(self, x):
        return type(self)._fn(x)


class ReLU(_Inplace):
    """max(0, x): cheap, no saturation for x > 0; units stuck at x < 0 stop learning."""

    _fn = F.relu


class ReLU6(_Inplace):
    """min(max(0, x), 6) (mobile networks)."""

    _fn = F.relu6


class SELU(_Inplace):
    """Scaled ELU with constants that keep activations self-normalizing."""

    _fn = F.selu


class SiLU(_Inplace):
    """x * sigmoid(x) (also called swish)."""

    _fn = F.silu


class Mish(_Inplace):
    """x * tanh(softplus(x))."""

    _fn = F.mish


class Hardsigmoid(_Inplace):
    """Piecewise-linear sigmoid: clamp(x / 6 + 1 / 2, 0, 1)."""

    _fn = F.hardsigmoid


class Hardswish(_Inplace):
    """x * hardsigmoid(x)."""

    _fn = F.hardswish


class Sigmoid(_Plain):
    """1 / (1 + exp(-x)), in (0, 1); saturates (gradient -> 0) for large |x|."""

    _fn = F.sigmoid


class Tanh(_Plain):
    """tanh(x), in (-1, 1); zero-centred but saturates like sigmoid."""

    _fn = F.tanh


class LogSigmoid(_Plain):
    """log(sigmoid(x)), computed stably."""

    _fn = F.logsigmoid


class Softsign(_Plain):
    """x / (1 + |x|)."""

    _fn = F.softsign


class Tanhshrink(_Plain):
    """x - tanh(x)."""

    _fn = F.tanhshrink


class LeakyReLU(Module):
    """x for x > 0, ``negative_slope * x`` otherwise (default slope 0.01): no dead units."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope, self.inplace)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace
                                                          else "")


class PReLU(Module):
    """LeakyReLU with a learned slope: one (``num_parameters=1``) or one per channel (dim 1).

    >>> act = nn.PReLU(16)   # weight (16,), initialized to 0.25
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.init = init
        self.weight = Parameter(full((num_parameters,), float(init), dtype=dtype,
                                     device=device))

    def forward(self, x):
        w = self.weight
        if self.num_parameters > 1:
            if x.ndim < 2 or x.shape[1] != self.num_parameters:
                raise ValueError(f"PReLU({self.num_parameters}) expects (N, "
                                 f"{self.num_parameters}, ...) input, got {tuple(x.shape)}")
            w = w.reshape(self.num_parameters, *([1] * (x.ndim - 2)))
        return F.relu(x) - w * F.relu(-x)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise: smooth, negative outputs."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, x):
        return F.elu(x, self.alpha, self.inplace)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""

    def forward(self, x):
        return F.celu(x, self.alpha, self.inplace)


class GELU(Module):
    """x * Phi(x) (``approximate='none'``) or its tanh approximation (``'tanh'``);
    the Transformer default."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta, linear above ``threshold`` (a smooth ReLU)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """clamp(x, min_val, max_val)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        self.min_val, self.max_val, self.inplace = min_val, max_val, inplace

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val, self.inplace)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}" + (
            ", inplace=True" if self.inplace else "")


class GLU(Module):
    """Gated linear unit: split ``dim`` in halves a, b and return a * sigmoid(b)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.glu(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


def _implicit_dim(ndim: int) -> int:
    # PyTorch's legacy choice when dim is not given
    return 0 if ndim in (0, 1, 3) else 1


class _SoftmaxLike(Module):
    _fn = None

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return type(self)._fn(x, self.dim if self.dim is not None else _implicit_dim(x.ndim))

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxLike):
    """exp(x) / sum(exp(x)) along ``dim``: rows that are probability distributions."""

    _fn = F.softmax


class LogSoftmax(_SoftmaxLike):
    """log(softmax(x)) along ``dim``, computed stably (pair with NLLLoss)."""

    _fn = F.log_softmax


class Softmin(_SoftmaxLike):
    """softmax(-x) along ``dim``."""

    _fn = F.softmin
