"""Neural-network building blocks."""
from . import functional, parallel, utils
from .containers import ModuleList, Sequential
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear
from .module import Module, Parameter

__all__ = ["functional", "utils", "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout", "GELU",
           "Sequential", "ModuleList"]
