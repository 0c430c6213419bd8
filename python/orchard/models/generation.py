"""Autoregressive generation with a key/value cache, with transformers' options for decoder-only models."""
import numbers
import warnings

import orchard as oc

from .. import _core
from ..autograd import no_grad
from .kv_cache import KVCache
from .sampling import check_sampling_options, next_tokens


def generate(model, input_ids, max_new_tokens, *, attention_mask=None, do_sample=False, temperature=1.0, top_k=50,
             top_p=1.0, eos_token_id=None, pad_token_id=None):
    """See GPT2.generate."""
    B, T = _check_inputs(input_ids, attention_mask, max_new_tokens)
    check_sampling_options(do_sample, temperature, top_k, top_p)
    if not do_sample and (temperature != 1.0 or top_p != 1.0 or top_k not in (None, 50)):
        warnings.warn("generate: do_sample=False picks the most likely token, so temperature, top_k and top_p are "
                      "ignored; pass do_sample=True to sample", UserWarning, stacklevel=3)
    eos = _token_ids(model.config.eos_token_id if eos_token_id is None else eos_token_id, "eos_token_id")
    pad = model.config.pad_token_id if pad_token_id is None else pad_token_id
    if pad is None and eos:
        pad = eos[0]  # as transformers: finished rows repeat the first stop token

    device, total, window = input_ids.device, T + max_new_tokens, model.config.n_positions
    tokens = _core.zeros(B, total, dtype=_core.dtype.int64, device=device)
    tokens.narrow(1, 0, T).copy_(input_ids)
    if max_new_tokens == 0:
        return tokens
    padding = _padding_buffer(attention_mask, total)
    unfinished = _core.ones(B, dtype=_core.dtype.bool, device=device) if eos else None
    cache = KVCache.for_model(model, B, min(total - 1, window))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            n = T
            logits, position = _prefill(model, cache, tokens, padding, n)
            while True:
                new = next_tokens(logits, do_sample, temperature, top_k, top_p)
                if unfinished is not None:
                    new = oc.where(unfinished, new, pad)
                    for token in eos:
                        unfinished = unfinished & (new != token)
                tokens.narrow(1, n, 1).copy_(new.reshape(B, 1))
                n += 1
                if n == total or (unfinished is not None and unfinished.long().sum().item() == 0):
                    break
                if cache.length == cache.max_length:
                    # Past n_positions the context is the last n_positions tokens, at positions from 0 again, so
                    # the cache is refilled from that window (a full forward pass per token from here on).
                    cache.crop(0)
                    logits, position = _prefill(model, cache, tokens, padding, n)
                    continue
                logits, _ = model(new.reshape(B, 1), past_key_values=cache, attention_mask=_first(padding, n),
                                  position_ids=position)
                logits = logits.reshape(B, -1)
                position = None if position is None else position + 1
    finally:
        model.train(was_training)
    return tokens if n == total else tokens.narrow(1, 0, n).contiguous()


def _prefill(model, cache, tokens, padding, n):
    """Runs the context window ending before token n into the empty cache; returns the last token's logits [B, V]
    and, with padding, the position ids [B, 1] of the next token (transformers: count of real tokens before it)."""
    start = max(0, n - model.config.n_positions)
    context, mask = tokens.narrow(1, start, n - start), _first(padding, n)
    position = None
    if mask is not None:
        mask = mask.narrow(1, start, n - start)
        position = (oc.cumsum(mask.long(), dim=1) - 1).clamp(min=0)
    logits, _ = model(context, past_key_values=cache, attention_mask=mask, position_ids=position, logits_to_keep=1)
    last = n - start - 1
    return logits.reshape(tokens.shape[0], -1), None if position is None else position.narrow(1, last, 1) + 1


def _first(padding, n):
    return None if padding is None else padding.narrow(1, 0, n)


def _padding_buffer(attention_mask, total):
    """[B, total] bool, true for real tokens, holding attention_mask then room for the new tokens; None when the
    prompt has no padding (then no mask is built at all)."""
    if attention_mask is None or (attention_mask == 0).long().sum().item() == 0:
        return None
    B, T = attention_mask.shape
    if (attention_mask.narrow(1, T - 1, 1) == 0).long().sum().item():
        raise ValueError("generate: the prompts must be padded on the left (attention_mask 0 before the tokens): new "
                         "tokens follow the last column, which holds padding in some rows")
    padding = _core.ones(B, total, dtype=_core.dtype.bool, device=attention_mask.device)
    padding.narrow(1, 0, T).copy_(attention_mask != 0)
    return padding


def _check_inputs(input_ids, attention_mask, max_new_tokens):
    if not isinstance(input_ids, _core.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point() \
            or input_ids.dtype == _core.dtype.bool:
        raise TypeError("generate: input_ids must be an integer orchard.Tensor [batch, length], got "
                        + (f"{input_ids.dtype} of shape {tuple(input_ids.shape)}"
                           if isinstance(input_ids, _core.Tensor) else type(input_ids).__name__))
    B, T = input_ids.shape
    if T == 0:
        raise ValueError("generate: input_ids must hold at least one token per row")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
        raise ValueError(f"generate: max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if attention_mask is not None:
        if not isinstance(attention_mask, _core.Tensor) or tuple(attention_mask.shape) != (B, T):
            raise ValueError(f"generate: attention_mask must be a tensor of input_ids' shape ({B}, {T}), got "
                             + (str(tuple(attention_mask.shape)) if isinstance(attention_mask, _core.Tensor)
                                else type(attention_mask).__name__))
        if attention_mask.device != input_ids.device:
            raise ValueError(f"generate: attention_mask is on {attention_mask.device}, input_ids on {input_ids.device}")
    return B, T


def _token_ids(ids, name):
    """[] for None, else the list of token ids (int or list of ints, as transformers)."""
    if ids is None:
        return []
    ids = [ids] if isinstance(ids, numbers.Integral) else list(ids)
    if not ids or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in ids):
        raise ValueError(f"generate: {name} must be a token id or a non-empty list of them, got {ids!r}")
    return [int(i) for i in ids]
