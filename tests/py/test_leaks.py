"""Leaks: thousands of training steps of a small model keep the process's resident memory flat and
the number of live storages constant, and once the model, its optimizer and its outputs are deleted
the profiler shows no storage left from them (orchard.profile.live_tensors())."""
import gc
import os
import resource
import sys

import numpy as np
import pytest

import orchard as oc
from orchard import nn, optim

# Under AddressSanitizer freed memory sits in a quarantine, and ThreadSanitizer's shadow memory and
# allocator grow on their own: the resident size means nothing; the live-storage checks still run
# (`bash .ci/run sanitize tsan`, which also runs fewer steps).
SANITIZED = any(runtime in os.environ.get("LD_PRELOAD", "") for runtime in ("asan", "tsan"))
# The emulated Metal device runs a step ~100x slower: fewer steps there, for its runtime's caches.
STEPS = {"cpu": 600 if SANITIZED else 3000, "metal": 12 if SANITIZED else 24, "cuda": 24}
WARMUP = {"cpu": 300, "metal": 6, "cuda": 6}


def rss_bytes():
    """The resident set size now (Linux), or its peak so far elsewhere (which a leak also raises)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def live_ids():
    return {sid for sid, _, _ in oc.profile.live_tensors()}


class TinyModel(nn.Module):
    """Embedding, layer norm, two linear layers with GELU and dropout, tied to a cross-entropy loss:
    every kind of op a training step of a transformer runs, at a size where a step is a millisecond."""

    def __init__(self, vocab=64, width=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.up = nn.Linear(width, 2 * width)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.1)
        self.down = nn.Linear(2 * width, vocab)

    def forward(self, ids):
        h = self.norm(self.emb(ids))
        return self.down(self.drop(self.act(self.up(h)))) + (h.softmax(-1).sum(-1, keepdim=True) * 0)


def train(model, opt, batches, steps, device, every=None):
    """Runs `steps` steps; returns [(step, rss, live storages)] sampled `every` steps."""
    samples = []
    for step in range(steps):
        ids, targets = batches[step % len(batches)]
        loss = oc.nn.functional.cross_entropy(model(ids).reshape(-1, 64), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if every and (step + 1) % every == 0:
            del loss
            gc.collect()
            oc.synchronize(device)
            samples.append((step + 1, rss_bytes(), len(oc.profile.live_tensors())))
    return samples


def test_training_keeps_memory_flat_and_frees_everything(device):
    gc.collect()
    oc.synchronize(device)
    before = live_ids()
    rng = np.random.default_rng(0)
    model = TinyModel().to(device)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    batches = [(oc.tensor(rng.integers(0, 64, size=(4, 8)), device=device),
                oc.tensor(rng.integers(0, 64, size=32), device=device)) for _ in range(16)]
    train(model, opt, batches, WARMUP[device], device)  # caches, pools and the optimizer state settle
    steps = STEPS[device]
    samples = train(model, opt, batches, steps, device, every=steps // 4 if device != "cpu" else steps // 6)
    (_, rss0, live0), rest = samples[0], samples[1:]
    for step, rss, live in rest:
        assert live == live0, f"step {step}: {live} live storages, {live0} after the first {samples[0][0]} steps"
        if not SANITIZED:
            # Leaking one small tensor a step would add ~0.4 MB per 3000 steps per 128 bytes; a leaked
            # graph, megabytes. Allow the allocators' own slack.
            assert rss - rss0 < 16 << 20, f"step {step}: resident memory grew by {(rss - rss0) >> 10} KiB"
    del model, opt, batches
    gc.collect()
    oc.synchronize(device)
    left = [s for s in oc.profile.live_tensors() if s[0] not in before]
    assert not left, f"{len(left)} storages outlive the model, e.g. {left[:5]}"


def test_autograd_graphs_are_freed_without_backward(device):
    """Graphs built and dropped without backward (evaluation with grad on, an exception mid-step)
    free their saved tensors."""
    gc.collect()
    before = live_ids()
    w = oc.randn(16, 16, device=device).requires_grad_()
    for i in range(50):
        x = oc.randn(8, 16, device=device)
        y = ((x @ w).relu().softmax(-1) * 3).sum()
        if i % 10 == 0:
            with pytest.raises(ValueError):
                (x @ w) + oc.ones(3, device=device)
        del x, y
    del w
    gc.collect()
    assert not live_ids() - before


def test_retained_graph_and_repeated_backward_free_everything(device):
    gc.collect()
    before = live_ids()
    w = oc.randn(8, 8, device=device).requires_grad_()
    loss = (oc.randn(4, 8, device=device) @ w).tanh().sum()
    for _ in range(5):
        loss.backward(retain_graph=True)
    loss.backward()
    grads = oc.autograd.grad((w * w).sum(), [w])
    del loss, grads, w
    gc.collect()
    assert not live_ids() - before
