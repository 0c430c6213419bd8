"""Adam and AdamW, following torch.optim.Adam and torch.optim.AdamW (AdamW is Adam with decoupled weight decay).

Moments are float32 whatever the parameter's dtype. Without amsgrad a step is one fused kernel per parameter
(_core.adamw_step: moments, bias correction, decoupled decay and the update); amsgrad, which the kernel does
not track, runs as a few tensor ops."""
import math

from .. import _core
from .._core import dtype
from .optimizer import Optimizer


def _check_options(lr, betas, eps, weight_decay, capturable, differentiable, fused, foreach):
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if capturable:
        raise NotImplementedError("capturable=True keeps the step count on a CUDA device for CUDA graphs; "
                                  "Orchard has neither, pass capturable=False")
    if differentiable:
        raise NotImplementedError("differentiable=True (autograd through the optimizer step) is not supported; "
                                  "Orchard steps under no_grad")


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        betas = tuple(float(b) for b in betas)
        _check_options(lr, betas, eps, weight_decay, capturable, differentiable, fused, foreach)
        # foreach and fused pick PyTorch's kernels; here every step is fused already, so both are recorded only.
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _state_layout(self, p, group):
        moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        return {"step": None, **{key: dtype.float32 for key in moments}}

    def _update(self, p, group):
        state = self.state[p]
        if not state:
            state.update(self._init_state(p, group))
        step = state["step"].item() + 1
        state["step"].fill_(step)  # (cheaper than add_ then item)
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        grad = -p.grad if group["maximize"] else p.grad
        decoupled = group["decoupled_weight_decay"]
        if weight_decay and not decoupled:
            grad = grad + p * weight_decay  # Adam's L2 penalty joins the gradient
        if not group["amsgrad"]:
            _core.adamw_step(p, grad, state["exp_avg"], state["exp_avg_sq"], lr, beta1, beta2, eps,
                             weight_decay if decoupled else 0.0, int(step))
            return
        exp_avg, exp_avg_sq, max_exp_avg_sq = state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"]
        grad = grad.float()
        exp_avg.mul_(beta1).add_(grad * (1 - beta1))
        exp_avg_sq.mul_(beta2).add_(grad * grad * (1 - beta2))
        max_exp_avg_sq.copy_(_core.maximum(max_exp_avg_sq, exp_avg_sq))
        if weight_decay and decoupled:
            p.mul_(1 - lr * weight_decay)
        denom = max_exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step) + eps
        p.sub_((exp_avg / denom * (lr / (1 - beta1 ** step))).to(dtype=p.dtype))


class AdamW(Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _fix_loaded_group(self, group):
        group["decoupled_weight_decay"] = True  # as PyTorch's AdamW, whatever the loaded state says
