"""The process group: which process this is among how many, over MPI (mpi4py).

mpi4py is imported by init_process_group, not with orchard, so `import orchard.distributed` works on an
install without the optional `distributed` extra (as nanoGPT's train.py needs)."""
import importlib.util
import os

_BACKEND = "mpi"
_comm = None  # the group's communicator: a duplicate of MPI's world, so the user's own MPI traffic never mixes in


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("orchard.distributed needs mpi4py and an MPI implementation: "
                          "pip install .[distributed] (or pip install mpi4py mpich)") from e
    return MPI


def is_available():
    """Whether init_process_group can work here: mpi4py is installed. (Found, not imported: importing mpi4py.MPI
    initialises MPI.)"""
    return importlib.util.find_spec("mpi4py") is not None


def is_mpi_available():
    return is_available()


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       group_name="", pg_options=None, device_id=None):
    """Joins the processes started by an MPI launcher (`mpiexec -n N python script.py`) into the default group.

    Ranks and the world size come from MPI. `init_method="env://"` and the RANK / WORLD_SIZE variables are
    accepted where they agree with MPI's; afterwards RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE are set
    for scripts that read them (LOCAL_*: the processes on this host)."""
    global _comm
    if backend not in (None, _BACKEND):
        raise ValueError(f"init_process_group: backend {backend!r} is not available; Orchard's backend is 'mpi' "
                         "(run the script under mpiexec)")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_process_group: init_method {init_method!r} is not supported; the MPI launcher "
                         "connects the processes (use None or 'env://')")
    if store is not None:
        raise ValueError("init_process_group: a store is not supported; the MPI launcher connects the processes")
    if _comm is not None:
        raise RuntimeError("init_process_group: the default process group is already initialized; "
                           "call destroy_process_group() first")
    MPI = _import_mpi()
    world = MPI.COMM_WORLD
    given = {"rank": rank, "world_size": world_size}
    for name, env in (("rank", "RANK"), ("world_size", "WORLD_SIZE")):
        if given[name] == -1 and os.environ.get(env):
            given[name] = int(os.environ[env])
    actual = {"rank": world.Get_rank(), "world_size": world.Get_size()}
    for name, value in given.items():
        if value != -1 and value != actual[name]:
            raise ValueError(f"init_process_group: {name}={value} disagrees with the MPI launcher's "
                             f"{actual[name]}; leave it unset, MPI assigns it")
    _comm = world.Dup()
    local = _comm.Split_type(MPI.COMM_TYPE_SHARED)
    os.environ.setdefault("RANK", str(actual["rank"]))
    os.environ.setdefault("WORLD_SIZE", str(actual["world_size"]))
    os.environ.setdefault("LOCAL_RANK", str(local.Get_rank()))
    os.environ.setdefault("LOCAL_WORLD_SIZE", str(local.Get_size()))
    local.Free()


def is_initialized():
    return _comm is not None


def destroy_process_group(group=None):
    """Leaves the default group (MPI itself is finalized when the process exits)."""
    global _comm
    comm = communicator("destroy_process_group", group)
    _comm = None
    comm.Free()


def communicator(what, group=None):
    """The default group's MPI communicator; ValueError (as PyTorch) before init_process_group."""
    if group is not None:
        raise ValueError(f"{what}: Orchard has only the default process group (no new_group); pass group=None")
    if _comm is None:
        raise ValueError(f"{what}: Default process group has not been initialized, please make sure to call "
                         "init_process_group.")
    return _comm


def get_rank(group=None):
    return communicator("get_rank", group).Get_rank()


def get_world_size(group=None):
    return communicator("get_world_size", group).Get_size()


def get_backend(group=None):
    communicator("get_backend", group)
    return _BACKEND
