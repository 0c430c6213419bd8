"""Generates the C++ that carries Orchard's Metal kernels (run by CMake at build time).

    python tools/metal_codegen.py library OUT.cpp KERNEL_DIR        # embedded MSL sources, per family
    python tools/metal_codegen.py emulator OUT.cpp FILE.metal       # emulator adapters for one file
    python tools/metal_codegen.py metallib OUT.cpp FILE.metallib    # embedded precompiled library

`library` writes one source per kernel family (metal/<family>.metal, local "#include"s inlined, each
header once) for `newLibraryWithSource` at run time, so that a family compiles when its first kernel
is used; a table from host-name prefixes to families; and a hash of the sources (the tables are
declared in src/metal/kernel_library.h). `emulator` reads every kernel's parameter attributes
([[buffer(i)]], [[threadgroup(i)]], [[thread_position_in_grid]], ...) and writes the adapter macros
that ORCHARD_KERNEL's C++ expansion uses to call the kernel from an emulated thread, followed by the
kernel text itself. Kernels are function templates declared `template <...> [[kernel]] void name(...)`.
"""
import hashlib
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.M)
KERNEL_NAME = re.compile(r'\bORCHARD_KERNEL\(\s*"(\w*)"')
KERNEL = re.compile(r"template\s*<[^{;]*?>\s*\[\[\s*kernel\s*\]\]\s*void\s+(\w+)\s*\(", re.S)
THREADGROUP_ATTRIBUTE = re.compile(r"\[\[\s*threadgroup\s*\(\s*\d+\s*\)\s*\]\]")
ATTRIBUTE = re.compile(r"\[\[\s*(\w+)\s*(?:\(\s*(\d+)\s*\))?\s*\]\]\s*$")

# Position attributes, as ThreadContext members (uint3 positions convert to uint/uint2/uint3).
POSITIONS = {
    "thread_position_in_grid": "c.at(c.position_in_grid)",
    "thread_position_in_threadgroup": "c.at(c.position_in_threadgroup)",
    "threadgroup_position_in_grid": "c.at(c.threadgroup_position)",
    "threads_per_threadgroup": "c.at(c.threads_per_threadgroup)",
    "threadgroups_per_grid": "c.at(c.threadgroups_per_grid)",
    "threads_per_grid": "c.at(c.threads_per_grid)",
    "thread_index_in_threadgroup": "c.index_in_threadgroup",
    "thread_index_in_simdgroup": "c.index_in_simdgroup",
    "simdgroup_index_in_threadgroup": "c.simdgroup_index",
    "threads_per_simdgroup": "c.threads_per_simdgroup",
    "simdgroups_per_threadgroup": "c.simdgroups_per_threadgroup",
}
# A kernel whose threads know their place in the threadgroup works with the others: its threads run
# as real threads meeting at barriers. Others run sequentially (and may not call barriers).
COOPERATIVE = {"threadgroup", "thread_position_in_threadgroup", "thread_index_in_threadgroup",
               "thread_index_in_simdgroup", "simdgroup_index_in_threadgroup"}


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def split_params(text, start):
    """The parameter list of the call whose '(' precedes `start`, split at top-level commas."""
    depth, params, current = 1, [], ""
    for i in range(start, len(text)):
        ch = text[i]
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
            if depth == 0:
                params.append(current)
                return [p.strip() for p in params if p.strip()]
        if ch == "," and depth == 1:
            params.append(current)
            current = ""
        else:
            current += ch
    raise SystemExit("unterminated parameter list")


def kernel_parameters(source):
    """[(kernel, [(parameter, attribute, index)])] for every kernel template of comment-stripped
    `source`, parameters in declaration order; index is None for position attributes."""
    kernels = []
    for match in KERNEL.finditer(source):
        name, params = match.group(1), []
        for param in split_params(source, match.end()):
            attribute = ATTRIBUTE.search(param)
            if not attribute:
                raise SystemExit(f"kernel {name}: parameter '{param}' has no [[attribute]]")
            index = attribute.group(2)
            params.append((param, attribute.group(1), None if index is None else int(index)))
        kernels.append((name, params))
    return kernels


def argument(kernel, param, attr, index):
    if attr == "buffer":
        return f"c.buffer_ref({index})" if "&" in param else f"c.buffer({index})", attr
    if attr == "threadgroup":
        return f"c.threadgroup_buffer({index})", attr
    if attr in POSITIONS:
        return POSITIONS[attr], attr
    raise SystemExit(f"kernel {kernel}: attribute [[{attr}]] is not supported by the emulator")


def absolute_include(match, directory):
    """An INCLUDE match with its header made absolute, every other character kept: the match may
    span blank lines around the directive, and dropping them would shift the kernel lines."""
    text, start = match.group(), match.start()
    header = (directory / match.group(1)).resolve()
    return f"{text[:match.start(1) - start]}{header}{text[match.end(1) - start:]}"


def emulator(out, metal_file):
    source = strip_comments(pathlib.Path(metal_file).read_text())
    lines = [f"// Generated by tools/metal_codegen.py from {pathlib.Path(metal_file).name}: do not edit.",
             '#include "kernel_abi.h"', '#include "msl_keywords.h"', ""]
    for name, params in kernel_parameters(source):
        args, attrs = zip(*(argument(name, *p) for p in params)) or ((), ())
        lines.append(f"#define ORCHARD_EMU_ARGS_{name}(c) {', '.join(args)}")
        lines.append(f"#define ORCHARD_EMU_COOPERATIVE_{name} {'true' if COOPERATIVE & set(attrs) else 'false'}")
    # The kernel text follows in place: `threadgroup` is a keyword macro in C++ mode, so its
    # [[threadgroup(i)]] attributes go (the adapters above carry them), and quoted includes become
    # absolute so they resolve from the build directory.
    path = pathlib.Path(metal_file).resolve()
    text = THREADGROUP_ATTRIBUTE.sub("", path.read_text())
    text = INCLUDE.sub(lambda m: absolute_include(m, path.parent), text)
    stem = re.sub(r"\W", "_", path.stem)
    lines += ["", f"namespace orchard_metal_kernels_{stem} {{", f'#line 1 "{path}"', text, "}", ""]
    write(out, "\n".join(lines))


def inline_includes(path, seen, root=None):
    """The text of `path` with its local includes inlined, each header once. With `root`, #line
    directives name each inlined file (relative to root) so that diagnostics point into it."""
    text = path.read_text()

    def replace(match):
        header = (path.parent / match.group(1)).resolve()
        first = header not in seen
        seen.add(header)
        body = inline_includes(header, seen, root) if first else ""
        if root is None:
            return body
        if first:
            body = f'#line 1 "{header.relative_to(root)}"\n{body}\n'
        # The match may span blank lines: number the line after it as in the file.
        return f'{body}#line {text.count(chr(10), 0, match.end()) + 2} "{path.relative_to(root)}"'
    return INCLUDE.sub(replace, text)


def family_sources(kernel_dir, root=None):
    """{family: source} for every metal/<family>.metal: the one translation unit a Mac compiles for
    that family (local "#include"s inlined, each header once; #line directives with `root`, see
    inline_includes)."""
    return {p.stem: inline_includes(p.resolve(), set(), root) for p in sorted(pathlib.Path(kernel_dir).glob("*.metal"))}


def kernel_prefixes(kernel_dir):
    """[(prefix, family)]: the literal each ORCHARD_KERNEL host name starts with, per family. Host
    names are built by macros ("unary_" #op "_" #name), so the literal is all that is known here; a
    kernel belongs to the family one of whose prefixes starts its name, which must be unambiguous."""
    pairs = sorted({(m.group(1), p.stem) for p in pathlib.Path(kernel_dir).glob("*.metal")
                    for m in KERNEL_NAME.finditer(strip_comments(p.read_text()))})
    for prefix, family in pairs:
        for other, other_family in pairs:
            if other_family != family and other.startswith(prefix):
                raise SystemExit(f"kernel name prefix '{prefix}' ({family}.metal) also starts '{other}' "
                                 f"({other_family}.metal): the family of such a kernel is ambiguous")
    return pairs


def string_literal(text, delimiter="orchard_msl"):
    assert f"){delimiter}\"" not in text
    # Long string literals are split into chunks (MSVC caps one literal at 16 KiB).
    chunks = [text[i:i + 12000] for i in range(0, len(text), 12000)] or [""]
    return "\n".join(f'R"{delimiter}({c}){delimiter}"' for c in chunks)


def library(out, kernel_dir):
    sources = family_sources(kernel_dir)
    names = list(sources)
    digest = hashlib.sha256("".join(f"{n}\0{s}\0" for n, s in sources.items()).encode()).hexdigest()[:16]
    families = ",\n".join(f'{{"{n}", {string_literal(s)}}}' for n, s in sources.items())
    pairs = kernel_prefixes(kernel_dir)
    prefixes = ",\n".join(f'{{"{p}", {names.index(f)}}}' for p, f in pairs)
    write(out, "// Generated by tools/metal_codegen.py from metal/*.metal: do not edit.\n"
               '#include "kernel_library.h"\n'
               "namespace orchard::metal {\n"
               f"extern const KernelFamily kKernelFamilies[] = {{\n{families}}};\n"
               f"extern const size_t kKernelFamilyCount = {len(names)};\n"
               f"extern const KernelPrefix kKernelPrefixes[] = {{\n{prefixes}}};\n"
               f"extern const size_t kKernelPrefixCount = {len(pairs)};\n"
               f'extern const char kKernelLibraryHash[] = "{digest}";\n'
               "}  // namespace orchard::metal\n")


def metallib(out, path):
    data = pathlib.Path(path).read_bytes()
    rows = [", ".join(str(b) for b in data[i:i + 32]) for i in range(0, len(data), 32)]
    write(out, "// Generated by tools/metal_codegen.py: the precompiled kernel library.\n"
               "#include <cstddef>\nnamespace orchard::metal {\n"
               f"extern const unsigned char kMetallib[] = {{\n{','.join(chr(10) + r for r in rows)}\n}};\n"
               f"extern const size_t kMetallibSize = {len(data)};\n"
               "}  // namespace orchard::metal\n")


def write(path, text):
    path = pathlib.Path(path)
    if not path.exists() or path.read_text() != text:  # keep the timestamp when nothing changed
        path.write_text(text)


if __name__ == "__main__":
    mode, out, arg = sys.argv[1:4]
    {"library": library, "emulator": emulator, "metallib": metallib}[mode](out, arg)
