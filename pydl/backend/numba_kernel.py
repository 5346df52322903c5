"""Kernels written with numba, run on the device of their arrays.

A ``Kernel`` holds two plain Python functions: one for the CPU, compiled with
``numba.njit(parallel=True, cache=True)`` (it loops over the data itself, with ``prange``), and
one for CUDA, compiled with ``numba.cuda.jit(cache=True)`` (one thread per work item, indexed
with ``cuda.grid(1)``). Calling the kernel with NumPy arrays runs the CPU version; with CuPy
arrays it runs the CUDA version on pydl's current stream (CuPy's), passing the arrays through
``__cuda_array_interface__`` without copies. Each version is compiled on first use, once per
argument types, and numba caches the machine code on disk (``NUMBA_CACHE_DIR``, else
``__pycache__`` beside the source), so later processes load it instead of compiling (for
functions defined in a file: one typed into a REPL or exec'd compiles in every process).

numba is optional (``pip install pydl[numba]``); without it, calling a kernel raises
ImportError naming the extra.
"""

from __future__ import annotations

import importlib
import os

#: threads per block of the CUDA launches
BLOCK = 256


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = ("pip install 'pydl[cuda13]' (or 'pydl[cuda12]' for a CUDA 12 driver)"
                if name.startswith("numba.cuda") or name == "numba_cuda"
                else "pip install 'pydl[numba]'")
        raise ImportError(f"numba kernels need {name}: {hint}") from exc


def _cacheable(fn) -> bool:
    """numba caches only functions defined in a file (not typed into a REPL or exec'd)."""
    return os.path.isfile(fn.__code__.co_filename)


def _is_cupy(array) -> bool:
    return type(array).__module__.startswith("cupy")


class Kernel:
    """A kernel with a CPU (``@njit(parallel=True)``) and a CUDA (``@cuda.jit``) version.

    ``kernel(*arrays, threads=n)`` runs it on the device of ``arrays[0]``; ``threads`` is the
    number of CUDA threads to launch (ignored on the CPU, where the function loops itself).
    All arrays must be on one device; outputs are arrays the caller allocated.
    """

    def __init__(self, cpu=None, cuda=None, name: str | None = None):
        if cpu is None and cuda is None:
            raise ValueError("Kernel needs a cpu or a cuda function")
        self.cpu_source, self.cuda_source = cpu, cuda
        self.name = name or (cpu or cuda).__name__
        self._cpu = self._cuda = None

    def __repr__(self):
        return f"Kernel({self.name!r})"

    def cpu_dispatcher(self):
        """The compiled CPU version (a numba dispatcher)."""
        if self._cpu is None:
            if self.cpu_source is None:
                raise NotImplementedError(f"kernel {self.name!r} has no CPU version")
            numba = _module("numba")
            self._cpu = numba.njit(parallel=True, cache=_cacheable(self.cpu_source))(
                self.cpu_source)
        return self._cpu

    def cuda_dispatcher(self):
        """The compiled CUDA version (a numba-cuda dispatcher)."""
        if self._cuda is None:
            if self.cuda_source is None:
                raise NotImplementedError(f"kernel {self.name!r} has no CUDA version")
            cuda = _module("numba.cuda")
            self._cuda = cuda.jit(cache=_cacheable(self.cuda_source))(self.cuda_source)
        return self._cuda

    def __call__(self, *arrays, threads: int):
        if not _is_cupy(arrays[0]):
            self.cpu_dispatcher()(*arrays)
            return
        if threads <= 0:
            return
        import cupy

        cuda = _module("numba.cuda")
        kernel = self.cuda_dispatcher()
        ptr = cupy.cuda.get_current_stream().ptr
        stream = cuda.external_stream(ptr) if ptr else cuda.default_stream()
        with cupy.cuda.Device(arrays[0].device.id), cuda.gpus[arrays[0].device.id]:
            kernel[(threads + BLOCK - 1) // BLOCK, BLOCK, stream](*arrays)

    def compile_ptx(self, signature, cc=(8, 0)) -> str:
        """PTX of the CUDA version for ``signature`` and compute capability ``cc``; needs
        numba-cuda and NVVM, not a GPU (the CI check of every numba CUDA kernel)."""
        cuda = _module("numba.cuda")
        ptx, _ = cuda.compile_ptx(self.cuda_source, signature, cc=cc)
        return ptx
