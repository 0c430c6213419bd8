"""GPT-2 training workload: one AdamW step of the same small GPT-2 in Orchard and in PyTorch.

Orchard runs orchard.models.GPT2 (causal FlashAttention); PyTorch runs transformers' GPT2LMHeadModel with eager
attention. Both: float32, dropout 0, mean cross-entropy on next-token targets, torch's AdamW defaults. Each call
is one step (forward, backward, optimizer update, grads cleared) and returns that step's loss. The two models
start from their own random weights, so the losses are not compared. Peak memory: the growth of the peak RSS
over three steps of a freshly built model, one process per framework (run.py, memory.py).

On CUDA the bf16 steps train GPT-2 124M (12 x 768, 12 heads, vocab 50257, seq 1024, batch 8) on the GPU of the
inputs, PyTorch with SDPA attention (and with eager attention in gpt2_train_bf16_eager); the torch.compile row
compiles the forward pass and loss (the optimizer step stays eager in both).
"""
import contextlib

import numpy as np

from registry import Workload, as_is, register

LR = 3e-4


def _config_fields(layers, width, heads, seq, vocab):
    return dict(vocab_size=vocab, n_positions=seq, n_embd=width, n_layer=layers, n_head=heads,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


@register
class GPT2TrainStep(Workload):
    name = "gpt2_train"
    unit = "tokens/s"
    target = ("torch", 1.5)
    check = None
    memory_calls = 3  # the first step also allocates AdamW's moments
    interleave = True  # ~1 s steps: the machine's drift over a run exceeds the differences measured
    torch_compile = True
    sizes = {"full": dict(layers=4, width=256, heads=4, seq=256, batch=8, vocab=8192),
             "quick": dict(layers=1, width=32, heads=2, seq=16, batch=2, vocab=64)}

    def label(self, layers, width, heads, seq, batch, vocab):
        return f"GPT-2 {layers}x{width}, {heads} heads, seq {seq}, batch {batch}, vocab {vocab}, AdamW step"

    def work(self, layers, width, heads, seq, batch, vocab):
        return float(batch * seq)

    def inputs(self, layers, width, heads, seq, batch, vocab):
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, vocab, (batch, seq + 1))
        return dict(idx=tokens[:, :-1].copy(), targets=tokens[:, 1:].copy(),
                    config=_config_fields(layers, width, heads, seq, vocab))

    attention = "eager"  # transformers' attention implementation for the PyTorch model

    def precision(self, framework, device_type):
        """The region each framework's forward pass runs in: none here, autocast in the bf16 variant."""
        return contextlib.nullcontext()

    def orchard(self, idx, targets, config):
        import orchard as oc
        from orchard.models import GPT2, GPT2Config
        from orchard.optim import AdamW
        oc.manual_seed(0)
        model = GPT2(GPT2Config(**config)).to(idx.device)
        optimizer = AdamW(model.parameters(), lr=LR)

        def step():
            with self.precision(oc, idx.device.type):
                _, loss = model(idx, targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return loss.detach()
        return step

    def torch(self, idx, targets, config, compile=as_is):
        import torch
        import transformers
        torch.manual_seed(0)
        # The runner times PyTorch under inference_mode: build and train outside it, on ordinary tensors.
        with torch.inference_mode(False):
            model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config, attn_implementation=self.attention))
            model.to(idx.device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
            idx, targets = idx.clone(), targets.clone()

        def forward(idx, targets):
            with self.precision(torch, idx.device.type):
                logits = model(idx).logits
                return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        forward = compile(forward)

        def step():
            with torch.inference_mode(False), torch.enable_grad():
                loss = forward(idx, targets)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                return loss.detach()
        return step


@register
class GPT2TrainStepBF16(GPT2TrainStep):
    """The same step in bfloat16 mixed precision: Orchard under orchard.autocast, PyTorch under torch.autocast
    with its SDPA attention (its fastest CPU path). Weights, gradients and AdamW stay float32 in both."""
    name = "gpt2_train_bf16"
    target = ("torch", 1.0)
    attention = "sdpa"
    sizes = {**GPT2TrainStep.sizes,
             "cuda": dict(layers=12, width=768, heads=12, seq=1024, batch=8, vocab=50257)}  # GPT-2 124M

    def label(self, **size):
        return super().label(**size) + ", bf16 autocast"

    def precision(self, framework, device_type):
        return framework.autocast(device_type, dtype=framework.bfloat16)


@register
class GPT2TrainStepBF16Eager(GPT2TrainStepBF16):
    """The bf16 step with transformers' eager attention (matmul, mask, softmax, matmul) instead of SDPA; on
    GPUs only (and --quick), compiled in gpt2_train_bf16 already."""
    name = "gpt2_train_bf16_eager"
    attention = "eager"
    torch_compile = False
    sizes = {k: v for k, v in GPT2TrainStepBF16.sizes.items() if k != "full"}  # CPU full runs keep their rows

    def label(self, **size):
        return super().label(**size) + ", eager attention in torch"
