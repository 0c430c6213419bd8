"""SGD with momentum, dampening, Nesterov, L2 weight decay and maximize, following torch.optim.SGD."""
from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable:
            raise NotImplementedError("differentiable=True (autograd through the optimizer step) is not supported; "
                                      "Orchard steps under no_grad")
        # foreach and fused pick PyTorch's kernels; they are recorded only.
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _state_layout(self, p, group):
        return {"momentum_buffer": p.dtype} if group["momentum"] else {}

    def _update(self, p, group):
        grad = -p.grad if group["maximize"] else p.grad
        if group["weight_decay"]:
            grad = grad + p * group["weight_decay"]
        momentum = group["momentum"]
        if momentum:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(momentum).add_(grad * (1 - group["dampening"]))
            grad = grad + buf * momentum if group["nesterov"] else buf
        p.sub_(grad * group["lr"])
