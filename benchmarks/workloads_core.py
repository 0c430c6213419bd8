"""Core float32 workloads: memory-bound copy/add/sum/softmax and a compute-bound matmul.

Bytes count what an ideal kernel must move (each input read once, each output written once).
"""
import numpy as np

from registry import Workload, register

F32 = 4


def _randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


class _Square(Workload):
    """An [n, n] float32 input `a`."""
    unit = "GB/s"
    sizes = {"full": dict(n=4096), "quick": dict(n=256)}

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

    def torch(self, a):
        import torch
        return lambda: torch.softmax(a, -1)

    def mlx(self, a):
        import mlx.core as mx
        return lambda: mx.softmax(a, axis=-1)


@register
class Matmul(Workload):
    name = "matmul"
    unit = "GFLOP/s"
    target = ("numpy", 0.9)
    sizes = {"full": dict(n=2048), "quick": dict(n=128)}
    check = (1e-3, 1e-3)

    def label(self, n):
        return f"[{n},{n}] @ [{n},{n}]"

    def work(self, n):
        return 2 * n ** 3

    def inputs(self, n):
        return dict(a=_randn(n, n), b=_randn(n, n, seed=1))

    def numpy(self, a, b):
        return lambda: a @ b

    def orchard(self, a, b):
        return lambda: a @ b

    def torch(self, a, b):
        return lambda: a @ b

    def mlx(self, a, b):
        return lambda: a @ b
