"""Data-parallel training across processes: MPI (mpi4py) for CPU tensors, NCCL
(``cupy.cuda.nccl``) for GPU tensors. ``pip install 'pydl[dist]'``; docs/distributed.md.

    mpiexec -n 2 python train.py      # each process: init, wrap, shard, train

    import pydl.distributed as dist
    dist.init_process_group()
    model = dist.DistributedDataParallel(net)
    loader = DataLoader(data, batch_size=64, sampler=dist.DistributedSampler(data))

``Model.fit`` does all of this by itself when a launcher started it.
"""

from .collectives import all_gather, all_reduce, barrier, broadcast
from .comm import Work
from .group import (
    DistributedError,
    available_backends,
    destroy_process_group,
    get_local_rank,
    get_rank,
    get_world_size,
    init_process_group,
    is_initialized,
    is_main_process,
    launcher_env,
)
from .parallel import DistributedDataParallel
from .sampler import DistributedSampler

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_rank",
           "get_world_size", "get_local_rank", "is_main_process", "launcher_env",
           "available_backends", "all_reduce", "broadcast", "all_gather", "barrier", "Work",
           "DistributedDataParallel", "DistributedSampler", "DistributedError"]
