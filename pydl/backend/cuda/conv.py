"""The convolution family (``csrc/cuda/conv2d.cu``): ``conv2d_forward``,
``conv2d_backward_data`` and ``conv2d_backward_weight`` as implicit GEMMs on gemm.py's tiles.

Forward and backward-data are the same computation seen from two sides: per group, a weight
matrix (the kernel's own, or its per-group transpose) times columns gathered from a source
tensor (x, or gy) through a table of kernel offsets, written into an output tensor (y, or gx).
``_gathered_gemm`` launches both; backward-weight contracts over the batch instead.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from ..cpu.reference import check_conv_shapes, window_output_hw
from . import gemm
from . import runtime as rt

SOURCE = "conv2d.cu"


def conv_name(kind, ctype, cfg, vec_a=False):
    tail = () if kind == "backward_weight" else (vec_a,)
    return rt.template_name(f"conv2d_{kind}_kernel", ctype, *cfg, *tail)


def instances() -> list[str]:
    """Every conv2d.cu instance the backend may launch."""
    out = []
    for ctype, cfgs in gemm.GEMM_CONFIGS.items():
        for cfg in cfgs.values():
            for kind, vec in product(("forward", "backward_data"), (False, True)):
                out.append(conv_name(kind, ctype, cfg, vec))
            out.append(conv_name("backward_weight", ctype, cfg))
    return out


_CONV_TABLES = rt.LruCache(64)


def _conv_table(channels, kh, kw, dh, dw, plane):
    """int4 rows {c * plane, kh * dh, kw * dw, 0} for k = (c, kh, kw) in C order."""
    key = (channels, kh, kw, dh, dw, plane, rt.device_key())

    def make():
        c, i, j = np.meshgrid(np.arange(channels), np.arange(kh), np.arange(kw), indexing="ij")
        tab = np.stack([c * plane, i * dh, j * dw, np.zeros_like(c)], axis=-1)
        return rt.upload(tab.reshape(-1, 4).astype(np.int32))

    return _CONV_TABLES.get_or_make(key, make)


def _conv_launch(kind, ctype, out, m, ncols, k, groups, vec_a, head, tail):
    """Plan tiles and split-K for an implicit GEMM and launch it (summing splits into out).

    The kernel's arguments are ``head + (target,) + tail + (splits, k_chunk)``; target is
    ``out``, or a workspace of one output per split.
    """
    cfg = gemm.pick_config(ctype, m, ncols, groups)
    tiles = gemm.tiles(m, ncols, cfg)
    rt.check_i32(f"conv2d_{kind}", tiles=tiles, groups=groups)
    if groups > 65535:
        raise ValueError(f"conv2d: groups = {groups} exceeds the CUDA grid limit of 65535")
    min_chunk = 256 if kind != "backward_weight" else 512
    splits, chunk = gemm.split_k(tiles * groups, k, cfg[2], min_chunk, min(64, 65535 // groups))
    target = out if splits == 1 else rt.xp.empty((splits,) + out.shape, out.dtype)
    rt.launch(SOURCE, conv_name(kind, ctype, cfg, vec_a), (tiles, 1, groups * splits), rt.BLOCK,
              head + (target,) + tail + (np.int32(splits), np.int32(chunk)))
    if splits > 1:
        rt.xp.sum(target, axis=0, out=out)


def _gathered_gemm(kind, ctype, src, wmat, out, src_cg, dst_cg, kernel_hw, stride, padding,
                   dilation, groups):
    """out (N, Cd, Hd, Wd) = per group, wmat (Cd/g, k) times the columns gathered from src.

    Forward: src = x, wmat = w, out = y. Backward data: src = gy, wmat = w transposed per
    group, out = gx. ``src_cg`` / ``dst_cg`` are the channels per group of src and out.
    """
    n, cs, hs, ws = src.shape
    cd, hd, wd = out.shape[1:]
    k = src_cg * kernel_hw[0] * kernel_hw[1]
    rt.check_i32(f"conv2d_{kind}", columns=n * hd * wd, sample=cs * hs * ws,
                 output_sample=cd * hd * wd)
    ktab = _conv_table(src_cg, kernel_hw[0], kernel_hw[1], dilation[0], dilation[1], hs * ws)
    vec_a = rt.ptr(wmat) % 16 == 0 and k % (16 // wmat.itemsize) == 0
    i32 = np.int32
    tail = (ktab, i32(n), i32(cs), i32(hs), i32(ws), i32(src_cg), i32(cd), i32(hd), i32(wd),
            i32(dst_cg), i32(k), i32(stride[0]), i32(stride[1]), i32(padding[0]),
            i32(padding[1]))
    _conv_launch(kind, ctype, out, dst_cg, n * hd * wd, k, groups, vec_a, (src, wmat), tail)


@rt.on_device
def conv2d_forward(x, w, stride, padding, dilation, groups):
    """y (N, O, Ho, Wo): cross-correlation of x with w (protocol ``conv2d_forward``)."""
    ctype = rt.float_pair("conv2d", x, w)
    check_conv_shapes("conv2d", x.shape, w.shape, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho, wo = window_output_hw("conv2d", (h, wd), (kh, kw), stride, padding, dilation)
    y = rt.empty((n, o, ho, wo), x.dtype)
    if y.size == 0:
        return y
    if cg * kh * kw == 0:
        y[...] = 0
        return y
    _gathered_gemm("forward", ctype, rt.contig(x), rt.contig(w), y, cg, o // groups, (kh, kw),
                   stride, padding, dilation, groups)
    return y


@rt.on_device
def conv2d_backward_data(gy, w, x_shape, stride, padding, dilation, groups):
    """gx (x_shape): the gradient of conv2d_forward with respect to x."""
    ctype = rt.float_pair("conv2d_backward_data", gy, w)
    check_conv_shapes("conv2d_backward_data", x_shape, w.shape, groups)
    n, c, h, wd = (int(s) for s in x_shape)
    o, cg, kh, kw = w.shape
    gx = rt.empty((n, c, h, wd), gy.dtype)
    og = o // groups
    if gx.size == 0:
        return gx
    if og * kh * kw == 0 or gy.size == 0:
        gx[...] = 0
        return gx
    # (groups, Cg, Og*kH*kW): row c of group g lists w[g*Og + o, c, kh, kw] for k = (o, kh, kw)
    wt = rt.xp.ascontiguousarray(w.reshape(groups, og, cg, kh * kw).transpose(0, 2, 1, 3))
    _gathered_gemm("backward_data", ctype, rt.contig(gy), wt, gx, og, cg, (kh, kw), stride,
                   padding, dilation, groups)
    return gx


@rt.on_device
def conv2d_backward_weight(gy, x, w_shape, stride, padding, dilation, groups):
    """gw (w_shape): the gradient of conv2d_forward with respect to w."""
    ctype = rt.float_pair("conv2d_backward_weight", gy, x)
    check_conv_shapes("conv2d_backward_weight", x.shape, w_shape, groups)
    n, c, h, wd = x.shape
    o, cg, kh, kw = (int(s) for s in w_shape)
    ho, wo = gy.shape[2], gy.shape[3]
    gw = rt.empty((o, cg, kh, kw), gy.dtype)
    k = n * ho * wo
    if gw.size == 0:
        return gw
    if k == 0:
        gw[...] = 0
        return gw
    gy, x = rt.contig(gy), rt.contig(x)
    rt.check_i32("conv2d_backward_weight", reduction=k, sample=c * h * wd,
                 gy_sample=o * ho * wo)
    i32 = np.int32
    tail = (i32(n), i32(c), i32(h), i32(wd), i32(o), i32(ho), i32(wo), i32(o // groups), i32(cg),
            i32(kh), i32(kw), i32(stride[0]), i32(stride[1]), i32(padding[0]), i32(padding[1]),
            i32(dilation[0]), i32(dilation[1]))
    _conv_launch("backward_weight", ctype, gw.reshape(o, cg * kh * kw), o // groups,
                 cg * kh * kw, k, groups, False, (gy, x), tail)
    return gw
