"""Run pydl's CUDA backend without a GPU: NumPy arrays as device memory, every kernel of
``csrc/cuda`` compiled as C++ against ``cuda_emu.h`` (CUDA threads as coroutines), and the
backend's CuPy ``ElementwiseKernel``s (activations, recurrent cells) compiled by
``ElementwiseKernel`` below.

``emulated(sms)`` patches ``pydl.backend.cuda`` in place (``xp`` = NumPy, ``_function`` =
the host build, ``_ptr``, ``_sm_count``, and ``cupy`` = the real module, or nothing, with
``ElementwiseKernel`` replaced) and restores it afterwards, so the backend's own planning
code (tiles, split-K, operand strides, tables, the kernels' Python glue) runs unchanged.
Each launch also checks that the byte size of every argument matches the kernel's
parameter, the mistake a real launch would not report. The backend's ``lru_cache``d kernel
builders (``_act_kernel``, ``_cell_kernel``) get fresh caches while patched, so emulated and
real ``ElementwiseKernel``s never mix.

``ElementwiseKernel`` follows CuPy's (``cupy/_core/_kernel.pyx``): placeholder types bound
from the arrays' dtypes (outputs first, "Type is mismatched" when they disagree), NumPy
names for fixed types, scalars converted to their parameter's type, non-raw arrays
broadcast together (inputs read as ``const T&``, outputs written through ``T&``), ``raw``
arrays indexed by hand with the loop index ``i`` (a ``ptrdiff_t``) in C order, raw inputs
``const`` so writing one does not compile, outputs allocated (all or none passed) or
checked, ``size=`` when every array is raw, the result one array or a tuple. It adds what
CuPy does not check: a raw index outside its array is an error, and the names CuPy's
documentation reserves (``n``, ``i``, ``_...``) are refused.

``PYDL_EMU_ORDER`` = forward (default), reverse or random sets the order in which threads run
between barriers (and the order of an ElementwiseKernel's loop); a missing
``__syncthreads`` gives a wrong result in some order.
Builds are cached under ``$TMPDIR/pydl_cuda_emu``. When libasan is preloaded
(``LD_PRELOAD=$(gcc -print-file-name=libasan.so)``), the kernels are built with
AddressSanitizer and UBSan's alignment check, which then catch out-of-bounds and
misaligned vector accesses the way compute-sanitizer would on a GPU.

``KINDS`` and ``device`` make the fixture that runs a test on the GPU (marked ``gpu``) and,
with ``PYDL_CUDA_EMULATE=1``, under this emulation. ``cupy_compile_errors`` compiles what
CuPy would generate for an ElementwiseKernel with NVRTC, which needs CuPy but no GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

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
    names = ck.instances()[filename]
    source = '#include "cuda_emu.h"\n' + ck.kernel_source(filename) + _wrappers(names)
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


# ----------------------------------------------------------------------------- ElementwiseKernel
# What CuPy generates for an ElementwiseKernel (cupy/_core/_kernel.pyx), as one C++ function
# per (kernel, type binding, which arguments are arrays), extern "C" and named like the
# kernel: the typedefs of the placeholders, the preamble, then a loop over i whose body
# first binds every non-raw array argument to its element. Arrays arrive as (pointer, ndim,
# shape, byte strides), non-raw ones already broadcast to the loop's shape.
_EW_PRELUDE = r"""
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
// CUDA's float overloads (tanh(float) is tanhf): libstdc++'s math.h puts std's in scope
static_assert(std::is_same<decltype(tanh(1.0f)), float>::value, "float math stays float");

struct EmuArg { char* data; int ndim; const ptrdiff_t* shape; const ptrdiff_t* strides; };

inline ptrdiff_t emu_size(const EmuArg& a) {
    ptrdiff_t n = 1;
    for (int d = 0; d < a.ndim; ++d) n *= a.shape[d];
    return n;
}

// byte offset of element i in C order (a CArray's operator[](ptrdiff_t))
inline ptrdiff_t emu_offset(const EmuArg& a, ptrdiff_t i) {
    ptrdiff_t off = 0;
    for (int d = a.ndim - 1; d >= 0; --d) {
        off += (i % a.shape[d]) * a.strides[d];
        i /= a.shape[d];
    }
    return off;
}

// A raw argument: CuPy's CArray, whose const operator[] gives a const T& (raw inputs are
// declared const, so assigning to one does not compile, as under NVRTC). Unlike CuPy it
// checks the index.
template <typename T> class EmuRaw {
    EmuArg a_;
    ptrdiff_t size_;
    const char* name_;
    T* at(ptrdiff_t i) const {
        if (i < 0 || i >= size_)
            throw std::out_of_range(std::string("raw argument '") + name_ + "' indexed at " +
                                    std::to_string(i) + ", outside its " +
                                    std::to_string(size_) + " elements");
        return reinterpret_cast<T*>(a_.data + emu_offset(a_, i));
    }
public:
    EmuRaw(const EmuArg& a, const char* name) : a_(a), size_(emu_size(a)), name_(name) {}
    ptrdiff_t size() const { return size_; }
    const ptrdiff_t* shape() const { return a_.shape; }
    const ptrdiff_t* strides() const { return a_.strides; }
    const T& operator[](ptrdiff_t i) const { return *at(i); }
    T& operator[](ptrdiff_t i) { return *at(i); }
};

struct EmuIndexer {  // _ind: the loop's size, after broadcasting
    ptrdiff_t n;
    ptrdiff_t size() const { return n; }
};
"""

# CuPy's C names of the NumPy dtypes (cupy/_core/_scalar.pyx); float16 and complex need
# CuPy's own headers and are not emulated
_TYPENAMES = {np.dtype(k): v for k, v in [
    ("float64", "double"), ("float32", "float"), ("int64", "long long"), ("int32", "int"),
    ("int16", "short"), ("int8", "signed char"), ("uint64", "unsigned long long"),
    ("uint32", "unsigned int"), ("uint16", "unsigned short"), ("uint8", "unsigned char"),
    ("bool", "bool")]}


def _typename(dtype):
    name = _TYPENAMES.get(np.dtype(dtype))
    if name is None:
        raise NotImplementedError(f"the ElementwiseKernel emulation has no {dtype}")
    return name


class _Param:
    """One parameter, parsed like CuPy's ParameterInfo: [raw] TYPE NAME."""

    def __init__(self, text, is_const):
        words = text.split()
        if len(words) < 2:
            raise ValueError(f"Syntax error: {text}")
        typ, self.name = words[-2:]
        self.raw, self.is_const = False, is_const
        for word in words[:-2]:
            if word == "raw":
                self.raw = True
            elif word == "_non_const":
                self.is_const = False
            else:
                raise ValueError(f'Unknown keyword "{word}"')
        # a one-letter type is a placeholder, anything else a NumPy dtype name
        self.dtype = None if len(typ) == 1 else np.dtype(typ)
        self.ctype = typ if len(typ) == 1 else _typename(self.dtype)


def _param_list(text, is_const):
    return tuple(_Param(p, is_const) for p in text.split(",")) if text.strip() else ()


def _is_scalar(value):
    return isinstance(value, (bool, int, float, complex, np.generic))


def _unify(params, dtypes, bound):
    """Bind placeholders from the arrays' dtypes as CuPy's _decide_params_type_core does."""
    for p, dtype in zip(params, dtypes, strict=True):
        if dtype is None:  # a scalar: takes its parameter's type, binds nothing
            continue
        if p.dtype is not None:
            if dtype != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {dtype} {p.dtype}")
        elif p.ctype in bound:
            if dtype != bound[p.ctype]:
                raise TypeError(f"Type is mismatched. {p.name} {dtype} {bound[p.ctype]} "
                                f"{p.ctype}")
        else:
            bound[p.ctype] = dtype


class _ArgDesc(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("ndim", ctypes.c_int),
                ("shape", ctypes.POINTER(ctypes.c_ssize_t)),
                ("strides", ctypes.POINTER(ctypes.c_ssize_t))]


def _desc(pointer, shape, strides, keep):
    dims = (ctypes.c_ssize_t * max(len(shape), 1))(*shape)
    steps = (ctypes.c_ssize_t * max(len(shape), 1))(*strides)
    keep += [dims, steps]
    return _ArgDesc(pointer, len(shape), dims, steps)


class ElementwiseKernel:
    """Host stand-in for ``cupy.ElementwiseKernel`` (see the module docstring)."""

    _KWARGS = ("options", "loop_prep", "after_loop")

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", no_return=False, return_tuple=False, **kwargs):
        if not name.isidentifier():
            raise ValueError(f'Invalid kernel name: "{name}"')
        unknown = set(kwargs) - set(self._KWARGS)
        if unknown:
            raise TypeError(f"{name}: unexpected keyword arguments {sorted(unknown)}")
        self.in_params = _param_list(in_params, True)
        self.out_params = _param_list(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self.loop_prep = kwargs.get("loop_prep", "")
        self.after_loop = kwargs.get("after_loop", "")
        names = [p.name for p in self.in_params + self.out_params]
        if "i" in names:  # CuPy's own check
            raise ValueError("Can not use 'i' as a parameter name")
        reserved = [n for n in names if n == "n" or n.startswith("_")]
        if reserved:  # stricter than CuPy: its documentation reserves these
            raise ValueError(f"{name}: parameter names {reserved} are reserved by CuPy "
                             "(n, i and names starting with _)")
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: a parameter name repeats: {names}")
        self._libs = {}

    # -- the call, step by step as ElementwiseKernel.__call__ does it -----------------------
    def __call__(self, *args, size=-1, block_size=128, stream=None):
        if block_size <= 0:
            raise ValueError("block_size must be greater than zero")
        if len(args) not in (self.nin, self.nargs):
            raise TypeError(f"Wrong number of arguments for {self.name!r}. It must be either "
                            f"{self.nin} or {self.nargs} (with outputs), but given {len(args)}.")
        params = self.in_params + self.out_params
        for p, a in zip(params, args):
            if not isinstance(a, np.ndarray) and not _is_scalar(a):
                raise TypeError(f"{self.name}: unsupported argument type {type(a).__name__} "
                                f"for {p.name}")
        in_args, out_args = list(args[:self.nin]), list(args[self.nin:])

        # the loop's shape: the non-raw arrays (outputs included) broadcast together
        nonraw = [a.shape for p, a in zip(params, args)
                  if not p.raw and isinstance(a, np.ndarray)]
        if size != -1 and nonraw:
            raise ValueError("Specified 'size' can be used only if all of the ndarray are "
                             "'raw'.")
        if size == -1 and not nonraw:
            raise ValueError("Loop size is undecided.")
        shape = (int(size),) if size != -1 else np.broadcast_shapes(*nonraw)

        # types: outputs first, then inputs; scalars bind nothing
        if not all(isinstance(a, np.ndarray) for a in out_args):
            raise TypeError("Output arguments must be cupy.ndarray")
        bound = {}
        if out_args:
            _unify(self.out_params, [a.dtype for a in out_args], bound)
        _unify(self.in_params, [a.dtype if isinstance(a, np.ndarray) else None
                                for a in in_args], bound)

        def type_of(p):
            if p.dtype is not None:
                return p.dtype
            if p.ctype not in bound:
                raise TypeError(f"{self.name}: the type {p.ctype} of {p.name} is bound by no "
                                "array argument")
            return bound[p.ctype]

        if not out_args:
            if size == -1 and any(p.raw for p in self.out_params):
                raise ValueError("Output array size is Undecided")
            out_args = [np.empty(shape, type_of(p)) for p in self.out_params]
        else:
            for p, a in zip(self.out_params, out_args):
                if not p.raw and a.shape != shape:
                    raise ValueError("Out shape is mismatched")
                if not a.flags.writeable:
                    raise ValueError(f"{self.name}: output {p.name} is read-only")
        if self.no_return:
            result = None
        elif self.nout == 1 and not self.return_tuple:
            result = out_args[0]
        else:
            result = tuple(out_args)
        if 0 in shape:
            return result

        # scalars take their parameter's type with NumPy's assignment rules (CuPy's CScalar)
        values = []
        for p, a in zip(self.in_params, in_args):
            if _is_scalar(a):
                box = np.empty((), type_of(p))
                box[()] = a
                a = box
            values.append(a)
        values += out_args
        kinds = tuple("scalar" if _is_scalar(a) else "array" for a in in_args)
        ctypes_ = {name: _typename(dtype) for name, dtype in sorted(bound.items())}
        self._run(shape, params, values, kinds, ctypes_)
        return result

    def _run(self, shape, params, values, kinds, ctypes_):
        run = self._library(kinds, ctypes_)
        keep, descs = [], (_ArgDesc * len(values))()
        for k, (p, a) in enumerate(zip(params, values, strict=True)):
            if k < self.nin and kinds[k] == "scalar":
                descs[k] = _desc(a.ctypes.data, (), (), keep)
            elif p.raw:
                descs[k] = _desc(a.ctypes.data, a.shape, a.strides, keep)
            else:  # broadcast to the loop's shape: zero strides along broadcast axes
                view = np.broadcast_to(a, shape)
                descs[k] = _desc(a.ctypes.data, view.shape, view.strides, keep)
        total = int(np.prod(shape))
        order = None
        if ORDER == "reverse":
            order = np.arange(total - 1, -1, -1, dtype=np.intp)
        elif ORDER == "random":
            order = np.random.default_rng(total).permutation(total).astype(np.intp)
        error = ctypes.create_string_buffer(512)
        if run(total, descs, None if order is None else order.ctypes.data, error, 512):
            raise RuntimeError(f"{self.name}: {error.value.decode()}")

    # -- the C++ ------------------------------------------------------------------------------
    def source(self, kinds, ctypes_):
        """The C++ of this kernel for one type binding (``kinds``: array or scalar per input)."""
        params = self.in_params + self.out_params
        setup, bind = [], []
        for k, p in enumerate(params):
            is_scalar = k < self.nin and kinds[k] == "scalar"
            const = "const " if p.is_const else ""
            if is_scalar:
                setup.append(f"const {p.ctype} {p.name} = "
                             f"*reinterpret_cast<const {p.ctype}*>(_args[{k}].data);")
            elif p.raw:
                setup.append(f'{const}EmuRaw<{p.ctype}> {p.name}(_args[{k}], "{p.name}");')
            else:
                bind.append(f"{const}{p.ctype} &{p.name} = *reinterpret_cast<{const}{p.ctype}*>"
                            f"(_args[{k}].data + emu_offset(_args[{k}], i));")
        typedefs = "".join(f"typedef {c} {name};\n" for name, c in ctypes_.items())
        lines = "\n    ".join(setup)
        binds = "\n        ".join(bind)
        return f"""{_EW_PRELUDE}
{typedefs}
{self.preamble}

extern "C" int {self.name}(ptrdiff_t _size, const EmuArg* _args, const ptrdiff_t* _order,
                           char* _error, int _error_len) {{
  try {{
    {lines}
    const EmuIndexer _ind{{_size}};
    {self.loop_prep};
    for (ptrdiff_t _k = 0; _k < _size; ++_k) {{
        ptrdiff_t i = _order ? _order[_k] : _k;
        {binds}
        {self.operation};
    }}
    {self.after_loop};
  }} catch (const std::exception& e) {{
    snprintf(_error, _error_len, "%s", e.what());
    return 1;
  }}
  return 0;
}}
"""

    def _library(self, kinds, ctypes_):
        key = (kinds, tuple(ctypes_.items()))
        if key not in self._libs:
            flags = _sanitize(["-std=c++17", "-O2", "-fPIC", "-shared", "-Werror=return-type"])
            lib = _build(f"ew_{self.name}", self.source(kinds, ctypes_), flags,
                         f"ElementwiseKernel {self.name}")
            run = getattr(lib, self.name)  # named like CuPy's kernel (and colliding alike)
            run.restype = ctypes.c_int
            run.argtypes = [ctypes.c_ssize_t, ctypes.POINTER(_ArgDesc), ctypes.c_void_p,
                            ctypes.c_char_p, ctypes.c_int]
            self._libs[key] = run
        return self._libs[key]


class _CupyWithEmulatedKernels:
    """``pydl.backend.cuda.cupy`` under emulation: ``ElementwiseKernel`` from here, every
    other name from the real module (when CuPy is installed)."""

    ElementwiseKernel = ElementwiseKernel

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        if self._real is None:
            raise AttributeError(f"cupy.{name}: CuPy is not installed; the emulation "
                                 "provides only ElementwiseKernel")
        return getattr(self._real, name)


def _fresh_cache(name):
    """A copy of the backend's lru_cache'd ``name`` with an empty cache of its own."""
    return functools.lru_cache(maxsize=None)(getattr(backend, name).__wrapped__)


_PATCHES = {
    "xp": lambda sms: np,
    "_function": lambda sms: _function,
    "_ptr": lambda sms: (lambda a: a.ctypes.data),
    "_sm_count": lambda sms: (lambda: sms),
    "_upload": lambda sms: np.asarray,
    "cupy": lambda sms: _CupyWithEmulatedKernels(getattr(backend.cupy, "_real", backend.cupy)),
    "_act_kernel": lambda sms: _fresh_cache("_act_kernel"),
    "_cell_kernel": lambda sms: _fresh_cache("_cell_kernel"),
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


def cupy_compile_errors(in_params, out_params, operation, name, preamble, dtype):
    """NVRTC's log for the code CuPy itself generates for this kernel ("" when it compiles).

    Needs CuPy and NVRTC, not a GPU: CuPy's private code generator (``cupy._core._kernel``)
    writes the kernel for the placeholders bound to ``dtype``, raw arrays 2-D, the other
    arrays reduced to 1-D and fixed-type non-raw parameters passed as scalars (what the
    backend passes). Skips the test when any of that is missing or has changed.
    """
    try:
        import cupy
        from cupy._core import _kernel, core
        from cupy_backends.cuda.libs import nvrtc

        kernel = cupy.ElementwiseKernel(in_params, out_params, operation, name,
                                        preamble=preamble)
        infos = []
        for p in kernel.in_params + kernel.out_params:
            if p.dtype is not None and not p.raw:  # 1 array, 2 indexer, 3 scalar
                infos.append(_kernel._ArgInfo(3, object, p.dtype, 0, True, True))
            else:
                infos.append(_kernel._ArgInfo(1, cupy.ndarray, np.dtype(p.dtype or dtype),
                                              2 if p.raw else 1, True, True))
        infos.append(_kernel._ArgInfo(2, object, None, 1, True, True))
        types = _kernel._TypeMap((("T", np.dtype(dtype)),))
        code = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
        code += _kernel._get_elementwise_kernel_code(tuple(infos), types, kernel.params,
                                                      operation, name, preamble)
        options = [*core.assemble_cupy_compiler_options(()), "-arch=compute_90"]
        program = nvrtc.createProgram(code, f"{name}.cu", [], [])
    except Exception as e:  # noqa: BLE001 - no CuPy, no NVRTC, or its internals moved
        pytest.skip(f"CuPy's code generator with NVRTC is not usable here: {e!r}")
    try:
        nvrtc.compileProgram(program, options)
    except nvrtc.NVRTCError:
        return nvrtc.getProgramLog(program)
    return ""


def poison(monkeypatch):
    """Fill what the backend allocates with NaN (-7 for integers): unwritten elements show."""
    def poisoned(shape, dtype):
        a = backend.xp.empty(shape, dtype=dtype)
        a.fill(np.nan if np.dtype(dtype).kind == "f" else -7)
        return a

    monkeypatch.setattr(backend, "_empty", poisoned)


def device(kind, monkeypatch):
    """The body of a ``KINDS`` fixture: patch the backend for ``kind``, poison its outputs."""
    if kind == "emulated":
        if compiler() is None:
            pytest.skip("no C++ compiler for the CUDA emulation")
        patch(monkeypatch)
    poison(monkeypatch)
    return Device(kind)
