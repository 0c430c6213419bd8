"""The tensor factories with PyTorch's signatures (orchard.zeros(2, 3), orchard.ones((2, 3), dtype=...,
requires_grad=True), orchard.full(size, fill_value)...), over the core's factories, and the default dtype.

The core's factories take the shape and the dtype and device; what PyTorch's add (`size=` by keyword,
`requires_grad=`, `pin_memory=`, a dtype inferred from full's fill value) is handled here, once for all.
"""
import builtins

from . import _core
from ._core import Tensor, dtype

_DEFAULT_DTYPE = dtype.float32


def get_default_dtype():
    """The dtype of tensors made from Python floats and of the float factories: float32."""
    return _DEFAULT_DTYPE


def set_default_dtype(d):
    """Only float32 is supported as the default: Orchard's modules and kernels assume it."""
    if not isinstance(d, dtype):
        raise TypeError(f"set_default_dtype: expected an orchard.dtype, got {type(d).__name__}")
    if not d.is_floating_point:
        raise TypeError(f"set_default_dtype: only floating-point types are supported as the default type, got {d!r}")
    if d != _DEFAULT_DTYPE:
        raise ValueError(f"set_default_dtype: Orchard supports only orchard.float32 as the default dtype, got {d!r}; "
                         "ask for other dtypes per tensor (dtype=...) or convert with .to()")


def _size(size, size_kw, name):
    """The shape from `f(2, 3)`, `f((2, 3))`, `f([2, 3])` or `f(size=(2, 3))`."""
    if size_kw is not None:
        if size:
            raise TypeError(f"{name}(): the size was given both positionally and as size=")
        size = (size_kw,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return size


def finish(t, requires_grad):
    """`t`, recording operations for autograd when requires_grad (floating point dtypes only)."""
    return t.requires_grad_() if requires_grad else t


def _shaped(core_factory, random):
    name = core_factory.__name__

    # PyTorch's `size=` keyword cannot sit beside *size in a Python signature: it arrives in **kwargs.
    def factory(*size, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False, **kwargs):
        del layout, pin_memory  # one layout (strided); host memory is shared with the GPU, nothing to pin
        shape = _size(size, kwargs.pop("size", None), name)
        if random and kwargs.pop("generator", None) is not None:
            raise ValueError(f"{name}(): generator must be None: Orchard draws from its one generator, "
                             "seeded by orchard.manual_seed")
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument {next(iter(kwargs))!r}")
        return finish(core_factory(*shape, dtype=dtype or _DEFAULT_DTYPE, device=device), requires_grad)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = (f"{core_factory.__doc__.splitlines()[-1].strip()}\n\n{name}(*size, dtype=None, device=None, "
                       f"requires_grad=False{', generator=None' if random else ''}): size as ints or one sequence.")
    return factory


empty = _shaped(_core.empty, random=False)
zeros = _shaped(_core.zeros, random=False)
ones = _shaped(_core.ones, random=False)
rand = _shaped(_core.rand, random=True)
randn = _shaped(_core.randn, random=True)


def _fill_dtype(fill_value):
    """PyTorch's dtype for full() without dtype=: bool, int64 or the default float dtype."""
    if isinstance(fill_value, builtins.bool):
        return dtype.bool
    if isinstance(fill_value, builtins.int):
        return dtype.int64
    return _DEFAULT_DTYPE


def full(size, fill_value, *, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False):
    """A tensor of `size` filled with fill_value; without dtype=, a bool, int64 or float32 one as the value is."""
    del layout, pin_memory
    if isinstance(size, builtins.int):
        size = (size,)
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    return finish(_core.full(size, fill_value, dtype=dtype or _fill_dtype(fill_value), device=device), requires_grad)
