"""The Keras-style loop: compile/fit/evaluate/predict, callbacks, metrics, checkpoints, CLI."""

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.recipes.common import split_digits
from pydl.train import (
    CSVLogger,
    EarlyStopping,
    ModelCheckpoint,
    Sequential,
    TerminateOnNaN,
    confusion_matrix,
    metrics,
)


def _toy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    return x, y


def _model(seed=0):
    pydl.manual_seed(seed)
    m = Sequential([nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 2)])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"],
              lr=0.01)
    return m


def test_fit_evaluate_predict():
    x, y = _toy()
    m = _model()
    h = m.fit(x, y, epochs=15, batch_size=16, validation_split=0.25, verbose=0)
    assert len(h.history["loss"]) == 15 and "val_accuracy" in h.history
    assert h.history["loss"][-1] < h.history["loss"][0]
    logs = m.evaluate(x, y, verbose=0)
    assert logs["accuracy"] > 0.9
    p = m.predict(x[:7])
    assert p.shape == (7, 2)


def test_compile_errors_are_clear():
    m = Sequential([nn.Linear(2, 2)])
    with pytest.raises(RuntimeError, match="compile"):
        m.fit(np.zeros((2, 2), np.float32), np.zeros(2, np.int64), verbose=0)
    with pytest.raises(ValueError, match="unknown loss"):
        m.compile(loss="hinge-ish")
    with pytest.raises(ValueError, match="unknown optimizer"):
        m.compile(optimizer="lbfgs-ish")


def test_early_stopping_restores_best_weights():
    x, y = _toy()
    m = _model()
    # a validation set with flipped labels: val_loss gets worse as training succeeds
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    h = m.fit(x, y, epochs=50, batch_size=16, validation_data=(x, 1 - y), callbacks=[es],
              verbose=0)
    assert len(h.history["loss"]) < 50
    best = int(np.argmin(h.history["val_loss"]))
    assert es.best_epoch == best
    assert m.evaluate(x, 1 - y, verbose=0)["loss"] == pytest.approx(h.history["val_loss"][best],
                                                                    rel=1e-5)


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path):
    x, y = _toy()
    full = _model()
    full.fit(x, y, epochs=6, batch_size=16, verbose=0)

    part = _model()
    ckpt = tmp_path / "ckpt.safetensors"
    part.fit(x, y, epochs=3, batch_size=16, verbose=0,
             callbacks=[ModelCheckpoint(ckpt, save_training_state=True)])
    resumed = _model(seed=123)  # different init: everything must come from the checkpoint
    pydl.manual_seed(999)
    epoch = resumed.load_checkpoint(ckpt)
    assert epoch == 3
    resumed.fit(x, y, epochs=6, batch_size=16, verbose=0, initial_epoch=epoch)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), k  # bit for bit on the CPU


def test_save_load_weights_and_csv_logger(tmp_path):
    x, y = _toy()
    m = _model()
    m.fit(x, y, epochs=3, verbose=0, callbacks=[CSVLogger(tmp_path / "log.csv")])
    lines = (tmp_path / "log.csv").read_text().strip().splitlines()
    assert lines[0].startswith("epoch,") and len(lines) == 4
    m.save(tmp_path / "w.safetensors")
    m2 = _model(seed=5).load(tmp_path / "w.safetensors")
    assert np.allclose(m.predict(x), m2.predict(x))


def test_terminate_on_nan():
    x, y = _toy()
    m = _model()
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", lr=1e30)
    h = m.fit(x * 1e20, y, epochs=5, verbose=0, callbacks=[TerminateOnNaN()])
    assert len(h.history["loss"]) == 1


def test_metrics_against_hand_counts():
    t = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(t, p, num_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics.accuracy(t, p) == pytest.approx(4 / 6)
    assert metrics.precision(t, p, average=None).tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert metrics.recall(t, p, average=None).tolist() == pytest.approx([0.5, 1.0, 0.5])
    f1 = metrics.f1_score(t, p, average=None)
    assert f1[1] == pytest.approx(0.8)
    scores = np.eye(3)[p] + 0.1 * np.eye(3)[t]
    assert metrics.top_k_accuracy(t, scores, k=2) == 1.0
    assert metrics.mae([1, 2], [2, 4]) == 1.5 and metrics.mse([1, 2], [2, 4]) == 2.5


def test_history_plot_and_confusion_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from pydl.train import plot_confusion_matrix

    x, y = _toy()
    h = _model().fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    h.plot(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    plot_confusion_matrix(np.eye(3, dtype=int), tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_digits_split_is_stratified_and_disjoint():
    x_tr, y_tr, x_te, y_te = split_digits(0)
    assert len(x_tr) + len(x_te) == 1797
    assert np.all(np.bincount(y_te) >= 34)


def _digits_accuracy(model_name, epochs):
    from pydl.cli import parse, run

    argv = ["--model", model_name, "--device", "cpu", "--quiet"]
    if epochs is not None:
        argv += ["--epochs", str(epochs)]
    return parse(argv), run


def test_cli_train_mlp_quick(tmp_path, capsys):
    args, run = _digits_accuracy("mlp", 3)
    args.out = str(tmp_path)
    result = run(args)
    out = capsys.readouterr().out
    assert "confusion matrix" in out and result["test_accuracy"] > 0.85
    assert (tmp_path / "mlp_digits.safetensors").exists()


@pytest.mark.slow
def test_digits_mlp_reaches_97_percent(tmp_path):
    args, run = _digits_accuracy("mlp", None)
    args.out = str(tmp_path)
    assert run(args)["test_accuracy"] >= 0.97


@pytest.mark.slow
def test_digits_cnn_reaches_98_5_percent(tmp_path):
    args, run = _digits_accuracy("cnn", None)
    args.out = str(tmp_path)
    assert run(args)["test_accuracy"] >= 0.985
