"""orchard.experimental.torch: flash_attn_fwd / flash_attention against float64 references (the
FlashAttention papers' rule: at most twice the error of PyTorch's own SDPA in the same precision), dropout
(keep rate, the returned mask, the backward regenerating it), the "orchard" transformers attention in a
small GPT-2 against "eager", USE_FLASH_ATTN=2, the debug log, bad devices and dtypes, and the route of
`mps` tensors to Orchard's Metal runtime (on Linux with CPU tensors standing in for MPS ones)."""
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
import torch.nn.functional as F
from transformers import AttentionInterface, GPT2Config, GPT2LMHeadModel

import orchard as oc
import orchard.experimental.torch as ot


def _reference(q, k, v, causal, keep, dropout_p):
    """Attention written out in the inputs' dtype, with a given dropout keep-mask."""
    s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
    if causal:
        s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), -torch.inf)
    return (torch.softmax(s, dim=-1) * keep / (1 - dropout_p)) @ v


def _forward_and_grads(fn, inputs, grad_out):
    inputs = [x.detach().requires_grad_() for x in inputs]
    out = fn(*inputs)
    return [out.detach()] + list(torch.autograd.grad(out, inputs, grad_out.to(out.dtype)))


def _assert_within_twice_torch(got, torch_same_precision, exact, names=("out", "dq", "dk", "dv"), floor=1e-6):
    for name, g, t, e in zip(names, got, torch_same_precision, exact):
        assert g.dtype == t.dtype and g.shape == e.shape, name
        err = (g.double() - e).abs().max().item()
        base = (t.double() - e).abs().max().item()
        limit = 2 * base + floor * max(1.0, e.abs().max().item())
        assert err <= limit, f"{name}: error {err:.3g} against float64, PyTorch's {base:.3g}"


def _check_against_torch(fn, torch_fn, shapes, dtype=torch.float32, floor=1e-6):
    gen = torch.Generator().manual_seed(0)
    inputs = [torch.randn(s, generator=gen) for s in shapes]
    grad_out = torch.randn(shapes[0][:-1] + (shapes[2][-1],), generator=gen)
    exact = _forward_and_grads(torch_fn, [x.double() for x in inputs], grad_out.double())
    same = _forward_and_grads(torch_fn, [x.to(dtype) for x in inputs], grad_out)
    got = _forward_and_grads(fn, [x.to(dtype) for x in inputs], grad_out)
    _assert_within_twice_torch(got, same, exact, floor=floor)


SHAPES = [  # q, k, v
    [(2, 37, 16)] * 3,  # [batch, seq, dim]: one head, as the seeds called it
    [(2, 3, 50, 40)] * 3,
    [(1, 2, 33, 8), (1, 2, 70, 8), (1, 2, 70, 8)],  # Lq != Lk
    [(2, 4, 20, 24), (2, 2, 20, 24), (2, 2, 20, 24)],  # grouped-query: fewer k/v heads
    [(2, 2, 3, 19, 8)] * 3,  # more leading dims
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shapes", SHAPES, ids=lambda s: "-".join("x".join(map(str, t)) for t in s[:2]))
def test_flash_attention_matches_sdpa(shapes, causal):
    gqa = len(shapes[0]) >= 4 and shapes[0][-3] != shapes[1][-3]
    def torch_fn(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    _check_against_torch(lambda q, k, v: ot.flash_attention(q, k, v, causal=causal), torch_fn, shapes)
    _check_against_torch(lambda q, k, v: ot.flash_attn_fwd(q, k, v, 0.3, 0.0, causal)[0],
                         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=0.3,
                                                                        enable_gqa=gqa), shapes)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_passes_through(dtype):
    shapes = [(2, 2, 45, 32)] * 3
    _check_against_torch(lambda q, k, v: ot.flash_attention(q, k, v, causal=True),
                         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), shapes, dtype,
                         floor=1e-3)


def test_flash_attn_fwd_without_dropout_returns_an_empty_mask():
    q = torch.randn(2, 9, 8)
    out, mask = ot.flash_attn_fwd(q, q, q, 1.0, 0.0, False)
    assert out.shape == q.shape and mask.numel() == 0


@pytest.mark.parametrize("shape", [(2, 128, 16), (2, 4, 96, 16)])
def test_dropout_keep_rate_mask_and_gradients(shape):
    p = 0.2
    torch.manual_seed(1)
    q, k, v = (torch.randn(shape) for _ in range(3))
    grad_out = torch.randn(shape)
    inputs = [x.requires_grad_() for x in (q, k, v)]
    out, keep = ot.flash_attn_fwd(*inputs, None, p, True)
    assert keep.dtype == torch.bool and keep.shape == shape[:-1] + (shape[-2],)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.01
    got = [out.detach()] + list(torch.autograd.grad(out, inputs, grad_out))
    # The backward must regenerate exactly this mask: gradients match the reference that uses it.
    ref = lambda q, k, v: _reference(q, k, v, True, keep, p)  # noqa: E731
    exact = _forward_and_grads(ref, [x.double() for x in (q, k, v)], grad_out.double())
    same = _forward_and_grads(ref, [q, k, v], grad_out)
    _assert_within_twice_torch(got, same, exact)


def test_dropout_follows_torch_manual_seed():
    q = torch.randn(2, 2, 40, 8)
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(ot.flash_attn_fwd(q, q, q, None, 0.5, False))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][1], runs[2][1])


def test_masked_attention_with_dropout_backward_uses_the_forward_mask():
    # The transformers path with a padding mask; a directional derivative checks that the backward's
    # recomputation drew the forward's dropout mask (another mask gives an O(1) mismatch).
    attention = AttentionInterface()["orchard"]
    module = types.SimpleNamespace(is_causal=True)
    gen = torch.Generator().manual_seed(2)
    q, k, v, direction = (torch.randn(2, 2, 24, 8, generator=gen) for _ in range(4))
    weight = torch.randn(2, 24, 2, 8, generator=gen)
    padding = torch.ones(2, 1, 24, 24, dtype=torch.bool)
    padding[0, ..., :5] = False

    def f(q):
        torch.manual_seed(11)
        return (attention(module, q, k, v, padding, dropout=0.3)[0] * weight).sum()

    x = q.clone().requires_grad_()
    (grad,) = torch.autograd.grad(f(x), x)
    eps = 1e-2
    with torch.no_grad():
        numeric = (f(q + eps * direction) - f(q - eps * direction)) / (2 * eps)
    analytic = (grad * direction).sum()
    assert abs(analytic - numeric) <= 1e-2 * abs(analytic), (analytic.item(), numeric.item())


def test_transformers_attention_keeps_self_attention_causal(monkeypatch):
    attention = AttentionInterface()["orchard"]
    self_attention, cross_attention = types.SimpleNamespace(is_causal=True), types.SimpleNamespace(is_causal=False)
    gen = torch.Generator().manual_seed(5)
    q, k, v = torch.randn(1, 2, 6, 8, generator=gen), torch.randn(1, 2, 9, 8, generator=gen), torch.randn(1, 2, 9, 8)
    padding = torch.ones(1, 1, 1, 9, dtype=torch.bool)  # padding only, as transformers before 4.53 passes it
    padding[..., 0] = False
    cases = [  # module, q, mask given, mask expected
        (self_attention, q, padding, padding & torch.ones(6, 9, dtype=torch.bool).tril(3)),  # queries end the cache
        (self_attention, k, padding, padding & torch.ones(9, 9, dtype=torch.bool).tril()),
        (self_attention, q[..., -1:, :], None, None),  # one new token sees every key
        (cross_attention, q, padding, padding),
    ]
    for module, query, mask, expected_mask in cases:
        got = attention(module, query, k, v, mask)[0].transpose(1, 2)
        expected = F.scaled_dot_product_attention(query, k, v, attn_mask=expected_mask)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # transformers 4.50-4.52 pass is_causal=False whenever they pass a (padding-only) mask.
    monkeypatch.setattr(ot, "_masks_hold_causality", lambda: False)
    got = attention(self_attention, q, k, v, padding, is_causal=False)[0].transpose(1, 2)
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=cases[0][3]), rtol=1e-5,
                               atol=1e-6)


# ---- transformers ---------------------------------------------------------------------------------

def _gpt2(impl, dropout=0.0):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=101, n_positions=64, attn_pdrop=dropout,
                        resid_pdrop=dropout, embd_pdrop=dropout, bos_token_id=0, eos_token_id=0,
                        attn_implementation=impl)
    return GPT2LMHeadModel(config)


@pytest.mark.parametrize("padding", [None, "left", "right"])
def test_gpt2_orchard_matches_eager(padding, tmp_path, monkeypatch):
    log = tmp_path / "flash.log"
    monkeypatch.setenv("ORCHARD_DEBUG_FLASH_ATN", "1")
    monkeypatch.setenv("ORCHARD_DEBUG_FLASH_ATN_LOG", str(log))
    ids = torch.randint(0, 101, (2, 23), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    if padding == "left":
        mask[0, :6] = 0
    elif padding == "right":
        mask[1, -7:] = 0
    # Logits at padding positions are arbitrary: score only tokens whose position and predecessor are real.
    labels = ids.masked_fill((mask == 0) | (mask.roll(1, dims=1) == 0), -100)
    results = []
    for impl in ("eager", "orchard"):
        model = _gpt2(impl)
        out = model(ids, attention_mask=None if padding is None else mask, labels=labels)
        out.loss.backward()
        results.append((out.logits.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (logits, grads), (orchard_logits, orchard_grads) = results
    real = mask.bool()
    torch.testing.assert_close(orchard_logits[real], logits[real], rtol=1e-4, atol=1e-5)
    for name, g in grads.items():
        err = (orchard_grads[name] - g).abs().max().item()
        assert err <= 1e-4 * g.abs().max().item() + 1e-9, f"{name}: gradient off by {err:.3g}"
    lines = log.read_text().splitlines()
    assert sum(line.startswith("FWD call=") for line in lines) == 2  # every layer, once
    assert sum(line.startswith("BWD call=") for line in lines) == 2


def test_gpt2_trains_with_dropout():
    model = _gpt2("orchard", dropout=0.1)
    model.train()
    ids = torch.randint(0, 101, (4, 32), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, -9:] = 0  # a padded row: the masked path, whose dropout the backward must reproduce
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = model(ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.5, losses


def test_use_flash_attn_env_switches_gpt2_at_import(tmp_path):
    script = textwrap.dedent("""
        import torch
        import orchard.experimental.torch  # noqa: F401  (reads USE_FLASH_ATTN=2)
        from transformers import GPT2Config, GPT2LMHeadModel
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=101, n_positions=64,
                                           bos_token_id=0, eos_token_id=0)).eval()
        ids = torch.randint(0, 101, (2, 11))
        model(ids).logits.sum().backward()
        print("OK", model.config._attn_implementation)
    """)
    log = tmp_path / "flash.log"
    env = dict(os.environ, USE_FLASH_ATTN="2", ORCHARD_DEBUG_FLASH_ATN="1", ORCHARD_DEBUG_FLASH_ATN_LOG=str(log))
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OK" in run.stdout
    lines = log.read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["FWD", "call=1"], ["FWD", "call=2"], ["BWD", "call=1"], ["BWD", "call=2"]]
    assert all("q=[2, 2, 11, 16]" in line and "device=cpu" in line for line in lines)


def test_debug_log_lines(tmp_path, monkeypatch):
    log = tmp_path / "flash.log"
    monkeypatch.setenv("ORCHARD_DEBUG_FLASH_ATN", "1")
    monkeypatch.setenv("ORCHARD_DEBUG_FLASH_ATN_LOG", str(log))
    q = torch.randn(2, 5, 8, requires_grad=True)
    ot.flash_attn_fwd(q, q, q, 1.0, 0.0, False)[0].sum().backward()
    fwd, bwd = log.read_text().splitlines()
    assert fwd.startswith("FWD call=") and bwd.startswith("BWD call=")
    for line in (fwd, bwd):
        assert "q=[2, 5, 8]" in line and "dtype=float32" in line and "device=cpu" in line
    monkeypatch.delenv("ORCHARD_DEBUG_FLASH_ATN")
    ot.flash_attention(q, q, q)
    assert len(log.read_text().splitlines()) == 2


def test_bad_devices_and_dtypes_raise():
    q = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="meta"):
        ot.flash_attention(q.to("meta"), q.to("meta"), q.to("meta"))
    with pytest.raises(ValueError, match="meta"):
        ot.flash_attn_fwd(q, q.to("meta"), q, 1.0, 0.0, False)
    for dtype in (torch.float64, torch.int32):
        with pytest.raises(TypeError, match=str(dtype).removeprefix("torch.")):
            ot.flash_attention(q.to(dtype), q.to(dtype), q.to(dtype))
    with pytest.raises(ValueError, match="leading dims"):
        ot.flash_attention(q, torch.randn(3, 5, 8), q)
    with pytest.raises(ValueError, match="dropout"):
        ot.flash_attn_fwd(q, q, q, 1.0, 1.0, False)


# ---- the mps route: torch tensors on 'mps' run on Orchard's Metal runtime ----------------------------

def _route_cpu_tensors_to_metal(monkeypatch):
    """Makes the bridge treat CPU tensors as MPS ones (Linux has no MPS); returns the Orchard tensors it
    builds from them, to check they are Metal tensors."""
    from orchard.experimental import _mps
    built = []
    to_orchard = _mps.to_orchard
    monkeypatch.setattr(ot, "_on_metal", lambda t: True)
    monkeypatch.setattr(_mps, "to_orchard", lambda t: built.append(to_orchard(t)) or built[-1])
    return built


def test_mps_route_raises_without_orchard_metal(monkeypatch):
    _route_cpu_tensors_to_metal(monkeypatch)
    monkeypatch.setattr(oc.metal, "is_available", lambda: False)
    q = torch.randn(1, 5, 8)
    with pytest.raises(RuntimeError, match="Metal runtime"):
        ot.flash_attention(q, q, q)


@pytest.mark.skipif(not oc.metal.is_available(), reason="needs Orchard's Metal device (GPU or emulator)")
def test_mps_route_runs_attention_and_its_dropout_on_orchard_metal(monkeypatch):
    torch.manual_seed(0)
    q, k, v, grad_out = (torch.randn(1, 2, 9, 8) for _ in range(4))

    def run():
        torch.manual_seed(3)
        inputs = [x.clone().requires_grad_() for x in (q, k, v)]
        out, keep = ot.flash_attn_fwd(*inputs, None, 0.3, True)
        return [out, keep] + list(torch.autograd.grad(out, inputs, grad_out))

    on_cpu = run()
    built = _route_cpu_tensors_to_metal(monkeypatch)
    on_metal = run()
    assert built and all(t.device == "metal" for t in built)
    assert torch.equal(on_metal[1], on_cpu[1])  # one dropout mask: the same Philox stream on both
    for got, want in zip(on_metal, on_cpu):
        assert got.device == want.device and got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


GPU_ROUTES = {  # torch's device: whether this machine has it and Orchard's device for it
    "mps": lambda: torch.backends.mps.is_available(),
    "cuda": lambda: torch.cuda.is_available() and oc.cuda.is_available(),
}


@pytest.mark.parametrize("device", GPU_ROUTES)
def test_gpu_tensors_run_on_orchard(device):
    if not GPU_ROUTES[device]():
        pytest.skip(f"needs torch's {device} device and Orchard's (an Apple GPU; an NVIDIA GPU, which "
                    "tools/run_cuda_tests.sh runs this on)")
    torch.manual_seed(0)
    q, k, v, grad_out = (torch.randn(2, 4, 33, 16, device=device) for _ in range(4))
    inputs = [x.clone().requires_grad_() for x in (q, k, v)]
    out = ot.flash_attention(*inputs, causal=True)
    grads = torch.autograd.grad(out, inputs, grad_out)
    ref_inputs = [x.cpu().double().requires_grad_() for x in (q, k, v)]
    ref = F.scaled_dot_product_attention(*ref_inputs, is_causal=True)
    ref_grads = torch.autograd.grad(ref, ref_inputs, grad_out.cpu().double())
    for got, want in zip([out, *grads], [ref, *ref_grads]):
        assert got.device.type == device and got.dtype == torch.float32
        torch.testing.assert_close(got.cpu().double(), want.detach(), rtol=1e-4, atol=1e-4)