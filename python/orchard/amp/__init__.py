"""Mixed-precision training, following torch.amp: autocast regions and GradScaler's loss scaling."""
from .autocast_mode import (
    autocast, clear_autocast_cache, get_autocast_dtype, is_autocast_available, is_autocast_enabled,
    set_autocast_dtype, set_autocast_enabled,
)
from .grad_scaler import GradScaler, OptState

__all__ = ["GradScaler", "OptState", "autocast", "clear_autocast_cache", "get_autocast_dtype",
           "is_autocast_available", "is_autocast_enabled", "set_autocast_dtype", "set_autocast_enabled"]
