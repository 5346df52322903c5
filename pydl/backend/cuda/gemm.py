"""The GEMM family (``csrc/cuda/matmul.cu``): ``matmul``, and the tile planning that conv.py's
implicit GEMMs share (block tiles, split-K).

The CUDA-core kernel computes a BM x BN tile of C per 256-thread block with the main loop of
``gemm_tile.cuh``; the TF32 kernel (``set_allow_tf32``) uses tensor cores. Operands are read
row- or column-major without a copy where their strides allow.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from . import gemm_half
from . import runtime as rt

SOURCE = "matmul.cu"

# Block tiles (BM, BN, BK, TM, TN) of the CUDA-core GEMM, shared by matmul and conv2d.
# "large": 256 threads, 8x8 outputs each; "small": 256 threads, 4x4 outputs each.
GEMM_CONFIGS = {
    "float": {"large": (128, 128, 8, 8, 8), "small": (64, 64, 16, 4, 4)},
    "double": {"small": (64, 64, 16, 4, 4)},
}
TF32_TILE = (128, 128, 16)


def matmul_name(ctype, cfg, trans_a, trans_b, vec):
    return rt.template_name("matmul_kernel", ctype, *cfg, trans_a, trans_b, vec)


def matmul_tf32_name(trans_a, trans_b, vec):
    return rt.template_name("matmul_tf32_kernel", trans_a, trans_b, vec)


def instances() -> list[str]:
    """Every matmul.cu instance the backend may launch."""
    flags = (False, True)
    out = [matmul_name(ctype, cfg, ta, tb, vec)
           for ctype, cfgs in GEMM_CONFIGS.items() for cfg in cfgs.values()
           for ta, tb, vec in product(flags, flags, flags)]
    return out + [matmul_tf32_name(ta, tb, vec) for ta, tb, vec in product(flags, flags, flags)]


# ----------------------------------------------------------------------------- planning
def tiles(m, n, cfg):
    """Blocks covering an m x n output with ``cfg``'s tile."""
    return -(-m // cfg[0]) * -(-n // cfg[1])


def pick_config(ctype, m, n, z):
    """The large tile when it fills the GPU without padding much more than the small one
    (an M of 64 would waste half of every 128-row tile), else the small tile."""
    cfgs = GEMM_CONFIGS[ctype]
    large, small = cfgs.get("large"), cfgs["small"]
    if large is not None and tiles(m, n, large) * z >= rt.sm_count():
        padded_large = tiles(m, n, large) * large[0] * large[1]
        if padded_large <= 1.25 * tiles(m, n, small) * small[0] * small[1]:
            return large
    return small


def split_k(blocks, k, bk, min_chunk, max_splits=64):
    """(splits, k_chunk): split K when ``blocks`` tiles leave most of the GPU idle.

    Aims at two waves of blocks, each split at least ``min_chunk`` long; k_chunk is a
    multiple of the tile depth ``bk`` and no split is empty.
    """
    sms = rt.sm_count()
    if blocks >= sms or k < 2 * min_chunk or max_splits < 2:
        return 1, max(k, 1)
    splits = min(-(-2 * sms // blocks), k // min_chunk, max_splits)
    chunk = -(-k // splits)
    chunk = -(-chunk // bk) * bk
    return -(-k // chunk), chunk


def _gemm_operand(x, trans):
    """(array, ld, batch stride, trans) describing x without copying when its strides allow.

    Row-major views (unit column stride) keep their flag; column-major ones (e.g. ``a.T``)
    become the transposed operand; anything else is copied to C order first.
    """
    it = x.itemsize
    rows, cols = x.shape[-2], x.shape[-1]
    if all(s % it == 0 for s in x.strides):
        st = [s // it for s in x.strides]
        sb = st[0] if x.ndim == 3 and x.shape[0] > 1 else 0
        sr, sc = st[-2], st[-1]
        if sb >= 0:
            if (cols <= 1 or sc == 1) and sr >= 0:
                return x, (sr if rows > 1 else max(cols, 1)), sb, trans
            if (rows <= 1 or sr == 1) and sc >= 0:
                return x, (sc if cols > 1 else max(rows, 1)), sb, not trans
    x = rt.xp.ascontiguousarray(x)
    return x, max(cols, 1), (rows * cols if x.ndim == 3 else 0), trans


def _vec_ok(array, ld, sb, extent, width):
    return rt.ptr(array) % 16 == 0 and ld % width == 0 and sb % width == 0 and extent % width == 0


# ----------------------------------------------------------------------------- matmul
def _op_shape(a, trans):
    return a.shape[:-2] + ((a.shape[-1], a.shape[-2]) if trans else a.shape[-2:])


@rt.on_device
def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D or equally batched 3-D arrays (protocol ``matmul``)."""
    sa, sb = _op_shape(a, trans_a), _op_shape(b, trans_b)
    if a.ndim != b.ndim or a.ndim not in (2, 3) or sa[-1] != sb[-2] or sa[:-2] != sb[:-2]:
        raise ValueError(f"matmul: shapes {tuple(sa)} and {tuple(sb)} cannot be multiplied")
    if rt._settings["matmul_backend"] == "cupy":
        return rt.xp.matmul(a.swapaxes(-1, -2) if trans_a else a,
                            b.swapaxes(-1, -2) if trans_b else b)
    if a.dtype in gemm_half.FORMATS:  # float16 / bfloat16: tensor cores (gemm_half.py)
        out = gemm_half.matmul_low(a, b, trans_a, trans_b, sa[-2], sb[-1], sa[-1],
                                   a.shape[0] if a.ndim == 3 else 1)
        return out if a.ndim == 3 else out.reshape(sa[-2], sb[-1])
    ctype = rt.float_pair("matmul", a, b)
    m, k, n = sa[-2], sa[-1], sb[-1]
    batch = a.shape[0] if a.ndim == 3 else 1
    out = rt.empty((batch, m, n), a.dtype)
    if out.size:
        if k == 0:
            out[...] = 0
        else:
            _gemm(ctype, a, b, trans_a, trans_b, out, m, n, k, batch)
    return out if a.ndim == 3 else out.reshape(m, n)


def _gemm(ctype, a, b, trans_a, trans_b, out, m, n, k, batch):
    rt.check_i32("matmul", M=m, N=n, K=k)
    A, lda, s_a, ta = _gemm_operand(a, trans_a)
    B, ldb, s_b, tb = _gemm_operand(b, trans_b)
    width = 16 // out.itemsize
    vec = (_vec_ok(A, lda, s_a, m if ta else k, width)
           and _vec_ok(B, ldb, s_b, k if tb else n, width) and n % width == 0)
    if ctype == "float" and rt._settings["allow_tf32"]:
        cfg = TF32_TILE
        name_expr = matmul_tf32_name(ta, tb, vec)
    else:
        cfg = pick_config(ctype, m, n, batch)
        name_expr = matmul_name(ctype, cfg, ta, tb, vec)
    count = tiles(m, n, cfg)
    rt.check_i32("matmul", tiles=count)
    splits, chunk = split_k(count * batch, k, cfg[2], 256)
    target = out if splits == 1 else rt.xp.empty((batch, splits, m, n), out.dtype)
    per_launch = max(1, 65535 // splits)
    for b0 in range(0, batch, per_launch):
        b1 = min(batch, b0 + per_launch)
        args = (
            A[b0:b1] if A.ndim == 3 else A, B[b0:b1] if B.ndim == 3 else B, target[b0:b1],
            np.int32(m), np.int32(n), np.int32(k), np.int64(lda), np.int64(ldb),
            np.int64(s_a), np.int64(s_b), np.int64(m * n), np.int32(splits), np.int32(chunk),
        )
        rt.launch(SOURCE, name_expr, (count, 1, (b1 - b0) * splits), rt.BLOCK, args)
    if splits > 1:
        rt.xp.sum(target, axis=1, out=out)
