"""benchmarks/bench_ops.py validates every case (pydl against torch, forward and gradients)
before it times anything: run that validation here, in float64, so the script cannot rot."""

import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import bench_ops  # noqa: E402


@pytest.mark.parametrize("name", sorted(bench_ops.cases(quick=True)))
def test_bench_ops_case_validates(name):
    fn, shapes = bench_ops.cases(quick=True)[name]
    ok, err = bench_ops.validate(fn, shapes, dtype=np.float64, rtol=1e-10)
    assert ok, f"{name}: max relative error {err}"
