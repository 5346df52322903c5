"""CPU backend: NumPy arrays, the NumPy reference kernels, and the C++ ones where built.

Each protocol kernel (``pydl.backend.protocol``) exists as a NumPy reference in
``reference.py``, the readable version and the test oracle. When the C++ extension ``pydl._C``
is built, ``ext.py`` wraps its faster versions (each falling back to the reference for inputs
it does not take). ``implementations`` is the table of which function runs each kernel;
``use_extension(False)`` (or ``PYDL_DISABLE_EXT=1`` in the environment) points it back at the
references, for tests and benchmarks. ``pydl.backend.cpu.<kernel>`` reads that table (a
property of this module's type, one per protocol kernel), so a new protocol kernel needs no
line here.
"""

import ctypes
import os
import sys
import types

import numpy as np

from ...threads import _apply_default as _apply_default_threads
from .. import protocol
from . import reference

name = "cpu"
xp = np

try:  # the extension is optional: pydl works (slower) without it
    from . import ext as extension
except ImportError:  # pragma: no cover - depends on the build
    extension = None
_apply_default_threads(extension)  # never more busy threads than cores (pydl/threads.py)

_rng = np.random.default_rng()

#: glibc malloc settings applied at import (see keep_freed_memory): arrays below
#: MMAP_THRESHOLD come from the heap, and up to TRIM_THRESHOLD bytes of freed heap stay mapped.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Make glibc keep freed array memory mapped, so the next step reuses it without page faults.

    A training step allocates and frees the same large arrays every time (an LSTM step of
    batch 64, length 50, hidden 64: ~14 MB). With glibc's defaults those come from fresh
    mmap pages or a heap trimmed back to the OS after each step, so every step page-faults
    them in again: ~3,400 minor faults and about half the step time of that LSTM, measured.
    This sets ``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD`` to the ceilings glibc's own
    adaptive policy would reach (32 MB / 64 MB) at once; the cost is up to 64 MB of freed
    memory kept by the process. Called at import unless ``PYDL_KEEP_FREED_MEMORY=0``; returns
    False where there is no glibc ``mallopt``.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD))


if os.environ.get("PYDL_KEEP_FREED_MEMORY") != "0":
    keep_freed_memory()


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


# ----------------------------------------------------------------------------- kernels
def _table(fast: bool) -> dict:
    """name -> the function running that kernel: the C++ one when ``fast`` and built, else
    the reference."""
    return {
        kernel: (getattr(extension, kernel, None) if fast else None) or getattr(reference, kernel)
        for kernel in protocol.KERNELS
    }


def extension_active() -> bool:
    """True when the protocol kernels run the C++ versions."""
    return _active


def use_extension(enabled: bool = True) -> None:
    """Route the protocol kernels to the C++ extension (when built) or to the references."""
    global implementations, _active
    _active = bool(enabled) and extension is not None
    implementations = _table(_active)


_active = False
#: the implementation of every protocol kernel in use now (``use_extension`` replaces it)
implementations: dict = {}
use_extension(os.environ.get("PYDL_DISABLE_EXT") != "1")


def _kernel_property(kernel: str) -> property:
    """``pydl.backend.cpu.<kernel>``: whatever ``implementations`` holds for it now.

    Reading the attribute returns the implementation itself, so a call costs no extra
    frame; assigning it (a test's monkeypatch) replaces the table entry.
    """

    def get(module):
        return implementations[kernel]

    def set_(module, fn):
        implementations[kernel] = fn

    return property(get, set_, doc=f"the protocol kernel {kernel!r} (see implementations)")


class _CPUBackend(types.ModuleType):
    """This module's type: one property per protocol kernel, reading ``implementations``."""


for _name in protocol.KERNELS:
    setattr(_CPUBackend, _name, _kernel_property(_name))
sys.modules[__name__].__class__ = _CPUBackend


def to_numpy(array) -> np.ndarray:
    """A NumPy view of a CPU array (no copy)."""
    return array


def pin_memory(array: np.ndarray) -> np.ndarray:
    """Page-locked host memory only speeds up copies to a GPU: on the CPU, ``array`` itself."""
    return array


def from_numpy(array, dtype=None, device=None):
    """A CPU array from NumPy data (or a CuPy array, copied to the host), in ``dtype``."""
    if type(array).__module__.startswith("cupy"):
        array = array.get()
    return np.asarray(array, dtype=dtype)
