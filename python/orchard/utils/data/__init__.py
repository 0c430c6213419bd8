"""Data loading with torch.utils.data's names."""
from .distributed import DistributedSampler

__all__ = ["DistributedSampler"]
