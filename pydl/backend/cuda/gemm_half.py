"""The half-precision GEMM family (``csrc/cuda/matmul_half.cu``): ``matmul`` of float16 and
bfloat16 arrays on tensor cores (``mma.sync.m16n8k16``), float32 accumulation.

``gemm.matmul`` hands low-precision operands here. A bfloat16 CUDA array is a CuPy array of
``ml_dtypes.bfloat16`` (the same two bytes as CUDA's ``__nv_bfloat16``); the kernel reads both
formats as raw 16-bit words and converts in registers, so no CUDA half headers are needed.
"""

from __future__ import annotations

from itertools import product

import ml_dtypes
import numpy as np

from . import runtime as rt

SOURCE = "matmul_half.cu"
TILE = (64, 64, 32)  # BM, BN, BK of matmul_half_kernel
THREADS = 128
#: storage dtype -> the kernel's format tag
FORMATS = {np.dtype(np.float16): "pydl::f16", np.dtype(ml_dtypes.bfloat16): "pydl::bf16"}


def matmul_half_name(fmt, trans_a, trans_b):
    return rt.template_name("matmul_half_kernel", fmt, trans_a, trans_b)


def instances() -> list[str]:
    """Every matmul_half.cu instance the backend may launch."""
    flags = (False, True)
    return [matmul_half_name(fmt, ta, tb)
            for fmt in FORMATS.values() for ta, tb in product(flags, flags)]


def launch_block(name_expr: str) -> int:
    return THREADS


def _operand(x, trans):
    """(array, ld, batch stride, trans) of a row- or column-major view, else a C copy."""
    it = x.itemsize
    rows, cols = x.shape[-2], x.shape[-1]
    st = [s // it for s in x.strides] if all(s % it == 0 for s in x.strides) else None
    if st is not None:
        sb = st[0] if x.ndim == 3 and x.shape[0] > 1 else 0
        sr, sc = st[-2], st[-1]
        if sb >= 0 and (cols <= 1 or sc == 1) and sr >= 0:
            return x, (sr if rows > 1 else max(cols, 1)), sb, trans
        if sb >= 0 and (rows <= 1 or sr == 1) and sc >= 0:
            return x, (sc if cols > 1 else max(rows, 1)), sb, not trans
    x = rt.xp.ascontiguousarray(x)
    return x, max(cols, 1), (rows * cols if x.ndim == 3 else 0), trans


def matmul_low(a, b, trans_a, trans_b, m, n, k, batch):
    """op(a) @ op(b) for float16 / bfloat16 arrays of one dtype, as (batch, m, n)."""
    if a.dtype != b.dtype:
        raise TypeError(f"matmul: dtypes {a.dtype} and {b.dtype} differ")
    out = rt.empty((batch, m, n), a.dtype)
    if out.size == 0:
        return out
    if k == 0:
        out[...] = 0
        return out
    rt.check_i32("matmul", M=m, N=n, K=k)
    A, lda, s_a, ta = _operand(a, trans_a)
    B, ldb, s_b, tb = _operand(b, trans_b)
    count = -(-m // TILE[0]) * -(-n // TILE[1])
    rt.check_i32("matmul", tiles=count)
    name_expr = matmul_half_name(FORMATS[a.dtype], ta, tb)
    for b0 in range(0, batch, 65535):
        b1 = min(batch, b0 + 65535)
        args = (A[b0:b1] if A.ndim == 3 else A, B[b0:b1] if B.ndim == 3 else B, out[b0:b1],
                np.int32(m), np.int32(n), np.int32(k), np.int64(lda), np.int64(ldb),
                np.int64(s_a), np.int64(s_b), np.int64(m * n))
        rt.launch(SOURCE, name_expr, (count, 1, b1 - b0), THREADS, args)
    return out
