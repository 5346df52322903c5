"""The CUDA backend's runtime: kernel sources and NVRTC, the compile cache and launches,
devices, random numbers, host <-> device copies and the backend's switches.

``pydl.backend.cuda`` re-exports the public part next to the kernels; the kernel family
modules (``gemm.py``, ``conv.py``, ...) plan their launches and call ``launch`` here.

Compilation is lazy, once per (file, template instance, device), through ``cupy.RawModule``,
kept in ``_FUNCTIONS``. CuPy caches the compiled binaries on disk (``~/.cupy/kernel_cache``,
or ``$CUPY_CACHE_DIR``), keyed by the source text, options, architecture and name expressions,
so a later process loads them without compiling.

The family modules reach ``xp``, ``function``, ``launch``, ``empty``, ``ptr``, ``sm_count`` and
``upload`` through this module's attributes at call time (``rt.launch(...)``), so the host
emulation of the tests (tests/_cuda_emu.py) replaces them here, in one place.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from . import graph

try:
    import cupy
except ImportError:  # the backend imports; ensure_available says what is missing
    cupy = None

xp = cupy

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
    """Let float32 matmul run on TF32 tensor cores (inputs truncated to 10-bit mantissas)."""
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
        from .. import as_device

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
        graph.refuse("random numbers")
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


# ----------------------------------------------------------------------------- sources
# Sources are csrc/cuda/*.cu (copied into pydl/kernels by setup.py for installed packages;
# editable and source checkouts read csrc/cuda directly). ``kernel_source`` pastes our own
# ``#include "x.cuh"`` headers in place, so the text NVRTC sees, and with it CuPy's on-disk
# cache key, changes whenever a header does.

# CuPy adds -ftz=true and -arch itself when it compiles; compile_file adds them the same way.
NVRTC_OPTIONS = ("-std=c++17",)
#: threads per block of every launch except softmax's rows (see each family's launch_block)
BLOCK = 256
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

_HERE = Path(__file__).resolve().parent
_SEARCH = (_HERE.parents[1] / "kernels", _HERE.parents[2] / "csrc" / "cuda")


class CompileError(RuntimeError):
    """NVRTC rejected a kernel file; the message holds its log."""


def kernel_dirs() -> list[Path]:
    """Folders holding the .cu sources: the installed package's first, then the repository's."""
    return [d for d in _SEARCH if d.is_dir() and any(d.glob("*.cu"))]


def _find(name: str) -> Path:
    for d in kernel_dirs():
        if (d / name).is_file():
            return d / name
    looked = ", ".join(str(d) for d in _SEARCH)
    raise FileNotFoundError(
        f"CUDA kernel source {name!r} not found (looked in {looked}); reinstall pydl, or run "
        "from a source checkout that has csrc/cuda"
    )


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.M)
_SOURCES: dict[str, str] = {}


def kernel_source(name: str) -> str:
    """The text of kernel file ``name`` with our quoted includes pasted in (each once)."""
    text = _SOURCES.get(name)
    if text is None:
        text = _expand(name, set())
        _SOURCES[name] = text
    return text


def _expand(name: str, seen: set) -> str:
    seen.add(name)
    lines = _find(name).read_text().splitlines()
    out = [f'#line 1 "{name}"']
    for number, line in enumerate(lines, 1):
        m = _INCLUDE.match(line)
        if m:
            if m.group(1) not in seen:
                out.append(_expand(m.group(1), seen))
            out.append(f'#line {number + 1} "{name}"')
        elif line.strip() == "#pragma once":
            out.append("")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _b(flag: bool) -> str:
    return "true" if flag else "false"


def template_name(kernel: str, *args) -> str:
    """The NVRTC name expression ``pydl::<kernel><args...>`` (bools as true / false)."""
    text = ", ".join(_b(a) if isinstance(a, bool) else str(a) for a in args)
    return f"pydl::{kernel}<{text}>"


def typed_name(kind: str, ctype: str) -> str:
    """``pydl::<kind>_kernel<ctype>``: a kernel templated on its dtype only."""
    return template_name(f"{kind}_kernel", ctype)


def typed_instances(kinds) -> list[str]:
    """``typed_name`` of every kind in ``kinds`` for float and double."""
    return [typed_name(kind, ctype) for ctype in CTYPES.values() for kind in kinds]


# ----------------------------------------------------------------------------- NVRTC (no GPU)
def _nvrtc():
    try:
        from cupy.cuda import nvrtc
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "compiling pydl's CUDA kernels needs CuPy and NVRTC: pip install cupy-cuda13x "
            "nvidia-cuda-nvrtc (or pydl[cuda13]; cupy-cuda12x nvidia-cuda-nvrtc-cu12 for "
            f"CUDA 12): {exc}"
        ) from exc
    try:
        nvrtc.getVersion()
    except Exception as exc:  # noqa: BLE001 - the shared library could not be loaded
        raise RuntimeError(
            "CuPy is installed but the NVRTC library could not be loaded: pip install "
            f"nvidia-cuda-nvrtc (CUDA 13) or nvidia-cuda-nvrtc-cu12 (CUDA 12): {exc}"
        ) from exc
    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    return tuple(_nvrtc().getVersion())


def nvrtc_options(arch: str) -> tuple[str, ...]:
    """The NVRTC options a launch compiles with for ``arch``: ours plus what CuPy adds."""
    return tuple(NVRTC_OPTIONS) + ("-ftz=true", f"-arch={arch}")


def compile_file(name: str, arch: str, name_expressions, options=()) -> dict:
    """Compile kernel file ``name`` with NVRTC for ``arch`` (``sm_80``, ``sm_90``); no GPU.

    Instantiates ``name_expressions`` and returns ``{"file", "arch", "kernels", "seconds",
    "log", "cubin_bytes"}``; ``log`` is NVRTC's log (warnings), empty for a clean compile.
    Raises ``CompileError`` with the log on failure.
    """
    nvrtc = _nvrtc()
    names = list(name_expressions)
    source = kernel_source(name)
    opts = nvrtc_options(arch) + tuple(options)
    start = time.perf_counter()
    prog = nvrtc.createProgram(source, name, (), ())
    try:
        for expr in names:
            nvrtc.addNameExpression(prog, expr)
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(prog)
            raise CompileError(f"NVRTC failed on {name} for {arch}: {exc}\n{log}") from None
        log = nvrtc.getProgramLog(prog).strip()
        lowered = [nvrtc.getLoweredName(prog, expr) for expr in names]
        binary = nvrtc.getCUBIN(prog) if arch.startswith("sm_") else nvrtc.getPTX(prog)
    finally:
        nvrtc.destroyProgram(prog)
    if len(lowered) != len(names) or not all(lowered):
        raise CompileError(f"NVRTC did not instantiate every kernel of {name}")
    return {
        "file": name, "arch": arch, "kernels": len(names),
        "seconds": time.perf_counter() - start, "log": log, "cubin_bytes": len(binary),
    }


# ----------------------------------------------------------------------------- compile + launch
_FUNCTIONS: dict = {}
_LOCK = threading.Lock()


def function(filename: str, name_expr: str):
    """The compiled kernel ``name_expr`` of ``filename`` for the current device (cached)."""
    dev = cupy.cuda.runtime.getDevice()
    key = (filename, name_expr, dev)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        with _LOCK:
            fn = _FUNCTIONS.get(key)
            if fn is None:
                module = cupy.RawModule(code=kernel_source(filename), options=NVRTC_OPTIONS,
                                        name_expressions=(name_expr,))
                fn = module.get_function(name_expr)
                _FUNCTIONS[key] = fn
    return fn


def compile_instances(filename: str, names) -> None:
    """Compile the instances ``names`` of ``filename`` in one NVRTC run (skips cached ones)."""
    dev = cupy.cuda.runtime.getDevice()
    if all((filename, n, dev) in _FUNCTIONS for n in names):
        return
    module = cupy.RawModule(code=kernel_source(filename), options=NVRTC_OPTIONS,
                            name_expressions=tuple(names))
    for n in names:
        _FUNCTIONS.setdefault((filename, n, dev), module.get_function(n))


def launch(filename, name_expr, grid, block, args):
    """Launch ``name_expr`` of ``filename`` on a 1- to 3-D ``grid`` of ``block``-thread blocks."""
    grid = tuple(int(g) for g in grid) + (1,) * (3 - len(grid))
    function(filename, name_expr)(grid, (int(block), 1, 1), args)


def empty(shape, dtype):
    """Uninitialised output (every element is written by a kernel; tests poison it)."""
    return xp.empty(shape, dtype=dtype)


def ptr(array) -> int:
    return array.data.ptr


def upload(host: np.ndarray):
    """A device copy of the host table ``host`` (through graph.upload: safe in a capture)."""
    return graph.upload(host)


_SM_COUNT: dict = {}


def sm_count() -> int:
    dev = cupy.cuda.runtime.getDevice()
    n = _SM_COUNT.get(dev)
    if n is None:
        n = _SM_COUNT[dev] = int(
            cupy.cuda.runtime.deviceGetAttribute(
                cupy.cuda.runtime.cudaDevAttrMultiProcessorCount, dev
            )
        )
    return n


def grid_1d(total: int) -> int:
    """Blocks of a ``BLOCK``-thread grid-stride loop over ``total`` elements."""
    return max(1, min(-(-total // BLOCK), 32 * sm_count()))


def _on_device_of(array):
    """Context making ``array``'s GPU current (a no-op when it already is)."""
    dev = getattr(getattr(array, "device", None), "id", None)
    if dev is None or cupy is None or dev == cupy.cuda.runtime.getDevice():
        return contextlib.nullcontext()
    return cupy.cuda.Device(dev)


def on_device(fn):
    """Run a protocol kernel with its first array argument's GPU current."""

    @functools.wraps(fn)
    def wrapper(first, *args, **kwargs):
        probe = first[0] if isinstance(first, (list, tuple)) and first else first
        with _on_device_of(probe):
            return fn(first, *args, **kwargs)

    return wrapper


# ----------------------------------------------------------------------------- argument checks
_I32_MAX = 2**31 - 1


def check_i32(op, **values):
    """Raise ValueError when a size exceeds the kernels' 32-bit index range."""
    for key, value in values.items():
        if value > _I32_MAX:
            raise ValueError(
                f"{op}: {key} = {value} exceeds the 32-bit index range of the CUDA kernels"
            )


def float_pair(op, a, *others):
    """The C type of ``a``'s dtype, after checking every other array has the same dtype."""
    for b in others:
        if a.dtype != b.dtype:
            raise TypeError(f"{op}: dtypes {a.dtype} and {b.dtype} differ")
    return ctype(op, a.dtype)


def ctype(op, dtype):
    """``"float"`` or ``"double"``; TypeError naming ``op`` for any other dtype."""
    name = CTYPES.get(np.dtype(dtype))
    if name is None:
        raise TypeError(f"{op}: the CUDA kernels support float32 and float64, not {dtype}")
    return name


def scalar(ctype_name):
    return np.float32 if ctype_name == "float" else np.float64


def contig(a):
    return a if a.flags.c_contiguous else xp.ascontiguousarray(a)


def null_or(array):
    return array if array is not None else np.uint64(0)


# ----------------------------------------------------------------------------- device tables
class LruCache(collections.OrderedDict):
    """A small dict that forgets its least recently used entries (device tables)."""

    def __init__(self, size):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make):
        if key in self:
            self.move_to_end(key)
            return graph.keep(self[key])  # a graph being recorded holds on to it
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return graph.keep(value)


def device_key():
    """Which device (and array module) a cached device table belongs to."""
    if cupy is not None and xp is cupy:
        return ("cupy", cupy.cuda.runtime.getDevice())
    return (getattr(xp, "__name__", "?"), 0)
