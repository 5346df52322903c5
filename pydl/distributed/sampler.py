"""``DistributedSampler``: which samples each rank sees in an epoch."""

from __future__ import annotations

import numpy as np

from .group import get_rank, get_world_size

__all__ = ["DistributedSampler"]


class DistributedSampler:
    """The indices of rank ``rank``'s shard of a dataset, for ``DataLoader(sampler=...)``.

    Every epoch one order of the whole dataset is drawn from ``seed + epoch`` (the same on
    every rank); rank r takes positions r, r + N, r + 2N, ... of it. So batch k of all ranks
    together is batch k of one process with an N-times larger batch, in the same order.
    Unless ``drop_last``, the order is padded by repeating its start so that every rank
    gets the same number of samples. Call ``set_epoch(epoch)`` before each epoch
    (``Model.fit`` does) to reshuffle.

    Args:
        dataset: anything with ``len``.
        num_replicas / rank: default the process group's size and this process's rank.
        shuffle: a new order each epoch (else 0, 1, 2, ...).
        seed: the base of each epoch's order; the same on every rank.
        drop_last: drop the tail that does not divide evenly instead of padding.

    >>> sampler = DistributedSampler(train_set, seed=0)
    >>> loader = DataLoader(train_set, batch_size=64, sampler=sampler)
    >>> for epoch in range(10):
    ...     sampler.set_epoch(epoch)
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        num_replicas = get_world_size() if num_replicas is None else int(num_replicas)
        rank = get_rank() if rank is None else int(rank)
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be at least 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.dataset, self.num_replicas, self.rank = dataset, num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0
        n = len(dataset)
        self.num_samples = n // num_replicas if drop_last else -(-n // num_replicas)
        if n and self.num_samples == 0:
            raise ValueError(f"a dataset of {n} samples cannot give each of {num_replicas} "
                             "ranks one sample with drop_last=True")

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order ``__iter__`` yields."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an array."""
        n = len(self.dataset)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(n)
        else:
            order = np.arange(n)
        total = self.num_samples * self.num_replicas
        if total > n:
            order = np.resize(order, total)  # np.resize repeats from the start
        return order[self.rank:total:self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples
