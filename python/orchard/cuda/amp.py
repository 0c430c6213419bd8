"""orchard.cuda.amp: the older spelling of the mixed-precision names, for scripts written against torch.cuda.amp."""
from ..amp.autocast_mode import autocast as _autocast
from ..amp.grad_scaler import CudaGradScaler as GradScaler
from .._core import dtype as _dtype


def autocast(enabled=True, dtype=_dtype.float16, cache_enabled=True):
    """torch.cuda.amp.autocast: autocast("cuda", ...), which warns and disables itself (no CUDA device)."""
    return _autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


__all__ = ["GradScaler", "autocast"]
