"""Median-of-N wall-clock timing, of one framework or of several interleaved round by round.

The caller builds the inputs and closes over them in `run`, so allocating the inputs is never timed.
`run()` must create and return its output: allocating the output is part of the op, as a user pays
it. `sync(out)` waits for asynchronous devices (Metal, MLX's lazy graphs) before the clock stops.
Freeing the output happens after the clock stops.
"""
import contextlib
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


@dataclass
class Timed:
    """What one framework runs: `run()` makes an output, `sync(out)` waits for it, and every call is
    made inside `context()`."""
    run: object
    sync: object = lambda out: None
    context: object = contextlib.nullcontext


# Pause before timing a framework right after another one: NumPy's OpenBLAS workers busy-wait for
# about 0.1 s after each call (PyTorch's OpenMP workers for a few ms), on the cores the next
# framework is timed on.
SETTLE_S = 0.25


def time_interleaved(runs, repeat=10, warmup=2):
    """`runs` maps names to Timed. Each is called `warmup` times untimed; then `repeat` rounds call
    each once, timed. Interleaving gives every framework the same share of a machine whose speed
    drifts (other tenants, clocks), so their ratio holds steadier than timing them one after the
    other. The first call, and every call following another framework's, waits SETTLE_S first.
    Returns ({name: Timing}, {name: exception}); a run that raises is dropped from the rounds."""
    def call(timed):
        with timed.context():
            start = time.perf_counter()
            out = timed.run()
            timed.sync(out)
            return time.perf_counter() - start

    times, errors, last = {name: [] for name in runs}, {}, None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection landing inside one sample would only add noise
    try:
        for round_ in range(-warmup, max(1, repeat)):
            for name, timed in runs.items():
                if name in errors:
                    continue
                if name != last:
                    time.sleep(SETTLE_S)
                    last = name
                try:
                    elapsed = call(timed)
                except Exception as e:  # one broken framework must not sink the others
                    errors[name] = e
                    continue
                if round_ >= 0:
                    times[name].append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(t) for name, t in times.items() if name not in errors}, errors
