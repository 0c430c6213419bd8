"""Collectives on tensors with torch.distributed's names and semantics, run by MPI in place on the tensors'
memory.

Before any data moves the ranks share what they pass, so a wrong argument on one rank, or tensors whose dtypes or
shapes differ between ranks, raise on every rank instead of leaving the others waiting. async_op=True returns a
Work whose wait() completes the operation (a non-blocking MPI request)."""
import numpy as np

from .. import _core
from .._core import Tensor, dtype
from .process_group import _import_mpi, communicator

# MPI has no half-precision reductions: these dtypes travel as float32 copies.
_STAGED = (dtype.float16, dtype.bfloat16)


class ReduceOp:
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MAX = "max"
    MIN = "min"


def _mpi_op(op, t):
    MPI = _import_mpi()
    ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MAX: MPI.MAX,
           ReduceOp.MIN: MPI.MIN}
    if op not in ops:
        raise ValueError(f"unsupported op {op!r}; expected ReduceOp.SUM, AVG, PRODUCT, MAX or MIN")
    if op == ReduceOp.AVG and not t.is_floating_point():
        raise TypeError(f"ReduceOp.AVG needs a floating-point tensor, got {t.dtype}")
    if t.dtype == dtype.bool:  # as in PyTorch: sum and max are a logical or, product and min a logical and
        return MPI.LOR if op in (ReduceOp.SUM, ReduceOp.MAX) else MPI.LAND
    return ops[op]


def _check_tensor(t):
    if not isinstance(t, Tensor):
        raise TypeError(f"expected an orchard.Tensor, got {type(t).__name__}")
    if not t.is_contiguous():
        raise ValueError("expected a contiguous tensor (MPI works on its memory in place); pass t.contiguous()")


def _check_list(tensors, like, world, name):
    if not isinstance(tensors, (list, tuple)) or len(tensors) != world:
        got = len(tensors) if isinstance(tensors, (list, tuple)) else type(tensors).__name__
        raise ValueError(f"{name} must be a list of world_size={world} tensors, got {got}")
    for i, t in enumerate(tensors):
        _check_tensor(t)
        if t.dtype != like.dtype or tuple(t.shape) != tuple(like.shape) or t.device != like.device:
            raise ValueError(f"{name}[{i}] is {t.dtype} {list(t.shape)} on {t.device}, expected "
                             f"{like.dtype} {list(like.shape)} on {like.device}")


def agree(comm, what, check):
    """Runs `check` (argument checks returning a description of the tensors passed) on every rank, then raises on
    every rank if any rank's check failed or the descriptions differ."""
    try:
        mine = ("ok", check())
    except (TypeError, ValueError) as e:
        mine = (type(e).__name__, str(e))
    everyone = comm.allgather(mine)
    for rank, outcome in enumerate(everyone):
        if outcome[0] != "ok":
            kind = TypeError if outcome[0] == "TypeError" else ValueError
            where = "" if outcome == mine else f"on rank {rank}: "
            raise kind(f"{what}: {where}{outcome[1]}")
    if any(outcome != mine for outcome in everyone):
        listed = "; ".join(f"rank {r}: {o[1]}" for r, o in enumerate(everyone))
        raise ValueError(f"{what}: the ranks passed tensors of different dtypes or shapes ({listed}); "
                         "every rank must pass the same")


def _described(t, *checks):
    """The checks' combined check, describing `t` once they pass."""
    def check():
        for c in checks:
            c()
        return f"{t.dtype} {list(t.shape)}"
    return check


def host_view(t):
    """A NumPy array sharing t's memory, for MPI to read and write in place (no copy).

    numpy() first waits for the tensor's device queue. CPU tensors, and Metal tensors on the emulator, keep their
    data in host memory. On an Apple GPU a Metal tensor lives in a shared-storage buffer on unified memory: once
    its queue is drained the CPU, and so MPI, reads and writes it in place, and command buffers committed
    afterwards see what MPI wrote. (A discrete GPU would need a staging copy here.)"""
    return t.numpy()


class _Staged:
    """The tensor MPI works on: `tensor` itself, or a float32 copy of a half-precision one that finish() writes
    back."""

    def __init__(self, tensor):
        self.tensor = tensor
        self.copy = tensor.float() if tensor.dtype in _STAGED else tensor

    def finish(self):
        if self.copy is not self.tensor:
            self.tensor.copy_(self.copy)


class Work:
    """A collective started with async_op=True: wait() blocks until it is done and its result written."""

    def __init__(self, request, finish=None):
        self._request = request
        self._finish = finish

    def is_completed(self):
        return self._request is None or self._request.Test()

    def wait(self, timeout=None):
        if self._request is not None:
            self._request.Wait()
            self._request = None
            if self._finish is not None:
                self._finish()
        return True


def _done(work, async_op):
    if async_op:
        return work
    work.wait()


def _averaged(finish, op, buffer, comm):
    def done():
        if op == ReduceOp.AVG:
            np.divide(buffer, comm.Get_size(), out=buffer)
        finish()
    return done


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduces `tensor` over all ranks, leaving the result in `tensor` on every rank."""
    comm = communicator("all_reduce", group)
    agree(comm, "all_reduce", _described(tensor, lambda: _check_tensor(tensor), lambda: _mpi_op(op, tensor)))
    return _done(start_all_reduce(comm, tensor, op), async_op)


def start_all_reduce(comm, tensor, op):
    """Starts all_reduce on arguments known to be right and the same on every rank; returns its Work."""
    staged = _Staged(tensor)
    buffer = host_view(staged.copy)
    request = comm.Iallreduce(_import_mpi().IN_PLACE, buffer, _mpi_op(op, tensor))
    return Work(request, _averaged(staged.finish, op, buffer, comm))


def broadcast(tensor, src, group=None, async_op=False):
    """Copies rank `src`'s `tensor` into `tensor` on every other rank."""
    comm = communicator("broadcast", group)

    def check_src():
        if not isinstance(src, int) or not 0 <= src < comm.Get_size():
            raise ValueError(f"src={src!r} is not a rank of this group of {comm.Get_size()}")
    agree(comm, "broadcast", _described(tensor, lambda: _check_tensor(tensor), check_src))
    staged = _Staged(tensor)
    return _done(Work(comm.Ibcast(host_view(staged.copy), root=src), staged.finish), async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fills tensor_list[r] with rank r's `tensor` on every rank."""
    comm = communicator("all_gather", group)
    agree(comm, "all_gather", _described(tensor, lambda: _check_tensor(tensor),
                                         lambda: _check_list(tensor_list, tensor, comm.Get_size(), "tensor_list")))
    source = host_view(_Staged(tensor).copy)
    gathered = np.empty((comm.Get_size(), *source.shape), dtype=source.dtype)
    request = comm.Iallgather(source, gathered)

    def finish():
        for out, part in zip(tensor_list, gathered):
            out.copy_(_core.from_numpy(part))
    return _done(Work(request, finish), async_op)


def reduce_scatter(output, input_list, op=ReduceOp.SUM, group=None, async_op=False):
    """Reduces input_list[r] over all ranks into `output` on rank r."""
    comm = communicator("reduce_scatter", group)
    agree(comm, "reduce_scatter", _described(output, lambda: _check_tensor(output), lambda: _mpi_op(op, output),
                                             lambda: _check_list(input_list, output, comm.Get_size(), "input_list")))
    staged = _Staged(output)
    result = host_view(staged.copy)
    source = np.stack([host_view(_Staged(t).copy) for t in input_list])
    request = comm.Ireduce_scatter_block(source, result, _mpi_op(op, output))
    return _done(Work(request, _averaged(staged.finish, op, result, comm)), async_op)


def barrier(group=None, async_op=False, device_ids=None):
    """Waits until every rank has reached the barrier."""
    return _done(Work(communicator("barrier", group).Ibarrier()), async_op)
