"""The text table and the PNG chart, both built from run.py's result dict."""
from registry import FRAMEWORKS


def _num(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def _time(s):
    return f"{_num(s * 1e3)} ms" if s >= 1e-3 else f"{_num(s * 1e6)} us"


def _cell(row):
    if row is None:
        return "n/a"
    if row["error"]:
        return "error"
    flag = " !" if row["check"] not in (None, "ok", "reference", "skipped") else ""
    if row["unit"] == "ms":
        return _time(row["median_s"]) + flag
    return f"{_num(row['value'])} ({_time(row['median_s'])}){flag}"


def progress_line(row):
    what = f"{row['workload']:<10} {row['framework']:<8}"
    if row["error"]:
        return f"{what} error: {row['error']}"
    peak = f", peak memory +{row['peak_mb']:.0f} MB" if row.get("peak_mb") is not None else ""
    unit = "" if row["unit"] == "ms" else f" {row['unit']}"  # a time cell carries its own unit
    return f"{what} {_cell(row)}{unit} on {row['device']}{peak} [check: {row['check']}]"


def _ratio(r):
    return "-" if r is None else f"{r:.2f}x"


def _memory(s):
    m = s.get("memory")
    if not m:
        return "-"
    return f"{m['orchard_mb']:.0f} {'<=' if m['met'] else '>'} {m['other_mb']:.0f} {m['framework']}"


def _met(s):
    """Whether Orchard met the speed target and, where measured, the memory one."""
    target, mem = s["target"], s.get("memory")
    if not target or target["met"] is None:
        return "-"
    return "yes" if target["met"] and (not mem or mem["met"]) else "NO"


def table(result):
    env, rows = result["environment"], result["results"]
    fws = [f for f in FRAMEWORKS if f in env["versions"]]
    others = [f for f in fws if f != "orchard"]
    head = ["workload", "size", "unit", "device"] + fws + [f"orch/{f}" for f in others] + [
        "vs best", "target", "peak MB", "met"]
    lines = [head]
    for s in result["summary"]:
        by_fw = {r["framework"]: r for r in rows if r["workload"] == s["workload"]}
        any_row = next(iter(by_fw.values()))
        orch = by_fw.get("orchard")
        best, target = s["best_other"], s["target"]
        lines.append(
            [s["workload"], any_row["label"],
             s["unit"] + (" ^" if any_row["higher_is_better"] else " v"),
             (orch or {}).get("device") or "-"]
            + [_cell(by_fw.get(f)) for f in fws]
            + [_ratio(s["ratios"].get(f)) for f in others]
            + [f"{_ratio(best['ratio'])} {best['framework']}" if best else "-",
               f">= {target['ratio']:.2f}x {target['framework']}" if target else "-", _memory(s), _met(s)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))

    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    notes = [f"{env['cpu']} ({env['cpu_count']} cores)" + (f", {env['gpu']}" if env.get("gpu") else "")
             + f", {versions}"
             + (f", torch threads {env['torch_threads']}" if "torch_threads" in env else ""),
             f"median of {env['repeat']} runs after {env['warmup']} warm-ups"
             + (" (quick sizes)" if env["quick"] else "") + "; cells: figure (median time)",
             "^ higher is better, v lower is better; orch/X = X's time / Orchard's time "
             "(> 1: Orchard faster); 'vs best' is against the fastest other framework"]
    if any(s.get("memory") for s in result["summary"]):
        notes.append("peak MB: growth of the peak RSS over a few calls in a fresh process, Orchard's against "
                     "the target framework's; met needs it no higher")
    busy = env.get("others_cpu_busy")
    if busy is not None and busy > 0.1:
        notes.append(f"WARNING: other processes used {busy:.0%} of the CPU during the run: "
                     "figures are unreliable")
    if env["missing"]:
        notes.append("not installed: " + ", ".join(env["missing"]))
    errors = [r for r in rows if r["error"] or r["check"] not in (None, "ok", "reference", "skipped")]
    for r in errors:
        notes.append(f"! {r['workload']}/{r['framework']}: {r['error'] or r['check']}")
    return "\n".join(notes + [""] + text)


def chart(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = result["summary"]
    cols = min(3, len(summaries)) or 1
    rows_n = (len(summaries) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.6 * cols, 3.6 * rows_n), squeeze=False)
    colors = {"orchard": "#2e7d32", "numpy": "#1565c0", "torch": "#ef6c00", "torch.compile": "#ffa726",
              "mlx": "#6a1b9a"}
    for ax, s in zip(axes.flat, summaries):
        rows = [r for f in FRAMEWORKS for r in result["results"]
                if r["workload"] == s["workload"] and r["framework"] == f and r["value"]]
        names = [f"{r['framework']}\n{r['device']}" for r in rows]
        values = [r["value"] for r in rows]
        bars = ax.bar(names, values, color=[colors.get(r["framework"], "grey") for r in rows])
        ax.bar_label(bars, labels=[_num(v) for v in values], fontsize=8)
        ax.margins(y=0.15)
        target = s["target"]
        ref = next((r for r in rows if target and r["framework"] == target["framework"]), None)
        if ref is not None:
            hib = ref["higher_is_better"]
            level = ref["value"] * target["ratio"] if hib else ref["value"] / target["ratio"]
            ax.axhline(level, color="red", linestyle="--", linewidth=1,
                       label=f"target {target['ratio']:.2f}x {target['framework']}")
            ax.legend(fontsize=7, loc="best")
        arrow = "higher" if rows and rows[0]["higher_is_better"] else "lower"
        label = rows[0]["label"] if rows else ""
        ax.set_title(f"{s['workload']}: {label}\n{s['unit']} ({arrow} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(summaries):]:
        ax.axis("off")
    env = result["environment"]
    fig.suptitle(f"Orchard benchmarks, {env['time']}, {env['cpu']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
