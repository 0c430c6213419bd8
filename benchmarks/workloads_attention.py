"""FlashAttention workloads: causal attention forward + backward, B=1, H=12, D=64, float32.

Orchard runs `oc.flash_attention` (fused backward, dropout from Philox); PyTorch runs
`torch.nn.functional.scaled_dot_product_attention`, whose CPU flash kernel has no dropout, so with
dropout_p > 0 it falls back to its math path, which materialises the [L, L] scores. On CUDA (attn1k and
attn1k_bf16, B=8) SDPA picks FlashAttention for bfloat16 and its memory-efficient kernel for float32.

Peak memory is not a timing, so it is measured apart: `peak_memory_mb` runs one forward + backward
in a fresh subprocess per framework (memory.py) and reports the growth of the peak resident set
over the inputs:

    python benchmarks/workloads_attention.py --memory [--length 16384]
"""
import argparse

import numpy as np

import memory
from registry import Workload, as_is, register

HEADS, HEAD_DIM = 12, 64


def _inputs(length, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, HEADS, length, HEAD_DIM)
    return {name: rng.standard_normal(shape, dtype=np.float32) for name in ("q", "k", "v", "grad")}


class _CausalAttention(Workload):
    """One forward and backward through causal attention; returns the output."""
    unit = "ms"
    check = None  # no NumPy reference at these sizes (and dropout differs per framework)
    target = ("torch", 1.0)
    dropout_p = 0.0
    dtype = "float32"  # Orchard's and PyTorch's tensors are converted to it before timing
    torch_compile = True

    def label(self, length, batch=1):
        drop = f", dropout {self.dropout_p}" if self.dropout_p else ""
        dtype = "" if self.dtype == "float32" else f" {self.dtype}"
        return f"causal fwd+bwd B{batch} H{HEADS} L{length} D{HEAD_DIM}{drop}{dtype}"

    def inputs(self, length, batch=1):
        return _inputs(length, batch)

    def orchard(self, q, k, v, grad):
        import orchard as oc
        q, k, v, grad = (t.to(getattr(oc, self.dtype)) for t in (q, k, v, grad))
        for t in (q, k, v):
            t.requires_grad = True

        def run():
            for t in (q, k, v):
                t.grad = None
            out = oc.flash_attention(q, k, v, causal=True, dropout_p=self.dropout_p)
            out.backward(grad)
            return out
        return run

    def torch(self, q, k, v, grad, compile=as_is):
        import torch
        import torch.nn.functional as F
        # The adapter builds inputs under inference_mode; autograd needs ordinary tensors.
        with torch.inference_mode(False):
            q, k, v, grad = (t.clone().to(getattr(torch, self.dtype)) for t in (q, k, v, grad))
            for t in (q, k, v):
                t.requires_grad_()
        attention = compile(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                           dropout_p=self.dropout_p))

        def run():
            with torch.inference_mode(False), torch.enable_grad():
                for t in (q, k, v):
                    t.grad = None
                out = attention(q, k, v)
                out.backward(grad)
            return out
        return run


@register
class Attention512(_CausalAttention):
    name = "attn512"
    sizes = {"full": dict(length=512), "quick": dict(length=64)}


@register
class Attention1k(_CausalAttention):
    name = "attn1k"
    sizes = {"full": dict(length=1024), "quick": dict(length=128), "cuda": dict(length=1024, batch=8)}


@register
class Attention1kBF16(Attention1k):
    name = "attn1k_bf16"
    dtype = "bfloat16"
    sizes = {k: v for k, v in Attention1k.sizes.items() if k != "full"}  # new: CPU full runs keep their rows


@register
class Attention4k(_CausalAttention):
    name = "attn4k"
    sizes = {"full": dict(length=4096), "quick": dict(length=256)}


@register
class Attention8k(_CausalAttention):
    name = "attn8k"
    sizes = {"full": dict(length=8192), "quick": dict(length=512)}


@register
class Attention16k(_CausalAttention):
    name = "attn16k"
    sizes = {"full": dict(length=16384), "quick": dict(length=1024)}


@register
class AttentionDropout1k(_CausalAttention):
    name = "attn1k_drop"
    sizes = {"full": dict(length=1024), "quick": dict(length=128)}
    target = ("torch", 2.0)
    dropout_p = 0.1


# ---- peak memory -------------------------------------------------------------------------------

def memory_setup(framework, length, dropout_p):
    """One causal forward + backward, for memory.peak_growth_mb."""
    # The tensors wrap these arrays without a copy: a copy would raise the peak before the op runs.
    arrays = _inputs(length).values()
    if framework == "orchard":
        import orchard as oc
        q, k, v, g = (oc.from_numpy(a) for a in arrays)
        for t in (q, k, v):
            t.requires_grad = True
        return lambda: oc.flash_attention(q, k, v, causal=True, dropout_p=dropout_p).backward(g)
    import torch
    q, k, v, g = (torch.from_numpy(a) for a in arrays)
    for t in (q, k, v):
        t.requires_grad_()
    return lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, v, is_causal=True, dropout_p=dropout_p).backward(g)


def peak_memory_mb(framework, length=16384, dropout_p=0.0, timeout=1800):
    """Growth of the peak RSS during one causal forward + backward, in a fresh process: a dict with
    growth_mb and inputs_mb (q, k, v and the output gradient), or error."""
    r = memory.peak_growth_mb(memory_setup, framework, length, dropout_p, timeout=timeout)
    return r if "error" in r else dict(r, inputs_mb=4 * HEADS * length * HEAD_DIM * 4 / 2**20)


def main():
    p = argparse.ArgumentParser(description="Peak memory of causal attention forward + backward.")
    p.add_argument("--memory", action="store_true", help="measure peak memory (the only mode)")
    p.add_argument("--length", type=int, default=16384)
    p.add_argument("--frameworks", default="orchard,torch")
    args = p.parse_args()
    if not args.memory:
        p.error("timings run through run.py; pass --memory for the memory rows")
    scores_mb = HEADS * args.length ** 2 * 4 / 2**20
    print(f"causal attention fwd+bwd, B1 H{HEADS} L{args.length} D{HEAD_DIM} float32; "
          f"one [L, L] float32 score matrix per head would be {scores_mb:.0f} MB")
    # PyTorch's dropout path materialises those scores several times over: not run by default.
    runs = [(fw, 0.0) for fw in args.frameworks.split(",")] + [("orchard", 0.1)]
    for fw, drop in runs:
        r = peak_memory_mb(fw, args.length, drop)
        what = f"{fw:<8} dropout {drop}"
        if "error" in r:
            print(f"{what}: error: {r['error']}")
        else:
            print(f"{what}: peak RSS growth {r['growth_mb']:.0f} MB (inputs {r['inputs_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
