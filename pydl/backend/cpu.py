"""CPU backend: NumPy arrays, the NumPy reference kernels, and the C++ ones where built.

Each protocol kernel (``pydl.backend.base``) exists as a NumPy reference in
``cpu_reference.py``, the readable version and the test oracle. When the C++ extension
``pydl._C`` is built, ``cpu_ext.py`` wraps its faster versions and they take over.
``use_extension(False)`` (or ``PYDL_DISABLE_EXT=1`` in the environment) switches back to the
references, for tests and benchmarks.
"""

import os

import numpy as np

from . import base
from . import cpu_reference as reference

name = "cpu"
xp = np

try:  # the extension is optional: pydl works (slower) without it
    from . import cpu_ext as extension
except ImportError:  # pragma: no cover - depends on the build
    extension = None

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Reseed the CPU generator used by rand, randn, dropout and initializers."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    return _rng


def get_rng_state() -> dict:
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    _rng.bit_generator.state = state


def extension_active() -> bool:
    """True when the protocol kernels run the C++ versions."""
    return _active


def use_extension(enabled: bool = True) -> None:
    """Route the protocol kernels to the C++ extension (when built) or to the references."""
    global _active
    _active = bool(enabled) and extension is not None
    for kernel in base.KERNELS:
        impl = getattr(extension, kernel, None) if _active else None
        globals()[kernel] = impl if impl is not None else getattr(reference, kernel, None)


_active = False
use_extension(os.environ.get("PYDL_DISABLE_EXT") != "1")


def to_numpy(array) -> np.ndarray:
    """A NumPy view of a CPU array (no copy)."""
    return array


def from_numpy(array, dtype=None, device=None):
    """A CPU array from NumPy data (or a CuPy array, copied to the host), in ``dtype``."""
    if type(array).__module__.startswith("cupy"):
        array = array.get()
    return np.asarray(array, dtype=dtype)
