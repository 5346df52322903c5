"""The optimizer family (``csrc/cuda/optim.cu``): fused multi-tensor SGD, Adam / AdamW,
RMSprop and Adagrad steps, in place.

One launch per (parameter list, dtype): a device table of pointers and a table of
``_OPT_CHUNK``-element chunks; a grid of a few blocks per SM walks the chunks (16-byte
vectors where every list is aligned). Inside a CUDA
graph the per-step scalars come from a device slot that graph.py rewrites before each replay.
"""

from __future__ import annotations

import collections

import numpy as np

from ..low_precision import LOW_PRECISION
from . import graph
from . import runtime as rt
from .gemm_half import FORMATS

SOURCE = "optim.cu"
KINDS = ("sgd_step", "adam_step", "rmsprop_step", "adagrad_step")


def _low_name(kind, grad_dtype, model_dtype):
    """The float32-master instance writing ``model_dtype`` copies from ``grad_dtype`` grads."""
    grad = "float" if grad_dtype == np.float32 else FORMATS[np.dtype(grad_dtype)]
    return rt.template_name(f"{kind}_kernel", "float", grad, FORMATS[np.dtype(model_dtype)])


def instances() -> list[str]:
    """Every optim.cu instance the backend may launch: float / double steps, and float32
    master steps writing a float16 / bfloat16 model copy from half or float32 gradients."""
    low = [_low_name(kind, g, h) for h in LOW_PRECISION for g in (h, np.dtype(np.float32))
           for kind in KINDS]
    return rt.typed_instances(KINDS) + low


OPT_MAXIMIZE, OPT_NESTEROV, OPT_FIRST_STEP, OPT_AMSGRAD = 1, 2, 4, 8
OPT_DECOUPLED, OPT_CENTERED, OPT_MOMENTUM, OPT_WEIGHT_DECAY = 16, 32, 64, 128
_OPT_CHUNK = 8192
# 256-thread blocks per SM the step kernels are launched with at most: 4 stay resident
# together up to 64 registers per thread (the kernels use 26-50), so no block waits for a
# second wave; with 16-byte loads of 3-5 streams that keeps 48-80 KiB in flight per SM
_OPT_BLOCKS_PER_SM = 4
_CHUNK_TABLES = rt.LruCache(16)
_POINTER_TABLES = rt.LruCache(32)


def _chunk_table(sizes):
    """Device int64 [tensor index (nb), start (nb), length (nb)] for chunks of _OPT_CHUNK."""

    def make():
        counts = [-(-s // _OPT_CHUNK) for s in sizes]
        tensor = np.repeat(np.arange(len(sizes)), counts)
        first = np.repeat(np.cumsum([0] + counts[:-1]), counts)
        start = (np.arange(len(tensor)) - first) * _OPT_CHUNK
        length = np.minimum(np.asarray(sizes, np.int64)[tensor] - start, _OPT_CHUNK)
        return rt.upload(np.concatenate([tensor, start, length]).astype(np.int64)), len(tensor)

    return _CHUNK_TABLES.get_or_make((tuple(sizes), rt.device_key()), make)


def _multi_tensor(kind, lists, written, scalars, flags, model_params=None):
    """Launch ``kind`` over parallel lists of arrays (None entries: absent lists).

    ``written`` names the list positions the kernel updates in place; a non-contiguous
    array there is updated through a contiguous copy that is written back. ``model_params``
    (float16 / bfloat16 arrays, or None) are the model's copies of float32 ``lists[0]``: the
    kernel writes them, rounded, in the same pass, and then reads half gradients as they are
    (a gradient of another low dtype than its copy is widened first).
    """
    params = lists[0]
    if len(params) == 0:
        return
    for lst in lists + [model_params]:
        if lst is not None and len(lst) != len(params):
            raise ValueError(f"{kind}: parameter and state lists differ in length")
    grads = list(lists[1])
    groups = collections.defaultdict(list)
    for j, p in enumerate(params):
        if not p.size:
            continue
        low = None
        if model_params is not None:
            low = np.dtype(model_params[j].dtype)
            if low not in LOW_PRECISION or np.dtype(p.dtype) != np.float32:
                raise TypeError(f"{kind}: a model copy of dtype {low} needs float32 master "
                                f"parameters and a float16 / bfloat16 copy, not {p.dtype}")
            if model_params[j].shape != p.shape:
                raise TypeError(f"{kind}: model copy {model_params[j].shape} does not match "
                                f"parameter {p.shape}")
            if grads[j].dtype != low:
                grads[j] = grads[j].astype(np.float32, copy=False)
        # without a model copy the gradients must be the parameters' dtype (checked below)
        gkey = np.dtype(grads[j].dtype) if low is not None else np.dtype(p.dtype)
        groups[(np.dtype(p.dtype), gkey, low)].append(j)
    lists = [lists[0], grads] + list(lists[2:])
    if model_params is not None:
        lists.append(model_params)
        written = set(written) | {len(lists) - 1}
    for (dtype, grad_dtype, low), idx in groups.items():
        ctype = rt.ctype(kind, dtype)
        values = tuple(rt.scalar(ctype)(v) for v in scalars)
        # inside a CUDA graph the scalars live in device memory, rewritten before each replay
        dyn = None
        if graph.active():  # the key costs a pass over the parameters: graphs only
            dyn = graph.scalar_slot(values, dtype, tuple(rt.ptr(params[j]) for j in idx))
            if dyn is graph.REFRESHED:
                continue
        cols, copies = [], []
        for li, lst in enumerate(lists):
            if lst is None:
                cols.append(None)
                continue
            want = grad_dtype if li == 1 else (low if li == len(lists) - 1 and low is not None
                                               else dtype)
            col = []
            for j in idx:
                a = lst[j]
                if a.dtype != want or a.shape != params[j].shape:
                    raise TypeError(f"{kind}: state {a.dtype} {a.shape} does not match "
                                    f"parameter {want} {params[j].shape}")
                if not a.flags.c_contiguous:
                    tmp = rt.xp.ascontiguousarray(a)
                    if li in written:
                        copies.append((a, tmp))
                    a = tmp
                col.append(a)
            cols.append(col)
        ptr_rows = [[rt.ptr(a) for a in col] if col is not None else [0] * len(idx) for col in cols]
        key = (tuple(map(tuple, ptr_rows)), rt.device_key())
        ptrs = _POINTER_TABLES.get_or_make(
            key, lambda rows=ptr_rows: rt.upload(np.asarray(rows, np.int64).ravel()))
        chunks, nchunks = _chunk_table([int(params[j].size) for j in idx])
        # a persistent grid: at most _OPT_BLOCKS_PER_SM blocks per SM walk the chunks
        grid = min(nchunks, _OPT_BLOCKS_PER_SM * rt.sm_count())
        name = rt.typed_name(kind, ctype) if low is None else _low_name(kind, grad_dtype, low)
        rt.launch(SOURCE, name, (grid,), rt.BLOCK,
                (ptrs, chunks, np.int32(len(idx)), np.int32(nchunks), rt.null_or(dyn))
                + values + (np.int32(flags),))
        for dst, src in copies:
            dst[...] = src


def _common_flags(weight_decay, maximize):
    return (OPT_MAXIMIZE if maximize else 0) | (OPT_WEIGHT_DECAY if weight_decay != 0 else 0)


@rt.on_device
def sgd_step(params, grads, momentum_bufs, *, lr, momentum, dampening, weight_decay, nesterov,
             maximize, first_step, model_params=None):
    """Fused SGD step (momentum, dampening, Nesterov, weight decay, maximize), in place."""
    flags = _common_flags(weight_decay, maximize)
    if momentum != 0:
        flags |= OPT_MOMENTUM | (OPT_NESTEROV if nesterov else 0)
        flags |= OPT_FIRST_STEP if first_step else 0
    bufs = momentum_bufs if momentum != 0 else None
    _multi_tensor("sgd_step", [params, grads, bufs], {0, 2},
                  (lr, momentum, 1 - dampening, weight_decay), flags, model_params)


@rt.on_device
def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, lr, beta1, beta2, eps,
              weight_decay, step, amsgrad, decoupled_weight_decay, maximize, model_params=None):
    """Fused Adam / AdamW (optionally AMSGrad) step, in place."""
    flags = _common_flags(weight_decay, maximize)
    flags |= (OPT_AMSGRAD if amsgrad else 0) | (OPT_DECOUPLED if decoupled_weight_decay else 0)
    bias1 = 1 - beta1**step
    bias2_sqrt = (1 - beta2**step) ** 0.5
    _multi_tensor("adam_step",
                  [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None],
                  {0, 2, 3, 4},
                  (lr / bias1, 1 - beta1, beta2, 1 - beta2, bias2_sqrt, eps, weight_decay,
                   1 - lr * weight_decay), flags, model_params)


@rt.on_device
def rmsprop_step(params, grads, square_avgs, momentum_bufs, grad_avgs, *, lr, alpha, eps,
                 weight_decay, momentum, centered, maximize, model_params=None):
    """Fused RMSprop (centered, momentum) step, in place."""
    flags = _common_flags(weight_decay, maximize)
    flags |= (OPT_MOMENTUM if momentum > 0 else 0) | (OPT_CENTERED if centered else 0)
    _multi_tensor("rmsprop_step",
                  [params, grads, square_avgs, momentum_bufs if momentum > 0 else None,
                   grad_avgs if centered else None],
                  {0, 2, 3, 4}, (lr, alpha, 1 - alpha, eps, weight_decay, momentum), flags,
                  model_params)


@rt.on_device
def adagrad_step(params, grads, state_sums, *, lr, lr_decay, weight_decay, eps, step, maximize,
                 model_params=None):
    """Fused Adagrad step (lr decay, weight decay, maximize), in place."""
    clr = lr / (1 + (step - 1) * lr_decay)
    _multi_tensor("adagrad_step", [params, grads, state_sums], {0, 2},
                  (clr, eps, weight_decay), _common_flags(weight_decay, maximize), model_params)

