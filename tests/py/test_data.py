"""orchard.utils.data against torch.utils.data: collation, samplers, batching, and worker processes."""
import collections
import os
import time

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import orchard as oc
import orchard.utils.data as oud
from test_serialization import assert_same as same  # the same structure, dtypes and values
from orchard.utils.data.dataloader import DataLoader as DataLoaderFromSubmodule

Point = collections.namedtuple("Point", ["x", "y"])


def both(make):
    """make(L) for L = (orchard, torch): samples written once for both libraries."""
    return make(oc), make(torch)


SAMPLES = {
    "tensors": lambda L: [L.tensor([1.0, 2.0]), L.tensor([3.0, 4.0])],
    "int tensors 0-d": lambda L: [L.tensor(1), L.tensor(2)],
    "ints": lambda L: [1, 2, 3],
    "floats": lambda L: [1.5, 2.0],
    "bools": lambda L: [True, False],
    "strings": lambda L: ["a", "bc"],
    "numpy float32": lambda L: [np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)],
    "numpy int64": lambda L: [np.arange(3), np.arange(3) + 5],
    "numpy 0-d": lambda L: [np.array(1.5), np.array(2.5)],
    "numpy scalars": lambda L: [np.float32(1.5), np.float32(2)],
    "numpy int scalars": lambda L: [np.int64(4), np.int64(5)],
    "tuples": lambda L: [(L.tensor([1]), 2, "x"), (L.tensor([3]), 4, "y")],
    "lists": lambda L: [[1, 2.5], [3, 4.5]],
    "dicts": lambda L: [{"a": L.tensor([1.0]), "b": 1}, {"a": L.tensor([2.0]), "b": 2}],
    "ordered dicts": lambda L: [collections.OrderedDict(z=1, a=2.0), collections.OrderedDict(z=3, a=4.0)],
    "defaultdicts": lambda L: [collections.defaultdict(int, k=1), collections.defaultdict(int, k=2)],
    "namedtuples": lambda L: [Point(L.tensor([1]), 2.0), Point(L.tensor([3]), 4.0)],
    "nested": lambda L: [{"xy": (L.ones(2), [1, {"n": 2.0}])}, {"xy": (L.zeros(2), [3, {"n": 4.0}])}],
}


@pytest.mark.parametrize("name", SAMPLES)
def test_default_collate_as_pytorch(name):
    ours, theirs = both(SAMPLES[name])
    same(oud.default_collate(ours), tud.default_collate(theirs))


@pytest.mark.parametrize("name", SAMPLES)
def test_default_convert_as_pytorch(name):
    ours, theirs = both(SAMPLES[name])
    for o, t in zip(ours, theirs):
        same(oud.default_convert(o), tud.default_convert(t))


def test_default_collate_stacks_metal_tensors(device):
    batch = oud.default_collate([oc.ones(2, device=device), oc.zeros(2, device=device)])
    assert batch.device == device and batch.tolist() == [[1.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("batch", [
    lambda L: [[1, 2], [3]], lambda L: [object(), object()], lambda L: [np.array(["a"]), np.array(["b"])],
], ids=["unequal lists", "objects", "string arrays"])
def test_default_collate_errors_as_pytorch(batch):
    with pytest.raises(Exception) as want:
        tud.default_collate(batch(torch))
    with pytest.raises(want.type):
        oud.default_collate(batch(oc))


# ---- datasets --------------------------------------------------------------------------------------------------

class Squares(oud.Dataset):
    """Sample i: (a tensor [i, i*i], the int i)."""

    def __init__(self, n, lib="orchard"):
        self.n, self.lib = n, lib  # a name, not the module: spawned workers get the dataset pickled

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return (torch if self.lib == "torch" else oc).tensor([i, i * i]), i


class TorchSquares(tud.Dataset):
    def __init__(self, n):
        self.inner = Squares(n, "torch")

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        return self.inner[i]


def test_tensor_dataset_subset_concat_as_pytorch():
    x, y = oc.arange(10).reshape(5, 2), oc.arange(5) * 1.5
    tx, ty = torch.arange(10).reshape(5, 2), torch.arange(5) * 1.5
    ds, tds = oud.TensorDataset(x, y), tud.TensorDataset(tx, ty)
    assert len(ds) == len(tds) == 5
    same(ds[3], tds[3])
    sub, tsub = oud.Subset(ds, [4, 0, 2]), tud.Subset(tds, [4, 0, 2])
    assert len(sub) == 3
    same([sub[i] for i in range(3)], [tsub[i] for i in range(3)])
    cat, tcat = ds + sub, tds + tsub
    assert len(cat) == len(tcat) == 8
    same([cat[i] for i in range(-8, 8)], [tcat[i] for i in range(-8, 8)])
    with pytest.raises(ValueError, match="Size mismatch"):
        oud.TensorDataset(oc.ones(2), oc.ones(3))
    with pytest.raises(TypeError, match="expected tensors"):
        oud.TensorDataset([1, 2])


@pytest.mark.parametrize("lengths", [[3, 7], [0, 10], [0.3, 0.7], [0.25, 0.25, 0.5], [1 / 3] * 3])
def test_random_split_partitions_as_pytorch(lengths):
    want = [len(s) for s in tud.random_split(range(10), lengths)]
    parts = oud.random_split(range(10), lengths)
    assert [len(p) for p in parts] == want
    assert sorted(i for p in parts for i in p) == list(range(10))
    oc.manual_seed(5)
    first = [list(p) for p in oud.random_split(range(10), lengths)]
    oc.manual_seed(5)
    assert [list(p) for p in oud.random_split(range(10), lengths)] == first


def test_random_split_errors_as_pytorch():
    for lengths in ([3, 3], [0.5, 0.6]):
        with pytest.raises(ValueError):
            tud.random_split(range(10), lengths)
        with pytest.raises(ValueError):
            oud.random_split(range(10), lengths)


# ---- samplers --------------------------------------------------------------------------------------------------

def test_sequential_and_batch_samplers_as_pytorch():
    for bs in (1, 3, 5, 10, 11):
        for drop_last in (False, True):
            ours = oud.BatchSampler(oud.SequentialSampler(range(10)), bs, drop_last)
            theirs = tud.BatchSampler(tud.SequentialSampler(range(10)), bs, drop_last)
            assert list(ours) == list(theirs) and len(ours) == len(theirs)


def test_random_sampler_permutes_and_repeats_under_manual_seed():
    sampler = oud.RandomSampler(range(50))
    oc.manual_seed(0)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    oc.manual_seed(0)
    assert list(sampler) == first


@pytest.mark.parametrize("num_samples", [1, 7, 10, 23])
def test_random_sampler_without_replacement_covers_each_pass(num_samples):
    got = list(oud.RandomSampler(range(10), num_samples=num_samples))
    assert len(got) == num_samples == len(oud.RandomSampler(range(10), num_samples=num_samples))
    for start in range(0, num_samples, 10):
        block = got[start:start + 10]
        assert len(set(block)) == len(block)


def test_random_sampler_with_replacement_draws_lazily():
    sampler = oud.RandomSampler(range(7), replacement=True, num_samples=int(1e10))
    assert len(sampler) == int(1e10)
    start = time.perf_counter()
    it = iter(sampler)
    draws = [next(it) for _ in range(2000)]
    assert time.perf_counter() - start < 5  # nothing of size 1e10 is made
    assert set(draws) == set(range(7))
    counts = np.bincount(draws, minlength=7)
    assert counts.min() > 2000 / 7 * 0.7  # roughly uniform
    assert len(list(oud.RandomSampler(range(7), replacement=True, num_samples=33))) == 33


@pytest.mark.parametrize("kwargs", [dict(replacement=1), dict(num_samples=0), dict(num_samples=2.5),
                                    dict(num_samples=-1)])
def test_random_sampler_errors_as_pytorch(kwargs):
    with pytest.raises(Exception) as want:
        tud.RandomSampler(range(5), **kwargs)
    with pytest.raises(want.type):
        oud.RandomSampler(range(5), **kwargs)


@pytest.mark.parametrize("args", [(0, False), (-1, False), (2.0, False), (2, 1)])
def test_batch_sampler_errors_as_pytorch(args):
    with pytest.raises(Exception) as want:
        tud.BatchSampler(range(5), *args)
    with pytest.raises(want.type):
        oud.BatchSampler(range(5), *args)


def test_subset_random_sampler():
    got = list(oud.SubsetRandomSampler([3, 5, 9]))
    assert sorted(got) == [3, 5, 9]


# ---- DataLoader ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (4, False), (4, True), (10, False), (13, True),
                                                  (None, False)])
def test_batches_as_pytorch(num_workers, batch_size, drop_last):
    loader = oud.DataLoader(Squares(10), batch_size=batch_size, drop_last=drop_last, num_workers=num_workers)
    theirs = tud.DataLoader(TorchSquares(10), batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(theirs)
    same(list(loader), list(theirs))
    same(list(loader), list(theirs))  # a second pass


def test_spawned_workers():
    """Workers started afresh (macOS's default): the dataset travels pickled, the batches come back the same."""
    loader = oud.DataLoader(Squares(6), batch_size=4, num_workers=2, multiprocessing_context="spawn")
    same(list(loader), list(tud.DataLoader(TorchSquares(6), batch_size=4)))


def test_submodule_paths_scripts_import():
    assert DataLoaderFromSubmodule is oud.DataLoader is oc.utils.data.DataLoader
    from orchard.utils.data.dataset import Dataset
    from orchard.utils.data.sampler import RandomSampler
    assert Dataset is oud.Dataset and RandomSampler is oud.RandomSampler


def test_shuffle_gives_each_epoch_a_permutation_repeatable_under_manual_seed():
    loader = oud.DataLoader(Squares(20), batch_size=6, shuffle=True)
    oc.manual_seed(1)
    epochs = [[i for _, ids in loader for i in ids.tolist()] for _ in range(2)]
    assert all(sorted(e) == list(range(20)) for e in epochs) and epochs[0] != epochs[1]
    oc.manual_seed(1)
    assert [i for _, ids in loader for i in ids.tolist()] == epochs[0]


def test_a_batch_sampler_and_a_collate_fn():
    loader = oud.DataLoader(Squares(10), batch_sampler=[[1, 2], [9], [0, 0, 0]], collate_fn=lambda b: [i for _, i in b])
    assert list(loader) == [[1, 2], [9], [0, 0, 0]] and len(loader) == 3


def test_mingpt_style_random_sampler_with_workers():
    sampler = oud.RandomSampler(Squares(10), replacement=True, num_samples=int(1e10))
    loader = oud.DataLoader(Squares(10), sampler=sampler, shuffle=False, pin_memory=True, batch_size=4, num_workers=2)
    it = iter(loader)
    for _ in range(5):
        x, i = next(it)
        assert x.shape == (4, 2) and x.dtype == oc.int64 and i.dtype == oc.int64
        assert (x[:, 0] == i).all().item() and (x[:, 1] == i * i).all().item()
    del it


@pytest.mark.parametrize("kwargs", [
    dict(num_workers=-1), dict(timeout=-1), dict(prefetch_factor=2), dict(persistent_workers=True),
    dict(sampler=[0, 1], shuffle=True), dict(batch_sampler=[[0]], batch_size=2), dict(batch_sampler=[[0]], shuffle=True),
    dict(batch_sampler=[[0]], drop_last=True), dict(batch_sampler=[[0]], sampler=[0]),
    dict(batch_size=None, drop_last=True),
])
def test_argument_errors_as_pytorch(kwargs):
    with pytest.raises(Exception) as want:
        tud.DataLoader(TorchSquares(4), **kwargs)
    with pytest.raises(want.type):
        oud.DataLoader(Squares(4), **kwargs)


class _Shares:
    """0..n-1, each worker yielding its share (every num_workers-th item)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = self.worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


class Stream(_Shares, oud.IterableDataset):
    worker_info = staticmethod(oud.get_worker_info)


class TorchStream(_Shares, tud.IterableDataset):
    worker_info = staticmethod(tud.get_worker_info)

    def __len__(self):
        return self.n


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # PyTorch's advice on a 2-core machine
@pytest.mark.parametrize("num_workers", [0, 2, 3])
@pytest.mark.parametrize("batch_size,drop_last", [(None, False), (1, False), (3, False), (3, True)])
def test_iterable_datasets_as_pytorch(num_workers, batch_size, drop_last):
    ours = oud.DataLoader(Stream(11), batch_size=batch_size, drop_last=drop_last, num_workers=num_workers)
    theirs = tud.DataLoader(TorchStream(11), batch_size=batch_size, drop_last=drop_last, num_workers=num_workers)
    same(list(ours), list(theirs))
    with pytest.raises(ValueError, match="shuffle"):
        oud.DataLoader(Stream(3), shuffle=True)
    with pytest.raises(TypeError):
        len(ours)


class Failing(oud.Dataset):
    def __init__(self, error):
        self.error = error

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i == 2:
            raise_from_sample(self.error)
        return i


def raise_from_sample(error):
    raise error


class NeedsTwoArguments(Exception):
    def __init__(self, a, b):
        super().__init__(a, b)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_errors_in_samples_reach_the_main_process(num_workers):
    loader = oud.DataLoader(Failing(KeyError("missing")), batch_size=1, num_workers=num_workers)
    with pytest.raises(KeyError) as info:
        list(loader)
    if num_workers:
        text = str(info.value)
        assert "in DataLoader worker process" in text and "raise_from_sample" in text and "missing" in text


def test_an_error_type_that_needs_other_arguments_arrives_as_runtime_error():
    loader = oud.DataLoader(Failing(NeedsTwoArguments(1, 2)), num_workers=1)
    with pytest.raises(RuntimeError, match="NeedsTwoArguments"):
        list(loader)


class WorkerProbe(oud.Dataset):
    """Sample i: (worker id, its seed, an orchard draw, a pid) from the worker that read it."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        info = oud.get_worker_info()
        return info.id, info.seed, oc.rand(1).item(), os.getpid()


def test_workers_get_distinct_seeds_repeatable_under_manual_seed():
    loader = oud.DataLoader(WorkerProbe(), batch_size=None, num_workers=2)
    oc.manual_seed(11)
    first = list(loader)
    assert [w for w, *_ in first] == [0, 1] * 4  # batches in order, round robin
    seeds = {w: s for w, s, *_ in first}
    assert seeds[1] == seeds[0] + 1
    draws = [d for *_, d, _ in first]
    assert len(set(draws)) == len(draws)
    oc.manual_seed(11)
    assert [d[:3] for d in loader] == [d[:3] for d in first]
    assert oud.get_worker_info() is None
    with pytest.raises(RuntimeError):
        oud.WorkerInfo(id=0, num_workers=1, seed=0, dataset=None).id = 3


def test_worker_init_fn_runs_in_each_worker():
    def init(worker_id):
        np.random.seed(100 + worker_id)

    class Draw(oud.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return np.random.randint(0, 2**30)

    got = [int(t) for t in oud.DataLoader(Draw(), batch_size=None, num_workers=2, worker_init_fn=init)]
    want = [np.random.RandomState(100 + w).randint(0, 2**30, size=2)[k] for k in range(2) for w in range(2)]
    assert got == [int(v) for v in want]


def test_persistent_workers_serve_every_epoch():
    loader = oud.DataLoader(WorkerProbe(), batch_size=None, num_workers=2, persistent_workers=True)
    pids = [{p for *_, p in loader} for _ in range(3)]
    assert pids[0] == pids[1] == pids[2] and len(pids[0]) == 2
    it = iter(loader)
    next(it)
    del it  # an abandoned pass: the next one starts afresh
    assert len(list(loader)) == 8


class Slow(oud.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        time.sleep(3)
        return i


def test_timeout():
    with pytest.raises(RuntimeError, match="timed out after 0.3 seconds"):
        next(iter(oud.DataLoader(Slow(), num_workers=1, timeout=0.3)))


class Dies(oud.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        os._exit(3)


def test_a_worker_that_dies_is_reported():
    with pytest.raises(RuntimeError, match="exited unexpectedly with exit code 3"):
        list(oud.DataLoader(Dies(), num_workers=1))


def test_tensors_from_workers_keep_their_device(device):
    data = oud.TensorDataset(oc.arange(12, device=device).reshape(6, 2).float())
    # CUDA cannot run in a process forked from one that started it (as in PyTorch): spawn the workers.
    context = "spawn" if device == "cuda" else None
    for (batch,) in oud.DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context=context):
        assert batch.device == device and batch.dtype == oc.float32
