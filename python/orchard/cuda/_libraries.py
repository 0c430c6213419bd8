"""Where the CUDA device finds NVRTC and cuBLAS: the nvidia-* wheels that `pip install orchard[cuda]` brings.

Orchard loads both with dlopen on the first use of device="cuda", by the paths in ORCHARD_NVRTC_LIBRARY and
ORCHARD_CUBLAS_LIBRARY, else by name through the dynamic loader (a CUDA toolkit on its path). The wheels
put their libraries in site-packages/nvidia/<package>/lib (CUDA 12's) or nvidia/cu13/lib (CUDA 13's), where
the loader does not look, so importing orchard points those variables at them, unless they are set. CUDA
12's libraries come first: they run on every driver since 525, CUDA 13's need 580 or later.

This file imports nothing of Orchard's (tools/with_nvrtc.py loads it on its own).
"""
import os
import pathlib

LIBRARIES = {"ORCHARD_NVRTC_LIBRARY": "libnvrtc.so", "ORCHARD_CUBLAS_LIBRARY": "libcublas.so"}


def wheel_library(name):
    """The path of `name`.12, else `name`.13, in the installed nvidia-* wheels, or None."""
    try:
        import nvidia  # a namespace package: each wheel's directory is in __path__
    except ImportError:
        return None
    for major in ("12", "13"):
        for root in nvidia.__path__:
            for library in sorted(pathlib.Path(root).glob(f"*/lib/{name}.{major}")):
                if library.is_file():
                    return library
    return None


def configure(environ=os.environ):
    """Sets each variable of LIBRARIES that is unset to its wheel's library, where one is installed."""
    for variable, name in LIBRARIES.items():
        if not environ.get(variable):
            library = wheel_library(name)
            if library is not None:
                environ[variable] = str(library)
