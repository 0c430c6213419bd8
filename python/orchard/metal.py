"""The Metal device.

`device="metal"` runs Orchard's Metal kernels: on an Apple GPU, or, in a build with the
ORCHARD_METAL_EMULATOR CMake option (the test build; `pip install . -Ccmake.define.ORCHARD_METAL_EMULATOR=ON`),
on the CPU through the MSL emulator, which runs the very same kernels slowly but faithfully.
"""
from . import _core

__all__ = ["is_available", "is_emulated", "synchronize"]


def is_available():
    """Whether tensors can be created on device="metal" in this build on this machine."""
    return _core._metal.is_available()


def is_emulated():
    """Whether the Metal device is the CPU emulator rather than a GPU (times then mean nothing)."""
    return _core._metal.is_emulated()


def synchronize():
    """Waits until the Metal work queued so far has finished."""
    _core.synchronize("metal")
