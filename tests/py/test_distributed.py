"""orchard.distributed and DistributedDataParallel across 2 processes started by `mpiexec -n 2` (mpi4py with
the MPICH wheel): every collective against NumPy on every device, errors raised on every rank, DDP training
against one process training on the whole batches, and the trainer's losses under MPI against one process's.

Each scenario is one launch of tests/py/distributed_worker.py (module-scoped fixtures); the checks read what the
ranks wrote."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import orchard as oc
from orchard.distributed import mpiexec

HERE = pathlib.Path(__file__).parent
RANKS = 2
_spec = importlib.util.spec_from_file_location("distributed_worker", HERE / "distributed_worker.py")
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def package_env():
    package_root = os.path.dirname(os.path.dirname(oc.__file__))
    return {**os.environ, "PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def launch(args, timeout=300):
    """Runs `mpiexec -n 2 python ARGS...`, failing the test with both ranks' output if it fails."""
    cmd = [mpiexec(), "-n", str(RANKS), sys.executable, *args]
    done = subprocess.run(cmd, env=package_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def run_scenario(name, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    launch([str(HERE / "distributed_worker.py"), name, str(out)])
    ranks = []
    for r in range(RANKS):
        with open(out / f"rank{r}.json") as f:
            info = json.load(f)
        npz = out / f"rank{r}.npz"
        if npz.exists():
            with np.load(npz) as arrays:
                info["arrays"] = dict(arrays)
        ranks.append(info)
    return ranks


# ---- collectives -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def collectives(tmp_path_factory):
    return run_scenario("collectives", tmp_path_factory)


def reduce(op, arrays):
    stacked = np.stack(arrays).astype(np.float64) if arrays[0].dtype.kind == "f" else np.stack(arrays)
    if arrays[0].dtype == bool:
        return stacked.any(0) if op in ("sum", "max") else stacked.all(0)
    return {"sum": stacked.sum(0), "avg": stacked.mean(0), "product": stacked.prod(0), "max": stacked.max(0),
            "min": stacked.min(0)}[op].astype(arrays[0].dtype)


def expected_collectives(device, dtype):
    """Every collective's result on every rank, from NumPy."""
    mine = [worker.inputs(r, dtype) for r in range(RANKS)]
    out = {}
    for op in worker.REDUCE_OPS:
        if worker.applicable(op, dtype):
            out[f"all_reduce/{op}"] = [reduce(op, mine)] * RANKS
    out["all_reduce_async/sum"] = [reduce("sum", mine)] * RANKS
    out["broadcast"] = [mine[1]] * RANKS
    out["all_gather"] = [np.stack(mine)] * RANKS
    for op in ("sum", "avg", "max"):
        if worker.applicable(op, dtype):
            out[f"reduce_scatter/{op}"] = [reduce(op, [worker.inputs(src, dtype, 1 + r) for src in range(RANKS)])
                                           for r in range(RANKS)]
    return out


CASES = [(device, dtype) for device in worker.DEVICES for dtype in worker.DTYPES if worker.supported(device, dtype)]


@pytest.mark.parametrize("device,dtype", CASES)
def test_collectives_match_numpy(collectives, device, dtype):
    assert [c["world_size"] for c in collectives] == [RANKS] * RANKS  # mpiexec and mpi4py's MPI belong together
    expected = expected_collectives(device, dtype)
    for name, per_rank in expected.items():
        for r in range(RANKS):
            got = collectives[r]["arrays"][f"{device}/{dtype}/{name}"]
            assert got.dtype == per_rank[r].dtype, name
            # float16 sums are rounded once, from float32, as NumPy's float64 reference rounded to float16
            tol = {"float16": 1e-3, "float32": 1e-6, "float64": 1e-12}.get(dtype, 0)
            np.testing.assert_allclose(got.astype(np.float64), per_rank[r].astype(np.float64), rtol=tol, atol=tol,
                                       err_msg=f"{device} {dtype} {name} rank {r}")


@pytest.mark.parametrize("case,kind", [
    ("shapes differ", "ValueError"), ("dtypes differ", "ValueError"), ("bad src on one rank", "ValueError"),
    ("short list on one rank", "ValueError"), ("not contiguous", "ValueError"), ("avg of ints", "TypeError"),
    ("not a tensor", "TypeError")])
def test_wrong_arguments_raise_on_every_rank(collectives, case, kind):
    for r in range(RANKS):
        assert collectives[r]["errors"][case] is not None, f"rank {r} raised nothing for {case}"
        assert collectives[r]["errors"][case][0] == kind, collectives[r]["errors"][case]


@pytest.fixture(scope="module")
def uninitialized(tmp_path_factory):
    return run_scenario("uninitialized", tmp_path_factory)


def test_uninitialized_group_and_bad_init_raise(uninitialized):
    for r, rank in enumerate(uninitialized):
        errors = rank["errors"]
        for name in ("get_rank", "all_reduce", "barrier", "DistributedDataParallel", "DistributedSampler"):
            assert errors[name][0] == "ValueError" and "init_process_group" in errors[name][1], errors[name]
        assert errors["is_initialized before"] is False and errors["is_initialized after"] is True
        assert errors["init twice"][0] == "RuntimeError"
        assert errors["nccl"][0] == "ValueError" and "'mpi'" in errors["nccl"][1]
        assert errors["environment"] == [str(r), str(RANKS), str(r)]


def test_without_mpi4py_import_works_and_init_says_what_to_install(monkeypatch):
    import orchard.distributed as dist
    from orchard.nn.parallel import DistributedDataParallel  # noqa: F401 (nanoGPT's imports, with no MPI)
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # as if it were not installed
    assert not dist.is_available()
    with pytest.raises(ImportError, match=r"pip install \.\[distributed\]"):
        dist.init_process_group("mpi")


# ---- DistributedDataParallel --------------------------------------------------------------------

@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    return run_scenario("ddp", tmp_path_factory)


@pytest.mark.parametrize("device", worker.DEVICES)
@pytest.mark.parametrize("cap_mb", [25, 0.0005])
def test_ddp_equals_one_process_on_the_whole_batch(ddp, device, cap_mb):
    """Each rank trains on half of every batch (accumulating micro-batches under no_sync): the ranks' parameters
    are bit-identical, and equal one process's trained on the whole batches from rank 0's initial weights."""
    prefix = f"ddp/{device}/{cap_mb}/"
    names = [k[len(prefix):] for k in ddp[0]["arrays"] if k.startswith(prefix)]
    assert names
    for name in names:
        ranks = [ddp[r]["arrays"][prefix + name] for r in range(RANKS)]
        for other in ranks[1:]:
            np.testing.assert_array_equal(other, ranks[0], err_msg=name)
        single = ddp[0]["arrays"][f"single/{device}/{name.removeprefix('module.')}"]
        np.testing.assert_allclose(ranks[0], single, rtol=1e-5, atol=1e-5, err_msg=name)


def test_ddp_state_dict_keys_carry_the_module_prefix(ddp):
    import torch
    reference = torch.nn.Sequential()
    reference.add_module("fc1", torch.nn.Linear(6, 16))
    reference.add_module("norm", torch.nn.LayerNorm(16))
    reference.add_module("fc2", torch.nn.Linear(16, 3))
    for keys in ddp[0]["state_dict_keys"].values():  # PyTorch's wrapper adds "module." to its module's keys
        assert keys == ["module." + k for k in reference.state_dict()]


def test_ddp_unused_parameter_raises_at_the_next_forward(ddp):
    for rank in ddp:
        error = rank["errors"]["unused parameter"]
        assert error is not None and error[0] == "RuntimeError" and "gradient" in error[1], error


# ---- the trainer --------------------------------------------------------------------------------

TRAINER_ARGS = ["-m", "orchard.train", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--seq-len", "16",
                "--batch-size", "4", "--steps", "6", "--warmup-steps", "2", "--eval-interval", "3",
                "--eval-batches", "1", "--sample-bytes", "4"]


def trainer_history(out):
    from orchard.training import checkpoint
    return checkpoint.load_trainer_state(checkpoint.latest(out))["history"]


def test_trainer_under_mpiexec_matches_one_process(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def f(x):\n    return x * 2\n" * 200)
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    subprocess.run([sys.executable, *TRAINER_ARGS, "--data", str(corpus), "--out", str(single)], env=package_env(),
                   check=True, capture_output=True, timeout=600)
    launch([*TRAINER_ARGS, "--data", str(corpus), "--out", str(parallel)])
    one, two = trainer_history(single), trainer_history(parallel)
    assert [s for s, _ in two["train"]] == [s for s, _ in one["train"]] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in two["train"]], [v for _, v in one["train"]], rtol=1e-5)
    np.testing.assert_allclose([v for _, v in two["val"]], [v for _, v in one["val"]], rtol=1e-5)
    assert (parallel / "loss.png").exists() and (parallel / "sample.txt").exists()


# ---- the benchmark ------------------------------------------------------------------------------

def test_benchmark_quick_run_writes_its_figures(tmp_path):
    bench = HERE.parents[1] / "benchmarks" / "distributed.py"
    subprocess.run([sys.executable, str(bench), "--quick", "--repeat", "1", "--threads", "1", "--out", str(tmp_path)],
                   env=package_env(), check=True, capture_output=True, timeout=600)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ranks"] == RANKS and len(results["bandwidth"]) == 2
    assert all(row["all_reduce bus GB/s"] > 0 and row["copy GB/s"] > 0 for row in results["bandwidth"])
    assert results["overlap"]["buckets"] > 1 and results["overlap"]["hidden"] <= 1
