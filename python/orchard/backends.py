"""orchard.backends: PyTorch's backend switches, as far as they mean something for Orchard.

`backends.mps` reports Orchard's Metal device (PyTorch's Apple GPU backend is "mps"). TF32, as in PyTorch,
is one setting seen two ways: `backends.cuda.matmul.allow_tf32 = True` is
`set_float32_matmul_precision("high")`, and either lets float32 products on the CUDA device round their
inputs to TF32 on tensor cores (cuBLAS); float32 products elsewhere always multiply in float32. The other
flags (`backends.cudnn.benchmark = True`...) are stored and read back, so scripts that set them run, but
they change nothing: Orchard does not use cuDNN.
"""
import warnings

from . import _core
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
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True

    @property
    def allow_tf32(self):
        return _float32_matmul_precision != "highest"

    @allow_tf32.setter
    def allow_tf32(self, allowed):
        set_float32_matmul_precision("high" if allowed else "highest")


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
    """PyTorch's settings: "highest" multiplies float32 in float32; "high" and "medium" let the CUDA device's
    float32 products use TF32 (the CPU and Metal ones stay float32). Another value warns and changes nothing,
    as in PyTorch."""
    global _float32_matmul_precision
    if precision not in _PRECISIONS:
        warnings.warn(f"set_float32_matmul_precision: {precision!r} is not one of {', '.join(_PRECISIONS)}; "
                      "the call has no effect", UserWarning, stacklevel=2)
        return
    _float32_matmul_precision = precision
    _core._set_float32_matmul_tf32(precision != "highest")


def get_float32_matmul_precision():
    return _float32_matmul_precision
