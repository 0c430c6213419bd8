"""GradScaler, following torch.amp.GradScaler: loss scaling for float16 training.

The loss is multiplied by the scale before backward, so that small float16 gradients do not flush to zero;
unscale_ divides the gradients back and checks them for inf/NaN; step skips the optimizer's step when any
was found; update halves the scale after an overflow and doubles it after growth_interval clean steps.

The scale and growth tracker live on the host as Python numbers (the scale rounded to float32, as PyTorch's
float32 scale tensor): step must read the inf check on the host to decide whether to step anyway (PyTorch
reads it there too), so keeping them on a device would only add transfers."""
import enum
import math
import warnings
from collections.abc import Iterable

import numpy as np

from .. import _core
from .._core import Tensor, dtype


class OptState(enum.Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _ready():
    return {"stage": OptState.READY, "found_inf": None}


def _float32(x):
    """x rounded to float32 (inf beyond its range), as PyTorch's float32 scale tensor holds it."""
    with np.errstate(over="ignore"):
        return float(np.float32(x))


def _unscale_and_check(grads, inv_scale):
    """Multiplies the gradients by inv_scale in place; whether any held an inf or a NaN.

    As PyTorch's GradScaler: one fused _amp_foreach_non_finite_check_and_unscale_ per device, over all its
    gradients (any float dtypes), each raising that device's found-inf flag; then each flag is read on the host
    once (a single read when the gradients share one device, as they usually do)."""
    per_device = {}
    for g in grads:
        per_device.setdefault(str(g.device), []).append(g)
    flags = []
    for device, device_grads in per_device.items():
        found_inf = _core.zeros(1, device=device)
        _core._amp_foreach_non_finite_check_and_unscale_(device_grads, found_inf,
                                                         _core.full([1], inv_scale, device=device))
        flags.append(found_inf)
    return any(flag.item() for flag in flags)


class GradScaler:
    def __init__(self, device="cuda", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        if device == "cuda" and not _core._cuda_is_available():
            if enabled:  # as PyTorch does on a machine without CUDA
                warnings.warn("GradScaler for device 'cuda' is enabled, but CUDA is not available.  Disabling.",
                              stacklevel=2)
                enabled = False
        else:
            _core.device(device)  # raises for a device Orchard does not have
        self._device = device
        self._enabled = enabled
        if not enabled:
            return
        if growth_factor <= 1.0:
            raise AssertionError("The growth factor must be > 1.0.")
        if backoff_factor >= 1.0:
            raise AssertionError("The backoff factor must be < 1.0.")
        self._scale = _float32(init_scale)
        self._growth_factor = growth_factor
        self._backoff_factor = backoff_factor
        self._growth_interval = growth_interval
        self._growth_tracker = 0
        self._per_optimizer_states = {}  # id(optimizer) -> {"stage", "found_inf"}

    def _optimizer_state(self, optimizer):
        return self._per_optimizer_states.setdefault(id(optimizer), _ready())

    def scale(self, outputs):
        """outputs (a tensor, or nested lists/tuples/iterables of tensors) times the scale."""
        if not self._enabled:
            return outputs
        if isinstance(outputs, Tensor):
            return outputs * self._scale
        if isinstance(outputs, Iterable):
            scaled = map(self.scale, outputs)
            return type(outputs)(scaled) if isinstance(outputs, (list, tuple)) else scaled
        raise ValueError("outputs must be a Tensor or an iterable of Tensors")

    def unscale_(self, optimizer):
        """Divides the optimizer's gradients by the scale in place (for clipping them before step) and
        records whether any is inf or NaN."""
        if not self._enabled:
            return
        state = self._optimizer_state(optimizer)
        if state["stage"] is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv_scale = _float32(1.0 / self._scale)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if any(g.dtype == dtype.float16 for g in grads):
            raise ValueError("Attempting to unscale FP16 gradients.")
        state["found_inf"] = _unscale_and_check(grads, inv_scale) if grads else None
        state["stage"] = OptState.UNSCALED

    def step(self, optimizer, *args, **kwargs):
        """optimizer.step(*args, **kwargs) unless the gradients hold an inf or a NaN (unscaling them first
        unless unscale_ did); returns what optimizer.step returned, or None when skipped."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        state = self._optimizer_state(optimizer)
        if state["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if state["stage"] is OptState.READY:
            self.unscale_(optimizer)
        if state["found_inf"] is None:
            raise AssertionError("No inf checks were recorded for this optimizer.")
        result = None if state["found_inf"] else optimizer.step(*args, **kwargs)
        state["stage"] = OptState.STEPPED
        return result

    def update(self, new_scale=None):
        """Sets the scale for the next iteration: new_scale if given, else backoff_factor times it after an
        inf/NaN, growth_factor times it after growth_interval clean steps in a row (if that stays finite)."""
        if not self._enabled:
            return
        if new_scale is not None:
            if isinstance(new_scale, Tensor):
                if new_scale.numel() != 1 or new_scale.requires_grad:
                    raise AssertionError("new_scale should be a float or a 1-element tensor with "
                                         "requires_grad=False.")
                new_scale = new_scale.item()
            self._scale = _float32(new_scale)
        else:
            checks = [s["found_inf"] for s in self._per_optimizer_states.values() if s["found_inf"] is not None]
            if not checks:
                raise AssertionError("No inf checks were recorded prior to update.")
            if any(checks):
                self._scale = _float32(self._scale * self._backoff_factor)
                self._growth_tracker = 0
            else:
                self._growth_tracker += 1
                if self._growth_tracker == self._growth_interval:
                    grown = _float32(self._scale * self._growth_factor)
                    if math.isfinite(grown):
                        self._scale = grown
                    self._growth_tracker = 0
        self._per_optimizer_states = {}

    def get_scale(self):
        return self._scale if self._enabled else 1.0

    def get_growth_factor(self):
        return self._growth_factor

    def set_growth_factor(self, new_factor):
        self._growth_factor = new_factor

    def get_backoff_factor(self):
        return self._backoff_factor

    def set_backoff_factor(self, new_factor):
        self._backoff_factor = new_factor

    def get_growth_interval(self):
        return self._growth_interval

    def set_growth_interval(self, new_interval):
        self._growth_interval = new_interval

    def is_enabled(self):
        return self._enabled

    def state_dict(self):
        """As PyTorch's: empty when disabled."""
        if not self._enabled:
            return {}
        return {"scale": self._scale, "growth_factor": self._growth_factor, "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval, "_growth_tracker": self._growth_tracker}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved from a disabled "
                               "instance of GradScaler.")
        self._scale = _float32(state_dict["scale"])
        self._growth_factor = state_dict["growth_factor"]
        self._backoff_factor = state_dict["backoff_factor"]
        self._growth_interval = int(state_dict["growth_interval"])
        self._growth_tracker = int(state_dict["_growth_tracker"])


class CudaGradScaler(GradScaler):
    """torch.cuda.amp.GradScaler: GradScaler("cuda", ...), disabled with a warning when enabled on a machine
    without the CUDA device, as PyTorch's. orchard.cuda.amp exports it."""

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 enabled=True):
        super().__init__("cuda", init_scale, growth_factor, backoff_factor, growth_interval, enabled)
