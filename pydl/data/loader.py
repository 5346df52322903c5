"""``DataLoader``: batches from a dataset, in a seeded order, made by worker processes or
threads when asked, with augmentation in the workers.

Which batch holds which samples, and every random draw of the ``transform``, depend only on
the seed and the batch's number, never on ``num_workers`` or on which worker made it: the
order is drawn in the main process each epoch, and the transform is reseeded for every batch
from the epoch's seed and the batch number.
"""

from __future__ import annotations

import copy

import numpy as np

from ..backend import get_backend
from ..creation import as_tensor
from .dataset import TensorDataset
from .workers import WorkerPool

__all__ = ["DataLoader", "default_collate"]


def _stack(samples):
    """Stack a list of samples (tuples/dicts of arrays or numbers) into arrays, same nesting."""
    first = samples[0]
    if isinstance(first, tuple):
        return tuple(_stack([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _stack([s[k] for s in samples]) for k in first}
    return np.stack([np.asarray(s) for s in samples])


def _to_tensors(batch, device, pin):
    """Arrays (in tuples/dicts) -> tensors on ``device``; ``pin`` stages them in page-locked
    host memory first (the backend decides what that means: nothing on the CPU)."""
    if isinstance(batch, tuple):
        return tuple(_to_tensors(b, device, pin) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_tensors(v, device, pin) for k, v in batch.items()}
    if pin is not None:
        batch = pin(batch)
    return as_tensor(batch, device=device)


def default_collate(samples):
    """Stack a list of samples (tuples of arrays/numbers) into a tuple of tensors."""
    return _to_tensors(_stack(samples), None, None)


def _transform_inputs(transform, batch):
    """Apply ``transform`` to the inputs: the first element of a tuple batch, or the batch."""
    if isinstance(batch, tuple):
        return (transform(batch[0]),) + batch[1:]
    return transform(batch)


class _BatchMaker:
    """Makes one batch of arrays from its indices; what each worker runs."""

    def __init__(self, dataset, collate_fn, transform):
        self.dataset, self.collate_fn, self.transform = dataset, collate_fn, transform

    def __call__(self, indices, seed):
        if self.collate_fn is None and isinstance(self.dataset, TensorDataset):
            batch = tuple(a[indices] for a in self.dataset.arrays)
        else:
            samples = [self.dataset[int(i)] for i in indices]
            batch = (self.collate_fn or _stack)(samples)
        if self.transform is not None:
            self.transform.reseed(seed)
            batch = _transform_inputs(self.transform, batch)
        return batch


class DataLoader:
    """Iterate over a dataset in batches.

    Args:
        dataset: a Dataset (``len`` and ``[i]``).
        batch_size: samples per batch.
        shuffle: reshuffle every epoch, in an order drawn from ``seed`` (or ``generator``).
        drop_last: drop the last, smaller batch.
        collate_fn: turns a list of samples into a batch (default: stack into arrays, which
            become tensors). With workers it runs in the workers.
        seed / generator: an int, or a ``numpy.random.Generator``, for the shuffle order and
            the transform's draws.
        transform: an augmentation (``pydl.data.transforms``) applied to the inputs of every
            batch, as a NumPy array, where the batch is made (in the workers when there are
            any). It is reseeded for each batch from the epoch's seed and the batch number,
            so the augmented data are the same for any ``num_workers``.
        num_workers: 0 makes batches in the calling thread; N > 0 starts N workers.
        worker_type: ``"process"`` (default) or ``"thread"``. Processes run Python code in
            parallel; threads only while NumPy releases the GIL, but start instantly and
            copy nothing. ``docs/training.md`` has measurements.
        prefetch_factor: batches in flight per worker (default 2).
        persistent_workers: keep the workers between epochs (else they stop at each epoch's
            end); ``close()`` stops them.
        pin_memory: stage each batch in page-locked host memory before copying it to a
            CUDA ``device`` (faster copies); no effect for the CPU.
        timeout: seconds to wait for a batch from the workers before raising (0: no limit).
        prefetch: kept for older code: with ``num_workers=0``, ``prefetch=k`` prepares up
            to k batches in one background thread.
        device: where the batch tensors are placed.
        sampler: yields the indices of an epoch in order (e.g.
            ``pydl.distributed.DistributedSampler``, this rank's shard); replaces
            ``shuffle``. Its ``set_epoch`` (if any) is the caller's to call.

    An exception in a worker is raised in the main process with the worker's traceback in
    its message; a worker process that dies is reported with its exit code.

    >>> loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=True, seed=0,
    ...                     num_workers=2, transform=T.RandomAffine(10, translate=(0.1, 0.1)))
    >>> for xb, yb in loader: ...
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, collate_fn=None,
                 seed=None, prefetch=0, device=None, num_workers=0, prefetch_factor=2,
                 persistent_workers=False, pin_memory=False, transform=None, generator=None,
                 worker_type="process", timeout=0, sampler=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {num_workers}")
        if prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be at least 1, got {prefetch_factor}")
        if worker_type not in ("process", "thread"):
            raise ValueError(f"worker_type must be 'process' or 'thread', got {worker_type!r}")
        if transform is not None and not hasattr(transform, "reseed"):
            raise TypeError(
                f"transform must be a pydl.data.transforms transform (with reseed), got "
                f"{type(transform).__name__}"
            )
        if sampler is not None and shuffle:
            raise ValueError("give shuffle or a sampler, not both (the sampler decides the order)")
        if generator is not None and seed is not None:
            raise ValueError("give seed or generator, not both")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.sampler = sampler
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        self.transform = transform
        self.device = device
        self.num_workers = int(num_workers)
        self.worker_type = worker_type
        self.prefetch = int(prefetch)
        self.prefetch_factor = int(prefetch_factor)
        self.persistent_workers = persistent_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self._rng = generator if generator is not None else np.random.default_rng(seed)
        self._pool = None

    def __len__(self):
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batches_of_indices(self):
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64)
        else:
            order = self._rng.permutation(len(self.dataset)) if self.shuffle else np.arange(
                len(self.dataset))
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[start:start + self.batch_size] for start in range(0, stop, self.batch_size)]

    def _epoch_seeds(self, count):
        """One seed per batch for the transform, drawn from the loader's generator."""
        if self.transform is None:
            return [None] * count
        epoch = int(self._rng.integers(2**63))
        return [(epoch, b) for b in range(count)]

    def _finish(self, batch):
        """A batch of arrays from ``_BatchMaker`` -> what the loop body receives."""
        if self.collate_fn is not None:
            return batch
        pin = get_backend(self.device).pin_memory if self.pin_memory else None
        return _to_tensors(batch, self.device, pin)

    def _make(self):
        """A batch maker with its own copy of the transform (for one worker thread)."""
        return _BatchMaker(self.dataset, self.collate_fn, copy.deepcopy(self.transform))

    def __iter__(self):
        batches = self._batches_of_indices()
        seeds = self._epoch_seeds(len(batches))
        workers = self.num_workers or (1 if self.prefetch > 0 else 0)
        if workers == 0:
            make = self._make()
            for idx, seed in zip(batches, seeds):
                yield self._finish(make(idx, seed))
            return
        yield from self._from_workers(batches, seeds, workers)

    def _from_workers(self, batches, seeds, workers):
        if self._pool is None or not self._pool.alive():
            kind = self.worker_type if self.num_workers else "thread"
            self._pool = WorkerPool(workers, self._make, kind)
        pool = self._pool
        in_flight = workers * self.prefetch_factor if self.num_workers else self.prefetch
        done, sent, ready = 0, 0, {}
        try:
            while done < len(batches):
                while sent < len(batches) and sent - done < in_flight:
                    pool.submit(sent, batches[sent], seeds[sent])
                    sent += 1
                while done not in ready:  # results come in any order; keep the batches'
                    batch_no, batch, failure = pool.get(self.timeout)
                    ready[batch_no] = (batch, failure)
                batch, failure = ready.pop(done)
                if failure is not None:  # raised in its turn, after the batches before it
                    raise failure.exception(done)
                yield self._finish(batch)
                done += 1
        except Exception:
            self.close()
            raise
        finally:
            if self._pool is not None:
                if self.persistent_workers:
                    self._pool.new_epoch()
                else:
                    self.close()

    def close(self):
        """Stop the worker processes or threads (persistent ones stay up until this)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
