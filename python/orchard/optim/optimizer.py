"""Optimizer, following torch.optim.Optimizer: parameter groups, per-parameter state, zero_grad, step and
state dicts shaped like PyTorch's, so that a checkpoint's optimizer state moves between the two."""
from collections.abc import MutableMapping

import numpy as np

from .. import _core
from .._core import Tensor, dtype
from .._tensor import tensor
from ..autograd import enable_grad, no_grad

_STEP = "step"  # the per-parameter step count: a 0-d float32 tensor on the CPU, as PyTorch keeps it


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()  # a default a parameter group must set itself (SGD's lr in older PyTorch)


class ParamState(MutableMapping):
    """optimizer.state: {parameter: its state dict}, keyed by the tensor itself as PyTorch's `state[p]`.

    Tensors compare elementwise, so a dict keyed by them would call `==` whenever two Python wrappers of one
    tensor meet; this mapping keys by the tensor's identity (hash(t) is the address of the tensor it wraps,
    shared by every wrapper) and keeps the tensor for iteration. Like PyTorch's defaultdict(dict), reading a
    missing parameter's entry creates an empty one."""

    def __init__(self):
        self._entries = {}  # hash(p) -> (p, state dict)

    @staticmethod
    def _key(p):
        if not isinstance(p, Tensor):
            raise TypeError(f"optimizer state is keyed by parameters (orchard.Tensor), got {type(p).__name__}")
        return hash(p)

    def __getitem__(self, p):
        entry = self._entries.get(self._key(p))
        if entry is None:
            entry = self._entries[hash(p)] = (p, {})
        return entry[1]

    def get(self, p, default=None):
        entry = self._entries.get(self._key(p))
        return default if entry is None else entry[1]

    def __contains__(self, p):
        return isinstance(p, Tensor) and hash(p) in self._entries

    def __setitem__(self, p, value):
        self._entries[self._key(p)] = (p, value)

    def __delitem__(self, p):
        del self._entries[self._key(p)]

    def __iter__(self):
        return (p for p, _ in self._entries.values())

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return "ParamState(" + ", ".join(f"{tuple(p.shape)}: {sorted(s)}" for p, s in self._entries.values()) + ")"


def _as_tensor(value, what):
    """An Orchard tensor holding `value`: an Orchard tensor itself, or a PyTorch tensor or NumPy array (as a
    checkpoint written by PyTorch holds), or a Python number."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray):
        # copied, so that stepping never writes into the caller's foreign tensor
        return _core.from_dlpack(value.detach() if hasattr(value, "detach") else value).clone()
    try:
        return tensor(np.asarray(value))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected a tensor or an array, got {type(value).__name__}") from e


def step_tensor(value=0.0):
    """A step count as PyTorch stores it: a 0-d float32 tensor on the CPU."""
    return tensor(float(value), dtype=dtype.float32)


class Optimizer:
    """Base class: subclasses give their defaults, `_update(p, group)` for one parameter with a gradient,
    and `_state_layout(p, group)` naming the state a parameter holds once stepped."""

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got orchard.Tensor")
        self.defaults = dict(defaults)
        self.state = ParamState()
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group):
        """Adds a group (a dict with "params" and any options differing from the defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        params = [params] if isinstance(params, Tensor) else list(params)
        if params and all(isinstance(p, tuple) for p in params):  # named parameters, as PyTorch accepts them
            param_group["param_names"] = [name for name, _ in params]
            params = [p for _, p in params]
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group = {**param_group, "params": params}
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            group.setdefault(name, default)
        taken = {hash(p) for g in self.param_groups for p in g["params"]}
        if any(hash(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none=True):
        for p in self._params():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    def step(self, closure=None):
        """Updates every parameter that has a gradient; returns what `closure` (which recomputes the loss)
        returned, or None."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, group)
        return loss

    def _update(self, p, group):
        raise NotImplementedError

    def _state_layout(self, p, group):
        """{key: dtype} of a stepped parameter's state (every entry shaped as p, on p's device), with
        "step" for the step count; None where unknown (an optimizer written outside Orchard, whose state
        loads as PyTorch loads any: unchecked, tensors moved to the parameter)."""
        return None

    def _init_state(self, p, group):
        """A fresh state of zeros, laid out as _state_layout says."""
        return {key: step_tensor() if key == _STEP else _core.zeros(*p.shape, dtype=dt, device=p.device)
                for key, dt in self._state_layout(p, group).items()}

    # ---- state dicts -------------------------------------------------------------------------------------

    def state_dict(self):
        """As PyTorch's: {"state": {index: {key: value}}, "param_groups": [{option: value, "params": [index]}]},
        parameters numbered in the order of the groups. The state's tensors are the optimizer's own."""
        index = {}
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                index.setdefault(hash(p), len(index))
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[hash(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[hash(p)]: dict(s) for p, s in self.state._entries.values()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Loads a state dict from Orchard's or PyTorch's state_dict() for the same algorithm (tensors may be
        Orchard's, PyTorch's or NumPy arrays). Raises ValueError, leaving this optimizer unchanged, when it does
        not fit: other group or parameter counts, other state keys, or a moment shaped unlike its parameter."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"optimizer state dict: expected a dict with keys 'state' and 'param_groups', got {got}")
        saved_groups = state_dict["param_groups"]
        if not all(isinstance(g, dict) and "params" in g for g in saved_groups):
            raise ValueError("optimizer state dict: every parameter group must be a dict with 'params'")
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        saved_counts = [len(g["params"]) for g in saved_groups]
        counts = [len(g["params"]) for g in self.param_groups]
        if saved_counts != counts:
            raise ValueError(f"loaded state dict's parameter groups hold {saved_counts} parameters, "
                             f"this optimizer's hold {counts}")
        groups = [{**self.defaults, **{k: v for k, v in saved.items() if k != "params"}, "params": group["params"]}
                  for saved, group in zip(saved_groups, self.param_groups)]
        for group in groups:
            self._fix_loaded_group(group)
        owner = {}  # saved index -> (parameter, its new group)
        for saved, group in zip(saved_groups, groups):
            for i, p in zip(saved["params"], group["params"]):
                owner[int(i)] = (p, group)
        state = ParamState()
        for i, saved in state_dict["state"].items():
            if int(i) not in owner:
                raise ValueError(f"loaded state dict has state for parameter {i}, "
                                 f"which none of its parameter groups lists")
            p, group = owner[int(i)]
            state[p] = self._loaded_state(saved, p, group, int(i))
        self.param_groups = groups
        self.state = state

    def _fix_loaded_group(self, group):
        """Lets a subclass adjust a loaded group's options (AdamW keeps its decoupled weight decay)."""

    def _loaded_state(self, saved, p, group, index):
        """One parameter's loaded state, checked against and converted to the layout this optimizer keeps."""
        layout = self._state_layout(p, group)
        if not saved:  # a parameter not stepped yet whose entry was read (state is a defaultdict in PyTorch)
            return {}
        if layout is None:
            return {key: self._moved(value, p, key) for key, value in saved.items()}
        if set(saved) != set(layout):
            missing, extra = sorted(set(layout) - set(saved)), sorted(set(saved) - set(layout))
            raise ValueError(f"loaded state of parameter {index} has keys {sorted(saved)}, expected "
                             f"{sorted(layout)} for {type(self).__name__} with these options "
                             f"(missing {missing}, unexpected {extra})")
        state = {}
        for key, dt in layout.items():
            what = f"loaded state of parameter {index}, {key!r}"
            value = saved[key]
            if key == _STEP:
                state[key] = step_tensor(value.item() if hasattr(value, "item") else value)
                continue
            value = _as_tensor(value, what)
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"{what}: shape {tuple(value.shape)}, expected the parameter's {tuple(p.shape)}")
            state[key] = value.to(dtype=dt, device=p.device)
        return state

    @staticmethod
    def _moved(value, p, key):
        """PyTorch's rule for state it knows nothing about: tensors go to the parameter's device, and to its
        dtype when it is floating point; "step" and other values stay as they are."""
        if not (isinstance(value, (Tensor, np.ndarray)) or hasattr(value, "__dlpack__")):
            return value
        value = _as_tensor(value, f"loaded state {key!r}")
        if key == _STEP:
            return value
        return value.to(dtype=p.dtype if p.is_floating_point() else value.dtype, device=p.device)
