"""``DistributedDataParallel``: the same model on every rank, gradients averaged in buckets
while backward still runs.

At wrap time rank 0's parameters and buffers are broadcast to every rank. The parameters are
grouped into buckets of about ``bucket_cap_mb`` (reverse parameter order, the order backward
produces their gradients; one dtype and device per bucket). Each parameter has a
post-accumulate-grad hook: the autograd engine writes a leaf's ``.grad`` as soon as its
last gradient arrived (pydl/autograd, ``_run_arrays``), so the hook marks the parameter
ready while backward goes on with earlier layers. When a bucket is full its gradients are
packed and its non-blocking all-reduce starts. Buckets start strictly in bucket order, the
same on every rank (collectives must be issued in one order everywhere). The first hook of
a backward pass queues an end-of-pass callback (``pydl.autograd.queue_callback``) that
starts what is left (the buckets of parameters that got no gradient), waits for every
all-reduce and writes the averaged gradients back: when ``backward()`` returns, ``.grad``
holds the average over the ranks, ready for clipping or an optimizer step.
"""

from __future__ import annotations

import contextlib
import functools
import time
import weakref

from ..autograd import _current_pass, queue_callback
from ..nn import Module
from .collectives import broadcast
from .comm import communicator
from .group import group, init_process_group

__all__ = ["DistributedDataParallel"]


class _Bucket:
    """Parameters whose gradients travel in one flat buffer."""

    def __init__(self, params):
        self.params = params
        self.work = self.buffer = None
        self.waiting = set()  # ids of the parameters whose gradient is not final yet

    def start(self):
        """Pack the gradients (zeros for a parameter without one), then one flag per
        parameter (1 where it has a gradient), and start the all-reduce."""
        ref = self.params[0].data
        xp = _array_module(ref)
        parts = [p.grad.data.ravel() if p.grad is not None else xp.zeros(p.data.size, ref.dtype)
                 for p in self.params]
        parts.append(xp.asarray([p.grad is not None for p in self.params], dtype=ref.dtype))
        self.buffer = xp.concatenate(parts)
        comm = communicator(self.buffer)
        self.work = comm.allreduce(self.buffer, "mean") if comm is not None else None

    def poll(self):
        """Let a started all-reduce progress (MPI moves data only inside MPI calls);
        whether it has completed."""
        return self.work is not None and self.work.poll()

    def finish(self):
        """Wait for the all-reduce and write the averaged gradients back; a parameter
        that had no gradient on any rank keeps ``.grad`` None (as in PyTorch)."""
        if self.work is not None:
            self.work.wait()
        from ..tensor import Tensor

        flags = self.buffer[-len(self.params):].tolist()
        offset = 0
        for p, flag in zip(self.params, flags):
            n = p.data.size
            grad = self.buffer[offset:offset + n].reshape(p.data.shape)
            offset += n
            if not flag:  # no rank had a gradient for it
                continue
            if p.grad is None:
                p.grad = Tensor._make(grad.copy())
            else:
                p.grad.data[...] = grad
                p.grad._bump()
        self.work = self.buffer = None


def _array_module(array):
    from ..backend import backend_of

    return backend_of(array).xp


def _grad_ready(ddp_ref, bucket, param):
    """The post-accumulate-grad hook of each wrapped parameter (holds the wrapper weakly)."""
    ddp = ddp_ref()
    if ddp is not None:
        ddp._grad_ready(bucket, param)


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training: each rank feeds its own shard of every
    batch; after backward the gradients are averaged over the ranks, so every rank takes
    the same optimizer step and the parameters stay identical.

    Args:
        module: the model (already on this rank's device).
        bucket_cap_mb: bucket size in MB (default 25); 0 gives one all-reduce per parameter.
        broadcast_buffers: broadcast rank 0's buffers (BatchNorm statistics) before each
            forward in training mode (default True).

    ``init_process_group()`` is called if it has not been. State dicts carry a ``module.``
    prefix, as in PyTorch; save ``ddp.module.state_dict()`` for a plain model.

    When ``loss.backward()`` returns, every ``.grad`` holds the average over the ranks
    (the all-reduces ran during backward), so clipping, an optimizer closure or reading
    the gradients needs no extra call.

    >>> model = DistributedDataParallel(Net())
    >>> loss = loss_fn(model(x_shard), y_shard); loss.backward(); opt.step()
    """

    def __init__(self, module, bucket_cap_mb=25, broadcast_buffers=True):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps an nn.Module, got "
                            f"{type(module).__name__}")
        if not bucket_cap_mb >= 0:
            raise ValueError(f"bucket_cap_mb must be 0 or more, got {bucket_cap_mb}")
        init_process_group()
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = bucket_cap_mb
        self._sync_enabled = True
        self._synced = []  # the gradient tensors the last sync wrote (sync once per backward)
        for t in list(module.parameters()) + list(module.buffers()):
            broadcast(t, src=0)
        params = [p for p in module.parameters() if p.requires_grad]
        self._buckets = _make_buckets(params[::-1], bucket_cap_mb * 2**20)
        self.world_size = group().size
        self._pass = None  # the backward pass whose gradients are being averaged
        self._next = 0  # index of the next bucket to start
        self._overlap = True  # False: start every bucket at the end of backward (benchmark)
        self._timings = {}  # perf_counter times of the last synchronisation
        handles = []
        if self.world_size > 1:
            me = weakref.ref(self)
            for bucket in self._buckets:
                for p in bucket.params:
                    handles.append(p.register_post_accumulate_grad_hook(
                        functools.partial(_grad_ready, me, bucket)))
        weakref.finalize(self, _remove_all, handles)

    def forward(self, *args, **kwargs):
        if self.broadcast_buffers and self.training and self.world_size > 1:
            for b in self.module.buffers():
                broadcast(b, src=0)
        return self.module(*args, **kwargs)

    @property
    def buckets(self):
        """The parameters of each bucket, in the order their all-reduces start."""
        return [list(b.params) for b in self._buckets]

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, gradients only accumulate locally (no communication); the first backward
        after it (or ``sync_gradients()``) averages everything accumulated. For gradient
        accumulation."""
        before, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = before

    # -- during backward: the hooks -----------------------------------------------------
    def _grad_ready(self, bucket, param):
        """``param.grad`` is final for this backward pass: start every bucket that is full,
        in bucket order."""
        if not self._sync_enabled:
            return
        current = _current_pass()
        if current is None:  # .grad written outside a backward pass: nothing to overlap
            return
        if param.grad is not None and param.grad.requires_grad:
            raise RuntimeError(
                "DistributedDataParallel: backward(create_graph=True) makes .grad part of a "
                "graph, and averaging it in place across ranks would break that graph; run "
                "such a backward inside ddp.no_sync() (for a gradient penalty, "
                "pydl.autograd.grad(..., create_graph=True) writes no .grad and works as is)")
        if current is not self._pass:
            self._begin(current)
        bucket.waiting.discard(id(param))
        if self._overlap:
            self._start_full()
        for b in self._buckets[:self._next]:
            b.poll()

    def _begin(self, current):
        """First gradient of a backward pass: expect every parameter the pass reaches;
        the others (unused in this forward) are ready at once."""
        self._pass, self._next = current, 0
        reached = current.leaf_uses
        for b in self._buckets:
            b.waiting = {id(p) for p in b.params if id(p) in reached}
            b.work = b.buffer = None
        self._timings = {"first_grad": time.perf_counter(), "started_in_backward": 0}
        queue_callback(self._end_of_backward)

    def _start_full(self):
        while self._next < len(self._buckets) and not self._buckets[self._next].waiting:
            self._buckets[self._next].start()
            self._next += 1
            self._timings["started_in_backward"] = self._next
            self._timings.setdefault("first_start", time.perf_counter())

    def _end_of_backward(self):
        """Queued by the first hook of a pass: start what is left, wait, write back (and
        record when, in ``_timings``, for benchmarks/bench_dist.py)."""
        stats = self._timings
        stats["backward_end"] = time.perf_counter()
        stats["done_in_backward"] = sum(b.poll() for b in self._buckets[:self._next])
        try:
            self._sync_from(self._next)
        finally:
            self._pass = None
        stats["done"] = time.perf_counter()

    def _sync_from(self, first):
        """Start buckets ``first``, ``first + 1``, ... (all started before any is waited
        for), then finish every bucket."""
        for bucket in self._buckets[first:]:
            bucket.start()
        for bucket in self._buckets:
            bucket.finish()
        self._synced = [p.grad for b in self._buckets for p in b.params]

    # -- outside backward ------------------------------------------------------------------
    def _needs_sync(self):
        params = [p for b in self._buckets for p in b.params]
        grads = [p.grad for p in params]
        if all(g is None for g in grads):
            return False
        return len(grads) != len(self._synced) or any(
            g is not s for g, s in zip(grads, self._synced))

    def sync_gradients(self):
        """Average the gradients over the ranks now. Backward does it by itself (outside
        ``no_sync``); this is for gradients accumulated under ``no_sync`` that should be
        averaged without one more backward. Does nothing when the gradients did not change
        since the last averaging."""
        if not self._sync_enabled or self.world_size == 1 or not self._needs_sync():
            return
        self._sync_from(0)


def _remove_all(handles):
    for handle in handles:
        handle.remove()


def _make_buckets(params, cap_bytes):
    """Consecutive runs of ``params`` of one dtype and device, each up to ``cap_bytes``
    (one parameter per bucket when ``cap_bytes`` is 0; a larger parameter goes alone)."""
    buckets, current, size, kind = [], [], 0, None
    for p in params:
        nbytes = p.data.size * p.data.dtype.itemsize
        if current and (size + nbytes > cap_bytes or (p.data.dtype, str(p.device)) != kind):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        kind = (p.data.dtype, str(p.device))
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets
