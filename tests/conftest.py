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


def _optional_parts() -> list[str]:
    """One line per optional part of the suite: whether it runs here, and if not, why."""
    import os
    import shutil

    from pydl.backend import cpu

    lines = []
    if cpu.extension is None:
        lines.append("C++ extension: not built, the NumPy references stand in (pip install -e .)")
    else:
        lines.append("C++ extension: " + ("active" if cpu.extension_active()
                                           else "built, disabled by PYDL_DISABLE_EXT"))
    try:
        from pydl.backend import cuda

        lines.append("CUDA compile checks: NVRTC " + ".".join(map(str, cuda.nvrtc_version())))
    except Exception as exc:  # noqa: BLE001 - no CuPy or NVRTC
        lines.append(f"CUDA compile checks: not run ({str(exc).splitlines()[0]})")
    if os.environ.get("PYDL_CUDA_EMULATE") != "1":
        lines.append("CUDA emulation: not run (set PYDL_CUDA_EMULATE=1; `make test` does)")
    elif shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        lines.append("CUDA emulation: not run (no C++ compiler)")
    else:
        lines.append("CUDA emulation: on (the CUDA kernels run on the CPU)")
    try:
        import torch

        lines.append(f"PyTorch parity tests: torch {torch.__version__}")
    except ImportError:
        lines.append("PyTorch parity tests: not run (torch is not installed; `make test` "
                     "installs it)")
    lines.append("GPU tests: " + ("on" if CUDA else "not run (no CUDA GPU: " +
                                  _gpu_reason() + ")"))
    return lines


def _gpu_reason() -> str:
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    try:
        return f"{cupy.cuda.runtime.getDeviceCount()} devices"
    except Exception as exc:  # noqa: BLE001 - no driver
        return str(exc).splitlines()[0][:100]


def pytest_terminal_summary(terminalreporter):
    """Say which optional parts ran (shown with -q too): a skipped part is never silent."""
    terminalreporter.write_sep("-", "pydl: optional parts of this run")
    for line in _optional_parts():
        terminalreporter.write_line(line)


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
