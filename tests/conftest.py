"""Shared fixtures: the ``device`` fixture runs a test on the CPU and, when a GPU is there, CUDA."""

import numpy as np
import pytest

import pydl


def _cuda_available() -> bool:
    try:
        import pydl.cuda

        return pydl.cuda.is_available()
    except Exception:  # noqa: BLE001 - no cupy, no driver, no module yet
        return False


CUDA = _cuda_available()


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU available (needs cupy and a device)")
    for item in items:
        if "gpu" in item.keywords and not CUDA:
            item.add_marker(skip_gpu)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    """Run the test once per device: 'cpu' always, 'cuda' when a GPU is available."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    pydl.manual_seed(0)
    np.random.seed(0)
    yield
