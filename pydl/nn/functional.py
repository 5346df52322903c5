"""pydl.nn.functional: the stateless layer operations, with PyTorch's names and signatures.

>>> import pydl.nn.functional as F
>>> x = pydl.randn(8, 3, 28, 28)
>>> y = F.max_pool2d(F.relu(F.conv2d(x, pydl.randn(16, 3, 3, 3), padding=1)), 2)
>>> loss = F.cross_entropy(F.linear(y.flatten(1), pydl.randn(10, 16 * 14 * 14)),
...                        pydl.randint(10, size=(8,)))

Everything here is a thin name over ``pydl.functions`` (the Functions with their backward),
plus the few activations PyTorch has that are compositions of others (``relu6``, ``mish``,
``hardswish``...). ``inplace=True`` is honoured as an in-place write into ``input``.
``interpolate`` and ``scaled_dot_product_attention`` live with their layers in ``pydl.nn`` and
are found here on first use.
"""

from __future__ import annotations

import importlib

from ..functions import unary as _unary
from ..functions.conv import conv1d, conv2d, conv_transpose1d, conv_transpose2d
from ..functions.conv3d import avg_pool3d, conv3d, max_pool3d
from ..functions.indexing import one_hot
from ..functions.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    smooth_l1_loss,
)
from ..functions.nn_misc import (
    batch_norm,
    dropout1d,
    dropout2d,
    dropout3d,
    embedding,
    group_norm,
    instance_norm,
    layer_norm,
    linear,
)
from ..functions.nn_misc import dropout as _dropout
from ..functions.pool import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    max_pool1d,
    max_pool2d,
)
from ..functions.shape import pad as _pad
from ..functions.softmax import cross_entropy, log_softmax, nll_loss, softmax, softmin
from ..functions.unary import sigmoid, tanh

__all__ = [
    # convolution and pooling
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    # activations
    "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus",
    "sigmoid", "tanh", "hardtanh", "hardsigmoid", "hardswish", "logsigmoid", "softsign",
    "tanhshrink", "glu", "softmax", "log_softmax", "softmin",
    # losses
    "cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "mse_loss", "l1_loss", "huber_loss", "smooth_l1_loss", "kl_div",
    # layers
    "linear", "dropout", "dropout1d", "dropout2d", "dropout3d", "embedding", "layer_norm",
    "batch_norm", "group_norm", "instance_norm", "normalize", "one_hot", "pad",
]

_LAZY = {  # defined with their layers in pydl.nn
    "interpolate": "pydl.nn.layers",
    "scaled_dot_product_attention": "pydl.nn.transformer",
}
__all__ += list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pydl.nn.functional' has no attribute '{name}'")


def _apply(fn, input, inplace):
    """fn(input), written back into ``input`` when ``inplace``."""
    return input._rebase(fn) if inplace else fn(input)


# -- activations with PyTorch's signatures -----------------------------------------------------
def relu(input, inplace=False):  # noqa: A002
    """max(x, 0)."""
    return _apply(_unary.relu, input, inplace)


def leaky_relu(input, negative_slope=0.01, inplace=False):  # noqa: A002
    """x for x > 0, else ``negative_slope * x``."""
    return _apply(lambda t: _unary.leaky_relu(t, negative_slope), input, inplace)


def elu(input, alpha=1.0, inplace=False):  # noqa: A002
    """x for x > 0, else ``alpha * (exp(x) - 1)``."""
    return _apply(lambda t: _unary.elu(t, alpha), input, inplace)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):  # noqa: A002
    """``scale * elu(x, alpha)`` with the self-normalizing constants."""
    return _apply(lambda t: _unary.elu(t, _SELU_ALPHA) * _SELU_SCALE, input, inplace)


def celu(input, alpha=1.0, inplace=False):  # noqa: A002
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    if alpha == 0:
        raise ValueError("celu: alpha must be non-zero")
    return _apply(lambda t: _unary.elu(t / alpha, 1.0) * alpha, input, inplace)


def gelu(input, approximate="none"):  # noqa: A002
    """``x * Phi(x)`` (``approximate='tanh'`` for the tanh form)."""
    return _unary.gelu(input, approximate)


def silu(input, inplace=False):  # noqa: A002
    """``x * sigmoid(x)`` (swish)."""
    return _apply(_unary.silu, input, inplace)


def mish(input, inplace=False):  # noqa: A002
    """``x * tanh(softplus(x))``."""
    return _apply(lambda t: t * _unary.tanh(_unary.softplus(t)), input, inplace)


def softplus(input, beta=1.0, threshold=20.0):  # noqa: A002
    """``log(1 + exp(beta * x)) / beta`` (linear above ``threshold``)."""
    return _unary.softplus(input, beta, threshold)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):  # noqa: A002
    """x clamped to [min_val, max_val]."""
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} must not exceed max_val {max_val}")
    return _apply(lambda t: _unary.clamp(t, min_val, max_val), input, inplace)


def relu6(input, inplace=False):  # noqa: A002
    """x clamped to [0, 6]."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace=False):  # noqa: A002
    """``clamp(x / 6 + 1 / 2, 0, 1)``."""
    return _apply(lambda t: _unary.clamp(t / 6.0 + 0.5, 0.0, 1.0), input, inplace)


def hardswish(input, inplace=False):  # noqa: A002
    """``x * hardsigmoid(x)``."""
    return _apply(lambda t: t * hardsigmoid(t), input, inplace)


def logsigmoid(input):  # noqa: A002
    """``log(sigmoid(x)) = -softplus(-x)``, stable for large |x|."""
    return -_unary.softplus(-input, 1.0, float("inf"))


def softsign(input):  # noqa: A002
    """``x / (1 + |x|)``."""
    return input / (_unary.abs(input) + 1.0)


def tanhshrink(input):  # noqa: A002
    """``x - tanh(x)``."""
    return input - _unary.tanh(input)


def glu(input, dim=-1):  # noqa: A002
    """Gated linear unit: split ``dim`` in halves a, b and return ``a * sigmoid(b)``."""
    size = input.shape[dim]
    if size % 2:
        raise ValueError(f"glu: dimension {dim} of input of shape {input.shape} has odd size "
                         f"{size}; it must split into two halves")
    a, b = input.chunk(2, dim)
    return a * _unary.sigmoid(b)


# -- layers ----------------------------------------------------------------------------------
def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002
    """Zero elements with probability ``p`` and scale the rest by ``1 / (1 - p)``."""
    return _apply(lambda t: _dropout(t, p, training), input, inplace and training and p > 0)


def normalize(input, p=2.0, dim=1, eps=1e-12):  # noqa: A002
    """``x / max(||x||_p, eps)`` along ``dim``."""
    norm = input.norm(p, dim=dim, keepdim=True)
    return input / _unary.clamp(norm, min=eps)


def pad(input, pad, mode="constant", value=None):  # noqa: A002
    """Pad with (left, right) pairs from the last dim backwards, as ``F.pad``."""
    return _pad(input, pad, mode, 0 if value is None else value)
