"""Runs a command with ORCHARD_NVRTC_LIBRARY naming the NVRTC of the nvidia-cuda-nvrtc-cu12 wheel
(requirements-test.txt), unless the variable is set already: ctest's nvrtc_compile_all.

    python tools/with_nvrtc.py COMMAND [ARGS...]

Without that wheel the command cannot run: under CI (the CI variable set, as .ci/run and GitHub
Actions set it), which installs the wheel, that is a failure; elsewhere the test is skipped (exit
status 77, ctest's SKIP_RETURN_CODE) with a message saying how to install it.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

SKIPPED = 77


def wheel_library():
    """libnvrtc.so.12 (else .13) of the installed nvidia-cuda-nvrtc wheel, found as orchard.cuda finds it."""
    path = pathlib.Path(__file__).resolve().parents[1] / "python" / "orchard" / "cuda" / "_libraries.py"
    spec = importlib.util.spec_from_file_location("orchard_cuda_libraries", path)
    libraries = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(libraries)
    return libraries.wheel_library("libnvrtc.so")


def main(command):
    env = dict(os.environ)
    if not env.get("ORCHARD_NVRTC_LIBRARY"):
        library = wheel_library()
        if library is None:
            print("NVRTC not found: `python3 -m pip install -r requirements-test.txt` installs it "
                  "(nvidia-cuda-nvrtc-cu12), or set ORCHARD_NVRTC_LIBRARY to a libnvrtc.so.12", file=sys.stderr)
            return 1 if os.environ.get("CI") else SKIPPED
        env["ORCHARD_NVRTC_LIBRARY"] = str(library)
    print(f"ORCHARD_NVRTC_LIBRARY={env['ORCHARD_NVRTC_LIBRARY']}", flush=True)
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
