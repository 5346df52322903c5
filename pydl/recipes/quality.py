"""How digit-like are generated images? Scores a test can check, shared by the GAN, VAE and
diffusion recipes so the three generative models are measured alike.

For (N, 1, H, W) images in [0, 1] (8x8 digits, or MNIST's 28x28), each score is reported
next to the same score for held-out real images and for noise images:

* ``frechet``: Fréchet distance between Gaussians fitted to the images' pixels and to the
  training digits' pixels (FID's formula on raw pixels). Lower is better.
* ``nn_distance``: mean distance from each image to its nearest training digit; digit-like
  images sit close to real ones, noise far away. (Zero would mean copying the training set.)
* ``confidence``, ``classes``: a small CNN trained on real digits gives its mean top-class
  probability and how many of the ten digits it sees among the images.
"""

from __future__ import annotations

import numpy as np

JUDGE_TRAIN = 6000  # at most this many training images train the judge and are compared to


def train_classifier(x_tr, y_tr, x_te, y_te, seed: int):
    """A quick CNN on real digits, the judge of the samples; returns (model, test accuracy).

    A CNN rather than an MLP: an MLP extrapolates linearly and calls pure noise a digit with
    high confidence (measured: 0.75 on noise, about as much as on samples).
    """
    import pydl

    from ..models import CNN, LeNet5
    from ..train import Model

    pydl.manual_seed(seed)
    side = x_tr.shape[-1]  # 28x28 (MNIST): LeNet-5, several times quicker than the CNN there
    clf = Model(CNN(1, 10, width=16) if side <= 8 else LeNet5(1, 10, image_size=side))
    clf.compile(optimizer=pydl.optim.Adam(clf.parameters(), lr=3e-3),
                loss="sparse_categorical_crossentropy")
    clf.fit(x_tr, y_tr, epochs=8, batch_size=64, verbose=0)
    return clf, float((clf.predict(x_te).argmax(1) == y_te).mean())

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two image sets (FID's formula, on pixels).

    ``|mean_a - mean_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``: 0 for identical
    statistics; grows as the means or the pixel covariances (the strokes' shapes) differ.
    The estimate depends on the set size (64 pixels need a few hundred images for a usable
    covariance), so compare sets of the same size.
    """
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cb @ root_a), 0.0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca) + np.trace(cb) - 2 * cross)


def quality(images01: np.ndarray, x_train01: np.ndarray, clf) -> dict:
    """The scores in the module docstring for (N, 1, H, W) images in [0, 1]; ``clf`` judges."""
    a = images01.reshape(len(images01), -1).astype(np.float64)
    b = x_train01.reshape(len(x_train01), -1).astype(np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    logits = clf.predict(images01.astype(np.float32))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return {"frechet": frechet_distance(images01, x_train01),
            "nn_distance": float(np.sqrt(np.maximum(d2.min(1), 0.0)).mean()),
            "confidence": float(p.max(1).mean()),
            "classes": int(len(np.unique(p.argmax(1))))}


def score_samples(samples: np.ndarray, digits, seed: int, noise=None) -> tuple[dict, float]:
    """Score generated images in [0, 1] against held-out real digits and uniform noise.

    ``digits`` is ``load_images(dataset, seed)`` (at most ``JUDGE_TRAIN`` of its training
    images, drawn by ``seed``, are used). Returns ({"samples"|"real"|"noise": scores}, the
    judging classifier's test accuracy) and prints the table; the scores are those of the
    diffusion recipe's ``quality``, so the generative models are measured alike. ``noise``:
    the baseline images (default: uniform noise in [0, 1]).
    """
    x_tr, y_tr, x_te, y_te = digits
    if len(x_tr) > JUDGE_TRAIN:  # MNIST-sized: a seeded subset keeps the judge quick
        rng = np.random.default_rng(seed)
        pick, pick_te = rng.permutation(len(x_tr))[:JUDGE_TRAIN], rng.permutation(len(x_te))[:2000]
        x_tr, y_tr, x_te, y_te = x_tr[pick], y_tr[pick], x_te[pick_te], y_te[pick_te]
    if noise is None:
        noise = np.random.default_rng(seed).random(samples.shape).astype(np.float32)
    clf, clf_acc = train_classifier(x_tr, y_tr, x_te, y_te, seed)
    scores = {"samples": quality(samples, x_tr, clf),
              "real": quality(x_te[:len(samples)], x_tr, clf),
              "noise": quality(noise, x_tr, clf)}
    print(f"sample quality (classifier test accuracy {clf_acc:.1%}):")
    for name, row in scores.items():
        print(f"  {name:8s} " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in row.items()))
    return scores, clf_acc
