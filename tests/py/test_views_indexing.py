"""Views (reshape, view, transpose, permute, expand, squeeze, ...), aliasing and contiguity, and
t[key] / t[key] = value against NumPy's indexing (PyTorch's where they differ)."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import orchard as oc
from conftest import (
    ALL_DTYPES, OrchardOn, assert_close, dtypes, from_numpy, layouts, make_tensor, seeds, shapes, supports,
)


def _strides_in_elements(arr):
    return tuple(s // arr.itemsize for s in arr.strides)


# ---- views -----------------------------------------------------------------------------------

@given(shape=shapes(max_dims=4), dtype=dtypes, layout=layouts, seed=seeds, data=st.data())
def test_reshape_matches_numpy(device, shape, dtype, layout, seed, data):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    n = arr.size
    # A random factorisation of n, possibly with a -1.
    target = []
    rest = n
    for _ in range(data.draw(st.integers(0, 3))):
        divisors = [d for d in range(1, min(rest, 12) + 1) if rest % d == 0] if rest else [0, 1, 3]
        d = data.draw(st.sampled_from(divisors))
        target.append(d)
        rest = rest // d if d else 0
    if rest != 1 or not target or n == 0:
        target.append(rest if n else 0)
    if n and data.draw(st.booleans()):
        target[data.draw(st.integers(0, len(target) - 1))] = -1
    expected = arr.reshape(target)
    out = x.reshape(*target)
    assert_close(out, expected, dtype, exact=True, device=device)
    assert_close(x.reshape(tuple(target)), expected, dtype, exact=True, device=device)
    if x.is_contiguous():
        assert out.is_alias_of(x)  # reshape of a contiguous tensor never copies
        assert_close(x.view(*target), expected, dtype, exact=True, device=device)


def test_view_needs_compatible_strides_and_reshape_copies(device):
    t = oc.arange(24, device=device).reshape(4, 6)
    tt = t.T
    with pytest.raises(ValueError, match="view"):
        tt.view(24)
    r = tt.reshape(24)
    assert not r.is_alias_of(t) and r.is_contiguous()
    assert_close(r, np.arange(24).reshape(4, 6).T.reshape(24), oc.int64, device=device)
    # Splitting and merging dims that stay contiguous is a view even when transposed.
    v = t[:, :4].reshape(4, 2, 2)
    assert v.is_alias_of(t)
    assert_close(v, np.arange(24).reshape(4, 6)[:, :4].reshape(4, 2, 2), oc.int64, device=device)
    with pytest.raises(ValueError, match=r"cannot reshape tensor of shape \[4, 6\]"):
        t.reshape(5, 5)
    with pytest.raises(ValueError, match="only one dimension can be -1"):
        t.reshape(-1, -1)
    with pytest.raises(ValueError, match="cannot reshape"):
        oc.zeros(0, 3, device=device).reshape(-1, 0)
    assert oc.zeros(0, 3, device=device).reshape(3, 0, 5).shape == (3, 0, 5)


@given(shape=shapes(min_dims=1, max_dims=4), dtype=dtypes, layout=layouts, seed=seeds, data=st.data())
def test_transpose_permute_flatten(device, shape, dtype, layout, seed, data):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    nd = len(shape)
    d0, d1 = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    assert_close(x.transpose(d0, d1), np.swapaxes(arr, d0, d1), dtype, exact=True)
    perm = data.draw(st.permutations(range(nd)))
    out = x.permute(*perm)
    assert out.is_alias_of(x)
    assert_close(out, np.transpose(arr, perm), dtype, exact=True)
    assert_close(x.permute(perm), np.transpose(arr, perm), dtype, exact=True)
    assert_close(x.T, arr.T, dtype, exact=True)
    if nd >= 2:
        assert_close(x.mT, np.swapaxes(arr, -1, -2), dtype, exact=True)
    s = data.draw(st.integers(0, nd - 1))
    e = data.draw(st.integers(s, nd - 1))
    flat_shape = shape[:s] + (int(np.prod(shape[s:e + 1], dtype=np.int64)),) + shape[e + 1:]
    assert_close(x.flatten(s, e), arr.reshape(flat_shape), dtype, exact=True, device=device)
    assert_close(x.flatten(), arr.reshape(-1), dtype, exact=True, device=device)


@given(shape=shapes(max_dims=3), dtype=dtypes, seed=seeds, data=st.data())
def test_expand_squeeze_unsqueeze(device, shape, dtype, seed, data):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, device=device)
    target = list(data.draw(st.lists(st.sampled_from([0, 1, 2, 3]), max_size=2))) + [
        data.draw(st.sampled_from([n, -1] if n != 1 else [0, 1, 4, -1])) for n in shape]
    np_target = [shape[i - (len(target) - len(shape))] if t == -1 else t for i, t in enumerate(target)]
    e = x.expand(*target)
    assert e.is_alias_of(x)
    assert_close(e, np.broadcast_to(arr, np_target), dtype, exact=True)
    assert_close(x.broadcast_to(tuple(target)), np.broadcast_to(arr, np_target), dtype, exact=True)
    assert_close(x.expand_as(e.contiguous()), np.broadcast_to(arr, np_target), dtype, exact=True, device=device)
    # squeeze / unsqueeze
    assert_close(x.squeeze(), np.squeeze(arr), dtype, exact=True)
    nd = len(shape)
    if nd:
        d = data.draw(st.integers(-nd, nd - 1))
        expected = np.squeeze(arr, d) if shape[d] == 1 else arr  # PyTorch: a no-op when the size is not 1
        assert_close(x.squeeze(d), expected, dtype, exact=True)
        ones = tuple(i for i in range(nd) if shape[i] == 1)
        assert_close(x.squeeze(tuple(range(nd))), np.squeeze(arr, ones) if ones else arr, dtype, exact=True)
    u = data.draw(st.integers(-nd - 1, nd))
    assert_close(x.unsqueeze(u), np.expand_dims(arr, u), dtype, exact=True)
    assert x.unsqueeze(u).is_alias_of(x)


def test_expand_errors():
    with pytest.raises(ValueError, match=r"cannot be expanded to \[2, 4\]"):
        oc.zeros(2, 3).expand(2, 4)
    with pytest.raises(ValueError, match="fewer dimensions"):
        oc.zeros(2, 3).expand(3)
    with pytest.raises(ValueError, match="invalid size"):
        oc.zeros(3).expand(-1, 3)


@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, layout=layouts, seed=seeds, data=st.data())
def test_narrow_select_and_contiguity(device, shape, dtype, layout, seed, data):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    n = shape[d]
    start = data.draw(st.integers(0, n))
    length = data.draw(st.integers(0, n - start))
    out = x.narrow(d, start, length)
    assert out.is_alias_of(x)
    assert_close(out, np.take(arr, range(start, start + length), axis=d), dtype, exact=True)
    if n:
        i = data.draw(st.integers(-n, n - 1))
        assert_close(x.select(d, i), np.take(arr, i, axis=d), dtype, exact=True)
        with pytest.raises(IndexError, match=f"out of bounds for dimension {d % nd} with size {n}"):
            x.select(d, n)
    c = x.contiguous()
    assert c.is_contiguous()
    assert (c.is_alias_of(x)) == x.is_contiguous()
    assert_close(c, arr, dtype, exact=True, device=device)
    # is_contiguous and strides agree with NumPy for the same view
    if x.is_contiguous() and x.numel() > 1:
        assert x.stride() == _strides_in_elements(np.ascontiguousarray(arr)) or 1 in shape


def test_views_alias_and_clone_detach_copy(device):
    t = oc.arange(12.0, device=device).reshape(3, 4)
    views = [t.T, t[1], t[:, 1:3], t.reshape(12), t.view(4, 3), t.unsqueeze(0), t.narrow(1, 1, 2),
             t.detach(), t.flatten(), t.permute(1, 0), t.expand(2, 3, 4), t.select(1, 0)]
    for v in views:
        assert v.is_alias_of(t)
    c = t.clone()
    assert not c.is_alias_of(t) and c.device == device
    t.T[0].fill_(-1.0)  # writes through a view reach the base
    assert_close(t[:, 0], np.full(3, -1.0), oc.float32, device=device)
    assert_close(c[:, 0], np.array([0.0, 4.0, 8.0]), oc.float32, device=device)
    d = t.detach()
    d.add_(1)
    assert_close(t[0, 1], np.array(2.0), oc.float32, device=device)
    assert t.storage_offset() == 0 and t[1, 2:].storage_offset() == 6
    assert t.stride() == (4, 1) and t.T.stride() == (1, 4) and t.stride(-1) == 1
    assert t.size() == (3, 4) and t.size(0) == 3 and t.size(-1) == 4
    assert t.dim() == 2 and t.ndim == 2 and t.numel() == 12 and len(t) == 3
    assert t.nbytes == 48 and t.itemsize == 4 and t.element_size() == 4
    assert oc.zeros(3, 0, device=device).is_contiguous() and oc.zeros(0, 3, device=device).T.is_contiguous()


# ---- indexing --------------------------------------------------------------------------------

def _has_negative_step(key):
    key = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key)


@given(shape=shapes(min_dims=0, max_dims=4), dtype=dtypes, layout=layouts, seed=seeds, data=st.data())
def test_basic_indexing_matches_numpy(device, shape, dtype, layout, seed, data):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    key = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    if _has_negative_step(key):
        with pytest.raises(ValueError, match="step"):
            x[key]
        return
    out = x[key]
    expected = arr[key]
    assert isinstance(out, oc.Tensor)
    assert out.is_alias_of(x)  # basic indexing is a view
    assert_close(out, np.asarray(expected), dtype, exact=True, msg=f"key={key!r}", device=device)


@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, seed=seeds, data=st.data())
def test_basic_setitem_matches_numpy(device, shape, dtype, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, device=device)
    arr = arr.copy()
    key = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    assume(not _has_negative_step(key))
    target_shape = arr[key].shape
    kind = data.draw(st.sampled_from(["scalar", "tensor", "broadcast"]))
    if kind == "scalar":
        value = data.draw(st.sampled_from([0, 1, True, -2.0] if dtype != oc.bool else [True, False]))
        x[key] = value
        arr[key] = value if dtype != oc.bool else bool(value)
    else:
        vshape = target_shape if kind == "tensor" else target_shape[-1:]
        v, varr = make_tensor(rng, vshape, dtype, "strided" if vshape and kind == "tensor" else "contiguous", device)
        x[key] = v
        arr[key] = varr
    assert_close(x, arr, dtype, exact=True, msg=f"key={key!r}", device=device)


def test_integer_and_list_indexing(device):
    L = OrchardOn(device)
    a = np.arange(60).reshape(3, 4, 5)
    t = L.tensor(a)
    assert_close(t[[2, 0, -1]], a[[2, 0, -1]], oc.int64, device=device)
    assert_close(t[:, [1, 3]], a[:, [1, 3]], oc.int64, device=device)
    assert_close(t[..., L.tensor([4, 0])], a[..., [4, 0]], oc.int64, device=device)
    assert_close(t[1, L.tensor([[0, 1], [2, 3]])], a[1, [[0, 1], [2, 3]]], oc.int64, device=device)
    assert_close(t[L.tensor(2)], a[2], oc.int64, device=device)
    assert_close(t[[]], a[[]], oc.int64, device=device)
    assert_close(t[:, L.tensor([1, 2], dtype=oc.int32), 1:4], a[:, [1, 2], 1:4], oc.int64, device=device)
    assert_close(t[np.int64(1), np.int32(-1)], a[1, -1], oc.int64, device=device)
    assert_close(t[None, 1, None, ..., 2], a[None, 1, None, ..., 2], oc.int64, device=device)
    assert_close(t[None], a[None], oc.int64, device=device)
    assert_close(t[...], a[...], oc.int64, device=device)
    assert_close(t[()], a[()], oc.int64, device=device)
    s = L.zeros(2)
    s[None] = 3.0
    assert_close(s, np.full(2, 3.0), oc.float32, device=device)
    with pytest.raises(IndexError, match="out of bounds"):
        t[[0, 3]]
    with pytest.raises(IndexError, match="out of bounds"):
        t[:, [-5]]


def test_multiple_index_tensors_are_rejected_not_misread(device):
    """NumPy/PyTorch broadcast several index arrays together (t[[0, 1], [0, 1]] is a diagonal);
    Orchard supports one per indexing expression and must say so rather than return other data."""
    L = OrchardOn(device)
    t = L.arange(9).reshape(3, 3)
    with pytest.raises(IndexError, match="one"):
        t[[0, 1], [0, 1]]
    with pytest.raises(IndexError, match="one"):
        t[L.tensor([True, False, True]), [0, 1]]


def test_bool_scalar_keys_add_a_dimension(device):
    L = OrchardOn(device)
    a = np.arange(6).reshape(2, 3)
    t = L.tensor(a)
    assert_close(t[True], a[True], oc.int64, device=device)
    assert_close(t[False], a[False], oc.int64, device=device)
    assert_close(t[1, True], a[1, True], oc.int64, device=device)
    assert_close(t[..., False, 0], a[..., False, 0], oc.int64, device=device)
    assert_close(L.tensor(5)[True], np.array(5)[True], oc.int64, device=device)


@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, seed=seeds, data=st.data())
def test_bool_mask_indexing(device, shape, dtype, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, data.draw(layouts), device)
    k = data.draw(st.integers(1, len(shape)))  # the mask covers the leading k dims
    lead = data.draw(st.integers(0, len(shape) - k))
    mask = rng.random(shape[lead:lead + k]) < 0.5
    key = (slice(None),) * lead + (from_numpy(mask, oc.bool, device),)
    np_key = (slice(None),) * lead + (mask,)
    assert_close(x[key], arr[np_key], dtype, exact=True, device=device)
    # t[mask] = scalar with a full-shape mask
    full = rng.random(shape) < 0.5
    x2, arr2 = from_numpy(arr, dtype, device), arr.copy()
    x2[from_numpy(full, oc.bool, device)] = 1
    arr2[full] = 1
    assert_close(x2, arr2, dtype, exact=True, device=device)
    # comparison results are masks
    if dtype not in (oc.bool,):
        sel = x[x > 0]
        assert_close(sel, arr[arr > 0], dtype, exact=True, device=device)


def test_mask_shape_mismatch_and_unsupported_assignments(device):
    L = OrchardOn(device)
    t = L.zeros(3, 4)
    with pytest.raises(IndexError, match="does not match"):
        t[L.tensor([True, False])]
    with pytest.raises(IndexError, match="not supported"):
        t[[0, 1]] = 1.0
    with pytest.raises(IndexError, match="too many indices"):
        t[0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        t[..., ...]
    with pytest.raises(IndexError, match="out of bounds"):
        t[3]
    with pytest.raises(IndexError, match="out of bounds"):
        t[0, -5]
    with pytest.raises(TypeError, match="invalid index of type float"):
        t[1.5]
    with pytest.raises(TypeError, match="invalid index"):
        t["a"]
    with pytest.raises(IndexError, match="too many indices for tensor of dimension 0"):
        L.tensor(1.0)[0]
    with pytest.raises(TypeError, match="int32 or int64"):
        t[L.tensor([0.0, 1.0])]
    with pytest.raises(ValueError, match="broadcast"):
        t[0] = L.ones(3)


def test_python_protocols(device):
    L = OrchardOn(device)
    t = L.tensor([[1.5, 2.0], [3.0, 4.0]])
    assert [r.tolist() for r in t] == [[1.5, 2.0], [3.0, 4.0]]
    assert t.tolist() == [[1.5, 2.0], [3.0, 4.0]]
    assert t[0, 0].item() == 1.5 and isinstance(t[0, 0].item(), float)
    assert L.tensor(3).item() == 3 and isinstance(L.tensor(3).item(), int)
    assert L.tensor(True).item() is True
    assert float(t[1, 1]) == 4.0 and int(t[1, 0]) == 3
    assert bool(L.tensor([1])) and not bool(L.tensor(0.0))
    assert [10, 20, 30][L.tensor(1)] == 20
    assert L.tensor(2.5, dtype=oc.bfloat16).item() == 2.5
    assert len(L.zeros(5, 2)) == 5
    with pytest.raises(ValueError, match="ambiguous"):
        bool(t)
    with pytest.raises(ValueError, match="one element"):
        t.item()
    with pytest.raises(TypeError, match="0-d"):
        len(L.tensor(1.0))
    with pytest.raises(TypeError, match="0-d"):
        iter(L.tensor(1.0))
    with pytest.raises(TypeError, match="integer"):
        [1, 2][L.tensor(1.0)]
    for dt in ALL_DTYPES:
        if supports(device, dt):
            r = repr(L.ones(2, dtype=dt))
            assert r.startswith("tensor(") and (dt in (oc.float32, oc.int64, oc.bool) or repr(dt) in r)
    assert repr(L.zeros(0, 3)).startswith("tensor(")
    assert str(L.tensor(1.5)) == ("tensor(1.5)" if device == "cpu" else f"tensor(1.5, device='{device}')")
