"""Factories (tensor, zeros, ones, full, empty, arange, rand, randn, *_like) and dtypes: inference
from Python data, the promotion table against PyTorch, dtype and device objects, moving tensors
between devices."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import (
    ALL_DTYPES, FLOAT_DTYPES, INT_DTYPES, TORCH_DTYPE, OrchardOn, assert_close, dtypes, from_numpy, is_float,
    promote, random_array, require, shapes, supports, to_numpy,
)


@given(shape=shapes(max_dims=4), dtype=dtypes, value=st.sampled_from([0, 1, -3, 2.5, -0.75, True]))
def test_zeros_ones_full_empty(device, shape, dtype, value):
    require(device, dtype)
    L = OrchardOn(device)
    z = L.zeros(*shape, dtype=dtype)
    assert z.shape == shape and z.dtype == dtype and z.is_contiguous() and z.device == device
    assert_close(z, np.zeros(shape), dtype, exact=True)
    assert_close(L.zeros(shape, dtype=dtype), np.zeros(shape), dtype, exact=True, device=device)
    assert_close(L.ones(list(shape), dtype=dtype), np.ones(shape), dtype, exact=True, device=device)
    expected = torch.full(shape, value, dtype=torch.float64).to(TORCH_DTYPE[dtype])
    f = L.full(shape, value, dtype=dtype)
    assert_close(f, expected.float().numpy() if dtype == oc.bfloat16 else expected.numpy(), dtype, exact=True,
                 device=device)
    e = L.empty(*shape, dtype=dtype)
    assert e.shape == shape and e.dtype == dtype and e.nbytes == int(np.prod(shape)) * dtype.itemsize
    assert e.device == device


def test_factory_defaults_and_shapes():
    assert oc.zeros(2, 3).dtype == oc.float32
    assert oc.zeros(()).shape == () and oc.zeros([]).shape == ()
    assert oc.ones(0).shape == (0,)
    # full infers its dtype from the fill value, as torch.full: int64 for an int, float32 for a float
    assert oc.full((2,), 7).dtype == oc.int64 and oc.full((2,), 7.0).dtype == oc.float32
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
def test_arange_matches_torch(device, args, kw):
    require(device, kw.get("dtype", oc.float32))
    out = oc.arange(*args, **kw, device=device)
    tkw = {"dtype": TORCH_DTYPE[kw["dtype"]]} if "dtype" in kw else {}
    ref = torch.arange(*args, **tkw)
    assert out.dtype == {v: k for k, v in TORCH_DTYPE.items()}[ref.dtype]
    # Float values may differ from PyTorch's by an ulp: Orchard computes start + i * step in float64.
    assert_close(out, ref.float().numpy() if ref.dtype == torch.bfloat16 else ref.numpy(), out.dtype, device=device)
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
def test_rand_randn(device, dtype):
    require(device, dtype)
    L = OrchardOn(device)
    oc.manual_seed(1234)
    a = L.rand(1000, 7, dtype=dtype)
    b = L.randn(4001, dtype=dtype)
    oc.manual_seed(1234)
    a2 = L.rand(1000, 7, dtype=dtype)
    b2 = L.randn(4001, dtype=dtype)
    assert a.dtype == dtype and a.shape == (1000, 7) and b.shape == (4001,)
    assert a.device == device and b.device == device
    np.testing.assert_array_equal(to_numpy(a), to_numpy(a2))  # reproducible from the seed
    np.testing.assert_array_equal(to_numpy(b), to_numpy(b2))
    u = to_numpy(a).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 1 / 12) < 0.01
    n = to_numpy(b).astype(np.float64)
    assert np.isfinite(n).all()
    assert abs(n.mean()) < 0.08 and abs(n.std() - 1) < 0.05
    assert not np.array_equal(to_numpy(L.rand(100, dtype=dtype)), to_numpy(L.rand(100, dtype=dtype)))
    assert L.rand(0, 3, dtype=dtype).shape == (0, 3)


def test_rand_rejects_integer_dtypes():
    for dt in [oc.bool] + INT_DTYPES:
        with pytest.raises(TypeError, match="floating point"):
            oc.rand(3, dtype=dt)
        with pytest.raises(TypeError, match="floating point"):
            oc.randn(3, dtype=dt)


@pytest.mark.parametrize("fn", ["zeros_like", "ones_like", "empty_like", "rand_like", "randn_like"])
def test_like_factories(device, fn):
    src = oc.zeros(3, 4, dtype=oc.float16, device=device).T
    out = getattr(oc, fn)(src)
    assert out.shape == (4, 3) and out.dtype == oc.float16 and out.is_contiguous() and not out.is_alias_of(src)
    assert out.device == device
    if supports(device, oc.float64):
        out64 = getattr(oc, fn)(src, dtype=oc.float64)
        assert out64.dtype == oc.float64 and out64.device == device
    else:
        with pytest.raises(oc.DTypeError, match="float64"):
            getattr(oc, fn)(src, dtype=oc.float64)
    assert getattr(oc, fn)(src, device="cpu").device == "cpu"
    f = oc.full_like(src, 2.5)
    assert_close(f, np.full((4, 3), 2.5), oc.float16, device=device)
    assert oc.full_like(src, 3, dtype=oc.int32).dtype == oc.int32
    if fn == "zeros_like":
        assert_close(out, np.zeros((4, 3)), oc.float16, device=device)
    if fn == "ones_like":
        assert_close(oc.ones_like(oc.zeros(2, dtype=oc.int32, device=device)), np.ones(2), oc.int32, device=device)


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
    assert oc.device("cuda") == oc.device("cuda:0") == "cuda"
    with pytest.raises(ValueError, match="unknown device 'cuda:1'; expected 'cpu', 'metal' or 'cuda'"):
        oc.device("cuda:1")
    with pytest.raises(ValueError, match="unknown device"):
        oc.zeros(2, device="gpu")
    oc.synchronize()
    oc.synchronize("cpu")
    oc.synchronize(oc.zeros(1).device)
    oc.empty_cache()


@pytest.mark.skipif(oc.metal.is_available(), reason="this build has a Metal device")
def test_metal_not_available():
    assert not oc.metal.is_available()
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.zeros(2, device="metal")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.zeros(2).to(device="metal")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.tensor([1.0], device="metal")
    with pytest.raises(RuntimeError, match="metal.*not available"):
        oc.arange(3, device="metal")


@pytest.mark.skipif(not oc.metal.is_available(), reason="this build has no Metal device")
def test_metal_device_object():
    d = oc.device("metal")
    assert d.type == "metal" and str(d) == "metal" and repr(d) == "device(type='metal')"
    assert d == "metal" and d != "cpu" and d != oc.device("cpu") and hash(d) == hash(oc.device("metal"))
    assert oc.zeros(1, device="metal").device == d and oc.zeros(1, device=d).device == "metal"
    assert isinstance(oc.metal.is_emulated(), bool)
    oc.synchronize("metal")
    oc.synchronize(d)
    oc.metal.synchronize()
    oc.empty_cache()


@pytest.mark.skipif(not oc.metal.is_available(), reason="this build has no Metal device")
def test_factories_refuse_float64_on_metal():
    """Every factory (and the float64 default of NumPy data) raises; tests/py/test_errors.py checks the message."""
    for make in [lambda: oc.zeros(2, dtype=oc.float64, device="metal"),
                 lambda: oc.empty(2, dtype=oc.float64, device="metal"),
                 lambda: oc.full((2,), 1.5, dtype=oc.float64, device="metal"),
                 lambda: oc.arange(3, dtype=oc.float64, device="metal"),
                 lambda: oc.randn(3, dtype=oc.float64, device="metal"),
                 lambda: oc.tensor(np.array([1.0, 2.0]), device="metal"),
                 lambda: oc.ones(2, dtype=oc.float64).to("metal"),
                 lambda: oc.zeros_like(oc.ones(2, device="metal"), dtype=oc.float64)]:
        with pytest.raises(oc.DTypeError, match="float64"):
            make()
    # float64 data reaches the device once converted to a dtype it has
    x = oc.tensor(np.array([1.0, 2.5]), dtype=oc.float32, device="metal")
    assert x.device == "metal" and x.dtype == oc.float32 and x.tolist() == [1.0, 2.5]


@pytest.mark.skipif(not oc.metal.is_available(), reason="this build has no Metal device")
@pytest.mark.parametrize("dtype", [d for d in ALL_DTYPES if d != oc.float64])
def test_to_metal_and_back_round_trips(dtype):
    rng = np.random.default_rng(0)
    arr = random_array(rng, (5, 7), dtype, special=is_float(dtype))
    x = from_numpy(arr, dtype)
    m = x.to("metal")
    assert m.device == "metal" and m.dtype == dtype and m.shape == (5, 7)
    assert m.to("metal").is_alias_of(m)
    back = m.to("cpu")
    assert back.device == "cpu" and back.dtype == dtype and not back.is_alias_of(x)
    assert_close(back, arr, dtype, exact=True)
    assert_close(m.cpu(), arr, dtype, exact=True, device="cpu")
    # views travel as their values
    assert_close(x.T.to("metal").to("cpu"), arr.T, dtype, exact=True, device="cpu")
    assert_close(x[1:4, ::3].to("metal").cpu(), arr[1:4, ::3], dtype, exact=True, device="cpu")
    assert_close(m.T[2:, 1].cpu(), arr.T[2:, 1], dtype, exact=True, device="cpu")
    # tensor() of host data straight onto the device
    t = oc.tensor(arr, dtype=dtype, device="metal")  # (bfloat16 values come as float32 arrays)
    assert t.device == "metal"
    assert_close(t.cpu(), arr, dtype, exact=True)


def test_to_keeps_or_converts(device):
    x = oc.arange(4, device=device)
    assert x.to(oc.int64) is x or x.to(oc.int64).is_alias_of(x)
    assert x.to(dtype=oc.float32).dtype == oc.float32 and x.to(dtype=oc.float32).device == device
    assert x.to(device).is_alias_of(x)
    y = x.to(device=device, dtype=oc.float16)
    assert y.dtype == oc.float16 and y.device == device
    assert x.cpu().device == "cpu" and x.cpu().is_alias_of(x) == (device == "cpu")
    assert x.cpu().tolist() == [0, 1, 2, 3]


@pytest.mark.skipif(oc.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_not_available():
    with pytest.raises(RuntimeError, match="device 'cuda' is not available.*NVIDIA GPU"):
        oc.zeros(2, device="cuda")
