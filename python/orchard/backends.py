"""orchard.backends: PyTorch's backend switches, as far as they mean something for Orchard.

`backends.mps` reports Orchard's Metal device (PyTorch's Apple GPU backend is "mps"). The CUDA and cuDNN
flags (`backends.cuda.matmul.allow_tf32 = True`, `backends.cudnn.benchmark = True`) are stored and read
back, so scripts that set them run, but they change nothing: Orchard has no CUDA device, and its float32
matmuls always accumulate in float32.
"""
import warnings

from . import metal as _metal

__all__ = ["cuda", "cudnn", "get_float32_matmul_precision", "mps", "set_float32_matmul_precision"]


class _Mps:
    """torch.backends.mps: the Apple GPU, which is Orchard's Metal device."""

    @staticmethod
    def is_available():
        return _metal.is_available()

    @staticmethod
    def is_built():
        return _metal.is_available()


class _Matmul:
    def __init__(self):
        self.allow_tf32 = False
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True


class _Cuda:
    def __init__(self):
        self.matmul = _Matmul()

    @staticmethod
    def is_built():
        return False


class _Cudnn:
    def __init__(self):
        self.enabled = True
        self.allow_tf32 = True
        self.benchmark = False
        self.deterministic = False

    @staticmethod
    def is_available():
        return False

    @staticmethod
    def version():
        return None


mps = _Mps()
cuda = _Cuda()
cudnn = _Cudnn()

_PRECISIONS = ("highest", "high", "medium")
_float32_matmul_precision = "highest"


def set_float32_matmul_precision(precision):
    """Accepts PyTorch's settings ("highest", "high", "medium") and remembers them; Orchard's float32 matmuls
    compute in float32 whatever the setting. Another value warns and changes nothing, as in PyTorch."""
    global _float32_matmul_precision
    if precision not in _PRECISIONS:
        warnings.warn(f"set_float32_matmul_precision: {precision!r} is not one of {', '.join(_PRECISIONS)}; "
                      "the call has no effect", UserWarning, stacklevel=2)
        return
    _float32_matmul_precision = precision


def get_float32_matmul_precision():
    return _float32_matmul_precision
