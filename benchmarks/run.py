#!/usr/bin/env python3
"""Time Orchard against NumPy, PyTorch and (when installed) MLX, in one run.

    PYTHONPATH=build-dev/python python benchmarks/run.py [--only add,sum] [--repeat 10] [--quick]
                                                         [--out DIR] [--frameworks orchard,numpy]
                                                         [--device cpu|metal|cuda]

--device cuda runs Orchard and PyTorch on the same NVIDIA GPU, eager and torch.compile'd, at GPU sizes.

Prints a table, and writes results.json, table.txt and bench.png to DIR (runs/bench-<timestamp>).
Ratios are the other framework's median time over Orchard's: > 1 means Orchard is faster.
"""
import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import frameworks  # noqa: E402
import memory  # noqa: E402
import report  # noqa: E402
import workloads_core  # noqa: E402,F401  (registers the core workloads)
import workloads_autograd  # noqa: E402,F401  (registers the training-step workloads)
import workloads_attention  # noqa: E402,F401  (registers the FlashAttention workloads)
import workloads_gpt2  # noqa: E402,F401  (registers the GPT-2 training workload)
import workloads_gpt2_decode  # noqa: E402,F401  (registers the GPT-2 decoding workloads)
from registry import FRAMEWORKS, REGISTRY, UNITS, default_frameworks, size_mode  # noqa: E402
from timing import Timed, time_interleaved  # noqa: E402


def _check(workload, got, reference):
    if workload.check is None or reference is None:
        return "skipped"
    got = np.asarray(got, dtype=np.float64)
    if got.shape != reference.shape:
        return f"shape {got.shape} != {reference.shape}"
    rtol, atol = workload.check
    if np.allclose(got, reference, rtol=rtol, atol=atol):
        return "ok"
    return f"max abs err {np.max(np.abs(got - reference)):.3g}"


def _error_text(e):
    return f"{type(e).__name__}: {e}"


def prepare(workload, fw, size, inputs, reference, is_reference):
    """Sets up `fw` running `workload` and makes the first call (device, correctness, first warm-up).
    Returns (row, run or None after an error, output as NumPy if it is the reference)."""
    unit = UNITS[workload.unit]
    row = dict(workload=workload.name, label=workload.label(**size), framework=fw.name,
               version=fw.version, device=None, unit=unit.name,
               higher_is_better=unit.higher_is_better, size=size, work=workload.work(**size),
               median_s=None, min_s=None, max_s=None, times_s=[], value=None, check=None,
               error=None, peak_mb=None)
    ref_out = None
    try:
        with fw.context():
            run = workload.impl(fw.name)(**fw.convert_inputs(inputs))
            out = run()
            fw.sync(out)
            row["device"] = fw.device(out)
            if workload.check is not None:
                got = fw.to_numpy(out)
                if is_reference:
                    ref_out, row["check"] = np.asarray(got, dtype=np.float64), "reference"
                else:
                    row["check"] = _check(workload, got, reference)
            del out
    except Exception as e:  # one broken framework must not sink the run
        row["error"] = _error_text(e)
        return row, None, None
    return row, run, ref_out


def measure(workload, fws, size, inputs, repeat, warmup):
    """One row per framework: timed one after the other, or in interleaved rounds when the workload
    asks for it (Workload.interleave). The outputs are checked against NumPy's in runs with NumPy, else
    against PyTorch's (a CUDA run's): that framework runs first."""
    rows, runs, reference = [], {}, None
    ref_name = "numpy" if "numpy" in fws else "torch"
    for name in sorted(fws, key=lambda f: f != ref_name):
        fw = fws[name]
        if workload.impl(name) is None:
            continue
        row, run, ref_out = prepare(workload, fw, size, inputs, reference, is_reference=name == ref_name)
        reference = ref_out if ref_out is not None else reference
        rows.append(row)
        if run is not None:
            runs[name] = Timed(run, fw.sync, fw.context)
    groups = [runs] if workload.interleave else [{name: run} for name, run in runs.items()]
    timings, errors = {}, {}
    for group in groups:
        t, e = time_interleaved(group, repeat=repeat, warmup=max(0, warmup - 1))
        timings.update(t)
        errors.update(e)
    unit = UNITS[workload.unit]
    for row in rows:
        if row["framework"] in errors:
            row["error"] = _error_text(errors[row["framework"]])
        t = timings.get(row["framework"])
        if t is not None:
            row.update(median_s=t.median_s, min_s=t.min_s, max_s=t.max_s, times_s=t.times_s,
                       value=unit.figure(row["work"], t.median_s))
    return rows


def summarize(workload, rows):
    """Orchard's ratios against each other framework, the best other one, and the target."""
    t = {r["framework"]: r["median_s"] for r in rows if r["median_s"]}
    ratios = {fw: t[fw] / t["orchard"] for fw in t if fw != "orchard"} if "orchard" in t else {}
    best = min(ratios, key=ratios.get) if ratios else None  # the fastest other framework
    summary = dict(workload=workload.name, unit=workload.unit, ratios=ratios,
                   best_other=dict(framework=best, ratio=ratios[best]) if best else None,
                   target=None)
    if workload.target:
        fw, need = workload.target
        got = ratios.get(fw)
        summary["target"] = dict(framework=fw, ratio=need, got=got,
                                 met=None if got is None else got >= need)
    peaks = {r["framework"]: r["peak_mb"] for r in rows if r["peak_mb"] is not None}
    if workload.memory_calls and workload.target and {"orchard", workload.target[0]} <= peaks.keys():
        other = workload.target[0]
        summary["memory"] = dict(framework=other, orchard_mb=peaks["orchard"], other_mb=peaks[other],
                                 met=peaks["orchard"] <= peaks[other])
    return summary


def _cpu_seconds():
    """(busy, total) CPU seconds of all cores since boot and the CPU seconds of this process and its
    finished children (the memory measurements), or None."""
    own = sum(os.times()[:4])
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except OSError:  # not Linux
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz, own


def _others_busy(start, end):
    """Fraction of all cores that other processes kept busy between two _cpu_seconds()."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    others = (end[0] - start[0]) - (end[2] - start[2])
    return round(max(0.0, others / (end[1] - start[1])), 3)


def _environment(fws, missing, args):
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    env = dict(time=datetime.datetime.now().isoformat(timespec="seconds"),
               host=platform.node(), platform=platform.platform(), cpu=cpu,
               cpu_count=os.cpu_count(), python=platform.python_version(),
               versions={name: fw.version for name, fw in fws.items()}, missing=missing,
               repeat=args.repeat, warmup=args.warmup, quick=args.quick, orchard_device=args.device,
               loadavg_start=os.getloadavg())
    if "torch" in fws:
        env["torch_threads"] = fws["torch"].mod.get_num_threads()
    torch = next((fw.mod for fw in fws.values() if fw.module_name == "torch"), None)
    if args.device == "cuda" and torch is not None:
        env["gpu"] = torch.cuda.get_device_name()
    return env


def run_all(args, log=lambda msg: print(msg, file=sys.stderr, flush=True)):
    mode = size_mode(args.device, args.quick)
    names = args.only.split(",") if args.only else [n for n, w in REGISTRY.items() if mode in w.sizes]
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {', '.join(REGISTRY)}")
    unsized = [n for n in names if mode not in REGISTRY[n].sizes]
    if unsized:
        raise SystemExit(f"workload(s) {unsized} have no {mode!r} sizes")
    wanted = args.frameworks.split(",") if args.frameworks else default_frameworks(args.device)
    fws, missing = frameworks.load([f for f in FRAMEWORKS if f in wanted], args.device)
    # Peak RSS says nothing of GPU memory: no memory cells on CUDA.
    measure_memory = args.memory and args.device != "cuda"
    cpu_start = _cpu_seconds()
    result = dict(environment=_environment(fws, missing, args), results=[], summary=[])
    for name in names:
        workload = REGISTRY[name]
        size = workload.sizes[mode]
        inputs = workload.inputs(**size)
        rows = measure(workload, fws, size, inputs, args.repeat, args.warmup)
        for row in rows:
            if workload.memory_calls and measure_memory and not row["error"]:
                peak = memory.peak_growth_mb(memory.workload_calls, name, row["framework"], size,
                                             workload.memory_calls, args.device)
                row["peak_mb"] = peak.get("growth_mb")
                row["error"] = peak.get("error") and f"peak memory: {peak['error']}"
            log(report.progress_line(row))
        result["results"] += rows
        result["summary"].append(summarize(workload, rows))
    result["environment"].update(loadavg_end=os.getloadavg(),
                                 others_cpu_busy=_others_busy(cpu_start, _cpu_seconds()))
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", help="comma-separated workload names: " + ", ".join(REGISTRY))
    p.add_argument("--repeat", type=int, default=10, help="timed runs per row (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test), on any device")
    p.add_argument("--frameworks", help="comma-separated subset of " + ", ".join(FRAMEWORKS)
                   + " (default: all but torch.compile; on cuda orchard, torch, torch.compile)")
    p.add_argument("--out", help="output directory (default runs/bench-<timestamp>)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the peak memory of workloads that measure it (fresh processes; never on cuda)")
    p.add_argument("--device", default="cpu", choices=["cpu", "metal", "cuda"],
                   help="Orchard's device (rows say where kernels ran: 'metal (emulated)' off Apple GPUs);\n"
                        "cuda: PyTorch on the same GPU too, GPU-sized workloads (those with a 'cuda' size)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else HERE.parent / "runs" / f"bench-{stamp}"
    result = run_all(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    table = report.table(result)
    (out / "table.txt").write_text(table + "\n")
    print(table)
    report.chart(result, out / "bench.png")
    print(f"\nwrote {out}/results.json, table.txt, bench.png")
    return out


if __name__ == "__main__":
    main()
