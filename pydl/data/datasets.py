"""Data that ships with pydl, and synthetic problems. Nothing here touches the network."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["load_digits", "load_text", "two_spirals", "moons", "noisy_sine", "adding_problem"]

_FILES = os.path.join(os.path.dirname(__file__), "files")


def load_digits(flatten: bool = False, normalize: bool = True):
    """The 8x8 handwritten digits shipped with pydl: 1,797 images of 10 classes.

    Returns ``(images, labels)``: images float32 of shape (1797, 1, 8, 8) scaled to [0, 1]
    (or (1797, 64) with ``flatten=True``; raw 0..16 values with ``normalize=False``), labels
    int64. Source and licence: ``pydl/data/files/README.md``.
    """
    with np.load(os.path.join(_FILES, "digits.npz")) as f:
        images, labels = f["images"], f["labels"]
    x = images.astype(np.float32)
    if normalize:
        x /= 16.0
    x = x.reshape(len(x), 64) if flatten else x.reshape(len(x), 1, 8, 8)
    return x, labels.astype(np.int64)


# name -> file in files/ (UTF-8 text, public domain; see files/README.md)
_TEXTS = {"alice": "alice.txt", "oz": "oz.txt"}


def load_text(name: str = "alice") -> str:
    """A public-domain text shipped with pydl, as one ``str``, for character-level models.

    ``"alice"``: Lewis Carroll's *Alice's Adventures in Wonderland* (1865), the twelve
    chapters from "CHAPTER I." to "THE END", about 144,000 characters (73 distinct,
    including curly quotes and dashes), newline line ends. ``"oz"``: the first three chapters
    of L. Frank Baum's *Dorothy and the Wizard in Oz* (1908), about 39,000 characters in plain
    ASCII. Sources and public-domain status: ``files/README.md``.

    >>> text = load_text("alice")
    >>> text[:10]
    'CHAPTER I.'
    """
    if name not in _TEXTS:
        raise ValueError(f"unknown text {name!r}; shipped texts: {sorted(_TEXTS)}")
    with open(os.path.join(_FILES, _TEXTS[name]), encoding="utf-8") as f:
        return f.read()


def two_spirals(n: int = 1000, noise: float = 0.02, seed: int = 0):
    """Two interleaved spirals in 2-D: ``n`` points (float32), labels 0/1 (int64)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    t = np.sqrt(rng.uniform(0.0, 1.0, half)) * 3 * math.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) / (3 * math.pi)
    x = np.concatenate([arm, -arm]) + rng.normal(0.0, noise, (2 * half, 2))
    y = np.repeat(np.array([0, 1], dtype=np.int64), half)
    return x.astype(np.float32), y


def moons(n: int = 1000, noise: float = 0.1, seed: int = 0):
    """Two interleaving half circles: ``n`` points (float32), labels 0/1 (int64)."""
    rng = np.random.default_rng(seed)
    half = n // 2
    a = rng.uniform(0, math.pi, half)
    b = rng.uniform(0, math.pi, n - half)
    upper = np.stack([np.cos(a), np.sin(a)], 1)
    lower = np.stack([1 - np.cos(b), 0.5 - np.sin(b)], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, noise, (n, 2))
    y = np.concatenate([np.zeros(half), np.ones(n - half)]).astype(np.int64)
    return x.astype(np.float32), y


def noisy_sine(n_series: int = 256, length: int = 64, horizon: int = 1, noise: float = 0.05,
               seed: int = 0):
    """Forecasting windows of noisy sine waves with random frequency and phase.

    Returns ``(x, y)``: x float32 (n_series, length, 1), y float32 (n_series, horizon): the
    next ``horizon`` clean-plus-noise values after each window.
    """
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.05, 0.2, (n_series, 1))
    phase = rng.uniform(0, 2 * math.pi, (n_series, 1))
    t = np.arange(length + horizon)[None, :]
    s = np.sin(2 * math.pi * freq * t + phase) + rng.normal(0, noise, (n_series, length + horizon))
    return s[:, :length, None].astype(np.float32), s[:, length:].astype(np.float32)


def adding_problem(n: int = 1000, length: int = 50, seed: int = 0):
    """The adding problem (Hochreiter & Schmidhuber): sum the two marked values.

    Returns ``(x, y)``: x float32 (n, length, 2) whose channel 0 is uniform noise in [0, 1)
    and channel 1 marks exactly two positions (one in each half), y float32 (n, 1) the sum
    of the two marked values. Predicting 1.0 always gives MSE about 0.167.
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (n, length))
    marks = np.zeros((n, length))
    first = rng.integers(0, length // 2, n)
    second = rng.integers(length // 2, length, n)
    marks[np.arange(n), first] = 1
    marks[np.arange(n), second] = 1
    x = np.stack([values, marks], axis=-1).astype(np.float32)
    y = (values * marks).sum(1, keepdims=True).astype(np.float32)
    return x, y
