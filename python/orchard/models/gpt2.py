"""GPT-2 with HuggingFace's parameter names and layouts, so checkpoints move both ways."""
import json
import math
import os

import numpy as np

from .. import _core
from .._tensor import arange, tensor
from ..autograd import no_grad
from ..nn import Dropout, Embedding, LayerNorm, Module, ModuleList, Parameter
from ..nn import functional as F
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

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.reshape(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=-1))
        if self.use_flash:
            p = self.attn_pdrop if self.training else 0.0
            y = _core.flash_attention(q, k, v, causal=True, dropout_p=p)
        else:
            y = self._masked_softmax_attention(q, k, v)
        y = y.transpose(1, 2).contiguous().reshape(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def _masked_softmax_attention(self, q, k, v):
        T = q.shape[-2]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        future = _core.ones(T, T, dtype=_core.dtype.bool, device=q.device).triu(1)
        scores = _core.where(future, float("-inf"), scores)
        return self.attn_dropout(scores.softmax(-1)) @ v


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

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
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

    def forward(self, idx):
        T = idx.shape[1]
        positions = arange(T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.h:
            x = block(x)
        return self.ln_f(x)


class GPT2(Module):
    """`logits, loss = model(idx, targets)`; the output head is tied to transformer.wte.weight."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        if T > self.config.n_positions:
            raise ValueError(f"sequence length {T} exceeds n_positions {self.config.n_positions}")
        logits = F.linear(self.transformer(idx), self.transformer.wte.weight)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss

    @property
    def device(self):
        return self.transformer.wte.weight.device

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, rng=None):
        """Samples max_new_tokens ids after idx [B, T]; temperature 0 picks the most likely token."""
        rng = rng or np.random.default_rng()
        tokens = idx.cpu().numpy()
        was_training = self.training
        self.eval()
        with no_grad():
            for _ in range(max_new_tokens):
                context = tensor(tokens[:, -self.config.n_positions:], device=self.device)
                logits, _ = self(context)
                last = logits[:, -1, :].cpu().numpy().astype(np.float64)
                tokens = np.concatenate([tokens, _sample(last, temperature, top_k, rng)[:, None]], axis=1)
        self.train(was_training)
        return tensor(tokens, device=idx.device)

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


def _sample(logits, temperature, top_k, rng):
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = np.sort(logits, axis=-1)[:, -min(top_k, logits.shape[-1])][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.array([rng.choice(len(p), p=p) for p in probs])
