"""Layers: Linear, Bilinear, Conv1d/2d/3d, ConvTranspose1d/2d, pooling (1-D to 3-D), Flatten,
Unflatten, Upsample, Dropout, Identity, Embedding.

Each layer stores its weights as Parameters with PyTorch's names and shapes and PyTorch's
default initialization (drawn from pydl's generator, so ``pydl.manual_seed`` reproduces
it), and computes with ``pydl.nn.functional``. Copying a PyTorch layer's ``state_dict`` in
gives the same outputs.

``interpolate`` (behind ``Upsample``) checks its arguments here and runs the Function of
``pydl/functions/interpolate.py``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..creation import empty
from ..functions.interpolate import Interpolate2d
from ..tensor import Tensor
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

__all__ = [
    "Identity", "Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
    "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d",
    "AvgPool3d", "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Flatten", "Unflatten", "Upsample", "Dropout",
    "Dropout1d", "Dropout2d", "Embedding", "interpolate",
]


def _pair(v, name="argument"):
    if isinstance(v, numbers.Integral):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v}")
    return v


def _triple(v, name="argument"):
    if isinstance(v, numbers.Integral):
        return (int(v),) * 3
    v = tuple(int(a) for a in v)
    if len(v) != 3:
        raise ValueError(f"{name} must be an int or a triple of ints, got {v}")
    return v


def _single(v, name="argument"):
    if isinstance(v, numbers.Integral):
        return (int(v),)
    v = tuple(int(a) for a in v)
    if len(v) != 1:
        raise ValueError(f"{name} must be an int or a 1-tuple, got {v}")
    return v


def _reset_linear_like(weight, bias, fan_in):
    """PyTorch's default: kaiming_uniform_(a=sqrt(5)), bias U(-1/sqrt(fan_in), ...)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to remove a layer)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """``y = x @ weight.T + bias``: weight (out_features, in_features), bias (out_features,).

    >>> fc = nn.Linear(784, 10); y = fc(pydl.randn(32, 784))   # (32, 10)
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_linear_like(self.weight, self.bias, self.in_features)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Bilinear(Module):
    """``y_k = x1 @ weight[k] @ x2 + bias_k``: weight (out, in1, in2)."""

    def __init__(self, in1_features, in2_features, out_features, bias=True, device=None,
                 dtype=None):
        super().__init__()
        self.in1_features, self.in2_features = in1_features, in2_features
        self.out_features = out_features
        self.weight = Parameter(empty(out_features, in1_features, in2_features, dtype=dtype,
                                      device=device))
        if bias:
            self.bias = Parameter(empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.in1_features)
        init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x1, x2):
        # one matmul: x1 (N, in1) @ W viewed as (in1, out * in2), then a dot with x2
        lead = x1.shape[:-1]
        w = self.weight.permute(1, 0, 2).reshape(self.in1_features, -1)
        t = (x1.reshape(-1, self.in1_features) @ w).reshape(-1, self.out_features,
                                                            self.in2_features)
        y = (t * x2.reshape(-1, 1, self.in2_features)).sum(-1)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


# -- convolution -------------------------------------------------------------------------
class _ConvNd(Module):
    """The convolutions' shared constructor (PyTorch's Conv argument order), for ``_dims``
    1, 2 or 3; transposed ones add ``output_padding``."""

    _dims = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None, output_padding=0):
        super().__init__()
        name = type(self).__name__
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")
        modes = ("zeros",) if self._transposed else ("zeros", "reflect", "replicate",
                                                      "circular")
        if padding_mode not in modes:
            raise ValueError(f"{name}: padding_mode must be one of {modes}, got "
                             f"{padding_mode!r}")
        tup = {1: _single, 2: _pair, 3: _triple}[self._dims]
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = tup(kernel_size, "kernel_size")
        self.stride = tup(stride, "stride")
        self.dilation = tup(dilation, "dilation")
        self.groups = groups
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if self._transposed or padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be numbers"
                                 + ("" if self._transposed else ", 'same' or 'valid'")
                                 + f", got {padding!r}")
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{name}: padding='same' is not supported for strided "
                                 "convolutions")
            self.padding = padding
        else:
            self.padding = tup(padding, "padding")
        # F.pad's (left, right) pairs, last dim first, for the non-zero padding modes
        self._pad_pairs = []
        for i in reversed(range(self._dims)):
            if self.padding == "valid":
                lo = hi = 0
            elif self.padding == "same":
                total = self.dilation[i] * (self.kernel_size[i] - 1)
                lo, hi = total // 2, total - total // 2
            else:
                lo = hi = self.padding[i]
            self._pad_pairs += [lo, hi]
        if self._transposed:
            self.output_padding = tup(output_padding, "output_padding")
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(empty(*shape, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def _conv(self, op, x):
        if self.padding_mode == "zeros":
            return op(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups)
        x = F.pad(x, self._pad_pairs, mode=self.padding_mode)
        return op(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def reset_parameters(self) -> None:
        # PyTorch's fan_in is weight.size(1) * kernel area: C_in / groups for a conv,
        # C_out / groups for a transposed conv
        _reset_linear_like(self.weight, self.bias, int(np.prod(self.weight.shape[1:])))

    def extra_repr(self):
        zero = (0,) * self._dims
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != zero:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self._transposed and self.output_padding != zero:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) over (N, C_in, H, W) images.

    weight (C_out, C_in / groups, kH, kW), bias (C_out,). ``padding`` is an int, a pair, or
    ``'valid'`` (none) / ``'same'`` (output as large as the input; stride 1 only; an odd
    total padding puts the extra row/column at the bottom/right, as PyTorch does).
    ``padding_mode``: ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.

    >>> conv = nn.Conv2d(3, 16, 3, padding=1); y = conv(pydl.randn(8, 3, 32, 32))
    """

    def forward(self, x):
        return self._conv(F.conv2d, x)


class Conv3d(_ConvNd):
    """3-D convolution over (N, C_in, D, H, W) volumes: weight (C_out, C_in / groups, kD, kH,
    kW), bias (C_out,); arguments as :class:`Conv2d` (ints or triples).

    >>> conv = nn.Conv3d(2, 4, 3, padding=1); y = conv(pydl.randn(1, 2, 5, 6, 6))
    """

    _dims = 3

    def forward(self, x):
        return self._conv(F.conv3d, x)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L) sequences: weight (C_out, C_in / groups, k)."""

    _dims = 1

    def forward(self, x):
        return self._conv(F.conv1d, x)


class _ConvTransposeNd(_ConvNd):
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, output_padding)

    def _output_padding_for(self, x, output_size):
        """The output_padding that makes the output spatial size ``output_size``."""
        d = self._dims
        size = tuple(output_size)[-d:]
        pads = []
        for i in range(d):
            smallest = (x.shape[x.ndim - d + i] - 1) * self.stride[i] - 2 * self.padding[i] \
                + self.dilation[i] * (self.kernel_size[i] - 1) + 1
            extra = size[i] - smallest
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise ValueError(f"requested output size {size} is not reachable from an "
                                 f"input of shape {tuple(x.shape)}")
            pads.append(extra)
        return tuple(pads)

    def forward(self, x, output_size=None):
        output_padding = self.output_padding if output_size is None else (
            self._output_padding_for(x, output_size))
        op = F.conv_transpose2d if self._dims == 2 else F.conv_transpose1d
        return op(x, self.weight, self.bias, self.stride, self.padding, output_padding,
                  self.groups, self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed convolution ("deconvolution"): upsamples, e.g. in decoders and GANs.

    weight (C_in, C_out / groups, kH, kW). ``output_padding`` adds rows/columns on one side
    to pick among the input sizes a strided conv would map to the same output; or pass
    ``output_size=`` to forward.

    >>> up = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1)   # doubles H and W
    """


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-D convolution over (N, C_in, L): weight (C_in, C_out / groups, k)."""

    _dims = 1


# -- pooling -----------------------------------------------------------------------------
class _MaxPoolNd(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, x):
        return type(self)._fn(x, self.kernel_size, self.stride, self.padding, self.dilation,
                              self.ceil_mode, self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolNd):
    """Max over each ``kernel_size`` window (stride defaults to the kernel size).

    >>> pool = nn.MaxPool2d(2); y = pool(pydl.randn(1, 3, 8, 8))   # (1, 3, 4, 4)
    """

    _fn = F.max_pool2d


class MaxPool1d(_MaxPoolNd):
    """Max over windows of (N, C, L) sequences."""

    _fn = F.max_pool1d


class MaxPool3d(_MaxPoolNd):
    """Max over windows of (N, C, D, H, W) volumes; ``return_indices`` gives PyTorch's flat
    ``(d * H + h) * W + w`` indices.

    >>> pool = nn.MaxPool3d(2); y = pool(pydl.randn(1, 3, 4, 8, 8))   # (1, 3, 2, 4, 4)
    """

    _fn = F.max_pool3d


class _AvgPoolNd(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_AvgPoolNd):
    """Mean over each ``kernel_size`` window; ``count_include_pad`` counts padded zeros."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AvgPool3d(_AvgPoolNd):
    """Mean over windows of (N, C, D, H, W) volumes; arguments as :class:`AvgPool2d`."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x):
        return F.avg_pool3d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AvgPool1d(_AvgPoolNd):
    """Mean over windows of (N, C, L) sequences."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__(_single(kernel_size), _single(stride if stride is not None
                                                       else kernel_size),
                         _single(padding), ceil_mode, count_include_pad)

    def forward(self, x):
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class AdaptiveAvgPool2d(Module):
    """Average-pool to a fixed ``output_size`` whatever the input size (1 = global pool)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(AdaptiveAvgPool2d):
    """Average-pool (N, C, L) to a fixed length ``output_size``."""

    def forward(self, x):
        return F.adaptive_avg_pool1d(x, self.output_size)


class AdaptiveMaxPool2d(Module):
    """Max-pool to a fixed ``output_size`` whatever the input size."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, x):
        return F.adaptive_max_pool2d(x, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"


# -- reshaping ---------------------------------------------------------------------------
class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        nd = max(x.ndim, 1)
        s, e = self.start_dim % nd, self.end_dim % nd
        if s > e:
            raise ValueError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for shape {tuple(x.shape)}")
        shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
        return x.reshape(*shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``: Unflatten(1, (C, H, W))."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(unflattened_size)

    def forward(self, x):
        d = self.dim % x.ndim
        return x.reshape(*(x.shape[:d] + self.unflattened_size + x.shape[d + 1:]))

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


# -- upsampling --------------------------------------------------------------------------
def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Resize the spatial dims of (N, C, H, W) or (N, C, L) input, as
    ``torch.nn.functional.interpolate``.

    Give ``size`` or ``scale_factor`` (a number or one per spatial dim). Modes:
    ``'nearest'`` (PyTorch's legacy nearest), ``'nearest-exact'``, ``'bilinear'`` and
    ``'bicubic'`` (4-D; Keys' cubic with A = -0.75, edge samples repeated, as PyTorch) and
    ``'linear'`` (3-D); ``align_corners`` (False by default) for the linear and cubic ones.

    >>> interpolate(pydl.randn(1, 3, 8, 8), scale_factor=2, mode="bilinear").shape
    (1, 3, 16, 16)
    """
    if x.ndim == 3:  # (N, C, L): a 4-D problem with H = 1
        if mode == "linear":
            mode = "bilinear"
        elif mode in ("bilinear", "bicubic"):
            raise ValueError(f"{mode} interpolation needs 4-D input; use mode='linear'")
        size = None if size is None else (1, _single(size, "size")[0])
        if scale_factor is not None:
            f = scale_factor[0] if isinstance(scale_factor, (tuple, list)) else scale_factor
            scale_factor = (1.0, float(f))
        return interpolate(x.unsqueeze(2), size, scale_factor, mode, align_corners).squeeze(2)
    if x.ndim != 4:
        raise ValueError(f"interpolate expects (N, C, H, W) or (N, C, L) input, got shape "
                         f"{tuple(x.shape)}")
    if mode not in ("nearest", "nearest-exact", "bilinear", "bicubic"):
        raise NotImplementedError(f"interpolate mode {mode!r}: use 'nearest', "
                                  "'nearest-exact', 'bilinear', 'bicubic' or 'linear'")
    if mode.startswith("nearest") and align_corners is not None:
        raise ValueError("align_corners only applies to the linear modes")
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    h, w = x.shape[-2:]
    if size is not None:
        size = _pair(size, "size")
        factors = None
    else:
        factors = (tuple(float(f) for f in scale_factor) if isinstance(scale_factor, (tuple, list))
                   else (float(scale_factor),) * 2)
        size = (int(math.floor(h * factors[0])), int(math.floor(w * factors[1])))
    if min(size) <= 0:
        raise ValueError(f"interpolate: output size {size} must be positive")
    return Interpolate2d.apply(x, size, factors, mode, bool(align_corners))


class Upsample(Module):
    """Upsample (N, C, H, W) images (or (N, C, L) sequences) by ``scale_factor`` or to
    ``size``; modes as :func:`interpolate`.

    >>> up = nn.Upsample(scale_factor=2)   # nearest: each pixel becomes a 2x2 block
    """

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if isinstance(scale_factor, (tuple, list)):
            scale_factor = tuple(float(f) for f in scale_factor)
        elif scale_factor is not None:
            scale_factor = float(scale_factor)
        self.size, self.scale_factor = size, scale_factor
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x):
        return interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        what = (f"size={self.size}" if self.size is not None
                else f"scale_factor={self.scale_factor}")
        return what + f", mode={self.mode!r}"


# -- regularization and lookup -----------------------------------------------------------
class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by
    1 / (1 - p); in eval mode, the identity.

    >>> drop = nn.Dropout(0.5); drop.eval(); drop(x) is x   # no-op at inference
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    _fn = F.dropout

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        return type(self)._fn(x, self.p, True, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(Dropout):
    """Zero whole channels of (N, C, L) with probability ``p`` in training."""

    _fn = F.dropout1d


class Dropout2d(Dropout):
    """Zero whole feature maps of (N, C, H, W) with probability ``p`` in training (adjacent
    pixels are correlated, so element-wise dropout regularizes convolutions poorly)."""

    _fn = F.dropout2d


class Embedding(Module):
    """A lookup table: integer ids (any shape) -> rows of weight (num_embeddings, dim).

    Initialized N(0, 1). ``padding_idx``'s row starts at zero and gets no gradient.

    >>> emb = nn.Embedding(1000, 64); y = emb(pydl.tensor([[1, 2, 3]]))   # (1, 3, 64)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 _freeze=False, device=None, dtype=None):
        super().__init__()
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise NotImplementedError(
                "Embedding: max_norm, scale_grad_by_freq and sparse are not supported")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} must be within num_embeddings "
                                 f"({num_embeddings})")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        if _weight is None:
            self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype,
                                          device=device), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError("shape of _weight does not match num_embeddings and "
                                 "embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze=True, padding_idx=None):
        """An Embedding holding ``embeddings`` (2-D); frozen unless ``freeze=False``."""
        if embeddings.ndim != 2:
            raise ValueError("from_pretrained expects a 2-D tensor")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx=padding_idx, _weight=embeddings, _freeze=freeze)

    def forward(self, ids):
        return F.embedding(ids, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s
