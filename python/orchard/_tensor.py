"""Python-side parts of Tensor: construction from Python data, repr, and scalar conversions."""
import builtins
import math
import numbers

import numpy as np

from . import _core
from ._core import Tensor, dtype

_NUMPY_TO_DTYPE = {
    np.dtype(np.bool_): dtype.bool,
    np.dtype(np.int32): dtype.int32,
    np.dtype(np.int64): dtype.int64,
    np.dtype(np.float16): dtype.float16,
    np.dtype(np.float32): dtype.float32,
    np.dtype(np.float64): dtype.float64,
}


def _infer(data, dtype=None):
    """A NumPy array holding `data`, with PyTorch's default dtypes for Python numbers (when no dtype
    is asked for: Python floats then convert once, straight to the dtype asked for)."""
    if isinstance(data, Tensor):
        return data
    from_numpy_input = isinstance(data, (np.ndarray, np.generic))
    arr = np.asarray(data)
    if arr.dtype == object:
        raise TypeError("tensor(): data must be numbers or nested sequences of equal length")
    if not from_numpy_input and arr.dtype == np.float64 and dtype is None:
        arr = arr.astype(np.float32)  # Python floats default to float32, as in PyTorch
    elif arr.dtype.kind in "iu" and arr.dtype not in _NUMPY_TO_DTYPE:
        arr = arr.astype(np.int64)
    if arr.dtype not in _NUMPY_TO_DTYPE:
        raise _core.DTypeError(f"tensor(): unsupported dtype {arr.dtype}; "
                               "supported: bool, int32, int64, float16, float32, float64")
    return arr


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (nested lists, scalars, NumPy arrays or tensors).

    The copy is a leaf with no autograd history (as torch.tensor); `requires_grad=True` makes it
    record operations for autograd (floating point dtypes only)."""
    src = _infer(data, dtype)
    if isinstance(src, Tensor):
        src = src.detach()
    t = src if isinstance(src, Tensor) else _core.from_numpy(np.asarray(src, order="C"))  # keeps 0-d arrays 0-d
    t = t.to(dtype=dtype, device=device)
    if t.is_alias_of(src if isinstance(src, Tensor) else t):
        t = t.clone()
    return t.requires_grad_() if requires_grad else t


def arange(start, end=None, step=1, *, dtype=None, device=None):
    if end is None:
        start, end = 0, start
    for name, v in (("start", start), ("end", end), ("step", step)):
        if not hasattr(v, "__float__"):
            raise TypeError(f"arange: {name} must be a number, got {type(v).__name__}")
    if dtype is None:
        is_int = builtins.all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = _core.dtype.int64 if is_int else _core.dtype.float32
    return _core._arange(float(start), float(end), float(step), dtype, device)


def _check_tensor(t, name):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected an orchard.Tensor, got {type(t).__name__}")


def _like(factory):
    def like(t, *args, dtype=None, device=None):
        _check_tensor(t, like.__name__)
        return factory(*args, t.shape, dtype=dtype or t.dtype, device=device or t.device)
    like.__name__ = factory.__name__ + "_like"
    return like



empty_like = _like(lambda shape, **kw: _core.empty(*shape, **kw))
zeros_like = _like(lambda shape, **kw: _core.zeros(*shape, **kw))
ones_like = _like(lambda shape, **kw: _core.ones(*shape, **kw))
rand_like = _like(lambda shape, **kw: _core.rand(*shape, **kw))
randn_like = _like(lambda shape, **kw: _core.randn(*shape, **kw))


def full_like(t, fill_value, *, dtype=None, device=None):
    _check_tensor(t, "full_like")
    return _core.full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device)


def _host_array(t):
    return (t.float() if t.dtype == dtype.bfloat16 else t).cpu().numpy()


def _item(self):
    if self.numel() != 1:
        raise ValueError(f"item(): only a tensor with one element can be converted to a Python "
                         f"scalar, this one has {self.numel()} (shape {self.shape})")
    return _host_array(self).reshape(()).item()


def _tolist(self):
    return _host_array(self).tolist()


def _repr(self):
    body = np.array2string(_host_array(self), separator=", ", prefix="tensor(")
    extras = []
    if self.dtype not in (dtype.float32, dtype.int64, dtype.bool):
        extras.append(f"dtype={self.dtype!r}")
    if self.device != "cpu":
        extras.append(f"device='{self.device}'")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"


def _bool(self):
    if self.numel() != 1:
        raise ValueError(f"the truth value of a tensor with {self.numel()} elements is ambiguous; "
                         "use .any() or .all()")
    return builtins.bool(self.item())


def _int(self):
    value = self.item()
    if isinstance(value, builtins.float) and not math.isfinite(value):
        raise ValueError(f"int(): cannot convert {value} to an integer")  # not Python's OverflowError
    return builtins.int(value)


def _iter(self):
    if self.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return (self[i] for i in range(self.shape[0]))


Tensor.item = _item
Tensor.tolist = _tolist
Tensor.__repr__ = _repr
Tensor.__str__ = _repr
Tensor.__bool__ = _bool
Tensor.__float__ = lambda self: builtins.float(self.item())
Tensor.__int__ = _int


def _index(self):
    if self.is_floating_point() or self.numel() != 1:
        raise TypeError("only integer tensors of a single element can be used as an index")
    return builtins.int(self.item())


Tensor.__index__ = _index
# NumPy scalars and arrays defer to Tensor's reflected operators (np.float64(2) * t is a Tensor).
Tensor.__array_priority__ = 1000
Tensor.__iter__ = _iter
