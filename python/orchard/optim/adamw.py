"""AdamW with decoupled weight decay and bias correction, following torch.optim.AdamW."""
from .. import _core
from .._core import dtype
from .._tensor import zeros_like
from .optimizer import Optimizer


class AdamW(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p, group):
        state = self.state.setdefault(id(p), {})
        if not state:
            state.update(step=0, exp_avg=zeros_like(p, dtype=dtype.float32),
                         exp_avg_sq=zeros_like(p, dtype=dtype.float32))
        state["step"] += 1
        beta1, beta2 = group["betas"]
        # One fused kernel per parameter: moments, bias correction, decoupled decay and the update.
        _core.adamw_step(p, p.grad, state["exp_avg"], state["exp_avg_sq"], group["lr"], beta1, beta2,
                         group["eps"], group["weight_decay"], state["step"])
