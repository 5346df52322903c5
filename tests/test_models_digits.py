"""MLP and CNN on the digits: shapes, training steps on each device, checkpoints.

The accuracy bars (MLP >= 97%, CNN >= 98.5% through ``pydl train``) are the slow tests in
tests/test_train.py.
"""

import numpy as np
import pytest

import pydl
from pydl.models.cnn import CNN, ResidualBlock
from pydl.models.mlp import MLP
from pydl.nn import functional as F
from pydl.recipes.classify import build
from pydl.recipes.common import split_digits


def _digits(n=64):
    x_tr, y_tr, _, _ = split_digits(0)
    return x_tr[:n], y_tr[:n]


def test_mlp_shapes_and_layers():
    x = pydl.randn(5, 1, 8, 8)  # images are flattened by the model
    assert MLP(64, [32, 16], 10)(x).shape == (5, 10)
    net = MLP(64, [32], 3, activation="tanh", dropout=0.2, batch_norm=True)
    assert net(pydl.randn(4, 64)).shape == (4, 3)
    names = [type(m).__name__ for m in net.net]
    assert names == ["Flatten", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear"]
    with pytest.raises(ValueError, match="activation"):
        MLP(4, [4], 2, activation="swishy")


def test_cnn_shapes():
    assert CNN(in_channels=1, num_classes=10, width=8)(pydl.randn(3, 1, 8, 8)).shape == (3, 10)
    assert CNN(in_channels=3, num_classes=4, width=8)(pydl.randn(2, 3, 12, 12)).shape == (2, 4)
    block = ResidualBlock(6)
    assert block(pydl.randn(2, 6, 5, 5)).shape == (2, 6, 5, 5)


def test_recipe_builds_the_documented_networks():
    mlp, cnn = build("mlp", 0), build("cnn", 0)
    assert isinstance(mlp, MLP) and isinstance(cnn, CNN)
    assert mlp(pydl.randn(2, 1, 8, 8)).shape == (2, 10)
    assert sum(p.numel() for p in mlp.parameters()) == 64 * 512 + 512 * 256 + 256 * 10 + (
        512 + 256 + 10) + 2 * (512 + 256)  # + batch-norm scales and shifts


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_training_steps_lower_the_loss(kind, device):
    x, y = _digits(64)
    xt, yt = pydl.tensor(x, device=device), pydl.tensor(y, device=device)
    pydl.manual_seed(0)
    net = (MLP(64, [64], 10, batch_norm=True) if kind == "mlp" else CNN(width=8)).to(device)
    opt = pydl.optim.Adam(net.parameters(), lr=1e-2)

    losses = []
    for _ in range(20):
        loss = F.cross_entropy(net(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_checkpoint_roundtrip(kind, tmp_path):
    x = pydl.tensor(_digits(16)[0])
    net = build(kind, seed=0)
    net.train()
    with pydl.no_grad():
        net(x)  # one training-mode pass so the batch-norm running statistics are not the defaults
    net.eval()
    path = tmp_path / f"{kind}.safetensors"
    pydl.io.save(net.state_dict(), path)
    other = build(kind, seed=1).eval()
    with pydl.no_grad():
        assert not np.array_equal(other(x).numpy(), net(x).numpy())
        other.load_state_dict(pydl.io.load(path))
        assert np.array_equal(other(x).numpy(), net(x).numpy())
