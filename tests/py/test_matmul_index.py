"""matmul (NumPy semantics, broadcast batch dims) and the indexing/joining ops (index_select,
gather, scatter_add, index_add, embedding, cat, stack, split, tril, triu) against NumPy and PyTorch."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import (
    INT_DTYPES, NUMERIC_DTYPES, TOLERANCE, TORCH_DTYPE, OrchardOn, assert_close, dtypes,
    from_numpy, is_float, layouts, make_tensor, promote, seeds, shapes, to_torch, torch_values,
)

SIDES = st.sampled_from([0, 1, 2, 3, 5, 7, 8, 9, 16, 17, 33, 65])


@st.composite
def matmul_shapes(draw):
    """Two shapes NumPy's matmul accepts: 1-D to 4-D, broadcast batch dims, any side incl. 0."""
    m, k, n = draw(SIDES), draw(SIDES), draw(SIDES)
    batch = draw(st.lists(st.sampled_from([1, 2, 3]), max_size=2))
    def batch_variant():
        drop = draw(st.integers(0, len(batch)))
        return tuple(1 if draw(st.integers(0, 3)) == 0 else b for b in batch[drop:])
    a_1d, b_1d = draw(st.booleans()), draw(st.booleans())
    sa = (k,) if a_1d and draw(st.booleans()) else batch_variant() + (m, k)
    sb = (k,) if b_1d and draw(st.booleans()) else batch_variant() + (k, n)
    return sa, sb


@given(shapes_ab=matmul_shapes(), dt=st.sampled_from(NUMERIC_DTYPES), la=layouts, lb=layouts, seed=seeds)
def test_matmul_matches_numpy(device, shapes_ab, dt, la, lb, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes_ab
    a, arr_a = make_tensor(rng, sa, dt, la, device)
    b, arr_b = make_tensor(rng, sb, dt, lb, device)
    acc = np.int64 if dt in INT_DTYPES else np.float64
    expected = np.matmul(arr_a.astype(acc), arr_b.astype(acc))
    out = oc.matmul(a, b)
    kw = {}
    if is_float(dt):
        r, at = TOLERANCE[dt]
        scale = np.matmul(np.abs(arr_a.astype(np.float64)), np.abs(arr_b.astype(np.float64)))
        kw = {"rtol": r, "atol": at + r * float(np.max(scale, initial=0.0))}
    assert_close(out, expected, dt, **kw, msg=f"{sa} @ {sb} {la}/{lb}", device=device)
    assert_close(a @ b, expected, dt, **kw, device=device)


@pytest.mark.parametrize("da,db", [(oc.float32, oc.float64), (oc.int32, oc.float16), (oc.int64, oc.int32),
                                   (oc.bfloat16, oc.float16), (oc.float16, oc.float16)])
def test_matmul_promotes(device, da, db):
    a = np.arange(6).reshape(2, 3) % 4
    b = np.arange(12).reshape(3, 4) % 5
    out = oc.matmul(from_numpy(a, da, device), from_numpy(b, db, device))
    assert_close(out, a @ b, promote(da, db), device=device)


def test_matmul_errors():
    with pytest.raises(ValueError, match=r"not aligned.*\(3\).*\(4\)"):
        oc.matmul(oc.zeros(2, 3), oc.zeros(4, 5))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        oc.matmul(oc.tensor(1.0), oc.zeros(3))
    with pytest.raises(ValueError, match="batch dimensions"):
        oc.matmul(oc.zeros(2, 3, 4), oc.zeros(3, 4, 5))
    with pytest.raises(TypeError, match="bool"):
        oc.matmul(oc.ones(2, 2, dtype=oc.bool), oc.ones(2, 2, dtype=oc.bool))
    with pytest.raises(TypeError):
        oc.matmul(oc.ones(2, 2), [[1.0, 2.0], [3.0, 4.0]])


def test_matmul_large_and_expanded(device):
    rng = np.random.default_rng(5)
    a, arr_a = make_tensor(rng, (3, 130, 67), oc.float32, "transposed", device)
    b, arr_b = make_tensor(rng, (67, 129), oc.float32, "strided", device)
    assert_close(a @ b, arr_a.astype(np.float64) @ arr_b, oc.float32, rtol=1e-4, atol=1e-3, device=device)
    e = oc.tensor(np.float32(2.0), device=device).expand(4, 5)
    assert_close(e @ oc.ones(5, 3, device=device), np.full((4, 3), 10.0), oc.float32, device=device)
    v = oc.ones(1, 5, device=device).expand(3, 5)
    assert_close(v @ v.T, np.full((3, 3), 5.0), oc.float32, device=device)


def sequential_16bit_sum(arr_a, arr_b, dtype):
    """a @ b summed term by term in the 16-bit dtype itself: what fp32 accumulation avoids."""
    a, b = to_torch(arr_a, dtype), to_torch(arr_b, dtype)
    acc = torch.zeros(a.shape[0], b.shape[1], dtype=a.dtype)
    for k in range(a.shape[1]):
        acc += a[:, k:k + 1] * b[k:k + 1, :]
    return acc.double().numpy()


@pytest.mark.parametrize("dt", [oc.float16, oc.bfloat16])
@pytest.mark.parametrize("lb", ["contiguous", "transposed"])
def test_long_16bit_products_accumulate_in_float32(device, dt, lb):
    # 4096 positive terms of about 1: a 16-bit running sum passes 2048 (bfloat16: 256), where its
    # spacing swallows whole terms, while a float32 sum stays within a few float32 ulps, so the
    # result is the float64 value rounded once to the dtype (one ulp: 2^-10 or 2^-7 relative).
    rng = np.random.default_rng(18)
    a, arr_a = make_tensor(rng, (33, 4096), dt, "contiguous", device, low=0.5, high=1.5)
    b, arr_b = make_tensor(rng, (4096, 40), dt, lb, device, low=0.5, high=1.5)
    exact = arr_a.astype(np.float64) @ arr_b.astype(np.float64)
    ulp = 2.0 ** -10 if dt == oc.float16 else 2.0 ** -7
    drift = np.max(np.abs(sequential_16bit_sum(arr_a, arr_b, dt) - exact) / exact)
    assert drift > 8 * ulp, f"16-bit accumulation drifts by only {drift}: the test would not tell"
    assert_close(a @ b, exact, dt, rtol=ulp, atol=0.0, device=device)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 17, 33), (33, 64, 255), (255, 7, 17), (65, 600, 97)])
@pytest.mark.parametrize("layout", ["contiguous", "a transposed", "b transposed", "batched", "b broadcast"])
def test_bfloat16_matmul_and_addmm_match_torch(m, k, n, layout):
    """bfloat16 products on the CPU sum in float32 and round once, as PyTorch's do (through the AMX
    or AVX512-BF16 kernel where the processor has one): the two agree to a bfloat16 rounding.
    (tests/cpp/test_matmul_index.cpp forces each path, the widened fallback included.)"""
    gen = torch.Generator().manual_seed(m * 1000 + k * 10 + n)
    batch_a = (3,) if layout in ("batched", "b broadcast") else ()
    batch_b = (3,) if layout == "batched" else (1,) if layout == "b broadcast" else ()
    ta = torch.randn(*batch_a, k, m, generator=gen).bfloat16().mT if layout == "a transposed" else \
        torch.randn(*batch_a, m, k, generator=gen).bfloat16()
    tb = torch.randn(*batch_b, n, k, generator=gen).bfloat16().mT if layout == "b transposed" else \
        torch.randn(*batch_b, k, n, generator=gen).bfloat16()
    def orchard_like(t):  # the same values and the same transposition
        transposed = not t.is_contiguous()
        base = t.mT if transposed else t
        o = from_numpy(base.float().numpy(), oc.bfloat16)
        return o.transpose(-1, -2) if transposed else o
    a, b = orchard_like(ta), orchard_like(tb)
    out = oc.matmul(a, b)
    assert out.dtype == oc.bfloat16
    assert_close(out, torch_values(torch.matmul(ta, tb)), oc.bfloat16, rtol=2**-7, atol=1e-4)
    if not batch_a and not batch_b:  # addmm accumulates the product onto its input
        tbias = torch.randn(n, generator=gen).bfloat16()
        got = oc.addmm(orchard_like(tbias), a, b)
        assert_close(got, torch_values(torch.addmm(tbias, ta, tb)), oc.bfloat16, rtol=2**-7, atol=1e-4)


# ---- index_select / gather / scatter_add / embedding -----------------------------------------

@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, layout=layouts, seed=seeds, data=st.data())
def test_index_select(device, shape, dtype, layout, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, layout, device)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    n = shape[d]
    count = data.draw(st.integers(0, 6))
    idx = rng.integers(0, n, size=count) if n else np.zeros(0, dtype=np.int64)
    idt = data.draw(st.sampled_from(INT_DTYPES))
    out = oc.index_select(x, d, from_numpy(idx, idt, device))
    assert_close(out, np.take(arr, idx, axis=d), dtype, exact=True, device=device)
    if n:
        with pytest.raises(IndexError, match=f"out of bounds for dimension {d % nd} with size {n}"):
            x.index_select(d, oc.tensor([0, n], device=device))


@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, layout=layouts, seed=seeds, data=st.data())
def test_gather_matches_torch(device, shape, dtype, layout, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, layout, device)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    # index may be smaller than the input in every dim but d, and any size along d
    ishape = tuple(data.draw(st.integers(0, s)) if i != d % nd else data.draw(st.integers(0, 5))
                   for i, s in enumerate(shape))
    n = shape[d]
    if n == 0 and np.prod(ishape) > 0:
        ishape = tuple(0 if i == d % nd else s for i, s in enumerate(ishape))
    idx = rng.integers(0, n, size=ishape) if n else np.zeros(ishape, dtype=np.int64)
    idt = data.draw(st.sampled_from(INT_DTYPES))
    it = from_numpy(idx, idt, device)
    expected = torch.gather(to_torch(arr, dtype), d, torch.from_numpy(idx))
    assert_close(oc.gather(x, d, it), torch_values(expected), dtype, exact=True, device=device)
    assert_close(x.gather(d, it), torch_values(expected), dtype, exact=True, device=device)


@given(shape=shapes(min_dims=1, max_dims=3, allow_zero=False), dtype=st.sampled_from(NUMERIC_DTYPES), seed=seeds,
       data=st.data())
def test_scatter_add_matches_torch(device, shape, dtype, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, data.draw(layouts), device)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    ishape = tuple(data.draw(st.integers(0, s)) if i != d % nd else data.draw(st.integers(0, 6))
                   for i, s in enumerate(shape))
    sshape = tuple(max(i, data.draw(st.integers(i, i + 2))) for i in ishape)
    idx = rng.integers(0, shape[d], size=ishape)
    src, sarr = make_tensor(rng, sshape, dtype, device=device)
    expected = torch.scatter_add(to_torch(arr, dtype).double(), d, torch.from_numpy(idx),
                                 to_torch(sarr, dtype).double()).to(TORCH_DTYPE[dtype])
    out = oc.scatter_add(x, d, from_numpy(idx, oc.int64, device), src)
    # 16-bit floats round after every addition into an element: allow an ulp of the largest
    # partial sum per addition.
    r, a = TOLERANCE.get(dtype, (0, 0))
    magnitude = torch.scatter_add(to_torch(np.abs(arr), dtype).double(), d, torch.from_numpy(idx),
                                  to_torch(np.abs(sarr), dtype).double())
    atol = a + r * float(magnitude.max()) * max(1, ishape[d % nd]) if magnitude.numel() else a
    assert_close(out, torch_values(expected), dtype, rtol=r, atol=atol, device=device)
    assert_close(x, arr, dtype, exact=True)  # not in place


@given(shape=shapes(min_dims=1, max_dims=3, allow_zero=False), dtype=st.sampled_from(NUMERIC_DTYPES), seed=seeds,
       data=st.data())
def test_index_add_matches_torch(device, shape, dtype, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, data.draw(layouts), device)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    count = data.draw(st.integers(0, 9))  # repeats likely: several slices add into one
    idx = rng.integers(0, shape[d], size=count)
    source, sarr = make_tensor(rng, tuple(count if i == d % nd else s for i, s in enumerate(shape)), dtype,
                               data.draw(layouts), device)
    alpha = data.draw(st.sampled_from([1, 2]))
    expected = torch.index_add(to_torch(arr, dtype), d, torch.from_numpy(idx), to_torch(sarr, dtype), alpha=alpha)
    # In index order: float32 and integers give PyTorch's values; 16-bit floats round after every
    # addition, where PyTorch may keep a float sum: an ulp of the largest partial sum per addition.
    r, a = TOLERANCE.get(dtype, (0, 0))
    magnitude = torch.index_add(to_torch(np.abs(arr), dtype).double(), d, torch.from_numpy(idx),
                                to_torch(np.abs(sarr), dtype).double(), alpha=alpha)
    tolerance = dict(exact=True) if dtype not in (oc.float16, oc.bfloat16) else \
        dict(rtol=r, atol=a + r * float(magnitude.max()) * max(1, count))
    out = oc.index_add(x, d, from_numpy(idx, oc.int64, device), source, alpha=alpha)
    assert_close(out, torch_values(expected), dtype, device=device, **tolerance)
    assert_close(x.index_add(d, from_numpy(idx, oc.int32, device), source, alpha=alpha), torch_values(expected),
                 dtype, device=device, **tolerance)
    assert_close(x, arr, dtype, exact=True)  # not in place


def test_index_add_gradients_and_edges(device):
    L = OrchardOn(device)
    x, source = L.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), L.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    x.requires_grad_(True)
    source.requires_grad_(True)
    index = L.tensor([2, 0, 2])
    out = oc.index_add(x, 0, index, source)
    (out * L.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    tx, ts = torch.tensor(x.detach().cpu().numpy(), requires_grad=True), torch.tensor(source.detach().cpu().numpy(),
                                                                                     requires_grad=True)
    (torch.index_add(tx, 0, torch.tensor([2, 0, 2]), ts) * torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])).sum().backward()
    assert_close(out, torch_values(torch.index_add(tx, 0, torch.tensor([2, 0, 2]), ts).detach()), oc.float32,
                 exact=True, device=device)
    assert_close(x.grad, tx.grad.numpy(), oc.float32, exact=True, device=device)
    assert_close(source.grad, ts.grad.numpy(), oc.float32, exact=True, device=device)
    # In place, returning input; on a leaf that requires grad, refused as PyTorch refuses it.
    y = L.zeros(3, 2)
    assert y.index_add_(0, index, source.detach(), alpha=2) is y
    assert_close(y, np.array([[4.0, 4.0], [0.0, 0.0], [8.0, 8.0]]), oc.float32, exact=True, device=device)
    with pytest.raises(RuntimeError, match="leaf"):
        x.index_add_(0, index, source)
    # 0-d input, empty index, a 0-d index.
    assert oc.index_add(L.tensor(1.0), 0, L.tensor([0, 0]), L.tensor([2.0, 3.0])).item() == 6.0
    assert_close(oc.index_add(x.detach(), 1, L.tensor([], dtype=oc.int64), L.zeros(3, 0)), x.detach().cpu().numpy(),
                 oc.float32, exact=True, device=device)
    assert_close(oc.index_add(L.zeros(2, 2), 1, L.tensor(1), L.ones(2, 1)), np.array([[0, 1], [0, 1]]), oc.float32,
                 exact=True, device=device)


def test_gather_scatter_errors(device):
    L = OrchardOn(device)
    x = L.zeros(3, 4)
    with pytest.raises(TypeError, match="int32 or int64"):
        oc.gather(x, 0, L.zeros(2, 2))
    with pytest.raises(ValueError, match="as many dimensions"):
        oc.gather(x, 0, L.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="out of bounds"):
        oc.gather(x, 1, L.tensor([[4]]))
    with pytest.raises(RuntimeError, match="out of bounds"):
        oc.scatter_add(x, 1, L.tensor([[4]]), L.ones(1, 1))
    with pytest.raises(ValueError, match="larger than"):
        oc.gather(x, 0, L.zeros(2, 5, dtype=oc.int64))
    with pytest.raises(TypeError, match="dtype"):
        oc.scatter_add(x, 0, L.zeros(1, 1, dtype=oc.int64), L.ones(1, 1, dtype=oc.float16))
    with pytest.raises(IndexError, match="out of range"):
        oc.gather(x, 2, L.zeros(1, 1, dtype=oc.int64))
    with pytest.raises(IndexError, match="0-d or 1-d"):
        oc.index_select(x, 0, L.zeros(1, 1, dtype=oc.int64))
    with pytest.raises(RuntimeError, match="out of bounds"):
        oc.index_add(x, 1, L.tensor([4]), L.ones(3, 1))
    with pytest.raises(ValueError, match=r"expected \[3, 1\]"):
        oc.index_add(x, 1, L.tensor([1]), L.ones(3, 2))
    with pytest.raises(IndexError, match="0-d or 1-d"):
        oc.index_add(x, 1, L.tensor([[1]]), L.ones(3, 1))
    with pytest.raises(TypeError, match="dtype"):
        oc.index_add(x, 0, L.tensor([1]), L.ones(1, 4, dtype=oc.float16))
    with pytest.raises(IndexError, match="out of range"):
        oc.index_add(x, 2, L.tensor([1]), L.ones(1, 4))


def test_embedding(device):
    w, warr = make_tensor(np.random.default_rng(2), (10, 4), oc.float32, device=device)
    idx = np.array([[0, 9, 3], [3, 3, 1]])
    assert_close(oc.embedding(from_numpy(idx, oc.int64, device), w), warr[idx], oc.float32, device=device)
    assert_close(oc.embedding(oc.tensor([], dtype=oc.int64, device=device), w), np.zeros((0, 4)), oc.float32,
                 device=device)
    with pytest.raises(IndexError, match="out of bounds"):
        oc.embedding(oc.tensor([10], device=device), w)
    with pytest.raises(ValueError, match="2-D"):
        oc.embedding(oc.tensor([0], device=device), oc.zeros(3, device=device))


# ---- indices out of range: refused as PyTorch refuses them -----------------------------------

def _on(lib, device):
    """A tensor factory of orchard (on device) or torch (on the CPU): data -> tensor."""
    return (lambda data: oc.tensor(data, device=device)) if lib is oc else torch.tensor


X23 = [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
# (name, call(lib, T, index) -> result, the dimension indexed, its size); each library's own functions.
BAD_INDEX_CALLS = [
    ("index_select rows", lambda lib, T, i: lib.index_select(T(X23), 0, T([0, i])), 0, 2),
    ("index_select 1-d", lambda lib, T, i: lib.index_select(T(X23[0]), 0, T([i])), 0, 3),
    ("index_select columns", lambda lib, T, i: lib.index_select(T(X23), 1, T([i])), 1, 3),
    ("Tensor.index_select", lambda lib, T, i: T(X23).index_select(-2, T([i, 1])), 0, 2),
    ("F.embedding", lambda lib, T, i: lib.nn.functional.embedding(T([[1, i]]), T(X23).T.contiguous()), 0, 3),
    ("nn.Embedding", lambda lib, T, i: _embedding(lib, T)(T([i, 0])), 0, 10),
    ("gather", lambda lib, T, i: lib.gather(T(X23), 1, T([[i], [0]])), 1, 3),
    ("Tensor.gather", lambda lib, T, i: T(X23).gather(0, T([[0, i, 1]])), 0, 2),
    ("scatter_add", lambda lib, T, i: lib.scatter_add(T(X23), 1, T([[i], [0]]), T(X23)), 1, 3),
    ("Tensor.scatter_add", lambda lib, T, i: T(X23).scatter_add(0, T([[0, 1, i]]), T(X23)), 0, 2),
    ("cross_entropy", lambda lib, T, i: lib.nn.functional.cross_entropy(T(X23), T([i, 0])), 1, 3),
    ("cross_entropy sum", lambda lib, T, i: lib.nn.functional.cross_entropy(T(X23), T([1, i]), reduction="sum",
                                                                             ignore_index=7), 1, 3),
]


def _embedding(lib, T):
    module = lib.nn.Embedding(10, 4)
    return module.to(T([0]).device) if lib is oc else module


@pytest.mark.parametrize("name, call, dim, size", BAD_INDEX_CALLS, ids=[c[0] for c in BAD_INDEX_CALLS])
@pytest.mark.parametrize("where", ["-1", "-size", "-size-1", "size", "size+5"])
def test_indices_out_of_range_raise_what_pytorch_raises(device, name, call, dim, size, where):
    """Negative and too-large indices: IndexError from index_select, embedding and cross-entropy targets,
    RuntimeError from gather and scatter_add, as PyTorch; the message names the index, the dimension, its size
    and the valid range."""
    index = {"-1": -1, "-size": -size, "-size-1": -size - 1, "size": size, "size+5": size + 5}[where]
    with pytest.raises(Exception) as theirs:
        call(torch, _on(torch, "cpu"), index)
    with pytest.raises(Exception) as ours:
        call(oc, _on(oc, device), index)
    expected = theirs.type
    if name == "index_select columns":  # PyTorch's CPU kernel for the last dim of a 2-D input differs
        assert expected is RuntimeError
        expected = IndexError
    assert ours.type is expected, f"{ours.type.__name__}: {ours.value} (PyTorch: {expected.__name__})"
    op = name.split()[0].removeprefix("Tensor.").removeprefix("F.").replace("nn.Embedding", "embedding")
    assert str(ours.value) == (f"{op}: index {index} is out of bounds for dimension {dim} with size {size} "
                               f"(expected indices in [0, {size}))")


@pytest.mark.parametrize("name, call, dim, size", BAD_INDEX_CALLS, ids=[c[0] for c in BAD_INDEX_CALLS])
def test_indices_in_range_give_what_pytorch_gives(device, name, call, dim, size):
    for index in (0, size - 1):
        if name == "nn.Embedding":  # random weights: compare the rows picked
            module = _embedding(oc, _on(oc, device))
            np.testing.assert_array_equal(module(oc.tensor([index, 0], device=device)).detach().cpu().numpy(),
                                          module.weight.detach().cpu().numpy()[[index, 0]])
            continue
        ours, theirs = call(oc, _on(oc, device), index), call(torch, _on(torch, "cpu"), index)
        np.testing.assert_allclose(ours.detach().cpu().numpy(), theirs.detach().numpy(), rtol=1e-6)


def test_cross_entropy_targets_equal_to_ignore_index_are_skipped_as_in_pytorch(device):
    for ignore_index in (-1, 3, -100):
        targets = [ignore_index, 2]
        ours = oc.nn.functional.cross_entropy(oc.tensor(X23, device=device), oc.tensor(targets, device=device),
                                              ignore_index=ignore_index)
        theirs = torch.nn.functional.cross_entropy(torch.tensor(X23), torch.tensor(targets), ignore_index=ignore_index)
        np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-6)


def test_python_style_keys_still_count_negative_indices_from_the_end(device):
    x = oc.tensor(X23, device=device)
    t = torch.tensor(X23)
    for key in ([-1], (slice(None), [-3, -1, 0])):
        np.testing.assert_array_equal(x[key].cpu().numpy(), t[key].numpy())
    np.testing.assert_array_equal(x[oc.tensor([[-2, 1]], device=device)].cpu().numpy(),
                                  t[torch.tensor([[-2, 1]])].numpy())
    with pytest.raises(IndexError) as theirs:
        t[[-3]]
    with pytest.raises(IndexError, match=r"index -3 is out of bounds for dimension 0 with size 2 \(expected indices "
                                         r"in \[-2, 2\)\)"):
        x[[-3]]
    assert "-3" in str(theirs.value)


# ---- cat / stack / split ---------------------------------------------------------------------

@given(shape=shapes(min_dims=1, max_dims=3), seed=seeds, data=st.data())
def test_cat_and_stack(device, shape, seed, data):
    rng = np.random.default_rng(seed)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    parts, arrs, dts = [], [], []
    for _ in range(data.draw(st.integers(1, 4))):
        s = list(shape)
        s[d] = data.draw(st.sampled_from([0, 1, 2, 5, 17]))
        dt = data.draw(dtypes)
        t, a = make_tensor(rng, s, dt, data.draw(layouts), device)
        parts.append(t), arrs.append(a), dts.append(dt)
    out_dtype = dts[0]
    for dt in dts[1:]:
        out_dtype = promote(out_dtype, dt)
    expected = np.concatenate([a.astype(np.float64) for a in arrs], axis=d)
    assert_close(oc.cat(parts, d), expected, out_dtype, exact=True, device=device)
    same = [make_tensor(rng, shape, dts[0], device=device)[0] for _ in range(len(parts))]
    sd = data.draw(st.integers(-nd - 1, nd))
    assert_close(oc.stack(same, sd), np.stack([s_.cpu().numpy() if dts[0] != oc.bfloat16 else s_.float().cpu().numpy()
                                               for s_ in same], sd), dts[0], exact=True, device=device)


def test_cat_stack_errors():
    with pytest.raises(ValueError, match="non-empty"):
        oc.cat([], 0)
    with pytest.raises(ValueError, match=r"tensor 1 has shape \[2, 4\]"):
        oc.cat([oc.zeros(2, 3), oc.zeros(2, 4)], 0)
    with pytest.raises(ValueError, match="zero-dimensional"):
        oc.cat([oc.tensor(1.0)], 0)
    with pytest.raises(ValueError, match="equal shape"):
        oc.stack([oc.zeros(2), oc.zeros(3)])
    with pytest.raises(IndexError, match="out of range"):
        oc.cat([oc.zeros(2)], 1)
    with pytest.raises(TypeError):
        oc.cat([oc.zeros(2), [1.0, 2.0]])


@given(shape=shapes(min_dims=1, max_dims=3), dtype=dtypes, seed=seeds, data=st.data())
def test_split_matches_torch(device, shape, dtype, seed, data):
    rng = np.random.default_rng(seed)
    x, arr = make_tensor(rng, shape, dtype, data.draw(layouts), device)
    nd = len(shape)
    d = data.draw(st.integers(-nd, nd - 1))
    n = shape[d]
    t = to_torch(arr, dtype)
    if data.draw(st.booleans()):
        size = data.draw(st.integers(1 if n else 0, max(n + 2, 1)))
        ref = torch.split(t, size, d)
        got = oc.split(x, size, d)
    else:
        cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
        sections = [b - a for a, b in zip([0] + cuts, cuts + [n])]
        ref = torch.split(t, sections, d)
        got = x.split(sections, d)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.is_alias_of(x)
        assert_close(g, torch_values(r), dtype, exact=True, device=device)


def test_split_size_may_be_any_integer(device):
    x = oc.arange(5, device=device)
    for size in (2, np.int64(2), np.int32(2), oc.tensor(2, device=device)):
        assert [p.tolist() for p in oc.split(x, size)] == [[0, 1], [2, 3], [4]]
    assert [p.tolist() for p in x.split((1, np.int64(4)))] == [[0], [1, 2, 3, 4]]


def test_split_errors():
    x = oc.zeros(5)
    with pytest.raises(ValueError, match="sum to 4"):
        x.split([2, 2])
    with pytest.raises(ValueError, match="positive"):
        x.split(0)
    with pytest.raises(ValueError, match="non-negative"):
        x.split([6, -1])
    with pytest.raises(ValueError, match="at least 1 dimension"):
        oc.tensor(1.0).split(1)


@given(shape=shapes(min_dims=2, max_dims=4), dtype=dtypes, layout=layouts, seed=seeds,
       k=st.integers(-6, 6), upper=st.booleans())
def test_tril_triu(device, shape, dtype, layout, seed, k, upper):
    x, arr = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device)
    expected = (np.triu if upper else np.tril)(arr, k)
    out = (oc.triu if upper else oc.tril)(x, k)
    assert_close(out, expected, dtype, exact=True, device=device)
    assert_close(getattr(x, "triu" if upper else "tril")(diagonal=k), expected, dtype, exact=True, device=device)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        oc.tril(oc.zeros(3))
