"""PyTorch bridge: Orchard's FlashAttention as a differentiable PyTorch function, and as an attention
implementation named "orchard" for Hugging Face transformers (4.50 and later, 5.x).

CPU tensors, and tensors on torch's `cuda` device (the first GPU, on Orchard's CUDA device, its work queued on
torch's current stream), cross through DLPack without copies and nothing is compiled against PyTorch; tensors on torch's `mps` device run on
Orchard's Metal runtime, copied once each way (see _mps.py). The backward
recomputes the forward from the saved inputs and dropout seed and runs Orchard's fused backward, so no
attention matrix is ever stored. Dropout seeds come from torch's generator (torch.manual_seed repeats
runs); with an attention mask, Orchard's global generator is reseeded from it at each call.

Environment, as in the seeds: `USE_FLASH_ATTN=2` at import calls `enable()`; `ORCHARD_DEBUG_FLASH_ATN=1`
appends one line per kernel call (`FWD call=N ...`, `BWD call=N ...`) to `ORCHARD_DEBUG_FLASH_ATN_LOG`
(default `orchard_flash_attn.log` in the temp directory).
"""
import contextlib
import functools
import itertools
import math
import os
import tempfile

import torch

import orchard as oc
from orchard.experimental import _mps

__all__ = ["flash_attn_fwd", "flash_attention", "enable"]

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_calls = {"FWD": itertools.count(1), "BWD": itertools.count(1)}


def _log_call(kind, q, k, v, **extra):
    n = next(_calls[kind])
    if os.environ.get("ORCHARD_DEBUG_FLASH_ATN") != "1":
        return
    path = os.environ.get("ORCHARD_DEBUG_FLASH_ATN_LOG") or os.path.join(tempfile.gettempdir(),
                                                                          "orchard_flash_attn.log")
    fields = dict(q=list(q.shape), k=list(k.shape), v=list(v.shape), dtype=str(q.dtype).removeprefix("torch."),
                  device=q.device, **extra)
    with open(path, "a") as f:
        f.write(f"{kind} call={n} " + " ".join(f"{key}={value}" for key, value in fields.items()) + "\n")


def _on_metal(t):
    """Whether torch tensor t runs on Orchard's Metal runtime (torch's `mps` device) rather than the CPU."""
    return t.device.type == "mps"


def _check(q, k, v):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"orchard.experimental.torch: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != q.device:
            raise ValueError(f"orchard.experimental.torch: {name} is on device '{t.device}' but q on '{q.device}'; "
                             "q, k and v must share a device")
        if t.dtype not in _DTYPES:
            raise TypeError(f"orchard.experimental.torch: {name} has dtype {t.dtype}; supported are float32, "
                            "bfloat16 and float16")
    lead = [t.shape[:-3] if t.ndim >= 4 else t.shape[:-2] for t in (q, k, v)]
    if not (2 <= q.ndim == k.ndim == v.ndim) or not lead[0] == lead[1] == lead[2]:
        raise ValueError("orchard.experimental.torch: q, k and v must be [..., L, D] (or [..., H, L, D]) with the "
                         f"same leading dims, got {list(q.shape)}, {list(k.shape)} and {list(v.shape)}")
    if _on_metal(q):
        _mps.require_metal()
    elif q.device.type == "cuda" and q.device.index in (None, 0):
        if not oc.cuda.is_available():
            raise RuntimeError("orchard.experimental.torch: the tensors are on 'cuda', but Orchard's CUDA device is not "
                               "available (see orchard.cuda.is_available())")
    elif q.device.type != "cpu":
        raise ValueError(f"orchard.experimental.torch: tensors on device '{q.device}' cannot be served; Orchard takes "
                         "CPU tensors, 'cuda:0' ones on its CUDA device and 'mps' ones on its Metal runtime")


def _share(t):
    """torch tensor t as an Orchard tensor: CPU and CUDA memory shared, MPS tensors copied into Orchard's Metal
    storage."""
    return _mps.to_orchard(t) if _on_metal(t) else oc.from_dlpack(t.detach())


def _to_torch(x, like):
    """Orchard tensor x as a torch tensor on the device of `like`."""
    return _mps.to_torch(x, like.device) if _on_metal(like) else torch.from_dlpack(x)


def _on_torch_stream(t):
    """Queues Orchard's CUDA work for torch tensor t on torch's current stream, ordered with torch's work on
    the same memory (nothing to do off CUDA)."""
    if t.device.type != "cuda":
        return contextlib.nullcontext()
    return oc.cuda.stream(oc.cuda.ExternalStream(torch.cuda.current_stream(t.device).cuda_stream))


def _to_orchard(t):
    """[..., H, L, D] as an Orchard [batch, H, L, D]; fewer than 4 dims are one head."""
    t = t.detach().contiguous()
    return _share(t.reshape(-1, t.shape[-3] if t.ndim >= 4 else 1, *t.shape[-2:]))


def _run(q, k, v, attn_mask, scale, dropout_p, causal, seed, return_mask=False):
    if attn_mask is None:
        return oc.flash_attention(q, k, v, scale=scale, dropout_p=dropout_p, causal=causal, seed=seed,
                                  return_mask=return_mask)
    if seed is not None:
        oc.manual_seed(seed)  # SDPA takes no seed: pin the global stream its dropout draws from
    return oc.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                                         scale=scale, enable_gqa=q.shape[1] != k.shape[1])


class _FlashAttention(torch.autograd.Function):
    """Forward without a graph; the backward recomputes it from the saved inputs and the same dropout
    seed, then runs Orchard's fused backward (O(L) memory: no attention matrix is saved)."""

    @staticmethod
    def forward(ctx, q, k, v, attn_mask, scale, dropout_p, causal, return_mask):
        _log_call("FWD", q, k, v, dropout_p=dropout_p, causal=causal, mask=attn_mask is not None)
        # From torch's generator, so torch.manual_seed repeats runs and activation checkpointing recomputes
        # the same dropout.
        seed = int(torch.randint(2**62, ())) if dropout_p > 0 else None
        mask = None if attn_mask is None else _share(attn_mask)
        with oc.no_grad(), _on_torch_stream(q):
            out = _run(*(_to_orchard(t) for t in (q, k, v)), mask, scale, dropout_p, causal, seed,
                       return_mask and dropout_p > 0)
            out, keep = out if isinstance(out, tuple) else (out, None)
            # Reshaped on Orchard's side: torch forbids in-place changes to outputs that are views.
            keep = (_to_torch(keep.reshape(*q.shape[:-1], k.shape[-2]), q) if keep is not None
                    else torch.empty(0, dtype=torch.bool, device=q.device))
            out = _to_torch(out.reshape(*q.shape[:-1], v.shape[-1]), q)
        ctx.save_for_backward(q, k, v, attn_mask)
        ctx.args = (scale, dropout_p, causal, seed)
        ctx.mark_non_differentiable(keep)
        return out, keep

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_keep):
        q, k, v, attn_mask = ctx.saved_tensors
        _log_call("BWD", q, k, v)
        inputs = [_to_orchard(t).requires_grad_() for t in (q, k, v)]
        mask = None if attn_mask is None else _share(attn_mask)
        with oc.enable_grad(), _on_torch_stream(q):
            out = _run(*inputs, mask, *ctx.args)
            grads = oc.autograd.grad(out, inputs, _share(grad_out.contiguous().reshape(out.shape)))
            dq, dk, dv = [_to_torch(g, t).reshape(t.shape) if need else None
                          for g, t, need in zip(grads, (q, k, v), ctx.needs_input_grad)]
        return dq, dk, dv, None, None, None, None, None


def _attention(q, k, v, attn_mask, scale, dropout_p, causal, return_mask):
    _check(q, k, v)
    return _FlashAttention.apply(q, k, v, attn_mask, scale, float(dropout_p), bool(causal), return_mask)


def flash_attn_fwd(q, k, v, scale, dropout_p, causal):
    """The seeds' entry point: `(out, mask)` for q [..., Lq, D], k and v [..., Lk, D] (3-D `[batch, seq, dim]`
    is one head; 4-D `[batch, heads, seq, dim]` may have fewer k/v heads). `mask` is the bool keep-mask
    [..., Lq, Lk] of the dropout when dropout_p > 0 (O(L^2), for tests and debugging), else empty.
    Differentiable in q, k and v through torch.autograd with Orchard's fused backward."""
    return _attention(q, k, v, None, scale, dropout_p, causal, True)


def flash_attention(q, k, v, *, scale=None, dropout_p=0.0, causal=False):
    """softmax(scale q k^T) v over [..., L, D] tensors, differentiable; scale defaults to 1/sqrt(D) and
    causal masks keys after the query (top-left, as PyTorch's is_causal)."""
    return _attention(q, k, v, None, scale, dropout_p, causal, False)[0]


# ---- transformers --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _masks_hold_causality():
    """From 4.53 transformers builds masks through AttentionMaskInterface (causality and cache offsets
    included); 4.50-4.52 give a custom implementation padding-only masks and is_causal=False with them."""
    try:
        from transformers.masking_utils import AttentionMaskInterface  # noqa: F401
    except ImportError:
        return False
    return True


def _with_causal(mask, lq, lk, diagonal, device):
    keep = torch.ones(lq, lk, dtype=torch.bool, device=device).tril(diagonal)
    if mask is None:
        return keep
    if mask.dtype == torch.bool:
        return mask & keep
    return mask.masked_fill(~keep, -math.inf)


def _transformers_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                            **kwargs):
    """An AttentionInterface function: query [B, H, Lq, D], key/value [B, Hkv, Lk, D], attention_mask None,
    bool (True = attend) or float (added); returns ([B, Lq, H, D], None)."""
    for unsupported in ("head_mask", "softcap", "position_bias"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"the orchard attention implementation does not support {unsupported}")
    if attention_mask is not None and attention_mask.requires_grad:
        raise ValueError("the orchard attention implementation gives attention masks no gradient")
    lq, lk = query.shape[-2], key.shape[-2]
    if scaling is None and hasattr(module, "scale_attn_weights"):  # GPT-2 before 5.0 passes no `scaling`
        scaling = query.shape[-1] ** -0.5 if module.scale_attn_weights else 1.0
        if module.scale_attn_by_inverse_layer_idx:
            scaling /= module.layer_idx + 1
    modern = _masks_hold_causality()
    if modern:
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    else:
        causal = getattr(module, "is_causal", bool(is_causal))
    diagonal = 0
    if causal and lq != lk:
        if lq == 1:  # the newest token sees every key
            causal = False
        elif attention_mask is not None or not modern:
            diagonal = lk - lq  # the queries are the last lq keys (cache): bottom-right alignment
        # else: an empty StaticCache prefill (masks skipped), where the top-left alignment is right, as in sdpa
    if causal and (attention_mask is not None or diagonal):
        attention_mask, causal = _with_causal(attention_mask, lq, lk, diagonal, query.device), False
    out, _ = _attention(query, key, value, attention_mask, scaling, dropout, causal, False)
    return out.transpose(1, 2).contiguous(), None


def _register():
    from transformers import AttentionInterface  # transformers >= 4.50

    AttentionInterface.register("orchard", _transformers_attention)
    if _masks_hold_causality():
        from transformers.masking_utils import AttentionMaskInterface

        # Without an entry here transformers builds no mask at all (padding would be ignored).
        AttentionMaskInterface.register("orchard", AttentionMaskInterface()["sdpa"])


def enable():
    """Runs every GPT-2 model that uses transformers' default "sdpa" attention, existing or created later,
    on Orchard's kernel (models asking for "eager" keep it). Models of any architecture can instead be built
    with `attn_implementation="orchard"`."""
    from transformers import AttentionInterface
    from transformers.models.gpt2 import modeling_gpt2

    _register()
    # AttentionInterface's documented way for one model file to override an implementation: its own
    # instance, with a local mapping. GPT-2 looks ALL_ATTENTION_FUNCTIONS up in its module at each call.
    interface = AttentionInterface()
    interface["sdpa"] = _transformers_attention
    modeling_gpt2.ALL_ATTENTION_FUNCTIONS = interface


try:
    _register()
except ImportError:  # no transformers, or one older than 4.50: the functions above still work
    pass
if os.environ.get("USE_FLASH_ATTN") == "2":
    enable()
