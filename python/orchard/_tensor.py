"""Python-side parts of Tensor: construction from Python data, repr, and scalar conversions."""
import builtins
import math
import numbers

import numpy as np

from . import _core, _factories
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


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    for name, v in (("start", start), ("end", end), ("step", step)):
        if not hasattr(v, "__float__"):
            raise TypeError(f"arange: {name} must be a number, got {type(v).__name__}")
    if dtype is None:
        is_int = builtins.all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = _core.dtype.int64 if is_int else _core.dtype.float32
    return _factories.finish(_core._arange(float(start), float(end), float(step), dtype, device), requires_grad)


def _check_tensor(t, name):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected an orchard.Tensor, got {type(t).__name__}")


def _like(factory):
    def like(t, *args, dtype=None, device=None, requires_grad=False, layout=None, memory_format=None):
        del layout, memory_format  # one layout; results are contiguous
        _check_tensor(t, like.__name__)
        return factory(t.shape, *args, dtype=dtype or t.dtype, device=device or t.device, requires_grad=requires_grad)
    like.__name__ = factory.__name__ + "_like"
    return like


empty_like = _like(_factories.empty)
zeros_like = _like(_factories.zeros)
ones_like = _like(_factories.ones)
rand_like = _like(_factories.rand)
randn_like = _like(_factories.randn)
full_like = _like(_factories.full)


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


# ---- PyTorch's Tensor conveniences, over the methods above and the core's -------------------------------------

_core_to = Tensor.to


def _to(self, *args, non_blocking=False, copy=False, memory_format=None, **kwargs):
    """PyTorch's three forms: to(dtype), to(device=None, dtype=None) and to(other) (other's dtype and device),
    each with non_blocking= (transfers are ordered on the device's queue anyway) and copy= (a new tensor even
    when nothing changes)."""
    del non_blocking, memory_format
    device, dt = kwargs.pop("device", None), kwargs.pop("dtype", None)
    if kwargs:
        raise TypeError(f"to() got an unexpected keyword argument {next(iter(kwargs))!r}")
    if len(args) > 2:
        raise TypeError(f"to() takes at most 2 positional arguments (a device and a dtype), got {len(args)}")
    for i, arg in enumerate(args):
        if isinstance(arg, Tensor):
            if len(args) > 1:
                raise TypeError("to(other): a tensor must be the only positional argument")
            device, dt = arg.device, arg.dtype
        elif isinstance(arg, dtype):
            dt = arg
        elif arg is None or isinstance(arg, (str, _core.device)):
            if i > 0:
                raise TypeError("to(): the device comes before the dtype")
            device = arg
        else:
            raise TypeError(f"to(): expected a device, a dtype or a tensor, got {type(arg).__name__}")
    out = _core_to(self, device=device, dtype=dt)
    return out.clone() if copy and out.is_alias_of(self) else out


def _new_factory(factory):
    def new(self, *size, dtype=None, device=None, requires_grad=False, **kwargs):
        return factory(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad,
                       **kwargs)
    new.__name__ = "new_" + factory.__name__
    new.__doc__ = f"{factory.__name__}(size), with this tensor's dtype and device unless given."
    return new


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    """tensor(data) with this tensor's dtype and device unless given."""
    return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def _set_data(self, value):
    """`t.data = value` copies value into t, outside autograd. (PyTorch rebinds t to value's storage; Orchard
    copies, so the shape, dtype and device must match.)"""
    _check_tensor(value, "Tensor.data")
    if (value.shape, value.dtype, value.device) != (self.shape, self.dtype, self.device):
        raise RuntimeError(f"Tensor.data = value: Orchard copies value into the tensor, so it must match its shape, "
                           f"dtype and device {self.shape}, {self.dtype!r}, {self.device}; got {value.shape}, "
                           f"{value.dtype!r}, {value.device}")
    self.detach().copy_(value)


def _format(self, spec):
    """A 0-d tensor formats as its Python number (f"{loss:.4f}"); other tensors take no format spec, as in
    PyTorch."""
    if self.ndim == 0:
        return format(self.item(), spec)
    return object.__format__(self, spec)


Tensor.to = _to
Tensor.new_empty = _new_factory(_factories.empty)
Tensor.new_zeros = _new_factory(_factories.zeros)
Tensor.new_ones = _new_factory(_factories.ones)
Tensor.new_full = _new_factory(_factories.full)
Tensor.new_tensor = _new_tensor
Tensor.data = property(lambda self: self.detach(), _set_data, doc="The tensor, detached from autograd.")
Tensor.nelement = lambda self: self.numel()
Tensor.type_as = lambda self, other: _to(self, other.dtype)
Tensor.pin_memory = lambda self: self  # CPU and Apple GPU share memory: nothing to pin
Tensor.is_cuda = property(lambda self: self.device == "cuda")
Tensor.is_cpu = property(lambda self: self.device == "cpu")
Tensor.is_mps = property(lambda self: self.device == "metal", doc="On the Metal device (PyTorch's 'mps').")
Tensor.__format__ = _format


def _record_stream(self, stream):
    """Marks this CUDA tensor's memory as used by the work queued on `stream`: once the tensor is freed,
    its memory is reused only after that work (torch.Tensor.record_stream)."""
    from .cuda import Stream
    if not isinstance(stream, Stream):
        raise TypeError(f"record_stream: expected an orchard.cuda.Stream, got {type(stream).__name__}")
    if self.device != "cuda":
        raise RuntimeError(f"record_stream: expected a CUDA tensor, got one on {self.device}")
    _core._record_stream(self, stream._stream)


Tensor.record_stream = _record_stream


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(input):
    _check_tensor(input, "numel")
    return input.numel()


def is_floating_point(input):
    _check_tensor(input, "is_floating_point")
    return input.is_floating_point()
