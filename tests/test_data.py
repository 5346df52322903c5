"""Datasets, the DataLoader, readers of IDX/CIFAR files, and augmentation transforms."""

import gzip
import struct

import numpy as np
import pytest

import pydl
from pydl.data import (
    CIFAR10,
    MNIST,
    DataLoader,
    TensorDataset,
    adding_problem,
    load_digits,
    random_split,
    read_idx,
)
from pydl.data import transforms as T


def test_load_digits_shapes_and_classes():
    x, y = load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert np.bincount(y).min() >= 170  # all ten classes, roughly balanced
    xf, _ = load_digits(flatten=True, normalize=False)
    assert xf.shape == (1797, 64) and xf.max() == 16.0


@pytest.mark.parametrize("shuffle,drop_last,prefetch", [(False, False, 0), (True, False, 2),
                                                        (True, True, 0)])
def test_dataloader_visits_every_sample_once(shuffle, drop_last, prefetch):
    n, bs = 103, 10
    x = np.arange(n, dtype=np.float32)[:, None]
    dl = DataLoader(TensorDataset(x, np.arange(n)), batch_size=bs, shuffle=shuffle,
                    drop_last=drop_last, seed=1, prefetch=prefetch)
    seen = np.concatenate([yb.numpy() for _, yb in dl])
    expected = n - n % bs if drop_last else n
    assert len(dl) == -(-expected // bs)
    assert len(seen) == expected and len(np.unique(seen)) == expected
    if shuffle:
        assert not np.array_equal(seen, np.sort(seen))


def test_dataloader_shuffle_repeats_under_seed_and_collate():
    ds = TensorDataset(np.arange(20), np.arange(20) * 2)
    a = [b[0].numpy() for b in DataLoader(ds, batch_size=7, shuffle=True, seed=5)]
    b = [b[0].numpy() for b in DataLoader(ds, batch_size=7, shuffle=True, seed=5)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b))
    batches = list(DataLoader(ds, batch_size=4, collate_fn=lambda s: len(s)))
    assert batches == [4] * 5


def test_tensor_dataset_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(np.zeros(3), np.zeros(4))


def test_random_split_partitions():
    parts = random_split(TensorDataset(np.arange(10)), [0.7, 0.3], seed=0)
    got = sorted(int(parts[i][j][0]) for i in range(2) for j in range(len(parts[i])))
    assert [len(p) for p in parts] == [7, 3] and got == list(range(10))
    with pytest.raises(ValueError, match="sum to"):
        random_split(TensorDataset(np.arange(10)), [3, 3])


def _idx_bytes(array, type_code=0x08):
    header = struct.pack(">HBB", 0, type_code, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(">u1" if type_code == 0x08 else ">i4").tobytes()


def _write_mnist(root, n=5, gz=False):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    for name, arr in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = _idx_bytes(arr)
        if gz:
            with gzip.open(root / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (root / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reader_roundtrip(tmp_path, gz):
    images, labels = _write_mnist(tmp_path, gz=gz)
    ds = MNIST(tmp_path, train=True)
    assert len(ds) == 5
    x, y = ds[3]
    assert x.shape == (1, 28, 28) and np.allclose(x[0] * 255, images[3]) and y == labels[3]


def test_idx_reader_rejects_bad_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="magic number"):
        read_idx(p)
    good = _idx_bytes(np.zeros((4, 2, 2), dtype=np.uint8))
    p.write_bytes(good[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)
    _write_mnist(tmp_path, n=5)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(ValueError, match="4 labels for the 5 images"):
        MNIST(tmp_path)


def test_cifar_binary_reader(tmp_path):
    rng = np.random.default_rng(0)
    rec = np.concatenate([rng.integers(0, 10, (3, 1)), rng.integers(0, 256, (3, 3072))], 1)
    (tmp_path / "test_batch.bin").write_bytes(rec.astype(np.uint8).tobytes())
    ds = CIFAR10(tmp_path, train=False)
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == rec[1, 0]
    assert np.allclose(x.reshape(-1) * 255, rec[1, 1:])
    (tmp_path / "test_batch.bin").write_bytes(rec.astype(np.uint8).tobytes()[:-10])
    with pytest.raises(ValueError, match="whole number"):
        CIFAR10(tmp_path, train=False)


def _pipeline(seed):
    return T.Compose([T.RandomCrop(8, padding=1), T.RandomRotation(15),
                      T.RandomAffine(5, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5),
                      T.ColorJitter(0.2, 0.2), T.GaussianNoise(0.05),
                      T.RandomHorizontalFlip(), T.Normalize([0.5], [0.25])], seed=seed)


def test_transforms_keep_shape_dtype_and_repeat_under_seed():
    x, _ = load_digits()
    batch = x[:32]
    a, b, c = _pipeline(0)(batch), _pipeline(0)(batch), _pipeline(1)(batch)
    assert a.shape == batch.shape and a.dtype == batch.dtype
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    single = _pipeline(0)(batch[0])
    assert single.shape == batch[0].shape


def test_geometric_transforms_are_exact_at_identity():
    x, _ = load_digits()
    assert np.allclose(T.RandomRotation((0, 0))(x[:4]), x[:4])
    assert np.array_equal(T.RandomCrop(8, padding=0)(x[:4]), x[:4])
    flipped = T.RandomHorizontalFlip(p=1.0)(x[:2])
    assert np.array_equal(flipped, x[:2][..., ::-1])
    rot90 = T.RandomRotation((90, 90))(x[:1])
    assert np.allclose(rot90[0, 0], np.rot90(x[0, 0], k=-1), atol=1e-5) or np.allclose(
        rot90[0, 0], np.rot90(x[0, 0], k=1), atol=1e-5)


def test_adding_problem_targets():
    x, y = adding_problem(n=50, length=20, seed=0)
    assert x.shape == (50, 20, 2) and y.shape == (50, 1)
    assert np.all(x[..., 1].sum(1) == 2)
    assert np.allclose((x[..., 0] * x[..., 1]).sum(1, keepdims=True), y)


def test_dataloader_yields_tensors():
    dl = DataLoader(TensorDataset(np.ones((4, 3), np.float32), np.arange(4)), batch_size=2)
    xb, yb = next(iter(dl))
    assert isinstance(xb, pydl.Tensor) and xb.shape == (2, 3) and yb.dtype == pydl.int64
