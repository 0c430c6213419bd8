"""Peak memory, measured apart from the timings: the growth of the peak resident set (VmHWM, or
ru_maxrss off Linux) while a workload runs in a fresh Python process. tracemalloc cannot see C++
allocations, and a process that already ran other work would keep that work's high-water mark.

`peak_growth_mb(setup, *args)` runs `setup(*args)` in the child: a module-level function of a
module in this directory that builds the inputs (and model) and returns a zero-argument callable.
Only the callable's growth counts, so whatever the setup keeps alive is not measured.
"""
import inspect
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import importlib, json, resource, sys
sys.path.insert(0, sys.argv[1])

def peak_kib():
    try:  # Linux: ru_maxrss would start at the parent's peak, which a forked child inherits
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform == "darwin" else peak  # bytes on macOS

run = getattr(importlib.import_module(sys.argv[2]), sys.argv[3])(*json.loads(sys.argv[4]))
before = peak_kib()
run()
after = peak_kib()
print(json.dumps(dict(growth_mb=(after - before) / 1024, peak_mb=after / 1024)))
"""


def peak_growth_mb(setup, *args, timeout=1800):
    """dict(growth_mb, peak_mb) of one fresh process running setup(*args)() (args must be JSON),
    or dict(error=the child's last line of stderr)."""
    module = Path(inspect.getfile(setup)).stem  # also right when that module runs as __main__
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(HERE), module, setup.__name__, json.dumps(args)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return dict(error=(proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def workload_calls(name, framework, size, calls, orchard_device="cpu"):
    """Setup for a registered workload: `framework`'s implementation on the workload's inputs, built
    through run.py's adapters as the timings build it, returning a callable that makes `calls` calls."""
    import frameworks
    from run import REGISTRY  # run.py imports (so registers) every workload
    workload = REGISTRY[name]
    fw = frameworks.load([framework], orchard_device)[0][framework]
    with fw.context():
        impl = workload.impl(framework)(**fw.convert_inputs(workload.inputs(**size)))

    def run():
        with fw.context():
            for _ in range(calls):
                fw.sync(impl())
    return run
