"""``History``: what ``fit`` returns, with ``plot(path)``; ``plot_confusion_matrix``."""

from __future__ import annotations

import numpy as np

__all__ = ["History", "plot_confusion_matrix"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install 'pydl[plot]' (or pip install matplotlib)"
        ) from None
    return plt


class History:
    """Per-epoch logs: ``history.history["loss"]``, ``history.epoch``; ``plot(path)`` draws them."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def append(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"

    def plot(self, path, title=None):
        """Save loss and metric curves (train and validation) as a PNG at ``path``."""
        plt = _pyplot()
        names = [k for k in self.history if not k.startswith("val_") and k != "lr"]
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        epochs = np.arange(1, len(self.epoch) + 1)
        for ax, name in zip(axes[0], names):
            ax.plot(epochs, self.history[name], label=f"train {name}")
            if f"val_{name}" in self.history:
                ax.plot(epochs, self.history[f"val_{name}"], label=f"validation {name}")
            ax.set_xlabel("epoch")
            ax.set_title(name)
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def plot_confusion_matrix(matrix, path, class_names=None, title="confusion matrix"):
    """Save a confusion matrix (counts, true class by row) as an annotated PNG."""
    plt = _pyplot()
    m = np.asarray(matrix)
    n = m.shape[0]
    names = class_names or [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * n, 1.0 + 0.5 * n))
    ax.imshow(m, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(n), names)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
