"""``pydl train``: train a model on a shipped dataset, report test accuracy, save the results."""

from __future__ import annotations

import json
import os
import time

import numpy as np

MODELS = ("mlp", "cnn")
DATASETS = ("digits",)


def add_arguments(parser):
    parser.add_argument("--model", choices=MODELS, default="cnn", help="architecture (default cnn)")
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="data shipped with pydl (default digits)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 30 (mlp), 20 (cnn)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (Adam; default 1e-3, cnn 3e-3)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/train", help="output directory (checkpoint, plots)")
    parser.add_argument("--plot", action="store_true", help="also write training curves and the confusion matrix as PNG")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress")


def split_digits(seed: int, test_fraction: float = 0.2):
    """The shipped digits, split into train and test sets with a fixed seed, stratified."""
    from .data import load_digits

    x, y = load_digits()
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_idx.append(idx[: int(round(len(idx) * test_fraction))])
    test = np.sort(np.concatenate(test_idx))
    train = np.setdiff1d(np.arange(len(y)), test)
    train = rng.permutation(train)
    return x[train], y[train], x[test], y[test]


def build(model: str, seed: int):
    import pydl
    from .models import CNN, MLP

    pydl.manual_seed(seed)
    if model == "mlp":
        return MLP(64, [256, 128], 10, activation="relu", dropout=0.1)
    return CNN(in_channels=1, num_classes=10, width=16)


def run(args) -> dict:
    import pydl
    from .data import transforms as T
    from .train import Model, confusion_matrix, plot_confusion_matrix

    epochs = args.epochs or (30 if args.model == "mlp" else 20)
    lr = args.lr or (1e-3 if args.model == "mlp" else 3e-3)
    x_tr, y_tr, x_te, y_te = split_digits(args.seed)
    model = Model(build(args.model, args.seed))
    model.to(args.device)
    model.compile(optimizer=pydl.optim.Adam(model.parameters(), lr=lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.scheduler = pydl.optim.lr_scheduler.CosineAnnealingLR(model.optimizer, T_max=epochs)
    augment = None
    if args.model == "cnn":
        augment = T.Compose([T.RandomAffine(8, translate=(0.1, 0.1), scale=(0.9, 1.1))],
                            seed=args.seed)
    print(f"pydl train: {args.model} on {args.dataset} ({len(x_tr)} train / {len(x_te)} test), "
          f"{epochs} epochs, batch {args.batch_size}, Adam lr {lr}, device {model.device}")
    start = time.perf_counter()
    history = model.fit(x_tr, y_tr, epochs=epochs, batch_size=args.batch_size,
                        validation_data=(x_te, y_te), verbose=0 if args.quiet else 1,
                        augment=augment)
    seconds = time.perf_counter() - start
    scores = model.predict(x_te)
    acc = float((scores.argmax(1) == y_te).mean())
    cm = confusion_matrix(y_te, scores, num_classes=10)
    print(f"test accuracy {acc:.2%} after {seconds:.1f} s")
    print("confusion matrix (rows: true digit, columns: predicted):")
    print("     " + " ".join(f"{j:4d}" for j in range(10)))
    for i in range(10):
        print(f"{i:4d} " + " ".join(f"{v:4d}" for v in cm[i]))
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, f"{args.model}_{args.dataset}.safetensors")
    model.save(ckpt)
    written = [ckpt]
    if args.plot:
        written.append(history.plot(os.path.join(args.out, "history.png"),
                                    title=f"{args.model} on {args.dataset}"))
        written.append(plot_confusion_matrix(cm, os.path.join(args.out, "confusion.png")))
    result = {"model": args.model, "dataset": args.dataset, "epochs": epochs,
              "test_accuracy": acc, "seconds": seconds, "device": str(model.device)}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    written.append(os.path.join(args.out, "result.json"))
    print("wrote " + ", ".join(written))
    return result
