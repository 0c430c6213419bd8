"""orchard.save and orchard.load, PyTorch's checkpoint functions, in a format that never runs code.

A file is a safetensors file: the bytes of every tensor under a name ("0", "1", ...), and in the
header's metadata, under "orchard", a JSON description of the saved object that refers to those
names. Dicts, lists, tuples, str, int, float, bool and None are the only other things it can hold,
so loading a file someone else made can only ever build data.

Tensors also pickle through their bytes (for copy.deepcopy and worker processes); `load` never
unpickles.
"""
import copy
import json
import math
import os
from collections import OrderedDict

import numpy as np

from . import _core
from ._core import Tensor, dtype

_FORMAT_KEY = "orchard"
_FORMAT_VERSION = 1

# Orchard dtype -> (its name in a safetensors header, the NumPy dtype of its bytes). bfloat16 travels as its
# 16-bit pattern, which NumPy holds as uint16.
_DTYPES = {
    dtype.bool: ("BOOL", np.dtype(np.bool_)),
    dtype.int32: ("I32", np.dtype("<i4")),
    dtype.int64: ("I64", np.dtype("<i8")),
    dtype.float16: ("F16", np.dtype("<f2")),
    dtype.bfloat16: ("BF16", np.dtype("<u2")),
    dtype.float32: ("F32", np.dtype("<f4")),
    dtype.float64: ("F64", np.dtype("<f8")),
}
_BY_HEADER_NAME = {header: dt for dt, (header, _) in _DTYPES.items()}


def _tensor_bytes(t):
    """The tensor's values, by value (views and non-contiguous tensors included), as a NumPy array of
    its bytes' layout on the host."""
    t = t.detach().cpu()
    if t.dtype == dtype.bfloat16:
        # float32 holds every bfloat16 exactly; its upper half is the bfloat16 bit pattern.
        wide = np.ascontiguousarray(t.float().numpy()).reshape(-1).view(np.uint32)  # 1-d: 0-d math gives scalars
        return (wide >> 16).astype("<u2").reshape(t.shape)
    return np.ascontiguousarray(t.numpy(), dtype=_DTYPES[t.dtype][1])


def _tensor_from_bytes(data, dt, shape):
    arr = np.frombuffer(data, dtype=_DTYPES[dt][1]).reshape(shape)
    if dt == dtype.bool:  # any nonzero byte is true; only 0 and 1 may reach a C++ bool
        return _core.from_numpy((arr.reshape(-1).view(np.uint8) != 0).reshape(shape))
    if dt == dtype.bfloat16:
        widened = (arr.reshape(-1).astype(np.uint32) << 16).view(np.float32).reshape(shape)
        return _core.from_numpy(widened).to(dtype=dtype.bfloat16)
    return _core.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))


def _rebuild_tensor(data, dtype_name, shape, device, requires_grad):
    """Unpickles a tensor (see Tensor.__reduce__)."""
    t = _tensor_from_bytes(data, _BY_HEADER_NAME[dtype_name], shape).to(device=device)
    return t.requires_grad_() if requires_grad else t


def _reduce_tensor(t):
    arr = _tensor_bytes(t)
    return _rebuild_tensor, (arr.tobytes(), _DTYPES[t.dtype][0], tuple(t.shape), str(t.device), t.requires_grad)


def _deepcopy_tensor(t, memo):
    """A copy through the tensor's data, with a copy of its .grad, as PyTorch's; only leaves, as in PyTorch (a
    copy of an intermediate result would lose its graph)."""
    if t.grad_fn is not None:
        raise RuntimeError("Only tensors created explicitly by the user (graph leaves) support deepcopy; "
                           "copy t.detach() instead")
    rebuild, args = _reduce_tensor(t)
    out = memo[id(t)] = rebuild(*args)
    if t.grad is not None:
        out.grad = copy.deepcopy(t.grad, memo)
    return out


Tensor.__reduce__ = _reduce_tensor
Tensor.__deepcopy__ = _deepcopy_tensor


# ---- save -------------------------------------------------------------------------------------------------------

class _Encoder:
    """Turns the object into a JSON-able description, collecting its tensors (each distinct tensor once)."""

    def __init__(self):
        self.arrays = {}  # name -> (tensor, bytes as ndarray)
        self.names = {}  # hash(t) (its implementation's address) -> name
        self.active = set()  # ids of the containers being encoded, to refuse cycles

    def encode(self, obj, path):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, int):
            return int(obj)
        if isinstance(obj, float):
            return float(obj) if math.isfinite(obj) else {"float": repr(float(obj))}
        if isinstance(obj, Tensor):
            return self._tensor(obj)
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self.active:
                raise ValueError(f"orchard.save: {path} contains itself; only trees of values can be saved")
            self.active.add(id(obj))
            try:
                return self._container(obj, path)
            finally:
                self.active.discard(id(obj))
        raise TypeError(f"orchard.save: cannot save {path}, a {type(obj).__module__}.{type(obj).__qualname__}; "
                        "expected tensors, dicts, lists, tuples, str, int, float, bool or None")

    def _container(self, obj, path):
        if isinstance(obj, dict):
            pairs = [[self.encode(k, f"a key of {path}"), self.encode(v, f"{path}[{k!r}]")] for k, v in obj.items()]
            return {"ordered_dict" if isinstance(obj, OrderedDict) else "dict": pairs}
        items = [self.encode(v, f"{path}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"tuple": items}

    def _tensor(self, t):
        name = self.names.get(hash(t))
        if name is None:
            name = self.names[hash(t)] = str(len(self.arrays))
            self.arrays[name] = (t, _tensor_bytes(t))
        node = {"tensor": name, "device": str(t.device)}
        if t.requires_grad:
            node["requires_grad"] = True
        return node


def _serialize(arrays, metadata):
    """safetensors bytes of {name: (tensor, ndarray of its bytes)} with the metadata. (Written here: the package's
    own writer changed its interface in 0.8 and writes a broken header for metadata without tensors before.)"""
    header, offset = {"__metadata__": metadata}, 0
    for name, (t, arr) in arrays.items():
        end = offset + arr.nbytes
        header[name] = {"dtype": _DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors' own writer does
    return b"".join([len(text).to_bytes(8, "little"), text, *(arr.tobytes() for _, arr in arrays.values())])


def _check_file(f, op, method):
    """TypeError unless f is a path or a file object with the method op needs (read or write)."""
    if not isinstance(f, (str, os.PathLike)) and not callable(getattr(f, method, None)):
        raise TypeError(f"orchard.{op}: f must be a path or a binary file object with {method}(), got "
                        f"{type(f).__name__}")


def save(obj, f):
    """Writes obj (nested dicts, lists and tuples of tensors, str, int, float, bool and None) to f, a path or a
    binary file object. A tensor that appears several times is stored once and loads as one tensor."""
    _check_file(f, "save", "write")
    encoder = _Encoder()
    description = {"version": _FORMAT_VERSION, "object": encoder.encode(obj, "obj")}
    metadata = {_FORMAT_KEY: json.dumps(description, allow_nan=False, separators=(",", ":"))}
    data = _serialize(encoder.arrays, metadata)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as out:
            out.write(data)
    else:
        f.write(data)


# ---- load -------------------------------------------------------------------------------------------------------

def _read_header(data, source):
    """The description stored in the metadata, after checking the header's framing."""
    if len(data) < 8:
        raise RuntimeError(f"{source} has {len(data)} bytes, fewer than the 8 of a safetensors header length")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8 and (data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"):  # zip, or pickle protocol 2+
        raise RuntimeError(f"{source} looks like a PyTorch checkpoint (torch.save's zip or pickle format), which "
                           "orchard.load never reads: unpickling can run code. Load it with PyTorch and save the "
                           "tensors with safetensors (safetensors.torch.save_file), or convert them with "
                           "orchard.tensor(t.numpy())")
    if size > len(data) - 8:
        raise RuntimeError(f"{source}'s header says it has {size} bytes, but only {len(data) - 8} follow (truncated, "
                       "or not a safetensors file)")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuntimeError(f"{source}'s header is not valid JSON ({e})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or _FORMAT_KEY not in metadata:
        raise RuntimeError(f"{source} is a safetensors file without orchard.save's description of the object; "
                       "plain safetensors files load with safetensors.numpy.load_file")
    try:
        description = json.loads(metadata[_FORMAT_KEY])
    except (TypeError, json.JSONDecodeError) as e:
        raise RuntimeError(f"{source}'s object description is not valid JSON ({e})") from None
    if not isinstance(description, dict) or description.get("version") != _FORMAT_VERSION:
        version = description.get("version") if isinstance(description, dict) else None
        raise RuntimeError(f"{source} has format version {version!r}; this Orchard reads version {_FORMAT_VERSION}")
    return description


def _read_tensors(data, source):
    """{name: (dtype, shape, bytes)} as safetensors checks them (sizes and offsets inside the file)."""
    # Imported here, not with the package: building the package imports it (for the type stubs) in an
    # environment that has only the build requirements.
    import safetensors
    try:
        entries = safetensors.deserialize(data)
    except Exception as e:  # SafetensorError and, in some versions, plain exceptions from the Rust side
        raise RuntimeError(f"{source} is not a valid safetensors file: {e}") from None
    tensors = {}
    for name, entry in entries:
        dt = _BY_HEADER_NAME.get(entry["dtype"])
        if dt is None:
            raise RuntimeError(f"{source} holds tensor {name!r} of dtype {entry['dtype']}, which Orchard has not; "
                           f"expected one of {', '.join(_BY_HEADER_NAME)}")
        tensors[name] = (dt, tuple(entry["shape"]), entry["data"])
    return tensors


def _placement(map_location):
    """A function that moves a loaded tensor (on the CPU) where map_location says, given the name of the device it
    was saved from."""
    if map_location is None:
        return lambda t, saved: t.to(device=saved)
    if isinstance(map_location, (str, _core.device)):
        target = str(_core.device(str(map_location)))
        return lambda t, saved: t.to(device=target)
    if isinstance(map_location, dict):
        # Keys may name devices this build lacks (a PyTorch script's {"cuda:0": "cpu"}); targets must exist.
        table = {str(k): str(_core.device(str(v))) for k, v in map_location.items()}
        return lambda t, saved: t.to(device=table.get(saved, saved))
    if callable(map_location):
        # PyTorch calls it with each storage (on the CPU) and its saved location; None keeps the saved device.
        def place(t, saved):
            placed = map_location(t, saved)
            if placed is None:
                return t.to(device=saved)
            if not isinstance(placed, Tensor):
                raise TypeError(f"orchard.load: map_location returned a {type(placed).__name__}; expected the tensor "
                                "it was given (moved or not) or None")
            return placed
        return place
    raise TypeError(f"orchard.load: map_location must be None, a device, a device name, a dict from device names to "
                    f"device names, or a function (tensor, saved device name) -> tensor or None, got "
                    f"{type(map_location).__name__}")


class _Decoder:
    def __init__(self, tensors, place, source):
        self.tensors, self.place, self.source = tensors, place, source
        self.built = {}  # name -> tensor, so a tensor saved once loads as one object

    def decode(self, node):
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if isinstance(node, dict) and len(node) >= 1:
            for kind, cls in (("dict", dict), ("ordered_dict", OrderedDict)):
                if kind in node and len(node) == 1 and isinstance(node[kind], list):
                    return self._dict(node[kind], cls())
            if "tuple" in node and len(node) == 1 and isinstance(node["tuple"], list):
                return tuple(self.decode(v) for v in node["tuple"])
            if "float" in node and len(node) == 1 and node["float"] in ("nan", "inf", "-inf"):
                return float(node["float"])
            if "tensor" in node:
                return self._tensor(node)
        raise RuntimeError(f"{self.source}'s object description holds {json.dumps(node)[:80]}, which is none of the "
                       "values orchard.save writes")

    def _dict(self, pairs, out):
        for pair in pairs:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise RuntimeError(f"{self.source}'s object description has a dict entry {json.dumps(pair)[:80]}; "
                               "expected a [key, value] pair")
            key = self.decode(pair[0])
            try:
                hash(key)
            except TypeError:
                raise RuntimeError(f"{self.source}'s object description has an unhashable dict key "
                               f"{json.dumps(pair[0])[:80]}") from None
            out[key] = self.decode(pair[1])
        return out

    def _tensor(self, node):
        name, device = node.get("tensor"), node.get("device")
        if name not in self.tensors:
            raise RuntimeError(f"{self.source}'s object description refers to tensor {name!r}; the file holds tensors "
                           f"{sorted(self.tensors)[:10]}")
        try:
            saved_on = str(_core.device(device))
        except (TypeError, ValueError):
            raise RuntimeError(f"{self.source} says tensor {name!r} was saved on device {device!r}, which is not "
                           "'cpu' or 'metal'") from None
        if name not in self.built:
            dt, shape, data = self.tensors[name]
            t = self.place(_tensor_from_bytes(data, dt, shape), saved_on)
            self.built[name] = t.requires_grad_() if node.get("requires_grad") is True else t
        return self.built[name]


def load(f, map_location=None, *, weights_only=True):
    """Reads what save() wrote to f (a path or a binary file object). Tensors load on the device they were saved
    from, or as map_location says: a device ("cpu", "metal", orchard.device) for all of them, a dict from
    saved device names to devices, or a function called with each tensor (on the CPU) and its saved device name
    that returns the tensor to use (None: the saved device). The file can only hold data, so weights_only=False (PyTorch's way of allowing
    arbitrary objects) reads the same."""
    del weights_only  # both meanings are safe here: nothing in the file can run code
    _check_file(f, "load", "read")
    place = _placement(map_location)
    if isinstance(f, (str, os.PathLike)):
        source = f"orchard.load: {os.fspath(f)!r}"
        with open(f, "rb") as stream:
            data = stream.read()
    else:
        source = "orchard.load: the file object"
        data = f.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"orchard.load: expected a binary file object, but read() gave {type(data).__name__}")
        data = bytes(data)
    description = _read_header(data, source)
    return _Decoder(_read_tensors(data, source), place, source).decode(description.get("object"))

