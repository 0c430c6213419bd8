"""The host-code check (tools/metal_host_check.py, ctest `metal_host_check`) compiles the Metal glue
against Apple's metal-cpp declarations. These tests show that it passes the real glue and fails on
a copy with one planted mistake, at the planted line. The compiler: $ORCHARD_CHECK_CXX (the test
build sets it), else the ziglang wheel's clang."""
import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("metal_host_check", ROOT / "tools" / "metal_host_check.py")
host_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(host_check)

BACKEND = ROOT / "src" / "metal" / "gpu" / "metal_backend.cpp"

# name: (a line of the glue, the same line with the mistake)
MISTAKES = {
    # A misspelt method, as a misspelt selector would be in Objective-C.
    "misspelt method": ("encoder->setComputePipelineState(state);", "encoder->setComputePipelineStat(state);"),
    # The allocation's contents pointer where Metal wants its buffer.
    "wrong argument type": ("encoder->setBuffer(buffers[i], d.args[i].offset, i);",
                            "encoder->setBuffer(d.args[i].base, d.args[i].offset, i);"),
}


def test_metal_glue_compiles_against_metal_cpp():
    failures = host_check.check(host_check.GLUE)
    assert not failures, "\n".join(f"{source}:\n{diagnostics}" for source, diagnostics in failures)


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_metal_host_check_rejects_a_planted_mistake(mistake, tmp_path):
    line, wrong = MISTAKES[mistake]
    text = BACKEND.read_text()
    assert text.count(line) == 1, f"the glue no longer has the line to plant the mistake in: {line}"
    planted = tmp_path / BACKEND.name
    planted.write_text(text.replace(line, wrong))
    number = text[:text.index(line)].count("\n") + 1

    failures = host_check.check([planted])
    assert len(failures) == 1, f"the check accepted the glue with a {mistake}"
    diagnostics = failures[0][1]
    assert f"{BACKEND.name}:{number}:" in diagnostics and "error" in diagnostics, diagnostics
