"""Functional forms of the layers, with PyTorch's names and semantics."""
from .. import _core
from .._core import Tensor, scaled_dot_product_attention

__all__ = ["scaled_dot_product_attention", "linear", "layer_norm", "gelu", "dropout", "softmax",
           "log_softmax", "cross_entropy", "embedding"]


def _check_tensors(op, optional=(), **tensors):
    """TypeError naming the argument that is not a tensor (instead of an AttributeError from inside);
    the arguments named in `optional` may also be None."""
    for name, t in tensors.items():
        if not isinstance(t, Tensor) and not (t is None and name in optional):
            raise TypeError(f"{op}: {name} must be an orchard.Tensor, got {type(t).__name__}")


def linear(input, weight, bias=None):
    """input @ weight.T + bias, with weight stored [out_features, in_features] as in torch."""
    _check_tensors("linear", input=input, weight=weight, bias=bias, optional=("bias",))
    # One [rows, in] @ [in, out] product: a batched 3-D matmul has a much slower backward for the weight.
    rows = input.reshape(-1, input.shape[-1])
    out = rows @ weight.T if bias is None else _core.addmm(bias, rows, weight.T)
    return out.reshape(*input.shape[:-1], weight.shape[0])


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalises over the trailing `normalized_shape` dims, in one fused kernel."""
    _check_tensors("layer_norm", input=input, weight=weight, bias=bias, optional=("weight", "bias"))
    shape = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (normalized_shape,)
    if weight is None:
        weight = _core.ones(*shape, dtype=input.dtype, device=input.device)
    if bias is None:
        bias = _core.zeros(*shape, dtype=input.dtype, device=input.device)
    if tuple(weight.shape) != shape:
        raise ValueError(f"layer_norm: weight of shape {tuple(weight.shape)} does not match "
                         f"normalized_shape {shape}")
    return _core.layer_norm(input, weight, bias, eps)


def gelu(input, approximate="none"):
    return _core.gelu(input, approximate=approximate)


def dropout(input, p=0.5, training=True):
    """input * keep / (1 - p) in one fused kernel; the backward regenerates the mask from its Philox
    seed instead of storing it. Not training or p == 0: input unchanged (no copy); p == 1: input * 0."""
    _check_tensors("dropout", input=input)
    return _core.dropout(input, p, training)


def softmax(input, dim):
    return _core.softmax(input, dim)


def log_softmax(input, dim):
    return _core.log_softmax(input, dim)


def cross_entropy(input, target, ignore_index=-100, reduction="mean"):
    """Cross-entropy of logits `input` [N, C] against class ids `target` [N], in one fused kernel
    (log-softmax and the pick of the target's log-probability in a single pass)."""
    return _core.cross_entropy(input, target, ignore_index, reduction)


def embedding(input, weight):
    return _core.embedding(input, weight)

