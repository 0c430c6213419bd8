"""Zero-copy exchange with NumPy and PyTorch: t.numpy(), __array__, __dlpack__/__dlpack_device__,
oc.from_numpy and oc.from_dlpack, including owners kept alive, views, bfloat16, 0-d and size-0.

Exports run on every device (Metal memory is shared with the CPU: the export waits for the queued
work, then shares it; CUDA memory goes to DLPack as the GPU's); imports and two-way sharing are about
CPU memory, and CUDA memory shared with PyTorch where there is a GPU."""
import gc
import weakref

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import (
    ALL_DTYPES, NUMPY_DTYPE, TORCH_DTYPE, assert_close, dtypes, layouts, make_tensor, seeds, shapes,
    to_numpy,
)


def _addr(t):
    return t.data_ptr()


# ---- Orchard -> NumPy ------------------------------------------------------------------------

@given(shape=shapes(max_dims=4), dtype=st.sampled_from([d for d in ALL_DTYPES if d != oc.bfloat16]),
       layout=layouts, seed=seeds)
def test_numpy_is_a_view_with_the_same_values(device, shape, dtype, layout, seed):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    if device == "cuda":  # the GPU's memory has no host view, as in PyTorch
        with pytest.raises(TypeError, match=r"\.cpu\(\)"):
            x.numpy()
        return
    n = x.numpy()
    assert n.dtype == NUMPY_DTYPE[dtype] and n.shape == shape
    np.testing.assert_array_equal(n, arr)
    if x.numel():
        assert n.__array_interface__["data"][0] == x.data_ptr()
        assert tuple(s // n.itemsize for s in n.strides) == x.stride() or x.numel() <= 1 or 1 in shape


def test_numpy_shares_memory_both_ways_and_keeps_tensor_alive():
    t = oc.zeros(2, 3)
    n = t.numpy()
    n[0, 1] = 5.0
    assert t[0, 1].item() == 5.0
    t[1].fill_(2.0)
    assert n[1].tolist() == [2.0, 2.0, 2.0]
    del t
    gc.collect()
    n[1, 2] = 3.0  # the array owns a reference to the storage
    assert n.sum() == 5.0 + 2.0 * 2 + 3.0
    assert not n.flags.owndata


def test_array_protocol():
    t = oc.arange(6.0).reshape(2, 3)
    a = np.asarray(t)
    assert np.shares_memory(a, t.numpy())
    a[0, 0] = 10.0
    assert t[0, 0].item() == 10.0
    c = np.array(t)  # np.array copies, as for any array-like
    c[0, 0] = -1.0
    assert t[0, 0].item() == 10.0
    assert not np.shares_memory(c, t.numpy())
    d = np.asarray(t, dtype=np.float64)
    assert d.dtype == np.float64 and d[0, 0] == 10.0
    expected = np.arange(6.0).reshape(2, 3)
    expected[0, 0] = 10.0
    np.testing.assert_array_equal(np.add(t, 1), expected + 1)  # ufuncs read tensors through __array__
    assert np.asarray(t.T).shape == (3, 2)
    with pytest.raises(TypeError, match="bfloat16"):
        np.asarray(oc.zeros(2, dtype=oc.bfloat16))
    with pytest.raises(TypeError, match="bfloat16"):
        oc.zeros(2, dtype=oc.bfloat16).numpy()
    # NumPy scalars defer to the tensor's operators
    assert isinstance(np.float64(2.0) * t, oc.Tensor)
    assert isinstance(np.int64(1) + t, oc.Tensor)


# ---- NumPy -> Orchard ------------------------------------------------------------------------

@pytest.mark.parametrize("np_dtype", [np.bool_, np.int32, np.int64, np.float16, np.float32, np.float64])
def test_from_numpy_shares_memory_and_dtype(np_dtype):
    a = (np.arange(12) % 3).astype(np_dtype).reshape(3, 4)
    t = oc.from_numpy(a)
    assert t.shape == (3, 4) and NUMPY_DTYPE[t.dtype] == np.dtype(np_dtype)
    assert t.data_ptr() == a.__array_interface__["data"][0]
    a[1, 1] = 1
    assert t[1, 1].item() == 1
    t[2, 3] = 0
    assert a[2, 3] == 0
    np.testing.assert_array_equal(t.numpy(), a)
    assert np.shares_memory(t.numpy(), a)


def test_from_numpy_views_zero_d_and_empty():
    base = np.arange(24.0).reshape(4, 6)
    for view in [base.T, base[:, ::2], base[1:3, 2:], base[None, :, 1], np.broadcast_to(base[0], (3, 6)),
                 np.array(3.5), np.zeros((0, 3)), np.zeros((3, 0))[:, ::2]]:
        t = oc.from_numpy(view)
        assert t.shape == view.shape
        np.testing.assert_array_equal(to_numpy(t), view)
        if view.size:
            assert t.data_ptr() == view.__array_interface__["data"][0]
            assert t.stride() == tuple(s // view.itemsize for s in view.strides)
    e = oc.from_numpy(np.broadcast_to(base[0], (3, 6)))
    with pytest.raises(ValueError, match="expanded"):
        e.add_(1)


def test_from_numpy_keeps_its_owner_alive():
    a = np.arange(1000.0)
    ref = weakref.ref(a)
    t = oc.from_numpy(a)
    del a
    gc.collect()
    assert ref() is not None
    assert t.sum().item() == sum(range(1000))
    v = t[10:20]
    del t
    gc.collect()
    assert ref() is not None  # a view still holds the storage
    assert v.tolist() == list(map(float, range(10, 20)))
    del v
    gc.collect()
    assert ref() is None


def test_from_numpy_errors():
    with pytest.raises(TypeError, match="expected a numpy.ndarray, got list"):
        oc.from_numpy([1, 2])
    with pytest.raises(ValueError, match="negative strides"):
        oc.from_numpy(np.arange(3.0)[::-1])
    for bad in [np.zeros(3, np.uint8), np.zeros(3, np.complex64), np.zeros(3, ">f4"), np.array(["a"]),
                np.zeros(2, dtype=[("a", "f4")])]:
        with pytest.raises(TypeError, match="unsupported"):
            oc.from_numpy(bad)
    odd = np.lib.stride_tricks.as_strided(np.zeros(8, np.float32), shape=(3,), strides=(6,))
    with pytest.raises(ValueError, match="strides"):
        oc.from_numpy(odd)


# ---- DLPack with PyTorch ---------------------------------------------------------------------

@given(shape=shapes(max_dims=3), dtype=dtypes, layout=layouts, seed=seeds)
def test_dlpack_to_torch_is_zero_copy(device, shape, dtype, layout, seed):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    assert x.__dlpack_device__() == ((2, 0) if device == "cuda" else (1, 0))  # kDLCUDA, else kDLCPU
    t = torch.from_dlpack(x)
    assert t.dtype == TORCH_DTYPE[dtype] and tuple(t.shape) == shape
    assert t.device.type == ("cuda" if device == "cuda" else "cpu")
    ref = torch.from_numpy(np.array(arr, order="C")).to(TORCH_DTYPE[dtype])
    assert torch.equal(t.cpu(), ref)
    if x.numel():
        assert t.data_ptr() == x.data_ptr()
        if x.numel() > 1 and 1 not in shape:
            assert tuple(t.stride()) == x.stride()


@given(shape=shapes(max_dims=3), dtype=dtypes, seed=seeds, transpose=st.booleans())
def test_dlpack_from_torch_is_zero_copy(shape, dtype, seed, transpose):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(shape, generator=g) * 10 - 5).to(TORCH_DTYPE[dtype])
    if transpose and len(shape) >= 2:
        t = t.transpose(0, -1)
    x = oc.from_dlpack(t)
    assert x.dtype == dtype and x.shape == tuple(t.shape)
    if t.numel():
        assert x.data_ptr() == t.data_ptr()
    expected = t.float().numpy() if dtype == oc.bfloat16 else t.numpy()
    assert_close(x, expected, dtype, exact=True)


def test_dlpack_shares_writes_and_owners():
    t = torch.zeros(4)
    x = oc.from_dlpack(t)
    x[1] = 3.0
    assert t[1].item() == 3.0
    t[2] = 5.0
    assert x[2].item() == 5.0
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is not None and x.tolist() == [0.0, 3.0, 5.0, 0.0]
    del x
    gc.collect()
    assert ref() is None
    # Orchard -> torch -> Orchard round trip stays on the same memory
    y = oc.arange(6.0)
    z = oc.from_dlpack(torch.from_dlpack(y))
    assert z.data_ptr() == y.data_ptr()
    z[0] = 42.0
    assert y[0].item() == 42.0
    # The tensor stays alive while torch uses it.
    w = torch.from_dlpack(oc.full((3,), 7.0))
    gc.collect()
    assert w.tolist() == [7.0, 7.0, 7.0]


@pytest.mark.skipif(not (oc.cuda.is_available() and torch.cuda.is_available()),
                    reason="needs an NVIDIA GPU (tools/run_cuda_tests.sh runs this on one)")
def test_dlpack_shares_cuda_memory_with_torch_both_ways():
    t = torch.arange(12.0, device="cuda").reshape(3, 4)
    x = oc.from_dlpack(t)
    assert x.device == "cuda" and x.shape == (3, 4) and x.data_ptr() == t.data_ptr()
    t[0, 0] = 100.0  # both run on the legacy default stream, so each sees the other's writes in order
    y = x * 2
    back = torch.from_dlpack(y)
    assert back.device.type == "cuda" and back.data_ptr() == y.data_ptr()
    assert torch.equal(back, t * 2)
    x[1] = -1.0
    assert t[1].tolist() == [-1.0] * 4
    ref = weakref.ref(t)
    del t
    gc.collect()
    assert ref() is not None  # x keeps torch's memory alive
    del x
    gc.collect()
    assert ref() is None


def test_dlpack_with_numpy_and_errors():
    a = np.arange(5)
    x = oc.from_dlpack(a)
    assert x.data_ptr() == a.__array_interface__["data"][0]
    y = np.from_dlpack(oc.arange(3.0))
    np.testing.assert_array_equal(y, [0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="DLPack"):
        oc.from_dlpack([1, 2, 3])
    with pytest.raises(TypeError, match="unsupported"):
        oc.from_dlpack(torch.zeros(2, dtype=torch.uint8))
    with pytest.raises(TypeError, match="unsupported"):
        oc.from_dlpack(torch.zeros(2, dtype=torch.complex64))
