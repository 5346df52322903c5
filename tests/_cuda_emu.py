"""Run pydl's CUDA backend without a GPU: NumPy arrays as device memory, and every kernel of
``csrc/cuda`` compiled as C++ against ``cuda_emu.h`` (CUDA threads as coroutines).

``emulated(sms)`` patches ``pydl.backend.cuda.runtime`` in place (``xp`` = NumPy,
``function`` = the host build, ``ptr``, ``sm_count``, ``upload``; the package's ``xp`` too)
and restores it afterwards. The kernel family modules read those through the runtime at call
time, so the backend's own planning code (tiles, split-K, operand strides, tables, the
kernels' Python glue) runs unchanged. Each launch also checks that the byte size of every
argument matches the kernel's parameter, the mistake a real launch would not report.

``PYDL_EMU_ORDER`` = forward (default), reverse or random sets the order in which threads run
between barriers; a missing ``__syncthreads`` gives a wrong result in some order.
Builds are cached under ``$TMPDIR/pydl_cuda_emu``. When libasan is preloaded
(``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``), the kernels are built with
AddressSanitizer and UBSan's alignment check, which then catch out-of-bounds and
misaligned vector accesses the way compute-sanitizer would on a GPU.

``KINDS`` and ``device`` make the fixture that runs a test on the GPU (marked ``gpu``) and,
with ``PYDL_CUDA_EMULATE=1``, under this emulation.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from pydl.backend import cuda as backend
from pydl.backend.cuda import runtime as rt

HEADER = Path(__file__).with_name("cuda_emu.h")
ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


ORDERS = {"forward": 0, "reverse": 1, "random": 2}
ORDER = os.environ.get("PYDL_EMU_ORDER", "forward")


def _wrappers(names):
    out = ['extern "C" const char* emu_error() { return emu::g_error.c_str(); }',
           'extern "C" void emu_set_order(int order) { emu::g_order = order; }']
    for i, expr in enumerate(names):
        out.append(
            f'extern "C" int emu_launch_{i}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
            f"void** args) {{ return emu::launch(&{expr}, gx, gy, gz, bx, args); }}"
        )
        out.append(f'extern "C" void emu_sizes_{i}(int* out) {{ emu::param_sizes(&{expr}, out); }}')
    return "\n".join(out) + "\n"


_LIBS: dict = {}


def _build(stem, source, flags, what):
    """The shared library built from ``source``, cached by a hash of source and flags."""
    digest = hashlib.sha1((source + " ".join(flags)).encode()).hexdigest()
    cache = Path(tempfile.gettempdir()) / "pydl_cuda_emu"
    cache.mkdir(exist_ok=True)
    so = cache / f"{stem}-{digest[:16]}.so"
    if not so.exists():
        src = cache / f"{stem}-{digest[:16]}.cc"
        src.write_text(source)
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        result = subprocess.run([compiler(), *flags, str(src), "-o", str(tmp)],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"host build of {what} failed:\n{result.stderr[-6000:]}")
        os.replace(tmp, so)
    return ctypes.CDLL(str(so))


def _sanitize(flags):
    return flags + ["-fsanitize=address,alignment", "-fno-omit-frame-pointer"] if ASAN else flags


def _library(filename):
    lib = _LIBS.get(filename)
    if lib is not None:
        return lib
    names = backend.instances()[filename]
    source = '#include "cuda_emu.h"\n' + rt.kernel_source(filename) + _wrappers(names)
    # the header's text joins the source in the hash: it is #included, not part of source
    flags = _sanitize(["-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-w",
                       f"-I{HEADER.parent}"])
    lib = _build(filename[:-3], f"// {hashlib.sha1(HEADER.read_bytes()).hexdigest()}\n"
                 + source, flags, filename)
    lib.emu_error.restype = ctypes.c_char_p
    lib.emu_set_order(ORDERS[ORDER])
    _LIBS[filename] = (lib, {expr: i for i, expr in enumerate(names)})
    return _LIBS[filename]


class _Kernel:
    def __init__(self, filename, expr):
        lib, index = _library(filename)
        if expr not in index:
            raise KeyError(f"{expr} is not in pydl.backend.cuda.instances() for {filename}")
        i = index[expr]
        self.name, self.lib = expr, lib
        self.run = getattr(lib, f"emu_launch_{i}")
        self.run.argtypes = [ctypes.c_uint] * 4 + [ctypes.POINTER(ctypes.c_void_p)]
        sizes = (ctypes.c_int * 64)()
        getattr(lib, f"emu_sizes_{i}")(sizes)
        self.sizes = list(sizes[: list(sizes).index(-1)])

    def __call__(self, grid, block, args, shared_mem=0):
        if len(args) != len(self.sizes):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.sizes)} parameters")
        keep, ptrs = [], (ctypes.c_void_p * len(args))()
        for i, (arg, size) in enumerate(zip(args, self.sizes, strict=True)):
            if isinstance(arg, np.ndarray):
                raw = np.uint64(arg.ctypes.data).tobytes()
            elif isinstance(arg, np.generic):
                raw = arg.tobytes()
            else:
                raise TypeError(f"{self.name}: argument {i} is a {type(arg).__name__}; pass "
                                "NumPy scalars so the byte size is explicit")
            if len(raw) != size:
                raise TypeError(f"{self.name}: argument {i} has {len(raw)} bytes, the kernel "
                                f"parameter {size}")
            buf = ctypes.create_string_buffer(raw, len(raw))
            keep.append(buf)
            ptrs[i] = ctypes.addressof(buf)
        gx, gy, gz = grid
        for dim in (gx, gy, gz, block[0]):
            if dim < 1:
                raise ValueError(f"{self.name}: empty launch {grid} x {block}")
        if block[0] > 1024 or gy > 65535 or gz > 65535:
            raise ValueError(f"{self.name}: launch {grid} x {block} exceeds CUDA's limits")
        if self.run(gx, gy, gz, block[0], ptrs):
            raise RuntimeError(f"{self.name}: {self.lib.emu_error().decode()}")


_KERNELS: dict = {}


def _function(filename, expr):
    key = (filename, expr)
    if key not in _KERNELS:
        _KERNELS[key] = _Kernel(filename, expr)
    return _KERNELS[key]


# (module, attribute) -> its stand-in; the family modules read these from runtime at call time
_PATCHES = {
    (rt, "xp"): lambda sms: np,
    (backend, "xp"): lambda sms: np,
    (rt, "function"): lambda sms: _function,
    (rt, "ptr"): lambda sms: (lambda a: a.ctypes.data),
    (rt, "sm_count"): lambda sms: (lambda: sms),
    (rt, "upload"): lambda sms: np.asarray,
}


def patch(monkeypatch, sms=132):
    """Emulate through pytest's ``monkeypatch`` (undone with the test's other patches)."""
    for (module, key), make in _PATCHES.items():
        monkeypatch.setattr(module, key, make(sms))


@contextlib.contextmanager
def emulated(sms=132):
    """Make ``pydl.backend.cuda`` run on NumPy arrays and host-compiled kernels."""
    saved = {target: getattr(*target) for target in _PATCHES}
    for (module, key), make in _PATCHES.items():
        setattr(module, key, make(sms))
    try:
        yield backend
    finally:
        for (module, key), value in saved.items():
            setattr(module, key, value)


# ----------------------------------------------------------------------------- test fixtures
EMULATE = os.environ.get("PYDL_CUDA_EMULATE") == "1"

# params of a fixture that runs a test on the GPU and under the emulation
KINDS = [
    pytest.param("gpu", marks=pytest.mark.gpu),
    pytest.param("emulated", marks=pytest.mark.skipif(
        not EMULATE, reason="set PYDL_CUDA_EMULATE=1 to run the kernels on the CPU")),
]


class Device:
    """Moves NumPy arrays to the backend under test and back."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "gpu":
            import cupy

            self.xp = cupy
        else:
            self.xp = np

    def put(self, a):
        return self.xp.asarray(np.ascontiguousarray(a)) if self.kind == "gpu" else np.array(a)

    def get(self, a):
        return a.get() if self.kind == "gpu" else np.asarray(a)


def poison(monkeypatch):
    """Fill what the backend allocates with NaN (-7 for integers): unwritten elements show."""
    def poisoned(shape, dtype):
        a = rt.xp.empty(shape, dtype=dtype)
        a.fill(np.nan if np.dtype(dtype).kind == "f" else -7)
        return a

    monkeypatch.setattr(rt, "empty", poisoned)


def device(kind, monkeypatch):
    """The body of a ``KINDS`` fixture: patch the backend for ``kind``, poison its outputs."""
    if kind == "emulated":
        if compiler() is None:
            pytest.skip("no C++ compiler for the CUDA emulation")
        patch(monkeypatch)
    poison(monkeypatch)
    return Device(kind)
