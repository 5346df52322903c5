"""CUDA backend: CuPy arrays, and the protocol kernels (``pydl.backend.protocol``) hand-written
in ``csrc/cuda`` and compiled at run time by NVRTC.

One module per kernel family, each declaring its ``.cu`` file (``SOURCE``) and the template
instances it launches (``instances()``): ``gemm`` (matmul.cu), ``gemm_half``
(matmul_half.cu), ``conv`` (conv2d.cu), ``pool``, ``softmax``, ``activation``, ``rnn``,
``optim``. This package exports every protocol kernel from the family that defines it
(``FAMILIES``). ``runtime`` compiles, caches and launches
them and holds devices, random numbers and the switches; ``graph`` records CUDA graphs.
No protocol kernel calls cuBLAS or cuDNN; CuPy is used for allocation and small glue (casts,
split-K sums, table uploads).

Switches (also reachable as ``pydl.cuda.*``):
- ``set_matmul_backend("cupy")`` routes ``matmul`` to ``cupy.matmul`` (cuBLAS) so a
  benchmark can run the same model on the reference GEMM; ``"pydl"`` (the default) is ours.
- ``set_allow_tf32(True)`` lets float32 ``matmul`` use the TF32 tensor-core kernel (about
  1e-3 relative error); off by default.
- ``set_target_checks(False)`` skips the device-to-host read that lets ``cross_entropy_forward``
  raise IndexError on a bad target (a bad target then only gets loss 0).
"""

from __future__ import annotations

from .. import protocol
from ..low_precision import wrap_kernels
from . import activation, conv, gemm, gemm_half, graph, optim, pool, rnn, runtime, softmax
from .gemm import GEMM_CONFIGS, TF32_TILE
from .runtime import (
    CTYPES,
    NVRTC_OPTIONS,
    CompileError,
    _device_id,
    _settings,
    check_device_index,
    cupy,
    device_count,
    ensure_available,
    from_numpy,
    get_allow_tf32,
    get_matmul_backend,
    get_rng_state,
    kernel_dirs,
    kernel_source,
    manual_seed,
    nvrtc_options,
    nvrtc_version,
    pin_memory,
    rng,
    set_allow_tf32,
    set_matmul_backend,
    set_rng_state,
    set_target_checks,
    to_numpy,
)

name = "cuda"
xp = cupy

#: the kernel family modules, each with its SOURCE file, instances() and protocol kernels
FAMILIES = (gemm, gemm_half, conv, pool, softmax, activation, rnn, optim)
KERNEL_FILES = tuple(family.SOURCE for family in FAMILIES)


def _kernels_of_families() -> dict:
    """protocol kernel name -> the family function implementing it (each in exactly one)."""
    found = {}
    for family in FAMILIES:
        for kernel in protocol.KERNELS:
            if callable(getattr(family, kernel, None)):
                if kernel in found:
                    raise ImportError(f"CUDA kernel {kernel} is defined twice")
                found[kernel] = getattr(family, kernel)
    return found


# Export each protocol kernel from its family module (matmul from gemm.py, ...), once at
# import: a new kernel needs no line here.
globals().update(_kernels_of_families())
# float16 / bfloat16 inputs of the kernels without a low-precision version compute in float32
# (backend/low_precision.py); not wrapped: matmul (tensor-core kernels in matmul_half.cu), the
# optimizer steps (model_params) and the families' native_low kernels (softmax, pooling)
wrap_kernels(globals(), [k for k in protocol.KERNELS if k != "matmul"])


def instances() -> dict[str, list[str]]:
    """Every name expression the CUDA backend may launch, by source file."""
    return {family.SOURCE: family.instances() for family in FAMILIES}


def launch_block(filename: str, name_expr: str) -> int:
    """Threads per block the backend launches instance ``name_expr`` of ``filename`` with."""
    family = next(f for f in FAMILIES if f.SOURCE == filename)
    own = getattr(family, "launch_block", None)
    return own(name_expr) if own else runtime.BLOCK


def compile_file(filename: str, arch: str = "sm_90", name_expressions=None, options=()) -> dict:
    """Compile kernel file ``filename`` with NVRTC for ``arch``; no GPU needed.

    Instantiates ``name_expressions`` (default: every instance the backend uses); see
    ``runtime.compile_file`` for the report.

    >>> compile_file("pool.cu", "sm_80")["log"]
    ''
    """
    names = instances()[filename] if name_expressions is None else name_expressions
    return runtime.compile_file(filename, arch, names, options)


def precompile(files=None) -> None:
    """Compile every instance of ``files`` (default: all) now, one NVRTC run per file.

    Lazy compilation builds one instance at a time; a test or benchmark session that will
    use most of them saves the repeated parsing by calling this first.
    """
    every = instances()
    for filename in files or KERNEL_FILES:
        runtime.compile_instances(filename, every[filename])
