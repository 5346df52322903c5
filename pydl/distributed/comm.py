"""The two communicators behind the collectives, one per device type, with one interface:
``allreduce(array, op) -> Work``, ``bcast(array, src)``, ``allgather(array) -> list``,
``barrier()``. Arrays are contiguous and written in place; ``Work.wait()`` finishes an
all-reduce that was started without waiting.

- CPU arrays (NumPy) go through MPI (mpi4py), with non-blocking calls polled against the
  group's timeout (``group.wait``).
- GPU arrays (CuPy) go through NCCL (``cupy.cuda.nccl``) on a stream of their own; the NCCL
  unique id is made on rank 0 and broadcast over MPI. Written against CuPy's NCCL binding;
  not yet run on GPUs (docs/distributed.md says so).
"""

from __future__ import annotations

import time

import numpy as np

from .group import DistributedError, group, wait

_OPS = ("sum", "mean", "max", "min")


class Work:
    """A started all-reduce; ``wait()`` blocks (with the timeout) until its result is in
    place, then applies ``finish`` (the division of a mean); ``poll()`` lets it progress
    without blocking."""

    def __init__(self, wait_fn=None, finish=None, poll_fn=None):
        self._wait, self._finish, self.done = wait_fn, finish, False
        self._poll = poll_fn

    def poll(self) -> bool:
        """Whether the transfer has completed (``wait()`` still applies ``finish``)."""
        if self.done:
            return True
        return bool(self._poll()) if self._poll is not None else False

    def wait(self):
        if not self.done:
            if self._wait is not None:
                self._wait()
            if self._finish is not None:
                self._finish()
            self.done = True


class MPIComm:
    """Collectives over MPI on host arrays."""

    def __init__(self, g):
        from mpi4py import MPI

        self.MPI, self.comm, self.size = MPI, g.comm, g.size
        self.ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def allreduce(self, array, op):
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, array, op=self.ops[op])
        finish = (lambda: np.multiply(array, 1.0 / self.size, out=array, casting="unsafe")
                  ) if op == "mean" else None
        return Work(lambda: wait(request, f"all_reduce of {array.size} values"), finish,
                    request.Test)

    def bcast(self, array, src):
        wait(self.comm.Ibcast(array, root=src), f"broadcast of {array.size} values")

    def allgather(self, array):
        out = np.empty((self.size,) + array.shape, array.dtype)
        wait(self.comm.Iallgather(array, out), f"all_gather of {array.size} values")
        return list(out)

    def barrier(self):
        wait(self.comm.Ibarrier(), "barrier")

    def allgather_object(self, obj):
        """Picklable objects from every rank (metrics' predictions), in rank order."""
        self.barrier()  # the object all-gather itself cannot time out: meet first
        return self.comm.allgather(obj)


class NCCLComm:
    """Collectives over NCCL on GPU arrays, on a stream of their own."""

    def __init__(self, g):
        import cupy
        from cupy.cuda import nccl

        if g.comm is None:
            raise DistributedError("NCCL needs MPI to share its unique id")
        self.cupy, self.nccl, self.size, self.timeout = cupy, nccl, g.size, g.timeout
        uid = nccl.get_unique_id() if g.rank == 0 else None
        uid = g.comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(g.size, uid, g.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.ops = {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX,
                    "min": nccl.NCCL_MIN}

    def _dtype(self, array):
        table = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                 np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
                 np.dtype(np.float16): self.nccl.NCCL_FLOAT16,
                 np.dtype(np.int32): self.nccl.NCCL_INT32,
                 np.dtype(np.int64): self.nccl.NCCL_INT64}
        if array.dtype not in table:
            raise TypeError(f"NCCL collectives take float16/32/64 or int32/64, got {array.dtype}")
        return table[array.dtype]

    def _launch(self, what, call):
        """Queue ``call(stream)``; return its wait function and its completion event."""
        # the collective's stream waits for the work already queued on the current stream
        self.stream.wait_event(self.cupy.cuda.get_current_stream().record())
        call(self.stream.ptr)
        done = self.stream.record()
        return lambda: self._wait_event(done, what), done

    def _wait_event(self, event, what):
        deadline = time.monotonic() + self.timeout
        while not event.done:
            if time.monotonic() > deadline:
                self.comm.abort()
                raise DistributedError(f"{what}: NCCL waited {self.timeout:g} s for the other "
                                       "ranks; one of them failed or is stuck")
            time.sleep(1e-4)
        self.cupy.cuda.get_current_stream().wait_event(event)

    def allreduce(self, array, op):
        wait_fn, done = self._launch(f"all_reduce of {array.size} values",
                                     lambda s: self.comm.allReduce(
                                         array.data.ptr, array.data.ptr, array.size,
                                         self._dtype(array), self.ops[op], s))
        finish = (lambda: array.__imul__(1.0 / self.size)) if op == "mean" else None
        return Work(wait_fn, finish, lambda: done.done)

    def bcast(self, array, src):
        self._launch(f"broadcast of {array.size} values", lambda s: self.comm.bcast(
            array.data.ptr, array.size, self._dtype(array), src, s))[0]()

    def allgather(self, array):
        out = self.cupy.empty((self.size,) + array.shape, array.dtype)
        self._launch(f"all_gather of {array.size} values", lambda s: self.comm.allGather(
            array.data.ptr, out.data.ptr, array.size, self._dtype(array), s))[0]()
        return list(out)

    def barrier(self):
        self.allreduce(self.cupy.zeros(1, np.float32), "sum").wait()


def communicator(array):
    """The communicator for ``array``'s device: MPI for host arrays, NCCL for GPU ones."""
    g = group()
    if g.comm is None:
        return None  # a group of one: every collective is the identity
    kind = "cpu" if isinstance(array, np.ndarray) else "cuda"
    key = kind if kind == "cpu" else int(array.device.id)
    comm = g.comms.get(key)
    if comm is None:
        comm = g.comms[key] = _COMMUNICATORS[kind](g)
    return comm


_COMMUNICATORS = {"cpu": MPIComm, "cuda": NCCLComm}


def check_op(op: str) -> str:
    if op not in _OPS:
        raise ValueError(f"op must be one of {', '.join(_OPS)}, got {op!r}")
    return op
