"""Utilities with torch.utils' names."""
from . import data

__all__ = ["data"]
