"""Transformers: an encoder that classifies token sequences, and a character language model.

Both are stacks of ``nn.TransformerEncoderLayer`` (self-attention + feed-forward, pre-norm).
Self-attention alone ignores order (permute the inputs and the outputs permute the same way),
so each model adds a positional encoding to its token embeddings. The language model also
passes a causal mask, so position i attends only to positions 0..i and can be trained to
predict character i + 1 at every position at once.
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..creation import rand, tensor


class TransformerClassifier(nn.Module):
    """Token ids (N, L) -> class logits (N, num_classes).

    Embedding -> sinusoidal positional encoding -> ``num_layers`` encoder layers -> mean over
    the positions -> LayerNorm -> Linear. ``positional=False`` leaves out the positional
    encoding: the model then sees a bag of tokens and cannot tell a sequence from any
    reordering of it (kept for that demonstration).

    >>> net = TransformerClassifier(vocab_size=80, num_classes=2, max_len=64)
    >>> net(pydl.randint(80, size=(8, 64))).shape
    (8, 2)
    """

    def __init__(self, vocab_size: int, num_classes: int, d_model: int = 64, nhead: int = 4,
                 num_layers: int = 2, dim_feedforward: int = 256, max_len: int = 512,
                 dropout: float = 0.1, positional: bool = True):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.PositionalEncoding(d_model, max_len, dropout, batch_first=True)
        self.positional = positional
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids):
        x = self.embed(ids)
        if self.positional:
            x = self.pos(x)
        x = self.encoder(x)                 # (N, L, d_model)
        return self.head(self.norm(x.mean(dim=1)))


class CharTransformer(nn.Module):
    """A decoder-only (GPT-style) language model: ids (N, L) -> next-id logits (N, L, vocab).

    Token embedding + learned position embedding -> ``num_layers`` causal self-attention
    blocks -> LayerNorm -> Linear head. Output ``[n, i]`` scores the token that follows
    ``ids[n, :i + 1]``; sequences may be up to ``max_len`` long.

    >>> lm = CharTransformer(vocab_size=73, max_len=128)
    >>> lm(pydl.randint(73, size=(4, 128))).shape
    (4, 128, 73)
    >>> lm.generate([5, 6, 7], n=20, top_k=10)   # the 3 prefix ids + 20 sampled ones
    """

    def __init__(self, vocab_size: int, d_model: int = 128, nhead: int = 4, num_layers: int = 4,
                 dim_feedforward: int = 512, max_len: int = 128, dropout: float = 0.1):
        super().__init__()
        self.max_len = max_len
        self.tok_embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.tok_embed.weight, std=0.02)  # same scale as the positions (GPT-2)
        self.pos_embed = nn.LearnedPositionalEmbedding(max_len, d_model, dropout,
                                                       batch_first=True)
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, ids):
        length = ids.shape[1]
        causal = nn.generate_square_subsequent_mask(length, device=ids.device)
        x = self.pos_embed(self.tok_embed(ids))
        x = self.blocks(x, mask=causal, is_causal=True)
        return self.head(self.norm(x))

    @no_grad()
    def generate(self, prefix_ids, n: int, temperature: float = 1.0, top_k: int | None = None):
        """Extend ``prefix_ids`` (a list of ints, non-empty) by ``n`` sampled tokens.

        Each step feeds the last ``max_len`` tokens, divides the last position's logits by
        ``temperature`` (lower: safer, duller text), keeps the ``top_k`` most likely tokens
        if given, and samples from the softmax with pydl's generator (``pydl.manual_seed``
        makes it repeatable). Returns the prefix followed by the new tokens, as a list.
        Runs in eval mode (no dropout) and restores the previous mode afterwards.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        ids = [int(i) for i in prefix_ids]
        if not ids:
            raise ValueError("generate needs at least one prefix token")
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        for _ in range(n):
            context = tensor([ids[-self.max_len:]], device=device)
            logits = self(context)[0, -1].numpy().astype(np.float64) / temperature
            if top_k is not None and top_k < len(logits):
                logits[logits < np.sort(logits)[-top_k]] = -np.inf
            probs = np.exp(logits - logits.max())
            cdf = np.cumsum(probs / probs.sum())
            ids.append(int(min(np.searchsorted(cdf, rand(1).item()), len(cdf) - 1)))
        self.train(was_training)
        return ids
