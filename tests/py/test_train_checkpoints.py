"""`python -m orchard.train` killed with SIGKILL at many moments, during checkpoint saves included: every time,
what it leaves resumes from a complete checkpoint, and the run finished after all the kills is bit for bit the
run that nobody interrupted. Checkpoints hold safetensors and JSON only."""
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

import orchard as oc
from orchard.models import GPT2
from orchard.training import checkpoint

KILLS = 18  # a third while starting up, a third in the first steps, a third while a save is under way
# Enough that no run can finish within the longest wait before its kill (0.8 s of startup, or 1.5 s
# of training) on a fast, quiet machine: a step with its save takes a few milliseconds.
STEPS = 600


def trainer(out, corpus):
    """Starts the trainer on a tiny model that validates and checkpoints after every step."""
    package_root = os.path.dirname(os.path.dirname(oc.__file__))
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "orchard.train", "--out", str(out), "--data", str(corpus), "--steps", str(STEPS),
           "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--seq-len", "16", "--batch-size", "2",
           "--warmup-steps", "5", "--eval-interval", "1", "--eval-batches", "1", "--sample-bytes", "4"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def incomplete(out):
    """(name, inode) of every directory a save has begun and not finished (while the trainer may rename them)."""
    found = set()
    for p in (out.iterdir() if out.exists() else ()):
        try:
            if p.name.endswith(".incomplete"):
                found.add((p.name, p.stat().st_ino))
        except FileNotFoundError:
            pass
    return found


def newest_step(out):
    found = checkpoint.complete(out)
    return found[-1][0] if found else 0


def wait_for_a_moment_of_startup(rng, out):
    """Importing, reading the corpus, deleting leftovers, loading the checkpoint, or the first step."""
    time.sleep(rng.uniform(0.0, 0.8))


def wait_for_a_moment_of_training(rng, out):
    """A moment within the run's next step or two: training, validating or saving (or still starting up)."""
    stop_at = newest_step(out) + rng.randint(1, 2)
    deadline = time.monotonic() + rng.uniform(0.0, 1.5)
    while time.monotonic() < deadline and newest_step(out) < stop_at:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.02))


def wait_for_a_save(rng, out):
    """Until the run begins a save, then a few milliseconds (writing, flushing, renaming)."""
    leftovers, step = incomplete(out), newest_step(out)
    deadline = time.monotonic() + 60
    # A save the polling missed (a loaded machine) shows as a newer checkpoint: then the kill lands
    # in the next step instead, before the run can finish. The test still requires a quarter of all
    # kills to land during a save.
    while not incomplete(out) - leftovers and newest_step(out) == step:
        assert time.monotonic() < deadline, "the trainer began no save within 60 s"
        time.sleep(0.0005)
    time.sleep(rng.uniform(0.0, 0.005))


def assert_checkpoints_complete(out):
    """Every checkpoint-<step> directory holds a model and the trainer's state of that very step."""
    for step, path in checkpoint.complete(out):
        state = checkpoint.load_trainer_state(path)
        assert state["step"] == step and state["history"]["train"][-1][0] == step, path
        GPT2.from_pretrained(path)


def final_state(out):
    (step, path), = checkpoint.complete(out)
    return step, load_file(os.path.join(path, "model.safetensors")), checkpoint.load_trainer_state(path)


def test_sigkill_at_any_moment_resumes_from_a_complete_checkpoint(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(pathlib.Path(__file__).read_bytes() * 4)
    reference = trainer(tmp_path / "reference", corpus)
    out = tmp_path / "run"
    rng = random.Random(0)
    during_save = 0
    for kill in range(KILLS):
        newest = checkpoint.latest(out)
        before = incomplete(out)
        proc = trainer(out, corpus)
        (wait_for_a_moment_of_startup, wait_for_a_moment_of_training, wait_for_a_save)[kill % 3](rng, out)
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"the trainer ended before its kill:\n{stdout}\n{stderr}"
        if "starting fresh" in stdout or "resuming" in stdout:  # printed after the leftovers are deleted
            during_save += bool(incomplete(out) - before)
            expected = f"resuming at step {int(newest.rsplit('-', 1)[1])}" if newest else "starting fresh"
            assert expected in stdout, stdout
        assert_checkpoints_complete(out)
    assert during_save >= KILLS // 4, f"only {during_save} of {KILLS} kills came during a save"
    assert 0 < newest_step(out) < STEPS

    for proc in (trainer(out, corpus), reference):
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout + stderr
    assert not incomplete(out)
    written = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert written <= {".json", ".safetensors", ".png", ".txt"}, written
    step, weights, state = final_state(out)
    ref_step, ref_weights, ref_state = final_state(tmp_path / "reference")
    assert step == ref_step == STEPS
    assert state["history"] == ref_state["history"]
    assert weights.keys() == ref_weights.keys()
    for name in weights:
        np.testing.assert_array_equal(weights[name], ref_weights[name], err_msg=name)
    moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in state["optimizer"]["state"].values()]
    ref_moments = [(s["exp_avg"], s["exp_avg_sq"]) for s in ref_state["optimizer"]["state"].values()]
    for (m, v), (rm, rv) in zip(moments, ref_moments):
        assert bytes(m.numpy()) == bytes(rm.numpy()) and bytes(v.numpy()) == bytes(rv.numpy())


def test_no_module_of_the_package_imports_pickle():
    """Checkpoints are safetensors and JSON, which load as data only; nothing in the package can unpickle a file.
    (The one exception carries batches from a DataLoader's own worker processes, as multiprocessing does.)"""
    root = pathlib.Path(oc.__file__).parent
    imports = re.compile(r"^\s*(import|from)\s+(pickle|_pickle|cPickle|shelve|marshal|dill|joblib)\b", re.MULTILINE)
    importers = [str(p.relative_to(root)) for p in root.rglob("*.py") if imports.search(p.read_text())]
    assert importers == [str(pathlib.Path("utils", "data", "_transport.py"))]


def test_a_pickled_checkpoint_of_an_earlier_version_is_not_read(tmp_path):
    from orchard.train import main
    (tmp_path / "trainer_state.pkl").write_bytes(b"\x80\x04 anything")
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(pathlib.Path(__file__).read_bytes())
    with pytest.raises(SystemExit, match="earlier Orchard, whose trainer state is a pickle"):
        main(["--out", str(tmp_path), "--data", str(corpus), "--seq-len", "16"])
