"""Augmentation transforms for images as NumPy arrays: one (C, H, W) image or a (N, C, H, W) batch.

Every random transform draws from its own generator, seeded by ``seed``, so a pipeline repeats
exactly under the same seed. Each keeps the input's shape and dtype. Batches are transformed
per image (each image gets its own random draw) with vectorized NumPy.

>>> aug = Compose([RandomCrop(8, padding=1), RandomRotation(10), GaussianNoise(0.02)], seed=0)
>>> xb = aug(xb)      # xb: (N, 1, 8, 8) float32
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Compose", "Normalize", "RandomHorizontalFlip", "RandomRotation", "RandomCrop",
    "RandomAffine", "ColorJitter", "GaussianNoise",
]


def _as_batch(x):
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {x.shape}")


def _finish(out, single, dtype):
    out = out.astype(dtype, copy=False)
    return out[0] if single else out


class Transform:
    """Base class: ``__call__(x)`` on an image or a batch; ``seed`` fixes the random draws."""

    def __init__(self, seed=None):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)


class Compose(Transform):
    """Apply transforms in order. ``seed`` reseeds every member from one seed."""

    def __init__(self, transforms, seed=None):
        super().__init__(seed)
        self.transforms = list(transforms)
        if seed is not None:
            self.reseed(seed)

    def reseed(self, seed):
        seeds = np.random.SeedSequence(seed).spawn(len(self.transforms))
        for t, s in zip(self.transforms, seeds):
            if isinstance(t, Transform):
                t.reseed(s)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Normalize(Transform):
    """``(x - mean) / std`` per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float64).reshape(-1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {std}")

    def __call__(self, x):
        b, single = _as_batch(x)
        if self.mean.shape[0] not in (1, b.shape[1]):
            raise ValueError(f"Normalize: {self.mean.shape[0]} means for {b.shape[1]} channels")
        return _finish((b - self.mean) / self.std, single, b.dtype)


class RandomHorizontalFlip(Transform):
    """Mirror left-right with probability ``p``."""

    def __init__(self, p=0.5, seed=None):
        super().__init__(seed)
        self.p = p

    def __call__(self, x):
        b, single = _as_batch(x)
        flip = self.rng.random(len(b)) < self.p
        out = b.copy()
        out[flip] = out[flip][..., ::-1]
        return _finish(out, single, b.dtype)


def _warp(b, inv):
    """Resample each image through its inverse affine map (N, 2, 3), bilinear, zero fill."""
    n, c, h, w = b.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    grid = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)])  # (3, HW)
    src = inv @ grid  # (N, 2, HW): source x, y relative to the centre
    sx, sy = src[:, 0] + cx, src[:, 1] + cy
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    out = np.zeros((n, c, h * w), dtype=np.float64)
    flat = b.reshape(n, c, h * w)
    rows = np.arange(n)[:, None]
    for dy, dx, wt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                       (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        idx = np.where(ok, yi * w + xi, 0)
        vals = flat[rows, :, idx]  # (N, HW, C)
        out += np.moveaxis(vals, -1, 1) * (wt * ok)[:, None, :]
    return out.reshape(n, c, h, w)


def _affine_matrices(angles_deg, scales, shears_deg, tx, ty):
    """Inverse maps (N, 2, 3) of rotate-scale-shear-translate about the image centre."""
    a = np.deg2rad(angles_deg)
    s = np.deg2rad(shears_deg)
    fwd = np.zeros((len(a), 3, 3))
    fwd[:, 0, 0] = np.cos(a) * scales
    fwd[:, 0, 1] = (-np.sin(a) + np.cos(a) * np.tan(s)) * scales
    fwd[:, 1, 0] = np.sin(a) * scales
    fwd[:, 1, 1] = (np.cos(a) + np.sin(a) * np.tan(s)) * scales
    fwd[:, 0, 2], fwd[:, 1, 2], fwd[:, 2, 2] = tx, ty, 1.0
    return np.linalg.inv(fwd)[:, :2, :]


class RandomRotation(Transform):
    """Rotate by an angle drawn uniformly from [-degrees, degrees] (or the given range)."""

    def __init__(self, degrees, seed=None):
        super().__init__(seed)
        self.range = (-degrees, degrees) if np.isscalar(degrees) else tuple(degrees)

    def __call__(self, x):
        b, single = _as_batch(x)
        n = len(b)
        ang = self.rng.uniform(*self.range, n)
        inv = _affine_matrices(ang, np.ones(n), np.zeros(n), np.zeros(n), np.zeros(n))
        return _finish(_warp(b, inv), single, b.dtype)


class RandomAffine(Transform):
    """Random rotation, translation (fractions of size), scale and shear, as torchvision's."""

    def __init__(self, degrees=0, translate=None, scale=None, shear=None, seed=None):
        super().__init__(seed)
        self.degrees = (-degrees, degrees) if np.isscalar(degrees) else tuple(degrees)
        self.translate = translate
        self.scale = scale
        self.shear = (-shear, shear) if np.isscalar(shear) and shear else (shear or (0, 0))

    def __call__(self, x):
        b, single = _as_batch(x)
        n, _, h, w = b.shape
        ang = self.rng.uniform(*self.degrees, n)
        tx = ty = np.zeros(n)
        if self.translate is not None:
            tx = self.rng.uniform(-self.translate[0], self.translate[0], n) * w
            ty = self.rng.uniform(-self.translate[1], self.translate[1], n) * h
        sc = self.rng.uniform(*self.scale, n) if self.scale is not None else np.ones(n)
        sh = self.rng.uniform(*self.shear, n)
        inv = _affine_matrices(ang, sc, sh, tx, ty)
        return _finish(_warp(b, inv), single, b.dtype)


class RandomCrop(Transform):
    """Pad by ``padding`` (zeros) then crop a random ``size`` window."""

    def __init__(self, size, padding=0, seed=None):
        super().__init__(seed)
        self.size = (size, size) if np.isscalar(size) else tuple(size)
        self.padding = padding

    def __call__(self, x):
        b, single = _as_batch(x)
        p = self.padding
        padded = np.pad(b, ((0, 0), (0, 0), (p, p), (p, p))) if p else b
        th, tw = self.size
        n, c, h, w = padded.shape
        if th > h or tw > w:
            raise ValueError(
                f"RandomCrop: crop {self.size} is larger than the padded image {(h, w)}"
            )
        top = self.rng.integers(0, h - th + 1, n)
        left = self.rng.integers(0, w - tw + 1, n)
        rows = (top[:, None] + np.arange(th))[:, None, :, None]
        cols = (left[:, None] + np.arange(tw))[:, None, None, :]
        batch, chan = np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
        return _finish(out, single, b.dtype)


class ColorJitter(Transform):
    """Random brightness and contrast factors drawn from [1 - b, 1 + b] and [1 - c, 1 + c]."""

    def __init__(self, brightness=0.0, contrast=0.0, seed=None):
        super().__init__(seed)
        self.brightness, self.contrast = brightness, contrast

    def __call__(self, x):
        b, single = _as_batch(x)
        n = len(b)
        out = b.astype(np.float64)
        if self.brightness:
            factor = self.rng.uniform(1 - self.brightness, 1 + self.brightness, n)
            out = out * factor[:, None, None, None]
        if self.contrast:
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            f = self.rng.uniform(1 - self.contrast, 1 + self.contrast, n)[:, None, None, None]
            out = (out - mean) * f + mean
        return _finish(out, single, b.dtype)


class GaussianNoise(Transform):
    """Add N(0, std^2) noise."""

    def __init__(self, std=0.05, seed=None):
        super().__init__(seed)
        self.std = std

    def __call__(self, x):
        b, single = _as_batch(x)
        return _finish(b + self.rng.normal(0.0, self.std, b.shape), single, b.dtype)


