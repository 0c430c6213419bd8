"""Units and the workload registry.

A workload is a class registered with `@register`. It declares

    name    short id used by `--only`
    unit    a key of UNITS
    sizes   {"full": {...}, "quick": {...}, "cuda": {...}}: keyword parameters for the methods below,
            one set per size mode (size_mode): a run takes the workloads that have its mode's size
    target  optional (framework, ratio): Orchard must reach `ratio` times that framework
    check   optional (rtol, atol): compare each framework's output with NumPy's; None skips it
    memory_calls  optional: also measure the growth of peak memory over this many calls, in a
            fresh process per framework (memory.py); Orchard's must not exceed the target's
    interleave  True: time the frameworks in alternating rounds instead of one after the other
            (timing.time_interleaved), for calls long enough (~1 s) that the machine's speed drifts
            between frameworks; each switch costs a pause of timing.SETTLE_S
    torch_compile  True: also a "torch.compile" row, the `torch` method given compile=torch.compile
            (default mode) to apply to its model or function; its first calls compile

and implements

    label(**size)   -> str, what one call does, e.g. "[4096,4096] + [4096]"
    work(**size)    -> bytes (GB/s), flops (GFLOP/s), tokens (tokens/s) or steps (steps/s) per
                       call; unused for ms
    inputs(**size)  -> dict of NumPy arrays (converted to each framework's own tensors) and plain
                       values (passed through as they are)
    <framework>(**inputs) -> a zero-argument callable doing one timed call and returning its output,
                       one method per framework it supports: numpy, orchard, torch, mlx. A workload
                       with torch_compile takes `compile=as_is` in `torch` and wraps what it runs in it.
"""
import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    name: str
    higher_is_better: bool
    scale: float  # figure = work / seconds / scale, or seconds * 1000 for "ms"

    def figure(self, work, seconds):
        if self.name == "ms":
            return seconds * 1e3
        return work / seconds / self.scale


UNITS = {u.name: u for u in (
    Unit("GB/s", True, 1e9),       # 1 GB = 1e9 bytes
    Unit("GFLOP/s", True, 1e9),
    Unit("tokens/s", True, 1.0),
    Unit("steps/s", True, 1.0),    # training steps
    Unit("ms", False, 1.0),
)}

FRAMEWORKS = ("orchard", "numpy", "torch", "torch.compile", "mlx")  # display order


def default_frameworks(device):
    """The frameworks a run on Orchard's `device` loads unless --frameworks names others. On CUDA the peers
    are PyTorch on the same GPU, eager and compiled (NumPy and MLX have no CUDA device); elsewhere NumPy,
    PyTorch and MLX (torch.compile only when asked for: its compilation is slow on a CPU)."""
    return ("orchard", "torch", "torch.compile") if device == "cuda" else ("orchard", "numpy", "torch", "mlx")


def size_mode(device, quick):
    """The key of Workload.sizes a run uses: small sizes for --quick, GPU sizes on CUDA, else full."""
    return "quick" if quick else "cuda" if device == "cuda" else "full"


def as_is(fn):
    """A torch method's default `compile`: plain PyTorch, nothing compiled."""
    return fn


def _torch_compile(fn):
    import torch
    return torch.compile(fn)


REGISTRY = {}


class Workload:
    name = ""
    unit = "ms"
    sizes = {"full": {}, "quick": {}}
    target = None
    check = (1e-4, 1e-5)
    memory_calls = None
    interleave = False
    torch_compile = False

    def label(self, **size):
        return ", ".join(f"{k}={v}" for k, v in size.items())

    def work(self, **size):
        return 0.0

    def inputs(self, **size):
        return {}

    def impl(self, framework):
        """The setup method for `framework`, or None if this workload has none."""
        if framework == "torch.compile":
            return functools.partial(self.torch, compile=_torch_compile) if self.torch_compile else None
        return getattr(self, framework, None) if framework in FRAMEWORKS else None


def register(cls):
    assert cls.unit in UNITS, f"{cls.__name__}: unknown unit {cls.unit!r}"
    assert cls.name and cls.name not in REGISTRY, f"{cls.__name__}: name missing or taken"
    REGISTRY[cls.name] = cls()
    return cls
