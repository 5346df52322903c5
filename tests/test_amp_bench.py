"""Smoke test of benchmarks/bench_amp.py: its validation (no timing) passes, and would fail on
a model whose bfloat16 step diverges from torch's."""

import importlib.util
import os
import sys

import pytest

pytest.importorskip("torch")
BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                     "bench_amp.py")


@pytest.fixture(scope="module")
def bench_amp():
    sys.path.insert(0, os.path.dirname(BENCH))
    spec = importlib.util.spec_from_file_location("bench_amp", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["mlp", "lenet", "transformer"])
def test_validation_passes(bench_amp, name):
    ok, losses = bench_amp.validate(name)
    assert ok, losses
    assert losses["pydl bf16"] != losses["pydl fp32"]  # autocast changed the arithmetic


def test_validation_catches_a_wrong_step(bench_amp, monkeypatch):
    pair = bench_amp._pair

    def perturbed(name, seed=0):
        tmod, pmod, x, y = pair(name, seed)
        with __import__("pydl").no_grad():
            next(iter(pmod.parameters())).mul_(3.0)
        return tmod, pmod, x, y

    monkeypatch.setattr(bench_amp, "_pair", perturbed)
    ok, _ = bench_amp.validate("mlp")
    assert not ok
