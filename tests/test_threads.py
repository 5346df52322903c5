"""pydl.set_num_threads / get_num_threads: pydl's C++ kernels and NumPy's BLAS together."""

import numpy as np
import pytest

import pydl
from pydl.backend import cpu


def test_set_num_threads_sets_kernels_and_blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = pydl.get_num_threads()
    try:
        pydl.set_num_threads(1)
        if cpu.extension is not None:
            assert pydl.get_num_threads() == 1
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
        a = np.ones((64, 64), dtype=np.float32)
        assert np.allclose(a @ a, 64.0)  # still computes
    finally:
        pydl.set_num_threads(before)


def test_set_num_threads_rejects_nonpositive():
    with pytest.raises(ValueError, match="at least 1 thread"):
        pydl.set_num_threads(0)
