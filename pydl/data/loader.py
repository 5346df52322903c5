"""``DataLoader``: batches from a dataset, with seeded shuffling and optional prefetch."""

from __future__ import annotations

import queue
import threading

import numpy as np

from ..creation import tensor as _tensor
from .dataset import TensorDataset

__all__ = ["DataLoader", "default_collate"]


def default_collate(samples):
    """Stack a list of samples (tuples of arrays/numbers) into a tuple of tensors."""
    first = samples[0]
    if isinstance(first, tuple):
        return tuple(default_collate([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: default_collate([s[k] for s in samples]) for k in first}
    return _tensor(np.stack([np.asarray(s) for s in samples]))


def _collate_arrays(batch, device):
    """Fast path for TensorDataset: the batch is already a tuple of arrays."""
    return tuple(_tensor(a, device=device) for a in batch)


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a Dataset (``len`` and ``[i]``).
        batch_size: samples per batch.
        shuffle: reshuffle every epoch; ``seed`` makes the order reproducible.
        drop_last: drop the last, smaller batch.
        collate_fn: turns a list of samples into a batch (default: stack into tensors).
        prefetch: batches prepared ahead in a background thread (0 = none).
        device: where the batch tensors are placed.

    >>> for xb, yb in DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, seed=0): ...
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 seed=None, prefetch=0, device=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.prefetch = int(prefetch)
        self.device = device
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches_of_indices(self):
        n = len(self.dataset)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]

    def _make_batch(self, idx):
        if self.collate_fn is None and isinstance(self.dataset, TensorDataset):
            return _collate_arrays(self.dataset[idx], self.device)
        samples = [self.dataset[int(i)] for i in idx]
        if self.collate_fn is not None:
            return self.collate_fn(samples)
        batch = default_collate(samples)
        if self.device is not None:
            batch = tuple(t.to(self.device) for t in batch) if isinstance(batch, tuple) else (
                batch.to(self.device))
        return batch

    def __iter__(self):
        if self.prefetch <= 0:
            for idx in self._batches_of_indices():
                yield self._make_batch(idx)
            return
        yield from self._prefetched()

    def _prefetched(self):
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        done = object()
        stop = threading.Event()

        def worker():
            try:
                for idx in self._batches_of_indices():
                    if stop.is_set():
                        return
                    q.put(self._make_batch(idx))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                q.put(exc)
            q.put(done)

        thread = threading.Thread(target=worker, daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.01)
