"""Neural-network building blocks."""
from . import functional, init, parallel, utils
from .activations import GELU, Identity, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .layers import Dropout, Embedding, LayerNorm, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import Module
from .parameter import Parameter

__all__ = ["functional", "init", "parallel", "utils", "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "GELU", "ReLU", "SiLU", "Tanh", "Sigmoid", "Softmax", "Identity", "CrossEntropyLoss", "MSELoss",
           "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]
