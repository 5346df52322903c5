"""TransformerClassifier and CharTransformer: shapes, training steps, checkpoints, generation,
the shipped texts, and (slow) the quality bars of ``pydl train --model charlm|transformer``."""

import numpy as np
import pytest

import pydl
from pydl.data import load_text
from pydl.models.transformer import CharTransformer, TransformerClassifier
from pydl.nn import functional as F


def _ids(rng, shape, vocab):
    return rng.integers(0, vocab, shape)


def test_classifier_shapes():
    net = TransformerClassifier(vocab_size=30, num_classes=3, d_model=16, nhead=2, num_layers=1,
                                dim_feedforward=32, max_len=20)
    assert net(pydl.tensor(_ids(np.random.default_rng(0), (4, 20), 30))).shape == (4, 3)


def test_lm_shapes():
    lm = CharTransformer(vocab_size=25, d_model=16, nhead=2, num_layers=2, dim_feedforward=32,
                         max_len=12)
    assert lm(pydl.tensor(_ids(np.random.default_rng(0), (3, 12), 25))).shape == (3, 12, 25)
    assert lm(pydl.tensor(_ids(np.random.default_rng(1), (3, 5), 25))).shape == (3, 5, 25)


def test_lm_is_causal():
    """Changing character j must leave the outputs at positions < j unchanged."""
    lm = CharTransformer(vocab_size=20, d_model=16, nhead=2, num_layers=2, dim_feedforward=32,
                         max_len=10)
    lm.eval()
    x = _ids(np.random.default_rng(0), (2, 10), 20)
    y = x.copy()
    y[:, 6] = (y[:, 6] + 1) % 20
    with pydl.no_grad():
        a, b = lm(pydl.tensor(x)).numpy(), lm(pydl.tensor(y)).numpy()
    np.testing.assert_allclose(a[:, :6], b[:, :6], rtol=1e-5, atol=1e-6)
    assert np.abs(a[:, 6:] - b[:, 6:]).max() > 1e-4


def test_positional_encoding_makes_order_matter():
    """Without positions, self-attention + mean pooling sees a bag of characters: a snippet
    and its reversal score the same. With positions they do not."""
    x = _ids(np.random.default_rng(0), (3, 16), 30)
    rev = x[:, ::-1].copy()
    for positional, same in ((False, True), (True, False)):
        pydl.manual_seed(0)
        net = TransformerClassifier(30, 2, d_model=16, nhead=2, num_layers=2,
                                    dim_feedforward=32, max_len=16, positional=positional)
        net.eval()
        with pydl.no_grad():
            a, b = net(pydl.tensor(x)).numpy(), net(pydl.tensor(rev)).numpy()
        assert np.allclose(a, b, atol=1e-5) == same


def _train_steps(net, batch, loss_fn, device, steps=15, lr=1e-2):
    net.to(device)
    opt = pydl.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(net, *(pydl.tensor(b, device=device) for b in batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_classifier_loss_goes_down(device):
    rng = np.random.default_rng(0)
    x = _ids(rng, (16, 12), 10)
    y = (x[:, 0] > 4).astype(np.int64)  # the label is in the first token
    pydl.manual_seed(0)
    net = TransformerClassifier(10, 2, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                                max_len=12, dropout=0.0)
    losses = _train_steps(net, (x, y), lambda n, xb, yb: F.cross_entropy(n(xb), yb), device)
    assert losses[-1] < 0.7 * losses[0]


def test_lm_loss_goes_down(device):
    text = load_text("alice")[:2000]
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text])
    rows = np.stack([ids[i:i + 17] for i in range(0, 1600, 100)])

    def loss_fn(net, batch):
        logits = net(batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))

    pydl.manual_seed(0)
    lm = CharTransformer(len(vocab), d_model=32, nhead=2, num_layers=1, dim_feedforward=64,
                         max_len=16, dropout=0.0)
    losses = _train_steps(lm, (rows,), loss_fn, device)
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("which", ["classifier", "lm"])
def test_checkpoint_roundtrip(tmp_path, which):
    def make():
        if which == "classifier":
            return TransformerClassifier(20, 3, d_model=16, nhead=2, num_layers=1,
                                         dim_feedforward=32, max_len=8)
        return CharTransformer(20, d_model=16, nhead=2, num_layers=1, dim_feedforward=32,
                               max_len=8)

    pydl.manual_seed(0)
    a = make()
    pydl.manual_seed(1)
    b = make()  # different weights until loaded
    path = str(tmp_path / "model.safetensors")
    pydl.io.save(a.state_dict(), path)
    b.load_state_dict(pydl.io.load(path))
    a.eval()
    b.eval()
    x = pydl.tensor(_ids(np.random.default_rng(0), (2, 8), 20))
    with pydl.no_grad():
        np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_generate_length_and_vocabulary():
    lm = CharTransformer(12, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, max_len=8)
    pydl.manual_seed(0)
    out = lm.generate([1, 2, 3], n=20, temperature=0.9, top_k=4)
    assert len(out) == 23 and out[:3] == [1, 2, 3]  # longer than max_len: the context slides
    assert all(isinstance(i, int) and 0 <= i < 12 for i in out)
    pydl.manual_seed(0)
    assert lm.generate([1, 2, 3], n=20, temperature=0.9, top_k=4) == out  # seeded: repeatable
    assert lm.training  # generate restores the mode
    assert lm.generate([5], n=0) == [5]
    with pytest.raises(ValueError):
        lm.generate([], n=3)


def test_generate_top_k_one_is_greedy():
    lm = CharTransformer(12, d_model=16, nhead=2, num_layers=1, dim_feedforward=32, max_len=8)
    lm.eval()
    out = lm.generate([4, 7], n=1, top_k=1)
    with pydl.no_grad():
        best = int(lm(pydl.tensor([[4, 7]]))[0, -1].numpy().argmax())
    assert out[-1] == best


def test_load_text():
    alice = load_text("alice")
    assert isinstance(alice, str) and 140_000 < len(alice) < 150_000
    assert alice.startswith("CHAPTER I.") and alice.rstrip().endswith("THE END")
    assert "Gutenberg" not in alice and "\r" not in alice
    assert load_text() == alice
    oz = load_text("oz")
    assert oz.startswith("CHAPTER 1.") and "Dorothy" in oz and "Gutenberg" not in oz
    with pytest.raises(ValueError):
        load_text("no-such-text")


def test_snippet_split_is_balanced_and_disjoint():
    from pydl.recipes.transformer import CONTEXT, snippet_split

    x_tr, y_tr, x_te, y_te, vocab = snippet_split(seed=0)
    assert x_tr.shape[1] == CONTEXT and x_te.shape[1] == CONTEXT
    assert y_tr.mean() == 0.5 and y_te.mean() == 0.5
    assert x_tr.max() < len(vocab) and all(ord(c) < 128 for c in vocab)  # typography removed
    train = {r.tobytes() for r in x_tr}
    assert not any(r.tobytes() in train for r in x_te)


def _train(model, tmp_path, *extra):
    from pydl.cli import parse, run

    args = parse(["--model", model, "--device", "cpu", "--quiet", *extra])
    args.out = str(tmp_path)
    return run(args)


@pytest.mark.slow
def test_charlm_beats_unigram_baseline(tmp_path, capsys):
    result = _train("charlm", tmp_path)
    assert result["unigram_loss"] > 3.0
    assert result["val_loss"] <= 2.0  # nats per character on held-out text
    assert result["val_loss"] < result["bigram_loss"] - 0.3
    assert "sample (temperature 0.8)" in capsys.readouterr().out
    assert set(result["sample"]) <= set(load_text("alice"))
    assert (tmp_path / "charlm_alice.safetensors").exists()


@pytest.mark.slow
def test_transformer_classifier_beats_chance(tmp_path):
    result = _train("transformer", tmp_path)
    assert result["test_accuracy"] >= 0.70
    assert (tmp_path / "transformer_alice-oz.safetensors").exists()
