"""GPT2.generate and the key/value cache, checked against a cache-free loop and transformers' GPT2LMHeadModel."""
import numpy as np
import pytest
import torch

import orchard as oc
from orchard.models import GPT2, GPT2Config, KVCache
from orchard.models.sampling import sampling_probs

transformers = pytest.importorskip("transformers")

TINY = dict(vocab_size=101, n_positions=32, n_embd=32, n_layer=2, n_head=4,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
PAD = 0


def tiny_model(device="cpu", seed=0, **overrides):
    oc.manual_seed(seed)
    return GPT2(GPT2Config(**{**TINY, **overrides})).to(device)


def hf_copy(model, tmp_path):
    model.save_pretrained(tmp_path / "orchard")
    return transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "orchard").float().eval()


def left_padded(prompts):
    """input_ids and attention_mask [B, longest] with PAD on the left, as a tokenizer with padding_side="left"."""
    width = max(map(len, prompts))
    ids = np.array([[PAD] * (width - len(p)) + p for p in prompts])
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def greedy_without_cache(model, ids, n):
    """The most likely continuation by a full forward pass over the last n_positions tokens for every new token."""
    for _ in range(n):
        logits, _ = model(oc.tensor(ids[:, -model.config.n_positions:], device=model.device))
        ids = np.concatenate([ids, logits.cpu().numpy()[:, -1].argmax(-1)[:, None]], axis=1)
    return ids


# ---- loading -----------------------------------------------------------------------------------

def test_from_pretrained_is_in_eval_mode_and_gives_transformers_logits(tmp_path):
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**TINY, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
                                                                   "attn_pdrop": 0.1}))
    hf.save_pretrained(tmp_path / "hf")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    model = GPT2.from_pretrained(tmp_path / "hf")
    assert not hf.training and not any(m.training for m in model.modules())
    ids = np.random.default_rng(0).integers(0, 101, (2, 20))
    with torch.no_grad():
        expected = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(model(oc.tensor(ids))[0].numpy(), expected, rtol=1e-4, atol=1e-5)
    assert model.train().training  # and training mode is one call away, as in PyTorch


def test_from_pretrained_reads_the_stop_and_padding_tokens(tmp_path):
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**TINY, eos_token_id=7, pad_token_id=3)).save_pretrained(
        tmp_path)
    config = GPT2.from_pretrained(tmp_path).config
    assert (config.eos_token_id, config.pad_token_id) == (7, 3)


# ---- the cache ---------------------------------------------------------------------------------

@pytest.mark.parametrize("use_flash", [True, False])
def test_cached_chunks_give_the_logits_of_one_pass(device, use_flash):
    """A prompt fed in chunks through the cache: each chunk's queries sit after the cached keys, so the causal
    mask must be aligned bottom-right (PyTorch's is_causal aligns it top-left)."""
    model = tiny_model(device, use_flash=use_flash)
    ids = oc.tensor(np.random.default_rng(1).integers(0, 101, (2, 12)), device=device)
    full = model(ids)[0].cpu().numpy()
    cache = KVCache.for_model(model, 2, 12)
    with oc.no_grad():
        chunks = [model(ids.narrow(1, start, n), past_key_values=cache)[0].cpu().numpy()
                  for start, n in ((0, 5), (5, 1), (6, 6))]
    assert cache.length == 12
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("use_flash", [True, False])
def test_padding_does_not_change_the_real_tokens_logits(device, use_flash):
    model = tiny_model(device, use_flash=use_flash)
    prompt = [5, 9, 2, 44, 17]
    ids, mask = left_padded([prompt, [1] * 8])
    cache = KVCache.for_model(model, 2, 8)
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with oc.no_grad():
        padded = model(oc.tensor(ids, device=device), past_key_values=cache,
                       attention_mask=oc.tensor(mask, device=device),
                       position_ids=oc.tensor(positions, device=device))[0].cpu().numpy()
    alone = model(oc.tensor([prompt], device=device))[0].cpu().numpy()
    assert np.isfinite(padded).all()
    np.testing.assert_allclose(padded[0, 3:], alone[0], rtol=1e-4, atol=1e-5)


def test_cache_reports_overflow_and_wrong_shapes():
    model = tiny_model()
    cache = KVCache.for_model(model, 1, 4)
    with pytest.raises(RuntimeError, match="under orchard.no_grad"):
        model(oc.tensor([[1, 2, 3]]), past_key_values=cache)
    with oc.no_grad():
        model(oc.tensor([[1, 2, 3]]), past_key_values=cache)
        with pytest.raises(ValueError, match="3 cached \\+ 2 new tokens exceed max_length 4"):
            model(oc.tensor([[1, 2]]), past_key_values=cache)
        with pytest.raises(ValueError, match=r"expected keys of shape \(1, 4, T, 8\)"):
            model(oc.tensor([[1], [2]]), past_key_values=cache)
        with pytest.raises(ValueError, match=r"attention_mask must cover the 3 cached and 1 new tokens"):
            model(oc.tensor([[1]]), past_key_values=cache, attention_mask=oc.ones(1, 1))
    with pytest.raises(ValueError, match="crop"):
        cache.crop(5)


# ---- greedy generation -------------------------------------------------------------------------

def test_greedy_with_cache_equals_greedy_without(device):
    model = tiny_model(device)
    ids = np.random.default_rng(2).integers(0, 101, (3, 6))
    out = model.generate(oc.tensor(ids, device=device), 12)
    assert out.device == device and out.dtype == oc.int64
    np.testing.assert_array_equal(out.cpu().numpy(), greedy_without_cache(model, ids, 12))


def test_generate_feeds_the_prompt_once_and_then_one_token_per_step(monkeypatch):
    model = tiny_model()
    fed = []
    forward = GPT2.forward

    def recording_forward(self, idx, *args, **kwargs):
        fed.append(idx.shape[1])
        return forward(self, idx, *args, **kwargs)
    monkeypatch.setattr(GPT2, "forward", recording_forward)
    model.generate(oc.tensor([[1, 2, 3, 4, 5]]), 6)
    assert fed == [5, 1, 1, 1, 1, 1]


def test_generation_past_n_positions_keeps_the_last_window():
    """Beyond n_positions the context is the last n_positions tokens (as the cache-free loop crops it)."""
    model = tiny_model(n_positions=8)
    ids = np.array([[3, 1, 4, 1, 5]])
    np.testing.assert_array_equal(model.generate(oc.tensor(ids), 9).numpy(), greedy_without_cache(model, ids, 9))


def test_greedy_equals_transformers_on_a_left_padded_batch(tmp_path, device):
    model = tiny_model(device, seed=3)
    hf = hf_copy(model, tmp_path)
    ids, mask = left_padded([[5, 9, 2, 44, 17, 8], [70, 3], [12, 12, 60, 1]])
    out = model.generate(oc.tensor(ids, device=device), 10, attention_mask=oc.tensor(mask, device=device))
    expected = hf.generate(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=10,
                           do_sample=False, pad_token_id=PAD)
    np.testing.assert_array_equal(out.cpu().numpy(), expected.numpy())
    for row, prompt in enumerate([[5, 9, 2, 44, 17, 8], [70, 3], [12, 12, 60, 1]]):  # padding changes nothing
        alone = model.generate(oc.tensor([prompt], device=device), 10).cpu().numpy()
        np.testing.assert_array_equal(out.cpu().numpy()[row, -10:], alone[0, -10:])


def test_stop_tokens_end_rows_like_transformers(tmp_path):
    model = tiny_model(seed=3)
    hf = hf_copy(model, tmp_path)
    ids = np.random.default_rng(4).integers(0, 101, (3, 4))
    free = model.generate(oc.tensor(ids), 8).numpy()
    stop = [int(free[0, 6]), int(free[2, 5])]  # row 0 stops after 3 new tokens (or sooner), row 2 sooner
    for eos in (stop[0], stop):
        out = model.generate(oc.tensor(ids), 8, eos_token_id=eos, pad_token_id=PAD).numpy()
        expected = hf.generate(input_ids=torch.tensor(ids), max_new_tokens=8, do_sample=False, eos_token_id=eos,
                               pad_token_id=PAD).numpy()
        np.testing.assert_array_equal(out, expected)
    row0 = out[0, 4:].tolist()
    assert PAD in row0 and row0.index(stop[0]) < row0.index(PAD)


def test_generation_ends_when_every_row_has_stopped():
    model = tiny_model()
    ids = oc.tensor([[1, 2, 3]])
    first = int(model.generate(ids, 1).numpy()[0, -1])
    out = model.generate(ids, 10, eos_token_id=[100, first])
    assert out.numpy().tolist() == [[1, 2, 3, first]]


# ---- sampling ----------------------------------------------------------------------------------

def test_sampling_repeats_with_the_seed(device):
    model = tiny_model(device)
    ids = oc.tensor([[1, 2, 3], [4, 5, 6]], device=device)
    runs = []
    for seed in (7, 7, 8):
        oc.manual_seed(seed)
        runs.append(model.generate(ids, 16, do_sample=True, top_k=0, temperature=2.0).cpu().numpy())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert (runs[0] != runs[2]).any()


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 5, 1.0), (0.7, 0, 0.9), (1.3, 10, 0.5), (1.0, 200, 0.0),
                                                      (0.5, 50, 1.0)])
def test_sampling_distribution_matches_transformers_warpers(device, temperature, top_k, top_p):
    from transformers.generation import logits_process as lp
    logits = np.random.default_rng(5).standard_normal((4, 101)).astype(np.float32) * 3
    logits[1, :7] = 2.5  # ties at the top-k boundary are kept by both
    probs = sampling_probs(oc.tensor(logits, device=device), temperature, top_k, top_p).cpu().numpy()
    scores = torch.tensor(logits)
    for warper in (lp.TemperatureLogitsWarper(temperature), top_k and lp.TopKLogitsWarper(top_k),
                   top_p < 1 and lp.TopPLogitsWarper(top_p)):
        if warper:
            scores = warper(None, scores)
    expected = scores.softmax(-1).numpy()
    np.testing.assert_array_equal(probs > 0, expected > 0)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-7)


def test_sampled_tokens_stay_in_the_top_k(device):
    model = tiny_model(device)
    ids = oc.tensor([[1, 2, 3]] * 8, device=device)
    logits = model(ids)[0].cpu().numpy()[0, -1]
    oc.manual_seed(0)
    drawn = model.generate(ids, 1, do_sample=True, top_k=3, temperature=5.0).cpu().numpy()[:, -1]
    assert set(drawn) <= set(np.argsort(-logits)[:3])
    assert model.generate(ids, 4, do_sample=True, top_k=1).cpu().numpy().tolist() == \
        model.generate(ids, 4).cpu().numpy().tolist()


# ---- callers and errors ------------------------------------------------------------------------

def test_positional_callers_and_mode():
    model = tiny_model().train()
    out = model.generate(oc.tensor([[1, 2, 3]]), 5, 0.5, 3, do_sample=True)
    assert out.shape == (1, 8) and out.numpy()[0, :3].tolist() == [1, 2, 3]
    assert model.training  # generate runs in eval mode and gives the mode back
    assert model.generate(oc.tensor([[1, 2]]), 0).numpy().tolist() == [[1, 2]]


def test_greedy_with_sampling_options_warns():
    model = tiny_model()
    with pytest.warns(UserWarning, match="do_sample=False"):
        greedy = model.generate(oc.tensor([[4, 5]]), 4, temperature=0)
    np.testing.assert_array_equal(greedy.numpy(), model.generate(oc.tensor([[4, 5]]), 4).numpy())


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(do_sample=True, temperature=0), ValueError, "temperature must be a strictly positive"),
    (dict(do_sample=True, top_p=1.5), ValueError, r"top_p must be a float in \[0, 1\]"),
    (dict(do_sample=True, top_k=-1), ValueError, "top_k must be a non-negative integer"),
    (dict(do_sample=1), TypeError, "do_sample must be a bool"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be a non-negative integer"),
    (dict(attention_mask=[[1, 1]]), ValueError, r"attention_mask must be a tensor of input_ids' shape \(1, 3\)"),
    (dict(eos_token_id=[]), ValueError, "eos_token_id must be a token id"),
    (dict(attention_mask=[[1, 1, 0]]), ValueError, "must be padded on the left"),
    (dict(input_ids=[[1.0, 2.0, 3.0]]), TypeError, "input_ids must be an integer orchard.Tensor"),
])
def test_generate_reports_bad_arguments(kwargs, error, match):
    """kwargs give tensors as lists (tensors made at collection would outlive the extension at exit)."""
    kwargs = {k: oc.tensor(v) if k in ("input_ids", "attention_mask") else v for k, v in kwargs.items()}
    model = tiny_model()
    with pytest.raises(error, match=match):
        model.generate(**{"input_ids": oc.tensor([[1, 2, 3]]), "max_new_tokens": 2, **kwargs})
