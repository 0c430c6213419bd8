"""The lint half of the strict MSL check (tools/msl_check.py): what MSL forbids and clang compiling the
kernels as C++ cannot see. Each rule returns Findings against the original source lines.

Text rules run on the kernel sources with comments and literals blanked (lines and columns kept):
virtual functions, exceptions, new/delete, lambdas, goto, floating literals that are double (no f or
h suffix), and recursion where it shows by name (a function that calls itself, when no other
function has its name: overloads cannot be told apart here). Two rules read the preprocessed
library: every [[host_name]] appears once, and nothing is included but the MSL headers.
"""
import collections
import re

# `units`: the compiled units that showed the finding (none for the lint).
Finding = collections.namedtuple("Finding", "path line message units", defaults=((),))

_KEYWORDS = [
    (re.compile(r"\bvirtual\b"), "virtual function: MSL has no virtual functions"),
    (re.compile(r"\b(?:try|catch|throw)\b"), "exception: MSL has no exceptions"),
    (re.compile(r"\bnew\b"), "new: MSL has no dynamic allocation"),
    (re.compile(r"(?<!=)(?<!=\s)\bdelete\b"), "delete: MSL has no dynamic allocation"),
    (re.compile(r"\bgoto\b"), "goto: MSL has no goto"),
]
# A lambda introducer where an expression starts: `= [&](`, `f([x] {`, `return [](`.
_LAMBDA = re.compile(r"(?:[=(,{;?:]|\breturn)\s*\[[^\[\]]*\]\s*(?:\(|\{|mutable\b|->)")
# A floating literal (decimal or with an exponent) and its suffix.
_FLOAT = re.compile(r"(?<![\w.])((?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)([A-Za-z]*)")
_FLOAT_SUFFIXES = {"f", "h", "bf"}
_CONTROL = {"if", "for", "while", "switch", "return", "sizeof", "decltype", "defined"}
_FUNCTION = re.compile(r"\b(\w+)\s*\(((?:[^()]|\([^()]*\))*)\)\s*(?:const\s*)?\{")


def blank(text):
    """`text` with comments, string and character literals replaced by spaces (newlines kept)."""
    def spaces(match):
        return re.sub(r"[^\n]", " ", match.group())
    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'', spaces, text, flags=re.S)


def _line(text, offset):
    return text.count("\n", 0, offset) + 1


def text_rules(path, text):
    """Findings of the keyword, lambda and literal rules in one source file."""
    code = blank(text)
    found = []
    for pattern, reason in _KEYWORDS:
        found += [Finding(path, _line(code, m.start()), reason) for m in pattern.finditer(code)]
    found += [Finding(path, _line(code, m.start()), "lambda: MSL has no lambdas") for m in _LAMBDA.finditer(code)]
    for m in _FLOAT.finditer(code):
        if m.group(2).lower() not in _FLOAT_SUFFIXES:
            found.append(Finding(path, _line(code, m.start()),
                                 f"floating literal {m.group()} is not float: write {m.group(1)}f (or h for half); "
                                 "MSL has no double"))
    return found


def _body_end(code, open_brace):
    depth = 0
    for i in range(open_brace, len(code)):
        depth += {"{": 1, "}": -1}.get(code[i], 0)
        if depth == 0:
            return i
    return len(code)


def recursion(sources):
    """Functions that call themselves by name, over {path: text}; names defined more than once
    (overloads, specialisations) are skipped, since which one a call picks is not visible here."""
    definitions = collections.defaultdict(list)
    for path, text in sources.items():
        code = blank(text)
        for m in _FUNCTION.finditer(code):
            if m.group(1) not in _CONTROL:
                definitions[m.group(1)].append((path, code, m))
    found = []
    for name, [(path, code, m)] in ((n, d) for n, d in definitions.items() if len(d) == 1):
        body_start = m.end() - 1
        body = code[body_start:_body_end(code, body_start)]
        call = re.search(rf"(?<![\w.>:]){name}\s*(?:<[^;{{}}()]*>\s*)?\(", body)
        if call:
            found.append(Finding(path, _line(code, body_start + call.start()),
                                 f"recursion: {name} calls itself; MSL has no recursion"))
    return found


def duplicate_host_names(host_names):
    """host_names: [(name, path, line)] in library order. Every kernel name must be unique."""
    first = {}
    found = []
    for name, path, line in host_names:
        if name in first:
            found.append(Finding(path, line, 'host name "{}" is already given at {}:{}'.format(name, *first[name])))
        else:
            first[name] = (path, line)
    return found


def foreign_includes(included, allowed):
    """included: [(header, path, line)] entered while preprocessing; only headers under `allowed`
    (the check's MSL headers) may be, as a Mac offers no other system header."""
    return [Finding(path, line, f"includes {header}: MSL offers no such header (only <metal_stdlib> and local ones)")
            for header, path, line in included if not header.startswith(allowed)]
