"""Datasets: the map-style ``Dataset`` protocol, ``TensorDataset`` and ``random_split``."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split"]


class Dataset:
    """A map-style dataset: ``len(ds)`` samples, ``ds[i]`` returns sample ``i``.

    Subclass it and define ``__len__`` and ``__getitem__``.
    """

    def __len__(self):
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


def _as_array(x):
    if isinstance(x, Tensor):
        return x.data
    return np.asarray(x)


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays or tensors.

    ``TensorDataset(x, y)[i] == (x[i], y[i])``.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        self.arrays = [_as_array(a) for a in arrays]
        n = len(self.arrays[0])
        for a in self.arrays:
            if a.ndim == 0 or len(a) != n:
                lengths = [len(x) if x.ndim else 0 for x in self.arrays]
                raise ValueError(
                    f"TensorDataset: all arrays need the same first dimension, got lengths "
                    f"{lengths}"
                )

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.dataset[int(self.indices[index])]
        return self.dataset[self.indices[index]]


def random_split(dataset, lengths, seed: int | None = None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1).

    >>> train, val = random_split(ds, [0.8, 0.2], seed=0)
    """
    n = len(dataset)
    lengths = list(lengths)
    if all(isinstance(x, float) for x in lengths) and abs(sum(lengths) - 1.0) < 1e-6:
        counts = [int(np.floor(n * f)) for f in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"random_split: lengths {lengths} sum to {sum(lengths)}, dataset has {n}")
    perm = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for k in lengths:
        out.append(Subset(dataset, perm[start:start + k]))
        start += k
    return out
