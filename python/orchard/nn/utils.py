"""Gradient clipping, following torch.nn.utils: clip_grad_norm_ (with get_total_norm and
clip_grads_with_norm_, its two halves) and clip_grad_value_.

The norm stays a tensor on the gradients' device and the clipping multiplies by min(1, max_norm / norm)
unconditionally, as PyTorch does, so that clipping never waits for the device to report the norm."""
import math

from .. import _core
from .._core import Tensor
from .._tensor import tensor


def _tensors(tensors):
    """A single tensor or an iterable of tensors (a generator is read once), as a list."""
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _grads(parameters):
    return [p.grad for p in _tensors(parameters) if p.grad is not None]


def _vector_norm(t, norm_type):
    """torch.linalg.vector_norm of the tensor's values."""
    if norm_type == math.inf:
        return t.abs().amax()
    if norm_type == -math.inf:
        return t.abs().amin()
    if norm_type == 0.0:  # the number of nonzero values
        return t.ne(0).to(dtype=t.dtype).sum()
    if norm_type == 2.0:
        return (t * t).sum().sqrt()
    return t.abs().pow(norm_type).sum().pow(1.0 / norm_type)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The norm of the tensors' norms (so the norm of all values together, except for norm_type 0, where
    PyTorch's definition counts the tensors holding a nonzero), a 0-d tensor; foreach is accepted for
    PyTorch's signature (the per-tensor reductions run one after another)."""
    tensors = _tensors(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return tensor(0.0)
    total = _vector_norm(_core.stack([_vector_norm(t, norm_type) for t in tensors]), norm_type)
    if error_if_nonfinite and not math.isfinite(total.item()):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so "
                           "it cannot be clipped. To disable this error and scale the gradients by the non-finite "
                           "norm anyway, set `error_if_nonfinite=False`")
    return total


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scales the gradients by min(1, max_norm / (total_norm + 1e-6)) in place."""
    grads = _grads(parameters)
    if not grads:
        return
    coefficient = (float(max_norm) / (total_norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coefficient.to(device=g.device, dtype=g.dtype))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scales the gradients in place so that their total norm is at most max_norm; returns the total norm
    before clipping as a 0-d tensor."""
    parameters = _tensors(parameters)
    total = get_total_norm(_grads(parameters), norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(parameters, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamps every gradient into [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        g.copy_(g.clamp(-clip_value, clip_value))
