"""The CUDA backend's runtime side: availability checks, devices, random numbers, host <->
device copies and the backend's switches. ``pydl.backend.cuda`` re-exports all of it next to
the kernels; see that module's docstring for the switches.
"""

from __future__ import annotations

import os

import numpy as np

try:
    import cupy
except ImportError:  # the backend imports; ensure_available says what is missing
    cupy = None

_INSTALL_HINT = (
    "pip install 'pydl[cuda12]' (CUDA 12 driver) or 'pydl[cuda13]' (CUDA 13 driver)"
)

# ----------------------------------------------------------------------------- settings
_settings = {"matmul_backend": "pydl", "allow_tf32": False, "check_targets": True}


def set_matmul_backend(backend: str) -> None:
    """``"pydl"``: our GEMM kernels (default); ``"cupy"``: ``cupy.matmul`` (cuBLAS)."""
    if backend not in ("pydl", "cupy"):
        raise ValueError(f"matmul backend must be 'pydl' or 'cupy', got {backend!r}")
    _settings["matmul_backend"] = backend


def get_matmul_backend() -> str:
    return _settings["matmul_backend"]


def set_allow_tf32(flag: bool) -> None:
    """Let float32 matmul run on TF32 tensor cores (inputs rounded to 10-bit mantissas)."""
    _settings["allow_tf32"] = bool(flag)


def get_allow_tf32() -> bool:
    return _settings["allow_tf32"]


def set_target_checks(flag: bool) -> None:
    """Check cross-entropy targets on the host after each forward (one small sync)."""
    _settings["check_targets"] = bool(flag)


# ----------------------------------------------------------------------------- availability
def ensure_available() -> None:
    """Raise RuntimeError saying what is missing when CuPy or a usable GPU is absent."""
    if cupy is None:
        raise RuntimeError(f"the CUDA backend needs CuPy, which is not installed: {_INSTALL_HINT}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, missing driver library...
        raise RuntimeError(
            f"CuPy is installed but CUDA is not usable (no NVIDIA driver or GPU?): {exc}"
        ) from None
    if count == 0:
        raise RuntimeError("CuPy is installed but no CUDA device is visible")
    if os.environ.get("PYDL_CUDA_NO_POOL") == "1":
        # every allocation straight from cudaMalloc: lets compute-sanitizer see out-of-bounds
        # accesses that would land inside a pooled block (docs/kernels.md)
        cupy.cuda.set_allocator(None)


_DEVICE_COUNT: list = []


def device_count() -> int:
    if not _DEVICE_COUNT:  # fixed for the life of the process (CUDA_VISIBLE_DEVICES)
        _DEVICE_COUNT.append(int(cupy.cuda.runtime.getDeviceCount()))
    return _DEVICE_COUNT[0]


def check_device_index(index: int) -> None:
    count = device_count()
    if not 0 <= index < count:
        raise RuntimeError(f"cuda:{index} does not exist: {count} CUDA device(s) visible")


def _device_id(device) -> int:
    if device is None:
        return cupy.cuda.runtime.getDevice()
    if isinstance(device, int):
        return device
    index = getattr(device, "index", None)
    if index is None and isinstance(device, str):
        from . import as_device

        index = as_device(device).index
    return int(index or 0)


# ----------------------------------------------------------------------------- random numbers
class _Rng:
    """A Generator-like face (random, standard_normal, integers) over CuPy's Philox generator.

    The state is (seed, epoch): ``get_rng_state`` starts a new epoch, reseeding from
    (seed, epoch), and returns it, so the draws after saving and after restoring agree.
    """

    def __init__(self, seed, epoch=0):
        self.seed, self.epoch = seed, epoch
        self._states = {}

    def _state(self):
        from .cuda_graph import refuse

        refuse("random numbers")
        dev = cupy.cuda.runtime.getDevice()
        rs = self._states.get(dev)
        if rs is None:
            mixed = None
            if self.seed is not None:
                mixed = int(np.random.SeedSequence([int(self.seed), self.epoch, dev])
                            .generate_state(1, np.uint64)[0] >> 1)
            try:
                from cupy_backends.cuda.libs import curand

                rs = cupy.random.RandomState(mixed,
                                             method=curand.CURAND_RNG_PSEUDO_PHILOX4_32_10)
            except ImportError:  # no libcurand (pip install nvidia-curand): draw on the host
                rs = _HostRandomState(mixed)
            self._states[dev] = rs
        return rs

    def random(self, size=None, dtype=np.float64):
        return self._state().random_sample(size=size, dtype=dtype)

    def standard_normal(self, size=None, dtype=np.float64):
        return self._state().standard_normal(size=size, dtype=dtype)

    def integers(self, low, high=None, size=None):
        if high is None:
            low, high = 0, low
        return self._state().randint(low, high, size=size, dtype=np.int64)


class _HostRandomState:
    """NumPy draws uploaded to the GPU, for CuPy installs without cuRAND."""

    def __init__(self, seed):
        self._gen = np.random.default_rng(seed)

    def random_sample(self, size=None, dtype=np.float64):
        return cupy.asarray(self._gen.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64):
        return cupy.asarray(self._gen.standard_normal(size, dtype=dtype))

    def randint(self, low, high, size=None, dtype=np.int64):
        return cupy.asarray(self._gen.integers(low, high, size=size, dtype=dtype))


_rng = _Rng(None)


def manual_seed(seed: int) -> None:
    global _rng
    _rng = _Rng(int(seed))


def rng() -> _Rng:
    return _rng


def get_rng_state() -> dict:
    global _rng
    if _rng.seed is None:  # unseeded: pick a seed now so the state can be restored
        _rng = _Rng(int(np.random.SeedSequence().generate_state(1)[0]))
    _rng = _Rng(_rng.seed, _rng.epoch + 1)
    return {"seed": _rng.seed, "epoch": _rng.epoch}


def set_rng_state(state: dict) -> None:
    global _rng
    _rng = _Rng(int(state["seed"]), int(state["epoch"]))


# ----------------------------------------------------------------------------- host <-> device
def to_numpy(array) -> np.ndarray:
    """A NumPy copy of a device array."""
    return array.get()


def pin_memory(array: np.ndarray) -> np.ndarray:
    """A copy of host ``array`` in page-locked memory (CuPy's pinned pool), so that copying it
    to the GPU is one DMA transfer instead of a staged copy through a driver buffer."""
    array = np.ascontiguousarray(array)
    mem = cupy.cuda.alloc_pinned_memory(max(array.nbytes, 1))
    out = np.frombuffer(mem, dtype=array.dtype, count=array.size).reshape(array.shape)
    out[...] = array
    return out


def from_numpy(data, dtype=None, device=None):
    """A CuPy array on ``device`` (default: the current one) from NumPy or CuPy data."""
    with cupy.cuda.Device(_device_id(device)):
        if isinstance(data, cupy.ndarray):
            if data.device.id != cupy.cuda.runtime.getDevice():
                data = cupy.asarray(data.get())  # another GPU's array: through the host
            return data.astype(dtype, copy=False) if dtype is not None else data
        host = np.asarray(data, dtype=dtype)
        return cupy.asarray(host)
