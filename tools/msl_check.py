"""The strict MSL check of Orchard's kernels (docs/ARCHITECTURE.md, "Checks of the Metal code").

    python3 tools/msl_check.py KERNEL_DIR --cxx CLANG_COMMAND...

Compiles the kernel source a Mac receives (each family with its local includes inlined, as one
library of its own, and all families together as one library) with clang as C++14 in a mode that
behaves like MSL: msl_check/msl_language.h makes device, constant and threadgroup distinct address
spaces and double an error, msl_check/include/<metal_stdlib> declares the MSL standard library and
nothing else, and __METAL_VERSION__ makes every ORCHARD_KERNEL a real explicit instantiation
carrying its [[host_name]]. Then lints what the compiler cannot see (msl_check_lint.py). Every
finding prints as FILE:LINE against the original sources; the exit status is 1 if there is any.

The units differ from the Mac's text in one way: `[[threadgroup(i)]]` attributes are blanked, since
MSL parses `threadgroup` there as an attribute name while here it is the address-space macro.
Clang's errors for what MSL allows and C++ does not are accepted by ALLOWED below, and only those.
"""
import argparse
import bisect
import pathlib
import re
import subprocess
import sys
import tempfile

TOOLS = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
import metal_codegen  # noqa: E402
import msl_check_lint as lint  # noqa: E402

MSL_DIR = TOOLS / "msl_check"
FLAGS = [
    "-x", "c++", "-std=c++14", "-D__METAL_VERSION__=310",
    "-nostdinc", "-nostdinc++", "-I", str(MSL_DIR / "include"), "-include", str(MSL_DIR / "msl_language.h"),
    # Nothing links; zig's driver would otherwise build its C and C++ runtimes first (minutes, once).
    "-nostdlib",
    "-fno-exceptions", "-fno-rtti",
    # Float to double is an error (MSL has none); half and bfloat widening to float is allowed (ALLOWED).
    "-Werror=double-promotion",
    "-Wno-unknown-attributes",           # MSL's own: [[kernel]], [[buffer(i)]], [[thread_position_in_grid]]...
    "-Wno-pragma-once-outside-header",   # the inlined headers keep theirs
    "-Wno-unused-command-line-argument",
    "-ferror-limit=0", "-fno-caret-diagnostics", "-fno-color-diagnostics",
]
DIAGNOSTIC = re.compile(r"^(.*?):(\d+):(\d+): (fatal error|error|warning|note): (.*)$")
LINE_MARKER = re.compile(r'^# (\d+) "((?:[^"\\]|\\.)*)"')
# zig's clang driver, after a clean -fsyntax-only, reports that the object it never asked for is missing.
DRIVER_NOISE = re.compile(r"failed to rename '.*' into '.*': FileNotFound$")
HOST_NAME = re.compile(r'\[\[\s*host_name\s*\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+)\)\s*\]\]')


# ---- units: the library source, and where each of its lines came from -------------------------

class Unit:
    """One translation unit: `text` as metal_codegen.inline_includes writes the library source of
    `paths` (headers inlined once per unit), and the file and line each of its lines came from."""

    def __init__(self, name, paths):
        self.name = name
        self.pieces = []  # (offset in text, path, line of its first character, piece)
        seen = set()
        for i, path in enumerate(paths):
            if i:
                self._add(path, 1, "\n")  # the library joins families with a newline
            self._inline(path, seen)
        self.text = "".join(p[3] for p in self.pieces)
        seen_by_codegen = set()
        if self.text != "\n".join(metal_codegen.inline_includes(p, seen_by_codegen) for p in paths):
            raise SystemExit("msl_check: tools/metal_codegen.py inlines includes differently than Unit._inline")
        self.starts = [p[0] for p in self.pieces]
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        self.files = sorted({p[1] for p in self.pieces}, key=str)
        self.compiled_text = metal_codegen.THREADGROUP_ATTRIBUTE.sub(lambda m: " " * len(m.group()), self.text)
        self.compiled_lines = self.compiled_text.splitlines()

    def _add(self, path, line, piece):
        offset = self.pieces[-1][0] + len(self.pieces[-1][3]) if self.pieces else 0
        self.pieces.append((offset, path, line, piece))

    def _inline(self, path, seen):
        # As metal_codegen.inline_includes: each local #include becomes the header, once per unit.
        text = path.read_text()
        pos = 0
        for m in metal_codegen.INCLUDE.finditer(text):
            self._add(path, text.count("\n", 0, pos) + 1, text[pos:m.start()])
            header = (path.parent / m.group(1)).resolve()
            if header not in seen:
                seen.add(header)
                self._inline(header, seen)
            pos = m.end()
        self._add(path, text.count("\n", 0, pos) + 1, text[pos:])

    def origin(self, line):
        """(path, line) in the original sources of unit line `line` (1-based): where its first
        non-blank character came from."""
        start = self.line_starts[min(line, len(self.line_starts)) - 1]
        content = self.text[start:].split("\n", 1)[0]
        offset = start + len(content) - len(content.lstrip()) if content.strip() else start
        piece_start, path, first, piece = self.pieces[bisect.bisect_right(self.starts, offset) - 1]
        return path, first + piece.count("\n", 0, offset - piece_start)


# ---- clang's diagnostics ---------------------------------------------------------------------

class Diagnostic:
    def __init__(self, path, line, column, kind, message):
        self.path, self.line, self.column, self.kind, self.message = path, line, column, kind, message
        self.notes = []


def parse(output):
    """clang's output as Diagnostics (errors and warnings, each with its notes)."""
    diagnostics = []
    for text in output.splitlines():
        m = DIAGNOSTIC.match(text)
        if not m:
            continue  # source excerpts, "In file included from", "N errors generated"
        d = Diagnostic(m.group(1), int(m.group(2)), int(m.group(3)), m.group(4), m.group(5))
        if d.kind == "note" and diagnostics:
            diagnostics[-1].notes.append(d)
        elif d.kind != "note":
            diagnostics.append(d)
    return diagnostics


def _kernel_attributes(d, source_line):
    # Apple's compiler takes attributes on an explicit instantiation: that is how ORCHARD_KERNEL
    # names a kernel ([[host_name(...)]] [[kernel]]). Upstream clang rejects them there.
    spelled = ([n for n in d.notes if n.message.startswith("expanded from macro")] or [d])[-1]
    text = source_line(spelled.path, spelled.line)
    return (d.message == "an attribute list cannot appear here" and
            re.match(r"\[\[\s*host_name\s*\(", text[spelled.column - 1:]) is not None and
            re.search(r"\btemplate\s*$", text[:spelled.column - 1]) is not None)


_IMPLICIT_MEMBER = re.compile(
    r"candidate (?:constructor|function) \(the implicit (?:copy|move|default) (?:constructor|assignment operator)\) "
    r"not viable: (.*)$")
_THREADGROUP_BINDING = re.compile(
    r"'this' object is in address space '3', but method expects object in generic address space|"
    r"cannot bind reference in (?:address space '3'|generic address space) to object in "
    r"(?:generic address space|address space '3') in \w+ argument")


def _threadgroup_struct_copy(d, source_line):
    # MSL copies a struct by value between thread and threadgroup memory; clang's implicit copy
    # members take the default (thread) address space only. Accepted when every candidate is an
    # implicit member, failing for the threadgroup address space (or for its argument count).
    if not re.match(r"no matching constructor for initialization of '.*'$|no viable overloaded '='$", d.message):
        return False
    reasons = [_IMPLICIT_MEMBER.match(n.message) for n in d.notes if n.message.startswith("candidate")]
    if not reasons or not all(reasons):
        return False
    bindings = [r.group(1) for r in reasons if not r.group(1).startswith("requires ")]
    return bool(bindings) and all(_THREADGROUP_BINDING.fullmatch(b) for b in bindings)


def _half_to_float(d, source_line):
    # -Wdouble-promotion also reports half and bfloat widening to float, which MSL does implicitly.
    m = re.match(r"implicit conversion increases floating-point precision: '(?:const )?([^']*)' to "
                 r"'(?:const )?([^']*)'(?: \(aka '(?:const )?([^']*)'\))?", d.message)
    return m is not None and m.group(1) in ("half", "bfloat", "_Float16", "__bf16") and \
        (m.group(3) or m.group(2)) == "float"


ALLOWED = (_kernel_attributes, _threadgroup_struct_copy, _half_to_float)


# ---- the check -------------------------------------------------------------------------------

def run(cxx, args, text):
    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp) / "unit.metal.cpp"
        source.write_text(text)
        result = subprocess.run(cxx + FLAGS + args + [str(source)], capture_output=True, text=True)
        return str(source), result


def compile_unit(cxx, unit):
    """clang's findings on one unit, against the original sources."""
    source, result = run(cxx, ["-fsyntax-only"], unit.compiled_text)
    headers = {}

    def source_line(path, line):
        if path != source and path not in headers:
            headers[path] = pathlib.Path(path).read_text().splitlines() if pathlib.Path(path).is_file() else []
        lines = unit.compiled_lines if path == source else headers[path]
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def where(path, line):
        return unit.origin(line) if path == source else (path, line)

    def is_source(path):
        return path in unit.files or str(path).startswith(str(MSL_DIR))

    findings = []
    parsed = parse(result.stderr)
    for d in (d for d in parsed if not DRIVER_NOISE.match(d.message)):
        path, line = where(d.path, d.line)
        if any(allowed(d, source_line) for allowed in ALLOWED) or not is_source(path):
            continue  # what MSL allows, or in a header lint.foreign_includes reports
        notes = "".join(f"\n    {relative(p)}:{n}: {note.message}" for note in d.notes
                        for p, n in [where(note.path, note.line)] if p != "<scratch space>")
        findings.append(lint.Finding(path, line, f"{d.kind}: {d.message}{notes}", (unit.name,)))
    if result.returncode != 0 and not parsed:
        message = f"clang failed without a diagnostic:\n{result.stderr}"
        findings.append(lint.Finding(unit.name, 0, message, (unit.name,)))
    return findings


def preprocess(cxx, unit):
    """The host names [(name, path, line)] of a unit and the headers it includes [(header, path, line)]."""
    source, result = run(cxx, ["-E"], unit.compiled_text)
    if not result.stdout:
        raise SystemExit(f"msl_check: preprocessing failed:\n{result.stderr}")
    host_names, headers = [], []
    current, line = source, 1
    for text in result.stdout.splitlines():
        marker = LINE_MARKER.match(text)
        if marker:
            if current == source and marker.group(2) not in (source, "<built-in>", "<command line>"):
                headers.append((marker.group(2),) + located(unit.origin(line)))
            current, line = marker.group(2), int(marker.group(1))
            continue
        if current == source:
            for m in HOST_NAME.finditer(text):
                name = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
                host_names.append((name,) + located(unit.origin(line)))
        line += 1
    return host_names, headers


def check(kernel_dir, cxx):
    families = sorted(pathlib.Path(kernel_dir).resolve().glob("*.metal"))
    if not families:
        raise SystemExit(f"msl_check: no *.metal in {kernel_dir}")
    library = Unit("library", families)
    units = [Unit(p.name, [p]) for p in families] + [library]
    findings = []
    for unit in units:
        findings += compile_unit(cxx, unit)
    host_names, headers = preprocess(cxx, library)
    findings += lint.duplicate_host_names(host_names)
    findings += lint.foreign_includes(headers, str(MSL_DIR))
    sources = {path: path.read_text() for path in library.files}
    for path, text in sources.items():
        findings += lint.text_rules(path, text)
    findings += lint.recursion(sources)
    return units, host_names, findings


def relative(path):
    """`path` relative to the working directory where it lies below it, for shorter messages."""
    try:
        return pathlib.Path(path).resolve().relative_to(pathlib.Path.cwd())
    except ValueError:
        return path


def located(origin):
    path, line = origin
    return relative(path), line


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel_dir")
    parser.add_argument("--cxx", nargs=argparse.REMAINDER, required=True, help="the clang driver command")
    args = parser.parse_args(argv)
    units, host_names, findings = check(args.kernel_dir, args.cxx)
    merged = {}  # a finding shows once (not per unit, template instance or macro), with its units
    for f in findings:
        key = (str(relative(f.path)), f.line, f.message.split("\n")[0])
        message, in_units = merged.get(key, (f.message, ()))
        merged[key] = message, in_units + tuple(u for u in f.units if u not in in_units)
    for (path, line, _), (message, in_units) in sorted(merged.items()):
        print(f"{path}:{line}: {message}" + (f"\n    (compiling {', '.join(in_units)})" if in_units else ""))
    print(f"msl_check: {len(units)} units, {len(host_names)} kernels, {len(merged)} findings")
    return 1 if merged else 0


if __name__ == "__main__":
    sys.exit(main())
