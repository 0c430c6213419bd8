"""Functions (and the matching Tensor methods) that PyTorch has and that are written in Python over the
core's ops: chunk, all, any, and mean/sum with a dtype=."""
import builtins
import math

from . import _core
from ._core import Tensor
from .amp.autocast_mode import dtype_overrides_autocast


def _check(x, name):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): expected an orchard.Tensor, got {type(x).__name__}")


def chunk(input, chunks, dim=0):
    """Views of input in `chunks` pieces of ceil(size / chunks) along dim (the last one smaller, and fewer
    pieces when the size does not fill them), as torch.chunk."""
    _check(input, "chunk")
    if not isinstance(chunks, builtins.int) or isinstance(chunks, builtins.bool):
        raise TypeError(f"chunk(): chunks must be an int, got {type(chunks).__name__}")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    if input.ndim == 0:
        raise RuntimeError("chunk expects at least a 1-dimensional tensor")
    size = input.size(dim)  # raises IndexError for a dim out of range
    if size == 0:  # torch.chunk gives `chunks` empty pieces here
        return tuple(input for _ in range(chunks))
    return tuple(_core.split(input, math.ceil(size / chunks), dim))


def any(input, dim=None, keepdim=False):
    """Whether any element (along dim: an int or a tuple of ints; all dims when None) is nonzero; bool."""
    _check(input, "any")
    return (input != 0).sum(dim, keepdim) > 0


def all(input, dim=None, keepdim=False):
    """Whether every element (along dim: an int or a tuple of ints; all dims when None) is nonzero; bool."""
    _check(input, "all")
    return (input == 0).sum(dim, keepdim) == 0


_core_sum, _core_mean = _core.sum, _core.mean


def sum(input, dim=None, keepdim=False, *, dtype=None):
    """The sum over dim (every dim when None); with dtype=, of the input converted to dtype first."""
    _check(input, "sum")
    if dtype is None:
        return _core_sum(input, dim, keepdim)
    with dtype_overrides_autocast():
        return _core_sum(input.to(dtype), dim, keepdim)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    """The mean over dim (every dim when None); with dtype=, of the input converted to dtype first."""
    _check(input, "mean")
    return _core_mean(input if dtype is None else input.to(dtype), dim, keepdim)


for _f in (chunk, any, all, sum, mean):
    setattr(Tensor, _f.__name__, _f)
