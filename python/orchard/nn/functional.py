"""Functional forms of the layers, with PyTorch's names, signatures and semantics."""
import warnings

from .. import _core
from .._core import Tensor, scaled_dot_product_attention
from ..amp.autocast_mode import autocast_op, dtype_overrides_autocast
from ..autograd import is_grad_enabled

__all__ = ["scaled_dot_product_attention", "linear", "layer_norm", "gelu", "relu", "silu", "tanh", "sigmoid",
           "dropout", "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "one_hot", "pad",
           "embedding"]


def _check_tensors(op, optional=(), **tensors):
    """TypeError naming the argument that is not a tensor (instead of an AttributeError from inside);
    the arguments named in `optional` may also be None."""
    for name, t in tensors.items():
        if not isinstance(t, Tensor) and not (t is None and name in optional):
            raise TypeError(f"{op}: {name} must be an orchard.Tensor, got {type(t).__name__}")


def _maybe_in_place(fn, input, inplace):
    """fn(input); with inplace=True (PyTorch's flag) written into input, which is returned. Under
    autograd fn then runs on a copy: what it saves for backward must not be the memory overwritten."""
    if not inplace:
        return fn(input)
    recording = input.requires_grad and is_grad_enabled()
    return input.copy_(fn(input.clone() if recording else input))


@autocast_op("linear")
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


# ---- activations -------------------------------------------------------------------------------

def gelu(input, approximate="none"):
    return _core.gelu(input, approximate=approximate)


def relu(input, inplace=False):
    _check_tensors("relu", input=input)
    return _maybe_in_place(_core.relu, input, inplace)


def silu(input, inplace=False):
    """input * sigmoid(input)."""
    _check_tensors("silu", input=input)
    return _maybe_in_place(lambda x: x * _core.sigmoid(x), input, inplace)


def tanh(input):
    return _core.tanh(input)


def sigmoid(input):
    return _core.sigmoid(input)


def _softmax_dim(op, input, dim, stacklevel):
    if dim is not None:
        return dim
    if not isinstance(stacklevel, int) or not 1 <= stacklevel <= 1000:
        raise ValueError(f"{op}: _stacklevel must be an int in [1, 1000], got {stacklevel!r}")
    warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X "
                  "as an argument.", stacklevel=stacklevel)
    return 0 if input.ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Softmax along dim (computed in `dtype` when given, as PyTorch: the input is cast first)."""
    _check_tensors("softmax", input=input)
    dim = _softmax_dim("softmax", input, dim, _stacklevel)
    if dtype is None:
        return _core.softmax(input, dim)
    with dtype_overrides_autocast():
        return _core.softmax(input.to(dtype=dtype), dim)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    _check_tensors("log_softmax", input=input)
    dim = _softmax_dim("log_softmax", input, dim, _stacklevel)
    if dtype is None:
        return _core.log_softmax(input, dim)
    with dtype_overrides_autocast():
        return _core.log_softmax(input.to(dtype=dtype), dim)


def dropout(input, p=0.5, training=True, inplace=False):
    """input * keep / (1 - p) in one fused kernel; the backward regenerates the mask from its Philox
    seed instead of storing it. Not training or p == 0: input unchanged (no copy); p == 1: input * 0."""
    _check_tensors("dropout", input=input)
    out = _core.dropout(input, p, training)
    # The backward saves no input, so the result may overwrite it even under autograd.
    return input.copy_(out) if inplace and not out.is_alias_of(input) else out


# ---- losses ------------------------------------------------------------------------------------

_REDUCTIONS = ("none", "mean", "sum")


def _legacy_reduction(size_average, reduce, reduction):
    """PyTorch's deprecated size_average=/reduce= flags, mapped to reduction= (they win when given)."""
    if size_average is None and reduce is None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction= instead.",
                  stacklevel=3)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return ("mean" if size_average else "sum") if reduce else "none"


def _reduce(losses, reduction):
    return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()


@autocast_op("mse_loss")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Squared differences, summed or averaged by `reduction`; with weight (the input's shape) each
    is scaled by it, and the mean divides by weight's sum, as PyTorch's."""
    _check_tensors("mse_loss", input=input, target=target, weight=weight, optional=("weight",))
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({tuple(target.shape)}) that is different to the input size "
                      f"({tuple(input.shape)}). This will likely lead to incorrect results due to broadcasting. "
                      "Please ensure they have the same size.", stacklevel=2)
    squared = (input - target) ** 2
    if weight is None:
        return _reduce(squared, reduction)
    if tuple(weight.shape) != tuple(input.shape):
        raise ValueError("Weights and input must have the same size.")
    weighted = squared * weight
    return weighted.sum() / weight.sum() if reduction == "mean" else _reduce(weighted, reduction)


def _classes_last(op, input, target):
    """input [N, C, d...] (or [C]) and class-index target [N, d...] (or []) as rows [M, C] and [M]."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have at least 1 dimension (classes), got a 0-d tensor")
    if target.is_floating_point() or target.dtype == _core.dtype.bool:
        raise RuntimeError(f"{op}: expected target dtype to be int64 (class indices) or, for cross_entropy, "
                           f"floating point probabilities of the input's shape, but got {target.dtype!r}")
    if input.ndim == 1:
        if target.ndim > 1 or target.numel() != 1:
            raise ValueError(f"For 1D input, 1D target must have size 1, but got target size: {target.numel()}")
        return input.reshape(1, -1), target.reshape(1)
    if target.ndim == 0 or target.shape[0] != input.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0] if target.ndim else 0}).")
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise RuntimeError(f"{op}: expected target size {expected}, got {tuple(target.shape)}")
    if input.ndim > 2:
        input = input.permute(0, *range(2, input.ndim), 1)
    return input.reshape(-1, input.shape[-1]), target.reshape(-1)


def _loss_shape(input, target):
    """reduction="none"'s shape: the target's, or 0-d for an unbatched input [C] (as PyTorch's)."""
    return () if input.ndim == 1 else tuple(target.shape)


def _check_class_weight(weight, classes):
    if weight is not None and tuple(weight.shape) != (classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes but "
                           f"got weight tensor of shape: {list(weight.shape)}")


def _check_targets(target, classes, ignore_index):
    """IndexError naming a target outside [0, classes) that is not ignore_index (one host sync)."""
    if target.numel() == 0:
        return
    kept = _core.where(target == ignore_index, 0, target)
    low, high = int(kept.min()), int(kept.max())
    if low < 0 or high >= classes:
        raise IndexError(f"Target {low if low < 0 else high} is out of bounds.")


def _nll_rows(logp, target, weight, ignore_index, reduction):
    """The negative log-likelihood of rows logp [M, C] at target [M], PyTorch's nll_loss; returns
    (loss, the weight each row counts with) so label smoothing can use the same normaliser."""
    _check_targets(target, logp.shape[1], ignore_index)
    kept = target != ignore_index
    safe = _core.where(kept, target, 0)
    picked = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    counts = kept.to(dtype=logp.dtype) if weight is None else weight.index_select(0, safe) * kept
    losses = -picked * counts
    if reduction == "none":
        return losses, counts
    return (losses.sum() if reduction == "sum" else losses.sum() / counts.sum()), counts


@autocast_op("nll_loss")
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities input [N, C, d...] at class indices target
    [N, d...]; the mean is weighted by weight[target] over the targets not equal to ignore_index."""
    _check_tensors("nll_loss", input=input, target=target, weight=weight, optional=("weight",))
    reduction = _legacy_reduction(size_average, reduce, reduction)
    rows, flat = _classes_last("nll_loss", input, target)
    _check_class_weight(weight, rows.shape[1])
    loss, _ = _nll_rows(rows, flat, weight, ignore_index, reduction)
    return loss.reshape(_loss_shape(input, target)) if reduction == "none" else loss


def _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing):
    """Cross-entropy against class probabilities target (the input's shape), PyTorch's formula."""
    if tuple(target.shape) != tuple(input.shape):
        raise RuntimeError(f"cross_entropy: probability targets must have the input's shape {tuple(input.shape)}, "
                           f"got {tuple(target.shape)}")
    class_dim = 0 if input.ndim == 1 else 1
    classes = input.shape[class_dim]
    logp = _core.log_softmax(input, class_dim)
    if weight is not None:
        logp = logp * weight.reshape(classes, *([1] * (input.ndim - class_dim - 1)))
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / classes
    losses = -(logp * target).sum(class_dim)
    if reduction == "mean":
        return losses.sum() / (input.numel() // classes)
    return _reduce(losses, reduction)


@autocast_op("cross_entropy")
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits input [N, C, d...] (classes in dim 1, or [C]) against class indices
    target [N, d...] or class probabilities (the input's shape). Without weight or label smoothing,
    one fused kernel (log-softmax and the pick of the target's log-probability in a single pass)."""
    _check_tensors("cross_entropy", input=input, target=target, weight=weight, optional=("weight",))
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    classes = input.shape[0 if input.ndim == 1 else 1] if input.ndim else 0
    _check_class_weight(weight, classes)
    if target.is_floating_point():
        return _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing)
    rows, flat = _classes_last("cross_entropy", input, target)
    if weight is None and label_smoothing == 0:
        loss = _core.cross_entropy(rows, flat, ignore_index, reduction)
    else:
        logp = _core.log_softmax(rows, 1)
        loss, counts = _nll_rows(logp, flat, weight, ignore_index, reduction)
        if label_smoothing > 0:
            # Every class's log-probability (weighted), with the normaliser nll_loss used.
            spread = -(logp if weight is None else logp * weight).sum(1) * (flat != ignore_index)
            if reduction != "none":
                spread = spread.sum() / counts.sum() if reduction == "mean" else spread.sum()
            loss = loss * (1 - label_smoothing) + spread * (label_smoothing / classes)
    return loss.reshape(_loss_shape(input, target)) if reduction == "none" else loss


# ---- indices and shapes ------------------------------------------------------------------------

def one_hot(tensor, num_classes=-1):
    """int64 [..., num_classes] with a 1 at each index of `tensor` (int64); num_classes=-1 takes
    max + 1."""
    _check_tensors("one_hot", tensor=tensor)
    if tensor.dtype != _core.dtype.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        if tensor.numel() == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(tensor.max()) + 1
    if tensor.numel():
        if int(tensor.min()) < 0:
            raise RuntimeError("Class values must be non-negative.")
        if int(tensor.max()) >= num_classes:
            raise RuntimeError("Class values must be smaller than num_classes.")
    from .._tensor import arange
    return _core.eq(tensor.unsqueeze(-1), arange(num_classes, device=tensor.device)).long()


def _filled_like(t, dim, size, value):
    """A tensor like t but of `size` along dim, full of value."""
    return _core.full(t.shape[:dim] + (size,) + t.shape[dim + 1:], value, dtype=t.dtype, device=t.device)


def pad(input, pad, mode="constant", value=None):
    """Pads (or, with negative amounts, crops) the last len(pad) // 2 dims: pad = (last_left,
    last_right, second_last_left, ...), filled with `value` (0 when None). Only mode='constant'."""
    _check_tensors("pad", input=input)
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if mode != "constant":
        raise NotImplementedError(f"pad: mode '{mode}' is not supported by Orchard yet; only mode='constant'")
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {input.ndim}")
    fill = 0 if value is None else value
    out = input
    for i in range(len(pad) // 2):
        dim, before, after = input.ndim - 1 - i, int(pad[2 * i]), int(pad[2 * i + 1])
        kept = out.shape[dim] - max(-before, 0) - max(-after, 0)
        if kept < 0 or kept + max(before, 0) + max(after, 0) < 0:
            raise RuntimeError(f"The input size {out.shape[dim]}, plus negative padding {before} and {after} resulted "
                               f"in a negative output size, which is invalid. Check dimension {dim} of your input.")
        out = out.narrow(dim, max(-before, 0), kept)
        pieces = ([_filled_like(out, dim, before, fill)] if before > 0 else []) + [out] + \
            ([_filled_like(out, dim, after, fill)] if after > 0 else [])
        if len(pieces) > 1:
            out = _core.cat(pieces, dim)
    return out.clone() if out.is_alias_of(input) else out


def _check_embedding_options(max_norm, scale_grad_by_freq, sparse):
    for name, unsupported in (("max_norm", max_norm is not None), ("scale_grad_by_freq", scale_grad_by_freq),
                              ("sparse", sparse)):
        if unsupported:
            raise NotImplementedError(f"embedding: {name} is not supported by Orchard")


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """The rows of weight picked by input; rows picked at padding_idx pass no gradient to weight."""
    _check_tensors("embedding", input=input, weight=weight)
    _check_embedding_options(max_norm, scale_grad_by_freq, sparse)
    out = _core.embedding(input, weight)
    if padding_idx is None:
        return out
    if padding_idx < 0:
        padding_idx += weight.shape[0]
    return _core.where((input != padding_idx).unsqueeze(-1), out, out.detach())
