"""Numerical edge cases, on every device and floating dtype:
- softmax, log_softmax, logsumexp and cross-entropy stay finite (forward and backward) for logits of
  +-1e4, and agree with PyTorch computed in float64;
- fully masked attention rows give a defined result: 0 in the output and in every gradient, rows
  beside them untouched (docs/ARCHITECTURE.md, "Numerical edge cases");
- elementwise ops and clamp (NaN bounds too) give special values (NaN, +-inf, +-0, the largest and
  the smallest normal values) what mathematics gives them (IEEE 754, C99), not PyTorch;
- NaN (and Inf) propagate as in PyTorch through reductions, max/argmax, softmax, matmul,
  cross-entropy, layer norm and attention, also over rows long enough
  for the Metal kernels whose threads combine partial results. (MSL's own max/min/fmax/simd_max
  drop NaN on floats; the emulated device computes them so, and the kernels propagate NaN
  explicitly: metal/common.h.)
"""
import math

import numpy as np
import pytest
import torch

import orchard as oc
import orchard.nn.functional as F
from conftest import FLOAT_DTYPES, TOLERANCE, TORCH_DTYPE, gelu_reference, require, round_to

NAN, INF = math.nan, math.inf
HALF_PLUS = [oc.float16, oc.bfloat16, oc.float32]  # the dtypes attention takes


def values(t):
    t = t.detach().cpu()
    return np.array((t.float() if t.dtype in (oc.float16, oc.bfloat16) else t).numpy(), dtype=np.float64)


def tvalues(t):
    return t.detach().double().numpy()


# Rows of logits at +-1e4 (exactly representable in float16; bfloat16 rounds them to 9984).
EXTREME_ROWS = [
    [1e4, -1e4, 0.0, 1.0],
    [-1e4, -1e4, -1e4, -1e4],
    [1e4, 1e4, 1e4, 1e4],
    [1e4, 1e4 - 1, -1e4, 3.0],
    [-1e4, 0.0, 0.0, -1e4],
    [1e4, -1e4, -1e4, -1e4],
]


def extreme_logits(dtype, device):
    x = oc.tensor(EXTREME_ROWS, dtype=dtype, device=device)
    return x, torch.tensor(values(x), dtype=torch.float64)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("dim", [0, 1])
def test_softmax_family_is_finite_for_logits_of_1e4(device, dtype, op, dim):
    require(device, dtype)
    x, ref_in = extreme_logits(dtype, device)
    x.requires_grad_()
    out = getattr(x, op)(dim)
    ref = getattr(ref_in, op)(dim)
    got = values(out)
    assert np.isfinite(got).all(), f"{op} of +-1e4 logits: {got}"
    rtol, atol = TOLERANCE[dtype]
    # log-probabilities around -2e4 carry the rounding of the input (bfloat16 spacing there is 128)
    np.testing.assert_allclose(got, tvalues(ref), rtol=max(rtol, 1e-6), atol=atol)
    out.sum().backward()
    assert np.isfinite(values(x.grad)).all(), f"{op} gradient of +-1e4 logits: {values(x.grad)}"
    # The gradient against PyTorch in the same dtype: both differentiate the rounded output (a
    # float16 logsumexp of four 1e4 is 1e4, so each exp(x - lse) is 1 in both, 0.25 in float64).
    same = ref_in.to(TORCH_DTYPE[dtype]).requires_grad_()
    getattr(same, op)(dim).sum().backward()
    np.testing.assert_allclose(values(x.grad), tvalues(same.grad), rtol=max(rtol, 1e-5), atol=max(atol, 1e-5) * 4)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_is_finite_for_logits_of_1e4(device, dtype, reduction):
    require(device, dtype)
    x, ref_in = extreme_logits(dtype, device)
    x.requires_grad_()
    target = [0, 1, 2, 1, 3, 2]
    loss = F.cross_entropy(x, oc.tensor(target, device=device), reduction=reduction)
    ref_in.requires_grad_()
    ref = torch.nn.functional.cross_entropy(ref_in, torch.tensor(target), reduction=reduction)
    got = values(loss)
    assert np.isfinite(got).all(), f"cross_entropy of +-1e4 logits: {got}"
    # The largest losses are 2e4: a float32 loss is exact to ~1e-3 there.
    np.testing.assert_allclose(got, tvalues(ref), rtol=max(TOLERANCE[dtype][0], 1e-6), atol=1e-2)
    loss.sum().backward()
    ref.sum().backward()
    assert np.isfinite(values(x.grad)).all()
    np.testing.assert_allclose(values(x.grad), tvalues(ref_in.grad), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_logits_near_the_largest_finite_value(device, dtype):
    """logsumexp of the dtype's largest finite value still is finite (max + log(n) does not overflow
    in the compute precision) where PyTorch's float64 reference is."""
    require(device, dtype)
    big = float(torch.finfo(TORCH_DTYPE[dtype]).max) / 4
    x = oc.tensor([[big, big, -big], [-big, -big, -big]], dtype=dtype, device=device)
    assert np.isfinite(values(x.softmax(1))).all()
    assert np.isfinite(values(x.log_softmax(1))[:, :2]).all()
    lse = values(x.logsumexp(1))
    np.testing.assert_allclose(lse, [big + math.log(2), -big + math.log(3)], rtol=TOLERANCE[dtype][0] * 4)


# ---- fully masked attention rows --------------------------------------------------------------

@pytest.mark.parametrize("dtype", HALF_PLUS)
@pytest.mark.parametrize("mask_kind", ["bool", "float", "no_keys"])
def test_fully_masked_attention_rows_are_zero_with_zero_gradients(device, dtype, mask_kind):
    """A query row that attends to no key is 0, and so are its gradients: it contributes nothing to
    dk and dv, and its dq is 0. PyTorch's math path gives 0 for masked rows too (its safe softmax),
    and NaN when there are no keys at all; Orchard gives 0 in both."""
    rng = np.random.default_rng(7)
    lq, lk = 5, 0 if mask_kind == "no_keys" else 6
    q_np, k_np, v_np = (rng.standard_normal((2, 2, n, 8)).astype(np.float32) for n in (lq, lk, lk))
    keep = rng.random((lq, lk)) < 0.7
    keep[1] = False  # row 1 fully masked
    keep[3] = False  # and row 3
    if lk:
        keep[[0, 2, 4], 0] = True  # the others see at least one key
    q, k, v = (oc.tensor(a, dtype=dtype, device=device).requires_grad_() for a in (q_np, k_np, v_np))
    kw = {}
    if mask_kind == "bool":
        kw["attn_mask"] = oc.tensor(keep, device=device)
    elif mask_kind == "float":
        kw["attn_mask"] = oc.tensor(np.where(keep, 0.0, -np.inf).astype(np.float32), device=device)
    out = F.scaled_dot_product_attention(q, k, v, **kw)
    out.backward(oc.ones_like(out))
    dead = [1, 3] if mask_kind != "no_keys" else list(range(lq))
    for t in (out, q.grad):
        got = values(t)
        assert np.isfinite(got).all()
        assert np.all(got[:, :, dead] == 0), f"fully masked rows must be 0, got {got[:, :, dead]}"
    assert np.isfinite(values(k.grad)).all() and np.isfinite(values(v.grad)).all()
    if mask_kind == "no_keys":
        assert k.grad.shape == (2, 2, 0, 8)
        return
    # The other rows match PyTorch (whose math path also gives 0 for the masked rows).
    tq, tk, tv = (torch.tensor(values(t), dtype=torch.float64, requires_grad=True) for t in (q, k, v))
    tm = torch.tensor(keep) if mask_kind == "bool" else torch.tensor(np.where(keep, 0.0, -np.inf))
    ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tm)
    ref.backward(torch.ones_like(ref))
    tol = dict(rtol=TOLERANCE[dtype][0] * 8, atol=TOLERANCE[dtype][1] * 8 + (2e-2 if dtype != oc.float32 else 0))
    np.testing.assert_allclose(values(out), tvalues(ref), **tol)
    for ours, theirs in ((q, tq), (k, tk), (v, tv)):
        np.testing.assert_allclose(values(ours.grad), tvalues(theirs.grad), **tol)


@pytest.mark.parametrize("causal", [False, True])
def test_nan_in_a_visible_key_or_value_reaches_the_rows_that_see_it(device, causal):
    """NaN in a key or value makes every row that attends to it NaN, as in PyTorch. (NaN in a key
    or value that a mask hides is unspecified: the kernels skip whole hidden tiles but add -inf
    inside a tile; PyTorch's math path spreads it into every row.)"""
    lq = lk = 5
    rng = np.random.default_rng(3)
    q_np, k_np, v_np = (rng.standard_normal((1, 2, 5, 4)).astype(np.float32) for _ in range(3))
    k_np[0, 0, 2, 1] = NAN  # head 0: key 2
    v_np[0, 1, 3, 0] = NAN  # head 1: value 3
    keep = np.ones((lq, lk), bool) if causal else rng.random((lq, lk)) < 0.5
    keep[:, 0] = True
    q, k, v = (oc.tensor(a, device=device) for a in (q_np, k_np, v_np))
    kw = {"is_causal": True} if causal else {"attn_mask": oc.tensor(keep, device=device)}
    out = values(F.scaled_dot_product_attention(q, k, v, **kw))
    sees = np.tril(np.ones((lq, lk), bool)) if causal else keep
    assert np.isnan(out[0, 0][sees[:, 2]]).all() and np.isnan(out[0, 1][sees[:, 3], 0]).all()


# ---- NaN propagation as in PyTorch ----------------------------------------------------------------

SPECIALS = np.array([[NAN, 1.0, -2.0, INF], [0.5, -INF, NAN, 0.0], [3.0, 2.0, 1.0, -1.0], [-0.0, NAN, NAN, NAN]],
                    dtype=np.float32)

# Elementwise ops on special values, against mathematics: IEEE 754 for arithmetic and comparisons,
# C99 Annex F for the elementary functions (the float64 NumPy functions below follow both on every
# platform), and the limits of the composed functions (sigmoid(-inf) = 0, gelu(-inf) = -0). Not
# against PyTorch: its answers differ between its scalar and vector kernels (gelu(+inf) is +inf in
# one, NaN in the other), and so between processors.
ELEMENTWISE = {  # op: (Orchard, the mathematical value in float64)
    "exp": (lambda x, y: oc.exp(x), lambda x, y: np.exp(x)),
    "log": (lambda x, y: oc.log(x), lambda x, y: np.log(x)),
    "sqrt": (lambda x, y: oc.sqrt(x), lambda x, y: np.sqrt(x)),
    "tanh": (lambda x, y: oc.tanh(x), lambda x, y: np.tanh(x)),
    "sigmoid": (lambda x, y: oc.sigmoid(x), lambda x, y: 1 / (1 + np.exp(-x))),
    "relu": (lambda x, y: oc.relu(x), lambda x, y: np.where(x > 0, x, np.where(np.isnan(x), x, 0.0))),
    "abs": (lambda x, y: oc.abs(x), lambda x, y: np.abs(x)),
    "neg": (lambda x, y: oc.neg(x), lambda x, y: -x),
    "sin": (lambda x, y: oc.sin(x), lambda x, y: np.sin(x)),
    "gelu": (lambda x, y: oc.gelu(x), lambda x, y: gelu_reference(x)),
    "add": (lambda x, y: oc.add(x, y), lambda x, y: x + y),
    "mul": (lambda x, y: oc.mul(x, y), lambda x, y: x * y),
    "div": (lambda x, y: oc.div(x, y), lambda x, y: x / y),
    "pow": (lambda x, y: oc.pow(x, y), lambda x, y: np.power(x, y)),
    "maximum": (lambda x, y: oc.maximum(x, y), lambda x, y: np.maximum(x, y)),  # NaN wins, as IEEE 754-2019's
    "minimum": (lambda x, y: oc.minimum(x, y), lambda x, y: np.minimum(x, y)),
    "eq": (lambda x, y: oc.eq(x, y), lambda x, y: x == y),
    "lt": (lambda x, y: oc.lt(x, y), lambda x, y: x < y),
    "ne": (lambda x, y: oc.ne(x, y), lambda x, y: x != y),
    "where": (lambda x, y: oc.where(x > 0, x, y), lambda x, y: np.where(x > 0, x, y)),
    "clamp": (lambda x, y: oc.clamp(x, min=-1.0, max=1.0), lambda x, y: np.minimum(np.maximum(x, -1.0), 1.0)),
    "clamp_nan_bound": (lambda x, y: oc.clamp(x, min=y), lambda x, y: np.maximum(x, y)),
    "clamp_nan_max_bound": (lambda x, y: oc.clamp(x, max=y), lambda x, y: np.minimum(x, y)),
    "clamp_nan_bounds": (lambda x, y: oc.clamp(x, min=y, max=y + 1), lambda x, y: np.minimum(np.maximum(x, y), y + 1)),
    "pow_of_one": (lambda x, y: oc.pow(x * 0 + 1, y), lambda x, y: np.power(x * 0 + 1, y)),  # 1 ** NaN is 1
    "pow_to_zero": (lambda x, y: oc.pow(x, y * 0), lambda x, y: np.power(x, y * 0)),  # NaN ** 0 is 1
}
# Where IEEE 754 and C99 give a zero its sign (-0 * 3 = -0, sqrt(-0) = -0, exp(-inf) = +0); relu,
# maximum, minimum, clamp and gelu leave it open.
SIGNED_ZEROS = {"exp", "log", "sqrt", "tanh", "sigmoid", "abs", "neg", "sin", "add", "mul", "div", "pow", "where",
                "pow_of_one", "pow_to_zero"}
COMPARISONS = {"eq", "lt", "ne"}


def special_values(dtype):
    """NaN, +-inf, +-0, +-the largest finite value, +-the smallest normal one and a few plain numbers,
    exactly representable in `dtype`."""
    info = torch.finfo(TORCH_DTYPE[dtype])
    return np.array([NAN, INF, -INF, 0.0, -0.0, info.max, -info.max, info.tiny, -info.tiny,
                     1.0, -1.0, 0.5, -2.0, 3.0])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("op", list(ELEMENTWISE))
def test_special_values_through_elementwise_ops_follow_mathematics(device, dtype, op):
    """Every pair of special values: NaN exactly where mathematics gives NaN, infinities with their
    sign, zeros with their sign where it is defined, the rest within the dtype's tolerance."""
    require(device, dtype)
    vals = special_values(dtype)
    x_np, y_np = np.repeat(vals, vals.size), np.tile(vals, vals.size)  # every (x, y) pair
    x, y = (oc.tensor(a, dtype=dtype, device=device) for a in (x_np, y_np))
    orchard_op, math_op = ELEMENTWISE[op]
    got = orchard_op(x, y)
    assert got.dtype == (oc.bool if op in COMPARISONS else dtype)
    g = values(got)
    with np.errstate(all="ignore"):  # overflow to inf, 0 * inf, ... are what is checked
        w = math_op(x_np, y_np)
        w = w.astype(np.float64) if op in COMPARISONS else round_to(w, dtype).astype(np.float64)

    def check(bad, what):
        assert not bad.any(), f"{op} {what} at (x, y) = " + ", ".join(
            f"({a}, {b}): {c} not {d}" for a, b, c, d in zip(x_np[bad], y_np[bad], g[bad], w[bad]))

    check(np.isnan(g) != np.isnan(w), "NaN")
    inf = np.isinf(g) | np.isinf(w)
    check(inf & (g != w), "infinity")
    if op in SIGNED_ZEROS:
        check((w == 0) & (g == 0) & (np.signbit(g) != np.signbit(w)), "sign of zero")
    ok = np.isfinite(w)
    np.testing.assert_allclose(g[ok], w[ok], rtol=TOLERANCE[dtype][0] * 2, atol=TOLERANCE[dtype][1],
                               err_msg=f"{op} of {list(zip(x_np[ok], y_np[ok]))}")


REDUCTIONS = {
    "sum": lambda t, d: t.sum(d), "mean": lambda t, d: t.mean(d), "amax": lambda t, d: t.amax(d),
    "amin": lambda t, d: t.amin(d), "var": lambda t, d: t.var(d), "logsumexp": lambda t, d: t.logsumexp(d),
    "softmax": lambda t, d: t.softmax(d), "log_softmax": lambda t, d: t.log_softmax(d),
    "max_values": lambda t, d: t.max(d)[0], "min_values": lambda t, d: t.min(d)[0],
    "max_indices": lambda t, d: t.max(d)[1], "min_indices": lambda t, d: t.min(d)[1],
    "argmax": lambda t, d: t.argmax(d), "argmin": lambda t, d: t.argmin(d),
}


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("op", list(REDUCTIONS))
@pytest.mark.parametrize("dim", [0, 1])
def test_nan_propagates_through_reductions_as_in_torch(device, dtype, op, dim):
    """A NaN in a row makes its sum/mean/max/min/var/logsumexp/softmax NaN, and max/argmax point at
    the (first) NaN, as in PyTorch; Inf and -Inf give what PyTorch gives."""
    require(device, dtype)
    x = oc.tensor(SPECIALS, dtype=dtype, device=device)
    tx = torch.tensor(SPECIALS).to(TORCH_DTYPE[dtype])
    got, want = REDUCTIONS[op](x, dim), REDUCTIONS[op](tx, dim)
    g, w = values(got), tvalues(want)
    if got.dtype == oc.int64:
        np.testing.assert_array_equal(g, w, err_msg=op)
        return
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{op}: NaN positions")
    ok = np.isfinite(w)
    np.testing.assert_array_equal(np.isinf(g), np.isinf(w))
    np.testing.assert_allclose(g[ok], w[ok], rtol=TOLERANCE[dtype][0] * 4, atol=TOLERANCE[dtype][1] * 4)


def long_rows_with_nan(n, rng):
    """Three rows of n values: one NaN late in row 0 (after its largest value), none in row 1,
    two in row 2 (the arg ops report the first)."""
    x = rng.uniform(-3, 3, size=(3, n)).astype(np.float32)
    x[:, n // 3] = 50.0
    x[0, n - 3] = NAN
    x[2, [n // 5, 2 * n // 3]] = NAN
    return x


# Shapes (and the reduced dim) that reach each kernel variant of reduce.metal on Metal: a
# simdgroup per row, a 256-thread team per row (simdgroups meeting in threadgroup memory), and a
# column split into slices combined as a tree.
LONG_REDUCTIONS = [("row_simdgroup", 100, 1), ("row_team", 5000, 1), ("column_split", 5000, 0)]


@pytest.mark.parametrize("dtype", [oc.bfloat16, oc.float32])
@pytest.mark.parametrize("op", list(REDUCTIONS))
@pytest.mark.parametrize("layout,n,dim", LONG_REDUCTIONS, ids=[c[0] for c in LONG_REDUCTIONS])
def test_nan_propagates_through_long_reductions(device, dtype, op, layout, n, dim):
    """As above over rows long enough for the cooperating kernels, whose threads combine partial
    results: a NaN wherever it lies in the row wins max/min and reaches every sum; the arg ops
    point at the first NaN."""
    x_np = long_rows_with_nan(n, np.random.default_rng(5))
    if dim == 0:
        x_np = np.ascontiguousarray(x_np.T)
    x = oc.tensor(x_np, dtype=dtype, device=device)
    tx = torch.tensor(x_np).to(TORCH_DTYPE[dtype])
    got, want = REDUCTIONS[op](x, dim), REDUCTIONS[op](tx, dim)
    g, w = values(got), tvalues(want)
    if got.dtype == oc.int64:
        assert g[0] == n - 3 and g[2] == n // 5, f"{op}: the first NaN of each row"
        np.testing.assert_array_equal(g, w, err_msg=op)
        return
    nan_rows = np.isnan(g) if g.ndim == 1 else np.isnan(g).all(axis=dim)
    assert nan_rows.tolist() == [True, False, True], f"{op}: exactly the rows holding NaN are NaN"
    np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"{op}: NaN positions")
    np.testing.assert_array_equal(np.isinf(g), np.isinf(w), err_msg=f"{op}: Inf positions")
    ok = np.isfinite(w)
    np.testing.assert_allclose(g[ok], w[ok], rtol=TOLERANCE[dtype][0] * 4, atol=TOLERANCE[dtype][1] * 4)


@pytest.mark.parametrize("dtype", [oc.bfloat16, oc.float32])
def test_nan_propagates_through_long_rows_of_cross_entropy_and_layer_norm(device, dtype):
    """Rows long enough that several simdgroups reduce each one (their maxima and sums meet in
    threadgroup memory): a NaN anywhere makes its row's loss, and its layer-norm row, NaN."""
    x_np = long_rows_with_nan(3000, np.random.default_rng(6))
    x = oc.tensor(x_np, dtype=dtype, device=device)
    tx = torch.tensor(x_np).to(TORCH_DTYPE[dtype])
    target = [3, 1, 2999]
    loss = values(F.cross_entropy(x, oc.tensor(target, device=device), reduction="none"))
    ref = tvalues(torch.nn.functional.cross_entropy(tx.double(), torch.tensor(target), reduction="none"))
    np.testing.assert_array_equal(np.isnan(loss), [True, False, True])
    np.testing.assert_allclose(loss[1], ref[1], rtol=TOLERANCE[dtype][0] * 4)
    y = values(F.layer_norm(x, (3000,)))
    np.testing.assert_array_equal(np.isnan(y).all(axis=1), [True, False, True])
    assert np.isfinite(y[1]).all()


@pytest.mark.parametrize("dtype", HALF_PLUS)
def test_nan_reaches_attention_rows_through_the_running_max(device, dtype):
    """The online softmax keeps a running row maximum over key tiles: NaN in a query makes its row
    NaN, and NaN in a key of a late tile makes every row that sees it NaN, whatever the maximum
    of the tiles before; the other rows match PyTorch."""
    rng = np.random.default_rng(8)
    q_np, k_np, v_np = (rng.standard_normal((1, 2, 100, 8)).astype(np.float32) for _ in range(3))
    q_np[0, 0, 7, 3] = NAN  # head 0: query row 7
    k_np[0, 1, 90, 0] = NAN  # head 1: key 90, in the last tile
    q, k, v = (oc.tensor(a, dtype=dtype, device=device) for a in (q_np, k_np, v_np))
    out = values(F.scaled_dot_product_attention(q, k, v))
    assert np.isnan(out[0, 0, 7]).all() and np.isnan(out[0, 1]).all()
    rest = np.delete(out[0, 0], 7, axis=0)
    assert np.isfinite(rest).all()
    tq, tk, tv = (torch.tensor(values(t)) for t in (q, k, v))
    ref = np.delete(torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)[0, 0].numpy(), 7, axis=0)
    tol = dict(rtol=TOLERANCE[dtype][0] * 8, atol=TOLERANCE[dtype][1] * 8 + (2e-2 if dtype != oc.float32 else 0))
    np.testing.assert_allclose(rest, ref, **tol)


@pytest.mark.parametrize("dtype", HALF_PLUS + [oc.float64])
def test_nan_propagates_through_matmul_cross_entropy_and_layer_norm(device, dtype):
    require(device, dtype)
    a_np = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    a_np[1, 2] = NAN
    b_np = np.ones((4, 2), np.float32)
    b_np[0, 1] = INF
    a, b = oc.tensor(a_np, dtype=dtype, device=device), oc.tensor(b_np, dtype=dtype, device=device)
    ta, tb = torch.tensor(a_np).to(TORCH_DTYPE[dtype]), torch.tensor(b_np).to(TORCH_DTYPE[dtype])
    for got, want in [(a @ b, ta @ tb),
                      (F.cross_entropy(a, oc.tensor([0, 1, 2], device=device), reduction="none"),
                       torch.nn.functional.cross_entropy(ta, torch.tensor([0, 1, 2]), reduction="none")),
                      (F.layer_norm(a, (4,)), torch.nn.functional.layer_norm(ta, (4,)))]:
        np.testing.assert_array_equal(np.isnan(values(got)), np.isnan(tvalues(want)))
        np.testing.assert_array_equal(np.isinf(values(got)), np.isinf(tvalues(want)))
    # A NaN in one row of a mean-reduced loss makes the loss NaN; ignored rows do not count.
    loss = F.cross_entropy(a, oc.tensor([0, -100, 2], device=device))
    assert np.isfinite(values(loss)), "the NaN row is ignored"
    assert np.isnan(values(F.cross_entropy(a, oc.tensor([0, 1, 2], device=device))))


def test_nan_gradients_flow_like_torch(device):
    """Backward through ops with NaN inputs gives NaN gradients where PyTorch's are NaN."""
    x_np = np.array([[NAN, 1.0, -2.0], [0.5, 3.0, -1.0]], np.float32)
    x = oc.tensor(x_np, device=device, requires_grad=True)
    tx = torch.tensor(x_np, requires_grad=True)
    for L, t in ((oc, x), (torch, tx)):
        y = (L.exp(t) * 2 + t.softmax(1) + t.relu()).sum(1) + t.logsumexp(1)
        y.sum().backward()
    np.testing.assert_array_equal(np.isnan(values(x.grad)), np.isnan(tx.grad.numpy()))
    ok = ~np.isnan(tx.grad.numpy())
    np.testing.assert_allclose(values(x.grad)[ok], tx.grad.numpy()[ok], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [oc.int32, oc.int64])
def test_integer_overflow_wraps_around_as_in_torch(device, dtype):
    """+, -, *, ** and negation of integers wrap (two's complement), as in PyTorch and NumPy."""
    info = np.iinfo(np.int32 if dtype == oc.int32 else np.int64)
    a_np = np.array([info.max, info.min, info.min, 3, -3, 65536], dtype=info.dtype)
    b_np = np.array([1, -1, 2, 40, 41, 2], dtype=info.dtype)
    a, b = oc.tensor(a_np, device=device), oc.tensor(b_np, device=device)
    ta, tb = torch.from_numpy(a_np), torch.from_numpy(b_np)
    for name, ours, theirs in [("add", a + b, ta + tb), ("sub", a - b, ta - tb), ("mul", a * b, ta * tb),
                               ("pow", a ** b, ta ** tb), ("neg", -a, -ta), ("abs", a.abs(), ta.abs())]:
        assert ours.cpu().tolist() == theirs.tolist(), name
