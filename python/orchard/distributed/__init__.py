"""Data-parallel training over several processes, with torch.distributed's names, on MPI (mpi4py).

Launch one process per rank with MPI: `mpiexec -n 4 python train.py`. The engine is optional:
`pip install .[distributed]` installs mpi4py and MPICH. Without it `import orchard.distributed` still works and
init_process_group raises an ImportError saying what to install."""
from .collectives import ReduceOp, Work, all_gather, all_reduce, barrier, broadcast, reduce_scatter
from .launcher import launched_by_mpi, mpiexec
from .process_group import (
    destroy_process_group, get_backend, get_rank, get_world_size, init_process_group, is_available,
    is_initialized, is_mpi_available,
)

__all__ = ["ReduceOp", "Work", "all_gather", "all_reduce", "barrier", "broadcast", "destroy_process_group",
           "get_backend", "get_rank", "get_world_size", "init_process_group", "is_available", "is_initialized",
           "is_mpi_available", "launched_by_mpi", "mpiexec", "reduce_scatter"]
