"""orchard.compile: PyTorch's torch.compile, accepted and answered by running eagerly.

Orchard has no graph compiler: every op runs as it is called. compile() therefore returns the module or
function it was given, unchanged, and warns once so nobody mistakes the eager speed for a compiled one.
"""
import warnings

_warned = False


def _warn_once():
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("orchard.compile: Orchard has no compiler and runs eagerly; the model is returned unchanged",
                      UserWarning, stacklevel=3)


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None, options=None,
            disable=False):
    """Returns `model` unchanged (or, called without it, a decorator that does), as torch.compile's signature
    allows: `orchard.compile(model)`, `@orchard.compile` and `@orchard.compile(mode=...)`."""
    del fullgraph, dynamic, backend, options
    if mode is not None and not isinstance(mode, str):
        raise TypeError(f"compile: mode must be a string or None, got {type(mode).__name__}")

    def apply(fn):
        if not callable(fn):
            raise TypeError(f"compile: expected a module or a function, got {type(fn).__name__}")
        if not disable:
            _warn_once()
        return fn

    return apply if model is None else apply(model)
