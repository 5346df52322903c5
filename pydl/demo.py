"""The demo behind ``make demo``: a two-layer network on two spirals, from Tensor ops only.

No ``pydl.nn``, no optimizer class: the weights are plain tensors with ``requires_grad=True``,
the loss is written out (log-sum-exp cross-entropy), ``loss.backward()`` fills ``.grad``, and
a hand-written Adam update runs under ``no_grad``. It prints the loss and accuracy as it
trains, and the final accuracy on held-out points.
"""

from __future__ import annotations

import math
import time

import numpy as np

import pydl
from pydl.data import two_spirals


def run(epochs: int = 400, hidden: int = 64, lr: float = 0.02, device: str = "cpu",
        seed: int = 0, verbose: bool = True) -> dict:
    """Train and return {'loss', 'train_accuracy', 'test_accuracy', 'seconds'}."""
    pydl.manual_seed(seed)
    x_np, y_np = two_spirals(1000, 0.02, seed)
    order = np.random.default_rng(seed).permutation(len(x_np))
    split = int(0.8 * len(order))
    tr, te = order[:split], order[split:]
    x, y = pydl.tensor(x_np[tr], device=device), pydl.tensor(y_np[tr], device=device)
    x_test, y_test = pydl.tensor(x_np[te], device=device), pydl.tensor(y_np[te], device=device)
    onehot = pydl.tensor(np.eye(2, dtype=np.float32)[y_np[tr]], device=device)

    def param(*shape, scale):
        return (pydl.randn(*shape, device=device) * scale).requires_grad_()

    params = [
        param(2, hidden, scale=1.0), pydl.zeros(hidden, device=device, requires_grad=True),
        param(hidden, hidden, scale=1 / math.sqrt(hidden)),
        pydl.zeros(hidden, device=device, requires_grad=True),
        param(hidden, 2, scale=1 / math.sqrt(hidden)),
        pydl.zeros(2, device=device, requires_grad=True),
    ]
    m = [pydl.zeros_like(p) for p in params]
    v = [pydl.zeros_like(p) for p in params]

    def forward(inp):
        w1, b1, w2, b2, w3, b3 = params
        h = (inp @ w1 + b1).tanh()
        h = (h @ w2 + b2).tanh()
        return h @ w3 + b3

    start = time.perf_counter()
    if verbose:
        print(f"pydl {pydl.__version__} demo: two spirals, {len(tr)} training points, "
              f"MLP 2-{hidden}-{hidden}-2 (tanh), full-batch Adam lr={lr}, device={device}")
    for epoch in range(1, epochs + 1):
        logits = forward(x)
        loss = (logits.logsumexp(dim=1) - (logits * onehot).sum(dim=1)).mean()
        for p in params:
            p.grad = None
        loss.backward()
        with pydl.no_grad():  # Adam, written out
            for p, mi, vi in zip(params, m, v):
                g = p.grad
                mi.mul_(0.9).add_(g * 0.1)
                vi.mul_(0.999).add_(g * g * 0.001)
                m_hat = mi / (1 - 0.9 ** epoch)
                v_hat = vi / (1 - 0.999 ** epoch)
                p.sub_(lr * m_hat / (v_hat.sqrt() + 1e-8))
        if verbose and (epoch % 50 == 0 or epoch == 1):
            acc = (logits.argmax(dim=1) == y).float().mean().item()
            print(f"  epoch {epoch:4d}  loss {loss.item():.4f}  train accuracy {acc:6.2%}")
    with pydl.no_grad():
        train_acc = (forward(x).argmax(dim=1) == y).float().mean().item()
        test_acc = (forward(x_test).argmax(dim=1) == y_test).float().mean().item()
    seconds = time.perf_counter() - start
    if verbose:
        print(f"done in {seconds:.1f} s: loss {loss.item():.4f}, train accuracy {train_acc:.2%}, "
              f"held-out accuracy {test_acc:.2%}")
    return {"loss": loss.item(), "train_accuracy": train_acc, "test_accuracy": test_acc,
            "seconds": seconds}
