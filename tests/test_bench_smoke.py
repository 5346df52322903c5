"""Smoke test of benchmarks/bench_train.py: its validation step, on tiny models, no timing.

The benchmark builds each model in PyTorch and in pydl, copies the weights, and requires the
losses of a few AdamW steps to agree before it times anything. Running that validation here
(float64, tiny configs) keeps the script working as pydl changes, and checks that it really
catches a difference.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "benchmarks", "bench_train.py")


@pytest.fixture(scope="module")
def bench_train():
    if not os.path.exists(BENCH):
        pytest.skip("benchmarks/ is not in this checkout")
    spec = importlib.util.spec_from_file_location("bench_train", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["mlp", "lenet", "transformer", "lstm"])
def test_validation_passes_on_tiny_models(bench_train, name):
    # one batch, so the loss must fall from step to step: the steps really train
    pside, tside = bench_train.make_pair(bench_train.SPECS[name], 3, dtype="float64", tiny=True,
                                         n_batches=1)
    ok, err, plosses, tlosses = bench_train.validate(pside, tside, "float64")
    assert ok, f"{name}: pydl losses {plosses} vs torch {tlosses} (max relative error {err:.1e})"
    assert plosses[-1] < plosses[0]


def test_validation_catches_a_different_weight(bench_train):
    pside, tside = bench_train.make_pair(bench_train.SPECS["mlp"], 3, dtype="float64", tiny=True)
    weight = pside.model.state_dict()["0.weight"]
    weight.data[...] = weight.data * np.float64(1.01)
    ok, err, _, _ = bench_train.validate(pside, tside, "float64")
    assert not ok and err > 1e-6


def test_table_rows_format_an_invalid_and_a_timed_row(bench_train):
    rows = [{"model": "mlp", "batch": 4, "device": "cpu", "target": "", "status": "INVALID"},
            {"model": "mlp", "batch": 256, "device": "cpu", "target": "<= 1.3x", "status": "met",
             "pydl_ms": 2.0, "torch_ms": 2.5, "pydl_samples_per_s": 128000.0,
             "torch_samples_per_s": 102400.0, "ratio": 0.8, "ratio_of_cpu_time": 0.9}]
    table = bench_train.table_rows(rows)
    assert len(table[0]) == len(table[1]) == len(bench_train.HEADERS)
    assert table[1][7:9] == ["0.80x", "0.90x"] and table[0][3] == ""


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_graph_side_validates_on_gpu(bench_train, name):
    """The recorded (CUDA graph) pydl step follows torch's eager losses batch by batch."""
    pside, tside = bench_train.make_pair(bench_train.SPECS[name], 8, device="cuda",
                                         dtype="float64", tiny=True)
    if tside is None:
        pytest.skip("this torch build has no CUDA")
    gside = bench_train.GraphSide(pside)
    ok, err, plosses, tlosses = bench_train.validate(gside, tside, "float64")
    assert gside.graph is not None
    assert ok, f"{name}: graph losses {plosses} vs torch {tlosses} (max relative error {err:.1e})"


def test_torch_first_job_runs(bench_train):
    # the "with torch imported first" section: its job runs in a fresh process and reports
    rows = bench_train.torch_first_rows(reps=1, epochs=1, cases=("pydl alone",))
    assert [r["case"] for r in rows] == ["pydl alone"] and rows[0]["runs"] == 1
    assert rows[0]["wall_s"] > 0 and rows[0]["cpu_s"] > 0 and rows[0]["wall_ratio"] == 1.0


def test_bench_data_validation_compares_the_same_lenet5():
    path = os.path.join(os.path.dirname(BENCH), "bench_data.py")
    spec = importlib.util.spec_from_file_location("bench_data", path)
    bench_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_data)
    rng = np.random.default_rng(0)
    x = rng.random((bench_data.BATCH, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, bench_data.BATCH)
    err, state = bench_data.validate(x, y)
    assert err <= bench_data.TOLERANCE
    assert set(state) == set(bench_data.LeNet5().state_dict())
