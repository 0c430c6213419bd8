"""Several Python threads running ops and backward at once, each on its own tensors, on every
device: every thread's results and gradients equal the ones the same work gives on one thread, grad
mode stays per thread, and the profiler's alloc/free counts are equal afterwards."""
import gc
import threading

import numpy as np
import pytest

import orchard as oc
import orchard.nn.functional as F

THREADS = 6


def steps_for(device):
    return 4 if device == "cpu" else 2  # the emulated Metal device is slow

def run_threads(fn, n=THREADS):
    """Runs fn(i) on n threads started together; returns the results, re-raising the first error."""
    results, errors = [None] * n, []
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def workload(seed, device, steps=4):
    """A small training-like computation: embedding, layer norm, attention, matmul, cross-entropy,
    reductions and views, with backward; returns its loss values and gradients as NumPy arrays."""
    rng = np.random.default_rng(seed)
    V, D, T = 17, 8, 6
    emb = oc.tensor(rng.standard_normal((V, D)).astype(np.float32), device=device, requires_grad=True)
    w = oc.tensor(rng.standard_normal((D, V)).astype(np.float32) / 3, device=device, requires_grad=True)
    ln_w = oc.tensor(1 + rng.standard_normal(D).astype(np.float32) / 10, device=device, requires_grad=True)
    ln_b = oc.tensor(rng.standard_normal(D).astype(np.float32) / 10, device=device, requires_grad=True)
    losses = []
    for step in range(steps):
        ids = oc.tensor(rng.integers(0, V, size=(2, T)), device=device)
        x = F.embedding(ids, emb)                                   # [2, T, D]
        h = F.layer_norm(x, (D,), ln_w, ln_b)
        q = h.reshape(2, T, 2, D // 2).transpose(1, 2)              # [2, 2, T, D/2]
        a = F.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2).reshape(2, T, D)
        logits = (h + a).reshape(-1, D) @ w
        loss = F.cross_entropy(logits, ids.reshape(-1)) + (logits.softmax(-1).amax(-1).mean() * 0.1)
        loss = loss + F.gelu(h).var() * 0.01 + oc.where(h > 0, h, h * 0.1).sum() * 1e-3
        loss.backward()
        losses.append(loss.item())
    return [np.array(losses)] + [p.grad.cpu().numpy().copy() for p in (emb, w, ln_w, ln_b)]


def test_threads_running_ops_and_backward_agree_with_one_thread(device):
    serial = [workload(seed, device, steps_for(device)) for seed in range(THREADS)]
    parallel = run_threads(lambda i: workload(i, device, steps_for(device)))
    for seed, (want, got) in enumerate(zip(serial, parallel)):
        for name, w, g in zip(["losses", "d_emb", "d_w", "d_ln_w", "d_ln_b"], want, got):
            # Kernels split work differently when the pool is busy: summation order may differ.
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, err_msg=f"thread {seed}: {name}")


def test_grad_mode_is_per_thread(device):
    """no_grad in one thread does not switch recording off in another."""
    inside, resume = threading.Event(), threading.Event()

    def quiet(_):
        with oc.no_grad():
            inside.set()
            resume.wait(timeout=60)
            y = oc.ones(3, device=device).requires_grad_() * 2
            return y.requires_grad, oc.is_grad_enabled()

    def loud(_):
        inside.wait(timeout=60)
        y = oc.ones(3, device=device).requires_grad_() * 2
        resume.set()
        return y.requires_grad, oc.is_grad_enabled()

    results, errors = [None, None], []

    def body(i, fn):
        try:
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=body, args=(0, quiet)), threading.Thread(target=body, args=(1, loud))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert results[0] == (False, False) and results[1] == (True, True)
    assert oc.is_grad_enabled()


def test_profile_counts_stay_equal_under_threads(device, tmp_path, monkeypatch):
    gc.collect()
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "1")
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE_LOG", str(tmp_path / "profile.log"))
    oc.profile.reset()
    before = {sid for sid, _, _ in oc.profile.live_tensors()}
    run_threads(lambda i: workload(100 + i, device, steps_for(device)))
    gc.collect()
    allocs, frees = oc.profile.counts()
    assert allocs > THREADS * 50, "the workload allocates"
    assert allocs == frees, f"{allocs} allocations but {frees} frees"
    leaked = [s for s in oc.profile.live_tensors() if s[0] not in before]
    assert not leaked, f"storages still alive: {leaked[:5]}"


def test_concurrent_errors_leave_every_thread_working(device):
    """Threads hitting errors (bad shapes, bad indices, in-place on an expanded view) while others
    compute: every error is the promised exception and every result is right."""
    def fn(i):
        rng = np.random.default_rng(i)
        for _ in range(30):
            a_np = rng.standard_normal((5, 7)).astype(np.float32)
            a = oc.tensor(a_np, device=device)
            np.testing.assert_allclose((a @ a.T).cpu().numpy(), a_np @ a_np.T, rtol=1e-5, atol=1e-5)
            for bad, exc in [(lambda: a + oc.ones(3, device=device), ValueError), (lambda: a[9], IndexError),
                             (lambda: oc.ones(1, device=device).expand(4).add_(1), ValueError),
                             (lambda: a.sum(5), IndexError)]:
                with pytest.raises(exc):
                    bad()
        return True

    assert all(run_threads(fn))
