"""Issue 16's acceptance test: well-known PyTorch programs (nanoGPT, minGPT's chargpt; vendored under
third_party/) train, checkpoint, resume and sample on Orchard after the word `torch` is replaced by
`orchard` in their sources, with nothing else changed."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import orchard as oc
from conftest import DEVICES
from orchard.training.corpus import stdlib_sources

THIRD_PARTY = pathlib.Path(__file__).resolve().parents[2] / "third_party"
ORCHARD_PATH = str(pathlib.Path(oc.__file__).resolve().parents[1])


def port(program, dest):
    """A copy of third_party/<program> with `torch` replaced by `orchard` in every Python source."""
    shutil.copytree(THIRD_PARTY / program, dest)
    for path in dest.rglob("*.py"):
        path.write_text(path.read_text().replace("torch", "orchard"))
    return dest


def write_corpus(path, size=200_000):
    path.write_text(stdlib_sources(size).tobytes().decode("utf-8", errors="replace"))


def run(args, cwd, pythonpath=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ORCHARD_PATH, str(pythonpath or cwd)]))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def losses(log):
    return [float(x) for x in re.findall(r"val loss (\d+\.\d+)", log)]


# Small enough for the emulated Metal device, which plays each GPU thread on an OS thread (seconds per step).
NANOGPT_SMALL = ["--compile=False", "--dtype=float32", "--dataset=shakespeare_char", "--n_layer=2", "--n_head=2",
                 "--n_embd=32", "--block_size=32", "--batch_size=4", "--gradient_accumulation_steps=1",
                 "--dropout=0.1", "--eval_interval=10", "--eval_iters=2", "--log_interval=10",
                 "--learning_rate=1e-2", "--warmup_iters=2", "--lr_decay_iters=30", "--min_lr=1e-3"]


@pytest.mark.parametrize("device", DEVICES)
def test_nanogpt_trains_resumes_and_samples(device, tmp_path):
    repo = port("nanogpt", tmp_path / "nanogpt")
    data = repo / "data" / "shakespeare_char"
    write_corpus(data / "input.txt")
    run(["prepare.py"], cwd=data)

    out = f"--out_dir={tmp_path / 'out'}"
    first = run(["train.py", f"--device={device}", out, "--max_iters=20", *NANOGPT_SMALL], cwd=repo)
    first_losses = losses(first)
    assert len(first_losses) == 3 and first_losses[-1] < first_losses[0] - 0.3, first
    assert (tmp_path / "out" / "ckpt.pt").exists()

    resumed = run(["train.py", f"--device={device}", out, "--init_from=resume", "--max_iters=30",
                   *NANOGPT_SMALL], cwd=repo)
    assert "step 20:" in resumed and "step 0:" not in resumed, resumed
    assert losses(resumed)[-1] < first_losses[0] - 0.3, resumed

    sample_args = ["sample.py", f"--device={device}", out, "--compile=False", "--dtype=float32",
                   "--num_samples=2", "--max_new_tokens=20", "--start=def ", "--seed=7"]
    samples = run(sample_args, cwd=repo)
    assert samples.count("---------------") == 2, samples
    assert samples == run(sample_args, cwd=repo), "sampling with the same seed must repeat"


@pytest.mark.parametrize("device", DEVICES)
def test_mingpt_chargpt_trains_samples_and_checkpoints(device, tmp_path):
    repo = port("mingpt", tmp_path / "mingpt")
    project = repo / "projects" / "chargpt"
    write_corpus(project / "input.txt", 100_000)
    log = run(["chargpt.py", "--system.work_dir=out", f"--trainer.device={device}", "--trainer.max_iters=21",
               "--trainer.num_workers=2", "--trainer.batch_size=4", "--model.model_type=gpt-nano",
               "--data.block_size=32"], cwd=project, pythonpath=repo)
    assert "saving model" in log and " iter 20:" in log, log[-5000:]
    iter_losses = [float(x) for x in re.findall(r"train loss (\d+\.\d+)", log)]
    assert iter_losses[-1] < iter_losses[0] - 0.2, log[-5000:]
    state = oc.load(project / "out" / "model.pt")
    assert "transformer.wte.weight" in state and "lm_head.weight" in state
