"""Modules holding other modules or parameters: Sequential, ModuleList, ModuleDict, ParameterList and
ParameterDict, with PyTorch's indexing and naming ("0", "1", ... for the list-like ones)."""
import operator
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from .._core import Tensor
from .module import Module
from .parameter import Parameter


def _position(index, length, kind):
    """A list index (negatives from the end) as a position in [0, length)."""
    index = operator.index(index)
    if not -length <= index < length:
        raise IndexError(f"index {index} is out of range for {kind} of length {length}")
    return index % length


def _pairs(values, kind):
    """(key, value) pairs from a mapping, a ModuleDict or ParameterDict (their order), or an iterable
    of pairs."""
    if isinstance(values, (Mapping, _KeyedMethods)):
        return list(values.items())
    if not isinstance(values, Iterable):
        raise TypeError(f"{kind}.update should be called with an iterable of key/value pairs, "
                        f"but got {type(values).__name__}")
    pairs = []
    for i, pair in enumerate(values):
        if not isinstance(pair, Iterable) or len(pair := tuple(pair)) != 2:
            raise ValueError(f"{kind} update sequence element #{i} should be a (key, value) pair")
        pairs.append(pair)
    return pairs


class _KeyedMethods:
    """The dict methods of ModuleDict and ParameterDict, over _key_table() (a dict keyed like the
    container) and the subclass's __getitem__, __setitem__ and __delitem__."""

    def __len__(self):
        return len(self._key_table())

    def __iter__(self):
        return iter(self._key_table())

    def __contains__(self, key):
        return key in self._key_table()

    def keys(self):
        return self._key_table().keys()

    def items(self):
        return ((key, self[key]) for key in self._key_table())

    def values(self):
        return (self[key] for key in self._key_table())

    def pop(self, key):
        value = self[key]
        del self[key]
        return value

    def clear(self):
        for key in list(self._key_table()):
            del self[key]

    def update(self, values):
        for key, value in _pairs(values, type(self).__name__):
            self[key] = value


class _IndexedModules(Module):
    """The list-like part of ModuleList and Sequential: entries named "0", "1", ... renumbered after
    every insertion or deletion."""

    def _renumber(self, modules):
        self._modules.clear()
        for i, module in enumerate(modules):
            self.add_module(str(i), module)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._slice(index)
        modules = list(self._modules.values())
        return modules[_position(index, len(modules), type(self).__name__)]

    def __setitem__(self, index, module):
        self.add_module(str(_position(index, len(self), type(self).__name__)), module)

    def __delitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            del modules[index]
        else:
            del modules[_position(index, len(modules), type(self).__name__)]
        self._renumber(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        if not isinstance(modules, Iterable):
            raise TypeError(f"{type(self).__name__}.extend should be called with an iterable, "
                            f"but got {type(modules).__name__}")
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        """Inserts before position `index`, as list.insert (negative counts from the end)."""
        modules = list(self._modules.values())
        modules.insert(operator.index(index), module)
        self._renumber(modules)

    def pop(self, index=-1):
        module = self[index]
        del self[index]
        return module

    def __dir__(self):
        return [name for name in super().__dir__() if not name.isdigit()]


class ModuleList(_IndexedModules):
    """A list of modules, registered as submodules "0", "1", ...; it has no forward()."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _slice(self, index):
        return type(self)(list(self._modules.values())[index])

    def __iadd__(self, modules):
        return self.extend(modules)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))


class Sequential(_IndexedModules):
    """Modules called one after the other: Sequential(a, b, c) names them "0", "1", "2";
    Sequential(OrderedDict(name=module, ...)) keeps the names given."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def _slice(self, index):  # keeps the names
        return Sequential(OrderedDict(list(self._modules.items())[index]))

    def __setitem__(self, index, module):
        key = list(self._modules)[_position(index, len(self), "Sequential")]
        self.add_module(key, module)

    def forward(self, input):
        for module in self:
            input = module(input)
        return input


class ModuleDict(_KeyedMethods, Module):
    """An ordered dict of modules, registered as submodules under their keys."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def _key_table(self):
        return self._modules

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]


def _as_parameter(value):
    """A Tensor that is not yet a Parameter becomes one, as PyTorch's ParameterList/Dict do."""
    return Parameter(value) if isinstance(value, Tensor) and not isinstance(value, Parameter) else value


def _describe(value):
    if isinstance(value, Tensor):
        kind = "Parameter" if isinstance(value, Parameter) else "Tensor"
        size = "x".join(str(s) for s in value.shape)
        where = "" if value.device == "cpu" else f" ({value.device})"
        return f"{kind} containing: [{value.dtype!r} of size {size}{where}]"
    return type(value).__name__


class ParameterList(Module):
    """A list of parameters, registered as "0", "1", ...; tensors put in become Parameters."""

    def __init__(self, values=None):
        super().__init__()
        self._size = 0
        if values is not None:
            self.extend(values)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ParameterList([self[i] for i in range(len(self))[index]])
        return getattr(self, str(_position(index, len(self), "ParameterList")))

    def __setitem__(self, index, value):
        setattr(self, str(_position(index, len(self), "ParameterList")), _as_parameter(value))

    def __len__(self):
        return self._size

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __iadd__(self, values):
        return self.extend(values)

    def append(self, value):
        self._size += 1
        self[self._size - 1] = value
        return self

    def extend(self, values):
        if not isinstance(values, Iterable) or isinstance(values, Tensor):
            raise TypeError(f"ParameterList.extend should be called with an iterable, but got {type(values).__name__}")
        for value in values:
            self.append(value)
        return self

    def extra_repr(self):
        return "\n".join(f"  ({i}): {_describe(value)}" for i, value in enumerate(self))  # indented as PyTorch

    def __call__(self, *args, **kwargs):
        raise RuntimeError("ParameterList should not be called.")


class ParameterDict(_KeyedMethods, Module):
    """An ordered dict of parameters, registered under their keys; tensors put in become Parameters."""

    def __init__(self, parameters=None):
        super().__init__()
        self._keys = {}  # insertion-ordered
        if parameters is not None:
            self.update(parameters)

    def _key_table(self):
        return self._keys

    def __getitem__(self, key):
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key, value):
        if not isinstance(key, str):
            raise TypeError(f"ParameterDict keys must be strings, got {type(key).__name__}")
        self._keys[key] = None
        setattr(self, key, _as_parameter(value))

    def __delitem__(self, key):
        del self._keys[key]
        delattr(self, key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def extra_repr(self):
        return "\n".join(f"  ({key}): {_describe(value)}" for key, value in self.items())

    def __call__(self, *args, **kwargs):
        raise RuntimeError("ParameterDict should not be called.")
