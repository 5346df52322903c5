"""SequenceRegressor (RNN, LSTM, GRU) and the sequence recipe: shapes, training, checkpoints,
and (slow) the quality bar: LSTM and GRU solve the adding problem, all three forecast a sine."""

import numpy as np
import pytest

import pydl
from pydl.data import adding_problem
from pydl.models.rnn import SequenceRegressor
from pydl.nn import functional as F
from pydl.nn.utils import clip_grad_norm_
from pydl.recipes import sequence

CELLS = ["rnn", "lstm", "gru"]


@pytest.mark.parametrize("cell", CELLS)
def test_output_shapes(cell):
    net = SequenceRegressor(cell, input_size=2, hidden_size=16, num_layers=2, output_size=3)
    assert net(pydl.randn(4, 7, 2)).shape == (4, 3)
    assert net(pydl.randn(1, 1, 2)).shape == (1, 3)  # a single step of a single sequence


def test_lstm_forget_gate_bias():
    H = 8
    net = SequenceRegressor("lstm", 2, H, num_layers=2)
    for k in range(2):  # gate order i, f, g, o: sigmoid(1 + 0) at the start
        b_ih = getattr(net.rnn, f"bias_ih_l{k}").detach().numpy()
        b_hh = getattr(net.rnn, f"bias_hh_l{k}").detach().numpy()
        assert np.all(b_ih[H:2 * H] + b_hh[H:2 * H] == 1.0)
        assert not np.all(b_ih[:H] == 1.0)
    plain = SequenceRegressor("lstm", 2, H, forget_bias=None)  # PyTorch's init
    assert np.abs(plain.rnn.bias_ih_l0.detach().numpy()).max() <= 1 / np.sqrt(H)


def test_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="unknown cell"):
        SequenceRegressor("transformer", 2, 8)


@pytest.mark.parametrize("cell", CELLS)
def test_a_few_steps_reduce_the_loss(cell, device):
    x, y = adding_problem(32, length=10, seed=0)
    xt, yt = pydl.tensor(x, device=device), pydl.tensor(y, device=device)
    net = SequenceRegressor(cell, 2, 16).to(device)
    opt = pydl.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.mse_loss(net(xt), yt)
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("cell", CELLS)
def test_checkpoint_round_trip(cell, tmp_path):
    net = SequenceRegressor(cell, 1, 8, num_layers=2)
    x = pydl.randn(3, 5, 1)
    path = tmp_path / f"{cell}.safetensors"
    pydl.io.save(net.state_dict(), path)
    pydl.manual_seed(123)  # a different initialization: everything must come from the file
    again = SequenceRegressor(cell, 1, 8, num_layers=2)
    again.load_state_dict(pydl.io.load(path))
    with pydl.no_grad():
        assert np.array_equal(net(x).numpy(), again(x).numpy())


def test_baselines():
    # the adding problem's targets are a sum of two U(0, 1): variance 1/6, so predicting the
    # mean scores about 0.167; repeating the last value of a sine is far from free
    *_, add_base, _ = sequence.make_data("adding", 0)
    assert 0.15 < add_base < 0.18
    *_, sine_base, _ = sequence.make_data("sine", 0)
    assert 0.1 < sine_base < 0.5


def _run(model, dataset, out, extra=()):
    from pydl.cli import parse, run

    args = parse(["--model", model, "--dataset", dataset, "--device", "cpu", "--quiet",
                  *extra])
    args.out = str(out)
    return run(args)


def test_recipe_quick(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the bench extra)")
    monkeypatch.setattr(sequence, "N_TRAIN", {"adding": 128, "sine": 128})
    monkeypatch.setattr(sequence, "N_TEST", 64)
    result = _run("gru", "sine", tmp_path, ["--epochs", "2", "--plot"])
    assert "repeat the last value" in capsys.readouterr().out
    for key in ("test_mse", "baseline_mse", "seconds", "device"):
        assert key in result
    for name in ("gru_sine.safetensors", "loss.png", "forecast.png", "result.json"):
        assert (tmp_path / name).exists(), name


# -- the quality bar (slow: about a minute per model on an idle 2-core machine) -------------
_RESULTS = {}


def _default_run(model, dataset, tmp_path_factory):
    """The recipe with its default settings (seed 0), run once per session."""
    if (model, dataset) not in _RESULTS:
        out = tmp_path_factory.mktemp(f"{model}_{dataset}")
        _RESULTS[model, dataset] = _run(model, dataset, out)
    r = _RESULTS[model, dataset]
    print(f"{model} on {dataset}: test MSE {r['test_mse']:.5f}, baseline "
          f"({r['baseline']}) {r['baseline_mse']:.5f}, {r['seconds']:.0f} s")
    return r


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_gated_cells_solve_the_adding_problem(model, tmp_path_factory):
    r = _default_run(model, "adding", tmp_path_factory)
    assert r["test_mse"] < 0.01


@pytest.mark.slow
def test_plain_rnn_does_worse_than_lstm_on_adding(tmp_path_factory):
    rnn = _default_run("rnn", "adding", tmp_path_factory)
    lstm = _default_run("lstm", "adding", tmp_path_factory)
    assert rnn["test_mse"] > lstm["test_mse"]


@pytest.mark.slow
@pytest.mark.parametrize("model", CELLS)
def test_forecast_beats_repeating_the_last_value(model, tmp_path_factory):
    r = _default_run(model, "sine", tmp_path_factory)
    assert r["test_mse"] < 0.5 * r["baseline_mse"]
