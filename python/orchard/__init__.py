"""Orchard: tensors, autograd and FlashAttention for training transformers on Apple Silicon.

`import orchard as oc` gives PyTorch-style names: oc.tensor, oc.zeros, oc.matmul, t.sum(dim=1)...
"""
from collections import namedtuple as _namedtuple

from . import _core
from ._core import (
    DTypeError, Tensor, cat, device, dtype, embedding, empty, empty_cache, flash_attention, from_dlpack,
    from_numpy,
    full, manual_seed, ones, promote_types, rand, randn, stack, synchronize, where, zeros,
)
from ._core import (  # noqa: F401  (functions that are also Tensor methods)
    abs, add, addmm, amax, amin, argmax, argmin, clamp, cos, div, eq, erf, exp, gather, ge, gelu, gt,
    index_add, index_select, le, log, log_softmax, logical_and, logical_not, logical_or, logsumexp, lt,
    matmul, max, maximum, mean, min, minimum, mul, ne, neg, pow, relu, rsqrt, safe_div,
    scatter_add, sigmoid, sin, softmax, split, sqrt, sub, sum, tanh, tril, triu, var,
)
from ._tensor import arange, tensor, empty_like, zeros_like, ones_like, full_like, rand_like, randn_like
from . import autograd, metal, nn, optim, profile
from .serialization import load, save
from . import amp  # mixed precision: autocast and GradScaler (orchard.amp)
from .amp import (  # noqa: F401  (torch.autocast and its state functions)
    autocast, clear_autocast_cache, get_autocast_dtype, is_autocast_available, is_autocast_enabled,
    set_autocast_dtype, set_autocast_enabled,
)
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from . import distributed, utils  # data-parallel training (MPI is imported only by init_process_group)

# PyTorch's names over the core (factories' keywords, Tensor conveniences, torch.cuda/backends/compile, utils.data).
from ._factories import empty, full, get_default_dtype, ones, rand, randn, set_default_dtype, zeros
from ._python_ops import all, any, chunk, mean, sum
from ._einsum import einsum
from ._tensor import is_floating_point, is_tensor, numel
from .autograd import inference_mode
from .backends import get_float32_matmul_precision, set_float32_matmul_precision
from ._compile import compile
from . import backends, cuda, distributed, utils

bool = dtype.bool
int32 = dtype.int32
int64 = dtype.int64
float16 = dtype.float16
bfloat16 = dtype.bfloat16
float32 = dtype.float32
float64 = dtype.float64
half = float16
float = float32
double = float64
long = int64

# max/min with an int dim return (values, indices), as torch.return_types.max does.
_ValuesIndices = _namedtuple("values_indices", ["values", "indices"])

# Sorting, scans, masked_fill and random draws (issue 16); Tensor methods too where PyTorch has them.
from ._core import (  # noqa: E402,F401
    argsort, cumsum, flip, masked_fill, multinomial, randint, randperm, sort, topk,
)

# Loss scaling's fused unscale and inf check, under PyTorch's name (orchard.amp.GradScaler uses it).
from ._core import _amp_foreach_non_finite_check_and_unscale_  # noqa: E402,F401

__version__ = "0.1.0"
