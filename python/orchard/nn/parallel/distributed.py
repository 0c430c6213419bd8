"""DistributedDataParallel: each rank runs the module on its shard of the batch, and backward leaves every rank
with the gradients averaged over all ranks, as PyTorch's wrapper of the same name does (over MPI here).

Gradients are averaged in buckets of parameters (in reverse registration order, roughly the order backward
produces them): a bucket's all-reduce starts as soon as its last gradient is accumulated, so it travels while
backward computes the remaining gradients; the last gradient of the step waits for all buckets and installs the
averages as views of the reduced buckets. Backward's thread starts each non-blocking all-reduce (in the same order
on every rank), and a communication thread polls the requests: MPI implementations such as MPICH move a request
along only while some thread is inside MPI, and backward runs without the GIL, so that thread can. It sleeps
between polls rather than spinning in MPI_Wait, which would take a core from backward; it touches no tensor."""
import concurrent.futures
import contextlib
import time
import weakref

from ... import _core
from ...autograd import is_grad_enabled
from ...distributed.collectives import ReduceOp, agree, broadcast, start_all_reduce
from ...distributed.process_group import communicator
from ..module import Module


class DistributedDataParallel(Module):
    """Wraps `module` for data-parallel training over the default process group (see orchard.distributed).

    Construction copies rank 0's parameters to every rank. `no_sync()` (or setting require_backward_grad_sync to
    False, as nanoGPT does) skips the averaging for gradient accumulation. The wrapped module is `.module`, so
    state_dict keys carry the `module.` prefix as PyTorch's. Buffers are copied from rank 0 at construction and, with
    broadcast_buffers, before each forward. device_ids, output_device, dim, check_reduction, static_graph and
    gradient_as_bucket_view are accepted and change nothing (each rank's module is on its device already; the
    averaged gradients always are views of the buckets)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0, broadcast_buffers=True,
                 process_group=None, bucket_cap_mb=None, find_unused_parameters=False, check_reduction=False,
                 gradient_as_bucket_view=False, static_graph=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected an orchard.nn.Module, got {type(module).__name__}")
        if find_unused_parameters:
            raise NotImplementedError("DistributedDataParallel: find_unused_parameters=True is not supported; every "
                                      "parameter that requires grad must get a gradient in each backward")
        comm = communicator("DistributedDataParallel", process_group)
        self.module = module
        self.require_backward_grad_sync = True
        params = [p for p in module.parameters() if p.requires_grad]
        named = list(module.named_parameters()) + list(module.named_buffers())
        agree(comm, "DistributedDataParallel",
              lambda: "; ".join(f"{n} {p.dtype} {list(p.shape)} {p.device}" for n, p in named))
        for _, p in named:
            broadcast(p.detach(), src=0)
        self.broadcast_buffers = broadcast_buffers
        cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 2**20)
        # Its own communicator: the communication thread's all-reduces never interleave with collectives that the
        # program's thread runs on the group meanwhile (MPI needs every rank to issue them in the same order).
        object.__setattr__(self, "_reducer", _Reducer(comm.Dup(), params, cap))

    def forward(self, *args, **kwargs):
        self._reducer.prepare(self.require_backward_grad_sync and is_grad_enabled())
        if self.broadcast_buffers:
            for buffer in self.module.buffers():
                broadcast(buffer, src=0)
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self):
        """Gradients computed inside accumulate on each rank without being averaged; the first backward after it
        averages everything accumulated."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous


_POLL_S = 1e-4  # between polls of an all-reduce: a 4 MB bucket takes about a millisecond over shared memory


class _Bucket:
    def __init__(self, params):
        self.params = params
        self.ready = 0  # gradients accumulated this step
        self.flat = None  # their concatenation, averaged in place
        self.work = None  # its all-reduce
        self.polled = None  # the future of the communication thread's polling until it is done

    def wait(self):
        self.polled.result()  # first: one request is never tested from two threads at once
        self.work.wait()


def _buckets(params, cap):
    """Parameters in reverse order, cut into buckets of one dtype and device and at most `cap` bytes (a larger
    parameter is a bucket of its own)."""
    buckets, current, size = [], [], 0
    for p in reversed(params):
        nbytes = p.numel() * p.element_size()
        if current and (size + nbytes > cap or (p.dtype, p.device) != (current[0].dtype, current[0].device)):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += nbytes
    if current:
        buckets.append(_Bucket(current))
    return buckets


class _Reducer:
    """Averages the gradients of `params` over the ranks, a bucket at a time, from hooks run during backward."""

    def __init__(self, comm, params, cap):
        self.comm = comm
        self.buckets = _buckets(params, cap)
        self.syncing = False
        self.pending = 0  # buckets not yet started this step
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="orchard-ddp")
        # The parameters keep their hooks, out of the garbage collector's sight: a hook holding the reducer (or a
        # bucket, which holds parameters) would keep it and the parameters alive for ever.
        me = weakref.ref(self)
        for index, bucket in enumerate(self.buckets):
            for p in bucket.params:
                p.register_post_accumulate_grad_hook(lambda p, i=index: _call(me, i))

    def prepare(self, sync):
        if self.syncing and self.pending != len(self.buckets):
            waiting = [i for i, b in enumerate(self.buckets) if b.ready < len(b.params)]
            for bucket in self.buckets:  # every rank started the same ones: let them end before raising
                if bucket.work is not None:
                    bucket.wait()
            self.syncing = False
            raise RuntimeError(f"DistributedDataParallel: the previous backward left buckets {waiting} without all "
                               "their gradients: every parameter that requires grad must be used in the forward pass "
                               "and get a gradient in backward")
        self.syncing = sync
        self.pending = len(self.buckets)
        for bucket in self.buckets:
            bucket.ready, bucket.flat, bucket.work, bucket.polled = 0, None, None, None

    def grad_ready(self, bucket):
        if not self.syncing:
            return
        if bucket.ready == len(bucket.params):
            raise RuntimeError("DistributedDataParallel: a parameter got a second gradient after one forward pass "
                               "(backward ran twice); run the wrapped module's forward before each backward")
        bucket.ready += 1
        if bucket.ready < len(bucket.params):
            return
        bucket.flat = _core.cat([p.grad.reshape(-1) for p in bucket.params])
        bucket.work = start_all_reduce(self.comm, bucket.flat, ReduceOp.AVG)
        bucket.polled = self.thread.submit(_poll, bucket.work)
        self.pending -= 1
        if self.pending == 0:
            self._finish()

    def _finish(self):
        for bucket in self.buckets:
            bucket.wait()
            offset = 0
            for p in bucket.params:
                p.grad = bucket.flat.narrow(0, offset, p.numel()).view(p.shape)
                offset += p.numel()
            bucket.flat = bucket.work = bucket.polled = None
        self.syncing = False


def _poll(work):
    while not work.is_completed():
        time.sleep(_POLL_S)


def _call(reducer_ref, bucket_index):
    reducer = reducer_ref()
    if reducer is not None:
        reducer.grad_ready(reducer.buckets[bucket_index])
