"""CUDA backend: CuPy arrays, and the protocol kernels (``pydl.backend.base``) hand-written in
``csrc/cuda`` and compiled at run time by NVRTC.

Kernels are compiled lazily, once per (file, template instance, options, device), through
``cupy.RawModule`` and kept in ``_FUNCTIONS``. CuPy caches the compiled binaries on disk
(``~/.cupy/kernel_cache``, or ``$CUPY_CACHE_DIR``), keyed by the source text, options,
architecture and name expressions, so a later process loads them without compiling. No
protocol kernel calls cuBLAS or cuDNN; CuPy is used for allocation and small glue (casts,
split-K sums, table uploads).

Switches (also reachable as ``pydl.cuda.*``):
- ``set_matmul_backend("cupy")`` routes ``matmul`` to ``cupy.matmul`` (cuBLAS) so a
  benchmark can run the same model on the reference GEMM; ``"pydl"`` (the default) is ours.
- ``set_allow_tf32(True)`` lets float32 ``matmul`` use the TF32 tensor-core kernel (about
  1e-3 relative error); off by default.
- ``set_target_checks(False)`` skips the device-to-host read that lets ``cross_entropy_forward``
  raise IndexError on a bad target (a bad target then only gets loss 0).

Every kernel launch goes through ``_function`` (compile + cache) and allocates outputs with
``_empty``; the host-emulation tests replace both.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import threading

import numpy as np

from . import cuda_graph
from . import cuda_kernels as ck
from .cpu_reference import check_conv_shapes as _check_conv
from .cpu_reference import window_output_hw as _output_hw
from .cuda_runtime import (  # noqa: F401 - the backend's public face
    _device_id,
    _settings,
    check_device_index,
    device_count,
    ensure_available,
    from_numpy,
    get_allow_tf32,
    get_matmul_backend,
    get_rng_state,
    manual_seed,
    pin_memory,
    rng,
    set_allow_tf32,
    set_matmul_backend,
    set_rng_state,
    set_target_checks,
    to_numpy,
)

try:
    import cupy
except ImportError:  # the backend module imports; ensure_available says what is missing
    cupy = None

name = "cuda"
xp = cupy

# ----------------------------------------------------------------------------- kernel plumbing
_FUNCTIONS: dict = {}
_LOCK = threading.Lock()


def _function(filename: str, name_expr: str):
    """The compiled kernel ``name_expr`` of ``filename`` for the current device (cached)."""
    dev = cupy.cuda.runtime.getDevice()
    key = (filename, name_expr, dev)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        with _LOCK:
            fn = _FUNCTIONS.get(key)
            if fn is None:
                module = cupy.RawModule(
                    code=ck.kernel_source(filename), options=ck.NVRTC_OPTIONS,
                    name_expressions=(name_expr,),
                )
                fn = module.get_function(name_expr)
                _FUNCTIONS[key] = fn
    return fn


def precompile(files=None) -> None:
    """Compile every instance of ``files`` (default: all) now, one NVRTC run per file.

    Lazy compilation builds one instance at a time; a test or benchmark session that will
    use most of them saves the repeated parsing by calling this first.
    """
    dev = cupy.cuda.runtime.getDevice()
    for filename in files or ck.KERNEL_FILES:
        names = ck.instances()[filename]
        if all((filename, n, dev) in _FUNCTIONS for n in names):
            continue
        module = cupy.RawModule(code=ck.kernel_source(filename), options=ck.NVRTC_OPTIONS,
                                name_expressions=tuple(names))
        for n in names:
            _FUNCTIONS.setdefault((filename, n, dev), module.get_function(n))


def _launch(filename, name_expr, grid, block, args):
    grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
    _function(filename, name_expr)(grid, (int(block), 1, 1), args)


def _empty(shape, dtype):
    """Uninitialised output (every element is written by a kernel; tests poison it)."""
    return xp.empty(shape, dtype=dtype)


def _ptr(array) -> int:
    return array.data.ptr


_SM_COUNT: dict = {}


def _sm_count() -> int:
    dev = cupy.cuda.runtime.getDevice()
    n = _SM_COUNT.get(dev)
    if n is None:
        n = _SM_COUNT[dev] = int(
            cupy.cuda.runtime.deviceGetAttribute(
                cupy.cuda.runtime.cudaDevAttrMultiProcessorCount, dev
            )
        )
    return n


def _on_device_of(array):
    """Context making ``array``'s GPU current (a no-op when it already is)."""
    dev = getattr(getattr(array, "device", None), "id", None)
    if dev is None or cupy is None or dev == cupy.cuda.runtime.getDevice():
        return contextlib.nullcontext()
    return cupy.cuda.Device(dev)


def _on_device(fn):
    """Run a protocol kernel with its first array argument's GPU current."""

    @functools.wraps(fn)
    def wrapper(first, *args, **kwargs):
        probe = first[0] if isinstance(first, (list, tuple)) and first else first
        with _on_device_of(probe):
            return fn(first, *args, **kwargs)

    return wrapper


_I32_MAX = 2**31 - 1


def _check_i32(op, **values):
    for key, value in values.items():
        if value > _I32_MAX:
            raise ValueError(
                f"{op}: {key} = {value} exceeds the 32-bit index range of the CUDA kernels"
            )


def _float_pair(op, a, b):
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: dtypes {a.dtype} and {b.dtype} differ")
    return _ctype(op, a.dtype)


def _ctype(op, dtype):
    ctype = ck.CTYPES.get(np.dtype(dtype))
    if ctype is None:
        raise TypeError(f"{op}: the CUDA kernels support float32 and float64, not {dtype}")
    return ctype


def _scalar(ctype):
    return np.float32 if ctype == "float" else np.float64


def _contig(a):
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


class _LruCache(collections.OrderedDict):
    """A small dict that forgets its least recently used entries (device tables)."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return cuda_graph.keep(self[key])  # a graph being recorded holds on to it
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return cuda_graph.keep(value)


def _upload(host: np.ndarray):
    """A device copy of the host table ``host`` (through cuda_graph: safe inside a capture)."""
    return cuda_graph.upload(host)


# ----------------------------------------------------------------------------- GEMM planning
def _tiles(m, n, cfg):
    return -(-m // cfg[0]) * -(-n // cfg[1])


def _pick_config(ctype, m, n, z):
    """The large tile when it fills the GPU without padding much more than the small one
    (an M of 64 would waste half of every 128-row tile), else the small tile."""
    cfgs = ck.GEMM_CONFIGS[ctype]
    large, small = cfgs.get("large"), cfgs["small"]
    if large is not None and _tiles(m, n, large) * z >= _sm_count():
        padded_large = _tiles(m, n, large) * large[0] * large[1]
        if padded_large <= 1.25 * _tiles(m, n, small) * small[0] * small[1]:
            return large
    return small


def _split_k(blocks, k, bk, min_chunk, max_splits=64):
    """(splits, k_chunk): split K when ``blocks`` tiles leave most of the GPU idle.

    Aims at two waves of blocks, each split at least ``min_chunk`` long; k_chunk is a
    multiple of the tile depth ``bk`` and no split is empty.
    """
    sms = _sm_count()
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
    x = xp.ascontiguousarray(x)
    return x, max(cols, 1), (rows * cols if x.ndim == 3 else 0), trans


def _vec_ok(array, ld, sb, extent, width):
    return _ptr(array) % 16 == 0 and ld % width == 0 and sb % width == 0 and extent % width == 0


# ----------------------------------------------------------------------------- matmul
def _op_shape(a, trans):
    return a.shape[:-2] + ((a.shape[-1], a.shape[-2]) if trans else a.shape[-2:])


@_on_device
def matmul(a, b, trans_a=False, trans_b=False):
    """op(a) @ op(b) for 2-D or equally batched 3-D arrays (protocol ``matmul``)."""
    ctype = _float_pair("matmul", a, b)
    sa, sb = _op_shape(a, trans_a), _op_shape(b, trans_b)
    if a.ndim != b.ndim or a.ndim not in (2, 3) or sa[-1] != sb[-2] or sa[:-2] != sb[:-2]:
        raise ValueError(f"matmul: shapes {tuple(sa)} and {tuple(sb)} cannot be multiplied")
    if _settings["matmul_backend"] == "cupy":
        return xp.matmul(a.swapaxes(-1, -2) if trans_a else a,
                         b.swapaxes(-1, -2) if trans_b else b)
    m, k, n = sa[-2], sa[-1], sb[-1]
    batch = a.shape[0] if a.ndim == 3 else 1
    out = _empty((batch, m, n), a.dtype)
    if out.size:
        if k == 0:
            out[...] = 0
        else:
            _gemm(ctype, a, b, trans_a, trans_b, out, m, n, k, batch)
    return out if a.ndim == 3 else out.reshape(m, n)


def _gemm(ctype, a, b, trans_a, trans_b, out, m, n, k, batch):
    _check_i32("matmul", M=m, N=n, K=k)
    A, lda, s_a, ta = _gemm_operand(a, trans_a)
    B, ldb, s_b, tb = _gemm_operand(b, trans_b)
    width = 16 // out.itemsize
    vec = (_vec_ok(A, lda, s_a, m if ta else k, width)
           and _vec_ok(B, ldb, s_b, k if tb else n, width) and n % width == 0)
    tf32 = ctype == "float" and _settings["allow_tf32"]
    if tf32:
        cfg = ck.TF32_TILE
        name_expr = ck.matmul_tf32_name(ta, tb, vec)
    else:
        cfg = _pick_config(ctype, m, n, batch)
        name_expr = ck.matmul_name(ctype, cfg, ta, tb, vec)
    tiles = _tiles(m, n, cfg)
    _check_i32("matmul", tiles=tiles)
    splits, chunk = _split_k(tiles * batch, k, cfg[2], 256)
    target = out if splits == 1 else xp.empty((batch, splits, m, n), out.dtype)
    per_launch = max(1, 65535 // splits)
    for b0 in range(0, batch, per_launch):
        b1 = min(batch, b0 + per_launch)
        args = (
            A[b0:b1] if A.ndim == 3 else A, B[b0:b1] if B.ndim == 3 else B, target[b0:b1],
            np.int32(m), np.int32(n), np.int32(k), np.int64(lda), np.int64(ldb),
            np.int64(s_a), np.int64(s_b), np.int64(m * n), np.int32(splits), np.int32(chunk),
        )
        _launch("matmul.cu", name_expr, (tiles, 1, (b1 - b0) * splits), 256, args)
    if splits > 1:
        xp.sum(target, axis=1, out=out)


# ----------------------------------------------------------------------------- conv2d
_CONV_TABLES = _LruCache(64)


def _conv_table(channels, kh, kw, dh, dw, plane):
    """int4 rows {c * plane, kh * dh, kw * dw, 0} for k = (c, kh, kw) in C order."""
    key = (channels, kh, kw, dh, dw, plane, _device_key())

    def make():
        c, i, j = np.meshgrid(np.arange(channels), np.arange(kh), np.arange(kw), indexing="ij")
        tab = np.stack([c * plane, i * dh, j * dw, np.zeros_like(c)], axis=-1)
        return _upload(tab.reshape(-1, 4).astype(np.int32))

    return _CONV_TABLES.get_or_make(key, make)


def _device_key():
    """Which device (and array module) a cached device table belongs to."""
    if cupy is not None and xp is cupy:
        return ("cupy", cupy.cuda.runtime.getDevice())
    return (getattr(xp, "__name__", "?"), 0)


def _conv_launch(kind, ctype, out, m, ncols, k, groups, vec_a, args_of):
    """Plan tiles and split-K for an implicit GEMM and launch it (summing splits into out)."""
    cfg = _pick_config(ctype, m, ncols, groups)
    tiles = _tiles(m, ncols, cfg)
    _check_i32(f"conv2d_{kind}", tiles=tiles, groups=groups)
    if groups > 65535:
        raise ValueError(f"conv2d: groups = {groups} exceeds the CUDA grid limit of 65535")
    min_chunk = 256 if kind != "backward_weight" else 512
    splits, chunk = _split_k(tiles * groups, k, cfg[2], min_chunk, min(64, 65535 // groups))
    target = out if splits == 1 else xp.empty((splits,) + out.shape, out.dtype)
    name_expr = ck.conv_name(kind, ctype, cfg, vec_a)
    _launch("conv2d.cu", name_expr, (tiles, 1, groups * splits), 256,
            args_of(target) + (np.int32(splits), np.int32(chunk)))
    if splits > 1:
        xp.sum(target, axis=0, out=out)


@_on_device
def conv2d_forward(x, w, stride, padding, dilation, groups):
    ctype = _float_pair("conv2d", x, w)
    _check_conv("conv2d", x.shape, w.shape, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = _output_hw("conv2d", (h, wd), (kh, kw), stride, padding, dilation)
    y = _empty((n, o, ho, wo), x.dtype)
    k = cg * kh * kw
    if y.size == 0:
        return y
    if k == 0:
        y[...] = 0
        return y
    x, w = _contig(x), _contig(w)
    og = o // groups
    _check_i32("conv2d", columns=n * ho * wo, sample=c * h * wd, output_sample=o * ho * wo)
    ktab = _conv_table(cg, kh, kw, dilation[0], dilation[1], h * wd)
    vec_a = _ptr(w) % 16 == 0 and k % (16 // w.itemsize) == 0
    i32 = np.int32

    def args_of(target):
        return (x, w, target, ktab, i32(n), i32(c), i32(h), i32(wd), i32(cg), i32(o), i32(ho),
                i32(wo), i32(og), i32(k), i32(stride[0]), i32(stride[1]), i32(padding[0]),
                i32(padding[1]))

    _conv_launch("forward", ctype, y, og, n * ho * wo, k, groups, vec_a, args_of)
    return y


@_on_device
def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups):
    ctype = _float_pair("conv2d_backward_data", gy, w)
    _check_conv("conv2d_backward_data", x_shape, w.shape, groups)
    n, c, h, wd = (int(s) for s in x_shape)
    o, cg, kh, kw = w.shape
    ho, wo = gy.shape[2], gy.shape[3]
    gx = _empty((n, c, h, wd), gy.dtype)
    og = o // groups
    k = og * kh * kw
    if gx.size == 0:
        return gx
    if k == 0 or gy.size == 0:
        gx[...] = 0
        return gx
    gy = _contig(gy)
    # (groups, Cg, Og*kH*kW): row c of group g lists w[g*Og + o, c, kh, kw] for k = (o, kh, kw)
    wt = xp.ascontiguousarray(w.reshape(groups, og, cg, kh * kw).transpose(0, 2, 1, 3))
    _check_i32("conv2d_backward_data", columns=n * h * wd, sample=o * ho * wo,
               output_sample=c * h * wd)
    ktab = _conv_table(og, kh, kw, dilation[0], dilation[1], ho * wo)
    vec_a = _ptr(wt) % 16 == 0 and k % (16 // wt.itemsize) == 0
    i32 = np.int32

    def args_of(target):
        return (gy, wt, target, ktab, i32(n), i32(o), i32(ho), i32(wo), i32(og), i32(c), i32(h),
                i32(wd), i32(cg), i32(k), i32(stride[0]), i32(stride[1]), i32(padding[0]),
                i32(padding[1]))

    _conv_launch("backward_data", ctype, gx, cg, n * h * wd, k, groups, vec_a, args_of)
    return gx


@_on_device
def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    ctype = _float_pair("conv2d_backward_weight", gy, x)
    _check_conv("conv2d_backward_weight", x.shape, w_shape, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = (int(s) for s in w_shape)
    ho, wo = gy.shape[2], gy.shape[3]
    gw = _empty((o, cg, kh, kw), gy.dtype)
    og = o // groups
    k = n * ho * wo
    if gw.size == 0:
        return gw
    if k == 0:
        gw[...] = 0
        return gw
    gy, x = _contig(gy), _contig(x)
    _check_i32("conv2d_backward_weight", reduction=k, sample=c * h * wd, gy_sample=o * ho * wo)
    i32 = np.int32

    def args_of(target):
        return (gy, x, target, i32(n), i32(c), i32(h), i32(wd), i32(o), i32(ho), i32(wo),
                i32(og), i32(cg), i32(kh), i32(kw), i32(stride[0]), i32(stride[1]),
                i32(padding[0]), i32(padding[1]), i32(dilation[0]), i32(dilation[1]))

    _conv_launch("backward_weight", ctype, gw.reshape(o, cg * kh * kw), og, cg * kh * kw, k,
                 groups, False, args_of)
    return gw


# ----------------------------------------------------------------------------- pooling
def _grid_1d(total):
    return max(1, min(-(-total // 256), 32 * _sm_count()))


def _pool_geometry(name_, x_shape, kernel_size, stride, padding):
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = _output_hw(name_, (h, w), kernel_size, stride, padding)
    _check_i32(name_, plane=max(h * w, ho * wo))
    return n, c, h, w, ho, wo


@_on_device
def max_pool2d_forward(x, kernel_size, stride, padding):
    ctype = _ctype("max_pool2d", x.dtype)
    n, c, h, w, ho, wo = _pool_geometry("max_pool2d", x.shape, kernel_size, stride, padding)
    y = _empty((n, c, ho, wo), x.dtype)
    argmax = _empty((n, c, ho, wo), np.int64)
    if y.size:
        i32 = np.int32
        _launch("pool.cu", ck.pool_name("max_pool2d_forward", ctype), (_grid_1d(y.size),), 256,
                (_contig(x), y, argmax, np.int64(y.size), i32(h), i32(w), i32(ho), i32(wo),
                 i32(kernel_size[0]), i32(kernel_size[1]), i32(stride[0]), i32(stride[1]),
                 i32(padding[0]), i32(padding[1])))
    return y, argmax


@_on_device
def max_pool2d_backward(gy, argmax, x_shape):
    ctype = _ctype("max_pool2d_backward", gy.dtype)
    n, c, h, w = (int(s) for s in x_shape)
    gx = xp.zeros((n, c, h, w), gy.dtype)  # scatter-add target: zeros are part of the result
    if gy.size:
        _launch("pool.cu", ck.pool_name("max_pool2d_backward", ctype), (_grid_1d(gy.size),),
                256, (_contig(gy), _contig(argmax.astype(np.int64, copy=False)), gx,
                      np.int64(gy.size), np.int32(gy.shape[2] * gy.shape[3]), np.int32(h * w)))
    return gx


def _avg_args(n, c, h, w, ho, wo, kernel_size, stride, padding, count_include_pad):
    i32 = np.int32
    return (i32(h), i32(w), i32(ho), i32(wo), i32(kernel_size[0]), i32(kernel_size[1]),
            i32(stride[0]), i32(stride[1]), i32(padding[0]), i32(padding[1]),
            i32(bool(count_include_pad)))


@_on_device
def avg_pool2d_forward(x, kernel_size, stride, padding, count_include_pad=True):
    ctype = _ctype("avg_pool2d", x.dtype)
    geo = _pool_geometry("avg_pool2d", x.shape, kernel_size, stride, padding)
    n, c, h, w, ho, wo = geo
    y = _empty((n, c, ho, wo), x.dtype)
    if y.size:
        _launch("pool.cu", ck.pool_name("avg_pool2d_forward", ctype), (_grid_1d(y.size),), 256,
                (_contig(x), y, np.int64(y.size))
                + _avg_args(*geo, kernel_size, stride, padding, count_include_pad))
    return y


@_on_device
def avg_pool2d_backward(gy, x_shape, kernel_size, stride, padding, count_include_pad=True):
    ctype = _ctype("avg_pool2d_backward", gy.dtype)
    n, c, h, w = (int(s) for s in x_shape)
    ho, wo = gy.shape[2], gy.shape[3]
    _check_i32("avg_pool2d_backward", plane=max(h * w, ho * wo))
    gx = _empty((n, c, h, w), gy.dtype)
    if gx.size:
        if gy.size == 0:
            gx[...] = 0
        else:
            _launch("pool.cu", ck.pool_name("avg_pool2d_backward", ctype), (_grid_1d(gx.size),),
                    256, (_contig(gy), gx, np.int64(gx.size))
                    + _avg_args(n, c, h, w, ho, wo, kernel_size, stride, padding,
                                count_include_pad))
    return gx


# ----------------------------------------------------------------------------- softmax family
def _row_plan(cols):
    """(threads per row, values per thread) for rows ``cols`` wide; 0 = unbounded loop."""
    for vpt in ck.ROW_WARP_VPT:
        if cols <= 32 * vpt:
            return 32, vpt
    for vpt in ck.ROW_BLOCK_VPT:
        if vpt and cols <= ck.ROW_BLOCK_THREADS * vpt:
            return ck.ROW_BLOCK_THREADS, vpt
    return ck.ROW_BLOCK_THREADS, 0


def _row_grid(rows, threads):
    blocks = -(-rows // 4) if threads == 32 else rows
    _check_i32("softmax", blocks=blocks)
    return blocks, (128 if threads == 32 else threads)


def _rows(kind, ctype, out, arrays):
    cols = out.shape[-1] if out.ndim else 1
    rows = out.size // cols if cols else 0
    if rows == 0:
        return out
    _check_i32(kind, cols=cols)
    threads, vpt = _row_plan(cols)
    grid, block = _row_grid(rows, threads)
    _launch("softmax.cu", ck.row_name(kind, ctype, threads, vpt), (grid,), block,
            tuple(arrays) + (out, np.int64(rows), np.int32(cols)))
    return out


@_on_device
def softmax_forward(x):
    x = _contig(x)
    return _rows("softmax_forward", _ctype("softmax", x.dtype), _empty(x.shape, x.dtype), (x,))


@_on_device
def log_softmax_forward(x):
    x = _contig(x)
    return _rows("log_softmax_forward", _ctype("log_softmax", x.dtype),
                 _empty(x.shape, x.dtype), (x,))


@_on_device
def softmax_backward(gy, y):
    ctype = _float_pair("softmax_backward", gy, y)
    return _rows("softmax_backward", ctype, _empty(y.shape, y.dtype), (_contig(gy), _contig(y)))


@_on_device
def log_softmax_backward(gy, y):
    ctype = _float_pair("log_softmax_backward", gy, y)
    return _rows("log_softmax_backward", ctype, _empty(y.shape, y.dtype),
                 (_contig(gy), _contig(y)))


def _xent_inputs(op, logits, target, weight):
    ctype = _ctype(op, logits.dtype)
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"{op}: logits {tuple(logits.shape)} and target "
                         f"{tuple(target.shape)} do not fit (need (N, C) and (N,))")
    if weight is not None:
        if weight.shape != logits.shape[1:]:
            raise ValueError(f"{op}: weight {tuple(weight.shape)} does not fit "
                             f"{logits.shape[1]} classes")
        weight = _contig(weight.astype(logits.dtype, copy=False))
    n, c = logits.shape
    _check_i32(op, classes=c)
    threads = 32 if c <= 1024 else ck.ROW_BLOCK_THREADS
    return (ctype, _contig(logits), _contig(target.astype(np.int64, copy=False)), weight,
            threads)


def _null_or(array):
    return array if array is not None else np.uint64(0)


@_on_device
def cross_entropy_forward(logits, target, weight, ignore_index, label_smoothing):
    op = "cross_entropy"
    ctype, logits, target, weight, threads = _xent_inputs(op, logits, target, weight)
    n, c = logits.shape
    loss, lse = _empty((n,), logits.dtype), _empty((n,), logits.dtype)
    if n == 0:
        return loss, lse
    bad = xp.full((1,), n, dtype=np.uint64)
    grid, block = _row_grid(n, threads)
    _launch("softmax.cu", ck.row_name("cross_entropy_forward", ctype, threads), (grid,), block,
            (logits, target, _null_or(weight), loss, lse, bad, np.int64(n), np.int32(c),
             np.int64(ignore_index), _scalar(ctype)(label_smoothing)))
    if _settings["check_targets"] and not cuda_graph.capturing():
        row = int(_host(bad)[0])
        if row < n:
            value = int(_host(target[row : row + 1])[0])
            raise IndexError(f"cross_entropy: target {value} is out of bounds for {c} classes")
    return loss, lse


def _host(array):
    return array.get() if hasattr(array, "get") else np.asarray(array)


@_on_device
def cross_entropy_backward(grad_loss, logits, lse, target, weight, ignore_index,
                           label_smoothing):
    op = "cross_entropy_backward"
    ctype, logits, target, weight, threads = _xent_inputs(op, logits, target, weight)
    n, c = logits.shape
    out = _empty((n, c), logits.dtype)
    if out.size == 0:
        return out
    weight_sum = weight.sum(keepdims=True) if weight is not None else None
    grid, block = _row_grid(n, threads)
    _launch("softmax.cu", ck.row_name("cross_entropy_backward", ctype, threads), (grid,), block,
            (_contig(grad_loss.astype(logits.dtype, copy=False)), logits,
             _contig(lse.astype(logits.dtype, copy=False)), target, _null_or(weight),
             _null_or(weight_sum), out, np.int64(n), np.int32(c), np.int64(ignore_index),
             _scalar(ctype)(label_smoothing)))
    return out


# ----------------------------------------------------------------------------- activations
# Elementwise, so CuPy's ElementwiseKernel (indexing, any shape) instead of a csrc/cuda file:
# the bodies are the reference's formulas (cpu_reference.erf / gelu_forward / gelu_backward)
# with CUDA's erff / erf, tanhf / tanh, expf / exp picked by the overloads of the preamble.
# float16 computes in float32. tests/test_activation_kernels.py runs them against the
# reference on a GPU and under the host emulation (tests/_cuda_emu.py).
_ACT_PREAMBLE = """
__device__ float pydl_erf(float x) { return erff(x); }
__device__ double pydl_erf(double x) { return erf(x); }
__device__ float pydl_tanh(float x) { return tanhf(x); }
__device__ double pydl_tanh(double x) { return tanh(x); }
__device__ float pydl_exp(float x) { return expf(x); }
__device__ double pydl_exp(double x) { return exp(x); }
"""
_GELU_SLOPE = "T(0.79788456080286535588) * (T(1) + T(3 * 0.044715) * x * x)"
_ACT_KERNELS = {
    "erf": ("T x", "T y", "y = pydl_erf(x)"),
    "gelu_none": ("T x", "T y, T cdf",
                  "cdf = T(0.5) * (T(1) + pydl_erf(x * T(0.70710678118654752440))); y = x * cdf"),
    "gelu_tanh": ("T x", "T y, T cdf",
                  "cdf = T(0.5) * (T(1) + pydl_tanh(T(0.79788456080286535588)"
                  " * (x + T(0.044715) * x * x * x))); y = x * cdf"),
    "gelu_backward_none": ("T gy, T x, T cdf", "T gx",
                           "gx = gy * (cdf + x * (T(0.39894228040143267794)"
                           " * pydl_exp(T(-0.5) * x * x)))"),
    "gelu_backward_tanh": ("T gy, T x, T cdf", "T gx",
                           f"gx = gy * (cdf + T(2) * x * cdf * (T(1) - cdf) * ({_GELU_SLOPE}))"),
}


# ----------------------------------------------------------------------------- recurrent cells
# Generic elementwise math, so CuPy ElementwiseKernels (one thread per (sample, hidden unit),
# compiled by CuPy on first use) rather than csrc/cuda sources. Each mirrors the NumPy
# reference in cpu_reference.py line for line, sigmoid(x) = 0.5 + 0.5 tanh(x / 2) included.
# The gate arrays are ``raw`` (indexed by hand: row n, unit j of gate k is
# [n * G + k * H + j]) and C-contiguous. CuPy declares raw inputs const, so the gate
# array a forward writes in place is a raw *output*, and with one output passed CuPy
# wants them all: the callers allocate h, c, ... themselves. GRU's n is called nt (CuPy
# reserves n, i and names starting with _). Checked against the reference under the host
# emulation (tests/_cuda_emu.py, tests/test_rnn_kernels.py); not yet run on a GPU.

_CELL_PREAMBLE = """
template <typename T> __device__ T pydl_sigmoid(T x) { return T(0.5) + T(0.5) * tanh(T(0.5) * x); }
"""

_CELL_KERNELS = {
    "lstm_cell_forward": (
        "T c_prev, int64 H", "raw T gates, T h, T c, T tanh_c",
        """
        const ptrdiff_t k = (i / H) * 4 * H + i % H;
        const T ig = pydl_sigmoid(gates[k]), fg = pydl_sigmoid(gates[k + H]);
        const T gg = tanh(gates[k + 2 * H]), og = pydl_sigmoid(gates[k + 3 * H]);
        gates[k] = ig; gates[k + H] = fg; gates[k + 2 * H] = gg; gates[k + 3 * H] = og;
        c = fg * c_prev + ig * gg;
        tanh_c = tanh(c);
        h = og * tanh_c;
        """),
    "lstm_cell_backward": (
        "T dh, T dc, raw T acts, T tanh_c, T c_prev, int64 H", "raw T dgates, T dc_prev",
        """
        const ptrdiff_t k = (i / H) * 4 * H + i % H;
        const T ig = acts[k], fg = acts[k + H], gg = acts[k + 2 * H], og = acts[k + 3 * H];
        const T dct = dc + dh * og * (T(1) - tanh_c * tanh_c);
        dgates[k] = dct * gg * ig * (T(1) - ig);
        dgates[k + H] = dct * c_prev * fg * (T(1) - fg);
        dgates[k + 2 * H] = dct * ig * (T(1) - gg * gg);
        dgates[k + 3 * H] = dh * tanh_c * og * (T(1) - og);
        dc_prev = dct * fg;
        """),
    "gru_cell_forward": (
        "raw T xg, T h_prev, int64 H", "raw T hg, T h, T nt",
        """
        const ptrdiff_t k = (i / H) * 3 * H + i % H;
        const T r = pydl_sigmoid(xg[k] + hg[k]), z = pydl_sigmoid(xg[k + H] + hg[k + H]);
        nt = tanh(xg[k + 2 * H] + r * hg[k + 2 * H]);
        hg[k] = r; hg[k + H] = z;
        h = nt + z * (h_prev - nt);
        """),
    "gru_cell_backward": (
        "T dh, raw T rzh, T nt, T h_prev, int64 H", "raw T dxg, raw T dhg, T dh_prev",
        """
        const ptrdiff_t k = (i / H) * 3 * H + i % H;
        const T r = rzh[k], z = rzh[k + H], hn = rzh[k + 2 * H];
        const T dn = dh * (T(1) - z) * (T(1) - nt * nt);
        const T dz = dh * (h_prev - nt) * z * (T(1) - z);
        const T dr = dn * hn * r * (T(1) - r);
        dxg[k] = dr; dxg[k + H] = dz; dxg[k + 2 * H] = dn;
        dhg[k] = dr; dhg[k + H] = dz; dhg[k + 2 * H] = dn * r;
        dh_prev = dh * z;
        """),
}


@functools.lru_cache(maxsize=None)
def _act_kernel(kind):
    in_params, out_params, body = _ACT_KERNELS[kind]
    return cupy.ElementwiseKernel(in_params, out_params, body, f"pydl_{kind}",
                                  preamble=_ACT_PREAMBLE)


def _act_dtype(x):
    """The dtype the activation kernels compute x's dtype in (float16 goes through float32)."""
    if x.dtype == np.float16:
        return np.dtype(np.float32)
    _ctype("activation", x.dtype)
    return x.dtype


@_on_device
def erf(x):
    dtype = _act_dtype(x)
    return _act_kernel("erf")(x.astype(dtype, copy=False)).astype(x.dtype, copy=False)


@_on_device
def gelu_forward(x, approximate="none"):
    dtype = _act_dtype(x)
    y, cdf = _act_kernel(f"gelu_{approximate}")(x.astype(dtype, copy=False))
    return y.astype(x.dtype, copy=False), cdf.astype(x.dtype, copy=False)


@_on_device
def gelu_backward(gy, x, cdf, approximate="none"):
    dtype = _act_dtype(x)
    gx = _act_kernel(f"gelu_backward_{approximate}")(
        gy.astype(dtype, copy=False), x.astype(dtype, copy=False), cdf.astype(dtype, copy=False))
    return gx.astype(x.dtype, copy=False)


@functools.lru_cache(maxsize=None)
def _cell_kernel(name):
    in_params, out_params, body = _CELL_KERNELS[name]
    return cupy.ElementwiseKernel(in_params, out_params, body, "pydl_" + name,
                                  preamble=_CELL_PREAMBLE)


def _gate_rows(op, gates, k, *others):
    """(N, H) of a (N, k * H) gate array, after checking that the dtypes agree."""
    for other in others:
        _float_pair(op, gates, other)
    return gates.shape[0], gates.shape[1] // k


@_on_device
def lstm_cell_forward(gates, c_prev):
    N, H = _gate_rows("lstm_cell_forward", gates, 4, c_prev)
    if not gates.flags.c_contiguous:  # in place: work on a copy, then write it back
        work = xp.ascontiguousarray(gates)
        out = lstm_cell_forward(work, c_prev)
        gates[...] = work
        return out
    h, c, tanh_c = (_empty((N, H), gates.dtype) for _ in range(3))
    _cell_kernel("lstm_cell_forward")(_contig(c_prev), np.int64(H), gates, h, c, tanh_c)
    return h, c, tanh_c


@_on_device
def lstm_cell_backward(dh, dc, acts, tanh_c, c_prev, dgates=None):
    N, H = _gate_rows("lstm_cell_backward", acts, 4, dh, dc, tanh_c, c_prev)
    acts = _contig(acts)
    target = dgates
    if dgates is None or not dgates.flags.c_contiguous:
        dgates = _empty(acts.shape, acts.dtype)
    dc_prev = _empty((N, H), acts.dtype)
    _cell_kernel("lstm_cell_backward")(_contig(dh), _contig(dc), acts, _contig(tanh_c),
                                       _contig(c_prev), np.int64(H), dgates, dc_prev)
    if target is not None and target is not dgates:
        target[...] = dgates
        dgates = target
    return dgates, dc_prev


@_on_device
def gru_cell_forward(xg, hg, h_prev):
    N, H = _gate_rows("gru_cell_forward", hg, 3, xg, h_prev)
    if not hg.flags.c_contiguous:  # in place: work on a copy, then write it back
        work = xp.ascontiguousarray(hg)
        out = gru_cell_forward(xg, work, h_prev)
        hg[...] = work
        return out
    h, n = _empty((N, H), hg.dtype), _empty((N, H), hg.dtype)
    _cell_kernel("gru_cell_forward")(_contig(xg), _contig(h_prev), np.int64(H), hg, h, n)
    return h, n


@_on_device
def gru_cell_backward(dh, rzh, n, h_prev, dxg=None, dhg=None):
    N, H = _gate_rows("gru_cell_backward", rzh, 3, dh, n, h_prev)
    rzh = _contig(rzh)
    outs = [o if o is not None and o.flags.c_contiguous else _empty(rzh.shape, rzh.dtype)
            for o in (dxg, dhg)]
    dh_prev = _empty((N, H), rzh.dtype)
    _cell_kernel("gru_cell_backward")(_contig(dh), rzh, _contig(n), _contig(h_prev),
                                      np.int64(H), outs[0], outs[1], dh_prev)
    for target, out in zip((dxg, dhg), outs, strict=True):
        if target is not None and target is not out:
            target[...] = out
    return (dxg if dxg is not None else outs[0], dhg if dhg is not None else outs[1],
            dh_prev)


# ----------------------------------------------------------------------------- optimizers
OPT_MAXIMIZE, OPT_NESTEROV, OPT_FIRST_STEP, OPT_AMSGRAD = 1, 2, 4, 8
OPT_DECOUPLED, OPT_CENTERED, OPT_MOMENTUM, OPT_WEIGHT_DECAY = 16, 32, 64, 128
_OPT_CHUNK = 8192
_CHUNK_TABLES = _LruCache(16)
_POINTER_TABLES = _LruCache(32)


def _chunk_table(sizes):
    """Device int64 [tensor index (nb), start (nb), length (nb)] for chunks of _OPT_CHUNK."""

    def make():
        counts = [-(-s // _OPT_CHUNK) for s in sizes]
        tensor = np.repeat(np.arange(len(sizes)), counts)
        first = np.repeat(np.cumsum([0] + counts[:-1]), counts)
        start = (np.arange(len(tensor)) - first) * _OPT_CHUNK
        length = np.minimum(np.asarray(sizes, np.int64)[tensor] - start, _OPT_CHUNK)
        return _upload(np.concatenate([tensor, start, length]).astype(np.int64)), len(tensor)

    return _CHUNK_TABLES.get_or_make((tuple(sizes), _device_key()), make)


def _multi_tensor(kind, lists, written, scalars, flags):
    """Launch ``kind`` over parallel lists of arrays (None entries: absent lists).

    ``written`` names the list positions the kernel updates in place; a non-contiguous
    array there is updated through a contiguous copy that is written back.
    """
    params = lists[0]
    if len(params) == 0:
        return
    for lst in lists:
        if lst is not None and len(lst) != len(params):
            raise ValueError(f"{kind}: parameter and state lists differ in length")
    groups = collections.defaultdict(list)
    for j, p in enumerate(params):
        if p.size:
            groups[np.dtype(p.dtype)].append(j)
    for dtype, idx in groups.items():
        ctype = _ctype(kind, dtype)
        values = tuple(_scalar(ctype)(v) for v in scalars)
        # inside a CUDA graph the scalars live in device memory, rewritten before each replay
        dyn = None
        if cuda_graph.active():  # the key costs a pass over the parameters: graphs only
            dyn = cuda_graph.scalar_slot(values, dtype, tuple(_ptr(params[j]) for j in idx))
            if dyn is cuda_graph.REFRESHED:
                continue
        cols, copies = [], []
        for li, lst in enumerate(lists):
            if lst is None:
                cols.append(None)
                continue
            col = []
            for j in idx:
                a = lst[j]
                if a.dtype != dtype or a.shape != params[j].shape:
                    raise TypeError(f"{kind}: state {a.dtype} {a.shape} does not match "
                                    f"parameter {dtype} {params[j].shape}")
                if not a.flags.c_contiguous:
                    tmp = xp.ascontiguousarray(a)
                    if li in written:
                        copies.append((a, tmp))
                    a = tmp
                col.append(a)
            cols.append(col)
        ptr_rows = [[_ptr(a) for a in col] if col is not None else [0] * len(idx) for col in cols]
        key = (tuple(map(tuple, ptr_rows)), _device_key())
        ptrs = _POINTER_TABLES.get_or_make(
            key, lambda rows=ptr_rows: _upload(np.asarray(rows, np.int64).ravel()))
        chunks, nchunks = _chunk_table([int(params[j].size) for j in idx])
        _launch("optim.cu", ck.optim_name(kind, ctype), (nchunks,), 256,
                (ptrs, chunks, np.int32(len(idx)), np.int32(nchunks), _null_or(dyn))
                + values + (np.int32(flags),))
        for dst, src in copies:
            dst[...] = src


def _common_flags(weight_decay, maximize):
    return (OPT_MAXIMIZE if maximize else 0) | (OPT_WEIGHT_DECAY if weight_decay != 0 else 0)


@_on_device
def sgd_step(params, grads, momentum_bufs, *, lr, momentum, dampening, weight_decay, nesterov,
             maximize, first_step):
    flags = _common_flags(weight_decay, maximize)
    if momentum != 0:
        flags |= OPT_MOMENTUM | (OPT_NESTEROV if nesterov else 0)
        flags |= OPT_FIRST_STEP if first_step else 0
    bufs = momentum_bufs if momentum != 0 else None
    _multi_tensor("sgd_step", [params, grads, bufs], {0, 2},
                  (lr, momentum, 1 - dampening, weight_decay), flags)


@_on_device
def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, lr, beta1, beta2, eps,
              weight_decay, step, amsgrad, decoupled_weight_decay, maximize):
    flags = _common_flags(weight_decay, maximize)
    flags |= (OPT_AMSGRAD if amsgrad else 0) | (OPT_DECOUPLED if decoupled_weight_decay else 0)
    bias1 = 1 - beta1**step
    bias2_sqrt = (1 - beta2**step) ** 0.5
    _multi_tensor("adam_step",
                  [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None],
                  {0, 2, 3, 4},
                  (lr / bias1, 1 - beta1, beta2, 1 - beta2, bias2_sqrt, eps, weight_decay,
                   1 - lr * weight_decay), flags)


@_on_device
def rmsprop_step(params, grads, square_avgs, momentum_bufs, grad_avgs, *, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize):
    flags = _common_flags(weight_decay, maximize)
    flags |= (OPT_MOMENTUM if momentum > 0 else 0) | (OPT_CENTERED if centered else 0)
    _multi_tensor("rmsprop_step",
                  [params, grads, square_avgs, momentum_bufs if momentum > 0 else None,
                   grad_avgs if centered else None],
                  {0, 2, 3, 4}, (lr, alpha, 1 - alpha, eps, weight_decay, momentum), flags)


@_on_device
def adagrad_step(params, grads, state_sums, *, lr, lr_decay, weight_decay, eps, step, maximize):
    clr = lr / (1 + (step - 1) * lr_decay)
    _multi_tensor("adagrad_step", [params, grads, state_sums], {0, 2},
                  (clr, eps, weight_decay), _common_flags(weight_decay, maximize))

