"""The distributed side of ``Model.fit``: when a launcher (``mpiexec -n N``) started more
than one process, fit trains data-parallel without any change to the user's code.

Each rank wraps the module in ``DistributedDataParallel`` (rank 0's weights win), reads its
shard of every batch through a ``DistributedSampler`` (``batch_size`` is per rank, so a step
sees ``N * batch_size`` samples), and at the end of an epoch the loss and the metrics are
computed over all ranks' samples, so every rank logs the same numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FitParallel", "fit_parallel"]


def fit_parallel(model):
    """A ``FitParallel`` for ``model`` when a launcher started several processes, else None."""
    from .. import distributed as dist

    found = dist.launcher_env()
    if found is None or found[2] == 1:
        return None
    dist.init_process_group()
    if getattr(model, "_parallel", None) is None or model._parallel.module is not model.module:
        model._parallel = FitParallel(model.module)
    return model._parallel


class FitParallel:
    """The wrapped module, the sharded loader and the reductions of one Model's fits."""

    def __init__(self, module):
        from ..distributed import DistributedDataParallel, is_main_process

        self.module = module
        self.main = is_main_process()  # prints and writes files
        self.ddp = DistributedDataParallel(module)
        self.sampler = None

    def shard(self, loader):
        """``loader`` reading only this rank's shard: one without a sampler gets a
        ``DistributedSampler`` (in place, so closing it still stops its workers)."""
        from ..distributed import DistributedSampler

        if loader.sampler is None:
            loader.sampler = DistributedSampler(loader.dataset, shuffle=loader.shuffle)
            loader.shuffle = False
        self.sampler = loader.sampler
        return loader

    def set_epoch(self, epoch):
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def reduce(self, total, count, preds, targets):
        """Loss sums and counts summed over ranks; predictions and targets of every rank."""
        from ..distributed.comm import communicator

        sums = np.array([total, count], dtype=np.float64)
        comm = communicator(sums)
        comm.allreduce(sums, "sum").wait()
        if preds:
            gathered = comm.allgather_object((np.concatenate(preds), np.concatenate(targets)))
            preds, targets = [g[0] for g in gathered], [g[1] for g in gathered]
        return float(sums[0]), float(sums[1]), preds, targets
