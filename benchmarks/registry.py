"""Units and the workload registry.

A workload is a class registered with `@register`. It declares

    name    short id used by `--only`
    unit    a key of UNITS
    sizes   {"full": {...}, "quick": {...}}: keyword parameters for the methods below
    target  optional (framework, ratio): Orchard must reach `ratio` times that framework
    check   optional (rtol, atol): compare each framework's output with NumPy's; None skips it
    memory_calls  optional: also measure the growth of peak memory over this many calls, in a
            fresh process per framework (memory.py); Orchard's must not exceed the target's
    interleave  True: time the frameworks in alternating rounds instead of one after the other
            (timing.time_interleaved), for calls long enough (~1 s) that the machine's speed drifts
            between frameworks; each switch costs a pause of timing.SETTLE_S

and implements

    label(**size)   -> str, what one call does, e.g. "[4096,4096] + [4096]"
    work(**size)    -> bytes (GB/s), flops (GFLOP/s), tokens (tokens/s) or steps (steps/s) per
                       call; unused for ms
    inputs(**size)  -> dict of NumPy arrays (converted to each framework's own tensors) and plain
                       values (passed through as they are)
    <framework>(**inputs) -> a zero-argument callable doing one timed call and returning its output,
                       one method per framework it supports: numpy, orchard, torch, mlx.
"""
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

FRAMEWORKS = ("orchard", "numpy", "torch", "mlx")  # display order

REGISTRY = {}


class Workload:
    name = ""
    unit = "ms"
    sizes = {"full": {}, "quick": {}}
    target = None
    check = (1e-4, 1e-5)
    memory_calls = None
    interleave = False

    def label(self, **size):
        return ", ".join(f"{k}={v}" for k, v in size.items())

    def work(self, **size):
        return 0.0

    def inputs(self, **size):
        return {}

    def impl(self, framework):
        """The setup method for `framework`, or None if this workload has none."""
        return getattr(self, framework, None) if framework in FRAMEWORKS else None


def register(cls):
    assert cls.unit in UNITS, f"{cls.__name__}: unknown unit {cls.unit!r}"
    assert cls.name and cls.name not in REGISTRY, f"{cls.__name__}: name missing or taken"
    REGISTRY[cls.name] = cls()
    return cls
