"""Elementwise ops against NumPy (values) and PyTorch (dtypes): unary, binary with broadcasting and
type promotion, Python scalars, where/clamp/gelu, casts, and the in-place forms."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import (
    ALL_DTYPES, INT_DTYPES, NUMERIC_DTYPES, TORCH_DTYPE, OrchardOn, assert_close, broadcastable_shapes,
    dtypes, float_dtypes, from_numpy, gelu_reference, is_float, layouts, make_tensor, promote, require,
    result_type_with_scalar, round_to, seeds, shapes, supports, to_numpy, to_torch, torch_values,
)

# ---- unary -----------------------------------------------------------------------------------

UNARY = {
    # name: (numpy reference on float64, input range)
    "neg": (np.negative, (-3, 3)),
    "abs": (np.abs, (-3, 3)),
    "exp": (np.exp, (-10, 10)),
    "log": (np.log, (0.05, 20)),
    "sqrt": (np.sqrt, (0, 20)),
    "rsqrt": (lambda x: 1 / np.sqrt(x), (0.05, 20)),
    "tanh": (np.tanh, (-6, 6)),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-12, 12)),
    "relu": (lambda x: np.maximum(x, 0), (-3, 3)),
    "sin": (np.sin, (-6, 6)),
    "cos": (np.cos, (-6, 6)),
    "gelu": (gelu_reference, (-5, 5)),
    "erf": (np.vectorize(math.erf, otypes=[np.float64]), (-4, 4)),
}
FLOAT_RESULT_UNARY = ["exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "sin", "cos", "erf"]


@given(op=st.sampled_from(sorted(UNARY)), shape=shapes(), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_unary_floats_match_numpy(device, op, shape, dtype, layout, seed):
    ref, (lo, hi) = UNARY[op]
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, low=lo, high=hi)
    out = getattr(oc, op)(x)
    with np.errstate(all="ignore"):
        expected = ref(arr.astype(np.float64))
    assert_close(out, expected, dtype, msg=f"{op} {dtype!r} {shape} {layout}", device=device)
    assert out.is_contiguous() and not out.is_alias_of(x)
    # The method spelling runs the same op.
    assert_close(getattr(x, op)(), expected, dtype, device=device)


@pytest.mark.parametrize("dtype", [oc.bool] + INT_DTYPES)
@pytest.mark.parametrize("op", FLOAT_RESULT_UNARY)
def test_unary_float_ops_promote_integers_and_bool_to_float32(device, op, dtype):
    rng = np.random.default_rng(0)
    ref, (lo, _) = UNARY[op]
    arr = rng.integers(1 if lo > 0 else 0 if lo == 0 else -3, 4, size=(3, 5))
    arr = arr.astype(bool) if dtype == oc.bool else arr
    assert getattr(torch, op)(torch.from_numpy(arr)).dtype == torch.float32
    with np.errstate(all="ignore"):
        assert_close(getattr(oc, op)(from_numpy(arr, dtype, device)), ref(arr.astype(np.float64)), oc.float32,
                     device=device)


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("op", ["neg", "abs", "relu"])
def test_integer_unary_keeps_dtype(device, op, dtype):
    arr = np.arange(-7, 8).reshape(3, 5)
    out = getattr(oc, op)(from_numpy(arr, dtype, device))
    assert_close(out, UNARY[op][0](arr), dtype, device=device)


def test_bool_neg_raises_and_logical_not(device):
    b = oc.tensor([True, False, True], device=device)
    with pytest.raises(TypeError, match="bool"):
        -b
    assert_close(oc.logical_not(b), np.array([False, True, False]), oc.bool, device=device)
    assert_close(~b, np.array([False, True, False]), oc.bool, device=device)
    assert_close(oc.logical_not(oc.tensor([0, 2, -1], device=device)), np.array([True, False, False]), oc.bool,
                 device=device)
    assert_close(oc.logical_not(oc.tensor([0.0, 0.5, float("nan")], device=device)), np.array([True, False, False]),
                 oc.bool, device=device)


@pytest.mark.parametrize("dtype", [oc.float32, oc.float64])
def test_unary_special_values(device, dtype):
    """Against the mathematical values (the float64 references above), not PyTorch's, which differ
    between its kernels for some (gelu(+inf) is NaN in its vector kernels). With the edges of the
    float32 fast paths: exp over/underflow (and subnormal results), tanh's switch between its
    polynomial and exp forms."""
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 100.0, -100.0, 1000.0, -1000.0,
                     88.0, 88.5, 88.7, 88.72, 88.73, -87.0, -87.5, -88.0, -100.0, -103.0, -104.0, 0.624, 0.625,
                     0.626, -0.625, 9.0, -9.0, 20.0, 44.0])
    x = from_numpy(vals, dtype, device)
    with np.errstate(all="ignore"):
        for op in ["exp", "tanh", "sigmoid", "relu", "abs", "neg", "sqrt", "log", "gelu"]:
            assert_close(getattr(oc, op)(x), UNARY[op][0](vals), dtype, msg=op, device=device)


@given(shape=shapes(max_dims=3), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_gelu_tanh_approximation_matches_torch(device, shape, dtype, layout, seed):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, low=-5, high=5)
    expected = torch.nn.functional.gelu(torch.from_numpy(arr.astype(np.float64)), approximate="tanh").numpy()
    assert_close(oc.gelu(x, approximate="tanh"), expected, dtype, device=device)
    with pytest.raises(ValueError, match="approximate"):
        oc.gelu(x, approximate="fast")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(shape=shapes(max_dims=3), dtype=float_dtypes, layout=layouts, seed=seeds)
def test_gelu_backward_matches_torch(device, approximate, shape, dtype, layout, seed):
    # gelu's backward is one fused kernel, grad * gelu'(x): against torch.autograd in float64,
    # over both tails (where tanh and erf saturate) and the dip below zero
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, layout, device, low=-7, high=7)
    g, garr = make_tensor(rng, shape, dtype, "contiguous", device)
    x.requires_grad_(True)
    oc.gelu(x, approximate=approximate).backward(g)
    xt = torch.from_numpy(arr.astype(np.float64)).requires_grad_(True)
    torch.nn.functional.gelu(xt, approximate=approximate).backward(torch.from_numpy(garr.astype(np.float64)))
    assert_close(x.grad, xt.grad.numpy(), dtype, device=device)


# ---- binary ----------------------------------------------------------------------------------

COMPARISONS = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
               "gt": np.greater, "ge": np.greater_equal}
LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or}


def _safe_div(a, b):
    with np.errstate(all="ignore"):
        return np.where(b == 0, 0, a / np.where(b == 0, 1, b))


ARITH = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide, "pow": np.power,
         "maximum": np.maximum, "minimum": np.minimum, "safe_div": _safe_div}
BINARY = {**ARITH, **COMPARISONS, **LOGICAL}


def binary_result_dtype(op, da, db):
    """PyTorch's result dtype (None when PyTorch rejects the op)."""
    p = promote(da, db)
    if op in COMPARISONS or op in LOGICAL:
        return oc.bool
    if p == oc.bool and op in ("sub", "pow"):
        return None
    if op in ("div", "safe_div") and not is_float(p):
        return oc.float32
    return p


def binary_reference(op, a, b, compute):
    """NumPy reference for op on the values a, b computed in `compute` (an Orchard dtype)."""
    if op in LOGICAL:
        return BINARY[op](a.astype(bool), b.astype(bool))
    if compute == oc.bool:
        a, b = a.astype(bool), b.astype(bool)
    elif compute in INT_DTYPES:
        a, b = a.astype(np.int64), b.astype(np.int64)
    else:
        a, b = round_to(a, compute).astype(np.float64), round_to(b, compute).astype(np.float64)
    with np.errstate(all="ignore"):
        return BINARY[op](a, b)


def _inputs(rng, op, shape_a, shape_b, da, db, la, lb, device, special=False):
    a, arr_a = make_tensor(rng, shape_a, da, la, device, special=special)
    if op == "pow" and not is_float(promote(da, db)):
        b, arr_b = make_tensor(rng, shape_b, db, lb, device, low=0, high=0.5)  # int exponents 0..4
    elif op == "pow":
        b, arr_b = make_tensor(rng, shape_b, db, lb, device, low=-3, high=3)
        if not is_float(db):
            arr_b = np.abs(arr_b) % 5
            b = from_numpy(arr_b, db, device)
    else:
        b, arr_b = make_tensor(rng, shape_b, db, lb, device, special=special)
    return a, arr_a, b, arr_b


@given(op=st.sampled_from(sorted(BINARY)), shapes_ab=broadcastable_shapes(), da=dtypes, db=dtypes,
       la=layouts, lb=layouts, seed=seeds)
def test_binary_matches_numpy_with_broadcasting_and_promotion(device, op, shapes_ab, da, db, la, lb, seed):
    rng = np.random.default_rng(seed)
    a, arr_a, b, arr_b = _inputs(rng, op, *shapes_ab, da, db, la, lb, device)
    expected_dtype = binary_result_dtype(op, da, db)
    if expected_dtype is None:
        with pytest.raises(TypeError, match="bool"):
            getattr(oc, op)(a, b)
        return
    compute = oc.float32 if op in ("div", "safe_div") and not is_float(promote(da, db)) else promote(da, db)
    expected = binary_reference(op, arr_a, arr_b, compute)
    out = getattr(oc, op)(a, b)
    ctx = f"{op}({da!r}{shapes_ab[0]} {la}, {db!r}{shapes_ab[1]} {lb})"
    assert_close(out, expected, expected_dtype, msg=ctx, device=device)
    assert out.is_contiguous()
    # method spelling
    assert_close(getattr(a, op)(b), expected, expected_dtype, msg=ctx, device=device)


@given(op=st.sampled_from(["add", "sub", "mul", "div", "maximum", "minimum", "eq", "lt", "ge", "ne", "safe_div",
                           "pow"]),
       shape=shapes(max_dims=3), dtype=st.sampled_from([oc.float32, oc.float64, oc.float16]), seed=seeds)
def test_binary_special_values(device, op, shape, dtype, seed):
    """NaN, inf and signed zeros behave as in NumPy (NaN propagates through maximum/minimum)."""
    rng = np.random.default_rng(seed)
    a, arr_a = make_tensor(rng, shape, dtype, device=device, special=True)
    b, arr_b = make_tensor(rng, shape, dtype, device=device, special=True)
    assert_close(getattr(oc, op)(a, b), binary_reference(op, arr_a, arr_b, dtype),
                 binary_result_dtype(op, dtype, dtype), device=device)


OPERATORS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "logical_and": lambda a, b: a & b,
    "logical_or": lambda a, b: a | b,
}


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_python_operators(device, op):
    rng = np.random.default_rng(1)
    a, arr_a = make_tensor(rng, (4, 5), oc.float32, device=device, low=0.5, high=3)
    b, arr_b = make_tensor(rng, (5,), oc.float32, device=device, low=0.5, high=3)
    assert_close(OPERATORS[op](a, b), binary_reference(op, arr_a, arr_b, oc.float32),
                 binary_result_dtype(op, oc.float32, oc.float32), device=device)


SCALARS = [True, False, 0, 3, -2, 2.5, -0.5, 0.0, np.float64(1.5), np.int64(2), np.int32(3)]
SCALAR_OPS = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "lt", "gt", "safe_div"]


@given(op=st.sampled_from(SCALAR_OPS), dtype=dtypes, scalar=st.sampled_from(SCALARS), reflected=st.booleans(),
       shape=shapes(max_dims=2), seed=seeds)
def test_python_scalars_promote_weakly(device, op, dtype, scalar, reflected, shape, seed):
    """`t op scalar` and `scalar op t`: the scalar changes the dtype only when it is of a higher
    kind (bool < int < float), as in PyTorch: int_tensor + 2.5 -> float32, half * 2.0 -> half."""
    if reflected and op not in OPERATORS:
        reflected = False  # only the operators have a reflected form
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, device=device, low=0.5 if op == "pow" else -3,
                         high=2 if op == "pow" else 3)
    py = scalar.item() if isinstance(scalar, np.generic) else scalar
    promoted = result_type_with_scalar(dtype, py)
    if op in COMPARISONS:
        expected_dtype = oc.bool
    elif op in ("div", "safe_div") and not is_float(promoted):
        expected_dtype = oc.float32
    else:
        expected_dtype = promoted
    run = (lambda: OPERATORS[op](scalar, x)) if reflected else (lambda: getattr(oc, op)(x, scalar))
    if promoted == oc.bool and op in ("sub", "pow"):
        with pytest.raises(TypeError, match="bool"):
            run()
        return
    if op == "pow" and not is_float(promoted) and (reflected or py < 0):
        return  # integer powers with negative exponents are an error in PyTorch
    compute = oc.float32 if op in ("div", "safe_div") and not is_float(promoted) else promoted
    sdtype = bool if isinstance(py, bool) else np.float64 if isinstance(py, float) else np.int64
    sarr = np.full(arr.shape, py, dtype=sdtype)
    a_, b_ = (sarr, arr) if reflected else (arr, sarr)
    expected = binary_reference(op, a_, b_, compute)
    assert_close(run(), expected, expected_dtype, msg=f"{op} {dtype!r} {scalar!r} reflected={reflected}",
                 device=device)


def test_promotion_examples_from_the_issue(device):
    L = OrchardOn(device)
    i = L.tensor([1, 2, 3])
    assert (i + 2.5).dtype == oc.float32
    assert_close(i + 2.5, np.array([3.5, 4.5, 5.5]), oc.float32, device=device)
    h = L.ones(3, dtype=oc.float16)
    assert (h * 2.0).dtype == oc.float16
    assert (h * 2).dtype == oc.float16
    assert (L.ones(3, dtype=oc.int32) + 5).dtype == oc.int32
    assert (L.ones(3, dtype=oc.int32) / L.ones(3, dtype=oc.int32)).dtype == oc.float32
    assert_close(L.tensor([1, 2, 3]) / L.tensor([2, 2, 2]), np.array([0.5, 1.0, 1.5]), oc.float32, device=device)
    assert (L.tensor([True]) + 1).dtype == oc.int64
    assert (L.tensor([True]) * 1.5).dtype == oc.float32
    assert (L.tensor([True]) + True).dtype == oc.bool
    assert (L.ones(2, dtype=oc.bfloat16) + 1.0).dtype == oc.bfloat16
    assert (L.ones(2, dtype=oc.float16) + L.ones(2, dtype=oc.bfloat16)).dtype == oc.float32
    assert (L.ones(2, dtype=oc.int32) + L.ones(2, dtype=oc.float16)).dtype == oc.float16
    assert (2.5 - L.tensor([1, 2])).dtype == oc.float32
    assert_close(2 - L.tensor([1, 2]), np.array([1, 0]), oc.int64, device=device)
    assert_close(1 / L.tensor([2, 4]), np.array([0.5, 0.25]), oc.float32, device=device)
    assert_close(2 ** L.tensor([1, 3]), np.array([2, 8]), oc.int64, device=device)


def test_add_sub_alpha(device):
    a = oc.tensor([1.0, 2.0, 3.0], device=device)
    b = oc.tensor([10.0, 20.0, 30.0], device=device)
    assert_close(oc.add(a, b, alpha=0.5), np.array([6.0, 12.0, 18.0]), oc.float32, device=device)
    assert_close(a.sub(b, alpha=2), np.array([-19.0, -38.0, -57.0]), oc.float32, device=device)
    assert_close(oc.add(oc.tensor([1, 2], device=device), oc.tensor([3, 4], device=device), alpha=2),
                 np.array([7, 10]), oc.int64, device=device)


def test_integer_pow_matches_torch(device):
    base = np.array([-3, -2, -1, 0, 1, 2, 3, 5])
    exp = np.array([3, 2, 5, 0, 7, 10, 4, 3])
    expected = torch.pow(torch.from_numpy(base), torch.from_numpy(exp)).numpy()
    for dt in INT_DTYPES:
        assert_close(oc.pow(from_numpy(base, dt, device), from_numpy(exp, dt, device)), expected, dt, device=device)
    assert_close(oc.tensor([2, 3], device=device) ** 2, np.array([4, 9]), oc.int64, device=device)
    assert_close(oc.tensor([4, 9], device=device) ** 0.5, np.array([2.0, 3.0]), oc.float32, device=device)


def test_safe_div_is_zero_where_divisor_is_zero(device):
    a = oc.tensor([1.0, -2.0, 0.0, 3.0], device=device)
    b = oc.tensor([0.0, 4.0, 0.0, -0.0], device=device)
    assert_close(oc.safe_div(a, b), np.array([0.0, -0.5, 0.0, 0.0]), oc.float32, device=device)
    assert_close(oc.safe_div(oc.tensor([3, 4], device=device), oc.tensor([0, 2], device=device)),
                 np.array([0.0, 2.0]), oc.float32, device=device)
    assert_close(oc.safe_div(a, 0), np.zeros(4), oc.float32, device=device)


@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, layout=layouts, seed=seeds)
def test_large_and_boundary_sizes_binary(device, shape, dtype, layout, seed):
    """A second operand broadcast along one dim and a non-contiguous first one."""
    rng = np.random.default_rng(seed)
    a, arr_a = make_tensor(rng, shape, dtype, layout, device)
    b, arr_b = make_tensor(rng, shape[-1:], dtype, device=device)
    op = "logical_or" if dtype == oc.bool else "sub"
    assert_close(getattr(oc, op)(a, b), binary_reference(op, arr_a, arr_b, dtype),
                 binary_result_dtype(op, dtype, dtype), device=device)


@pytest.mark.parametrize("shape", [(70001,), (257, 301), (3, 129, 65), (1, 40000)])
def test_parallel_sizes(device, shape):
    """Sizes past the thread pool's grain (many threadgroups on Metal), with broadcasting and a
    transposed operand."""
    rng = np.random.default_rng(7)
    a, arr_a = make_tensor(rng, shape, oc.float32, "transposed", device)
    b, arr_b = make_tensor(rng, shape[-1:], oc.float32, device=device)
    assert_close(a * b + 1.0, arr_a.astype(np.float64) * arr_b + 1.0, oc.float32, device=device)
    assert_close(oc.exp(a), np.exp(arr_a.astype(np.float64)), oc.float32, device=device)
    assert_close(a.to(oc.float16), arr_a, oc.float16, device=device)


# ---- where / clamp ---------------------------------------------------------------------------

@given(shapes_ab=broadcastable_shapes(max_dims=3), shape_c=st.sampled_from([(), (1,)]), da=dtypes, db=dtypes,
       layout=layouts, seed=seeds)
def test_where_broadcasts_and_promotes(device, shapes_ab, shape_c, da, db, layout, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes_ab
    c, arr_c = make_tensor(rng, sa if len(sa) <= len(sb) else sb, oc.bool, layout, device)
    a, arr_a = make_tensor(rng, sa, da, layout, device)
    b, arr_b = make_tensor(rng, sb, db, device=device)
    p = promote(da, db)
    expected = np.where(arr_c, round_to(arr_a, p), round_to(arr_b, p))
    assert_close(oc.where(c, a, b), expected, p, device=device)
    assert_close(a.where(c, b), expected, p, device=device)


def test_where_with_scalars_and_errors(device):
    c = oc.tensor([True, False, True], device=device)
    x = oc.tensor([1, 2, 3], device=device)
    assert_close(oc.where(c, x, 2.5), np.array([1.0, 2.5, 3.0]), oc.float32, device=device)
    assert_close(oc.where(c, x, 0), np.array([1, 0, 3]), oc.int64, device=device)
    assert_close(oc.where(c, 1.0, 0.0), np.array([1.0, 0.0, 1.0]), oc.float32, device=device)
    h = oc.ones(3, dtype=oc.float16, device=device)
    assert oc.where(c, h, 0.0).dtype == oc.float16
    with pytest.raises(TypeError, match="bool"):
        oc.where(x, x, x)
    with pytest.raises(ValueError, match="broadcast"):
        oc.where(c, oc.ones(2, device=device), x)


@given(shape=shapes(max_dims=3), dtype=st.sampled_from(NUMERIC_DTYPES), layout=layouts, seed=seeds,
       bounds=st.sampled_from([(-1, 1), (None, 0), (0, None), (-0.5, 2.25), (2, 1)]))
def test_clamp(device, shape, dtype, layout, seed, bounds):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    lo, hi = bounds
    expected_dtype = {v: k for k, v in TORCH_DTYPE.items()}[torch.clamp(to_torch(arr, dtype), lo, hi).dtype]
    expected = round_to(arr, expected_dtype).astype(np.float64)
    if lo is not None:
        expected = np.maximum(expected, lo)
    if hi is not None:
        expected = np.minimum(expected, hi)
    assert_close(oc.clamp(x, lo, hi), expected, expected_dtype, device=device)
    assert_close(x.clamp(min=lo, max=hi), expected, expected_dtype, device=device)


def test_clamp_with_tensors_and_errors(device):
    x = oc.tensor([[-2.0, 0.5, 3.0]], device=device)
    lo = oc.tensor([[-1.0], [0.0]], device=device)
    assert_close(oc.clamp(x, lo, 1.0), np.clip(np.array([[-2.0, 0.5, 3.0]]), [[-1.0], [0.0]], 1.0), oc.float32,
                 device=device)
    with pytest.raises(ValueError, match="min"):
        oc.clamp(x)


# ---- casts -----------------------------------------------------------------------------------

CAST_VALUES = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, 2.75, -2.75, 100.0, -100.0, 127.9,
                        1 / 3, 1e-3, 65504.0, 65519.0, 65520.0, 70000.0, 1e-8, 6e-8, 3.1e-5, 1e30, -1e30,
                        3.0e38, 1234567.875, 16777217.0])
SPECIAL_VALUES = np.array([np.nan, np.inf, -np.inf])


@pytest.mark.parametrize("dst", ALL_DTYPES)
@pytest.mark.parametrize("src", ALL_DTYPES)
def test_cast_matches_torch(device, src, dst):
    """Every dtype pair: float->int truncates toward zero, anything->bool is `!= 0`, rounding to
    half/bfloat16 is to nearest even with overflow to inf, as in PyTorch."""
    require(device, src)
    require(device, dst)
    if src == oc.bool:
        vals = torch.tensor([True, False, True, True])
    elif src in INT_DTYPES:
        vals = torch.tensor([0, 1, -1, 7, -128, 255, 65504, 65519, 70000, 2**24 + 1, -(2**24 + 1), 2**31 - 1,
                             -(2**31)], dtype=TORCH_DTYPE[src])
    else:
        v = CAST_VALUES
        if dst in INT_DTYPES:  # out-of-range float->int is undefined (C++ and PyTorch alike)
            v = v[np.abs(v) < 2**31 - 1]
        elif is_float(dst) or dst == oc.bool:
            v = np.concatenate([v, SPECIAL_VALUES])
        vals = torch.from_numpy(v).to(TORCH_DTYPE[src])
        if dst in INT_DTYPES:
            vals = vals[torch.isfinite(vals) & (vals.double().abs() < 2**31 - 1)]
    expected = vals.to(TORCH_DTYPE[dst])
    x = oc.from_dlpack(vals.contiguous()).to(device)
    assert x.dtype == src
    out = x.to(dst)
    assert out.dtype == dst and out.device == device
    got = torch.from_dlpack(out.cpu().contiguous())
    assert torch.equal(got.isnan(), expected.isnan()) if is_float(dst) else True
    mask = ~expected.isnan() if is_float(dst) else torch.ones_like(expected, dtype=torch.bool)
    assert torch.equal(got[mask], expected[mask]), f"{src!r}->{dst!r}: {got.tolist()} vs {expected.tolist()}"
    if is_float(dst):
        # signed zeros survive
        assert torch.equal(torch.signbit(got[mask]), torch.signbit(expected[mask]))


@given(shape=shapes(), src=dtypes, dst=dtypes, layout=layouts, seed=seeds)
def test_cast_views(device, shape, src, dst, layout, seed):
    x, arr = make_tensor(np.random.default_rng(seed), shape, src, layout, device)
    require(device, dst)
    out = x.to(dst)
    assert out.shape == x.shape and out.dtype == dst
    expected = to_torch(arr, src).to(TORCH_DTYPE[dst])
    assert_close(out, torch_values(expected), dst, exact=True, device=device)
    if src == dst:
        assert out.is_alias_of(x)
    # The named conversions
    assert x.float().dtype == oc.float32 and x.half().dtype == oc.float16
    assert x.bfloat16().dtype == oc.bfloat16 and x.int().dtype == oc.int32 and x.long().dtype == oc.int64
    assert x.bool().dtype == oc.bool and x.bool().device == device
    if supports(device, oc.float64):
        assert x.double().dtype == oc.float64
    else:
        with pytest.raises(oc.DTypeError, match="float64"):
            x.double()


def test_half_subnormals_and_rounding_exhaustive(device):
    """Every float16 bit pattern converts to float32 exactly, and back."""
    bits = np.arange(0, 2**16, dtype=np.uint16)
    halfs = bits.view(np.float16)
    x = oc.from_numpy(halfs.copy()).to(device)
    f = to_numpy(x.float())
    np.testing.assert_array_equal(f, halfs.astype(np.float32))
    back = to_numpy(x.float().half()).view(np.uint16)
    finite = np.isfinite(halfs)
    np.testing.assert_array_equal(back[finite], bits[finite])
    assert np.isnan(to_numpy(x.float().half())[~np.isfinite(halfs) & np.isnan(halfs)]).all()
    # float32 -> float16 rounding for many random floats, against NumPy
    rng = np.random.default_rng(3)
    edges = np.array([65519.99, 65520.0, 2.0**-25, 2.0**-24 * 1.5, 2.0**-14 * 0.999], np.float32)
    vals = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-9, 6, 20000), edges]).astype(np.float32)
    with np.errstate(over="ignore"):
        as_half = vals.astype(np.float16)
    v = oc.from_numpy(vals).to(device)
    assert v.half().device == device
    np.testing.assert_array_equal(to_numpy(v.half()).view(np.uint16), as_half.view(np.uint16))
    # and bfloat16, against torch
    tb = torch.from_numpy(vals).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(to_numpy(v.bfloat16()), tb)


# ---- in place --------------------------------------------------------------------------------

WRITABLE_LAYOUTS = st.sampled_from(["contiguous", "strided", "transposed", "offset"])  # no expanded views
INPLACE = {"add_": np.add, "sub_": np.subtract, "mul_": np.multiply, "div_": np.true_divide}


@given(op=st.sampled_from(sorted(INPLACE)), shape=shapes(min_dims=1, max_dims=3), dtype=st.sampled_from(NUMERIC_DTYPES),
       layout=WRITABLE_LAYOUTS, seed=seeds,
       value_kind=st.sampled_from(["tensor", "row", "scalar_int", "scalar_float", "expanded"]))
def test_inplace_on_views_writes_through(device, op, shape, dtype, layout, seed, value_kind):
    rng = np.random.default_rng(seed)
    # A base buffer and a view of it in the layout; the op must write through the view.
    base_arr = rng.uniform(-3, 3, size=(2,) + shape)
    base = from_numpy(round_to(base_arr, dtype), dtype, device)
    view = base[1]
    if layout == "strided":
        view = base.transpose(0, -1)[..., 1] if len(shape) > 0 else view
    elif layout == "transposed":
        view = base[1].permute(*range(len(shape))[::-1])
    elif layout == "offset":
        view = base[1]
    before = to_numpy(base).astype(np.float64)
    target = to_numpy(view).astype(np.float64)
    if value_kind in ("tensor", "expanded"):
        v, varr = make_tensor(rng, view.shape, dtype, "expanded" if value_kind == "expanded" else "strided", device)
        varr = varr.astype(np.float64)
    elif value_kind == "row":
        v, varr = make_tensor(rng, view.shape[-1:], dtype, device=device)
        varr = varr.astype(np.float64)
    elif value_kind == "scalar_int":
        v = varr = 3
    else:
        v = varr = 1.5
    result_dtype = result_type_with_scalar(dtype, v) if not isinstance(v, oc.Tensor) else dtype
    if op == "div_" and not is_float(result_dtype):
        result_dtype = oc.float32
    if is_float(result_dtype) and not is_float(dtype):
        with pytest.raises(TypeError, match="cannot be stored|cast"):
            getattr(view, op)(v)
        return
    version = view._version
    ret = getattr(view, op)(v)
    assert ret is view and view.device == device
    assert view._version > version
    with np.errstate(all="ignore"):
        expected_view = INPLACE[op](target, varr)
    if dtype in INT_DTYPES:
        expected_view = np.trunc(expected_view)
    assert_close(view, expected_view, dtype)
    # The base saw the write, and nothing outside the view changed.
    changed = to_numpy(base).astype(np.float64)
    np.testing.assert_array_equal(changed[0], before[0])


def test_inplace_operators_and_aliasing(device):
    a = oc.arange(10.0, device=device)
    a[1:] += a[:-1]  # overlapping views read the old values, as in NumPy
    expected = np.arange(10.0)
    expected[1:] = expected[1:] + expected[:-1].copy()
    assert_close(a, expected, oc.float32, device=device)
    m = oc.arange(9.0, device=device).reshape(3, 3)
    m.add_(m.T)
    e = np.arange(9.0).reshape(3, 3)
    assert_close(m, e + e.T, oc.float32, device=device)
    t = oc.ones(3, device=device)
    t2 = t
    t *= 4
    t /= 2
    t -= 1
    assert t2 is t
    assert_close(t, np.ones(3), oc.float32, device=device)


@pytest.mark.parametrize("out_dtype,value_dtype", [
    (oc.float32, oc.float64), (oc.float16, oc.float32), (oc.int32, oc.int64), (oc.int64, oc.int32),
    (oc.bfloat16, oc.float64), (oc.float32, oc.int64), (oc.int64, oc.bool), (oc.float64, oc.float16),
])
def test_inplace_accepts_same_kind_downcasts_like_torch(device, out_dtype, value_dtype):
    """PyTorch allows `out op= value` whenever the result casts to out's dtype within its kind."""
    require(device, out_dtype)
    require(device, value_dtype)
    out = oc.ones(4, dtype=out_dtype, device=device)
    out.add_(oc.ones(4, dtype=value_dtype, device=device))
    assert out.dtype == out_dtype
    assert_close(out, np.full(4, 2.0), out_dtype, device=device)
    out.mul_(oc.full((4,), 3, dtype=value_dtype, device=device))
    assert_close(out, np.full(4, 6.0 if value_dtype != oc.bool else 2.0), out_dtype, device=device)


# (no tensors at module level: nanobind reports instances still alive at interpreter exit)
@pytest.mark.parametrize("out_dtype,value", [(oc.int64, 1.5), (oc.int32, oc.float32), (oc.bool, 1),
                                             (oc.bool, oc.int32), (oc.int64, oc.float16)])
def test_inplace_rejects_kind_upcasts(device, out_dtype, value):
    if isinstance(value, oc.dtype):
        value = oc.ones(2, dtype=value, device=device)
    out = oc.zeros(2, dtype=out_dtype, device=device)
    with pytest.raises(TypeError, match="cannot be stored"):
        out.add_(value)
    with pytest.raises(TypeError, match="cannot be stored"):
        out.div_(2) if out_dtype != oc.bool else out.mul_(value)


def test_inplace_shape_and_expanded_errors(device):
    t = oc.zeros(2, 3, device=device)
    with pytest.raises(ValueError, match=r"\[2, 3\]"):
        t.add_(oc.ones(3, 3, device=device))
    e = oc.zeros(3, device=device).expand(2, 3)
    with pytest.raises(ValueError, match="expanded"):
        e.add_(1)
    with pytest.raises(ValueError, match="expanded"):
        e.fill_(1)


@given(shape=shapes(max_dims=3), dtype=dtypes, layout=WRITABLE_LAYOUTS,
       value=st.sampled_from([0, 1, -2, 2.7, -2.7, 0.1]), seed=seeds)
def test_fill(device, shape, dtype, layout, value, seed):
    x, _ = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    x.fill_(value)
    expected = torch.full(shape, value, dtype=torch.float64).to(TORCH_DTYPE[dtype])
    assert_close(x, torch_values(expected), dtype, exact=True, device=device)
    x.zero_()
    assert_close(x, np.zeros(shape), dtype, exact=True, device=device)


@given(shape=shapes(min_dims=1, max_dims=3), src=dtypes, dst=dtypes, layout=layouts, seed=seeds,
       bcast=st.booleans())
def test_copy_casts_and_broadcasts(device, shape, src, dst, layout, seed, bcast):
    rng = np.random.default_rng(seed)
    s, arr = make_tensor(rng, shape[1:] if bcast else shape, src, layout, device)
    require(device, dst)
    out = oc.zeros(shape, dtype=dst, device=device)
    view = out.transpose(0, -1).transpose(0, -1)
    ret = view.copy_(s)
    assert ret is view
    expected = to_torch(np.broadcast_to(arr, shape), src).to(TORCH_DTYPE[dst])
    assert_close(out, torch_values(expected), dst, exact=True, device=device)


def test_copy_overlapping_and_scalar(device):
    a = oc.arange(6, device=device)
    a[1:].copy_(a[:-1])
    assert_close(a, np.array([0, 0, 1, 2, 3, 4]), oc.int64, device=device)
    a.copy_(7)
    assert_close(a, np.full(6, 7), oc.int64, device=device)
    with pytest.raises(ValueError, match="broadcast"):
        a.copy_(oc.ones(5, device=device))
