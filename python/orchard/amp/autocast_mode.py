"""autocast, following torch.autocast: mixed precision inside a region.

Inside `with orchard.autocast("cpu")` (or "metal"), matrix products and attention run in bfloat16
(float16 on Metal unless dtype= says otherwise) while losses, and on Metal softmax, layer norm,
sums, exp/log/pow, run in float32; parameters and their gradients stay float32, and autograd casts
the gradients back across the casts. The per-op policy is the core's (src/core/autocast.cpp, PyTorch's
lists); the state is per thread. Weights' casts are kept until the outermost region exits, so each
parameter is cast once per step however many ops use it."""
import functools
import threading
import warnings

from .. import _core
from .._core import Tensor, dtype

_DEVICE_TYPES = ("cpu", "metal", "cuda")
_LOW_DTYPES = (dtype.bfloat16, dtype.float16)
_nesting = threading.local()  # .depth: autocast regions entered on this thread


def is_autocast_available(device_type):
    """Whether autocast can be enabled for device_type ("cuda" only where this machine has the CUDA device)."""
    return device_type in _DEVICE_TYPES and (device_type != "cuda" or _core._cuda_is_available())


def _absent(device_type):
    """A device type scripts name that this machine lacks: autocast for it is off, as PyTorch's without CUDA."""
    return device_type == "cuda" and not _core._cuda_is_available()


def _checked_device_type(device_type):
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in _DEVICE_TYPES:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'; Orchard's are "
                           f"{', '.join(repr(d) for d in _DEVICE_TYPES)}")
    return device_type


def is_autocast_enabled(device_type="cuda"):
    """Whether autocast is on for device_type on this thread."""
    return not _absent(_checked_device_type(device_type)) and _core._autocast_state(device_type)[0]


def get_autocast_dtype(device_type):
    """The low-precision dtype autocast uses for device_type."""
    if _absent(_checked_device_type(device_type)):
        return dtype.float16
    return _core._autocast_state(device_type)[1]


def set_autocast_enabled(device_type, enabled):
    if not _absent(_checked_device_type(device_type)):
        _, low, cache = _core._autocast_state(device_type)
        _core._set_autocast_state(device_type, bool(enabled), low, cache)


def set_autocast_dtype(device_type, dtype):
    if not _absent(_checked_device_type(device_type)):
        enabled, _, cache = _core._autocast_state(device_type)
        _core._set_autocast_state(device_type, enabled, dtype, cache)


def clear_autocast_cache():
    """Drops the cached casts of parameters (the outermost region's exit does this)."""
    _core._clear_autocast_cache()


class autocast:
    """Context manager and decorator: ops on device_type's tensors run in mixed precision inside it.

    device_type: "cpu", "metal" or "cuda" ("cuda" without a CUDA device warns and disables itself, as PyTorch does).
    dtype: bfloat16 or float16 (default: bfloat16 on the CPU, float16 on Metal, as PyTorch's CPU and MPS).
    enabled: False makes the region a no-op (or turns autocast off inside an enclosing one).
    cache_enabled: keep parameters' casts for the region (default True)."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        self.device = _checked_device_type(device_type)
        self.fast_dtype = _core._autocast_default_dtype(device_type) if dtype is None and not _absent(device_type) \
            else dtype
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)
        self._enabled = bool(enabled)
        if _absent(device_type):
            if enabled:
                warnings.warn("User provided device_type of 'cuda', but CUDA is not available. Disabling",
                              stacklevel=2)
            self._enabled = False
        elif self._enabled and self.fast_dtype not in _LOW_DTYPES:
            warnings.warn(f"In {device_type} autocast, but the target dtype {self.fast_dtype} is not supported. "
                          f"Disabling autocast.\n{device_type} autocast only supports dtype of orchard.bfloat16 "
                          "and orchard.float16 currently.", stacklevel=2)
            self._enabled = False

    def __enter__(self):
        if _absent(self.device):
            return self
        self._previous = _core._autocast_state(self.device)
        low = self.fast_dtype if self._enabled else self._previous[1]
        _core._set_autocast_state(self.device, self._enabled, low, self._cache_enabled)
        _nesting.depth = getattr(_nesting, "depth", 0) + 1
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if _absent(self.device):
            return False
        _nesting.depth -= 1
        if _nesting.depth == 0:
            clear_autocast_cache()
        _core._set_autocast_state(self.device, *self._previous)
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            with autocast(self.device, self.fast_dtype, self._enabled, self._cache_enabled):
                return func(*args, **kwargs)
        return run


def autocast_op(name):
    """Decorator for an op written in Python whose name is in the core's autocast lists: its tensor
    arguments are cast by that policy, and the ops it runs are not cast again (as for a core op)."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            at = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
            keys = [k for k, v in kwargs.items() if isinstance(v, Tensor)]
            with _core._AutocastCast(name, [args[i] for i in at] + [kwargs[k] for k in keys]) as cast:
                if cast is not None:
                    args = list(args)
                    for i, t in zip(at + keys, cast):
                        (args if isinstance(i, int) else kwargs)[i] = t
                return fn(*args, **kwargs)
        return run
    return wrap


def dtype_overrides_autocast():
    """A context in which autocast is paused: an op given an explicit dtype= computes in it."""
    return _core._AutocastPause()
