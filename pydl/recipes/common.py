"""Pieces every training recipe shares: defaults, the digits split, output files, image grids."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Spec:
    """What ``pydl train --help`` says about a model, and its default settings."""

    help: str
    datasets: tuple = ("digits",)
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    # dataset -> {"epochs": ..., "lr": ..., "batch_size": ...} where it differs from the above
    per_dataset: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line for ``pydl train --help``: what it is, its data and its defaults."""
        def settings(d):
            return f"{d['epochs']} epochs, lr {d['lr']:g}, batch {d['batch_size']}"

        others = "".join(f"; on {name}: {settings(self.defaults(name))}"
                         for name in self.per_dataset)
        return (f"{self.help} (data: {', '.join(self.datasets)}; defaults: "
                f"{settings(self.defaults(self.datasets[0]))}{others})")

    def defaults(self, dataset: str) -> dict:
        """{"epochs", "lr", "batch_size"} for training on ``dataset``."""
        out = {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size}
        out.update(self.per_dataset.get(dataset, {}))
        return out


# the image datasets a recipe can train on: name -> (image side, number of classes)
IMAGE_DATASETS = {"digits": 8, "mnist": 28, "fashion_mnist": 28}


def load_images(dataset: str, seed: int):
    """(x_train, y_train, x_test, y_test) of an image dataset, (N, 1, H, W) float32 in [0, 1].

    ``digits``: the shipped 8x8 digits, split by ``split_digits(seed)``. ``mnist`` and
    ``fashion_mnist``: their official 60,000 / 10,000 split (``pydl.data.mnist``), from files
    on this machine (``make data`` installs them).
    """
    from .. import data

    if dataset == "digits":
        return split_digits(seed)
    if dataset not in IMAGE_DATASETS:
        raise ValueError(f"unknown image dataset {dataset!r}; known: {', '.join(IMAGE_DATASETS)}")
    (x_tr, y_tr), (x_te, y_te) = getattr(data, dataset)()
    return x_tr, y_tr, x_te, y_te


def split_digits(seed: int, test_fraction: float = 0.2):
    """The shipped digits as (x_train, y_train, x_test, y_test): (N, 1, 8, 8) float32 in [0, 1].

    The split is stratified by class and fixed by ``seed``, so every model is scored on the
    same held-out images.
    """
    from ..data import load_digits

    x, y = load_digits()
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_idx.append(idx[: int(round(len(idx) * test_fraction))])
    test = np.sort(np.concatenate(test_idx))
    train = rng.permutation(np.setdiff1d(np.arange(len(y)), test))
    return x[train], y[train], x[test], y[test]


def out_path(args, name: str) -> str:
    """``args.out/name``, creating the directory."""
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)


def write_result(args, result: dict) -> str:
    path = out_path(args, "result.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=float)
    return path


def save_image_grid(images, path: str, nrow: int = 8, title: str | None = None,
                    vmin: float = 0.0, vmax: float = 1.0) -> str:
    """Save (N, H, W) or (N, 1, H, W) images as one PNG grid, ``nrow`` images per row."""
    from ..train.history import _pyplot

    plt = _pyplot()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        if images.shape[1] != 1:
            raise ValueError(
                f"save_image_grid takes single-channel images, got shape {images.shape}"
            )
        images = images[:, 0]
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"save_image_grid takes (N, H, W) images, got shape {images.shape}")
    n, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + 1) + 1, nrow * (w + 1) + 1), vmin, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, nrow)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = img
    fig, ax = plt.subplots(figsize=(max(2.0, nrow * 0.5), max(1.5, rows * 0.5 + 0.4)))
    ax.imshow(grid, cmap="gray_r", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
