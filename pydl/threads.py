"""How many threads pydl's CPU work uses: ``pydl.set_num_threads(n)``, as ``torch.set_num_threads``.

CPU work runs in two thread pools: pydl's C++ kernels (convolution helpers, pooling, softmax,
cross-entropy, optimizer steps) and the BLAS library that NumPy's matmul calls (OpenBLAS in
the NumPy wheels). By default each uses every core. On a machine busy with other work, BLAS
threads waiting for each other can make small matrix products many times slower; one thread
each is then the fastest setting. ``set_num_threads`` sets both pools; the BLAS part needs the
small ``threadpoolctl`` package (``pip install threadpoolctl``), without which only pydl's
own kernels change and a warning says so. The environment variables ``OMP_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS``, set before Python starts, do the same.
"""

from __future__ import annotations

import warnings

__all__ = ["set_num_threads", "get_num_threads"]

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
