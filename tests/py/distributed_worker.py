"""What each rank runs for tests/py/test_distributed.py: `mpiexec -n 2 python distributed_worker.py SCENARIO OUT`.

Each rank writes what it got to OUT/rank<r>.npz (arrays) and OUT/rank<r>.json (errors raised, names), which the
test compares with NumPy and with a single-process run. The inputs are a function of the rank, so the test can
compute every rank's."""
import json
import os
import sys

import numpy as np

import orchard as oc
import orchard.distributed as dist
from orchard.nn.parallel import DistributedDataParallel as DDP

DEVICES = ["cpu"] + (["metal"] if oc.metal.is_available() else [])
DTYPES = ["float32", "float64", "float16", "int32", "int64", "bool"]
SHAPE = (3, 5)
REDUCE_OPS = ["sum", "avg", "product", "max", "min"]


def supported(device, dtype):
    return not (device == "metal" and dtype == "float64")


def inputs(rank, dtype, index=0):
    """Rank `rank`'s input number `index` of a dtype, as a NumPy array."""
    rng = np.random.default_rng([rank, DTYPES.index(dtype), index])
    if dtype == "bool":
        return rng.random(SHAPE) < 0.5
    if dtype.startswith("int"):
        return rng.integers(-9, 10, SHAPE).astype(dtype)
    return rng.uniform(-2, 2, SHAPE).astype(dtype)


def applicable(op, dtype):
    return op != "avg" or dtype.startswith("float")


def collectives(out):
    rank, world = dist.get_rank(), dist.get_world_size()
    got = {}
    for device in DEVICES:
        for dtype in DTYPES:
            if not supported(device, dtype):
                continue
            key = f"{device}/{dtype}"
            for op in REDUCE_OPS:
                if applicable(op, dtype):
                    t = oc.tensor(inputs(rank, dtype), device=device)
                    dist.all_reduce(t, op=op)
                    got[f"{key}/all_reduce/{op}"] = t.cpu().numpy()
            t = oc.tensor(inputs(rank, dtype), device=device)
            work = dist.all_reduce(t, async_op=True)
            work.wait()
            got[f"{key}/all_reduce_async/sum"] = t.cpu().numpy()
            t = oc.tensor(inputs(rank, dtype), device=device)
            dist.broadcast(t, src=1)
            got[f"{key}/broadcast"] = t.cpu().numpy()
            parts = [oc.tensor(np.zeros(SHAPE, dtype), device=device) for _ in range(world)]
            dist.all_gather(parts, oc.tensor(inputs(rank, dtype), device=device))
            got[f"{key}/all_gather"] = np.stack([p.cpu().numpy() for p in parts])
            for op in ("sum", "avg", "max"):
                if applicable(op, dtype):
                    output = oc.tensor(np.zeros(SHAPE, dtype), device=device)
                    dist.reduce_scatter(output, [oc.tensor(inputs(rank, dtype, 1 + r), device=device)
                                                 for r in range(world)], op=op)
                    got[f"{key}/reduce_scatter/{op}"] = output.cpu().numpy()
    dist.barrier()
    np.savez(os.path.join(out, f"rank{rank}.npz"), **got)
    errors = {}
    for name, call in {
        "shapes differ": lambda: dist.all_reduce(oc.zeros(2 + rank)),
        "dtypes differ": lambda: dist.broadcast(oc.zeros(2, dtype=oc.float32 if rank else oc.float64), src=0),
        "bad src on one rank": lambda: dist.broadcast(oc.zeros(2), src=7 if rank else 0),
        "short list on one rank": lambda: dist.all_gather([oc.zeros(2)] * (world - rank), oc.zeros(2)),
        "not contiguous": lambda: dist.all_reduce(oc.zeros(3, 4).transpose(0, 1)),
        "avg of ints": lambda: dist.all_reduce(oc.zeros(2, dtype=oc.int64), op=dist.ReduceOp.AVG),
        "not a tensor": lambda: dist.all_reduce(np.zeros(2)),
    }.items():
        errors[name] = raised(call)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"world_size": world, "errors": errors}, f)


def raised(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 (the test checks the type)
        return [type(e).__name__, str(e)]
    return None


class Net(oc.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = oc.nn.Linear(6, 16)
        self.norm = oc.nn.LayerNorm(16)
        self.fc2 = oc.nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(oc.nn.functional.gelu(self.norm(self.fc1(x))))


STEPS, BATCH, MICRO = 4, 8, 2  # each step accumulates MICRO micro-batches of BATCH rows


def batch(step, micro):
    rng = np.random.default_rng([step, micro])
    return rng.normal(size=(BATCH, 6)).astype(np.float32), rng.normal(size=(BATCH, 3)).astype(np.float32)


def train(model, device, rows, forward):
    """STEPS AdamW steps with MICRO accumulated micro-batches each, on the rows `rows` of every batch."""
    optimizer = oc.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(STEPS):
        optimizer.zero_grad()
        for micro in range(MICRO):
            x, y = (oc.tensor(a[rows], device=device) for a in batch(step, micro))
            loss = ((forward(model, x, micro) - y) ** 2).mean() / MICRO
            loss.backward()
        optimizer.step()
    return {name: p.detach().cpu().numpy() for name, p in model.named_parameters()}


def ddp(out):
    """DDP training on each rank's half of every batch, and one process's training on the whole batches."""
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    got, names = {}, {}
    for device in DEVICES:
        for cap_mb in (25, 0.0005):  # one bucket; a bucket per parameter (overlapping backward)
            oc.manual_seed(100 + rank)  # different weights on each rank: DDP must copy rank 0's
            model = DDP(Net().to(device), bucket_cap_mb=cap_mb)
            names[f"{device}/{cap_mb}"] = list(model.state_dict())

            def forward(m, x, micro):
                if micro < MICRO - 1:
                    with m.no_sync():
                        return m(x)
                return m(x)
            for name, value in train(model, device, shard, forward).items():
                got[f"ddp/{device}/{cap_mb}/{name}"] = value
        oc.manual_seed(100)  # rank 0's weights
        for name, value in train(Net().to(device), device, slice(None), lambda m, x, micro: m(x)).items():
            got[f"single/{device}/{name}"] = value
    np.savez(os.path.join(out, f"rank{rank}.npz"), **got)
    errors = {"unused parameter": raised(lambda: unused_parameter_step())}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"world_size": world, "state_dict_keys": names, "errors": errors}, f)


class PartlyUsed(Net):
    def forward(self, x):
        return self.fc1(x)  # norm and fc2 get no gradient


def unused_parameter_step():
    model = DDP(PartlyUsed(), bucket_cap_mb=0.0005)
    model(oc.ones(1, 6)).sum().backward()
    model(oc.ones(1, 6))


def uninitialized(out):
    """Before init_process_group, every function says so; a second init and another backend are refused."""
    got = {name: raised(call) for name, call in {
        "get_rank": dist.get_rank,
        "all_reduce": lambda: dist.all_reduce(oc.zeros(2)),
        "barrier": dist.barrier,
        "DistributedDataParallel": lambda: DDP(Net()),
        "DistributedSampler": lambda: oc.utils.data.DistributedSampler(range(4)),
    }.items()}
    got["is_initialized before"] = dist.is_initialized()
    dist.init_process_group("mpi")
    rank = dist.get_rank()
    got["is_initialized after"] = dist.is_initialized()
    got["init twice"] = raised(lambda: dist.init_process_group("mpi"))
    got["environment"] = [os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]]
    dist.destroy_process_group()
    got["nccl"] = raised(lambda: dist.init_process_group("nccl"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"errors": got}, f)


if __name__ == "__main__":
    scenario, out_dir = sys.argv[1], sys.argv[2]
    if scenario != "uninitialized":
        dist.init_process_group("mpi")
    globals()[scenario](out_dir)
    if dist.is_initialized():
        dist.destroy_process_group()
