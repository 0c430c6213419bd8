"""Allocation profiling: with ORCHARD_TENSOR_PROFILE set every storage allocation writes one `alloc`
line and its release one `free` line to ORCHARD_TENSOR_PROFILE_LOG; counts() and the log stay
balanced, also under many threads."""
import gc
import re
import threading

import numpy as np
import pytest

import orchard as oc
from conftest import forget_last_failure

LINE = re.compile(r"^(alloc|free) id=(\d+) bytes=(\d+) device=(\w+)$")


def read_log(path):
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), f"malformed profile lines: {[l for l, p in zip(lines, parsed) if not p][:3]}"
    return [(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)) for m in parsed]


def check_balanced(events):
    """Every alloc has exactly one later free with the same id and size, and vice versa."""
    open_ids = {}
    for kind, sid, nbytes, device in events:
        if kind == "alloc":
            assert sid not in open_ids, f"storage {sid} allocated twice"
            open_ids[sid] = nbytes
        else:
            assert open_ids.pop(sid, None) == nbytes, f"free of storage {sid} without a matching alloc"
    assert not open_ids, f"storages never freed: {sorted(open_ids)[:5]}"


@pytest.fixture
def profiling(tmp_path, monkeypatch):
    log = tmp_path / "profile.log"
    forget_last_failure()
    gc.collect()
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "1")
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE_LOG", str(log))
    oc.profile.clear_log()
    oc.profile.reset()
    yield log
    gc.collect()
    monkeypatch.delenv("ORCHARD_TENSOR_PROFILE")
    oc.profile.reset()


def test_alloc_and_free_lines(device, profiling):
    assert oc.profile.enabled()
    assert oc.profile.log_path() == str(profiling)
    a = oc.zeros(100, dtype=oc.int64, device=device)
    b = a + a  # one new storage (a Python scalar would add its own small 0-d storages)
    v = b.T.reshape(100)[10:20]  # views allocate nothing
    assert oc.profile.counts() == (2, 0)
    events = read_log(profiling)
    assert [e[0] for e in events] == ["alloc", "alloc"]
    assert events[0][2] == 800 and events[0][3] == device
    del a, b
    gc.collect()
    assert oc.profile.counts() == (2, 1)  # the view keeps b's storage
    del v
    gc.collect()
    assert oc.profile.counts() == (2, 2)
    check_balanced(read_log(profiling))


def test_disabled_writes_nothing_and_flag_is_read_at_run_time(profiling, monkeypatch):
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "0")
    assert not oc.profile.enabled()
    x = oc.ones(10)
    del x
    gc.collect()
    assert oc.profile.counts() == (0, 0) and read_log(profiling) == []
    # allocated while on, freed while off: the free is still recorded, so the log stays paired
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "1")
    y = oc.ones(10)
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "0")
    del y
    gc.collect()
    assert oc.profile.counts() == (1, 1)
    check_balanced(read_log(profiling))
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "1")


def test_reset_and_clear_log(profiling):
    x = oc.ones(3)
    assert oc.profile.counts()[0] == 1 and profiling.exists()
    oc.profile.clear_log()
    assert not profiling.exists()
    oc.profile.reset()
    assert oc.profile.counts() == (0, 0)
    del x
    gc.collect()


def test_live_tensors(device, profiling):
    t = oc.empty(12345, dtype=oc.bool, device=device)
    live = oc.profile.live_tensors()
    assert all(isinstance(s, tuple) and len(s) == 3 for s in live)
    assert any(nbytes == 12345 and dev == device for _, nbytes, dev in live)
    ids = {sid for sid, nbytes, _ in live if nbytes == 12345}
    del t
    gc.collect()
    assert not ids & {sid for sid, _, _ in oc.profile.live_tensors()}


def test_multithreaded_stress_keeps_counts_equal(profiling):
    errors = []

    def worker(seed):
        try:
            rng = np.random.default_rng(seed)
            for i in range(60):
                n = int(rng.integers(1, 300))
                a = oc.rand(n, 3)
                b = (a * 2 + 1).sum(1)
                c = oc.cat([b, b], 0).reshape(2, n).T.contiguous()
                d = oc.from_numpy(rng.random(n)) + c[:, 0].double()
                if i % 10 == 0:
                    gc.collect()
                del a, b, c, d
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert not errors, errors
    allocs, frees = oc.profile.counts()
    assert allocs > 8 * 60 * 4
    assert allocs == frees
    events = read_log(profiling)
    assert sum(e[0] == "alloc" for e in events) == allocs
    check_balanced(events)
