"""Choosing the next token from logits as transformers' generate does: greedy, or a draw from Orchard's generator
after temperature, top-k and top-p (nucleus) filtering, applied in that order."""
import numbers

import orchard as oc


def check_sampling_options(do_sample, temperature, top_k, top_p):
    """Raises ValueError for the option values transformers rejects."""
    if not isinstance(do_sample, bool):
        raise TypeError(f"do_sample must be a bool, got {type(do_sample).__name__}")
    if do_sample and (not isinstance(temperature, numbers.Real) or not temperature > 0):
        raise ValueError(f"temperature must be a strictly positive float when do_sample=True, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 0):
        raise ValueError(f"top_k must be a non-negative integer (0 or None: no top-k filtering), got {top_k!r}")
    if not isinstance(top_p, numbers.Real) or not 0 <= top_p <= 1:
        raise ValueError(f"top_p must be a float in [0, 1], got {top_p!r}")


def top_k_filter(logits, k):
    """logits [B, V] with every score below the k-th largest of its row set to -inf (ties with it are kept)."""
    k = min(k, logits.shape[-1])
    kth = oc.topk(logits, k, dim=-1).values.narrow(-1, k - 1, 1)
    return oc.where(logits < kth, float("-inf"), logits)


def top_p_filter(logits, p):
    """logits [B, V] keeping, per row, the most likely tokens whose probabilities sum to at least p (always at
    least one); the others are set to -inf. A token tied with the least likely kept one is kept too."""
    ascending = oc.sort(logits, dim=-1).values
    cumulative = oc.cumsum(ascending.softmax(-1), dim=-1)
    # The tokens dropped are a prefix of the ascending order: those whose cumulative mass stays <= 1 - p.
    dropped = (cumulative <= 1 - p).long().sum(-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    return oc.where(logits < ascending.gather(-1, dropped), float("-inf"), logits)


def sampling_probs(logits, temperature=1.0, top_k=None, top_p=1.0):
    """The distribution [B, V] that sampling draws the next tokens from."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_k:
        logits = top_k_filter(logits, top_k)
    if top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    return logits.softmax(-1)


def next_tokens(logits, do_sample, temperature, top_k, top_p):
    """The next token [B] of each row of logits [B, V]: the argmax, or a draw from `sampling_probs`."""
    if not do_sample:
        return logits.argmax(-1)
    return oc.multinomial(sampling_probs(logits, temperature, top_k, top_p), 1).reshape(logits.shape[0])
