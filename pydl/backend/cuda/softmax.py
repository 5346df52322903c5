"""The softmax family (``csrc/cuda/softmax.cu``): softmax / log-softmax forward and backward
along the last axis, and cross-entropy fused with log-softmax.

Rows up to 32 * VPT wide get one warp each (4 rows per 128-thread block), rows of at most 32
columns a power-of-two group of lanes each (several rows per warp); wider rows get a
512-thread block; past 512 * 16 columns the block loops over the row twice.

float16 / bfloat16 arrays run natively (float32 math, 16-bit loads and stores): the instances
with a storage tag (``pydl::f16``, ``pydl::bf16``) as their last template argument.
"""

from __future__ import annotations

import numpy as np

from ..low_precision import native_low
from . import graph
from . import runtime as rt
from .gemm_half import FORMATS

SOURCE = "softmax.cu"
ROW_WARP_VPT = (1, 2, 4, 8, 16, 32)   # one warp per row, up to 32 * VPT columns
ROW_BLOCK_THREADS = 512
ROW_BLOCK_VPT = (4, 8, 16, 0)         # one block per row; 0 = any width (two passes)
# 16-bit storage: no VPT 16 block instance. ptxas fits the log-softmax one into 32 registers
# and spills (sm_90); rows past 512 * 8 take the two-pass loop, whose second read of a
# 16-bit row (usually from L2) costs half what a float32 row's does.
ROW_BLOCK_VPT_LOW = (4, 8, 0)
ROW_KINDS = ("softmax_forward", "log_softmax_forward", "softmax_backward",
             "log_softmax_backward")


def row_name(kind, ctype, threads, vpt=None, fmt=None):
    """Name of a row kernel; ``fmt`` (a storage tag of FORMATS) for float16/bfloat16 arrays."""
    args = (ctype, threads) + (() if vpt is None else (vpt,)) + (() if fmt is None else (fmt,))
    return rt.template_name(f"{kind}_kernel", *args)


def _storages():
    """(C type, storage tag or None) of every instance set: float, double, and float math on
    float16 / bfloat16 storage."""
    return [(c, None) for c in rt.CTYPES.values()] + [("float", f) for f in FORMATS.values()]


def instances() -> list[str]:
    """Every softmax.cu instance the backend may launch."""
    out = []
    for ctype, fmt in _storages():
        for kind in ROW_KINDS:
            out += [row_name(kind, ctype, 32, vpt, fmt) for vpt in ROW_WARP_VPT]
            out += [row_name(kind, ctype, ROW_BLOCK_THREADS, vpt, fmt)
                    for vpt in (ROW_BLOCK_VPT if fmt is None else ROW_BLOCK_VPT_LOW)]
        for kind in ("cross_entropy_forward", "cross_entropy_backward"):
            out += [row_name(kind, ctype, threads, None, fmt)
                    for threads in (32, ROW_BLOCK_THREADS)]
    return out


def _types(op, a, *others):
    """(C type of the math, storage tag or None) for arrays of one dtype; TypeError naming
    ``op`` when the dtypes differ or are not float32/float64/float16/bfloat16."""
    fmt = FORMATS.get(np.dtype(a.dtype))
    if fmt is None:
        return rt.float_pair(op, a, *others), None
    for b in others:
        if a.dtype != b.dtype:
            raise TypeError(f"{op}: dtypes {a.dtype} and {b.dtype} differ")
    return "float", fmt


def _row_plan(cols, low=False):
    """(threads per row, values per thread) for rows ``cols`` wide (``low``: 16-bit storage);
    0 = unbounded loop."""
    for vpt in ROW_WARP_VPT:
        if cols <= 32 * vpt:
            return 32, vpt
    for vpt in ROW_BLOCK_VPT_LOW if low else ROW_BLOCK_VPT:
        if vpt and cols <= ROW_BLOCK_THREADS * vpt:
            return ROW_BLOCK_THREADS, vpt
    return ROW_BLOCK_THREADS, 0


def _block(threads):
    """Threads per block of a row kernel with ``threads`` per row (4 one-warp rows a block)."""
    return 128 if threads == 32 else threads


def launch_block(name_expr: str) -> int:
    """Threads per block ``name_expr`` (one of ``instances()``) is launched with."""
    args = name_expr[name_expr.index("<") + 1 : name_expr.rindex(">")].split(",")
    return _block(int(args[1]))


def narrow_rows_per_block(cols):
    """Rows per 128-thread block of the one-value-per-lane row kernels (cols <= 32): a warp
    splits into groups of the power of two >= cols lanes, one row each."""
    group = 1
    while group < cols:
        group *= 2
    return 4 * (32 // group)


def _row_grid(rows, threads, per_block=None):
    per_block = per_block or (4 if threads == 32 else 1)
    blocks = -(-rows // per_block)
    rt.check_i32("softmax", blocks=blocks)
    return blocks, _block(threads)


def _rows(kind, types, out, arrays):
    ctype, fmt = types
    cols = out.shape[-1] if out.ndim else 1
    rows = out.size // cols if cols else 0
    if rows == 0:
        return out
    rt.check_i32(kind, cols=cols)
    threads, vpt = _row_plan(cols, fmt is not None)
    grid, block = _row_grid(rows, threads,
                            narrow_rows_per_block(cols) if (threads, vpt) == (32, 1) else None)
    rt.launch(SOURCE, row_name(kind, ctype, threads, vpt, fmt), (grid,), block,
              tuple(arrays) + (out, np.int64(rows), np.int32(cols)))
    return out


@native_low
@rt.on_device
def softmax_forward(x):
    """Softmax along the last axis."""
    x = rt.contig(x)
    return _rows("softmax_forward", _types("softmax", x), rt.empty(x.shape, x.dtype), (x,))


@native_low
@rt.on_device
def log_softmax_forward(x):
    """Log-softmax along the last axis."""
    x = rt.contig(x)
    return _rows("log_softmax_forward", _types("log_softmax", x), rt.empty(x.shape, x.dtype),
                 (x,))


@native_low
@rt.on_device
def softmax_backward(gy, y):
    """gx = y * (gy - sum(gy * y, -1))."""
    types = _types("softmax_backward", gy, y)
    return _rows("softmax_backward", types, rt.empty(y.shape, y.dtype),
                 (rt.contig(gy), rt.contig(y)))


@native_low
@rt.on_device
def log_softmax_backward(gy, y):
    """gx = gy - exp(y) * sum(gy, -1)."""
    types = _types("log_softmax_backward", gy, y)
    return _rows("log_softmax_backward", types, rt.empty(y.shape, y.dtype),
                 (rt.contig(gy), rt.contig(y)))


# ----------------------------------------------------------------------------- cross-entropy
def _xent_inputs(op, logits, target, weight):
    ctype, fmt = _types(op, logits)
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"{op}: logits {tuple(logits.shape)} and target "
                         f"{tuple(target.shape)} do not fit (need (N, C) and (N,))")
    if weight is not None:
        if weight.shape != logits.shape[1:]:
            raise ValueError(f"{op}: weight {tuple(weight.shape)} does not fit "
                             f"{logits.shape[1]} classes")
        weight = rt.contig(weight.astype(logits.dtype, copy=False))
    rt.check_i32(op, classes=logits.shape[1])
    threads = 32 if logits.shape[1] <= 1024 else ROW_BLOCK_THREADS
    return ((ctype, fmt), rt.contig(logits), rt.contig(target.astype(np.int64, copy=False)),
            weight, threads)


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


@native_low
@rt.on_device
def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    """(loss (N,), lse (N,)): per-sample cross-entropy fused with log-softmax."""
    op = "cross_entropy"
    (ctype, fmt), logits, target, weight, threads = _xent_inputs(op, logits, target, weight)
    n, c = logits.shape
    loss, lse = rt.empty((n,), logits.dtype), rt.empty((n,), logits.dtype)
    if n == 0:
        return loss, lse
    bad = rt.xp.full((1,), n, dtype=np.uint64)
    grid, block = _row_grid(n, threads)
    rt.launch(SOURCE, row_name("cross_entropy_forward", ctype, threads, None, fmt), (grid,),
              block,
              (logits, target, rt.null_or(weight), loss, lse, bad, np.int64(n), np.int32(c),
               np.int64(ignore_index), rt.scalar(ctype)(label_smoothing)))
    if rt._settings["check_targets"] and not graph.capturing():
        row = int(_host(bad)[0])
        if row < n:
            value = int(_host(target[row : row + 1])[0])
            raise IndexError(f"cross_entropy: target {value} is out of bounds for {c} classes")
    return loss, lse


@native_low
@rt.on_device
def cross_entropy_backward(grad_loss, logits, lse, target, weight, ignore_index,
                           label_smoothing):
    """glogits (N, C) = d(sum_i grad_loss_i * loss_i) / d logits."""
    op = "cross_entropy_backward"
    (ctype, fmt), logits, target, weight, threads = _xent_inputs(op, logits, target, weight)
    n, c = logits.shape
    out = rt.empty((n, c), logits.dtype)
    if out.size == 0:
        return out
    # the sum in the math's dtype (float32 for 16-bit storage)
    weight_sum = (weight.astype(rt.scalar(ctype), copy=False).sum(keepdims=True)
                  if weight is not None else None)
    grid, block = _row_grid(n, threads)
    rt.launch(SOURCE, row_name("cross_entropy_backward", ctype, threads, None, fmt), (grid,),
              block,
              (rt.contig(grad_loss.astype(logits.dtype, copy=False)), logits,
               rt.contig(lse.astype(logits.dtype, copy=False)), target, rt.null_or(weight),
               rt.null_or(weight_sum), out, np.int64(n), np.int32(c), np.int64(ignore_index),
               rt.scalar(ctype)(label_smoothing)))
    return out
