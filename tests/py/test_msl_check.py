"""The strict MSL check (tools/msl_check.py) passes on the kernels and rejects each kind of mistake
it exists for, planted in copies of real kernels."""
import os
import pathlib
import re
import shlex
import shutil
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import msl_check  # noqa: E402


def check_cxx():
    """The clang the build found (the ctest passes ORCHARD_CHECK_CXX), else the ziglang wheel's."""
    command = os.environ.get("ORCHARD_CHECK_CXX")
    return shlex.split(command) if command else [sys.executable, "-m", "ziglang", "c++"]


def run_check(kernel_dir, capsys):
    status = msl_check.main([str(kernel_dir), "--cxx"] + check_cxx())
    return status, capsys.readouterr().out


def kernels_with(tmp_path, family, old="", new=""):
    """A copy of the kernel headers and one family, with `old` replaced by `new` in the family."""
    kernels = tmp_path / "metal"
    kernels.mkdir()
    for header in (ROOT / "metal").glob("*.h"):
        shutil.copy(header, kernels)
    (tmp_path / "src" / "core").mkdir(parents=True)
    for shared in ("philox.h", "op_table.h"):  # included as ../src/core
        shutil.copy(ROOT / "src" / "core" / shared, tmp_path / "src" / "core")
    text = (ROOT / "metal" / family).read_text()
    assert text.count(old) >= 1, f"{old!r} is not in {family} any more: update the planted mistake"
    (kernels / family).write_text(text.replace(old, new, 1))
    return kernels


def test_kernels_pass(capsys):
    status, out = run_check(ROOT / "metal", capsys)
    assert status == 0, out
    assert re.search(r"msl_check: \d+ units, [1-9]\d* kernels, 0 findings", out), out


MATMUL_NAIVE = "  U sum = 0;\n"
PLANTED = {
    # The address spaces: a threadgroup tile where a device pointer is expected, and where a thread
    # pointer is (the struct-copy allowance lets no pointer through).
    "threadgroup_as_device": ("attention.metal", "attn_score(x, grow, c0 + col + j, b, h, mask, p)",
                              "attn_score(x, grow, c0 + col + j, b, h, s_tile, p)",
                              r"attention\.metal:\d+: error: no matching function for call to 'attn_score'"
                              r"[\s\S]*cannot pass pointer to address space '3' as a pointer to address space '1'"),
    "threadgroup_as_thread": ("matmul.metal", "  simdgroup_float8x8 acc[2][2];\n",
                              "  simdgroup_float8x8 acc[2][2];\n  float* tile = a_tile;\n",
                              r"matmul\.metal:\d+: error: cannot initialize a variable of type 'float \*' with an "
                              r"lvalue of type 'threadgroup float \*'"),
    # Simdgroup matrices: 16-bit operands may accumulate into float, but a and b share one type.
    "mixed_operands": ("matmul.metal", "simdgroup_multiply_accumulate(acc[i][j], a_frag[i], b_frag[j], acc[i][j])",
                       "simdgroup_multiply_accumulate(acc[i][j], a_frag[i], acc[i][j], acc[i][j])",
                       r"matmul\.metal:\d+: error: no matching function for call to 'simdgroup_multiply_accumulate'"),
    # The library: no std::, no C library, no system header.
    "std_call": ("elementwise.metal", "const float a = fabs(x);", "const float a = std::fabs(x);",
                 r"elementwise\.metal:\d+: error: use of undeclared identifier 'std'"),
    "c_library_call": ("elementwise.metal", "const float a = fabs(x);", "const float a = fabsf(x);",
                       r"elementwise\.metal:\d+: error: use of undeclared identifier 'fabsf'"),
    "system_header": ("matmul.metal", '#include "common.h"\n', '#include "common.h"\n#include <math.h>\n',
                      r"matmul\.metal:\d+: (includes \S*math\.h: MSL offers no such header|"
                      r"fatal error: 'math\.h' file not found)"),
    # No double: the literal (lint) and the arithmetic it brings (compiler), and the keyword.
    "double_literal": ("elementwise.metal", "1.0f + 0.3275911f * a", "1.0f + 0.3275911 * a",
                       (r"elementwise\.metal:\d+: floating literal 0\.3275911 is not float",
                        r"elementwise\.metal:\d+: error: implicit conversion increases floating-point precision: "
                        r"'(const )?float' to 'double'")),
    "double_type": ("matmul.metal", MATMUL_NAIVE, MATMUL_NAIVE + "  double scale = 1;\n",
                    r"matmul\.metal:\d+: error: MSL has no double"),
    # One instantiation and one host name per kernel.
    "duplicate_instantiation": ("matmul.metal", 'ORCHARD_KERNEL("matmul_naive_int64", matmul_naive, int64_t, uint64_t)',
                                'ORCHARD_KERNEL("matmul_naive_int64", matmul_naive, int64_t, uint64_t)\n'
                                'ORCHARD_KERNEL("matmul_naive_long", matmul_naive, int64_t, uint64_t)',
                                r"matmul\.metal:\d+: error: duplicate explicit instantiation of "
                                r"'matmul_naive<long, unsigned long>'"),
    "duplicate_host_name": ("matmul.metal", 'ORCHARD_KERNEL("matmul_naive_int64", matmul_naive, int64_t, uint64_t)',
                            'ORCHARD_KERNEL("matmul_naive_int64", matmul_naive, int64_t, uint64_t)\n'
                            'ORCHARD_KERNEL("matmul_naive_int32", matmul_naive, uint32_t, uint32_t)',
                            r'matmul\.metal:\d+: host name "matmul_naive_int32" is already given at '
                            r"\S*matmul\.metal:\d+"),
    # The lint rules.
    "virtual": ("matmul.metal", "template <typename T, typename U>\n",
                "struct Shape { virtual float area() const; };\ntemplate <typename T, typename U>\n",
                r"matmul\.metal:\d+: virtual function: MSL has no virtual functions"),
    "exception": ("matmul.metal", "if (row >= p.m || col >= p.n) return;", "if (row >= p.m || col >= p.n) throw 1;",
                  r"matmul\.metal:\d+: exception: MSL has no exceptions"),
    "new_delete": ("matmul.metal", MATMUL_NAIVE, MATMUL_NAIVE + "  U* scratch = new U[4];\n  delete[] scratch;\n",
                   (r"matmul\.metal:\d+: new: MSL has no dynamic allocation",
                    r"matmul\.metal:\d+: delete: MSL has no dynamic allocation")),
    "lambda": ("matmul.metal", MATMUL_NAIVE, MATMUL_NAIVE + "  auto twice = [](U x) { return x + x; };\n",
               r"matmul\.metal:\d+: lambda: MSL has no lambdas"),
    "goto": ("matmul.metal", "if (row >= p.m || col >= p.n) return;",
             "if (row >= p.m || col >= p.n) goto done;\n  done:", r"matmul\.metal:\d+: goto: MSL has no goto"),
    "recursion": ("matmul.metal", "template <typename T, typename U>\n",
                  "inline uint triangle(uint n) { return n == 0 ? 0 : n + triangle(n - 1); }\n"
                  "template <typename T, typename U>\n",
                  r"matmul\.metal:\d+: recursion: triangle calls itself; MSL has no recursion"),
}


@pytest.mark.parametrize("mistake", sorted(PLANTED))
def test_planted_mistake_is_rejected(mistake, tmp_path, capsys):
    family, old, new, expected = PLANTED[mistake]
    status, out = run_check(kernels_with(tmp_path, family, old, new), capsys)
    assert status == 1, out
    for pattern in (expected,) if isinstance(expected, str) else expected:
        assert re.search(pattern, out), out


def test_findings_name_the_original_line(tmp_path, capsys):
    # The unit inlines common.h and params.h above the family; the finding points into the family.
    kernels = kernels_with(tmp_path, "matmul.metal", MATMUL_NAIVE, MATMUL_NAIVE + "  float* bad = a;\n")
    line = (kernels / "matmul.metal").read_text().splitlines().index("  float* bad = a;") + 1
    status, out = run_check(kernels, capsys)
    assert status == 1 and re.search(rf"matmul\.metal:{line}: error: cannot initialize", out), out


def test_unmodified_copy_passes(tmp_path, capsys):
    status, out = run_check(kernels_with(tmp_path, "reduce.metal"), capsys)
    assert status == 0, out  # reduce.metal copies structs through threadgroup memory, as MSL allows


def test_emulator_source_keeps_kernel_lines(tmp_path):
    # tools/metal_codegen.py's emulator mode: after `#line 1`, line k of the generated C++ is line k
    # of the kernel file (its includes made absolute), so compile errors and debuggers point at it.
    import metal_codegen
    for family in sorted((ROOT / "metal").glob("*.metal")):
        out = tmp_path / f"emulated_{family.stem}.cpp"
        metal_codegen.emulator(out, family)
        generated = out.read_text().splitlines()
        body = generated[generated.index(f'#line 1 "{family}"') + 1:]
        for k, line in enumerate(family.read_text().splitlines()):
            include = re.fullmatch(r'#include "(.*)"', line)
            expected = f'#include "{(family.parent / include.group(1)).resolve()}"' if include else \
                metal_codegen.THREADGROUP_ATTRIBUTE.sub("", line)
            assert body[k] == expected, f"{family.name}:{k + 1}"
