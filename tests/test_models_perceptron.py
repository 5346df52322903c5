"""Perceptron: shapes, the perceptron rule, gradient descent on a sigmoid neuron, checkpoints,
and the recipe's bar: 100% on separable points, at most 75% on XOR, where an MLP gets 100%."""

import numpy as np
import pytest

import pydl
from pydl.models.perceptron import Perceptron
from pydl.recipes.perceptron import make_points, train_perceptron_rule


def test_perceptron_shapes_and_outputs():
    x = pydl.randn(6, 3)
    step = Perceptron(3)
    out = step(x).numpy()
    assert out.shape == (6, 1) and set(np.unique(out)) <= {0.0, 1.0}
    labels = step.predict(x).numpy()
    assert labels.shape == (6,) and labels.dtype == np.int64
    assert np.array_equal(labels, out[:, 0].astype(np.int64))
    prob = Perceptron(3, output="sigmoid")(x).detach().numpy()
    assert prob.shape == (6, 1) and np.all((prob > 0) & (prob < 1))
    assert sum(p.numel() for p in step.parameters()) == 4  # 3 weights and a bias
    with pytest.raises(ValueError, match="step"):
        Perceptron(2, output="relu")
    with pytest.raises(RuntimeError, match="sigmoid"):
        Perceptron(2, output="sigmoid").perceptron_update(x[:, :2], pydl.zeros(6))


def test_perceptron_rule_by_hand():
    p = Perceptron(2)
    with pydl.no_grad():
        p.linear.weight.copy_(pydl.tensor([[1.0, -1.0]]))
        p.linear.bias.copy_(pydl.tensor([0.0]))
    x = pydl.tensor([[1.0, 2.0], [2.0, 1.0]])  # scores -1 (predicts 0) and +1 (predicts 1)
    # the first is labelled 1 (wrong: error +1), the second 1 (right: no change)
    assert p.perceptron_update(x, pydl.tensor([1, 1]), lr=0.5) == 1
    assert np.allclose(p.linear.weight.detach().numpy(), [[1.5, 0.0]])
    assert np.allclose(p.linear.bias.detach().numpy(), [0.5])
    assert p.perceptron_update(x, pydl.tensor([1, 1]), lr=0.5) == 0  # now both are right


def test_perceptron_rule_separates_separable_points(device):
    x, y = make_points("separable")
    p = Perceptron(2).to(device)
    epochs = train_perceptron_rule(p, x, y, epochs=50, lr=0.1, batch_size=1, seed=0)
    assert epochs < 50  # an epoch without a mistake: converged
    pred = p.predict(pydl.tensor(x, device=device)).numpy()
    assert np.array_equal(pred, y)


def test_sigmoid_neuron_loss_goes_down(device):
    x, y = make_points("separable", n=64)
    xt = pydl.tensor(x, device=device)
    yt = pydl.tensor(y.astype(np.float32).reshape(-1, 1), device=device)
    p = Perceptron(2, output="sigmoid").to(device)
    opt = pydl.optim.SGD(p.parameters(), lr=0.5)
    losses = []
    for _ in range(20):
        loss = pydl.nn.functional.binary_cross_entropy(p(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_perceptron_checkpoint_roundtrip(tmp_path):
    p = Perceptron(5, output="sigmoid")
    path = tmp_path / "p.safetensors"
    pydl.io.save(p.state_dict(), path)
    pydl.manual_seed(123)
    other = Perceptron(5, output="sigmoid")
    x = pydl.randn(7, 5)
    assert not np.array_equal(other(x).detach().numpy(), p(x).detach().numpy())
    other.load_state_dict(pydl.io.load(path))
    assert np.array_equal(other(x).detach().numpy(), p(x).detach().numpy())


def _recipe(dataset, tmp_path):
    from pydl.cli import parse, run

    args = parse(["--model", "perceptron", "--dataset", dataset, "--device", "cpu", "--quiet",
                  "--out", str(tmp_path)])
    return run(args)


@pytest.mark.slow
def test_recipe_separable_reaches_100_percent(tmp_path):
    result = _recipe("separable", tmp_path)
    assert result["perceptron_step_accuracy"] == 1.0
    assert result["perceptron_sigmoid_accuracy"] == 1.0


@pytest.mark.slow
def test_recipe_xor_needs_a_hidden_layer(tmp_path):
    result = _recipe("xor", tmp_path)
    assert result["perceptron_step_accuracy"] <= 0.75
    assert result["perceptron_sigmoid_accuracy"] <= 0.75
    assert result["mlp_accuracy"] == 1.0
    assert (tmp_path / "mlp_xor.safetensors").exists()
