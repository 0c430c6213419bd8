"""Median-of-N wall-clock timing.

The caller builds the inputs and closes over them in `run`, so allocating the inputs is never timed.
`run()` must create and return its output: allocating the output is part of the op, as a user pays
it. `sync(out)` waits for asynchronous devices (Metal, MLX's lazy graphs) before the clock stops.
Freeing the output happens after the clock stops.
"""
import gc
import statistics
import time
from dataclasses import dataclass


@dataclass
class Timing:
    times_s: list

    @property
    def median_s(self):
        return statistics.median(self.times_s)

    @property
    def min_s(self):
        return min(self.times_s)

    @property
    def max_s(self):
        return max(self.times_s)


def time_callable(run, sync=lambda out: None, repeat=10, warmup=2):
    """Call `run` `warmup` times untimed, then `repeat` times timed; return the per-call times."""
    for _ in range(warmup):
        sync(run())
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection landing inside one sample would only add noise
    try:
        for _ in range(max(1, repeat)):
            start = time.perf_counter()
            out = run()
            sync(out)
            times.append(time.perf_counter() - start)
            del out
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(times)
