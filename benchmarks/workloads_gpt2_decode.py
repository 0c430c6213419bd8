"""GPT-2 decoding: the time of one new token after a cached context of 64 and of 512 tokens.

Orchard runs orchard.models.GPT2 with its KVCache; PyTorch runs transformers' GPT2LMHeadModel with its
DynamicCache (transformers' default attention). Each call feeds one token per row after the cached context, picks
the next tokens greedily and forgets the new token again (the caches' crop), so every call sees the same context
length. With a key/value cache the time per token grows with the context only through attention over the cached
keys: compare the two rows of a framework for that, and a row's ratio for Orchard against transformers. The two
models start from their own random weights, so the tokens are not compared.
"""
import numpy as np

from registry import Workload, register

_MODEL = {"full": dict(layers=4, width=256, heads=4, batch=1, vocab=8192),
          "quick": dict(layers=1, width=32, heads=2, batch=1, vocab=64)}


class _GPT2Decode(Workload):
    unit = "ms"
    check = None

    def label(self, layers, width, heads, batch, vocab, context):
        return f"GPT-2 {layers}x{width}, {heads} heads, vocab {vocab}, batch {batch}: one token after {context} cached"

    def inputs(self, layers, width, heads, batch, vocab, context):
        tokens = np.random.default_rng(0).integers(0, vocab, (batch, context + 1))
        config = dict(vocab_size=vocab, n_positions=1024, n_embd=width, n_layer=layers, n_head=heads,
                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        return dict(context_ids=tokens[:, :-1].copy(), new_ids=tokens[:, -1:].copy(), config=config)

    def orchard(self, context_ids, new_ids, config):
        import orchard as oc
        from orchard.models import GPT2, GPT2Config, KVCache
        oc.manual_seed(0)
        model = GPT2(GPT2Config(**config)).to(context_ids.device).eval()
        context = context_ids.shape[1]
        cache = KVCache.for_model(model, context_ids.shape[0], context + 1)
        with oc.no_grad():
            model(context_ids, past_key_values=cache, logits_to_keep=1)

        def step():
            with oc.no_grad():
                logits, _ = model(new_ids, past_key_values=cache)
            cache.crop(context)
            return logits.argmax(-1)
        return step

    def torch(self, context_ids, new_ids, config):
        import torch
        import transformers
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, bos_token_id=None,
                                                                     eos_token_id=None)).to(context_ids.device).eval()
        with torch.no_grad():
            cache = model(context_ids, use_cache=True, logits_to_keep=1).past_key_values

        def step():
            with torch.no_grad():
                logits = model(new_ids, past_key_values=cache, use_cache=True).logits
            cache.crop(-new_ids.shape[1])  # transformers 5 crops by a negative count of tokens to drop
            return logits.argmax(-1)
        return step


@register
class GPT2Decode64(_GPT2Decode):
    name = "gpt2_decode_64"
    sizes = {mode: {**model, "context": 64} for mode, model in _MODEL.items()}


@register
class GPT2Decode512(_GPT2Decode):
    name = "gpt2_decode_512"
    sizes = {mode: {**model, "context": 512} for mode, model in _MODEL.items()}
