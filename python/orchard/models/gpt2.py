"""GPT-2 with HuggingFace's parameter names and layouts, so checkpoints move both ways."""
import json
import math
import os

import numpy as np

from .. import _core
from .._tensor import arange
from ..nn import Dropout, Embedding, LayerNorm, Module, ModuleList, Parameter
from ..nn import functional as F
from . import generation
from .gpt2_config import GPT2Config

_INIT_STD = 0.02


class Conv1D(Module):
    """HuggingFace's GPT-2 linear layer: weight stored [in, out], y = x @ weight + bias."""

    def __init__(self, n_in, n_out, std=_INIT_STD):
        super().__init__()
        self.weight = Parameter(_core.randn(n_in, n_out) * std)
        self.bias = Parameter(_core.zeros(n_out))

    def forward(self, x):
        return F.linear(x, self.weight.T, self.bias)

    def extra_repr(self):
        return f"in={self.weight.shape[0]}, out={self.weight.shape[1]}"


class CausalSelfAttention(Module):
    def __init__(self, config, proj_std):
        super().__init__()
        self.n_head, self.use_flash, self.attn_pdrop = config.n_head, config.use_flash, config.attn_pdrop
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)
        self.c_proj = Conv1D(config.n_embd, config.n_embd, proj_std)
        self.attn_dropout = Dropout(config.attn_pdrop)
        self.resid_dropout = Dropout(config.resid_pdrop)

    def forward(self, x, attn_mask=None, is_causal=True, cache=None, layer=0):
        """attn_mask and is_causal as `causal_padding_mask` returns them; with a cache, x holds the new tokens only."""
        B, T, C = x.shape
        q, k, v = (t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=-1))
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if self.use_flash:
            p = self.attn_pdrop if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal)
        else:
            if is_causal:
                attn_mask = _causal_keep(T, 0, q.device)
            y = self._masked_softmax_attention(q, k, v, attn_mask)
        y = y.transpose(1, 2).contiguous().reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _masked_softmax_attention(self, q, k, v, keep):
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        if keep is not None:
            scores = _core.where(keep, scores, float("-inf"))
        return self.attn_dropout(scores.softmax(-1)) @ v


def _causal_keep(T, past, device):
    """[T, past + T] bool, true where query i (at position past + i) may see key j: j <= past + i. This is the
    bottom-right alignment a query block offset into the keys needs; PyTorch's is_causal (and Orchard's) aligns
    top-left (j <= i), which is the same only without a past."""
    return _core.ones(T, past + T, dtype=_core.dtype.bool, device=device).tril(past)


def causal_padding_mask(T, past, padding_mask, device):
    """(attn_mask, is_causal) for T queries after `past` cached tokens. padding_mask: None, or [B, past + T] with
    1 (or true) for real tokens and 0 for padding (transformers' attention_mask). Without padding the causal mask
    is implicit where it can be: is_causal for a prompt, nothing for one new token, which sees every key (and is
    a real token: generate never feeds padding one token at a time)."""
    if padding_mask is None:
        if past == 0 or T == 1:
            return None, past == 0 and T > 1
        return _causal_keep(T, past, device), False
    B = padding_mask.shape[0]
    if tuple(padding_mask.shape) != (B, past + T):
        raise ValueError(f"attention_mask must cover the {past} cached and {T} new tokens: expected shape "
                         f"({B}, {past + T}), got {tuple(padding_mask.shape)}")
    keys = (padding_mask != 0).reshape(B, 1, 1, past + T)
    if T == 1:
        return keys, False
    causal = _causal_keep(T, past, device)
    # Each query also sees itself, so a padding query's row is never fully masked (a masked softmax
    # would give NaN there, which would reach the real tokens through 0 * NaN).
    itself = causal & ~_core.ones(T, past + T, dtype=_core.dtype.bool, device=device).tril(past - 1)
    return (causal & keys) | itself, False


class MLP(Module):
    def __init__(self, config, proj_std):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd, proj_std)
        self.dropout = Dropout(config.resid_pdrop)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(Module):
    def __init__(self, config):
        super().__init__()
        proj_std = _INIT_STD / math.sqrt(2 * config.n_layer)
        self.ln_1 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, proj_std)
        self.ln_2 = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config, proj_std)

    def forward(self, x, attn_mask, is_causal, cache, layer):
        x = x + self.attn(self.ln_1(x), attn_mask, is_causal, cache, layer)
        return x + self.mlp(self.ln_2(x))


class Transformer(Module):
    def __init__(self, config):
        super().__init__()
        self.wte = Embedding(config.vocab_size, config.n_embd)
        self.wpe = Embedding(config.n_positions, config.n_embd)
        self.wte.weight = Parameter(_core.randn(config.vocab_size, config.n_embd) * _INIT_STD)
        self.wpe.weight = Parameter(_core.randn(config.n_positions, config.n_embd) * _INIT_STD)
        self.drop = Dropout(config.embd_pdrop)
        self.h = ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)

    def forward(self, idx, cache=None, padding_mask=None, position_ids=None):
        T = idx.shape[1]
        past = 0 if cache is None else cache.length
        if position_ids is None:
            position_ids = arange(past, past + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(position_ids))
        attn_mask, is_causal = causal_padding_mask(T, past, padding_mask, idx.device)
        for layer, block in enumerate(self.h):
            x = block(x, attn_mask, is_causal, cache, layer)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x)


class GPT2(Module):
    """`logits, loss = model(idx, targets)`; the output head is tied to transformer.wte.weight."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)

    def forward(self, idx, targets=None, *, past_key_values=None, attention_mask=None, position_ids=None,
                logits_to_keep=0):
        """past_key_values: a KVCache holding the tokens before idx, which this call extends by idx's;
        attention_mask: [B, cached + T], 1 for tokens and 0 for (left) padding, as transformers';
        position_ids: [B, T] (default: the tokens' indices after the cached ones);
        logits_to_keep: n > 0 computes the logits of the last n positions only (transformers' name)."""
        B, T = idx.shape
        end = T + (0 if past_key_values is None else past_key_values.length)
        if end > self.config.n_positions:
            raise ValueError(f"sequence length {end} exceeds n_positions {self.config.n_positions}")
        if logits_to_keep and targets is not None:
            raise ValueError("logits_to_keep leaves out logits the loss needs: pass one of targets and logits_to_keep")
        h = self.transformer(idx, past_key_values, attention_mask, position_ids)
        if logits_to_keep:
            h = h.narrow(1, T - min(logits_to_keep, T), min(logits_to_keep, T))
        logits = F.linear(h, self.transformer.wte.weight)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    @property
    def device(self):
        return self.transformer.wte.weight.device

    def generate(self, input_ids, max_new_tokens, temperature=1.0, top_k=50, *, attention_mask=None,
                 do_sample=False, top_p=1.0, eos_token_id=None, pad_token_id=None):
        """input_ids [B, T] followed by up to max_new_tokens generated ids, with transformers' options.

        Greedy unless do_sample=True, which draws from Orchard's generator (orchard.manual_seed repeats a run)
        after dividing the logits by temperature and keeping the top_k most likely tokens and then the smallest set
        whose probability reaches top_p. A row stops at any token of eos_token_id (an int or a list; default
        config.eos_token_id) and is filled with pad_token_id (default config.pad_token_id, else the first stop
        token) while others go on; generation ends early once every row has stopped. Prompts of different lengths
        are left-padded, with attention_mask 0 on the padding. A key/value cache makes each new token cost one
        token's forward pass; past n_positions the context is the last n_positions tokens. Runs in eval mode
        (dropout off) and restores the model's mode after."""
        return generation.generate(self, input_ids, max_new_tokens, attention_mask=attention_mask,
                                   do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                                   eos_token_id=eos_token_id, pad_token_id=pad_token_id)

    @classmethod
    def from_pretrained(cls, path, **overrides):
        """Loads a HuggingFace-layout directory: config.json plus model.safetensors; the model is in eval mode."""
        from safetensors.numpy import load_file
        with open(os.path.join(path, "config.json")) as f:
            config = GPT2Config.from_dict({**json.load(f), **overrides})
        model = cls(config)
        weights = load_file(os.path.join(path, "model.safetensors"))
        weights = {k if k.startswith("transformer.") or k == "lm_head.weight" else "transformer." + k: v
                   for k, v in weights.items()}
        # HF may store the tied head too, and older checkpoints keep attention-mask buffers.
        weights.pop("lm_head.weight", None)
        weights = {k: v for k, v in weights.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        model.load_state_dict(weights)
        return model.eval()  # as transformers: dropout off until train() is called

    def save_pretrained(self, path):
        from safetensors.numpy import save_file
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(self.config.to_hf_dict(), f, indent=2)
        arrays = {name: np.ascontiguousarray(p.detach().cpu().numpy()) for name, p in self.named_parameters()}
        save_file(arrays, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})

