"""Factories (tensor, zeros, ones, full, empty, arange, rand, randn, *_like) and dtypes: inference
from Python data, the promotion table against PyTorch, dtype and device objects."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import (
    ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES, TORCH_DTYPE, assert_close, dtypes, promote,
    shapes, to_numpy,
)


@given(shape=shapes(max_dims=4), dtype=dtypes, value=st.sampled_from([0, 1, -3, 2.5, -0.75, True]))
def test_zeros_ones_full_empty(shape, dtype, value):
    z = oc.zeros(*shape, dtype=dtype)
    assert z.shape == shape and z.dtype == dtype and z.is_contiguous() and z.device == "cpu"
    assert_close(z, np.zeros(shape), dtype, exact=True)
    assert_close(oc.zeros(shape, dtype=dtype), np.zeros(shape), dtype, exact=True)
    assert_close(oc.ones(list(shape), dtype=dtype), np.ones(shape), dtype, exact=True)
    expected = torch.full(shape, value, dtype=torch.float64).to(TORCH_DTYPE[dtype])
    f = oc.full(shape, value, dtype=dtype)
    assert_close(f, expected.float().numpy() if dtype == oc.bfloat16 else expected.numpy(), dtype, exact=True)
    e = oc.empty(*shape, dtype=dtype)
    assert e.shape == shape and e.dtype == dtype and e.nbytes == int(np.prod(shape)) * dtype.itemsize


def test_factory_defaults_and_shapes():
    assert oc.zeros(2, 3).dtype == oc.float32
    assert oc.zeros(()).shape == () and oc.zeros([]).shape == ()
    assert oc.ones(0).shape == (0,)
    assert oc.full((2,), 7).dtype == oc.float32
    assert oc.zeros(2, device="cpu").device == "cpu"
    assert oc.zeros(2, device=oc.device("cpu")).device == oc.device("cpu")
    with pytest.raises(ValueError, match="negative dimension -1"):
        oc.zeros(2, -1)
    with pytest.raises(TypeError, match="shape"):
        oc.zeros(2, "3")
    with pytest.raises(TypeError, match="shape"):
        oc.ones((2, 2.5))


@pytest.mark.parametrize("args,kw", [
    ((5,), {}), ((2, 9), {}), ((0, 1, 0.1), {}), ((1, 0, -0.25), {}), ((-3, 3, 2), {}), ((10, 0, -3), {}),
    ((0, 5), {"dtype": oc.float64}), ((0.5, 4), {}), ((0,), {}), ((3, 3), {}), ((-2.5, 2.5, 0.1), {}),
    ((0, 10, 3), {"dtype": oc.float16}), ((0, 5), {"dtype": oc.bfloat16}), ((1.0, 4.0), {"dtype": oc.int32}),
    ((0, 100000), {}), ((0, 1, 1 / 3), {"dtype": oc.float64}),
])
def test_arange_matches_torch(args, kw):
    out = oc.arange(*args, **kw)
    tkw = {"dtype": TORCH_DTYPE[kw["dtype"]]} if "dtype" in kw else {}
    ref = torch.arange(*args, **tkw)
    assert out.dtype == {v: k for k, v in TORCH_DTYPE.items()}[ref.dtype]
    # Float values may differ from PyTorch's by an ulp: Orchard computes start + i * step in float64.
    assert_close(out, ref.float().numpy() if ref.dtype == torch.bfloat16 else ref.numpy(), out.dtype)
    assert_close(out, np.arange(*args, dtype=np.float64), out.dtype)


def test_arange_dtype_from_numpy_and_tensor_bounds():
    assert oc.arange(np.int64(4)).dtype == oc.int64
    assert oc.arange(np.int32(1), 4).tolist() == [1, 2, 3]
    assert oc.arange(np.float32(2.0)).dtype == oc.float32
    assert oc.arange(oc.tensor(3)).tolist() == [0, 1, 2]


def test_arange_errors():
    with pytest.raises(ValueError, match="step must be nonzero"):
        oc.arange(0, 5, 0)
    with pytest.raises(ValueError, match="wrong way"):
        oc.arange(0, 5, -1)
    with pytest.raises(ValueError, match="wrong way"):
        oc.arange(5, 0)  # PyTorch raises too
    with pytest.raises(ValueError, match="finite"):
        oc.arange(0, float("inf"))
    with pytest.raises(ValueError, match="too many"):
        oc.arange(0, 1e300, 1e-300)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_rand_randn(dtype):
    oc.manual_seed(1234)
    a = oc.rand(1000, 7, dtype=dtype)
    b = oc.randn(4001, dtype=dtype)
    oc.manual_seed(1234)
    a2 = oc.rand(1000, 7, dtype=dtype)
    b2 = oc.randn(4001, dtype=dtype)
    assert a.dtype == dtype and a.shape == (1000, 7) and b.shape == (4001,)
    np.testing.assert_array_equal(to_numpy(a), to_numpy(a2))  # reproducible from the seed
    np.testing.assert_array_equal(to_numpy(b), to_numpy(b2))
    u = to_numpy(a).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 1 / 12) < 0.01
    n = to_numpy(b).astype(np.float64)
    assert np.isfinite(n).all()
    assert abs(n.mean()) < 0.08 and abs(n.std() - 1) < 0.05
    assert not np.array_equal(to_numpy(oc.rand(100, dtype=dtype)), to_numpy(oc.rand(100, dtype=dtype)))
    assert oc.rand(0, 3, dtype=dtype).shape == (0, 3)


def test_rand_rejects_integer_dtypes():
    for dt in [oc.bool] + INT_DTYPES:
        with pytest.raises(TypeError, match="floating point"):
            oc.rand(3, dtype=dt)
        with pytest.raises(TypeError, match="floating point"):
            oc.randn(3, dtype=dt)


@pytest.mark.parametrize("fn", ["zeros_like", "ones_like", "empty_like", "rand_like", "randn_like"])
def test_like_factories(fn):
    src = oc.zeros(3, 4, dtype=oc.float16).T
    out = getattr(oc, fn)(src)
    assert out.shape == (4, 3) and out.dtype == oc.float16 and out.is_contiguous() and not out.is_alias_of(src)
    out64 = getattr(oc, fn)(src, dtype=oc.float64)
    assert out64.dtype == oc.float64
    f = oc.full_like(src, 2.5)
    assert_close(f, np.full((4, 3), 2.5), oc.float16)
    assert oc.full_like(src, 3, dtype=oc.int32).dtype == oc.int32
    if fn == "zeros_like":
        assert_close(out, np.zeros((4, 3)), oc.float16)
    if fn == "ones_like":
        assert_close(oc.ones_like(oc.zeros(2, dtype=oc.int32)), np.ones(2), oc.int32)


# ---- tensor(): dtype inference ---------------------------------------------------------------

@pytest.mark.parametrize("data,dtype", [
    (1, oc.int64), (1.5, oc.float32), (True, oc.bool), ([1, 2], oc.int64), ([1.0, 2], oc.float32),
    ([True, False], oc.bool), ([[1, 2], [3, 4]], oc.int64), ([], oc.float32),
    (np.array([1, 2], dtype=np.int32), oc.int32), (np.array([1.0], dtype=np.float64), oc.float64),
    (np.array([1.0], dtype=np.float16), oc.float16), (np.float64(2.0), oc.float64), (np.int16(3), oc.int64),
    (np.array([1, 2], dtype=np.uint8), oc.int64), (np.array(True), oc.bool),
])
def test_tensor_infers_dtype_like_torch(data, dtype):
    t = oc.tensor(data)
    assert t.dtype == dtype
    ref = torch.tensor(data) if not isinstance(data, (np.ndarray, np.generic)) else torch.from_numpy(np.asarray(data))
    assert t.shape == tuple(ref.shape)
    assert_close(t, np.asarray(data), dtype)


def test_tensor_copies_and_converts():
    a = np.arange(6.0).reshape(2, 3)
    t = oc.tensor(a)
    a[0, 0] = 100.0
    assert t[0, 0].item() == 0.0  # tensor() copies; from_numpy shares
    assert oc.tensor(a.T).shape == (3, 2) and oc.tensor(a.T).is_contiguous()
    assert_close(oc.tensor(a.T), a.T, oc.float64)
    assert_close(oc.tensor(a[:, ::2]), a[:, ::2], oc.float64)
    x = oc.tensor([1, 2, 3])
    y = oc.tensor(x)
    assert not y.is_alias_of(x)
    assert oc.tensor(x, dtype=oc.float16).dtype == oc.float16
    assert oc.tensor([1.5, 2.5], dtype=oc.int32).tolist() == [1, 2]
    assert oc.tensor([[1, 2]], dtype=oc.bfloat16).dtype == oc.bfloat16
    assert oc.tensor(3.0).shape == () and oc.tensor(np.array(3.0)).shape == ()
    assert oc.tensor(np.float32(3.0)).shape == ()
    with pytest.raises(TypeError, match="unsupported dtype"):
        oc.tensor(["a", "b"])
    with pytest.raises(TypeError, match="unsupported dtype"):
        oc.tensor(np.array([1 + 2j]))
    with pytest.raises((ValueError, TypeError), match="equal length|inhomogeneous|sequence"):
        oc.tensor([[1, 2], [3]])


# ---- dtypes and devices ----------------------------------------------------------------------

@pytest.mark.parametrize("b", ALL_DTYPES)
@pytest.mark.parametrize("a", ALL_DTYPES)
def test_promote_types_table_matches_torch(a, b):
    assert oc.promote_types(a, b) == promote(a, b)


def test_dtype_properties():
    sizes = {oc.bool: 1, oc.int32: 4, oc.int64: 8, oc.float16: 2, oc.bfloat16: 2, oc.float32: 4, oc.float64: 8}
    for dt, size in sizes.items():
        assert dt.itemsize == size == TORCH_DTYPE[dt].itemsize
        assert dt.is_floating_point == TORCH_DTYPE[dt].is_floating_point
        assert repr(dt) == "orchard." + str(TORCH_DTYPE[dt]).split(".")[1]
        assert oc.zeros(1, dtype=dt).is_floating_point() == dt.is_floating_point
    assert oc.float is oc.float32 and oc.double is oc.float64 and oc.half is oc.float16 and oc.long is oc.int64


def test_device_objects_and_errors():
    d = oc.device("cpu")
    assert d.type == "cpu" and str(d) == "cpu" and repr(d) == "device(type='cpu')"
    assert d == "cpu" and d == oc.device("cpu") and d != "metal" and not (d == 3)
    assert hash(d) == hash(oc.device("cpu"))
    assert oc.zeros(1).device == d
    with pytest.raises(ValueError, match="unknown device 'cuda'; expected 'cpu' or 'metal'"):
        oc.device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        oc.zeros(2, device="gpu")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.zeros(2, device="metal")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.zeros(2).to(device="metal")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.tensor([1.0], device="metal")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.arange(3, device="metal")
    oc.synchronize()
    oc.synchronize("cpu")
    oc.synchronize(oc.zeros(1).device)
    oc.empty_cache()


def test_to_keeps_or_converts():
    x = oc.arange(4)
    assert x.to(oc.int64) is x or x.to(oc.int64).is_alias_of(x)
    assert x.to(dtype=oc.float32).dtype == oc.float32
    assert x.to("cpu").is_alias_of(x)
    assert x.to(device="cpu", dtype=oc.float16).dtype == oc.float16
    assert x.cpu().is_alias_of(x)
