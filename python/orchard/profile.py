"""Allocation profiling.

With ORCHARD_TENSOR_PROFILE set (read on every allocation, so it can be toggled at run time), each
storage allocation appends an `alloc` line and its last release a matching `free` line to the log
at ORCHARD_TENSOR_PROFILE_LOG (default: orchard_tensor_profile.log in the temp directory).
"""
from ._core import _profile


def enabled():
    return _profile.enabled()


def log_path():
    return _profile.log_path()


def reset():
    """Zero the alloc/free counters."""
    _profile.reset()


def clear_log():
    """Remove the log file."""
    _profile.clear_log()


def counts():
    """(allocs, frees) recorded since the last reset()."""
    return _profile.counts()


def live_tensors():
    """Every storage alive now, as (id, nbytes, device) tuples."""
    return _profile.live_storages()
