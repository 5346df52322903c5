"""Resizing (N, C, H, W) images: the Function behind ``pydl.nn.functional.interpolate``.

Nearest, bilinear and bicubic resizing are separable: y = Ah @ x @ Aw^T with one (out, in)
matrix per axis, built on the host by ``_interp_matrix`` as PyTorch computes its source
indices.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function
from ._util import xp_of


def _source_nearest(out_size, in_size, scale, exact):
    """PyTorch's nearest source index (computed in float32 as its CPU kernel does)."""
    dst = np.arange(out_size, dtype=np.float32)
    if exact:
        dst = dst + np.float32(0.5)
    src = np.floor(dst * np.float32(scale)).astype(np.int64)
    return np.minimum(src, in_size - 1)


def _interp_matrix(out_size, in_size, scale_factor, mode, align_corners):
    """(out_size, in_size) NumPy matrix A with out = A @ in along one axis, and the nearest
    indices (or None for linear modes)."""
    if scale_factor is not None:
        scale = 1.0 / scale_factor
    else:
        scale = in_size / out_size
    a = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    if mode in ("nearest", "nearest-exact"):
        idx = _source_nearest(out_size, in_size, scale, mode == "nearest-exact")
        a[rows, idx] = 1.0
        return a, idx
    if align_corners:
        ratio = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = rows * ratio
    elif mode == "bicubic":  # PyTorch does not clamp the cubic source index at 0
        src = scale * (rows + 0.5) - 0.5
    else:
        src = np.maximum(scale * (rows + 0.5) - 0.5, 0.0)
    if mode == "bicubic":
        return _cubic_matrix(a, rows, src, in_size), None
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0
    np.add.at(a, (rows, i0), 1.0 - lam)
    np.add.at(a, (rows, i1), lam)
    return a, None


def _cubic_matrix(a, rows, src, in_size, A=-0.75):
    """Keys' cubic convolution (A = -0.75, as PyTorch) over the 4 taps floor(src)-1..+2,
    taps past either edge reading the edge sample."""
    base = np.floor(src).astype(np.int64)
    t = src - base

    def near(x):  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    for offset, weight in ((-1, far(t + 1)), (0, near(t)), (1, near(1 - t)), (2, far(2 - t))):
        np.add.at(a, (rows, np.clip(base + offset, 0, in_size - 1)), weight)
    return a


class Interpolate2d(Function):
    """Resize (N, C, H, W) -> (N, C, Ho, Wo) with separable matrices: y = Ah @ x @ Aw^T.

    Nearest modes gather rows and columns directly in forward; bilinear multiplies by the
    interpolation matrices. Backward is the transpose: gx = Ah^T @ g @ Aw (for an integer
    nearest factor, a block sum); on Tensors these are recorded matmuls/sums.
    """

    double_backward = True

    @staticmethod
    def forward(ctx, x, size, scale_factor, mode, align_corners):
        xp = xp_of(x)
        h, w = x.shape[-2:]
        sh = scale_factor[0] if scale_factor is not None else None
        sw = scale_factor[1] if scale_factor is not None else None
        ah, ih = _interp_matrix(size[0], h, sh, mode, align_corners)
        aw, iw = _interp_matrix(size[1], w, sw, mode, align_corners)
        ctx.in_shape = x.shape
        ctx.block = None
        if ih is not None:
            kh, kw = size[0] // h if h else 0, size[1] // w if w else 0
            if (kh and kw and size == (kh * h, kw * w)
                    and np.array_equal(ih, np.arange(size[0]) // kh)
                    and np.array_equal(iw, np.arange(size[1]) // kw)):
                ctx.block = (kh, kw)
            else:
                ctx.mats = (xp.asarray(ah, dtype=x.dtype), xp.asarray(aw, dtype=x.dtype))
            return x[..., xp.asarray(ih)[:, None], xp.asarray(iw)[None, :]]
        ah, aw = xp.asarray(ah, dtype=x.dtype), xp.asarray(aw, dtype=x.dtype)
        ctx.mats = (ah, aw)
        return xp.matmul(ah, xp.matmul(x, aw.T))

    @staticmethod
    def backward(ctx, g):
        n_c = ctx.in_shape[:-2]
        h, w = ctx.in_shape[-2:]
        if ctx.block is not None:
            kh, kw = ctx.block
            gx = g.reshape(*n_c, h, kh, w, kw).sum(axis=(-3, -1))
        else:
            ah, aw = ctx.mats
            xp = xp_of(g)
            gx = xp.matmul(ah.T, xp.matmul(g, aw))
        return gx, None, None, None, None
