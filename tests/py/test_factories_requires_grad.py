"""PyTorch's factory keywords (size as varargs, a sequence or size=; requires_grad=; full's inferred dtype) and
the Tensor conveniences scripts use (to(other), new_*, data, format, chunk, all/any, mean(dtype=)...), against
PyTorch."""
import numpy as np
import pytest
import torch

import orchard as oc
from conftest import FROM_TORCH, TORCH_DTYPE, assert_close, to_numpy

SHAPED = ["empty", "zeros", "ones", "rand", "randn"]


def _error_type(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the type is what the tests compare
        return type(e)
    raise AssertionError("PyTorch raised nothing")


@pytest.mark.parametrize("name", SHAPED)
@pytest.mark.parametrize("size", [(2, 3), ((2, 3),), ([2, 3],), ((),), (0,)])
def test_shaped_factories_take_the_size_as_pytorch(device, name, size):
    t, ref = getattr(oc, name)(*size, device=device), getattr(torch, name)(*size)
    assert t.shape == tuple(ref.shape) and t.dtype == FROM_TORCH[ref.dtype] and t.device == device
    assert getattr(oc, name)(size=ref.shape, device=device).shape == t.shape


@pytest.mark.parametrize("name", SHAPED)
@pytest.mark.parametrize("requires_grad", [False, True])
def test_requires_grad_makes_a_leaf_that_records(device, name, requires_grad):
    t = getattr(oc, name)(2, 3, dtype=oc.float32, device=device, requires_grad=requires_grad)
    assert t.requires_grad is requires_grad and t.grad_fn is None
    if requires_grad:
        (t * 2).sum().backward()
        assert_close(t.grad, np.full((2, 3), 2.0))


@pytest.mark.parametrize("make", [
    lambda L, **kw: L.full((2,), 1.5, **kw), lambda L, **kw: L.arange(3.0, **kw), lambda L, **kw: L.tensor([1.0], **kw),
    lambda L, **kw: L.zeros_like(L.ones(2), **kw), lambda L, **kw: L.ones_like(L.ones(2), **kw),
    lambda L, **kw: L.empty_like(L.ones(2), **kw), lambda L, **kw: L.rand_like(L.ones(2), **kw),
    lambda L, **kw: L.randn_like(L.ones(2), **kw), lambda L, **kw: L.full_like(L.ones(2), 7, **kw),
], ids=["full", "arange", "tensor", "zeros_like", "ones_like", "empty_like", "rand_like", "randn_like", "full_like"])
def test_other_factories_take_requires_grad(make):
    t, ref = make(oc, requires_grad=True), make(torch, requires_grad=True)
    assert t.requires_grad and ref.requires_grad and t.shape == tuple(ref.shape)
    assert t.dtype == FROM_TORCH[ref.dtype]


def test_requires_grad_on_an_integer_factory_raises():
    with pytest.raises(TypeError, match="floating point"):
        oc.zeros(2, dtype=oc.int64, requires_grad=True)


@pytest.mark.parametrize("value", [7, 7.5, True, -(2**40)])
def test_full_infers_its_dtype_from_the_value_as_pytorch(device, value):
    t, ref = oc.full((2, 2), value, device=device), torch.full((2, 2), value)
    assert t.dtype == FROM_TORCH[ref.dtype]
    assert_close(t, ref.numpy())
    assert oc.full(3, value).shape == (3,)
    assert oc.full((2,), value, dtype=oc.float16).dtype == oc.float16


def test_random_factories_refuse_a_generator_and_unknown_keywords():
    with pytest.raises(ValueError, match="manual_seed"):
        oc.rand(2, generator=object())
    assert oc.rand(2, generator=None).shape == (2,)
    with pytest.raises(TypeError, match="generator"):
        oc.zeros(2, generator=None)
    with pytest.raises(TypeError, match="both"):
        oc.zeros(2, size=(2,))


def test_default_dtype():
    assert oc.get_default_dtype() == oc.float32
    oc.set_default_dtype(oc.float32)
    with pytest.raises(_error_type(lambda: torch.set_default_dtype(torch.int64)), match="floating-point"):
        oc.set_default_dtype(oc.int64)
    with pytest.raises(ValueError, match="only orchard.float32"):
        oc.set_default_dtype(oc.float64)


# ---- Tensor conveniences ---------------------------------------------------------------------------------------

def test_to_takes_pytorchs_three_forms(device):
    x = oc.ones(2, 3, device=device)
    other = oc.zeros(1, dtype=oc.float16, device=device)
    assert x.to(other).dtype == oc.float16 and x.to(other).device == device
    assert x.to("cpu", non_blocking=True).device == "cpu"
    assert x.to("cpu", oc.float16).dtype == oc.float16
    assert x.to(device=device, dtype=oc.float16, copy=False).dtype == oc.float16
    assert x.to(oc.float32).is_alias_of(x) and not x.to(oc.float32, copy=True).is_alias_of(x)
    assert x.type_as(other).dtype == oc.float16
    with pytest.raises(TypeError, match="unexpected keyword"):
        x.to(oc.float32, bogus=1)
    with pytest.raises(TypeError, match="expected a device, a dtype or a tensor"):
        x.to(3)
    with pytest.raises(TypeError, match="before the dtype"):
        x.to(oc.float32, "cpu")


@pytest.mark.parametrize("name,args", [("new_zeros", ((2, 3),)), ("new_zeros", (2, 3)), ("new_ones", ((4,),)),
                                       ("new_empty", ((2,),)), ("new_full", ((2, 2), 3)), ("new_tensor", ([1, 2],))])
def test_new_factories_take_the_tensors_dtype_and_device(device, name, args):
    x, ref = oc.ones(1, dtype=oc.float16, device=device), torch.ones(1, dtype=torch.float16)
    t, r = getattr(x, name)(*args), getattr(ref, name)(*args)
    assert t.shape == tuple(r.shape) and t.dtype == FROM_TORCH[r.dtype] and t.device == device
    if name != "new_empty":
        assert_close(t, r.float().numpy())
    assert getattr(x, name)(*args, dtype=oc.float32).dtype == oc.float32
    if name != "new_tensor":
        assert getattr(x, name)(*args, requires_grad=True).requires_grad


def test_data_is_a_detached_alias_and_settable(device):
    w = oc.ones(2, 2, device=device, requires_grad=True)
    d = w.data
    assert not d.requires_grad and d.is_alias_of(w)
    w.data = oc.full((2, 2), 3.0, device=device)
    assert w.requires_grad and w.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    with pytest.raises(RuntimeError, match="shape, dtype and device"):
        w.data = oc.zeros(3)


def test_small_tensor_properties(device):
    x = oc.ones(2, 3, device=device)
    assert x.nelement() == 6 == oc.numel(x) and oc.is_tensor(x) and not oc.is_tensor(torch.ones(1))
    assert oc.is_floating_point(x) and not oc.is_floating_point(x.long())
    assert x.pin_memory() is x and x.is_cuda is (device == "cuda")
    assert x.is_cpu is (device == "cpu") and x.is_mps is (device == "metal")


@pytest.mark.parametrize("spec", [".4f", "", ">10.2e", "d"])
@pytest.mark.parametrize("make", [lambda L: L.tensor(1.5), lambda L: L.tensor(3), lambda L: L.tensor([1.5]),
                                  lambda L: L.tensor([[1, 2]])], ids=["0d-float", "0d-int", "1-element", "2d"])
def test_format_as_pytorch(make, spec):
    try:
        expected = format(make(torch), spec)
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)):
            format(make(oc), spec)
        return
    got = format(make(oc), spec)
    assert got == expected or (spec == "" and got == str(make(oc)))


@pytest.mark.parametrize("size,chunks,dim", [(6, 3, 0), (5, 3, 0), (6, 4, 0), (0, 3, 0), (7, 1, 0), (3, 5, 0),
                                             (4, 2, 1), (4, 3, -1)])
def test_chunk_as_pytorch(device, size, chunks, dim):
    shape = (size, 2) if dim == 0 else (2, size)
    ref = torch.arange(int(np.prod(shape)), dtype=torch.float32).reshape(shape)
    x = oc.tensor(ref.numpy(), device=device, requires_grad=True)
    got, want = oc.chunk(x, chunks, dim), torch.chunk(ref, chunks, dim)
    assert isinstance(got, tuple) and len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w.numpy())
    assert [p.shape for p in x.chunk(chunks, dim=dim)] == [p.shape for p in got]
    if size:
        sum(((i + 1) * p).sum() for i, p in enumerate(got)).backward()
        expected = torch.cat([torch.full(w.shape, float(i + 1)) for i, w in enumerate(want)], dim)
        assert_close(x.grad, expected.numpy())


def test_chunk_errors_as_pytorch():
    for bad in (lambda L: L.chunk(L.ones(3), 0), lambda L: L.ones(3).chunk(2, dim=2)):
        with pytest.raises(_error_type(lambda: bad(torch))):
            bad(oc)


@pytest.mark.parametrize("name", ["all", "any"])
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dtype", [oc.bool, oc.int64, oc.float32])
def test_all_any_as_pytorch(device, name, dim, keepdim, dtype):
    arr = np.array([[0.0, 1.0, np.nan], [2.0, 3.0, -1.0], [0.0, 0.0, 0.0]])
    if dtype != oc.float32:
        arr = np.nan_to_num(arr)
    ref = torch.from_numpy(arr).to(TORCH_DTYPE[dtype])
    x = oc.tensor(arr).to(dtype).to(device)
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    want = getattr(torch, name)(ref, **kw)
    for got in (getattr(oc, name)(x, **kw), getattr(x, name)(**kw)):
        assert_close(got, want.numpy(), dtype=oc.bool)


@pytest.mark.parametrize("name", ["all", "any"])
def test_all_any_of_empty_tensors(name):
    assert getattr(oc, name)(oc.ones(0)).item() is getattr(torch, name)(torch.ones(0)).item()


@pytest.mark.parametrize("name", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [oc.int64, oc.float16, oc.float32])
def test_mean_and_sum_take_a_dtype(device, name, dtype):
    arr = np.arange(6).reshape(2, 3)
    ref = torch.from_numpy(arr).to(TORCH_DTYPE[dtype])
    x = oc.tensor(arr).to(dtype).to(device)
    target = oc.float32
    want = getattr(torch, name)(ref, 1, dtype=TORCH_DTYPE[target])
    got = getattr(x, name)(1, dtype=target)
    assert_close(got, want.numpy(), dtype=target)
    assert_close(getattr(oc, name)(x, dim=1, keepdim=True, dtype=target), want.numpy()[:, None], dtype=target)
    assert to_numpy(getattr(oc, name)(x.float())).shape == ()
