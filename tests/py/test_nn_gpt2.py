"""orchard.nn, orchard.optim and orchard.models.GPT2, checked against torch and transformers."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import orchard as oc
from orchard import nn
from orchard.models import GPT2, GPT2Config
from orchard.nn import functional as F
from orchard.optim import SGD, AdamW
from orchard.optim.lr_scheduler import CosineWithWarmup
from orchard.training.corpus import ByteBatches, stdlib_sources

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=4,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def to_torch(t):
    return torch.from_numpy(t.detach().numpy().copy())


def assert_rel_close(actual, expected, rtol=1e-4, name=""):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    err = np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12)
    assert err <= rtol, f"{name}: relative error {err:.2e} > {rtol}"


# ---- nn.Module ---------------------------------------------------------------------------------

def small_mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.GELU(approximate="tanh"), nn.Dropout(0.5), nn.Linear(8, 2))


def test_module_registers_parameters_and_submodules():
    model = small_mlp()
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert all(p.requires_grad and p.is_leaf for p in model.parameters())
    assert [n for n, _ in model.named_modules()] == ["", "0", "1", "2", "3"]
    assert len(list(model.children())) == 4
    assert "(0): Linear(in_features=4, out_features=8, bias=True)" in repr(model)
    assert "(2): Dropout(p=0.5, inplace=False)" in repr(model)


def test_tied_parameter_is_listed_once():
    model = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])
    model[1].weight = model[0].weight
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_train_eval_and_dropout():
    model = small_mlp().eval()
    assert not any(m.training for m in model.modules())
    x = oc.randn(16, 4)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    model.train()
    kept = F.dropout(oc.ones(10_000), p=0.25, training=True).numpy()
    assert set(np.unique(kept)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((kept == 0).mean() - 0.25) < 0.03


def test_state_dict_round_trip_and_errors():
    a, b = small_mlp(), small_mlp()
    b.load_state_dict(a.state_dict())
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=name)
    state = a.state_dict()
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "3.bias"'):
        b.load_state_dict({k: v for k, v in state.items() if k != "3.bias"})
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "extra"'):
        b.load_state_dict({**state, "extra": oc.zeros(1)})
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight: copying a param with shape \(3, 3\) "
                                           r"from checkpoint, the shape in current model is \(8, 4\)"):
        b.load_state_dict({**state, "0.weight": oc.zeros(3, 3)})


def test_zero_grad_and_clip_grad_norm():
    model = small_mlp().eval()
    model(oc.randn(5, 4)).sum().backward()
    grads = [p.grad.numpy() for p in model.parameters()]
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    assert nn.utils.clip_grad_norm_(model.parameters(), norm / 2).item() == pytest.approx(norm, rel=1e-5)
    clipped = np.sqrt(sum((p.grad.numpy().astype(np.float64) ** 2).sum() for p in model.parameters()))
    assert clipped == pytest.approx(norm / 2, rel=1e-4)
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ---- nn.functional vs torch --------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_torch(reduction):
    logits = oc.randn(12, 7).requires_grad_()
    target = np.random.default_rng(0).integers(0, 7, 12)
    target[[2, 5]] = -100
    loss = F.cross_entropy(logits, oc.tensor(target), reduction=reduction)
    loss.backward()
    t_logits = to_torch(logits).requires_grad_()
    t_loss = torch.nn.functional.cross_entropy(t_logits, torch.tensor(target), reduction=reduction)
    t_loss.backward()
    assert_rel_close(loss.item(), t_loss.item(), 1e-5)
    assert_rel_close(logits.grad.numpy(), t_logits.grad.numpy(), 1e-5)


def test_layer_norm_gelu_linear_match_torch():
    x, w, b = oc.randn(3, 5, 8), oc.randn(8), oc.randn(8)
    lw, lb = oc.randn(6, 8), oc.randn(6)
    ours = [x, w, b, lw, lb]
    for t in ours:
        t.requires_grad_()
    theirs = [to_torch(t).requires_grad_() for t in ours]

    def compute(fns, x, w, b, lw, lb):
        y = fns.layer_norm(x, (8,), w, b, 1e-5)
        return fns.linear(fns.gelu(y, approximate="tanh") + fns.gelu(y), lw, lb).log_softmax(-1)

    out = compute(F, *ours)
    expected = compute(torch.nn.functional, *theirs)
    assert_rel_close(out.numpy(), expected.detach().numpy(), 1e-5)
    grad = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    out.backward(oc.tensor(grad))
    expected.backward(torch.tensor(grad))
    for i, (o, t) in enumerate(zip(ours, theirs)):
        assert_rel_close(o.grad.numpy(), t.grad.numpy(), 1e-4, name=f"input {i}")


# ---- optim vs torch.optim ------------------------------------------------------------------------

def run_optimizer(make_ours, make_theirs, steps=5):
    rng = np.random.default_rng(0)
    inits = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,)]]
    ours = [oc.tensor(a, requires_grad=True) for a in inits]
    theirs = [torch.tensor(a, requires_grad=True) for a in inits]
    opt, topt = make_ours(ours), make_theirs(theirs)
    for step in range(steps):
        grads = [rng.standard_normal(a.shape).astype(np.float32) for a in inits]
        for p, tp, g in zip(ours, theirs, grads):
            p.grad, tp.grad = oc.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs):
        assert_rel_close(p.numpy(), tp.detach().numpy(), 1e-5)
    return opt


def test_adamw_matches_torch():
    kw = dict(lr=0.05, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    run_optimizer(lambda ps: AdamW(ps, **kw), lambda ps: torch.optim.AdamW(ps, **kw))


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, momentum=0.9, weight_decay=0.01),
                                dict(lr=0.1, momentum=0.9, nesterov=True)])
def test_sgd_matches_torch(kw):
    run_optimizer(lambda ps: SGD(ps, **kw), lambda ps: torch.optim.SGD(ps, **kw))


def test_optimizer_state_dict_round_trip():
    opt = run_optimizer(lambda ps: AdamW(ps, lr=0.01), lambda ps: torch.optim.AdamW(ps, lr=0.01), steps=2)
    state = opt.state_dict()
    assert state["param_groups"][0]["params"] == [0, 1] and state["state"][0]["step"] == 2
    params = [oc.zeros(4, 3).requires_grad_(), oc.zeros(3).requires_grad_()]
    fresh = AdamW(params, lr=0.5)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.01
    np.testing.assert_array_equal(fresh.state[params[0]]["exp_avg"].numpy(), state["state"][0]["exp_avg"].numpy())
    opt.zero_grad()
    assert all(p.grad is None for p in opt._params())


def test_cosine_schedule_with_warmup():
    opt = SGD([oc.zeros(1).requires_grad_()], lr=1.0)
    sched = CosineWithWarmup(opt, warmup_steps=4, total_steps=12, min_lr_ratio=0.1)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(14):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert lrs[8] == pytest.approx(0.1 + 0.9 * 0.5)
    assert lrs[12:] == pytest.approx([0.1, 0.1, 0.1])


# ---- GPT-2 vs transformers -----------------------------------------------------------------------

def hf_from_orchard(model, tmp_path):
    model.save_pretrained(tmp_path / "orchard")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "orchard", attn_implementation="eager")
    return hf.float().train()  # train() only turns dropout on, and every dropout here is 0


@pytest.mark.parametrize("use_flash", [True, False])
def test_gpt2_matches_transformers_logits_loss_grads(tmp_path, use_flash):
    oc.manual_seed(0)
    model = GPT2(GPT2Config(**TINY, use_flash=use_flash))
    hf = hf_from_orchard(model, tmp_path)
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, 101, (2, 24)), rng.integers(0, 101, (2, 24))
    logits, loss = model(oc.tensor(idx), oc.tensor(targets))
    loss.backward()
    t_logits = hf(torch.tensor(idx)).logits
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, 101), torch.tensor(targets).reshape(-1))
    t_loss.backward()
    assert_rel_close(logits.numpy(), t_logits.detach().numpy(), name="logits")
    assert_rel_close(loss.item(), t_loss.item(), name="loss")
    hf_params = dict(hf.named_parameters())
    names = [n for n, _ in model.named_parameters()]
    assert names == list(hf_params), "parameter names and order differ from transformers"
    for name, p in model.named_parameters():
        assert tuple(p.shape) == tuple(hf_params[name].shape), name
        assert_rel_close(p.grad.numpy(), hf_params[name].grad.numpy(), name=name)


def test_gpt2_adamw_steps_match_torch(tmp_path):
    oc.manual_seed(1)
    model = GPT2(GPT2Config(**TINY))
    hf = hf_from_orchard(model, tmp_path)
    opt = AdamW(model.parameters(), lr=1e-3)
    topt = torch.optim.AdamW(hf.parameters(), lr=1e-3)
    rng = np.random.default_rng(1)
    for _ in range(3):
        idx, targets = rng.integers(0, 101, (2, 16)), rng.integers(0, 101, (2, 16))
        opt.zero_grad()
        model(oc.tensor(idx), oc.tensor(targets))[1].backward()
        opt.step()
        topt.zero_grad()
        logits = hf(torch.tensor(idx)).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, 101), torch.tensor(targets).reshape(-1)).backward()
        topt.step()
    # Adam divides by sqrt(v), so where a gradient is near zero float32 rounding moves the step by a
    # visible fraction of lr: compare the parameters to within 5% of one step.
    hf_params = dict(hf.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.numpy(), hf_params[name].detach().numpy(), rtol=0, atol=5e-5, err_msg=name)


def test_transformers_checkpoint_loads_into_orchard(tmp_path):
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY))
    hf.save_pretrained(tmp_path / "hf")
    model = GPT2.from_pretrained(tmp_path / "hf")
    assert model.config.n_embd == 32 and model.config.n_layer == 2
    for name, p in hf.named_parameters():
        np.testing.assert_array_equal(dict(model.named_parameters())[name].numpy(), p.detach().numpy(), name)


def test_from_pretrained_names_missing_and_mismatched_tensors(tmp_path):
    from safetensors.numpy import load_file, save_file
    GPT2(GPT2Config(**TINY)).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["transformer.h.1.mlp.c_fc.bias"]
    weights["transformer.ln_f.weight"] = np.zeros(5, np.float32)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(RuntimeError, match=r'(?s)Missing key\(s\) in state_dict: "transformer\.h\.1\.mlp\.c_fc\.bias".*'
                                           r"size mismatch for transformer\.ln_f\.weight"):
        GPT2.from_pretrained(tmp_path)


# ---- training ----------------------------------------------------------------------------------

def test_loss_falls_on_stdlib_corpus():
    oc.manual_seed(0)
    batches = ByteBatches(stdlib_sources(200_000), seq_len=32)
    model = GPT2(GPT2Config(**{**TINY, "vocab_size": 256}))
    opt = AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(30):
        _, loss = model(*batches.sample("train", 8, rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0, losses


def test_train_script_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "run"
    package_root = os.path.dirname(os.path.dirname(oc.__file__))
    env = {**os.environ, "PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "orchard.train", "--out", str(out), "--n-layer", "1", "--n-embd", "32",
           "--n-head", "2", "--seq-len", "32", "--batch-size", "2", "--corpus-bytes", "100000",
           "--eval-interval", "2", "--eval-batches", "1", "--sample-bytes", "20"]
    first = subprocess.run(cmd + ["--steps", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert (out / "sample.txt").exists()
    for name in ("config.json", "model.safetensors", "trainer_state.safetensors"):
        assert (out / "checkpoint-00000003" / name).exists(), name
    assert (out / "loss.png").exists() or "matplotlib is not installed" in first.stdout
    assert "sample:" in first.stdout
    second = subprocess.run(cmd + ["--steps", "4", "--no-flash"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    assert "resuming at step 3" in second.stdout


@pytest.mark.skipif(not oc.metal.is_available(), reason="this build has no Metal device (GPU or emulator)")
def test_gpt2_trains_on_metal_like_on_cpu():
    """A few AdamW steps of a tiny GPT-2 (dropout off) on the Metal device give the CPU run's losses,
    and the parameters stay on the device."""
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=1, n_head=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    tokens = np.random.default_rng(0).integers(0, 64, (2, 17))
    losses = {}
    for device in ("cpu", "metal"):
        oc.manual_seed(0)
        model = GPT2(config).to(device)
        optimizer = AdamW(model.parameters(), lr=1e-2)
        idx, targets = oc.tensor(tokens[:, :-1], device=device), oc.tensor(tokens[:, 1:], device=device)
        losses[device] = []
        for _ in range(3):
            _, loss = model(idx, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses[device].append(loss.item())
        assert all(p.device == device for p in model.parameters())
    assert losses["cpu"][-1] < losses["cpu"][0]
    np.testing.assert_allclose(losses["metal"], losses["cpu"], rtol=1e-5)
