"""Parallel wrappers of modules."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
