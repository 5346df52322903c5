"""RNN, LSTM and GRU on sequence tasks (``pydl train --model rnn|lstm|gru``).

Two data sets, both generated on the fly by :mod:`pydl.data`:

* ``adding`` (the default): sequences of length 50 with two channels, random values and two
  marks; the target is the sum of the two marked values. Solving it means remembering a
  number seen up to 50 steps ago. The trivial model predicts the mean of the targets
  (MSE about 0.167); a model that really adds gets close to 0. ``adding100``: the same with
  sequences of length 100.
* ``sine``: windows of 64 steps of noisy sine waves of random frequency and phase; the
  target is the next value. The baseline repeats the last observed value.

The training loop is written out (not ``Model.fit``) because recurrent networks want their
gradients clipped between ``backward`` and ``step``: one unlucky batch can otherwise produce
a gradient large enough to throw the weights far off (exploding gradients).
"""

from __future__ import annotations

import time

import numpy as np

from .common import Spec, out_path

_DATASETS = ("adding", "sine", "adding100")
_TASKS = "adding problem (length 50 or 100) or noisy-sine forecast"
SPECS = {
    "rnn": Spec(f"Elman RNN (tanh) regressor: {_TASKS}", _DATASETS, epochs=20, lr=2e-3,
                batch_size=64),
    "lstm": Spec(f"LSTM regressor: {_TASKS}", _DATASETS, epochs=20, lr=2e-3, batch_size=64),
    "gru": Spec(f"GRU regressor: {_TASKS}", _DATASETS, epochs=20, lr=2e-3, batch_size=64),
}

HIDDEN_SIZE = 64
CLIP_NORM = 1.0  # max global gradient norm
ADDING_LENGTHS = {"adding": 50, "adding100": 100}
SINE_LENGTH = 64
N_TRAIN = {"adding": 10_000, "adding100": 10_000, "sine": 2_000}
N_TEST = 1_000


def make_data(dataset: str, seed: int):
    """(x_train, y_train, x_test, y_test, baseline test MSE, baseline name).

    Train and test come from different seeds, so no test sequence was seen in training.
    """
    from ..data import adding_problem, noisy_sine

    if dataset in ADDING_LENGTHS:
        length = ADDING_LENGTHS[dataset]
        x_tr, y_tr = adding_problem(N_TRAIN[dataset], length, seed=seed)
        x_te, y_te = adding_problem(N_TEST, length, seed=seed + 10_000)
        baseline = float(((y_te - y_tr.mean()) ** 2).mean())
        return x_tr, y_tr, x_te, y_te, baseline, "predict the mean"
    if dataset == "sine":
        x_tr, y_tr = noisy_sine(N_TRAIN["sine"], SINE_LENGTH, seed=seed)
        x_te, y_te = noisy_sine(N_TEST, SINE_LENGTH, seed=seed + 10_000)
        baseline = float(((y_te - x_te[:, -1]) ** 2).mean())
        return x_tr, y_tr, x_te, y_te, baseline, "repeat the last value"
    raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(_DATASETS)}")


def build(model: str, dataset: str, seed: int):
    import pydl

    from ..models.rnn import SequenceRegressor

    pydl.manual_seed(seed)
    input_size = 1 if dataset == "sine" else 2
    return SequenceRegressor(model, input_size, HIDDEN_SIZE, num_layers=1, output_size=1)


def predict(net, x, device, batch_size=500):
    """The network's outputs for the array ``x``, in eval mode without a graph, as NumPy."""
    import pydl

    net.eval()
    with pydl.no_grad():
        outs = [net(pydl.tensor(x[i:i + batch_size], device=device)).numpy()
                for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def rollout(net, window, steps, device):
    """Forecast ``steps`` values past each (N, L, 1) window, feeding predictions back in."""
    window = np.array(window, dtype=np.float32)
    preds = []
    for _ in range(steps):
        nxt = predict(net, window, device)  # (N, 1)
        preds.append(nxt[:, 0])
        window = np.concatenate([window[:, 1:], nxt[:, :, None]], axis=1)
    return np.stack(preds, axis=1)


def run(args) -> dict:
    import pydl

    from ..nn import functional as F
    from ..nn.utils import clip_grad_norm_
    from ..train import resolve_device

    device = resolve_device(args.device)
    x_tr, y_tr, x_te, y_te, baseline, baseline_name = make_data(args.dataset, args.seed)
    net = build(args.model, args.dataset, args.seed).to(device)
    opt = pydl.optim.Adam(net.parameters(), lr=args.lr)
    sched = pydl.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    rng = np.random.default_rng(args.seed)
    print(f"pydl train: {args.model} on {args.dataset} ({len(x_tr)} train / {len(x_te)} test "
          f"sequences of length {x_tr.shape[1]}), hidden {HIDDEN_SIZE}, {args.epochs} epochs, "
          f"batch {args.batch_size}, Adam lr {args.lr} (cosine), clip {CLIP_NORM}, device {device}")
    print(f"baseline ({baseline_name}): test MSE {baseline:.4f}")

    train_mse, test_mse = [], []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(len(x_tr))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            xb = pydl.tensor(x_tr[idx], device=device)
            yb = pydl.tensor(y_tr[idx], device=device)
            loss = F.mse_loss(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(net.parameters(), CLIP_NORM)
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        train_mse.append(total / len(x_tr))
        test_mse.append(float(((predict(net, x_te, device) - y_te) ** 2).mean()))
        if not args.quiet:
            print(f"epoch {epoch + 1:3d}/{args.epochs}  train MSE {train_mse[-1]:.5f}  "
                  f"test MSE {test_mse[-1]:.5f}  ({time.perf_counter() - start:.1f} s)")
    seconds = time.perf_counter() - start
    mse = test_mse[-1]
    print(f"test MSE {mse:.5f} vs baseline ({baseline_name}) {baseline:.5f} "
          f"({mse / baseline:.1%} of the baseline) after {seconds:.1f} s")

    ckpt = out_path(args, f"{args.model}_{args.dataset}.safetensors")
    pydl.io.save(net.state_dict(), ckpt)
    files = [ckpt]
    if args.plot:
        files += _plots(args, net, device, train_mse, test_mse, baseline, baseline_name)
    return {"test_mse": mse, "baseline_mse": baseline, "baseline": baseline_name,
            "train_mse": train_mse[-1], "seconds": seconds, "device": str(device),
            "files": files}


def _plots(args, net, device, train_mse, test_mse, baseline, baseline_name):
    from ..data import noisy_sine
    from ..train.history import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    epochs = np.arange(1, len(train_mse) + 1)
    ax.plot(epochs, train_mse, label="train MSE")
    ax.plot(epochs, test_mse, label="test MSE")
    ax.axhline(baseline, color="gray", linestyle="--", label=f"baseline: {baseline_name}")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(f"{args.model} on {args.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    files = [out_path(args, "loss.png")]
    fig.savefig(files[0], dpi=100)
    plt.close(fig)

    if args.dataset == "sine":
        # four unseen series: the 64-step window, then 40 steps forecast from it one at a time
        steps = 40
        x, truth = noisy_sine(4, SINE_LENGTH, horizon=steps, seed=args.seed + 20_000)
        forecast = rollout(net, x, steps, device)
        fig, axes = plt.subplots(2, 2, figsize=(9, 5), sharex=True)
        # the future curves start at the last observed point, so the lines join up
        t_in, t_out = np.arange(SINE_LENGTH), np.arange(SINE_LENGTH - 1, SINE_LENGTH + steps)
        for k, ax in enumerate(axes.ravel()):
            last = x[k, -1:, 0]
            ax.plot(t_in, x[k, :, 0], color="black", lw=1, label="observed")
            ax.plot(t_out, np.concatenate([last, truth[k]]), color="black", lw=1, ls=":",
                    label="truth")
            ax.plot(t_out, np.concatenate([last, forecast[k]]), color="tab:red", lw=1.5,
                    label=f"{args.model} forecast")
            ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f"{args.model}: {steps}-step forecast, each prediction fed back as input")
        fig.tight_layout()
        files.append(out_path(args, "forecast.png"))
        fig.savefig(files[-1], dpi=100)
        plt.close(fig)
    return files
