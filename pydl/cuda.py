"""``pydl.cuda``: the GPU, and the switches of pydl's CUDA kernels.

>>> import pydl
>>> pydl.cuda.is_available()          # False without CuPy or a GPU; never raises
>>> pydl.cuda.allow_tf32 = True       # float32 matmul may use TF32 tensor cores (opt-in)
>>> pydl.cuda.set_matmul_backend("cupy")   # benchmark the same model on cuBLAS
>>> step = pydl.cuda.GraphedStep(train_step, x, y)   # record a training step, replay it

Kernels are compiled by NVRTC the first time each is used and cached on disk by CuPy
(``~/.cupy/kernel_cache``; set ``CUPY_CACHE_DIR`` to move it). ``compile_all`` compiles every
kernel for one architecture without a GPU, which is what the CPU-only compile test runs.
"""

from __future__ import annotations

import sys
import types

from .backend import cuda as _backend
from .backend.cuda.graph import CUDAGraph, GraphedStep, GraphError, graph
from .backend.cuda.runtime import CompileError

__all__ = [
    "is_available", "device_count", "synchronize", "get_device_name", "set_matmul_backend",
    "get_matmul_backend", "set_allow_tf32", "get_allow_tf32", "set_target_checks",
    "compile_all", "precompile", "CompileError", "CUDAGraph", "graph", "GraphedStep",
    "GraphError",
]


def is_available() -> bool:
    """True when CuPy is installed and at least one CUDA GPU is usable."""
    try:
        _backend.ensure_available()
    except Exception:  # noqa: BLE001 - whatever is missing, the answer is no
        return False
    return True


def device_count() -> int:
    """Number of visible CUDA GPUs (0 without CuPy or a driver)."""
    try:
        _backend.ensure_available()
        return _backend.device_count()
    except Exception:  # noqa: BLE001
        return 0


def synchronize(device=None) -> None:
    """Wait for every kernel queued on ``device`` (default: the current GPU) to finish."""
    _backend.ensure_available()
    with _backend.cupy.cuda.Device(_backend._device_id(device)):
        _backend.cupy.cuda.runtime.deviceSynchronize()


def get_device_name(device=0) -> str:
    """The GPU's marketing name, e.g. ``'NVIDIA H100 80GB HBM3'``."""
    _backend.ensure_available()
    props = _backend.cupy.cuda.runtime.getDeviceProperties(_backend._device_id(device))
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


set_matmul_backend = _backend.set_matmul_backend
get_matmul_backend = _backend.get_matmul_backend
set_allow_tf32 = _backend.set_allow_tf32
get_allow_tf32 = _backend.get_allow_tf32
set_target_checks = _backend.set_target_checks


def precompile(files=None) -> None:
    """Compile every kernel instance now (one NVRTC run per file) instead of one by one."""
    _backend.ensure_available()
    _backend.precompile(files)


def compile_all(arch: str = "sm_90", files=None, options=()) -> list[dict]:
    """Compile every CUDA kernel instance pydl uses with NVRTC for ``arch``; no GPU needed.

    Returns one report per file (``file``, ``kernels``, ``seconds``, ``log``); a non-empty
    ``log`` holds NVRTC warnings. Raises ``CompileError`` (with the log) on an error, and
    RuntimeError naming the packages to install when NVRTC is missing.

    >>> {r["log"] for r in pydl.cuda.compile_all("sm_80")}
    {''}
    """
    return [_backend.compile_file(f, arch, options=options) for f in files or _backend.KERNEL_FILES]


class _CudaModule(types.ModuleType):
    """Lets ``pydl.cuda.allow_tf32 = True`` reach the backend's setting."""

    @property
    def allow_tf32(self) -> bool:
        return _backend.get_allow_tf32()

    @allow_tf32.setter
    def allow_tf32(self, flag: bool) -> None:
        _backend.set_allow_tf32(flag)


sys.modules[__name__].__class__ = _CudaModule
