"""Slow: LeNet-5 learns real MNIST in one epoch (needs the data: ``make data``).

``make test-slow`` installs the data first. The loop is the ordinary one: a DataLoader with a
worker process feeding the model, Adam with the learning rate decayed along a cosine over
the epoch's steps. One compute thread, the worker on the other core: on a shared, loaded
2-core machine two BLAS threads spinning against each other made an epoch 10-40 times
slower (docs/models/mnist.md); on one thread the epoch takes 12-30 s.
"""

import numpy as np
import pytest

import pydl
from pydl.data import DataLoader, TensorDataset
from pydl.models import LeNet5


@pytest.mark.slow
def test_lenet5_reaches_98_percent_on_mnist_in_one_epoch():
    (x_tr, y_tr), (x_te, y_te) = pydl.data.mnist()  # raises, saying how to install, if absent
    threads = pydl.get_num_threads()
    pydl.set_num_threads(1)
    try:
        accuracy = _one_epoch(x_tr, y_tr, x_te, y_te)
    finally:
        pydl.set_num_threads(threads)
    assert accuracy >= 0.98, f"test accuracy {accuracy:.2%} after one epoch"


def _one_epoch(x_tr, y_tr, x_te, y_te):
    pydl.manual_seed(0)
    model = LeNet5()
    opt = pydl.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(TensorDataset(x_tr, y_tr), batch_size=32, shuffle=True, seed=0,
                        num_workers=1)
    sched = pydl.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(loader))
    model.train()
    for xb, yb in loader:
        loss = pydl.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with pydl.no_grad():
        pred = np.concatenate([model(pydl.tensor(x_te[i:i + 1000])).numpy().argmax(1)
                               for i in range(0, len(x_te), 1000)])
    return float((pred == y_te).mean())
