"""FlashAttention accuracy by the FlashAttention papers' rule: Orchard's error against a float64
reference is at most twice that of PyTorch's same-precision SDPA (plus a small floor), for the
output and all three gradients."""
import numpy as np
import pytest
import torch

import orchard as oc

DTYPES = {"float32": (oc.float32, torch.float32, 1e-6), "bfloat16": (oc.bfloat16, torch.bfloat16, 1e-2),
          "float16": (oc.float16, torch.float16, 1e-3)}


def _sdpa(q, k, v, g, causal):
    q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out.backward(g)
    return [out.detach(), q.grad, k.grad, v.grad]


def _orchard(q, k, v, g, causal, dtype):
    q, k, v = (oc.from_dlpack(x.float().contiguous()).to(dtype=dtype).requires_grad_() for x in (q, k, v))
    out = oc.flash_attention(q, k, v, causal=causal)
    out.backward(oc.from_dlpack(g.float().contiguous()).to(dtype=dtype))
    return [torch.from_dlpack(t.float()) for t in (out.detach(), q.grad, k.grad, v.grad)]


def _check(lq, lk, d, causal, dtype_name, heads=(2, 2)):
    oc_dtype, torch_dtype, floor = DTYPES[dtype_name]
    gen = torch.Generator().manual_seed(lq * 1000 + d)
    q = torch.randn(1, heads[0], lq, d, generator=gen)
    k, v = (torch.randn(1, heads[1], lk, d, generator=gen) for _ in range(2))
    g = torch.randn(1, heads[0], lq, d, generator=gen)
    if heads[0] != heads[1]:  # the references see k/v repeated per query head
        rep = heads[0] // heads[1]
        k_ref, v_ref = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    else:
        k_ref, v_ref = k, v
    cast = [x.to(torch_dtype) for x in (q, k_ref, v_ref, g)]
    reference = _sdpa(*[x.double() for x in cast], causal)
    same_precision = [x.double() for x in _sdpa(*cast, causal)]
    ours = _orchard(*[x.to(torch_dtype) for x in (q, k, v, g)], causal, oc_dtype)
    if heads[0] != heads[1]:  # fold the repeated heads' k/v gradients back
        rep = heads[0] // heads[1]
        for i in (2, 3):
            reference[i] = reference[i].reshape(1, heads[1], rep, lk, d).sum(2)
            same_precision[i] = same_precision[i].reshape(1, heads[1], rep, lk, d).sum(2)
    for name, ref, theirs, mine in zip(("out", "dq", "dk", "dv"), reference, same_precision, ours):
        their_err = (theirs - ref).abs().max().item()
        my_err = (mine.double() - ref).abs().max().item()
        assert my_err <= 2 * their_err + floor * max(1.0, ref.abs().max().item()), (
            f"{name}: orchard error {my_err:.3g} vs torch {their_err:.3g} (L={lq}x{lk}, D={d}, causal={causal})")


@pytest.mark.parametrize("length", [1, 97, 200, 1025])
@pytest.mark.parametrize("head_dim", [8, 40, 59, 64, 80, 128, 256])
def test_lengths_and_head_dims_fp32(length, head_dim):
    if length * head_dim > 1025 * 64:  # keep the float64 reference cheap: large pairs run once, causal
        _check(length, length, head_dim, True, "float32", heads=(1, 1))
        return
    for causal in (False, True):
        _check(length, length, head_dim, causal, "float32")


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("lq,lk,heads,causal", [(97, 200, (4, 2), False), (200, 97, (4, 1), True),
                                                (130, 130, (2, 2), True)])
def test_dtypes_cross_lengths_and_grouped_queries(dtype_name, lq, lk, heads, causal):
    _check(lq, lk, 64, causal, dtype_name, heads=heads)
