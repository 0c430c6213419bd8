"""Data-parallel communication on one machine: `python benchmarks/distributed.py [--ranks 2] [--quick]`.

Starts itself under `mpiexec -n RANKS` and reports, from rank 0:
- all-reduce bandwidth over shared memory (orchard.distributed.all_reduce, SUM, of float32 CPU tensors) against
  the machine's copy bandwidth (NumPy copying the same bytes in one process while the other ranks sleep). Both are
  payload bytes per second; the all-reduce's bus bandwidth is NCCL's, 2 (n - 1) / n times the payload over the
  time (what each rank must send and receive), the figure to set against a copy's.
- how much of the gradient communication DistributedDataParallel's buckets hide behind backward: an MLP's forward
  and backward alone (compute), the all-reduce of its gradients in DDP's buckets alone (communication), and both
  through DDP; hidden = (compute + communication - DDP) / communication.
Each rank runs Orchard's CPU pool with --threads threads (default: the machine's cores over the ranks). Medians of
--repeat runs after warmups; writes results.json to --out. Run on a quiet machine."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

MB = 2**20


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="Orchard CPU threads per rank")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--out", default=os.path.join("runs", "bench-distributed-" + time.strftime("%Y%m%d-%H%M%S")))
    return p.parse_args(argv)


def median_s(call, repeat, warmup=2, before=lambda: None):
    """Median seconds of `call()` over `repeat` runs after `warmup` untimed ones (`before()` untimed each time)."""
    return median_each({"": call}, repeat, warmup, before)[""]


def median_each(calls, repeat, warmup=2, before=lambda: None):
    """{name: median seconds} of each call, timed in interleaved rounds (one call each per round), so that a
    machine whose speed drifts slows them alike."""
    times = {name: [] for name in calls}
    for i in range(warmup + repeat):
        for name, call in calls.items():
            before()
            start = time.perf_counter()
            call()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def idle_until_rank0(dist):
    """The ranks other than 0 wait sleeping (a blocking barrier polls, taking a core from rank 0's timing)."""
    work = dist.barrier(async_op=True)
    while not work.is_completed():
        time.sleep(0.005)


def bandwidth(oc, dist, sizes_mb, repeat):
    rank, world = dist.get_rank(), dist.get_world_size()
    rows = []
    for size in sizes_mb:
        n = size * MB // 4
        copy_s = None
        if rank == 0:
            src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
            copy_s = median_s(lambda: np.copyto(dst, src), repeat)
            dist.barrier()
        else:
            idle_until_rank0(dist)
        t = oc.ones(n)
        dist.barrier()
        reduce_s = median_s(lambda: dist.all_reduce(t), repeat, before=dist.barrier)
        payload = n * 4
        rows.append({"MB": size, "copy GB/s": payload / copy_s / 1e9 if copy_s else None,
                     "all_reduce ms": reduce_s * 1e3, "all_reduce alg GB/s": payload / reduce_s / 1e9,
                     "all_reduce bus GB/s": 2 * (world - 1) / world * payload / reduce_s / 1e9})
    return rows


def overlap(oc, dist, width, layers, batch, bucket_mb, repeat):
    from orchard.distributed.collectives import ReduceOp, start_all_reduce
    from orchard.distributed.process_group import communicator
    from orchard.nn.parallel import DistributedDataParallel

    oc.manual_seed(0)
    model = oc.nn.Sequential(*[m for _ in range(layers) for m in (oc.nn.Linear(width, width), oc.nn.GELU())])
    x = oc.randn(batch, width)

    def step(m):
        m.zero_grad()
        (m(x) ** 2).mean().backward()

    ddp = DistributedDataParallel(model, bucket_cap_mb=bucket_mb)
    buckets = [sum(p.numel() for p in b.params) for b in ddp._reducer.buckets]
    flats = [oc.zeros(n) for n in buckets]
    comm = communicator("benchmark")

    def communicate():
        for w in [start_all_reduce(comm, f, ReduceOp.AVG) for f in flats]:
            w.wait()

    def no_sync():
        with ddp.no_sync():
            step(ddp)
    t = median_each({"compute": lambda: step(model), "communication": communicate, "ddp": lambda: step(ddp),
                     "no_sync": no_sync}, repeat, before=dist.barrier)
    compute_s, communication_s, ddp_s, no_sync_s = t["compute"], t["communication"], t["ddp"], t["no_sync"]
    hidden = (compute_s + communication_s - ddp_s) / communication_s
    return {"model": f"MLP {layers} x Linear({width}, {width}), batch {batch}",
            "gradient MB": sum(buckets) * 4 / MB, "buckets": len(buckets), "bucket_cap_mb": bucket_mb,
            "compute ms": compute_s * 1e3, "communication ms": communication_s * 1e3,
            "ddp ms": ddp_s * 1e3, "ddp no_sync ms": no_sync_s * 1e3, "hidden": hidden}


def run_rank(args):
    import orchard as oc
    import orchard.distributed as dist
    dist.init_process_group("mpi")
    sizes = [1, 4] if args.quick else [1, 4, 16, 64]
    shape = dict(width=256, layers=4, batch=64, bucket_mb=0.25) if args.quick else \
        dict(width=1024, layers=8, batch=256, bucket_mb=4)
    results = {"ranks": dist.get_world_size(), "threads per rank": os.environ.get("ORCHARD_NUM_THREADS"),
               "bandwidth": bandwidth(oc, dist, sizes, args.repeat),
               "overlap": overlap(oc, dist, repeat=args.repeat, **shape)}
    if dist.get_rank() == 0:
        report(results, args.out)
    dist.destroy_process_group()


def report(results, out):
    print(f"{results['ranks']} ranks, {results['threads per rank']} Orchard threads each")
    print(f"{'MB':>5} {'copy GB/s':>10} {'all_reduce ms':>14} {'alg GB/s':>9} {'bus GB/s':>9} {'bus/copy':>9}")
    for r in results["bandwidth"]:
        print(f"{r['MB']:>5} {r['copy GB/s']:>10.2f} {r['all_reduce ms']:>14.2f} {r['all_reduce alg GB/s']:>9.2f} "
              f"{r['all_reduce bus GB/s']:>9.2f} {r['all_reduce bus GB/s'] / r['copy GB/s']:>9.2f}")
    o = results["overlap"]
    print(f"{o['model']}: {o['gradient MB']:.1f} MB of gradients in {o['buckets']} buckets of <= {o['bucket_cap_mb']} MB")
    print(f"  forward+backward {o['compute ms']:.1f} ms, all-reduce of the buckets alone {o['communication ms']:.1f} ms, "
          f"DDP {o['ddp ms']:.1f} ms (no_sync {o['ddp no_sync ms']:.1f} ms): hidden {100 * o['hidden']:.0f}% of the "
          "communication" + (" (DDP took longer than compute and communication one after the other)"
                             if o["hidden"] < 0 else ""))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {os.path.join(out, 'results.json')}")


def main(argv=None):
    args = parse_args(argv)
    from orchard.distributed import launched_by_mpi, mpiexec
    if launched_by_mpi():
        return run_rank(args)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.ranks)
    env = {**os.environ, "ORCHARD_NUM_THREADS": str(threads), "OMP_NUM_THREADS": "1"}
    cmd = [mpiexec(), "-n", str(args.ranks), sys.executable, os.path.abspath(__file__),
           *(sys.argv[1:] if argv is None else argv)]
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
