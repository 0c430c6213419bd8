"""default_collate and default_convert, as torch.utils.data: how a DataLoader turns a list of samples into a
batch (and, without batching, a sample into tensors)."""
import collections.abc
import copy

import numpy as np

from ... import _core
from ..._tensor import tensor

__all__ = ["default_collate", "default_convert"]


def _is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _numpy_array(elem):
    """Whether elem is a NumPy array or scalar of numbers (not of strings or objects)."""
    return isinstance(elem, (np.ndarray, np.generic)) and elem.dtype.kind in "biuf"


def _rebuild(elem, items):
    """A container like elem holding items (key-value pairs of a mapping, or a sequence's elements): a copy of a
    mapping updated with them (a defaultdict or OrderedDict stays one), a sequence of elem's type; a plain dict
    or list when that fails, as PyTorch does."""
    try:
        if isinstance(elem, collections.abc.Mapping):
            out = copy.copy(elem)
            out.update(items)
            return out
        return type(elem)(items)
    except TypeError:
        return dict(items) if isinstance(elem, collections.abc.Mapping) else list(items)


def default_collate(batch):
    """Stacks a list of samples into a batch, keeping their structure: tensors and NumPy arrays stack along a
    new first dim, Python ints become an int64 tensor, floats a float64 tensor and bools a bool tensor (as
    torch.tensor would), strings stay a list, and dicts, namedtuples, tuples and lists are collated per field
    (a tuple of fields comes back as a list, as in PyTorch)."""
    elem = batch[0]
    if isinstance(elem, _core.Tensor):
        return _core.stack(list(batch), 0)
    if _numpy_array(elem):
        return _core.stack([tensor(b) for b in batch], 0) if elem.ndim else tensor(np.array(batch))
    if isinstance(elem, (np.ndarray, np.generic)):
        raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
                        f"a NumPy array of dtype {elem.dtype}")
    if isinstance(elem, float):
        return tensor(batch, dtype=_core.dtype.float64)
    if isinstance(elem, int):  # bools included: torch.tensor gives them dtype bool
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild(elem, [(key, default_collate([d[key] for d in batch])) for key in elem])
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(samples) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(samples) for samples in zip(*batch)]
        return fields if isinstance(elem, tuple) else _rebuild(elem, fields)
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
                    f"{type(elem)}")


def default_convert(data):
    """A sample's NumPy arrays (and those inside its dicts, namedtuples, tuples and lists) as tensors; the rest
    unchanged. The collate function of a DataLoader that does not batch (batch_size=None)."""
    if _numpy_array(data):
        return tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild(data, [(key, default_convert(data[key])) for key in data])
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild(data, [default_convert(d) for d in data])
    return data
