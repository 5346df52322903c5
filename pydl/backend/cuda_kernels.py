"""The catalogue of pydl's CUDA kernels: where the sources live, which template instances the
CUDA backend launches, and an NVRTC compile that needs no GPU.

Sources are ``csrc/cuda/*.cu`` (copied into ``pydl/kernels`` by ``setup.py`` for installed
packages; editable and source checkouts read ``csrc/cuda`` directly). ``kernel_source`` pastes
our own ``#include "x.cuh"`` headers in place, so the text NVRTC sees, and with it CuPy's
on-disk cache key, changes whenever a header does.

Every kernel is a template in namespace ``pydl``, instantiated through an NVRTC *name
expression* such as ``pydl::matmul_kernel<float, 128, 128, 8, 8, 8, false, false, true>``.
The functions below build those names; ``instances()`` lists every one the backend can ask
for, and ``compile_file`` compiles a file with NVRTC for a given architecture (``sm_80``,
``sm_90``) through ``cupy.cuda.nvrtc``, which works on a machine without a GPU.
"""

from __future__ import annotations

import re
import time
from itertools import product
from pathlib import Path

import numpy as np

__all__ = [
    "NVRTC_OPTIONS", "KERNEL_FILES", "kernel_dirs", "kernel_source", "instances",
    "compile_file", "CompileError", "GEMM_CONFIGS", "TF32_TILE",
]

# CuPy adds -ftz=true and -arch itself when it compiles; compile_file adds them the same way.
NVRTC_OPTIONS = ("-std=c++17",)

KERNEL_FILES = ("matmul.cu", "conv2d.cu", "pool.cu", "softmax.cu", "optim.cu")

_HERE = Path(__file__).resolve().parent
_SEARCH = (_HERE.parent / "kernels", _HERE.parents[1] / "csrc" / "cuda")


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


# ----------------------------------------------------------------------------- instances
CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

# Block tiles (BM, BN, BK, TM, TN) of the CUDA-core GEMM, shared by matmul and conv2d.
# "large": 256 threads, 8x8 outputs each; "small": 256 threads, 4x4 outputs each.
GEMM_CONFIGS = {
    "float": {"large": (128, 128, 8, 8, 8), "small": (64, 64, 16, 4, 4)},
    "double": {"small": (64, 64, 16, 4, 4)},
}
TF32_TILE = (128, 128, 16)

ROW_WARP_VPT = (1, 2, 4, 8, 16, 32)   # softmax: one warp per row, up to 32 * VPT columns
ROW_BLOCK_THREADS = 512
ROW_BLOCK_VPT = (4, 8, 16, 0)         # one block per row; 0 = any width (two passes)


def _b(flag: bool) -> str:
    return "true" if flag else "false"


def matmul_name(ctype, cfg, trans_a, trans_b, vec):
    bm, bn, bk, tm, tn = cfg
    return (f"pydl::matmul_kernel<{ctype}, {bm}, {bn}, {bk}, {tm}, {tn}, {_b(trans_a)}, "
            f"{_b(trans_b)}, {_b(vec)}>")


def matmul_tf32_name(trans_a, trans_b, vec):
    return f"pydl::matmul_tf32_kernel<{_b(trans_a)}, {_b(trans_b)}, {_b(vec)}>"


def conv_name(kind, ctype, cfg, vec_a=False):
    bm, bn, bk, tm, tn = cfg
    tail = "" if kind == "backward_weight" else f", {_b(vec_a)}"
    return f"pydl::conv2d_{kind}_kernel<{ctype}, {bm}, {bn}, {bk}, {tm}, {tn}{tail}>"


def pool_name(kind, ctype):
    return f"pydl::{kind}_kernel<{ctype}>"


def row_name(kind, ctype, threads, vpt=None):
    tail = "" if vpt is None else f", {vpt}"
    return f"pydl::{kind}_kernel<{ctype}, {threads}{tail}>"


def optim_name(kind, ctype):
    return f"pydl::{kind}_kernel<{ctype}>"


def instances() -> dict[str, list[str]]:
    """Every name expression the CUDA backend may launch, by source file."""
    out = {name: [] for name in KERNEL_FILES}
    flags = (False, True)
    for ctype, cfgs in GEMM_CONFIGS.items():
        for cfg in cfgs.values():
            for ta, tb, vec in product(flags, flags, flags):
                out["matmul.cu"].append(matmul_name(ctype, cfg, ta, tb, vec))
            for kind in ("forward", "backward_data"):
                for vec in flags:
                    out["conv2d.cu"].append(conv_name(kind, ctype, cfg, vec))
            out["conv2d.cu"].append(conv_name("backward_weight", ctype, cfg))
        for kind in ("max_pool2d_forward", "max_pool2d_backward", "avg_pool2d_forward",
                     "avg_pool2d_backward"):
            out["pool.cu"].append(pool_name(kind, ctype))
        for kind in ("softmax_forward", "log_softmax_forward", "softmax_backward",
                     "log_softmax_backward"):
            for vpt in ROW_WARP_VPT:
                out["softmax.cu"].append(row_name(kind, ctype, 32, vpt))
            for vpt in ROW_BLOCK_VPT:
                out["softmax.cu"].append(row_name(kind, ctype, ROW_BLOCK_THREADS, vpt))
        for kind in ("cross_entropy_forward", "cross_entropy_backward"):
            for threads in (32, ROW_BLOCK_THREADS):
                out["softmax.cu"].append(row_name(kind, ctype, threads))
        for kind in ("sgd_step", "adam_step", "rmsprop_step", "adagrad_step"):
            out["optim.cu"].append(optim_name(kind, ctype))
    for ta, tb, vec in product(flags, flags, flags):
        out["matmul.cu"].append(matmul_tf32_name(ta, tb, vec))
    return out


# ----------------------------------------------------------------------------- NVRTC
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


def compile_file(name: str, arch: str = "sm_90", name_expressions=None, options=()) -> dict:
    """Compile kernel file ``name`` with NVRTC for ``arch``; no GPU needed.

    Instantiates ``name_expressions`` (default: every instance the backend uses) and returns
    ``{"file", "arch", "kernels", "seconds", "log", "cubin_bytes"}``; ``log`` is NVRTC's log
    (warnings), empty for a clean compile. Raises ``CompileError`` with the log on failure.

    >>> compile_file("pool.cu", "sm_80")["log"]
    ''
    """
    nvrtc = _nvrtc()
    names = list(instances()[name] if name_expressions is None else name_expressions)
    source = kernel_source(name)
    opts = tuple(NVRTC_OPTIONS) + ("-ftz=true", f"-arch={arch}") + tuple(options)
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
