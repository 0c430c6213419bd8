"""Autograd utilities: grad mode, functional gradients and finite-difference checks."""
import contextlib

from . import _core
from ._core import _autograd


def is_grad_enabled():
    return _autograd.is_grad_enabled()


class _GradMode(contextlib.ContextDecorator):
    """Context manager and decorator that sets grad mode for the current thread.

    Each `with` (and each call of a decorated function) restores the mode it found, so nesting,
    recursion and threads sharing one decorator all unwind correctly."""

    def __init__(self, enabled):
        self.enabled = bool(enabled)
        self._prev = []

    def _recreate_cm(self):  # a fresh manager per decorated call (ContextDecorator protocol)
        return _GradMode(self.enabled)

    def __enter__(self):
        self._prev.append(_autograd.is_grad_enabled())
        _autograd.set_grad_enabled(self.enabled)
        return self

    def __exit__(self, *exc):
        _autograd.set_grad_enabled(self._prev.pop())
        return False


class _NoParamGradMode(_GradMode):
    """Usable as `@no_grad()` and also bare, `@no_grad`, as in PyTorch."""

    _mode = True

    def __new__(cls, orig_func=None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)

    def __init__(self, orig_func=None):
        super().__init__(self._mode)


class no_grad(_NoParamGradMode):
    """Ops inside record no graph: `with orchard.no_grad():` or `@orchard.no_grad()`."""

    _mode = False


class enable_grad(_NoParamGradMode):
    """Re-enables recording inside a no_grad region."""

    _mode = True


class set_grad_enabled(_GradMode):
    """Sets grad mode at once (`orchard.set_grad_enabled(False)`), or for a `with` block, or for
    the calls of a decorated function; the block and the calls restore the previous mode."""

    def __init__(self, mode):
        super().__init__(mode)
        self._prev.append(_autograd.is_grad_enabled())
        _autograd.set_grad_enabled(self.enabled)

    def __call__(self, func):
        # Used as a decorator: decorating must not change the mode of the caller.
        _autograd.set_grad_enabled(self._prev.pop())
        return super().__call__(func)

    def __enter__(self):
        if not self._prev:  # a second `with` of the same object
            self._prev.append(_autograd.is_grad_enabled())
        _autograd.set_grad_enabled(self.enabled)
        return self


class inference_mode(_GradMode):
    """PyTorch's inference mode, which for Orchard is no_grad (there are no view or version counter costs to
    save): `with orchard.inference_mode():`, `@orchard.inference_mode()`, `@orchard.inference_mode`, and
    inference_mode(False) to record as usual."""

    def __new__(cls, mode=True):
        if callable(mode):  # used bare as a decorator
            return cls()(mode)
        return super().__new__(cls)

    def __init__(self, mode=True):
        super().__init__(not mode)

    def _recreate_cm(self):
        return _GradMode(self.enabled)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def backward(tensors, grad_tensors=None, retain_graph=False):
    tensors = _as_list(tensors)
    grads = _as_list(grad_tensors) if grad_tensors is not None else [None] * len(tensors)
    _autograd.backward(tensors, grads, retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=False, allow_unused=False):
    """Gradients of `outputs` with respect to `inputs`, as a tuple; no .grad is touched."""
    outputs, inputs = _as_list(outputs), _as_list(inputs)
    grads = _as_list(grad_outputs) if grad_outputs is not None else [None] * len(outputs)
    return _autograd.grad(outputs, inputs, grads, retain_graph, allow_unused)


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Compares the analytic gradient of sum(fn(*inputs) * w) (w random) with central finite
    differences, in float64. Inputs that require grad are checked; raises AssertionError with the
    worst mismatch, returns True otherwise."""
    import numpy as np

    inputs = [x.double().detach().requires_grad_(x.requires_grad)
              if isinstance(x, _core.Tensor) and x.is_floating_point() else x
              for x in _as_list(inputs)]
    out = fn(*inputs)
    rng = np.random.default_rng(0)
    weight = _core.from_numpy(rng.standard_normal(out.shape))

    def objective():
        with no_grad():
            return float((fn(*inputs) * weight).sum().item())

    checked = [x for x in inputs if isinstance(x, _core.Tensor) and x.requires_grad]
    analytic = grad((out * weight).sum(), checked, allow_unused=True)
    for i, (x, g) in enumerate(zip(checked, analytic)):
        g = np.zeros(x.shape) if g is None else g.numpy()
        values = x.detach().numpy()  # a view of x, strided like x: writes show through
        numeric = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            orig = values[idx]
            values[idx] = orig + eps
            hi = objective()
            values[idx] = orig - eps
            lo = objective()
            values[idx] = orig
            numeric[idx] = (hi - lo) / (2 * eps)
        if not np.allclose(g, numeric, atol=atol, rtol=rtol):
            worst = np.unravel_index(np.argmax(np.abs(g - numeric)), x.shape) if x.ndim else ()
            raise AssertionError(f"gradcheck: input {i} gradient mismatch at {worst}: "
                                 f"analytic {g[worst]} vs numeric {numeric[worst]}")
    return True


__all__ = ["backward", "grad", "gradcheck", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "inference_mode"]
