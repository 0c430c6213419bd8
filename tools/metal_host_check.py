"""The host-code check: compiles the Metal glue on any machine against Apple's own declarations.

    python tools/metal_host_check.py [CLANG COMMAND...]

Every translation unit that calls Metal or Foundation (src/metal/gpu/*.cpp and
tools/metal_compile_all.cpp) is compiled for arm64 macOS against Apple's metal-cpp
(third_party/metal-cpp), with -Wall -Wextra -Werror, so that a misspelt method or a wrong argument
type fails here as it would on a Mac. The compiler is clang able to target macOS: the command given,
else $ORCHARD_CHECK_CXX (a shell-quoted command; the test build sets it), else the `ziglang` wheel's
clang, which ships macOS's libc headers (objc/, dispatch/). tools/macos_sdk_stubs/ stands in for
the two SDK framework headers metal-cpp includes for a few names.

Each file is compiled to an object in a temporary directory rather than with -fsyntax-only: zig's
driver always moves the object it asks clang for into its cache, and fails when there is none.
"""
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent
GLUE = sorted((ROOT / "src/metal/gpu").glob("*.cpp")) + [ROOT / "tools/metal_compile_all.cpp"]
FLAGS = [
    # arm64 macOS 14, the deployment target (the kernels are MSL 3.1), in zig's spelling of the triple.
    "-target", "aarch64-macos.14.0",
    "-std=c++17", "-fblocks", "-Wall", "-Wextra", "-Werror",
    "-isystem", str(ROOT / "tools/macos_sdk_stubs"),
    "-isystem", str(ROOT / "third_party/metal-cpp"),
    "-I", str(ROOT / "src/metal"), "-I", str(ROOT / "src/metal/gpu"), "-I", str(ROOT / "src/core"),
    # As cmake/OrchardMetal.cmake builds it on a Mac; with a metallib embedded, which only adds code.
    "-DORCHARD_METAL_GPU=1", "-DORCHARD_HAS_METALLIB=1",
]


def compiler():
    command = os.environ.get("ORCHARD_CHECK_CXX")
    return shlex.split(command) if command else [sys.executable, "-m", "ziglang", "c++"]


def compile_one(cxx, source, out_dir):
    """(source, diagnostics) when the file does not compile, else None."""
    obj = pathlib.Path(out_dir) / (pathlib.Path(source).stem + ".o")
    result = subprocess.run([*cxx, *FLAGS, "-c", str(source), "-o", str(obj)], capture_output=True, text=True)
    return None if result.returncode == 0 else (source, result.stdout + result.stderr)


def check(sources, cxx=None, jobs=2):
    """The failures, as (source, diagnostics), of compiling `sources` as the glue is compiled."""
    cxx = cxx or compiler()
    with tempfile.TemporaryDirectory() as out_dir, ThreadPoolExecutor(jobs) as pool:
        dirs = [tempfile.mkdtemp(dir=out_dir) for _ in sources]  # same stems never collide
        return [f for f in pool.map(lambda s, d: compile_one(cxx, s, d), sources, dirs) if f]


def main(argv):
    failures = check(GLUE, argv or None)
    for source, diagnostics in failures:
        print(f"{source}: does not compile against metal-cpp\n{diagnostics}", file=sys.stderr)
    print(f"metal host check: {len(GLUE) - len(failures)} of {len(GLUE)} files compile against metal-cpp")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
