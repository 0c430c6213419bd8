"""orchard._amp_foreach_non_finite_check_and_unscale_ against torch's: the unscaled values bit for bit, the
found-inf flag for inf, -inf and NaN wherever they sit, empty tensors and lists, strided views, and the
errors, on every device and float dtype."""
import numpy as np
import pytest
import torch

import orchard as oc
from conftest import FLOAT_DTYPES, from_numpy, random_array, require, to_torch

unscale_ = oc._amp_foreach_non_finite_check_and_unscale_
INV_SCALE = float(np.float32(1 / 3))  # not a power of two, so the products round
SPECIALS = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}


def bits(values):
    """Values as float64 bit patterns with every NaN alike: equal exactly when the values, signed zeros
    included, are."""
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isnan(arr), np.nan, arr).view(np.int64)


def pair(arrays, dtype, device):
    """Orchard tensors on device and torch CPU tensors holding the same dtype values."""
    return [from_numpy(a, dtype, device) for a in arrays], [to_torch(a, dtype) for a in arrays]


def run_both(ours, theirs, device, found=0.0, inv_scale=INV_SCALE):
    """Runs both ops from found_inf = found; returns (our flag, torch's flag)."""
    found_inf, tfound_inf = oc.full([1], found, device=device), torch.full([1], found)
    unscale_(ours, found_inf, oc.full([1], inv_scale, device=device))
    torch._amp_foreach_non_finite_check_and_unscale_(theirs, tfound_inf, torch.full([1], inv_scale))
    return found_inf.item(), tfound_inf.item()


def assert_same_values(ours, theirs):
    for i, (t, tt) in enumerate(zip(ours, theirs)):
        assert tuple(t.shape) == tuple(tt.shape)
        np.testing.assert_array_equal(bits(t.float().cpu().numpy()), bits(tt.float().numpy()), err_msg=f"tensor {i}")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_finite_gradients_match_torch(device, dtype):
    rng = np.random.default_rng(0)
    arrays = [random_array(rng, s, dtype, -1e3, 1e3) for s in [(7, 5), (33,), (), (2, 3, 4)]]
    arrays[1][[0, -1]] = [0.0, -0.0]
    ours, theirs = pair(arrays, dtype, device)
    assert run_both(ours, theirs, device) == (0.0, 0.0)
    assert_same_values(ours, theirs)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("kind", SPECIALS)
@pytest.mark.parametrize("position", [0, 40_000, -1])
def test_a_non_finite_element_anywhere_raises_the_flag(device, dtype, kind, position):
    """One special value in the second of three gradients, the large one (several CPU chunks, many
    threadgroups), at its first, a middle or its last element; the others are unscaled all the same."""
    rng = np.random.default_rng(1)
    arrays = [random_array(rng, s, dtype) for s in [(3,), (70_001,), (4, 4)]]
    arrays[1][position] = SPECIALS[kind]
    ours, theirs = pair(arrays, dtype, device)
    assert run_both(ours, theirs, device) == (1.0, 1.0)
    assert_same_values(ours, theirs)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_the_flag_is_only_ever_set(device, dtype):
    """found_inf is written 1.0 on an inf or NaN and left as it was otherwise (never cleared)."""
    require(device, dtype)
    for start, special, want in [(0.25, None, 0.25), (1.0, None, 1.0), (0.25, np.nan, 1.0), (1.0, np.inf, 1.0)]:
        arr = np.array([1.0, 2.0, 3.0] if special is None else [1.0, special, 3.0])
        ours, theirs = pair([arr], dtype, device)
        assert run_both(ours, theirs, device, found=start) == (want, want)


def test_products_that_overflow_are_not_reported(device):
    """The check is of the scaled values the op reads, not of the products (PyTorch's rule)."""
    ours, theirs = pair([np.array([3e38, -3e38, 1.0], np.float32)], oc.float32, device)
    assert run_both(ours, theirs, device, inv_scale=4.0) == (0.0, 0.0)
    assert_same_values(ours, theirs)
    assert ours[0].tolist() == [np.inf, -np.inf, 4.0]


def test_mixed_dtypes_and_empty_tensors_in_one_call(device):
    dtypes = [d for d in FLOAT_DTYPES if d != oc.float64 or device == "cpu"]
    rng = np.random.default_rng(2)
    arrays = [random_array(rng, (5, 3), d) for d in dtypes] + [np.zeros((0,)), np.zeros((3, 0))]
    arrays[-3][-1, -1] = np.nan
    ours = [from_numpy(a, d, device) for a, d in zip(arrays, dtypes + [oc.float32, oc.float16])]
    theirs = [to_torch(a, d) for a, d in zip(arrays, dtypes + [oc.float32, oc.float16])]
    assert run_both(ours, theirs, device) == (1.0, 1.0)
    assert_same_values(ours, theirs)


def test_an_empty_list_does_nothing(device):
    """As PyTorch, which then checks nothing either: not even found_inf's dtype."""
    found_inf = oc.zeros(1, dtype=oc.float16, device=device)
    version = found_inf._version
    unscale_([], found_inf, oc.ones(3, device=device))
    torch._amp_foreach_non_finite_check_and_unscale_([], torch.zeros(1, dtype=torch.float16), torch.ones(3))
    assert found_inf.item() == 0 and found_inf._version == version


def test_strided_views_are_unscaled_in_place(device):
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    base[3, 4] = np.inf  # inside the column slice below
    ours_base, theirs_base = oc.tensor(base, device=device), torch.tensor(base)
    ours = [ours_base.T, ours_base[:, 1::3]]
    theirs = [theirs_base.T, theirs_base[:, 1::3]]
    # The two views overlap: both op apply them one after the other.
    assert run_both(ours, theirs, device) == (1.0, 1.0)
    assert_same_values([ours_base], [theirs_base])


def test_version_counters_are_bumped(device):
    """Unlike PyTorch's (which leaves them), so autograd notices a tensor it saved was unscaled."""
    grads = [oc.ones(3, device=device), oc.ones(0, device=device)]
    found_inf, inv_scale = oc.zeros(1, device=device), oc.full([1], 0.5, device=device)
    before = [t._version for t in grads + [found_inf, inv_scale]]
    unscale_(grads, found_inf, inv_scale)
    after = [t._version for t in grads + [found_inf, inv_scale]]
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1, 0]


def test_autograd_sees_the_write():
    x = oc.ones(3).requires_grad_()
    y = x * 2
    z = y * y  # saves y
    unscale_([y], oc.zeros(1), oc.full([1], 0.5))
    assert y.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.sum().backward()


def torch_error(call):
    try:
        call()
    except Exception as e:
        return type(e)
    return None


# (what is wrong, our arguments, torch's arguments, the message we raise)
def _flag_cases():
    g, tg = lambda: [oc.ones(2)], lambda: [torch.ones(2)]
    one, tone = lambda **kw: oc.ones(1, **kw), lambda **kw: torch.ones(1, **kw)
    return [
        ("found_inf float64", (g, lambda: one(dtype=oc.float64), one), (tg, lambda: tone(dtype=torch.float64), tone),
         "found_inf must be a float32 tensor, got float64"),
        ("found_inf int64", (g, lambda: one(dtype=oc.int64), one), (tg, lambda: tone(dtype=torch.int64), tone),
         "found_inf must be a float32 tensor, got int64"),
        ("found_inf of 2", (g, lambda: oc.zeros(2), one), (tg, lambda: torch.zeros(2), tone),
         r"found_inf must be a 1-element tensor, got shape \[2\]"),
        ("inv_scale float16", (g, one, lambda: one(dtype=oc.float16)), (tg, tone, lambda: tone(dtype=torch.float16)),
         "inv_scale must be a float32 tensor, got float16"),
        ("inv_scale empty", (g, one, lambda: oc.ones(0)), (tg, tone, lambda: torch.ones(0)),
         r"inv_scale must be a 1-element tensor, got shape \[0\]"),
    ]


@pytest.mark.parametrize("case", _flag_cases(), ids=lambda c: c[0])
def test_flag_and_scale_errors_as_torch(case):
    _, ours, theirs, message = case
    assert torch_error(lambda: torch._amp_foreach_non_finite_check_and_unscale_(*(f() for f in theirs))) \
        is RuntimeError
    with pytest.raises(RuntimeError, match=message):
        unscale_(*(f() for f in ours))


def test_a_zero_dim_flag_and_scale_are_taken():
    g, tg = [oc.tensor([np.inf])], [torch.tensor([np.inf])]
    found_inf, tfound_inf = oc.zeros(()), torch.zeros(())
    unscale_(g, found_inf, oc.tensor(2.0))
    torch._amp_foreach_non_finite_check_and_unscale_(tg, tfound_inf, torch.tensor(2.0))
    assert found_inf.item() == tfound_inf.item() == 1.0


def test_flag_and_scale_may_be_views(device):
    """found_inf and inv_scale as elements inside larger tensors: only those elements are read and written."""
    flags, scales = oc.zeros(3, device=device), oc.tensor([5.0, 0.25, 7.0], device=device)
    grads = [oc.tensor([4.0, np.nan], device=device)]
    unscale_(grads, flags[1:2], scales[1])
    assert flags.tolist() == [0.0, 1.0, 0.0] and scales.tolist() == [5.0, 0.25, 7.0]
    assert grads[0].tolist()[0] == 1.0


@pytest.mark.parametrize("dtype", [oc.int64, oc.int32, oc.bool])
def test_non_float_gradients_are_refused(device, dtype):
    """orchard.DTypeError, a TypeError (PyTorch raises NotImplementedError); nothing is written, not even
    to the float gradient before it."""
    good = oc.ones(2, device=device)
    found_inf = oc.zeros(1, device=device)
    versions = good._version, found_inf._version
    with pytest.raises(oc.DTypeError, match=r"gradient dtype must be floating point, got"):
        unscale_([good, oc.ones(2, dtype=dtype, device=device)], found_inf, oc.full([1], 0.5, device=device))
    assert torch_error(lambda: torch._amp_foreach_non_finite_check_and_unscale_(
        [torch.ones(2, dtype=getattr(torch, str(dtype).split(".")[-1]))], torch.zeros(1), torch.ones(1))) \
        is NotImplementedError
    assert good.tolist() == [1.0, 1.0] and (good._version, found_inf._version) == versions


def test_arguments_that_are_not_lists_of_tensors_are_type_errors():
    for grads, tgrads in [([1.0], [1.0]), (oc.ones(2), torch.ones(2))]:
        assert torch_error(lambda: torch._amp_foreach_non_finite_check_and_unscale_(
            tgrads, torch.zeros(1), torch.ones(1))) is TypeError
        with pytest.raises(TypeError, match="expected a list or tuple of tensors"):
            unscale_(grads, oc.zeros(1), oc.ones(1))
    unscale_((oc.ones(2),), oc.zeros(1), oc.ones(1))  # a tuple is a list of tensors


def test_expanded_gradients_are_refused():
    """ValueError, as every in-place op of Orchard on an expanded tensor (PyTorch raises RuntimeError)."""
    with pytest.raises(ValueError, match="cannot write in place to an expanded tensor"):
        unscale_([oc.ones(1).expand(3)], oc.zeros(1), oc.ones(1))


@pytest.mark.skipif(not oc.metal.is_available(), reason="needs the Metal device")
def test_tensors_on_two_devices_are_refused():
    """RuntimeError, as PyTorch's CUDA kernel raises for a CPU flag or scale, or gradients on two devices."""
    metal = lambda *s: oc.ones(*s, device="metal")  # noqa: E731
    cases = [
        (([metal(2)], oc.zeros(1), metal(1)), "found_inf is on cpu but must be on the gradients' device, metal"),
        (([metal(2)], metal(1), oc.ones(1)), "inv_scale is on cpu but must be on the gradients' device, metal"),
        (([metal(2), oc.ones(2)], metal(1), metal(1)), "gradient 1 is on cpu but gradient 0 on metal"),
        (([oc.ones(2)], metal(1), metal(1)), "found_inf is on metal but must be on the gradients' device, cpu"),
    ]
    for args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            unscale_(*args)
