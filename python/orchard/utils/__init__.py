"""orchard.utils: helpers around the tensor library (orchard.utils.data: datasets and data loaders)."""
from . import data

__all__ = ["data"]
