"""Optimizer: parameter groups, per-parameter state, zero_grad and state_dict."""
from .._tensor import tensor
from ..autograd import no_grad


class Optimizer:
    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = [{**self.defaults, **group, "params": list(group["params"])} for group in groups]
        self.state = {}  # id(param) -> dict of step count and tensors

    def step(self):
        """Updates every parameter that has a gradient (subclasses define _update)."""
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        self._update(p, group)

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

    def state_dict(self):
        """Like torch's: state keyed by parameter position, groups listing positions."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            groups.append({**group, "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        state = {index[key]: dict(value) for key, value in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        params = self._params()
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("optimizer state_dict has different parameter groups than this optimizer")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, saved in state_dict["state"].items():
            p = params[int(i)]
            self.state[id(p)] = {k: (v if isinstance(v, (int, float)) else tensor(v, device=p.device))
                                 for k, v in saved.items()}
