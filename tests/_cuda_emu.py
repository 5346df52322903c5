"""Run pydl's CUDA backend without a GPU: NumPy arrays as device memory, and every kernel of
``csrc/cuda`` compiled as C++ against ``cuda_emu.h`` (CUDA threads as coroutines).

``emulated(sms)`` patches ``pydl.backend.cuda`` in place (``xp`` = NumPy, ``_function`` =
the host build, ``_ptr``, ``_sm_count``) and restores it afterwards, so the backend's own
planning code (tiles, split-K, operand strides, tables) runs unchanged. Each launch also
checks that the byte size of every argument matches the kernel's parameter, the mistake a
real launch would not report.

``PYDL_EMU_ORDER`` = forward (default), reverse or random sets the order in which threads run
between barriers; a missing ``__syncthreads`` gives a wrong result in some order.
Builds are cached under ``$TMPDIR/pydl_cuda_emu``. When libasan is preloaded
(``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``), the kernels are built with
AddressSanitizer and UBSan's alignment check, which then catch out-of-bounds and
misaligned vector accesses the way compute-sanitizer would on a GPU.
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

from pydl.backend import cuda as backend
from pydl.backend import cuda_kernels as ck

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


def _library(filename):
    lib = _LIBS.get(filename)
    if lib is not None:
        return lib
    names = ck.instances()[filename]
    source = '#include "cuda_emu.h"\n' + ck.kernel_source(filename) + _wrappers(names)
    flags = ["-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-w", f"-I{HEADER.parent}"]
    if ASAN:
        flags += ["-fsanitize=address,alignment", "-fno-omit-frame-pointer"]
    digest = hashlib.sha1((source + HEADER.read_text() + " ".join(flags)).encode()).hexdigest()
    cache = Path(tempfile.gettempdir()) / "pydl_cuda_emu"
    cache.mkdir(exist_ok=True)
    so = cache / f"{filename[:-3]}-{digest[:16]}.so"
    if not so.exists():
        src = cache / f"{filename[:-3]}-{digest[:16]}.cc"
        src.write_text(source)
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        result = subprocess.run([compiler(), *flags, str(src), "-o", str(tmp)],
                                capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"host build of {filename} failed:\n{result.stderr[-6000:]}")
        os.replace(tmp, so)
    lib = ctypes.CDLL(str(so))
    lib.emu_error.restype = ctypes.c_char_p
    lib.emu_set_order(ORDERS[ORDER])
    _LIBS[filename] = (lib, {expr: i for i, expr in enumerate(names)})
    return _LIBS[filename]


class _Kernel:
    def __init__(self, filename, expr):
        lib, index = _library(filename)
        if expr not in index:
            raise KeyError(f"{expr} is not in cuda_kernels.instances() for {filename}")
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


_PATCHES = {
    "xp": lambda sms: np,
    "_function": lambda sms: _function,
    "_ptr": lambda sms: (lambda a: a.ctypes.data),
    "_sm_count": lambda sms: (lambda: sms),
}


def patch(monkeypatch, sms=132):
    """Emulate through pytest's ``monkeypatch`` (undone with the test's other patches)."""
    for key, make in _PATCHES.items():
        monkeypatch.setattr(backend, key, make(sms))


@contextlib.contextmanager
def emulated(sms=132):
    """Make ``pydl.backend.cuda`` run on NumPy arrays and host-compiled kernels."""
    saved = {key: getattr(backend, key) for key in _PATCHES}
    for key, make in _PATCHES.items():
        setattr(backend, key, make(sms))
    try:
        yield backend
    finally:
        for key, value in saved.items():
            setattr(backend, key, value)
