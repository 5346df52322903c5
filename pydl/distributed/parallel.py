"""``DistributedDataParallel``: the same model on every rank, gradients averaged in buckets.

At wrap time rank 0's parameters and buffers are broadcast to every rank. After backward,
the gradients are packed into buckets of about ``bucket_cap_mb`` (parameters in reverse
order, the order backward produces them; one dtype per bucket) and each bucket's all-reduce
is started without waiting, so packing the next bucket overlaps sending this one; the
averaged gradients are written back before the optimizer updates.

The synchronisation runs from the optimizer-step hook (``pydl.backend.
register_optimizer_step_hook``), so ``loss.backward(); opt.step()`` needs no extra call;
``sync_gradients()`` runs it earlier (before gradient clipping, say). Starting each bucket
from autograd hooks while backward still runs is the next step, once parameters have a
post-accumulate-grad hook (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import weakref

from ..backend import register_optimizer_step_hook
from ..nn import Module
from .collectives import broadcast
from .comm import communicator
from .group import group, init_process_group

__all__ = ["DistributedDataParallel"]

_live = weakref.WeakSet()


def _on_optimizer_step(optimizer):
    for ddp in list(_live):
        if ddp._owns(optimizer):
            ddp.sync_gradients()


class _Bucket:
    """Parameters whose gradients travel in one flat buffer."""

    def __init__(self, params):
        self.params = params
        self.work = self.buffer = None

    def start(self):
        """Pack the gradients (zeros for a parameter without one) and start the all-reduce."""
        ref = self.params[0].data
        xp = _array_module(ref)
        parts = [p.grad.data.ravel() if p.grad is not None else xp.zeros(p.data.size, ref.dtype)
                 for p in self.params]
        self.buffer = xp.concatenate(parts) if len(parts) > 1 else parts[0].copy()
        comm = communicator(self.buffer)
        self.work = comm.allreduce(self.buffer, "mean") if comm is not None else None

    def finish(self):
        """Wait for the all-reduce and write the averaged gradients back."""
        if self.work is not None:
            self.work.wait()
        from ..tensor import Tensor

        offset = 0
        for p in self.params:
            n = p.data.size
            grad = self.buffer[offset:offset + n].reshape(p.data.shape)
            if p.grad is None:
                p.grad = Tensor._make(grad.copy())
            else:
                p.grad.data[...] = grad
                p.grad._bump()
            offset += n
        self.work = self.buffer = None


def _array_module(array):
    from ..backend import backend_of

    return backend_of(array).xp


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
        self._param_ids = {id(p) for p in params}
        self._buckets = _make_buckets(params[::-1], bucket_cap_mb * 2**20)
        self.world_size = group().size
        _live.add(self)
        register_optimizer_step_hook(_on_optimizer_step)

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
        """Inside, gradients only accumulate locally (no communication); the first sync
        after it averages everything accumulated. For gradient accumulation."""
        before, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = before

    def _owns(self, optimizer):
        return any(id(p) in self._param_ids for g in optimizer.param_groups for p in g["params"])

    def _needs_sync(self):
        params = [p for b in self._buckets for p in b.params]
        grads = [p.grad for p in params]
        if all(g is None for g in grads):
            return False
        return len(grads) != len(self._synced) or any(
            g is not s for g, s in zip(grads, self._synced))

    def sync_gradients(self):
        """Average the gradients over the ranks now (the optimizer step does it otherwise);
        a second call before the next backward does nothing."""
        if not self._sync_enabled or self.world_size == 1 or not self._needs_sync():
            return
        for bucket in self._buckets:  # all started before any is waited for
            bucket.start()
        for bucket in self._buckets:
            bucket.finish()
        self._synced = [p.grad for b in self._buckets for p in b.params]


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
