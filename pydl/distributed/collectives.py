"""Collectives on Tensors of either device: ``all_reduce``, ``broadcast``, ``all_gather``,
``barrier``. Each waits at most the group's timeout for the other ranks, then raises
``DistributedError``. In a group of one they return at once, changing nothing."""

from __future__ import annotations

from ..tensor import Tensor
from .comm import Work, check_op, communicator
from .group import group

__all__ = ["all_reduce", "broadcast", "all_gather", "barrier"]


def _check_tensor(tensor, what):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what} takes a pydl Tensor, got {type(tensor).__name__}")


def _contiguous(array):
    xp_array = array if array.flags.c_contiguous else array.copy(order="C")
    return xp_array


def _write_back(tensor, buffer):
    if buffer is not tensor.data:
        tensor.data[...] = buffer
    tensor._bump()


def all_reduce(tensor, op="sum", async_op=False):
    """Reduce ``tensor`` over all ranks, in place (``op``: sum, mean, max or min).

    With ``async_op=True`` it returns a ``Work`` whose ``wait()`` finishes it.

    >>> t = pydl.tensor([float(dist.get_rank())])
    >>> dist.all_reduce(t)          # every rank now holds 0 + 1 + ... + (N-1)
    """
    _check_tensor(tensor, "all_reduce")
    check_op(op)
    comm = communicator(tensor.data)
    if comm is None:
        work = Work()
    else:
        buffer = _contiguous(tensor.data)
        started = comm.allreduce(buffer, op)
        work = Work(started.wait, lambda: _write_back(tensor, buffer))
    if async_op:
        return work
    work.wait()
    return None


def broadcast(tensor, src=0):
    """Overwrite ``tensor`` on every rank with rank ``src``'s value, in place."""
    _check_tensor(tensor, "broadcast")
    size = group().size
    if not 0 <= src < size:
        raise ValueError(f"broadcast: src must be a rank in [0, {size}), got {src}")
    comm = communicator(tensor.data)
    if comm is not None:
        buffer = _contiguous(tensor.data)
        comm.bcast(buffer, src)
        _write_back(tensor, buffer)


def all_gather(tensor):
    """Every rank's ``tensor`` (all the same shape and dtype), as a list in rank order."""
    _check_tensor(tensor, "all_gather")
    comm = communicator(tensor.data)
    if comm is None:
        return [Tensor._make(tensor.data.copy())]
    return [Tensor._make(a) for a in comm.allgather(_contiguous(tensor.data))]


def barrier():
    """Wait until every rank reaches this point (or the timeout passes)."""
    g = group()
    if g.comm is not None:
        import numpy as np

        communicator(np.zeros(0)).barrier()
