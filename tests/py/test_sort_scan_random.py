"""sort, argsort, topk, cumsum, flip, masked_fill and the random draws (randint, randperm,
multinomial, normal_, uniform_, exponential_) against PyTorch, on the CPU and the emulated Metal
device. Ties and NaN: Orchard always gives the order of PyTorch's stable=True, NaN last."""
import math

import numpy as np
import pytest
import torch

import orchard as oc
from conftest import (ALL_DTYPES, LAYOUTS, TORCH_DTYPE, assert_close, from_numpy, make_tensor, require, to_numpy,
                      to_torch, torch_values)


def torch_of(t):
    """The PyTorch tensor holding an Orchard tensor's values, in its dtype."""
    return to_torch(to_numpy(t), t.dtype)


# ---- sort, argsort, topk -------------------------------------------------------------------------

def tied_values(rng, shape, dtype):
    """Few distinct values (ties are common), with NaN, infinities and signed zeros among floats."""
    if dtype == oc.bool:
        return rng.random(shape) < 0.5
    arr = rng.integers(-3, 4, size=shape)
    if dtype in (oc.int32, oc.int64):
        return arr.astype(np.int64)
    arr = arr / 2.0
    flat = arr.reshape(-1)
    if flat.size:
        picks = rng.integers(0, flat.size, size=max(1, flat.size // 6))
        flat[picks] = rng.choice([np.nan, np.inf, -np.inf, -0.0, 0.0], size=picks.size)
    return arr


SORT_SHAPES = [(7,), (3, 17), (2, 5, 33), (4, 1), (0, 5), (300,), (2, 1025)]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("descending", [False, True])
def test_sort_matches_torch_stable(device, dtype, descending, rng):
    require(device, dtype)
    for shape in SORT_SHAPES:
        for dim in range(-len(shape), len(shape)):
            # Few distinct values, so ties are common; NaN and infinities among the floats.
            arr = tied_values(rng, shape, dtype)
            t = from_numpy(arr, dtype, device)
            ref = torch.sort(to_torch(arr, dtype), dim=dim, descending=descending, stable=True)
            got = oc.sort(t, dim=dim, descending=descending)
            assert_close(got.values, torch_values(ref.values), dtype=dtype, device=device, exact=True,
                         msg=f"{shape} dim {dim}")
            assert_close(got.indices, ref.indices.numpy(), dtype=oc.int64, device=device, msg=f"{shape} dim {dim}")
            assert_close(oc.argsort(t, dim, descending), ref.indices.numpy(), msg="argsort")
            assert_close(t.argsort(dim=dim, descending=descending, stable=True), ref.indices.numpy())
            k = shape[dim] // 2  # topk's prefix is the stable sort's, ties and NaN included
            top = oc.topk(t, k, dim=dim, largest=descending)
            assert_close(top.values, torch_values(ref.values.narrow(dim, 0, k)), exact=True, msg="topk")
            assert_close(top.indices, ref.indices.narrow(dim, 0, k).numpy(), msg="topk")


def test_sort_nan_and_signed_zero_order(device):
    x = oc.tensor([float("nan"), 1.0, -math.inf, -0.0, 0.0, math.inf, float("nan"), -1.0], device=device)
    v, i = oc.sort(x)
    assert i.tolist() == [2, 7, 3, 4, 1, 5, 0, 6]
    v, i = x.sort(descending=True)
    assert i.tolist() == [0, 6, 5, 1, 3, 4, 7, 2]
    assert math.copysign(1, v[4].item()) == -1 and math.copysign(1, v[5].item()) == 1


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sort_layouts_and_0d(device, layout, rng):
    t, arr = make_tensor(rng, (4, 6), oc.float32, layout=layout, device=device)
    ref = torch.sort(torch.from_numpy(arr), dim=0, stable=True)
    got = t.sort(0)
    assert_close(got.values, ref.values.numpy())
    assert_close(got.indices, ref.indices.numpy())
    v, i = oc.sort(oc.tensor(3.0, device=device))
    assert v.shape == () and v.item() == 3.0 and i.item() == 0


@pytest.mark.parametrize("largest", [True, False])
def test_topk_matches_torch(device, largest, rng):
    for shape, dim in [((10,), 0), ((3, 50), -1), ((6, 4, 5), 1), ((2, 70000), 1)]:
        t, arr = make_tensor(rng, shape, oc.float32, device=device)
        for k in {0, 1, 3, shape[dim]}:
            ref = torch.topk(torch.from_numpy(arr), k, dim=dim, largest=largest)
            got = oc.topk(t, k, dim=dim, largest=largest)
            assert_close(got.values, ref.values.numpy(), device=device, msg=f"{shape} k={k}")
            # PyTorch leaves the order of tied values to topk unspecified; Orchard's is stable sort's.
            stable = torch.sort(torch.from_numpy(arr), dim=dim, descending=largest, stable=True)
            assert_close(got.indices, stable.indices.narrow(dim, 0, k).numpy(), msg=f"{shape} k={k}")
    ti = oc.tensor([1, 3, 3, 2], device=device)
    v, i = ti.topk(2)
    assert v.tolist() == [3, 3] and i.tolist() == [1, 2] and v.dtype == oc.int64


def test_sort_topk_errors_match_torch(device):
    x = oc.tensor([1.0, 2.0, 3.0], device=device)
    for bad in (4, -1):
        with pytest.raises(RuntimeError):
            torch.topk(torch.tensor([1.0, 2.0, 3.0]), bad)
        with pytest.raises(RuntimeError):
            oc.topk(x, bad)
    for f in (lambda: oc.sort(x, dim=1), lambda: oc.argsort(x, dim=-2), lambda: oc.topk(x, 1, dim=1),
              lambda: oc.cumsum(x, 1), lambda: oc.flip(x, (1,))):
        with pytest.raises(IndexError):
            f()
    with pytest.raises(RuntimeError):
        oc.flip(x, (0, 0))


def test_sort_topk_backward(device, rng):
    arr = rng.standard_normal((3, 8)).astype(np.float32)
    arr[0, 2] = arr[0, 5]  # a tie
    g = rng.standard_normal((3, 8)).astype(np.float32)
    x = oc.tensor(arr, device=device, requires_grad=True) if _factory_takes_grad() else \
        oc.tensor(arr, device=device).requires_grad_()
    tx = torch.tensor(arr, requires_grad=True)
    (oc.sort(x, dim=1, descending=True).values * oc.tensor(g, device=device)).sum().backward()
    (torch.sort(tx, dim=1, descending=True, stable=True).values * torch.tensor(g)).sum().backward()
    assert_close(x.grad, tx.grad.numpy())
    x.grad = None
    tx.grad = None
    (oc.topk(x, 3, dim=0, largest=False).values * oc.tensor(g[:3], device=device)).sum().backward()
    (torch.topk(tx, 3, dim=0, largest=False).values * torch.tensor(g[:3])).sum().backward()
    assert_close(x.grad, tx.grad.numpy())
    assert oc.sort(x).indices.requires_grad is False


def _factory_takes_grad():
    try:
        oc.tensor([1.0], requires_grad=True)
        return True
    except TypeError:
        return False


# ---- cumsum --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_cumsum_matches_torch(device, dtype, rng):
    require(device, dtype)
    for shape in [(5,), (3, 4), (2, 3, 70), (0, 3), ()]:
        for dim in range(-max(len(shape), 1), max(len(shape), 1)):
            t, arr = make_tensor(rng, shape, dtype, device=device, layout="strided" if len(shape) > 1 else "contiguous")
            ref = torch.cumsum(to_torch(arr, dtype), dim)
            got = oc.cumsum(t, dim)
            want_dtype = oc.int64 if dtype in (oc.bool, oc.int32, oc.int64) else dtype
            assert got.dtype == want_dtype and ref.dtype == TORCH_DTYPE[want_dtype]
            rtol = {oc.float16: 1e-2, oc.bfloat16: 5e-2}.get(dtype)
            assert_close(got, torch_values(ref), device=device, rtol=rtol, atol=rtol, msg=f"{shape} {dim}")
    x = oc.tensor([1, 2, 3], dtype=oc.int32, device=device)
    assert x.cumsum(0, dtype=oc.float32).dtype == oc.float32
    assert oc.cumsum(x, dim=0).tolist() == [1, 3, 6]


def test_cumsum_special_values_and_wrap(device):
    x = oc.tensor([1.0, math.inf, -math.inf, 2.0], device=device)
    got = oc.cumsum(x, 0).tolist()
    assert got[:2] == [1.0, math.inf] and math.isnan(got[2]) and math.isnan(got[3])
    big = oc.tensor([2**62, 2**62, 2**62], device=device)
    assert oc.cumsum(big, 0).tolist() == torch.cumsum(torch.tensor([2**62] * 3), 0).tolist()


def test_cumsum_backward(device, rng):
    arr = rng.standard_normal((3, 5)).astype(np.float32)
    g = rng.standard_normal((3, 5)).astype(np.float32)
    for dim in (0, 1):
        x = oc.tensor(arr, device=device).requires_grad_()
        tx = torch.tensor(arr, requires_grad=True)
        (oc.cumsum(x, dim) * oc.tensor(g, device=device)).sum().backward()
        (torch.cumsum(tx, dim) * torch.tensor(g)).sum().backward()
        assert_close(x.grad, tx.grad.numpy())


# ---- flip ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_flip_matches_torch(device, layout, rng):
    t, arr = make_tensor(rng, (2, 3, 4), oc.float32, layout=layout, device=device)
    for dims in [(0,), (2,), (0, 2), (-1, 1), (), (0, 1, 2)]:
        got = oc.flip(t, dims)
        assert_close(got, torch.flip(torch.from_numpy(arr), dims).numpy(), device=device, msg=str(dims))
        assert not got.is_alias_of(t)
    assert_close(t.flip(0, 1), np.flip(arr, (0, 1)))
    assert_close(t.flip((2,)), np.flip(arr, 2))
    ti = oc.tensor([[1, 2], [3, 4]], device=device)
    assert ti.flip(1).tolist() == [[2, 1], [4, 3]] and ti.flip(1).dtype == oc.int64


def test_flip_backward(device, rng):
    arr = rng.standard_normal((3, 4)).astype(np.float32)
    g = rng.standard_normal((3, 4)).astype(np.float32)
    x = oc.tensor(arr, device=device).requires_grad_()
    (oc.flip(x, (0, 1)) * oc.tensor(g, device=device)).sum().backward()
    assert_close(x.grad, np.flip(g, (0, 1)))


# ---- masked_fill ---------------------------------------------------------------------------------

def test_masked_fill_matches_torch(device, rng):
    arr = rng.standard_normal((3, 4)).astype(np.float32)
    mask = rng.random((3, 4)) < 0.5
    x, m = oc.tensor(arr, device=device), oc.tensor(mask, device=device)
    for value in (2.5, -math.inf, float("nan")):
        want = torch.from_numpy(arr).masked_fill(torch.from_numpy(mask), value).numpy()
        assert_close(x.masked_fill(m, value), want, device=device)
        assert_close(oc.masked_fill(x, m, oc.tensor(value)), want)
    # A broadcast mask, and a result of the broadcast shape (out of place only).
    row = oc.tensor(mask[0], device=device)
    assert_close(x.masked_fill(row, 0.0), np.where(mask[0], 0.0, arr))
    small = oc.tensor(arr[0], device=device)
    assert small.masked_fill(m, 1.0).shape == (3, 4)
    # The input's dtype is kept: an int tensor filled with 2.7 holds 2, as in PyTorch.
    xi = oc.tensor([1, 2, 3], device=device)
    assert xi.masked_fill(oc.tensor([True, False, True], device=device), 2.7).tolist() == [2, 2, 2]


def test_masked_fill_inplace_and_errors(device):
    x = oc.zeros(2, 3, device=device)
    m = oc.tensor([True, False, True], device=device)
    v0 = x._version if hasattr(x, "_version") else None
    assert x.masked_fill_(m, 5.0) is x
    assert x.tolist() == [[5, 0, 5], [5, 0, 5]]
    if v0 is not None:
        assert x._version > v0
    with pytest.raises(RuntimeError):  # as PyTorch: the mask must be bool
        x.masked_fill(oc.tensor([1, 0, 1], device=device), 1.0)
    with pytest.raises(RuntimeError):  # the value must be 0-d
        x.masked_fill(m, oc.tensor([1.0], device=device))
    with pytest.raises(RuntimeError):  # in place, the mask must broadcast to self
        oc.zeros(3, device=device).masked_fill_(oc.ones(2, 3, dtype=oc.bool, device=device), 1.0)
    leaf = oc.zeros(3, device=device).requires_grad_()
    with pytest.raises(RuntimeError):
        leaf.masked_fill_(m, 1.0)


def test_masked_fill_backward(device, rng):
    arr = rng.standard_normal((3, 4)).astype(np.float32)
    mask = rng.random((3, 4)) < 0.5
    g = rng.standard_normal((3, 4)).astype(np.float32)
    x = oc.tensor(arr, device=device).requires_grad_()
    value = oc.tensor(1.5, device=device).requires_grad_()
    (x.masked_fill(oc.tensor(mask, device=device), value) * oc.tensor(g, device=device)).sum().backward()
    assert_close(x.grad, np.where(mask, 0, g))
    assert_close(value.grad, np.float32(g[mask].sum()), atol=1e-5)
    # In place on a non-leaf: the gradient is zero where filled, as PyTorch's.
    x.grad = None
    y = x * 2
    y.masked_fill_(oc.tensor(mask, device=device), 0.0)
    (y * oc.tensor(g, device=device)).sum().backward()
    assert_close(x.grad, np.where(mask, 0, 2 * g))


# ---- random integers and permutations ----------------------------------------------------------

def test_randint_signatures_dtypes_and_range(device):
    oc.manual_seed(0)
    a = oc.randint(10, (1000,), device=device)
    assert a.dtype == oc.int64 and a.shape == (1000,) and a.device == device
    assert 0 <= a.min().item() and a.max().item() < 10
    b = oc.randint(-5, 5, (20, 50), device=device)
    assert -5 <= b.min().item() and b.max().item() < 5 and b.shape == (20, 50)
    assert oc.randint(3, size=(2,), device=device).shape == (2,)
    assert oc.randint(low=1, high=3, size=(4,), device=device).min().item() >= 1
    assert oc.randint(0, 3, (5,), dtype=oc.float32, device=device).dtype == oc.float32
    assert oc.randint(0, 2, (5,), dtype=oc.bool, device=device).dtype == oc.bool
    assert oc.randint(0, 3, (5,), dtype=oc.int32, device=device).dtype == oc.int32
    assert oc.randint(0, 3, (0, 2), device=device).shape == (0, 2)
    assert oc.randint(0, 3, (2,), dtype=oc.float32, device=device, requires_grad=True).requires_grad
    for f in (lambda: oc.randint(5, 5, (3,)), lambda: oc.randint(5, 4, (3,)),
              lambda: oc.randint(0, 2**40, (3,), dtype=oc.int32), lambda: oc.randint(0, 3, (2,), requires_grad=True)):
        with pytest.raises(RuntimeError):
            f()
    with pytest.raises(TypeError):
        oc.randint(3)
    with pytest.raises(ValueError):
        oc.randint(3, (2,), generator=object())


def test_randint_is_uniform_beyond_float_precision(device):
    oc.manual_seed(1)
    n = 20000
    # A range above 2^24: every value distinct in float32 would collapse; low bits must vary.
    big = oc.randint(0, 2**40, (n,), device=device).cpu().numpy()
    assert big.min() >= 0 and big.max() < 2**40
    assert abs(big.mean() / 2**40 - 0.5) < 0.02
    assert len(np.unique(big % 1024)) == 1024  # the low bits are random too
    full = oc.randint(-2**63, 2**63 - 1, (n,), device=device).cpu().numpy()
    assert (full < 0).mean() == pytest.approx(0.5, abs=0.02)
    # Chi-square over 10 categories (9 degrees of freedom; 27.9 is the 0.999 quantile).
    counts = np.bincount(oc.randint(0, 10, (n,), device=device).cpu().numpy(), minlength=10)
    chi2 = ((counts - n / 10) ** 2 / (n / 10)).sum()
    assert chi2 < 27.9


def test_random_draws_repeat_under_manual_seed_and_match_across_devices():
    draws = {}
    for device in ["cpu"] + (["metal"] if oc.metal.is_available() else []):
        oc.manual_seed(123)
        draws[device] = [oc.randint(0, 1000, (50,), device=device).tolist(), oc.randperm(30, device=device).tolist(),
                         oc.multinomial(oc.tensor([0.1, 0.5, 0.4], device=device), 20, True).tolist(),
                         oc.empty(10, device=device).normal_().tolist()]
        oc.manual_seed(123)
        again = [oc.randint(0, 1000, (50,), device=device).tolist(), oc.randperm(30, device=device).tolist(),
                 oc.multinomial(oc.tensor([0.1, 0.5, 0.4], device=device), 20, True).tolist(),
                 oc.empty(10, device=device).normal_().tolist()]
        assert again == draws[device]
    if "metal" in draws:
        assert draws["metal"][:3] == draws["cpu"][:3]
        np.testing.assert_allclose(draws["metal"][3], draws["cpu"][3], rtol=1e-5, atol=1e-6)


def test_randperm(device):
    oc.manual_seed(2)
    for n in (0, 1, 7, 1000):
        p = oc.randperm(n, device=device)
        assert p.dtype == oc.int64 and p.device == device
        assert sorted(p.tolist()) == list(range(n))
    assert oc.randperm(5, dtype=oc.float32, device=device).dtype == oc.float32
    # Each value lands in each position about equally often.
    counts = np.zeros((4, 4))
    for _ in range(800):
        counts[np.arange(4), oc.randperm(4, device=device).tolist()] += 1
    assert np.abs(counts - 200).max() < 60
    with pytest.raises(RuntimeError):
        oc.randperm(-1)


# ---- multinomial ---------------------------------------------------------------------------------

def test_multinomial_with_replacement_frequencies(device):
    oc.manual_seed(3)
    w = [1.0, 0.0, 3.0, 6.0]  # unnormalised
    n = 20000
    s = oc.multinomial(oc.tensor(w, device=device), n, replacement=True)
    assert s.dtype == oc.int64 and s.shape == (n,)
    counts = np.bincount(s.cpu().numpy(), minlength=4)
    assert counts[1] == 0
    expected = n * np.array(w) / sum(w)
    keep = expected > 0
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < 16.3  # 3 degrees of freedom, the 0.999 quantile
    rows = oc.multinomial(oc.tensor([[1.0, 0.0], [0.0, 1.0]], device=device), 5, True)
    assert rows.tolist() == [[0] * 5, [1] * 5]


def test_multinomial_without_replacement(device):
    oc.manual_seed(4)
    w = oc.tensor([[0.0, 1.0, 0.0, 2.0], [5.0, 1.0, 1.0, 1.0]], device=device)
    s = oc.multinomial(w, 4)
    assert s.shape == (2, 4)
    for row in s.tolist():
        assert sorted(row) == [0, 1, 2, 3]
    assert set(s[0, :2].tolist()) == {1, 3}  # positive weights come before zero ones
    # First draws follow the weights: P(first = 3) = 2/3 in row 0.
    firsts = np.array([oc.multinomial(w[0], 1).item() for _ in range(600)])
    assert abs((firsts == 3).mean() - 2 / 3) < 0.07
    # Second draw given the first (successive sampling): row [5, 1, 1, 1] -> P(0 not first) = 3/8.
    seconds = np.array([w[1].multinomial(2).tolist() for _ in range(600)])
    assert abs((seconds[:, 0] != 0).mean() - 3 / 8) < 0.07


def test_multinomial_errors_match_torch(device):
    cases = [
        ([0.0, 1.0, 0.0], 4, False), ([0.0, 0.0, 0.0], 1, False), ([-1.0, 1.0, 0.0], 1, False),
        ([float("nan"), 1.0, 0.0], 1, False), ([math.inf, 1.0, 0.0], 1, True), ([1.0, 1.0], 0, False),
        ([[[1.0]]], 1, False), ([1, 2], 1, False), ([], 1, True),
    ]
    for w, n, replacement in cases:
        with pytest.raises(RuntimeError):
            torch.multinomial(torch.tensor(w), n, replacement)
        with pytest.raises(RuntimeError):
            oc.multinomial(oc.tensor(w, device=device) if w else oc.zeros(0, device=device), n, replacement)


# ---- in-place random fills -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [oc.float32, oc.float16, oc.bfloat16, oc.float64])
def test_normal_uniform_exponential_statistics(device, dtype):
    require(device, dtype)
    oc.manual_seed(5)
    n = 40000
    x = oc.empty(n, dtype=dtype, device=device)
    assert x.normal_(2.0, 3.0) is x
    a = x.float().cpu().numpy()
    assert abs(a.mean() - 2.0) < 0.1 and abs(a.std() - 3.0) < 0.1
    x.uniform_(-1.0, 3.0)
    a = x.float().cpu().numpy()
    assert a.min() >= -1.0 and a.max() <= 3.0
    assert abs(a.mean() - 1.0) < 0.05 and abs(a.var() - 16 / 12) < 0.05
    x.exponential_(2.0)
    a = x.float().cpu().numpy()
    assert a.min() >= 0 and abs(a.mean() - 0.5) < 0.02 and abs(a.var() - 0.25) < 0.03


def test_random_fills_on_views_and_rules(device):
    base = oc.zeros(6, 8, device=device)
    view = base[:, ::2]  # every other column: not contiguous
    view.normal_()
    arr = base.cpu().numpy()
    assert (arr[:, 1::2] == 0).all() and (arr[:, ::2] != 0).all()
    base.transpose(0, 1).uniform_(5.0, 6.0)
    assert base.min().item() >= 5.0
    with pytest.raises(RuntimeError):
        oc.zeros(3, device=device).normal_(0.0, -1.0)
    with pytest.raises(RuntimeError):
        oc.zeros(3, device=device).uniform_(2.0, 1.0)
    with pytest.raises(RuntimeError):
        oc.zeros(3, device=device).exponential_(0.0)
    with pytest.raises(TypeError):  # orchard.DTypeError (PyTorch raises NotImplementedError)
        oc.zeros(3, dtype=oc.int64, device=device).normal_()
    leaf = oc.zeros(3, device=device).requires_grad_()
    with pytest.raises(RuntimeError):
        leaf.normal_()
    with oc.no_grad():
        leaf.normal_()  # as nn.init does
    assert leaf.requires_grad


def test_random_integers_in_place(device):
    oc.manual_seed(6)
    x = oc.empty(4000, dtype=oc.int64, device=device)
    assert x.random_(5) is x
    assert sorted(set(x.tolist())) == [0, 1, 2, 3, 4]
    x.random_(-3, 3)
    assert x.min().item() == -3 and x.max().item() == 2
    x.random_()
    assert x.min().item() >= 0 and x.float().mean().item() == pytest.approx(2**62, rel=0.1)
    f = oc.empty(4000, dtype=oc.float16, device=device).random_()
    assert f.min().item() >= 0 and f.max().item() <= 2**11
    b = oc.empty(100, dtype=oc.bool, device=device).random_()
    assert set(b.tolist()) == {False, True}
    x.random_(2**62, None)
    assert x.min().item() >= 2**62
    with pytest.raises(RuntimeError):
        x.random_(3, 3)


def test_0d_inputs_match_torch(device):
    for f in (lambda m, x: m.topk(x, 0), lambda m, x: m.topk(x, 1), lambda m, x: m.sort(x, descending=True)):
        x = oc.tensor(3.0, device=device).requires_grad_()
        tx = torch.tensor(3.0, requires_grad=True)
        got, want = f(oc, x), f(torch, tx)
        assert got.values.shape == () and got.values.item() == want.values.item() and got.indices.item() == 0
        got.values.backward()
        want.values.backward()
        assert x.grad.item() == tx.grad.item()
    x = oc.tensor(3.0, device=device).requires_grad_()
    oc.cumsum(x, 0).backward()
    assert x.grad.item() == 1.0 and oc.flip(x, (0,)).item() == 3.0
