"""Module: the base class of layers, tracking parameters and submodules by attribute assignment."""
from collections import OrderedDict

from .._core import Tensor


def Parameter(data, requires_grad=True):
    """A leaf tensor holding `data`, registered as a parameter when assigned to a Module attribute."""
    return data.detach().requires_grad_(requires_grad)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Tensor):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for table in ("_parameters", "_modules"):
            entries = self.__dict__.get(table, {})
            if name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def named_modules(self, prefix=""):
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop(0)
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            stack[:0] = [(f"{name}.{child_name}" if name else child_name, child)
                         for child_name, child in module._modules.items()]

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """Each parameter once (a tied weight under its first name), in registration order."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self):
        return (param for _, param in self.named_parameters())

    def state_dict(self):
        return OrderedDict((name, param.detach()) for name, param in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy tensors (or NumPy arrays) into the parameters; returns (missing, unexpected) keys."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        mismatched = [f"{name}: checkpoint {tuple(state_dict[name].shape)}, model {tuple(own[name].shape)}"
                      for name in own if name in state_dict
                      and tuple(state_dict[name].shape) != tuple(own[name].shape)]
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise KeyError(f"load_state_dict for {type(self).__name__}: " + " | ".join(problems))
        from .._tensor import tensor
        from ..autograd import no_grad
        with no_grad():
            for name, value in state_dict.items():
                if name in own:
                    param = own[name]
                    param.copy_(tensor(value, dtype=param.dtype, device=param.device))
        return missing, unexpected

    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device=None, dtype=None):
        """Moves the parameters in place of the old ones (make optimizers after calling this)."""
        moved = {}
        for module in self.modules():
            for name, param in module._parameters.items():
                if id(param) not in moved:
                    moved[id(param)] = Parameter(param.to(device=device, dtype=dtype), param.requires_grad)
                module._parameters[name] = moved[id(param)]
        return self

    def zero_grad(self, set_to_none=True):
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
            else:
                param.grad.zero_()

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"
