"""Transformers on the shipped texts (``pydl train --model charlm|transformer``).

``charlm``: a decoder-only character language model (``CharTransformer``) trained on the first
90% of *Alice's Adventures in Wonderland* and scored on the last 10%: the mean cross-entropy
per character (nats) against two baselines, the unigram model (character frequencies, the
entropy of the text's letters) and the bigram model (frequencies given the previous character);
then it writes a sample.

``transformer``: an encoder (``TransformerClassifier``) that tells 64-character snippets of
Carroll's *Alice* from snippets of Baum's *Dorothy and the Wizard in Oz*, scored on held-out
blocks of both books against chance and against a bag-of-characters (unigram naive Bayes)
classifier.
"""

from __future__ import annotations

import math
import re
import time

import numpy as np

from .common import Spec, out_path

SPECS = {
    "transformer": Spec("Transformer encoder: which book is a 64-character snippet from, "
                        "Alice or Oz?", ("alice-oz",), epochs=20, lr=1e-3, batch_size=32),
    "charlm": Spec("decoder-only character Transformer language model (causal self-attention)",
                   ("alice",), epochs=8, lr=3e-3, batch_size=32),
}

CONTEXT = 64          # characters the models see at once
HELD_OUT = 0.1        # charlm: last fraction of the text kept for scoring
CLIP_NORM = 1.0
SAMPLE_PROMPT = "Alice "


# -- the language model ----------------------------------------------------------------------
def char_baselines(train, test, vocab_size):
    """Held-out cross-entropy (nats/char) of the unigram and bigram models fit on ``train``.

    Both use add-one (Laplace) smoothing so unseen characters get a finite cost.
    """
    uni = np.bincount(train, minlength=vocab_size) + 1.0
    unigram = float(-np.log(uni[test] / uni.sum()).mean())
    pairs = np.ones((vocab_size, vocab_size))
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    pairs /= pairs.sum(1, keepdims=True)
    bigram = float(-np.log(pairs[test[:-1], test[1:]]).mean())
    return unigram, bigram


def lm_loss(model, ids, device, batch_size=64):
    """Mean next-character cross-entropy (nats) over non-overlapping CONTEXT-long windows."""
    import pydl

    from ..nn import functional as F

    n = (len(ids) - 1) // CONTEXT
    x = ids[: n * CONTEXT].reshape(n, CONTEXT)
    y = ids[1: n * CONTEXT + 1].reshape(n, CONTEXT)
    model.eval()
    total = 0.0
    with pydl.no_grad():
        for i in range(0, n, batch_size):
            logits = model(pydl.tensor(x[i:i + batch_size], device=device))
            target = pydl.tensor(y[i:i + batch_size].reshape(-1), device=device)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target,
                                     reduction="sum").item()
    model.train()
    return total / (n * CONTEXT)


def warmup_cosine(total_steps, warmup=50, floor=0.1):
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``."""
    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


def run_charlm(args) -> dict:
    import pydl

    from ..data import load_text
    from ..models.transformer import CharTransformer
    from ..nn import functional as F
    from ..nn.utils import clip_grad_norm_
    from ..train import resolve_device

    device = resolve_device(args.device)
    text = load_text(args.dataset)
    vocab = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocab)}
    ids = np.array([lookup[c] for c in text], dtype=np.int64)
    cut = int(len(ids) * (1 - HELD_OUT))
    train, test = ids[:cut], ids[cut:]
    unigram, bigram = char_baselines(train, test, len(vocab))

    pydl.manual_seed(args.seed)
    model = CharTransformer(len(vocab), d_model=128, nhead=4, num_layers=4, dim_feedforward=512,
                            max_len=CONTEXT, dropout=0.1).to(device)
    opt = pydl.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    steps_per_epoch = len(train) // (args.batch_size * CONTEXT)
    sched = pydl.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(args.epochs * steps_per_epoch))
    rng = np.random.default_rng(args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"pydl train: charlm on {args.dataset} ({len(train):,} train / {len(test):,} held-out "
          f"characters, {len(vocab)} distinct), {n_params:,} parameters, context {CONTEXT}, "
          f"{args.epochs} epochs x {steps_per_epoch} steps, batch {args.batch_size}, AdamW lr "
          f"{args.lr} (warm-up + cosine), device {device}")
    print(f"baselines on the held-out text: unigram {unigram:.3f} nats/char, "
          f"bigram {bigram:.3f} nats/char")

    history = {"loss": [], "val_loss": []}
    offsets = np.arange(CONTEXT + 1)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        total = 0.0
        for _ in range(steps_per_epoch):
            # random windows of CONTEXT + 1 characters: inputs are [:-1], targets [1:]
            rows = train[rng.integers(0, len(train) - CONTEXT - 1, args.batch_size)[:, None]
                         + offsets]
            logits = model(pydl.tensor(rows[:, :-1], device=device))
            loss = F.cross_entropy(logits.reshape(-1, len(vocab)),
                                   pydl.tensor(rows[:, 1:].reshape(-1), device=device))
            opt.zero_grad()
            loss.backward()
            clip_grad_norm_(model.parameters(), CLIP_NORM)
            opt.step()
            sched.step()
            total += loss.item()
        history["loss"].append(total / steps_per_epoch)
        history["val_loss"].append(lm_loss(model, test, device))
        if not args.quiet:
            print(f"epoch {epoch + 1:3d}/{args.epochs}  train {history['loss'][-1]:.3f}  "
                  f"held-out {history['val_loss'][-1]:.3f} nats/char  "
                  f"({time.perf_counter() - start:.1f} s)")
    seconds = time.perf_counter() - start
    val = history["val_loss"][-1]
    print(f"held-out cross-entropy {val:.3f} nats/char ({val / math.log(2):.2f} bits) vs "
          f"unigram {unigram:.3f}, bigram {bigram:.3f}, after {seconds:.1f} s")

    pydl.manual_seed(args.seed)
    prompt = [lookup[c] for c in SAMPLE_PROMPT]
    sample = "".join(vocab[i] for i in model.generate(prompt, 400, temperature=0.8))
    print("sample (temperature 0.8):\n" + sample)

    ckpt = out_path(args, f"charlm_{args.dataset}.safetensors")
    pydl.io.save({"model": model.state_dict(), "vocab": "".join(vocab),
                  "context": CONTEXT}, ckpt)
    files = [ckpt]
    if args.plot:
        files.append(_plot_curves(args, history, "cross-entropy (nats/char)",
                                  {"unigram": unigram, "bigram": bigram}))
    return {"val_loss": val, "unigram_loss": unigram, "bigram_loss": bigram,
            "train_loss": history["loss"][-1], "sample": sample, "seconds": seconds,
            "device": str(device), "files": files}


def _plot_curves(args, history, ylabel, lines):
    from ..train.history import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax.plot(epochs, history["loss"], marker="o", label="train")
    ax.plot(epochs, history["val_loss"], marker="o", label="held-out")
    for name, value in lines.items():
        ax.axhline(value, linestyle="--", linewidth=1, color="gray")
        ax.text(epochs[-1], value, f" {name}", va="bottom", ha="right", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{args.model} on {args.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out_path(args, "loss.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- the classifier --------------------------------------------------------------------------
_TYPOGRAPHY = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--",
               "\u00f9": "u"}


def plain(text: str) -> str:
    """The two editions typeset differently (curly vs straight quotes, em dash vs --), and
    lines break in different places: map both to plain ASCII and one space between words, so
    the classifier must read the words, not the typesetting."""
    for fancy, ascii_ in _TYPOGRAPHY.items():
        text = text.replace(fancy, ascii_)
    return re.sub(r"\s+", " ", text).strip()


def snippet_split(seed: int, block: int = 1024, test_every: int = 4, stride: int = 16):
    """(x_train, y_train, x_test, y_test, vocab): 64-character snippets, label 0 Alice, 1 Oz.

    Each book is cut into ``block``-character blocks; every ``test_every``-th block is test
    text. Snippets never cross a block, so no test character is seen in training. Train
    snippets start every ``stride`` characters, test snippets do not overlap. Alice (the
    longer book) is subsampled so both classes have the same number of snippets.
    """
    from ..data import load_text

    books = [plain(load_text("alice")), plain(load_text("oz"))]
    vocab = sorted(set("".join(books)))
    lookup = {c: i for i, c in enumerate(vocab)}
    rng = np.random.default_rng(seed)
    parts = {"train": [[], []], "test": [[], []]}
    for label, book in enumerate(books):
        ids = np.array([lookup[c] for c in book], dtype=np.int64)
        for b, lo in enumerate(range(0, len(ids), block)):
            split = "test" if b % test_every == test_every - 1 else "train"
            step = stride if split == "train" else CONTEXT
            hi = min(lo + block, len(ids))
            parts[split][label] += [ids[i:i + CONTEXT] for i in range(lo, hi - CONTEXT + 1, step)]
    out = []
    for split in ("train", "test"):
        alice, oz = parts[split]
        keep = rng.choice(len(alice), size=len(oz), replace=False)
        x = np.array([alice[i] for i in np.sort(keep)] + oz)
        y = np.array([0] * len(oz) + [1] * len(oz), dtype=np.int64)
        order = rng.permutation(len(y))
        out += [x[order], y[order]]
    return (*out, vocab)


def naive_bayes_accuracy(x_tr, y_tr, x_te, y_te, vocab_size):
    """Test accuracy of a bag-of-characters classifier: per-class character frequencies
    (add-one smoothed), each snippet scored by the sum of its characters' log-probabilities."""
    logp = []
    for c in (0, 1):
        counts = np.bincount(x_tr[y_tr == c].ravel(), minlength=vocab_size) + 1.0
        logp.append(np.log(counts / counts.sum()))
    scores = np.stack([logp[c][x_te].sum(1) for c in (0, 1)], axis=1)
    return float((scores.argmax(1) == y_te).mean())


def run_classifier(args) -> dict:
    import pydl

    from ..models.transformer import TransformerClassifier
    from ..train import Model

    x_tr, y_tr, x_te, y_te, vocab = snippet_split(args.seed)
    bag = naive_bayes_accuracy(x_tr, y_tr, x_te, y_te, len(vocab))
    pydl.manual_seed(args.seed)
    net = TransformerClassifier(len(vocab), 2, d_model=64, nhead=4, num_layers=2,
                                dim_feedforward=128, max_len=CONTEXT, dropout=0.1)
    model = Model(net)
    model.to(args.device)
    model.compile(optimizer=pydl.optim.AdamW(net.parameters(), lr=args.lr),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  mixed_precision=getattr(args, "precision", "fp32"))
    model.scheduler = pydl.optim.lr_scheduler.CosineAnnealingLR(model.optimizer,
                                                                T_max=args.epochs)
    print(f"pydl train: transformer on {args.dataset} ({len(x_tr)} train / {len(x_te)} test "
          f"snippets of {CONTEXT} characters, half from each book), "
          f"{sum(p.numel() for p in net.parameters()):,} parameters, {args.epochs} epochs, "
          f"batch {args.batch_size}, AdamW lr {args.lr} (cosine), device {model.device}")
    print(f"baselines: chance 50.0%, bag of characters (naive Bayes) {bag:.1%}")
    start = time.perf_counter()
    history = model.fit(x_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(x_te, y_te), verbose=0 if args.quiet else 1)
    seconds = time.perf_counter() - start
    acc = float((model.predict(x_te).argmax(1) == y_te).mean())
    print(f"test accuracy {acc:.1%} (chance 50.0%, bag of characters {bag:.1%}) "
          f"after {seconds:.1f} s")
    ckpt = out_path(args, f"transformer_{args.dataset}.safetensors")
    model.save(ckpt)
    files = [ckpt]
    if args.plot:
        files.append(history.plot(out_path(args, "history.png"),
                                  title=f"transformer on {args.dataset}"))
    return {"test_accuracy": acc, "chance": 0.5, "bag_of_characters_accuracy": bag,
            "seconds": seconds, "device": str(model.device), "files": files}


def run(args) -> dict:
    return run_charlm(args) if args.model == "charlm" else run_classifier(args)
