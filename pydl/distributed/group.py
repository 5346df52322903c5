"""The process group: who this process is (rank, world size, local rank), read from the
launcher's environment, and the MPI communicator every collective goes through.

Launchers and the variables read, first match wins:

- MPICH / Intel MPI (``mpiexec -n N``): ``PMI_RANK``, ``PMI_SIZE``, ``MPI_LOCALRANKID``
- Open MPI (``mpirun -n N``): ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``
- torchrun-style: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``

With none of them set the process is a group of one and needs no MPI at all.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["DistributedError", "init_process_group", "destroy_process_group", "is_initialized",
           "get_rank", "get_world_size", "get_local_rank", "is_main_process", "launcher_env",
           "available_backends", "default_timeout", "wait", "local_gpu"]

_LAUNCHERS = (
    ("mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("env", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
)
INSTALL_HINT = "pip install 'pydl[dist]' (mpi4py and the mpich wheel, which brings mpiexec)"


class DistributedError(RuntimeError):
    """A collective failed or timed out, or the process group is not usable."""


class _Group:
    def __init__(self, rank, size, local_rank, launcher, comm, timeout):
        self.rank, self.size, self.local_rank = rank, size, local_rank
        self.launcher, self.comm, self.timeout = launcher, comm, timeout
        self.comms = {}  # "cpu" or a GPU index -> its communicator, made on first use


_group: _Group | None = None


def launcher_env(environ=None) -> tuple[str, int, int, int] | None:
    """``(launcher, rank, world_size, local_rank)`` from the environment, or None when no
    launcher set it. Malformed values raise ``ValueError`` naming the variable."""
    environ = os.environ if environ is None else environ
    for name, rank_var, size_var, local_var in _LAUNCHERS:
        if rank_var in environ and size_var in environ:
            values = []
            for var in (rank_var, size_var):
                try:
                    values.append(int(environ[var]))
                except ValueError:
                    raise ValueError(f"{var}={environ[var]!r} is not an integer") from None
            rank, size = values
            if size < 1 or not 0 <= rank < size:
                raise ValueError(f"{rank_var}={rank} and {size_var}={size} do not make a rank "
                                 "of a group")
            local = environ.get(local_var, "")
            local_rank = int(local) if local.strip().isdigit() else rank
            return name, rank, size, local_rank
    return None


def default_timeout() -> float:
    """Seconds a collective may wait for the other ranks: ``PYDL_DIST_TIMEOUT`` or 300."""
    value = os.environ.get("PYDL_DIST_TIMEOUT", "300")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"PYDL_DIST_TIMEOUT={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"PYDL_DIST_TIMEOUT must be positive, got {value!r}")
    return seconds


def _import_mpi(size):
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(f"a launcher started {size} processes but mpi4py is not "
                               f"importable ({exc}); {INSTALL_HINT}") from None
    return MPI


def init_process_group(timeout: float | None = None):
    """Join the group the launcher started (or become a group of one); idempotent.

    Args:
        timeout: seconds any collective waits for the other ranks before raising
            ``DistributedError`` (default ``PYDL_DIST_TIMEOUT`` or 300).

    Under a launcher with more than one process this imports mpi4py (``pip install
    'pydl[dist]'``), checks that MPI's world agrees with the launcher's variables, selects
    GPU ``local_rank`` when CuPy sees GPUs, and makes an uncaught exception on any rank abort
    the whole job (instead of leaving the other ranks waiting).

    >>> import pydl.distributed as dist
    >>> dist.init_process_group()
    >>> dist.get_rank(), dist.get_world_size()
    """
    global _group
    if _group is not None:
        return
    timeout = default_timeout() if timeout is None else float(timeout)
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    found = launcher_env()
    if found is None or found[2] == 1:
        launcher, rank, size, local = found or ("none", 0, 1, 0)
        _group = _Group(rank, size, local, launcher, None, timeout)
        return
    launcher, rank, size, local = found
    MPI = _import_mpi(size)
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1 and launcher == "env":
        raise DistributedError(
            f"RANK/WORLD_SIZE say rank {rank} of {size}, but MPI started this process alone: "
            "pydl's collectives run over MPI, so start the job with mpiexec -n N (a launcher "
            "like torchrun that is not MPI's cannot connect the processes)")
    if comm.Get_size() != size or comm.Get_rank() != rank:
        raise DistributedError(
            f"the launcher says rank {rank} of {size} but MPI says rank {comm.Get_rank()} of "
            f"{comm.Get_size()}: mpi4py is linked against a different MPI than the one that "
            "launched this job (check `python -c 'import mpi4py; print(mpi4py.get_config())'`)")
    _group = _Group(rank, size, local, launcher, comm, timeout)
    _select_gpu(local)
    _abort_on_uncaught_exception(comm)


def local_gpu(device_count: int, environ=None) -> int:
    """The GPU index this process uses: its local rank (modulo ``device_count``) under a
    launcher, else 0. Read from the environment, so it works before ``init_process_group``."""
    if _group is not None and environ is None:
        local = _group.local_rank
    else:
        found = launcher_env(environ)
        local = found[3] if found is not None else 0
    return local % device_count if device_count else 0


def _select_gpu(local_rank: int) -> None:
    """One GPU per process: this process's current CUDA device becomes ``local_rank``."""
    try:
        import cupy
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - no CuPy, no driver: a CPU job
        return
    if count:
        cupy.cuda.Device(local_rank % count).use()


def _abort_on_uncaught_exception(comm) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"pydl.distributed: rank {comm.Get_rank()} raised {kind.__name__}; "
                         "aborting the job\n")
        sys.stderr.flush()
        # the launcher forwards each rank's output through its own process (MPICH's hydra
        # proxy), and MPI_Abort tears that down at once: without a pause the traceback above
        # can reach the terminal cut short (seen in CI); half a second lets it through
        time.sleep(0.5)
        comm.Abort(1)

    sys.excepthook = hook


def destroy_process_group() -> None:
    """Forget the group (MPI itself stays initialized until the process exits)."""
    global _group
    _group = None


def is_initialized() -> bool:
    """Whether :func:`init_process_group` ran in this process."""
    return _group is not None


def group() -> _Group:
    if _group is None:
        raise DistributedError("call pydl.distributed.init_process_group() first")
    return _group


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return _group.rank if _group is not None else 0


def get_world_size() -> int:
    """Number of processes in the group (1 when not distributed)."""
    return _group.size if _group is not None else 1


def get_local_rank() -> int:
    """Rank among the processes on this machine (selects the GPU)."""
    return _group.local_rank if _group is not None else 0


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that prints and writes files."""
    return get_rank() == 0


def wait(request, what: str, timeout: float | None = None) -> None:
    """Wait for a non-blocking MPI request, raising ``DistributedError`` after ``timeout``.

    MPI's own waits never time out; polling ``Test`` lets a dead or stuck rank turn into an
    error here (and, through the excepthook, into the abort of the whole job).
    """
    timeout = group().timeout if timeout is None else timeout
    start = time.monotonic()
    deadline, spin_until = start + timeout, start + _SPIN_SECONDS
    pause = 0.0
    while not request.Test():
        now = time.monotonic()
        if now > deadline:
            raise DistributedError(
                f"{what}: rank {get_rank()} waited {timeout:g} s for the other ranks; one of "
                "them failed or is stuck (PYDL_DIST_TIMEOUT sets the limit)")
        if now > spin_until:  # a long wait (a slower rank): stop burning a core on it
            time.sleep(pause)
            pause = min(max(pause * 2, 1e-5), 1e-3)
        else:
            os.sched_yield()  # on a shared machine, let the rank we wait for have the core


# MPI moves data only while a rank is inside an MPI call: poll Test (yielding the core
# between polls) for this long before sleeping between polls. Sleeping from the start made a
# 180 KB all-reduce ~25x slower; yielding instead of pure spinning made it 2-3.5x faster on
# the oversubscribed 2-core machine (docs/distributed.md)
_SPIN_SECONDS = 0.05


def available_backends() -> dict[str, str]:
    """``{"mpi": ..., "nccl": ...}``: each backend's version, or why it is unavailable."""
    import warnings

    out = {}
    try:
        import mpi4py
        from mpi4py import MPI

        library = " ".join(MPI.Get_library_version().split()[:3])
        out["mpi"] = f"mpi4py {mpi4py.__version__} ({library})"
    except Exception as exc:  # noqa: BLE001 - not installed, or no MPI library
        out["mpi"] = f"unavailable ({exc}); {INSTALL_HINT}"
    try:
        with warnings.catch_warnings():  # CuPy warns when libnccl is missing; we say so
            warnings.simplefilter("ignore")
            from cupy.cuda import nccl

            version = nccl.get_version()
        major, minor, patch = version // 10000, version // 100 % 100, version % 100
        out["nccl"] = f"NCCL {major}.{minor}.{patch} (cupy.cuda.nccl)"
    except Exception as exc:  # noqa: BLE001 - no CuPy, or CuPy without NCCL
        out["nccl"] = (f"unavailable ({str(exc).splitlines()[0]}); GPUs need CuPy and the NCCL "
                       "wheel (nvidia-nccl-cu12 or nvidia-nccl-cu13)")
    return out
