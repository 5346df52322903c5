"""How many threads pydl's CPU work uses: ``pydl.set_num_threads(n)``, as ``torch.set_num_threads``.

CPU work runs in two thread pools: pydl's C++ kernels (convolution helpers, pooling, softmax,
cross-entropy, optimizer steps) and the BLAS library that NumPy's matmul calls (OpenBLAS in
the NumPy wheels). On a machine busy with other work, BLAS threads waiting for each other can
make small matrix products many times slower; one thread each is then the fastest setting.
``set_num_threads`` sets both pools; the BLAS part needs the small ``threadpoolctl`` package
(``pip install threadpoolctl``), without which only pydl's own kernels change and a warning
says so. The environment variables ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS``, set
before Python starts, do the same.

The default never runs more busy threads than cores. OpenBLAS's workers do not sleep when a
matrix product ends: they spin, waiting for the next one, for about a tenth of a second, so
during training they are busy all the time, also while pydl's kernels run. By default BLAS
keeps its own count (every core, or ``OPENBLAS_NUM_THREADS``) and pydl's kernels get the
cores its spinning workers leave: ``cores - blas_threads + 1`` (the calling thread counts
once), at least 1. With nothing set that is 1 (BLAS has every core); with
``OPENBLAS_NUM_THREADS=1`` it is every core. ``OMP_NUM_THREADS`` or a ``set_num_threads``
call replace the default with what they say. ``tests/test_threads.py`` samples the running
threads of a training loop to check it.
"""

from __future__ import annotations

import os
import warnings

__all__ = ["set_num_threads", "get_num_threads"]

# the variables OpenBLAS reads for its thread count, in its order (OMP_NUM_THREADS last)
_BLAS_VARS = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")

_blas_limiter = None  # threadpoolctl's limiter, kept so the limit lasts


def _extension():
    from .backend import cpu

    return cpu.extension


def set_num_threads(threads: int) -> None:
    """Use ``threads`` threads for pydl's C++ kernels and NumPy's BLAS."""
    global _blas_limiter
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {threads}")
    ext = _extension()
    if ext is not None:
        ext.set_num_threads(threads)
    try:
        import threadpoolctl
    except ImportError:
        warnings.warn("pydl.set_num_threads: threadpoolctl is not installed, so NumPy's BLAS "
                      "keeps its own thread count (pip install threadpoolctl, or set "
                      "OPENBLAS_NUM_THREADS before starting Python)", stacklevel=2)
        return
    _blas_limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")


def get_num_threads() -> int:
    """Threads of pydl's C++ kernels (BLAS follows ``set_num_threads`` when it was called)."""
    ext = _extension()
    if ext is not None:
        return ext.num_threads()
    import os

    return os.cpu_count() or 1


def cores() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _env_threads(environ, name):
    try:
        value = int(environ.get(name, "").strip())
    except ValueError:
        return None
    return value if value > 0 else None


def default_num_threads(environ=None) -> int | None:
    """pydl's kernel threads when nothing chose them: the cores that BLAS's (spinning)
    workers leave, at least 1; None when ``OMP_NUM_THREADS`` chose them (the C++ pool then
    follows it). ``environ`` defaults to ``os.environ``."""
    environ = os.environ if environ is None else environ
    if _env_threads(environ, "OMP_NUM_THREADS") is not None:
        return None
    n = cores()
    blas = next((t for t in (_env_threads(environ, v) for v in _BLAS_VARS) if t), n)
    return max(1, n - min(blas, n) + 1)


def _apply_default(extension) -> None:
    """At import of the CPU backend: give pydl's pool its default size (see above)."""
    threads = default_num_threads()
    if extension is not None and threads is not None:
        extension.set_num_threads(threads)
