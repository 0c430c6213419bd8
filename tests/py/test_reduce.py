"""Reductions against NumPy (values) and PyTorch (dtypes, max/min with a dim, argmax ties and NaN):
sum, mean, amax/amin, max/min, argmax/argmin, var, logsumexp, softmax, log_softmax."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import (
    FLOAT_DTYPES, INT_DTYPES, TOLERANCE, TORCH_DTYPE, OrchardOn, assert_close, dtypes, float_dtypes,
    from_numpy, is_float, layouts, make_tensor, seeds, shapes, to_numpy, to_torch,
)


@st.composite
def shape_and_dims(draw, min_dims=0, max_dims=4, allow_zero=True, single=False):
    """A shape and the dims to reduce: None, one int, or a tuple (negative dims included)."""
    shape = draw(shapes(min_dims=min_dims, max_dims=max_dims, allow_zero=allow_zero))
    nd = len(shape)
    if single:
        dim = draw(st.integers(-max(nd, 1), max(nd, 1) - 1))
        return shape, dim
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none" or nd == 0:
        return shape, None
    if kind == "int":
        return shape, draw(st.integers(-nd, nd - 1))
    axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
    return shape, tuple(a - nd if draw(st.booleans()) else a for a in axes)


def np_axes(dims, ndim):
    if dims is None:
        return None
    if isinstance(dims, int):
        return (dims % max(ndim, 1),) if ndim else None
    return tuple(d % ndim for d in dims)


def reduced_count(shape, dims):
    axes = np_axes(dims, len(shape))
    if axes is None:
        return int(np.prod(shape, dtype=np.int64))
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


def sum_tolerance(dtype, arr, axes):
    """Rounding of the result plus accumulated error relative to sum(|x|)."""
    if not is_float(dtype):
        return {}
    r, a = TOLERANCE[dtype]
    scale = np.abs(arr.astype(np.float64)).sum(axis=axes) if arr.size else np.zeros(())
    return {"rtol": r, "atol": a + r * float(np.max(scale, initial=0.0)) * 0.05 + (1e-6 if dtype == oc.float32 else 0)}


@given(sd=shape_and_dims(), dtype=dtypes, layout=layouts, keepdim=st.booleans(), seed=seeds)
def test_sum(device, sd, dtype, layout, keepdim, seed):
    shape, dims = sd
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    axes = np_axes(dims, len(shape))
    out_dtype = dtype if is_float(dtype) else oc.int64
    expected = np.sum(arr.astype(np.float64 if is_float(dtype) else np.int64), axis=axes, keepdims=keepdim)
    assert torch.sum(torch.zeros(2, dtype=TORCH_DTYPE[dtype])).dtype == TORCH_DTYPE[out_dtype]
    out = oc.sum(x, dim=dims, keepdim=keepdim)
    assert_close(out, expected, out_dtype, **sum_tolerance(dtype, arr, axes), msg=f"sum{shape} dims={dims}",
                 device=device)
    assert_close(x.sum(dims, keepdim), expected, out_dtype, **sum_tolerance(dtype, arr, axes), device=device)


@given(sd=shape_and_dims(), dtype=float_dtypes, layout=layouts, keepdim=st.booleans(), seed=seeds)
def test_mean(device, sd, dtype, layout, keepdim, seed):
    shape, dims = sd
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    axes = np_axes(dims, len(shape))
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = np.mean(arr.astype(np.float64), axis=axes, keepdims=keepdim)
    tol = sum_tolerance(dtype, arr, axes)
    n = max(reduced_count(shape, dims), 1)
    tol["atol"] = tol["atol"] / n + TOLERANCE[dtype][1]
    assert_close(oc.mean(x, dim=dims, keepdim=keepdim), expected, dtype, **tol, device=device)


@pytest.mark.parametrize("dtype", [oc.bool] + INT_DTYPES)
def test_mean_and_var_of_integers_raise(device, dtype):
    x = oc.ones(3, dtype=dtype, device=device)
    with pytest.raises(TypeError, match="floating point"):
        x.mean()
    with pytest.raises(TypeError, match="floating point"):
        x.var()


@given(sd=shape_and_dims(), dtype=dtypes, layout=layouts, keepdim=st.booleans(), seed=seeds,
       which=st.sampled_from(["amax", "amin"]))
def test_amax_amin(device, sd, dtype, layout, keepdim, seed, which):
    shape, dims = sd
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    axes = np_axes(dims, len(shape))
    fn = np.max if which == "amax" else np.min
    if reduced_count(shape, dims) == 0 and arr.size == 0 or (axes is not None and any(shape[a] == 0 for a in axes)):
        with pytest.raises(ValueError, match="size 0"):
            getattr(oc, which)(x, dim=dims, keepdim=keepdim)
        return
    expected = fn(arr, axis=axes, keepdims=keepdim)
    assert_close(getattr(oc, which)(x, dim=dims, keepdim=keepdim), expected, dtype, exact=True, device=device)


@given(sd=shape_and_dims(min_dims=1, single=True), dtype=dtypes, layout=layouts, keepdim=st.booleans(),
       seed=seeds, which=st.sampled_from(["max", "min"]))
def test_max_min_with_dim_match_torch(device, sd, dtype, layout, keepdim, seed, which):
    """max(dim) -> (values, indices); ties give the first index, as in PyTorch."""
    shape, dim = sd
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, low=-1, high=1)
    t = to_torch(arr, dtype)
    if shape[dim] == 0:
        with pytest.raises(ValueError, match="size 0"):
            getattr(oc, which)(x, dim, keepdim)
        return
    ref = getattr(torch, which)(t, dim, keepdim)
    res = getattr(x, which)(dim=dim, keepdim=keepdim)
    values, indices = res
    assert res.values is values and res.indices is indices
    assert_close(values, ref.values.float().numpy() if dtype == oc.bfloat16 else ref.values.numpy(), dtype, exact=True,
                 device=device)
    if x.numel():
        # torch does not promise the first index for non-unique extremes on every path; NumPy does.
        first = (np.argmax if which == "max" else np.argmin)(arr, axis=dim % len(shape))
        if keepdim:
            first = np.expand_dims(first, dim % len(shape))
        assert_close(indices, first, oc.int64, device=device)
    # max() without a dim: the extreme of everything, as a 0-d tensor.
    if x.numel():
        whole = getattr(x, which)()
        assert whole.shape == ()
        assert_close(whole, (np.max if which == "max" else np.min)(arr), dtype, exact=True, device=device)


@given(sd=shape_and_dims(min_dims=0, max_dims=3, single=True), dtype=dtypes, layout=layouts,
       keepdim=st.booleans(), seed=seeds, which=st.sampled_from(["argmax", "argmin"]), flat=st.booleans())
def test_argmax_argmin(device, sd, dtype, layout, keepdim, seed, which, flat):
    shape, dim = sd
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, low=-1, high=1)
    npfn = np.argmax if which == "argmax" else np.argmin
    if flat:
        if arr.size == 0:
            with pytest.raises(ValueError, match="size 0"):
                getattr(oc, which)(x)
            return
        expected = np.asarray(npfn(arr))
        if keepdim:
            expected = expected.reshape((1,) * len(shape))
        tref = getattr(torch, which)(to_torch(arr, dtype).float(), keepdim=keepdim)
        assert tuple(tref.shape) == expected.shape
        assert_close(getattr(oc, which)(x, keepdim=keepdim), expected, oc.int64, device=device)
        return
    nd = len(shape)
    if nd and shape[dim] == 0:
        with pytest.raises(ValueError, match="size 0"):
            getattr(oc, which)(x, dim=dim, keepdim=keepdim)
        return
    if nd == 0:
        expected = np.asarray(0)
    else:
        expected = npfn(arr, axis=dim % nd)
        if keepdim:
            expected = np.expand_dims(expected, dim % nd)
    assert_close(getattr(x, which)(dim=dim, keepdim=keepdim), expected, oc.int64, device=device)


@pytest.mark.parametrize("dtype", [oc.float32, oc.float64, oc.float16, oc.bfloat16])
def test_nan_propagates_through_extremes(device, dtype):
    arr = np.array([[1.0, np.nan, 3.0, np.nan], [np.inf, -np.inf, 0.0, 2.0], [-1.0, -2.0, -3.0, np.nan]])
    x = from_numpy(arr, dtype, device)
    t = torch.from_numpy(arr).to(TORCH_DTYPE[dtype])
    for dim in (0, 1):
        for name in ("max", "min"):
            ref = getattr(torch, name)(t, dim)
            got = getattr(x, name)(dim)
            assert_close(got.values, ref.values.double().numpy(), dtype, exact=True, msg=f"{name}({dim})",
                         device=device)
            assert_close(got.indices, ref.indices.numpy(), oc.int64, msg=f"{name}({dim}) indices", device=device)
        assert_close(x.argmax(dim), torch.argmax(t, dim).numpy(), oc.int64, device=device)
        assert_close(x.argmin(dim), torch.argmin(t, dim).numpy(), oc.int64, device=device)
        assert_close(x.amax(dim), torch.amax(t, dim).double().numpy(), dtype, exact=True, device=device)
    assert np.isnan(x.max().item()) and np.isnan(x.amin().item())
    assert x.argmax().item() == 1


@pytest.mark.filterwarnings("ignore:var... degrees of freedom:UserWarning")  # torch, when dof <= 0
@given(sd=shape_and_dims(), dtype=float_dtypes, layout=layouts, keepdim=st.booleans(), seed=seeds,
       correction=st.sampled_from([0, 1, 2]))
def test_var(device, sd, dtype, layout, keepdim, seed, correction):
    shape, dims = sd
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    axes = np_axes(dims, len(shape))
    t = torch.from_numpy(np.array(arr, order="C", dtype=np.float64))
    expected = torch.var(t, dim=axes, correction=correction, keepdim=keepdim).numpy()
    r, a = TOLERANCE[dtype]
    assert_close(oc.var(x, dim=dims, correction=correction, keepdim=keepdim), expected, dtype, rtol=4 * r, atol=4 * a,
                 device=device)


@given(sd=shape_and_dims(), dtype=st.sampled_from(FLOAT_DTYPES + INT_DTYPES), layout=layouts,
       keepdim=st.booleans(), seed=seeds)
def test_logsumexp(device, sd, dtype, layout, keepdim, seed):
    shape, dims = sd
    if dims is None:
        dims = tuple(range(len(shape)))
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, low=-20, high=20)
    axes = np_axes(dims, len(shape)) if len(shape) else None
    t = torch.from_numpy(np.array(arr, order="C", dtype=np.float64))
    if len(shape):
        expected = torch.logsumexp(t, dim=axes if axes is not None else (), keepdim=keepdim).numpy()
    else:
        expected = arr.astype(np.float64)
    out_dtype = dtype if is_float(dtype) else oc.float32
    r, a = TOLERANCE[out_dtype]
    assert_close(oc.logsumexp(x, dim=dims, keepdim=keepdim), expected, out_dtype, rtol=2 * r, atol=2 * a,
                 device=device)


def test_logsumexp_infinities(device):
    # log(0) = -inf; an infinite term wins; NaN propagates (mathematics, as in PyTorch)
    x = oc.tensor([[-np.inf, -np.inf], [np.inf, 1.0], [-np.inf, 0.0], [np.nan, 1.0]], device=device)
    assert_close(oc.logsumexp(x, 1), np.array([-np.inf, np.inf, 0.0, np.nan]), oc.float32, device=device)
    assert_close(oc.logsumexp(oc.zeros(3, 0, device=device), 1), np.full(3, -np.inf), oc.float32, device=device)


@given(shape=shapes(min_dims=0, max_dims=4), data=st.data(), dtype=float_dtypes, layout=layouts, seed=seeds,
       log=st.booleans())
def test_softmax(device, shape, data, dtype, layout, seed, log):
    nd = len(shape)
    dim = data.draw(st.integers(-max(nd, 1), max(nd, 1) - 1))
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, low=-10, high=10)
    t = torch.from_numpy(np.array(arr, order="C", dtype=np.float64))
    fn = torch.log_softmax if log else torch.softmax
    expected = fn(t, dim).numpy()
    r, a = TOLERANCE[dtype]
    out = (oc.log_softmax if log else oc.softmax)(x, dim)
    assert_close(out, expected, dtype, rtol=2 * r, atol=(20 if log else 2) * a, device=device)
    assert out.is_contiguous()


def test_softmax_of_integers_raises_and_inf_rows(device):
    with pytest.raises(TypeError, match="floating point"):
        oc.softmax(oc.tensor([1, 2], device=device), 0)
    x = oc.tensor([[-np.inf, -np.inf], [0.0, -np.inf]], device=device)
    # a row of -inf is 0 / 0 (mathematics, as in PyTorch)
    assert_close(oc.softmax(x, 1), np.array([[np.nan, np.nan], [1.0, 0.0]]), oc.float32, device=device)


@pytest.mark.parametrize("shape,dims", [
    ((70001,), None), ((3, 70001), (1,)), ((70001, 3), (0,)), ((513, 129), (0,)), ((129, 513), (1,)),
    ((5, 4097, 3), (1,)), ((2, 3, 4099), (0, 2)), ((65, 65, 17), (0, 1)), ((1, 200000), None),
])
def test_large_reductions_cross_tiles_and_splits(device, shape, dims):
    """Sizes that cross the kernels' tile, leaf and split thresholds (and the thread pool)."""
    rng = np.random.default_rng(11)
    x, arr = make_tensor(rng, shape, oc.float32, "contiguous", device)
    a64 = arr.astype(np.float64)
    assert_close(x.sum(dims), a64.sum(axis=dims), oc.float32, rtol=1e-5, atol=1e-3, device=device)
    assert_close(x.mean(dims), a64.mean(axis=dims), oc.float32, rtol=1e-5, atol=1e-5, device=device)
    assert_close(x.amax(dims), a64.max(axis=dims), oc.float32, exact=True, device=device)
    assert_close(x.var(dims), a64.var(axis=dims, ddof=1), oc.float32, rtol=1e-4, atol=1e-5, device=device)
    if dims is not None and len(dims) == 1:
        assert_close(x.argmin(dims[0]), a64.argmin(axis=dims[0]), oc.int64, device=device)
    if dims is not None and len(dims) == 1:
        t = torch.from_numpy(a64)
        assert_close(oc.softmax(x, dims[0]), torch.softmax(t, dims[0]).numpy(), oc.float32, atol=1e-7,
                     device=device)
        assert_close(oc.log_softmax(x, dims[0]), torch.log_softmax(t, dims[0]).numpy(), oc.float32, atol=1e-5,
                     device=device)
    xi = oc.tensor(rng.integers(-1000, 1000, size=shape), device=device).int()
    assert_close(xi.sum(dims), to_numpy(xi).astype(np.int64).sum(axis=dims), oc.int64, device=device)


def test_reduction_dim_errors(device):
    x = oc.zeros(2, 3, device=device)
    with pytest.raises(IndexError, match="out of range"):
        x.sum(2)
    with pytest.raises(IndexError, match="out of range"):
        x.max(-3)
    with pytest.raises(ValueError, match="more than once"):
        x.sum((0, -2))
    with pytest.raises(TypeError, match="dim"):
        x.sum("a")
    with pytest.raises(ValueError, match="size 0"):
        oc.zeros(0, 3, device=device).amax(0)
    with pytest.raises(ValueError, match="size 0"):
        oc.zeros(0, device=device).argmax()


def test_empty_reductions(device):
    L = OrchardOn(device)
    x = L.zeros(0, 3)
    assert_close(x.sum(0), np.zeros(3), oc.float32, device=device)
    assert_close(x.sum(), np.zeros(()), oc.float32, device=device)
    assert_close(x.amax(1), np.zeros((0,)), oc.float32, device=device)
    assert np.isnan(x.mean().item())
    assert_close(L.zeros(0, 3, dtype=oc.int32).sum(0), np.zeros(3), oc.int64, device=device)
    assert_close(L.tensor(5.0).sum(), np.array(5.0), oc.float32, device=device)
    assert_close(L.tensor(5.0).sum(0), np.array(5.0), oc.float32, device=device)
    assert_close(L.tensor(5).max(0).indices, np.array(0), oc.int64, device=device)
