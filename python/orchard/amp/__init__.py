"""Mixed-precision training helpers, following torch.amp (GradScaler; autocast comes with issue 18)."""
from .grad_scaler import GradScaler, OptState

__all__ = ["GradScaler", "OptState"]
