"""Shared helpers for the Orchard pytest suite.

One place for: the dtype tables (Orchard <-> NumPy <-> PyTorch), random inputs per dtype, the
memory layouts every op is tried on (contiguous, strided, transposed, offset, expanded), the
per-dtype tolerances, and `assert_close`, which compares an Orchard tensor with a NumPy reference.

References are computed in float64 (or int64/bool) with NumPy from the exact input values, then
rounded to the result dtype; PyTorch is the reference for dtypes (type promotion) and wherever
NumPy's semantics differ from PyTorch's.
"""
import functools
import math
import os
import random
import sys
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, currently_in_test_context, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import orchard as oc

# Hypothesis keeps caches and failure patches in its home directory: not in the source tree.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "orchard-hypothesis"))

settings.register_profile(
    "orchard",
    max_examples=int(os.environ.get("ORCHARD_HYPOTHESIS_EXAMPLES", "30")),
    deadline=None,
    database=None,  # no .hypothesis/ directory in the source tree
    derandomize=bool(os.environ.get("CI")),  # CI replays the same examples; local runs explore new ones
    # `device` is a constant string per test, so sharing it across examples is safe.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
    print_blob=True,
    # no `explain` phase: it writes patch files under .hypothesis/
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.load_profile("orchard")

# ---- devices ----------------------------------------------------------------------------------

# The emulated Metal device runs threadgroups in an order shuffled per launch (src/metal/emulator).
# One seed per session, shown in pytest's header, fixes every launch's order by its kernel and grid:
# rerunning a failed test with it replays the orders it saw.
EMULATOR_SEED = os.environ.setdefault("ORCHARD_METAL_EMULATOR_SEED", str(random.randrange(2**32)))


def pytest_report_header(config):
    return f"ORCHARD_METAL_EMULATOR_SEED={EMULATOR_SEED} (the emulated Metal device's launch orders)"


# Every device this build serves: the Metal device is an Apple GPU, or the emulator in the test build;
# the CUDA device an NVIDIA GPU, where the machine has one.
DEVICES = ["cpu"] + (["metal"] if oc.metal.is_available() else []) + (["cuda"] if oc.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test once per device."""
    return request.param


def supports(device, dtype):
    """Whether tensors of dtype can live on device (Metal has no float64, nor CUDA, which runs its kernels)."""
    return not (device != "cpu" and dtype == oc.float64)


def require(device, dtype):
    """Leaves out a (device, dtype) pair the device cannot hold: a filtered example under
    hypothesis, a skip otherwise. tests/py/test_errors.py checks that asking for it raises."""
    if supports(device, dtype):
        return
    if currently_in_test_context():
        assume(False)
    pytest.skip(f"{device} has no {dtype!r}")


def forget_last_failure():
    """Drops the frames (tensors included) of a test that failed just before: pytest keeps them in
    sys.last_traceback until the next test's call starts, so they would be freed inside a test that
    counts allocations and frees."""
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


class OrchardOn:
    """The orchard module with its factories creating tensors on `device`: for code written once
    for orchard and torch (`L.tensor(...)`, `L.ones(...)`, `L.where(...)`). `L.device` is the device."""

    FACTORIES = ("tensor", "zeros", "ones", "full", "empty", "arange", "rand", "randn")

    def __init__(self, device):
        self.device = device

    def __getattr__(self, name):
        attr = getattr(oc, name)
        if name in self.FACTORIES:
            return functools.partial(attr, device=self.device)
        return attr


# ---- dtypes ----------------------------------------------------------------------------------

FLOAT_DTYPES = [oc.float16, oc.bfloat16, oc.float32, oc.float64]
INT_DTYPES = [oc.int32, oc.int64]
ALL_DTYPES = [oc.bool] + INT_DTYPES + FLOAT_DTYPES
NUMERIC_DTYPES = INT_DTYPES + FLOAT_DTYPES

TORCH_DTYPE = {
    oc.bool: torch.bool, oc.int32: torch.int32, oc.int64: torch.int64, oc.float16: torch.float16,
    oc.bfloat16: torch.bfloat16, oc.float32: torch.float32, oc.float64: torch.float64,
}
FROM_TORCH = {v: k for k, v in TORCH_DTYPE.items()}
# NumPy has no bfloat16: its values travel as float32 (every bfloat16 is exactly a float32).
NUMPY_DTYPE = {
    oc.bool: np.dtype(np.bool_), oc.int32: np.dtype(np.int32), oc.int64: np.dtype(np.int64),
    oc.float16: np.dtype(np.float16), oc.bfloat16: np.dtype(np.float32), oc.float32: np.dtype(np.float32),
    oc.float64: np.dtype(np.float64),
}

# (rtol, atol) for one rounding of a result to the dtype plus a few ulp of float32 math.
TOLERANCE = {
    oc.float16: (2e-3, 1e-3),
    oc.bfloat16: (1.6e-2, 1e-2),
    oc.float32: (2e-5, 2e-6),
    oc.float64: (1e-10, 1e-12),
}


def is_float(dtype):
    return dtype in FLOAT_DTYPES


def promote(a, b):
    """PyTorch's promotion of two tensors (the reference for oc.promote_types)."""
    return FROM_TORCH[torch.promote_types(TORCH_DTYPE[a], TORCH_DTYPE[b])]


def result_type_with_scalar(dtype, scalar):
    """PyTorch's result dtype of `tensor(dtype) op scalar` (weak scalar promotion)."""
    return FROM_TORCH[torch.result_type(torch.zeros(2, dtype=TORCH_DTYPE[dtype]), scalar)]


def round_to(arr, dtype):
    """`arr` rounded to `dtype`, as a NumPy array (bfloat16 values come back as float32)."""
    arr = np.asarray(arr)
    if dtype == oc.bfloat16:
        f32 = np.array(arr, dtype=np.float32, order="C", copy=True)
        return torch.from_numpy(f32.reshape(-1)).to(torch.bfloat16).float().numpy().reshape(arr.shape)
    if dtype in INT_DTYPES and arr.dtype.kind == "f":
        return np.trunc(arr).astype(NUMPY_DTYPE[dtype])
    return arr.astype(NUMPY_DTYPE[dtype])


# ---- tensors <-> arrays ----------------------------------------------------------------------

def to_numpy(t):
    """A NumPy copy of an Orchard tensor's values (bfloat16 as float32)."""
    assert isinstance(t, oc.Tensor), f"expected an orchard.Tensor, got {type(t).__name__}"
    if t.dtype == oc.bfloat16:
        t = t.float()
    return np.array(t.cpu().numpy(), copy=True)


def to_torch(arr, dtype):
    """A PyTorch tensor of `dtype` holding the values of the NumPy array `arr` (any layout)."""
    return torch.from_numpy(np.array(arr, order="C", copy=True)).to(TORCH_DTYPE[dtype])


def torch_values(t):
    """A PyTorch tensor's values as a NumPy array, bfloat16 as float32 (comparable by assert_close)."""
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def from_numpy(arr, dtype, device="cpu"):
    """A fresh contiguous Orchard tensor on `device` holding `arr` (values already representable in dtype)."""
    require(device, dtype)
    arr = np.asarray(arr, order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
    t = oc.tensor(arr if dtype != oc.bfloat16 else arr.astype(np.float32))
    return t.to(dtype).to(device)


def random_array(rng, shape, dtype, low=-3.0, high=3.0, special=False):
    """Random values exactly representable in `dtype`: small ints, bools, floats in [low, high)."""
    shape = tuple(shape)
    if dtype == oc.bool:
        return rng.random(shape) < 0.5
    if dtype in INT_DTYPES:
        return rng.integers(int(np.floor(low * 7)), int(np.ceil(high * 7)) + 1, size=shape).astype(NUMPY_DTYPE[dtype])
    x = rng.uniform(low, high, size=shape)
    if special and x.size:
        flat = x.reshape(-1)
        picks = rng.integers(0, flat.size, size=max(1, flat.size // 8))
        flat[picks] = rng.choice([np.nan, np.inf, -np.inf, -0.0, 0.0], size=picks.size)
    return round_to(x, dtype)


LAYOUTS = ["contiguous", "strided", "transposed", "offset", "expanded"]


def make_tensor(rng, shape, dtype, layout="contiguous", device="cpu", **kw):
    """(tensor, array): an Orchard tensor on `device` in the requested memory layout and its values.

    strided: every other element of a larger buffer; transposed: a permuted view of a buffer laid
    out in reverse dim order; offset: a view starting inside its storage; expanded: stride-0 dims
    (read-only). Layouts that a shape cannot have fall back to the nearest one that it can.
    """
    shape = tuple(shape)
    if layout == "expanded":
        big = [d for d, n in enumerate(shape) if n > 1]
        if big:
            d = big[rng.integers(len(big))]
            base = random_array(rng, shape[:d] + (1,) + shape[d + 1:], dtype, **kw)
            arr = np.broadcast_to(base, shape)
            t = from_numpy(base, dtype, device).expand(*shape)
            return t, np.array(arr)
        layout = "offset"
    arr = random_array(rng, shape, dtype, **kw)
    if layout == "contiguous" or len(shape) == 0:
        t = from_numpy(arr, dtype, device)
    elif layout == "strided":
        buf = np.zeros(shape[:-1] + (2 * shape[-1] + 1,), dtype=arr.dtype)
        buf[..., 1::2] = arr
        t = from_numpy(buf, dtype, device)[..., 1::2]
    elif layout == "transposed":
        perm = list(range(len(shape)))[::-1]
        t = from_numpy(np.transpose(arr, perm), dtype, device).permute(*perm)
    elif layout == "offset":
        flat = np.concatenate([np.zeros(3, dtype=arr.dtype), arr.reshape(-1)])
        t = from_numpy(flat, dtype, device)[3:].view(*shape) if shape else from_numpy(flat, dtype, device)[3]
    else:
        raise ValueError(layout)
    assert t.shape == shape and t.dtype == dtype and t.device == device
    return t, arr


# ---- comparison ------------------------------------------------------------------------------

def assert_close(actual, expected, dtype=None, rtol=None, atol=None, exact=None, msg="", device=None):
    """Checks an Orchard tensor against a NumPy reference: dtype and device (when given), shape, values.

    `expected` is rounded to the result dtype first; bool and integer results must match exactly,
    floating ones within TOLERANCE[dtype] unless rtol/atol are given. NaNs must match NaNs.
    """
    assert isinstance(actual, oc.Tensor), f"{msg}: expected an orchard.Tensor, got {type(actual).__name__}"
    if dtype is not None:
        assert actual.dtype == dtype, f"{msg}: dtype {actual.dtype!r}, expected {dtype!r}"
    if device is not None:
        assert actual.device == device, f"{msg}: on {actual.device}, expected {device}"
    dtype = actual.dtype
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{msg}: shape {actual.shape}, expected {expected.shape}"
    got = to_numpy(actual)
    want = round_to(expected, dtype) if not (dtype in INT_DTYPES and expected.dtype.kind == "f") else expected
    if exact is None:
        exact = not is_float(dtype)
    if exact:
        if is_float(dtype):
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=msg)
        else:
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=msg, strict=False)
        return
    r, a = TOLERANCE[dtype]
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                               rtol=r if rtol is None else rtol, atol=a if atol is None else atol,
                               equal_nan=True, err_msg=msg)


# ---- mathematical references -------------------------------------------------------------------

def gelu_reference(x):
    """gelu(x) = x Phi(x) in float64, with its limits at the infinities (+inf, and -0 at -inf, where
    x Phi(x) would be -inf * 0). PyTorch is no reference there: its vector kernels give NaN for +inf
    (and inf for 3e38 in float32), its scalar path +inf."""
    x = np.asarray(x, dtype=np.float64)
    phi = 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(-x / math.sqrt(2))
    with np.errstate(invalid="ignore"):
        return np.where(x == -np.inf, -0.0, x * phi)


# ---- hypothesis strategies -------------------------------------------------------------------

# Sizes around the kernels' vector widths (4/8/16 lanes), unroll factors and tile sizes: each
# shape mixes small sides with ones just off a boundary.
SMALL_SIDES = [0, 1, 1, 2, 3, 4, 5, 7]
BOUNDARY_SIDES = [8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 129]
MAX_NUMEL = 6000


@st.composite
def shapes(draw, min_dims=0, max_dims=4, allow_zero=True, max_numel=MAX_NUMEL):
    ndim = draw(st.integers(min_dims, max_dims))
    sides = SMALL_SIDES if allow_zero else [s for s in SMALL_SIDES if s]
    dims = []
    for _ in range(ndim):
        dims.append(draw(st.one_of(st.sampled_from(sides), st.sampled_from(BOUNDARY_SIDES))))
    # Keep tests fast: shrink the largest sides until the tensor is small.
    while int(np.prod(dims, dtype=np.int64)) > max_numel:
        i = int(np.argmax(dims))
        dims[i] = max(1, dims[i] // 3)
    return tuple(dims)


@st.composite
def broadcastable_shapes(draw, max_dims=4, allow_zero=True):
    """Two shapes that broadcast together, with leading dims dropped and sides set to 1."""
    base = draw(shapes(min_dims=0, max_dims=max_dims, allow_zero=allow_zero, max_numel=3000))
    def variant():
        drop = draw(st.integers(0, len(base)))
        s = list(base[drop:])
        for i in range(len(s)):
            if draw(st.integers(0, 3)) == 0:
                s[i] = 1
        return tuple(s)
    return variant(), variant()


dtypes = st.sampled_from(ALL_DTYPES)
float_dtypes = st.sampled_from(FLOAT_DTYPES)
numeric_dtypes = st.sampled_from(NUMERIC_DTYPES)
layouts = st.sampled_from(LAYOUTS)
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
