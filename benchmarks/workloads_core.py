"""Core workloads: memory-bound copy/add/sum/softmax/layer norm in float32 and a compute-bound matmul
(float32, and bfloat16 on GPUs).

Bytes count what an ideal kernel must move (each input read once, each output written once). On CUDA the
memory-bound ones run on [8192, 8192] (256 MB) and the matmul on 4096 x 4096 x 4096.
"""
import numpy as np

from registry import Workload, as_is, register

F32 = 4


def _randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


class _Square(Workload):
    """An [n, n] float32 input `a`."""
    unit = "GB/s"
    sizes = {"full": dict(n=4096), "quick": dict(n=256), "cuda": dict(n=8192)}

    def inputs(self, n):
        return dict(a=_randn(n, n))


@register
class Copy(_Square):
    name = "copy"

    def label(self, n):
        return f"clone [{n},{n}]"

    def work(self, n):
        return 2 * n * n * F32  # read + write

    def numpy(self, a):
        return lambda: a.copy()

    def orchard(self, a):
        return lambda: a.clone()

    def torch(self, a):
        return lambda: a.clone()
    # No MLX row: MLX arrays are immutable and it has no copy op.


@register
class BroadcastAdd(_Square):
    name = "add"
    target = ("numpy", 1.0)

    def label(self, n):
        return f"[{n},{n}] + [{n}]"

    def work(self, n):
        return (2 * n * n + n) * F32  # read a, write out, read b

    def inputs(self, n):
        return dict(a=_randn(n, n), b=_randn(n, seed=1))

    def numpy(self, a, b):
        return lambda: a + b

    def orchard(self, a, b):
        return lambda: a + b

    def torch(self, a, b):
        return lambda: a + b

    def mlx(self, a, b):
        return lambda: a + b


@register
class SumRows(_Square):
    name = "sum"
    target = ("torch", 1.0)
    check = (1e-4, 1e-3)  # summation order differs

    def label(self, n):
        return f"sum(dim=1) [{n},{n}]"

    def work(self, n):
        return n * n * F32  # input read

    def numpy(self, a):
        return lambda: a.sum(axis=1)

    def orchard(self, a):
        return lambda: a.sum(dim=1)

    def torch(self, a):
        return lambda: a.sum(dim=1)

    def mlx(self, a):
        return lambda: a.sum(axis=1)


@register
class Softmax(_Square):
    name = "softmax"
    target = ("torch", 1.0)
    check = (1e-4, 1e-6)
    torch_compile = True

    def label(self, n):
        return f"softmax(dim=-1) [{n},{n}]"

    def work(self, n):
        return 2 * n * n * F32  # read + write

    def numpy(self, a):
        def softmax():
            e = np.exp(a - a.max(axis=-1, keepdims=True))
            e /= e.sum(axis=-1, keepdims=True)
            return e
        return softmax

    def orchard(self, a):
        import orchard as oc
        return lambda: oc.softmax(a, -1)

    def torch(self, a, compile=as_is):
        import torch
        softmax = compile(lambda x: torch.softmax(x, -1))
        return lambda: softmax(a)

    def mlx(self, a):
        import mlx.core as mx
        return lambda: mx.softmax(a, axis=-1)


@register
class LayerNorm(_Square):
    name = "layernorm"
    target = ("torch", 1.0)
    check = (1e-4, 1e-4)
    torch_compile = True
    sizes = {k: v for k, v in _Square.sizes.items() if k != "full"}  # new: CPU full runs keep their rows

    def label(self, n):
        return f"layer_norm(last dim, affine) [{n},{n}]"

    def work(self, n):
        return (2 * n * n + 2 * n) * F32  # read a, write out, read weight and bias

    def inputs(self, n):
        return dict(a=_randn(n, n), weight=_randn(n, seed=1), bias=_randn(n, seed=2))

    def numpy(self, a, weight, bias):
        def layer_norm():
            mean = a.mean(axis=-1, keepdims=True)
            var = a.var(axis=-1, keepdims=True)
            return (a - mean) / np.sqrt(var + np.float32(1e-5)) * weight + bias
        return layer_norm

    def orchard(self, a, weight, bias):
        import orchard as oc
        return lambda: oc.nn.functional.layer_norm(a, (a.shape[-1],), weight, bias)

    def torch(self, a, weight, bias, compile=as_is):
        import torch
        layer_norm = compile(lambda x: torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, bias))
        return lambda: layer_norm(a)


@register
class Matmul(Workload):
    name = "matmul"
    unit = "GFLOP/s"
    target = ("numpy", 0.9)
    sizes = {"full": dict(n=2048), "quick": dict(n=128), "cuda": dict(n=4096)}
    check = (1e-3, 1e-3)
    dtype = "float32"  # Orchard's and PyTorch's operands are converted to it before timing

    def label(self, n):
        return f"[{n},{n}] @ [{n},{n}]" + ("" if self.dtype == "float32" else f" {self.dtype}")

    def work(self, n):
        return 2 * n ** 3

    def inputs(self, n):
        return dict(a=_randn(n, n), b=_randn(n, n, seed=1))

    def numpy(self, a, b):
        return lambda: a @ b

    def orchard(self, a, b):
        import orchard as oc
        a, b = (t.to(getattr(oc, self.dtype)) for t in (a, b))
        return lambda: a @ b

    def torch(self, a, b):
        import torch
        a, b = (t.to(getattr(torch, self.dtype)) for t in (a, b))
        return lambda: a @ b

    def mlx(self, a, b):
        return lambda: a @ b


@register
class MatmulBF16(Matmul):
    """bfloat16 operands and output (float32 accumulation): the GPU's tensor cores, cuBLAS in both."""
    name = "matmul_bf16"
    target = ("torch", 0.9)
    sizes = {k: v for k, v in Matmul.sizes.items() if k != "full"}  # new: CPU full runs keep their rows
    check = (2e-2, 5e-2)  # against PyTorch's bf16 result (NumPy has no bfloat16): output rounding
    dtype = "bfloat16"
    numpy = mlx = None


@register
class LMHeadBF16(Workload):
    """GPT-2's output layer in bfloat16, hidden [rows, width] @ wte[vocab, width].T: at vocab 50257 every
    leading dimension of the logits is odd, which cuBLAS runs far below its aligned speed (PyTorch
    eager too; torch.compile pads it)."""
    name = "lm_head_bf16"
    unit = "GFLOP/s"
    target = ("torch", 1.0)
    sizes = {"quick": dict(rows=16, width=32, vocab=101), "cuda": dict(rows=8192, width=768, vocab=50257)}
    check = (2e-2, 5e-2)

    def label(self, rows, width, vocab):
        return f"[{rows},{width}] @ [{vocab},{width}].T bfloat16"

    def work(self, rows, width, vocab):
        return 2 * rows * width * vocab

    def inputs(self, rows, width, vocab):
        return dict(hidden=_randn(rows, width), wte=_randn(vocab, width, seed=1))

    def orchard(self, hidden, wte):
        import orchard as oc
        hidden, wte = hidden.to(oc.bfloat16), wte.to(oc.bfloat16)
        return lambda: hidden @ wte.T

    def torch(self, hidden, wte):
        import torch
        hidden, wte = hidden.to(torch.bfloat16), wte.to(torch.bfloat16)
        return lambda: hidden @ wte.T
