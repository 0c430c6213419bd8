"""GPT-2 trained under autocast tracks float32: same initial weights, same batches, losses within a few
percent; float16 with GradScaler too; and `python -m orchard.train --dtype float16` checkpoints and resumes
its loss scale."""
import numpy as np
import pytest

import orchard as oc
from orchard.models import GPT2, GPT2Config
from orchard.nn.utils import clip_grad_norm_
from orchard.optim import AdamW
from orchard.train import main
from orchard.training import checkpoint
from orchard.training.corpus import ByteBatches, stdlib_sources


def train(device, dtype, steps, layers, width, seq):
    """Per-step losses of a small byte-level GPT-2 trained from seed 0 in `dtype` mixed precision."""
    oc.manual_seed(0)
    model = GPT2(GPT2Config(vocab_size=256, n_positions=seq, n_embd=width, n_layer=layers, n_head=2,
                            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).to(device)
    optimizer = AdamW(model.parameters(), lr=3e-3)
    scaler = oc.amp.GradScaler(device, enabled=dtype == oc.float16)
    batches, rng, losses = ByteBatches(stdlib_sources(200_000), seq), np.random.default_rng(0), []
    for _ in range(steps):
        inputs, targets = batches.sample("train", 8, rng, device)
        with oc.autocast(device, dtype=dtype, enabled=dtype != oc.float32):
            _, loss = model(inputs, targets)
        assert loss.dtype == oc.float32
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        assert all(p.dtype == oc.float32 and p.grad.dtype == oc.float32 for p in model.parameters())
        scaler.unscale_(optimizer)
        clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    return np.array(losses)


# The emulated Metal device is slow: a smaller model for fewer steps, in its default float16.
@pytest.mark.parametrize("device,dtype,steps,layers,width,seq", [
    ("cpu", oc.bfloat16, 200, 2, 64, 32), ("cpu", oc.float16, 200, 2, 64, 32),
    pytest.param("metal", oc.float16, 40, 1, 16, 16, marks=pytest.mark.skipif(not oc.metal.is_available(),
                                                                            reason="no Metal device in this build")),
])
def test_mixed_precision_tracks_float32(device, dtype, steps, layers, width, seq):
    reference = train(device, oc.float32, steps, layers, width, seq)
    mixed = train(device, dtype, steps, layers, width, seq)
    window = steps // 10
    assert reference[-window:].mean() < 0.75 * reference[:window].mean()  # it learned
    np.testing.assert_allclose(mixed[-window:].mean(), reference[-window:].mean(), rtol=0.03)


def test_train_cli_float16_keeps_its_loss_scale_across_a_resume(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def f(x):\n    return x * 2\n" * 400)
    flags = ["--out", str(tmp_path / "run"), "--data", str(corpus), "--n-layer", "1", "--n-embd", "16",
             "--n-head", "2", "--seq-len", "16", "--batch-size", "2", "--eval-interval", "2", "--eval-batches", "1",
             "--sample-bytes", "4", "--dtype", "float16"]
    main(flags + ["--steps", "2"])
    state = checkpoint.load_trainer_state(checkpoint.latest(str(tmp_path / "run")))
    assert state["scaler"]["scale"] == 2.0 ** 16 and state["scaler"]["_growth_tracker"] == 2
    main(flags + ["--steps", "4"])
    state = checkpoint.load_trainer_state(checkpoint.latest(str(tmp_path / "run")))
    assert state["step"] == 4 and state["scaler"]["_growth_tracker"] == 4
