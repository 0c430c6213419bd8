"""orchard.cuda.amp: the older spelling of the mixed-precision names, for scripts written against torch.cuda.amp."""
from ..amp.grad_scaler import CudaGradScaler as GradScaler

__all__ = ["GradScaler"]
