"""SGD with momentum, dampening, Nesterov and L2 weight decay, following torch.optim.SGD."""
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, p, group):
        grad = p.grad
        if group["weight_decay"]:
            grad = grad + p * group["weight_decay"]
        if group["momentum"]:
            state = self.state.setdefault(id(p), {})
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.clone()
            else:
                state["momentum_buffer"].mul_(group["momentum"]).add_(grad * (1 - group["dampening"]))
            buf = state["momentum_buffer"]
            grad = grad + buf * group["momentum"] if group["nesterov"] else buf
        p.sub_(grad * group["lr"])
