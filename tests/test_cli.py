"""Misuse of the command line and the fit loop is refused in one line, before any work."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.__main__ import main
from pydl.cli import check_output_dir, check_plotting, parse


def _cuda_usable() -> bool:
    try:
        return pydl.cuda.is_available()
    except Exception:  # noqa: BLE001 - no cupy
        return False


@pytest.mark.skipif(_cuda_usable(), reason="a GPU is present: --device cuda is valid here")
def test_train_on_cuda_without_a_gpu_is_refused_before_training(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["--model", "mlp", "--device", "cuda"])
    message = str(exc.value)
    assert message.startswith("pydl train: --device cuda:")
    assert "\n" not in message
    assert "--device cpu" in message  # says what to do instead


@pytest.mark.parametrize("device,words", [("gpu", "unknown device"), ("cuda:x", "bad device"),
                                          ("cpu:1", "no index")])
def test_malformed_device_is_one_line(device, words):
    with pytest.raises(SystemExit) as exc:
        parse(["--model", "mlp", "--device", device])
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_plot_without_matplotlib_is_refused_before_training(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(SystemExit, match="--plot needs matplotlib"):
        check_plotting()
    with pytest.raises(SystemExit, match="--plot needs matplotlib"):
        parse(["--model", "mlp", "--plot", "--device", "cpu"])


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "-1"),
                                        ("--lr", "0")])
def test_bad_numbers_are_refused(flag, value):
    with pytest.raises(SystemExit, match=flag):
        parse(["--model", "mlp", flag, value])


def test_unwritable_output_dir_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SystemExit, match="--out"):
        check_output_dir(str(blocker / "sub"))
    check_output_dir(str(tmp_path / "new" / "dir"))
    assert (tmp_path / "new" / "dir").is_dir()


def test_cli_error_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    # an error inside the run (here: a checkpoint that cannot be written) ends as one line
    monkeypatch.delenv("PYDL_TRACEBACK", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mlp_digits.safetensors").mkdir()  # saving onto a directory fails
    code = main(["train", "--model", "mlp", "--epochs", "1", "--quiet", "--device", "cpu",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("pydl train: ") and "\n" not in err and "Traceback" not in err


def _model():
    model = pydl.Sequential([nn.Linear(4, 3)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", lr=0.1)
    return model


def test_fit_refuses_fractional_labels_for_sparse_crossentropy():
    x = np.random.rand(10, 4).astype(np.float32)
    with pytest.raises(ValueError, match="not whole numbers"):
        _model().fit(x, np.linspace(0, 1, 10), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="categorical_crossentropy"):
        _model().fit(x, np.eye(3)[np.arange(10) % 3], epochs=1, verbose=0)
    with pytest.raises(ValueError, match="not whole numbers"):
        _model().fit(x, np.array([0, 1, np.nan, 2, 0, 1, 2, 0, 1, 2]), epochs=1, verbose=0)


def test_fit_accepts_whole_float_labels_as_classes():
    x = np.random.rand(12, 4).astype(np.float32)
    y = (np.arange(12) % 3).astype(np.float32)
    a, b = _model(), _model()
    b.load_state_dict(a.state_dict())
    ha = a.fit(x, y, epochs=2, verbose=0, shuffle=False)
    hb = b.fit(x, y.astype(np.int64), epochs=2, verbose=0, shuffle=False)
    assert ha.history["loss"] == hb.history["loss"]


def test_load_checkpoint_names_the_missing_file_first(tmp_path):
    uncompiled = pydl.Sequential([nn.Linear(4, 3)])
    path = str(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        uncompiled.load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        uncompiled.load(path)


def test_load_checkpoint_of_a_weights_file_says_which_loader(tmp_path):
    from pydl.io import CheckpointError

    model = _model()
    path = str(tmp_path / "w.safetensors")
    model.save(path)
    with pytest.raises(CheckpointError, match="Model.load"):
        model.load_checkpoint(path)


def test_benchmarks_write_outside_the_committed_results(monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "benchmarks"))
    try:
        import common
    finally:
        sys.path.pop(0)
    monkeypatch.delenv("PYDL_BENCH_RESULTS", raising=False)
    assert os.path.realpath(common.results_dir()) != os.path.realpath(common.COMMITTED_RESULTS)
    assert common.results_dir().endswith(os.path.join("runs", "bench"))
    monkeypatch.setenv("PYDL_BENCH_RESULTS", "/some/where")
    assert common.results_dir() == "/some/where"
