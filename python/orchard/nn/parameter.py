"""Parameter: a Tensor subclass marking the leaves a Module registers as its parameters."""
from .. import _core
from .._core import Tensor


class Parameter(Tensor):
    """A leaf sharing `data`'s memory, registered as a parameter when assigned to a Module attribute.

    An orchard Tensor in every op (results of ops are plain Tensors, as in PyTorch)."""

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            data = _core.empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(): data must be an orchard.Tensor, got {type(data).__name__}")
        return Tensor._make_subclass(cls, data, requires_grad)

    def __init__(self, data=None, requires_grad=True):  # all done in __new__
        pass

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        return Parameter, (self.detach(), self.requires_grad)

    def __deepcopy__(self, memo):
        if id(self) not in memo:
            memo[id(self)] = Parameter(self.detach().clone(), self.requires_grad)
        return memo[id(self)]
