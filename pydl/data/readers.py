"""Readers for IDX files (MNIST's format) and the binary CIFAR-10 files, from a local directory.

pydl never downloads: point these at files you have. Malformed files are refused with a
message that names the file and what is wrong (magic number, truncation, counts).
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from .dataset import Dataset

__all__ = ["read_idx", "parse_idx", "ImageDataset", "CIFAR10"]

_IDX_TYPES = {
    0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


def _read_bytes(path) -> bytes:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(
            f"{path}: can't read the file ({exc}); is the gzip file truncated?"
        ) from None


def parse_idx(path):
    """Check one IDX file's header against its size: (type code, shape, data bytes)."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX file")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{path}: wrong magic number 0x{data[:4].hex()} (expected 0x0000 followed by a type "
            "code and the number of dimensions): not an IDX file"
        )
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated in the header")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    need = int(np.prod(shape)) * np.dtype(_IDX_TYPES[type_code]).itemsize
    body = memoryview(data)[4 + 4 * ndim:]
    if len(body) < need:
        raise ValueError(
            f"{path}: truncated: the header declares shape {shape} ({need} bytes) but only "
            f"{len(body)} bytes follow"
        )
    if len(body) > need:
        raise ValueError(f"{path}: {len(body) - need} unexpected bytes after the data")
    return type_code, shape, body


def read_idx(path) -> np.ndarray:
    """One IDX file (gzipped or not) as a NumPy array of its declared type and shape."""
    type_code, shape, body = parse_idx(path)
    dtype = np.dtype(_IDX_TYPES[type_code])
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


class ImageDataset(Dataset):
    """Images ``data`` (N, C, H, W) and labels ``targets`` (N,) held as arrays; samples are
    ``(transform(data[i]), targets[i])``."""

    def __init__(self, data, targets, transform=None):
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        x = self.data[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]


class CIFAR10(ImageDataset):
    """CIFAR-10 from the *binary* version (``data_batch_1.bin`` ... ``test_batch.bin``) in ``root``.

    Each record is one label byte and 3,072 pixel bytes (R, G, B planes of 32x32). The pickled
    Python version is never read. Samples are (image float32 (3, 32, 32) in [0, 1], label).
    """

    _record = 1 + 3 * 32 * 32

    def __init__(self, root, train: bool = True, transform=None):
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] if train else ["test_batch.bin"]
        root = os.fspath(root)
        sub = os.path.join(root, "cifar-10-batches-bin")
        if os.path.isdir(sub):
            root = sub
        images, labels = [], []
        for name in names:
            path = os.path.join(root, name)
            raw = _read_bytes(path)
            if len(raw) == 0 or len(raw) % self._record:
                raise ValueError(
                    f"{path}: {len(raw)} bytes is not a whole number of {self._record}-byte "
                    "records: truncated or not a CIFAR-10 binary file"
                )
            rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, self._record)
            if rec[:, 0].max() > 9:
                raise ValueError(f"{path}: label {rec[:, 0].max()} is out of range 0..9")
            labels.append(rec[:, 0].astype(np.int64))
            images.append(rec[:, 1:].reshape(-1, 3, 32, 32))
        super().__init__(np.concatenate(images).astype(np.float32) / 255.0,
                         np.concatenate(labels), transform)
