"""Deep learning against classical baselines on the 8x8 digits, measured in one run.

Is a neural network worth it on this data? Every method is trained on the training part of
``split_digits(seed)`` and scored on its held-out test images, for each seed:

- ``logistic regression``: multinomial (softmax) regression on standardized pixels, in
  NumPy, full-batch gradient descent with momentum; L2 strength picked by 5-fold
  cross-validation on the training part only;
- ``k-nearest neighbours``: Euclidean distance on the raw pixels, majority vote of the
  k nearest training images (ties go to the nearest); k picked by 5-fold cross-validation;
- ``pydl MLP`` and ``pydl CNN``: ``pydl train --model mlp|cnn`` with their default settings.

Each row gives the test accuracy per seed, the mean, and the seconds to fit (wall and CPU
time; hyper-parameter search included for the baselines). Every library runs on one thread
(OpenBLAS, pydl's C++ kernels), so the times compare the same hardware and hold up on a
shared machine.

    python benchmarks/baseline_digits.py                 # seeds 0 1 2, all methods
    python benchmarks/baseline_digits.py --no-cnn        # skip the CNN (the slow row)

Writes benchmarks/results/baseline_digits.md.
"""

from __future__ import annotations

import os

if __name__ == "__main__":
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import load_note, machine_info, markdown_table, print_table, results_dir  # noqa: E402

from pydl.recipes.common import split_digits  # noqa: E402

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
K_GRID = (1, 3, 5, 7)


# -- multinomial logistic regression ------------------------------------------------------
def fit_logistic(x, y, l2, steps=500, lr=0.5, momentum=0.9):
    """Weights (D+1, C) of softmax regression: mean cross-entropy + l2/2 |W|^2 (no bias
    penalty), minimised by full-batch gradient descent with momentum. ``x``: (N, D)."""
    n, classes = len(x), int(y.max()) + 1
    xb = np.hstack([x, np.ones((n, 1))])
    onehot = np.eye(classes)[y]
    w = np.zeros((xb.shape[1], classes))
    velocity = np.zeros_like(w)
    penalty = np.full((xb.shape[1], 1), l2)
    penalty[-1] = 0.0
    for _ in range(steps):
        z = xb @ w
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        grad = xb.T @ (p - onehot) / n + penalty * w
        velocity = momentum * velocity - lr * grad
        w += velocity
    return w


def predict_logistic(w, x):
    return (np.hstack([x, np.ones((len(x), 1))]) @ w).argmax(1)


class Standardize:
    """Per-pixel (x - mean) / std with the training set's statistics (std 1 where constant)."""

    def __init__(self, x):
        self.mean, std = x.mean(0), x.std(0)
        self.std = np.where(std > 1e-6, std, 1.0)

    def __call__(self, x):
        return (x - self.mean) / self.std


# -- k-nearest neighbours -----------------------------------------------------------------
def knn_predict(x_train, y_train, x, k):
    """Majority vote among the k nearest training points (Euclidean); ties: the nearest wins."""
    d = (x ** 2).sum(1)[:, None] - 2 * x @ x_train.T + (x_train ** 2).sum(1)[None, :]
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    labels = y_train[nearest]  # (N, k), nearest first
    classes = int(y_train.max()) + 1
    votes = np.zeros((len(x), classes))
    for j in range(k):  # earlier (nearer) neighbours add a tiny bonus to break ties
        votes[np.arange(len(x)), labels[:, j]] += 1 + 1e-6 * (k - j)
    return votes.argmax(1)


# -- model selection on the training part only --------------------------------------------
def cross_validate(x, y, candidates, score, folds=5, seed=0):
    """The candidate with the best mean accuracy over ``folds`` splits of (x, y)."""
    order = np.random.default_rng(seed).permutation(len(x))
    parts = np.array_split(order, folds)
    means = []
    for c in candidates:
        accs = []
        for i in range(folds):
            va = parts[i]
            tr = np.concatenate([parts[j] for j in range(folds) if j != i])
            accs.append(score(c, x[tr], y[tr], x[va], y[va]))
        means.append(np.mean(accs))
    return candidates[int(np.argmax(means))]


def _flat(*images):
    return [im.reshape(len(im), -1).astype(np.float64) for im in images]


def logistic_regression(x_tr, y_tr, x_te, y_te, seed):
    x_tr, x_te = _flat(x_tr, x_te)

    def score(l2, xa, ya, xb, yb):
        scale = Standardize(xa)
        return np.mean(predict_logistic(fit_logistic(scale(xa), ya, l2), scale(xb)) == yb)

    l2 = cross_validate(x_tr, y_tr, L2_GRID, score)
    scale = Standardize(x_tr)
    w = fit_logistic(scale(x_tr), y_tr, l2)
    return np.mean(predict_logistic(w, scale(x_te)) == y_te), f"L2 {l2:g}"


def nearest_neighbours(x_tr, y_tr, x_te, y_te, seed):
    x_tr, x_te = _flat(x_tr, x_te)

    def score(k, xa, ya, xb, yb):
        return np.mean(knn_predict(xa, ya, xb, k) == yb)

    k = cross_validate(x_tr, y_tr, K_GRID, score)
    return np.mean(knn_predict(x_tr, y_tr, x_te, k) == y_te), f"k {k}"


def pydl_recipe(model):
    """``pydl train --model MODEL`` with its defaults (output silenced), as a method."""

    def method(x_tr, y_tr, x_te, y_te, seed):
        from pydl.cli import parse, run

        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
            args = parse(["--model", model, "--device", "cpu", "--quiet", "--seed", str(seed),
                          "--out", out])
            result = run(args)
        return result["test_accuracy"], f"{args.epochs} epochs"

    return method


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN row")
    args = parser.parse_args(argv)

    methods = {
        "logistic regression (NumPy)": logistic_regression,
        "k-nearest neighbours (NumPy)": nearest_neighbours,
        "pydl MLP (pydl train --model mlp)": pydl_recipe("mlp"),
    }
    if not args.no_cnn:
        methods["pydl CNN (pydl train --model cnn)"] = pydl_recipe("cnn")

    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for name, method in methods.items():
        accs, wall, cpu, chosen = [], [], [], []
        for seed in args.seeds:
            t0, c0 = time.perf_counter(), time.process_time()
            acc, setting = method(*split_digits(seed), seed)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            accs.append(float(acc))
            chosen.append(setting)
            print(f"  {name}, seed {seed}: {acc:.2%} ({setting}; {wall[-1]:.1f} s, CPU time "
                  f"{cpu[-1]:.1f} s)", flush=True)
        settings = chosen[0] if len(set(chosen)) == 1 else " / ".join(chosen)
        rows.append([name] + [f"{a:.2%}" for a in accs] + [
            f"{np.mean(accs):.2%}", f"{np.mean(wall):.1f}", f"{np.mean(cpu):.1f}", settings])

    headers = ["method"] + [f"seed {s}" for s in args.seeds] + [
        "mean", "seconds to fit", "CPU seconds", "setting"]
    print_table(headers, rows, title="test accuracy on split_digits(seed)'s held-out images")
    info = machine_info(threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"))
    info["machine_load"] = load_note(start_load)
    lines = [
        "# Digits: pydl networks against classical baselines",
        "",
        "Written by `python benchmarks/baseline_digits.py`; see its docstring for the methods.",
        "Test accuracy on the held-out images of `split_digits(seed)` (359 of the 1,797 8x8",
        "digits; the other 1,438 train). The baselines' hyper-parameter (`setting`) is chosen",
        "by 5-fold cross-validation on the training images only (per seed, in that order).",
        "`seconds to fit` is the mean wall time per seed, that search included, on one thread;",
        "`CPU seconds` the process's CPU time, which waiting for a busy core does not inflate.",
        "",
        markdown_table(headers, rows),
        "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
        "",
    ]
    os.makedirs(results_dir(), exist_ok=True)
    path = os.path.join(results_dir(), "baseline_digits.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
