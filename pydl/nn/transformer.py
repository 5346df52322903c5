"""Attention and Transformer layers, PyTorch-compatible.

``scaled_dot_product_attention``, ``MultiheadAttention``, ``TransformerEncoderLayer``,
``TransformerDecoderLayer``, ``TransformerEncoder``, ``TransformerDecoder``, ``Transformer``,
plus ``PositionalEncoding`` (sinusoidal, a buffer), ``LearnedPositionalEmbedding`` and
``generate_square_subsequent_mask``.

Arguments, parameter and submodule names (``in_proj_weight``, ``in_proj_bias``,
``out_proj``, ``self_attn``, ``linear1``, ``norm1``, ``layers.0``, ...), default
initialization and mask conventions follow PyTorch, so a ``state_dict`` copied from
``torch.nn.TransformerEncoderLayer`` gives the same outputs.

Mask conventions (as PyTorch, and they differ):

- ``scaled_dot_product_attention(attn_mask=bool)``: True means *take part* in attention.
- ``MultiheadAttention`` / Transformer layers, bool ``attn_mask`` or ``key_padding_mask``:
  True means *masked out* (not allowed to attend).
- A float mask is always *added* to the attention scores (``-inf`` blocks a position).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .. import autograd
from .. import functions as _ops
from ..creation import get_array_module, rand, randn, zeros
from ..tensor import Tensor
from . import functional as F
from .containers import ModuleList
from .layers import Dropout, Linear
from .module import Module
from .norm import LayerNorm
from .parameter import Parameter

__all__ = [
    "scaled_dot_product_attention", "generate_square_subsequent_mask", "MultiheadAttention",
    "TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder",
    "TransformerDecoder", "Transformer", "PositionalEncoding", "LearnedPositionalEmbedding",
]


# -- masks ---------------------------------------------------------------------------------
def _const(array) -> Tensor:
    """Wrap a backend array as a tensor that needs no gradient (masks)."""
    return Tensor._make(array, False)


def _is_bool(mask) -> bool:
    return mask.dtype.kind == "b"


def _float_mask(mask, dtype, true_blocks: bool):
    """A float mask to add to scores: bool masks become 0 / -inf; float masks pass through.

    ``true_blocks``: True for the MultiheadAttention convention (True = masked out), False
    for scaled_dot_product_attention's (True = take part).
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"masks must be tensors, got {type(mask).__name__}")
    if _is_bool(mask):
        xp = get_array_module(mask.data)
        blocked = mask.data if true_blocks else xp.logical_not(mask.data)
        return _const(xp.where(blocked, dtype.type(-np.inf), dtype.type(0)).astype(dtype))
    if mask.dtype.kind != "f":
        raise TypeError(f"masks must be bool or floating point, got {mask.dtype}")
    if mask.dtype != dtype:
        raise TypeError(f"a float mask must have the dtype of the query ({dtype}), got "
                        f"{mask.dtype}")
    return mask


def generate_square_subsequent_mask(sz, device=None, dtype=None) -> Tensor:
    """A (sz, sz) float mask with ``-inf`` above the diagonal and 0 elsewhere.

    Position i may attend to positions 0..i: the causal mask of a decoder, as
    ``torch.nn.Transformer.generate_square_subsequent_mask``.
    """
    from ..creation import full

    m = full((sz, sz), float("-inf"), dtype=dtype or "float32", device=device)
    xp = get_array_module(m.data)
    return _const(xp.triu(m.data, 1))


def _causal(L, S, dtype, device):
    """Float mask blocking j > i (top-left aligned, as PyTorch's is_causal)."""
    m = zeros(L, S, dtype=dtype, device=device)
    xp = get_array_module(m.data)
    blocked = xp.triu(xp.ones((L, S), dtype=bool), 1)
    return _const(xp.where(blocked, m.data.dtype.type(-np.inf), m.data))


# -- attention -----------------------------------------------------------------------------
def _attend(q, k, v, mask, dropout_p, scale):
    """softmax(q k^T * scale + mask) (with dropout) @ v; returns (output, weights)."""
    scores = _ops.matmul(q, k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    weights = F.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)
    return _ops.matmul(weights, v), weights


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    """softmax(Q K^T / sqrt(E) + mask) V, as ``torch.nn.functional.scaled_dot_product_attention``.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). ``attn_mask``
    broadcasts to (..., L, S): a bool mask marks with True the positions that *take part*;
    a float mask is added to the scores. ``is_causal`` masks j > i (no ``attn_mask`` then).
    ``dropout_p`` is applied to the attention weights whenever it is > 0 (pass 0.0 in
    evaluation, as PyTorch). ``scale`` defaults to 1/sqrt(E). ``enable_gqa`` (grouped-query
    attention): key and value may have fewer heads (dim -3) than query, a divisor of its
    count; each key/value head then serves that many consecutive query heads.
    """
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(
            f"scaled_dot_product_attention: query, key and value need at least 2 dims, got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"scaled_dot_product_attention: query {tuple(query.shape)} and key "
            f"{tuple(key.shape)} must have the same last dim"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: key {tuple(key.shape)} and value "
            f"{tuple(value.shape)} must have the same sequence length (dim -2)"
        )
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        hq, hkv = query.shape[-3], key.shape[-3]
        if key.ndim < 3 or value.shape[-3] != hkv or hq % hkv:
            raise ValueError(
                f"scaled_dot_product_attention: with enable_gqa, the query's {hq} heads "
                f"(dim -3) must be a multiple of the key's and value's, got key "
                f"{tuple(key.shape)} and value {tuple(value.shape)}"
            )
        key = key.repeat_interleave(hq // hkv, dim=-3)
        value = value.repeat_interleave(hq // hkv, dim=-3)
    if is_causal and attn_mask is not None:
        raise ValueError("scaled_dot_product_attention: give either attn_mask or "
                         "is_causal=True, not both")
    L, S = query.shape[-2], key.shape[-2]
    mask = _float_mask(attn_mask, query.dtype, true_blocks=False)
    if is_causal:
        mask = _causal(L, S, query.dtype, query.device)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    out, _ = _attend(query, key, value, mask, float(dropout_p), scale)
    return out


def _xavier_uniform(shape, dtype, device):
    fan_out, fan_in = shape[0], shape[1]
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with autograd.no_grad():
        t = rand(*shape, dtype=dtype, device=device) * (2.0 * bound) - bound
    return Parameter(t)


class MultiheadAttention(Module):
    """Multi-head attention, as ``torch.nn.MultiheadAttention``.

    ``MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
    add_zero_attn=False, kdim=None, vdim=None, batch_first=False)``.

    Parameters: ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E) -- or
    ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when kdim or vdim differ from E --
    and ``out_proj`` (a Linear). ``forward(query, key, value, key_padding_mask=None,
    need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False)`` returns
    ``(attn_output, attn_weights)``; the weights are (N, L, S) averaged over heads, or
    (N, num_heads, L, S), or None when ``need_weights=False``.

    Masks: ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N * num_heads, L, S);
    bool True = *not allowed* to attend, float = added to the scores. ``is_causal=True``
    without ``attn_mask`` applies the causal mask (with one, it is only a hint, as PyTorch).
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and "
                             f"{num_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = _xavier_uniform((3 * E, E), dtype, device)
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = _xavier_uniform((E, E), dtype, device)
            self.k_proj_weight = _xavier_uniform((E, self.kdim), dtype, device)
            self.v_proj_weight = _xavier_uniform((E, self.vdim), dtype, device)
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * E, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(E, E, bias=bias, device=device, dtype=dtype)
        if bias:
            with autograd.no_grad():
                self.out_proj.bias.zero_()
        if add_bias_kv:
            std = math.sqrt(2.0 / (2 * E))  # xavier_normal_ on a (1, 1, E) tensor
            with autograd.no_grad():
                self.bias_k = Parameter(randn(1, 1, E, dtype=dtype, device=device) * std)
                self.bias_v = Parameter(randn(1, 1, E, dtype=dtype, device=device) * std)
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"

    def _project(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq = bk = bv = None
        if b is not None:
            bq, bk, bv = b[:E], b[E:2 * E], b[2 * E:]
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:  # self-attention: one matmul
                qkv = F.linear(query, w, b)
                return qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
            wq, wk, wv = w[:E], w[E:2 * E], w[2 * E:]
        else:
            wq, wk, wv = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, wq, bq), F.linear(key, wk, bk), F.linear(value, wv, bv)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        name = "MultiheadAttention"
        batched = query.ndim == 3
        if query.ndim not in (2, 3):
            raise ValueError(f"{name}: query must have 2 (unbatched) or 3 dims, got shape "
                             f"{tuple(query.shape)}")
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"{name}: query, key and value must have the same number of dims, got "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        if query.shape[-1] != self.embed_dim:
            raise ValueError(f"{name}: query has {query.shape[-1]} features, expected "
                             f"embed_dim={self.embed_dim}")
        if key.shape[-1] != self.kdim or value.shape[-1] != self.vdim:
            raise ValueError(
                f"{name}: key and value must have {self.kdim} and {self.vdim} features, got "
                f"shapes {tuple(key.shape)} and {tuple(value.shape)}"
            )
        if not batched:  # (L, E) -> (L, 1, E)
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:  # (N, L, E) -> (L, N, E); self-attention stays self-attention
            same_qk, same_kv = key is query, value is key
            query = query.transpose(0, 1)
            key = query if same_qk else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        L, N, E = query.shape
        S = key.shape[0]
        if key.shape[:2] != value.shape[:2] or key.shape[1] != N:
            raise ValueError(
                f"{name}: key {tuple(key.shape)} and value {tuple(value.shape)} must share "
                f"sequence length and batch size with query {tuple(query.shape)}"
            )
        H, hd = self.num_heads, self.head_dim
        dtype = query.dtype

        # masks, as float tensors to add: attn (L, S) or (N, H, L, S); kpm (N, 1, 1, S)
        amask = _float_mask(attn_mask, dtype, true_blocks=True)
        if amask is not None:
            if amask.ndim == 2:
                if tuple(amask.shape) != (L, S):
                    raise ValueError(f"{name}: the 2-D attn_mask has shape "
                                     f"{tuple(amask.shape)}, expected {(L, S)}")
            elif amask.ndim == 3:
                if tuple(amask.shape) != (N * H, L, S):
                    raise ValueError(f"{name}: the 3-D attn_mask has shape "
                                     f"{tuple(amask.shape)}, expected {(N * H, L, S)}")
                amask = amask.reshape(N, H, L, S)
            else:
                raise ValueError(f"{name}: attn_mask must have 2 or 3 dims, got "
                                 f"{tuple(amask.shape)}")
        elif is_causal:
            amask = _causal(L, S, dtype, query.device)
        kpm = _float_mask(key_padding_mask, dtype, true_blocks=True)
        if kpm is not None:
            if tuple(kpm.shape) != (N, S):
                raise ValueError(f"{name}: key_padding_mask has shape {tuple(kpm.shape)}, "
                                 f"expected {(N, S) if batched else (S,)}")
            kpm = kpm.reshape(N, 1, 1, S)

        q, k, v = self._project(query, key, value)
        if self.bias_k is not None:
            k = _ops.cat([k, _ops.broadcast_to(self.bias_k, (1, N, E))], dim=0)
            v = _ops.cat([v, _ops.broadcast_to(self.bias_v, (1, N, E))], dim=0)
            amask = _pad_last(amask)
            kpm = _pad_last(kpm)
            S += 1
        # (L, N, E) -> (N, H, L, hd): head h of batch item n is row n * H + h, as PyTorch
        q = q.reshape(L, N, H, hd).permute(1, 2, 0, 3)
        k = k.reshape(S, N, H, hd).permute(1, 2, 0, 3)
        v = v.reshape(S, N, H, hd).permute(1, 2, 0, 3)
        if self.add_zero_attn:
            z = zeros(N, H, 1, hd, dtype=dtype, device=q.device)
            k = _ops.cat([k, z], dim=2)
            v = _ops.cat([v, z], dim=2)
            amask = _pad_last(amask)
            kpm = _pad_last(kpm)
            S += 1
        mask = amask if kpm is None else (kpm if amask is None else amask + kpm)

        dropout_p = self.dropout if self.training else 0.0
        out, weights = _attend(q, k, v, mask, dropout_p, 1.0 / math.sqrt(hd))
        out = out.permute(2, 0, 1, 3).reshape(L, N, E)  # (N, H, L, hd) -> (L, N, E)
        out = self.out_proj(out)
        if not batched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            weights = weights.squeeze(0)
        return out, weights


def _pad_last(mask):
    """Append one zero (= not masked) column to a float mask's last dim."""
    if mask is None:
        return None
    z = zeros(*mask.shape[:-1], 1, dtype=mask.dtype, device=mask.device)
    return _ops.cat([mask, z], dim=-1)


# -- Transformer layers --------------------------------------------------------------------
def _get_activation(activation):
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise ValueError(f"activation should be 'relu' or 'gelu' (or a callable), not "
                         f"{activation!r}")
    if not callable(activation):
        raise TypeError(f"activation must be 'relu', 'gelu' or a callable, got {activation!r}")
    return activation


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, as ``torch.nn.TransformerEncoderLayer``.

    ``TransformerEncoderLayer(d_model, nhead, dim_feedforward=2048, dropout=0.1,
    activation='relu', layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True)``.
    Post-norm (default): x = norm1(x + sa(x)); x = norm2(x + ff(x)). Pre-norm
    (``norm_first=True``): x = x + sa(norm1(x)); x = x + ff(norm2(x)).
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, **fk)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **fk)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **fk)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _get_activation(activation)
        self.batch_first = batch_first

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=bool(is_causal))[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout2(x)


class TransformerDecoderLayer(Module):
    """Self-attention, cross-attention over ``memory`` and a feed-forward block, as
    ``torch.nn.TransformerDecoderLayer`` (same arguments as the encoder layer).

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, **fk)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, **fk)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, **fk)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, **fk)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _get_activation(activation)
        self.batch_first = batch_first

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask,
                                    memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                               memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=bool(is_causal))[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask,
                                key_padding_mask=key_padding_mask, need_weights=False,
                                is_causal=bool(is_causal))[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout3(x)


def _ln_kwargs(bias, fk):
    kw = dict(fk)
    if not bias:
        kw["bias"] = False
    return kw


def _clone(module):
    """A deep copy of ``module`` whose parameters keep their dtype and device exactly.

    The parameters are copied by hand (array copy, same dtype) and handed to deepcopy through
    its memo, so the copy never round-trips a parameter through a dtype-guessing constructor.
    """
    memo = {}
    for p in module.parameters():
        if id(p) not in memo:
            q = Parameter(Tensor._make(p.data.copy(), False), p.requires_grad)
            memo[id(p)] = q
    return copy.deepcopy(module, memo)


def _get_clones(module, n):
    return ModuleList([_clone(module) for _ in range(n)])


class TransformerEncoder(Module):
    """A stack of ``num_layers`` deep copies of ``encoder_layer`` (``layers.0``, ...),
    followed by ``norm`` if given, as ``torch.nn.TransformerEncoder``.

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None)``.
    """

    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        self.layers = _get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        out = src
        for mod in self.layers:
            out = mod(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                      is_causal=bool(is_causal))
        if self.norm is not None:
            out = self.norm(out)
        return out


class TransformerDecoder(Module):
    """A stack of ``num_layers`` deep copies of ``decoder_layer``, then ``norm`` if given,
    as ``torch.nn.TransformerDecoder``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)``.
    """

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        out = tgt
        for mod in self.layers:
            out = mod(out, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        if self.norm is not None:
            out = self.norm(out)
        return out


class Transformer(Module):
    """An encoder-decoder Transformer, as ``torch.nn.Transformer`` (submodules ``encoder``
    and ``decoder``, each ending in a LayerNorm; weights of rank >= 2 re-initialized with
    Xavier uniform).

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False)``.
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=2048, dropout=0.1, activation="relu", custom_encoder=None,
                 custom_decoder=None, layer_norm_eps=1e-5, batch_first=False, norm_first=False,
                 bias=True, device=None, dtype=None):
        super().__init__()
        fk = {"device": device, "dtype": dtype}
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                            activation, layer_norm_eps, batch_first,
                                            norm_first, bias, **fk)
            norm = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
            self.encoder = TransformerEncoder(layer, num_encoder_layers, norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout,
                                            activation, layer_norm_eps, batch_first,
                                            norm_first, bias, **fk)
            norm = LayerNorm(d_model, eps=layer_norm_eps, **_ln_kwargs(bias, fk))
            self.decoder = TransformerDecoder(layer, num_decoder_layers, norm)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first
        with autograd.no_grad():
            for p in self.parameters():
                if p.ndim > 1:
                    bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                    p.uniform_(-bound, bound)

    generate_square_subsequent_mask = staticmethod(generate_square_subsequent_mask)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
                src_key_padding_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        bdim = 0 if (self.batch_first and src.ndim == 3) else (1 if src.ndim == 3 else None)
        if bdim is not None and src.shape[bdim] != tgt.shape[bdim]:
            raise ValueError(f"Transformer: src {tuple(src.shape)} and tgt {tuple(tgt.shape)} "
                             "must have the same batch size")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(f"Transformer: src and tgt must have d_model={self.d_model} "
                             f"features, got {tuple(src.shape)} and {tuple(tgt.shape)}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)


# -- positions -----------------------------------------------------------------------------
def _sinusoid_table(max_len, d_model):
    position = np.arange(max_len, dtype=np.float64)[:, None]
    div_term = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    pe = np.zeros((max_len, d_model), dtype=np.float64)
    pe[:, 0::2] = np.sin(position * div_term)
    pe[:, 1::2] = np.cos(position * div_term)[:, : d_model // 2]
    return pe


class PositionalEncoding(Module):
    """Adds the fixed sinusoidal position encoding of "Attention Is All You Need", then
    dropout: PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).

    The table is a buffer ``pe`` of shape (max_len, d_model) (saved in ``state_dict``, moved
    by ``to()``, not learned). Input (L, N, d_model), or (N, L, d_model) with
    ``batch_first=True``, or (L, d_model).
    """

    def __init__(self, d_model, max_len=5000, dropout=0.1, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.batch_first = batch_first
        from ..creation import tensor

        pe = tensor(_sinusoid_table(max_len, d_model), dtype=dtype or "float32", device=device)
        self.register_buffer("pe", pe)
        self.dropout = Dropout(dropout)

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"

    def forward(self, x):
        return _add_positions(self, x, self.pe)


def _add_positions(module, x, table):
    """dropout(x + table[:L]) for x (L, N, d), (N, L, d) with batch_first, or (L, d)."""
    name = type(module).__name__
    tdim = 1 if (module.batch_first and x.ndim == 3) else 0
    L = x.shape[tdim]
    if L > module.max_len:
        raise ValueError(f"{name}: sequence length {L} exceeds max_len={module.max_len}")
    if x.shape[-1] != module.d_model:
        raise ValueError(f"{name}: input has {x.shape[-1]} features, expected "
                         f"d_model={module.d_model}")
    pos = table[:L]
    if pos.dtype != x.dtype:
        pos = pos.to(x.dtype)
    if x.ndim == 3 and tdim == 0:
        pos = pos.unsqueeze(1)  # (L, 1, d) broadcasts over the batch
    return module.dropout(x + pos)


class LearnedPositionalEmbedding(Module):
    """Adds a learned embedding of each position (GPT/BERT style), then dropout.

    ``weight`` is a (max_len, d_model) Parameter, initialized N(0, 0.02^2) as in GPT-2.
    Input (L, N, d_model), or (N, L, d_model) with ``batch_first=True``, or (L, d_model);
    the first L rows of ``weight`` are added.
    """

    def __init__(self, max_len, d_model, dropout=0.0, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        self.max_len = max_len
        self.d_model = d_model
        self.batch_first = batch_first
        with autograd.no_grad():
            self.weight = Parameter(randn(max_len, d_model, dtype=dtype, device=device) * 0.02)
        self.dropout = Dropout(dropout)

    def extra_repr(self):
        return f"max_len={self.max_len}, d_model={self.d_model}"

    def forward(self, x):
        return _add_positions(self, x, self.weight)
