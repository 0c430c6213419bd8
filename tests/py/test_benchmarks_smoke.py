"""Smoke test for benchmarks/run.py: every registered workload at --quick sizes, one timed run.

Checks that the JSON and chart are written and that rows carry their fields; never the timings.
"""
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("orchard")
pytest.importorskip("matplotlib")

RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"

ROW_FIELDS = {"workload", "label", "framework", "version", "device", "unit", "higher_is_better",
              "size", "work", "median_s", "min_s", "max_s", "times_s", "value", "check", "error"}


def _load_runner():
    spec = importlib.util.spec_from_file_location("orchard_benchmarks_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_results(tmp_path):
    runner = _load_runner()
    runner.main(["--quick", "--repeat", "1", "--warmup", "1", "--out", str(tmp_path)])

    data = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert (tmp_path / "table.txt").read_text().strip()

    names = set(runner.REGISTRY)
    rows = data["results"]
    assert {r["workload"] for r in rows if r["framework"] == "orchard"} == names
    with_numpy = {name for name, w in runner.REGISTRY.items() if getattr(w, "numpy", None)}
    assert {r["workload"] for r in rows if r["framework"] == "numpy"} == with_numpy
    for row in rows:
        assert ROW_FIELDS <= row.keys(), row
        assert row["error"] is None, row
        checks = ("ok", "reference", "skipped") if row["workload"] in with_numpy else (None, "skipped")
        assert row["check"] in checks, row
        assert row["device"] and row["unit"] in runner.UNITS
        assert len(row["times_s"]) == 1 and row["median_s"] > 0 and row["value"] > 0
    assert [s["workload"] for s in data["summary"]] == list(runner.REGISTRY)
    for s in data["summary"]:
        assert all(ratio > 0 for ratio in s["ratios"].values())
        assert ("numpy" in s["ratios"]) == (s["workload"] in with_numpy)
        if s["target"] is not None:
            assert {"framework", "ratio", "got", "met"} <= s["target"].keys()
        # Peak memory, measured in fresh processes, when the target framework is installed.
        if runner.REGISTRY[s["workload"]].memory_calls and s["target"]["framework"] in data["environment"]["versions"]:
            assert s["memory"]["orchard_mb"] >= 0 and s["memory"]["other_mb"] >= 0
