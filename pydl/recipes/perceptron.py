"""A perceptron on 2-D points (``pydl train --model perceptron --dataset separable|xor``).

``separable``: two classes split by a straight line with a gap between them. The perceptron
rule finds a separating line and stops (every point right), as the perceptron convergence
theorem promises; a sigmoid neuron trained by gradient descent on binary cross-entropy
separates them too.

``xor``: four clusters at the corners of a square, opposite corners in the same class. No
straight line separates them, so both neurons stay at 75% or below; a 2-layer MLP (one
hidden layer) bends the boundary and gets every point right. That is why XOR needs a hidden
layer (Minsky and Papert, 1969).

The points are drawn with a fixed seed (``DATA_SEED``) so every run sees the same data;
``--seed`` sets the weights' initialisation and the order of the examples. Accuracy is
measured on the points the models were trained on: the question here is what a model can
represent, not how well it generalises.
"""

from __future__ import annotations

import time

import numpy as np

from .common import Spec, out_path

SPECS = {
    "perceptron": Spec("single neuron: perceptron rule (step) and gradient descent (sigmoid); "
                       "XOR then needs an MLP", ("separable", "xor"),
                       epochs=50, lr=0.1, batch_size=1),
}

DATA_SEED = 0
N_POINTS = 200


def make_points(name: str, n: int = N_POINTS, seed: int = DATA_SEED):
    """(x, y): ``n`` points (n, 2) float32 and labels (n,) int64 in {0, 1}.

    separable: uniform in [-1, 1]^2, labelled by the line 0.8 x1 - 0.6 x2 + 0.1 = 0, with no
    point closer than 0.1 to it. xor: n/4 points around each corner (+-1, +-1) (std 0.15);
    class 1 where the two coordinates have opposite signs.
    """
    rng = np.random.default_rng(seed)
    if name == "separable":
        x = rng.uniform(-1, 1, size=(4 * n, 2))
        z = x @ np.array([0.8, -0.6]) + 0.1
        x, z = x[np.abs(z) >= 0.1][:n], z[np.abs(z) >= 0.1][:n]
        y = z > 0
    elif name == "xor":
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64)
        which = np.repeat(np.arange(4), n // 4)
        x = corners[which] + rng.normal(0, 0.15, size=(len(which), 2))
        y = np.array([0, 1, 1, 0])[which]
    else:
        raise ValueError(f"unknown dataset {name!r}; known: separable, xor")
    return x.astype(np.float32), y.astype(np.int64)


def train_perceptron_rule(model, x, y, epochs: int, lr: float, batch_size: int, seed: int):
    """The perceptron rule over shuffled batches until an epoch makes no mistake.

    Returns the number of epochs run (fewer than ``epochs`` when it converged).
    """
    import pydl

    device = model.linear.weight.device
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(x))
        xs, ys = pydl.tensor(x[order], device=device), pydl.tensor(y[order], device=device)
        mistakes = sum(model.perceptron_update(xs[i:i + batch_size], ys[i:i + batch_size], lr)
                       for i in range(0, len(x), batch_size))
        if mistakes == 0:
            return epoch
    return epochs


def predicted_labels(model, x):
    """0/1 labels from a trained ``Model``: one output (step or probability) or two logits."""
    scores = model.predict(x)
    return scores.argmax(1) if scores.shape[1] > 1 else (scores[:, 0] > 0.5).astype(np.int64)


def run(args) -> dict:
    import pydl

    from ..models import MLP
    from ..models.perceptron import Perceptron
    from ..train import Model

    x, y = make_points(args.dataset)
    trained = []  # (checkpoint name, label, Model, accuracy)

    def report(name, label, model):
        acc = float((predicted_labels(model, x) == y).mean())
        trained.append((name, label, model, acc))
        return acc

    # 1. the classic perceptron: step output, perceptron learning rule
    pydl.manual_seed(args.seed)
    step = Model(Perceptron(2, output="step")).to(args.device)
    print(f"pydl train: perceptron on {args.dataset} ({len(x)} points in 2-D), {args.epochs} "
          f"epochs, batch {args.batch_size}, lr {args.lr}, device {step.device}")
    start = time.perf_counter()
    ran = train_perceptron_rule(step.module, x, y, args.epochs, args.lr, args.batch_size, args.seed)
    acc = report("perceptron_step", "perceptron (step)", step)
    state = "converged" if acc == 1.0 else "stopped"
    print(f"perceptron (step, perceptron rule): accuracy {acc:.2%} ({state} after {ran} epochs)")

    # 2. the same neuron with a sigmoid, trained by gradient descent on binary cross-entropy
    pydl.manual_seed(args.seed)
    smooth = Model(Perceptron(2, output="sigmoid")).to(args.device)
    smooth.compile(optimizer=pydl.optim.SGD(smooth.parameters(), lr=args.lr),
                   loss="binary_crossentropy")
    smooth.fit(x, y.astype(np.float32), epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    acc = report("perceptron_sigmoid", "perceptron (sigmoid)", smooth)
    print(f"perceptron (sigmoid, gradient descent on BCE): accuracy {acc:.2%}")

    # 3. XOR: one hidden layer is enough
    if args.dataset == "xor":
        print("no straight line separates XOR, so a single neuron cannot pass 75%; "
              "add a hidden layer:")
        pydl.manual_seed(args.seed)
        mlp = Model(MLP(2, [8], 2, activation="tanh")).to(args.device)
        mlp.compile(optimizer=pydl.optim.SGD(mlp.parameters(), lr=args.lr, momentum=0.9),
                    loss="sparse_categorical_crossentropy")
        mlp.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
        acc = report("mlp", "MLP 2-8-2", mlp)
        print(f"MLP 2-8-2 (one tanh hidden layer, SGD with momentum): accuracy {acc:.2%}")
    seconds = time.perf_counter() - start
    print(f"done in {seconds:.1f} s")

    result = {f"{name}_accuracy": acc for name, _, _, acc in trained}
    files = []
    for name, _, model, _ in trained:
        files.append(out_path(args, f"{name}_{args.dataset}.safetensors"))
        model.save(files[-1])
    if args.plot:
        png = out_path(args, f"boundaries_{args.dataset}.png")
        files.append(plot_boundaries(trained, x, y, png,
                                     title=f"decision boundaries on {args.dataset}"))
    return {**result, "seconds": seconds, "device": str(step.device), "files": files}


def plot_boundaries(trained, x, y, path, title=None):
    """One panel per trained model: the class it predicts over the plane, and the points."""
    from ..train.history import _pyplot

    plt = _pyplot()
    lo, hi = x.min(0) - 0.3, x.max(0) + 0.3
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([g1.ravel(), g2.ravel()], 1).astype(np.float32)
    fig, axes = plt.subplots(1, len(trained), figsize=(4 * len(trained), 4), squeeze=False)
    for ax, (_, label, model, acc) in zip(axes[0], trained, strict=True):
        cls = predicted_labels(model, grid)
        ax.contourf(g1, g2, cls.reshape(g1.shape).astype(float), levels=[-0.5, 0.5, 1.5],
                    colors=["#cfe0f5", "#f8d4c8"])
        ax.scatter(x[y == 0, 0], x[y == 0, 1], s=10, c="#1f5fa8", label="class 0")
        ax.scatter(x[y == 1, 0], x[y == 1, 1], s=10, c="#c0392b", marker="^", label="class 1")
        ax.set_title(f"{label}: {acc:.0%}", fontsize=10)
        ax.set_aspect("equal")
    axes[0][0].legend(loc="lower left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
