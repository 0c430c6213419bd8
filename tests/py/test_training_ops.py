"""Fused training ops (layer norm, cross-entropy, dropout, AdamW step) against PyTorch or their
definitions, on every device."""
import numpy as np
import pytest
import torch

import orchard as oc
from orchard import _core
from orchard.nn import functional as F
from conftest import (FLOAT_DTYPES, FROM_TORCH, TOLERANCE, TORCH_DTYPE, assert_close, from_numpy, make_tensor, random_array, require,
                      to_numpy, to_torch)

# 16-bit dtypes compute in float32 and round once, but a gradient's terms can cancel: relative to the
# largest value of the result, a few ulps of the dtype.
GRAD_TOLERANCE = {oc.float16: 4e-3, oc.bfloat16: 3e-2, oc.float32: 1e-4}
TRAINING_DTYPES = [oc.float16, oc.bfloat16, oc.float32]


def _pair(shape, seed, device="cpu", dtype=np.float32):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return oc.tensor(a, device=device).requires_grad_(), torch.tensor(a, requires_grad=True)


def _typed_pair(rng, shape, dtype, device, low=-3.0, high=3.0):
    """(orchard leaf on device, float64 torch leaf) holding the same values of `dtype`."""
    arr = random_array(rng, shape, dtype, low, high)
    return from_numpy(arr, dtype, device).requires_grad_(), torch.tensor(arr, dtype=torch.float64, requires_grad=True)


def _assert_grad_close(ours, ref, dtype, msg=""):
    """Our gradient against a float64 one, to GRAD_TOLERANCE of the gradient's largest value."""
    want = ref.detach().cpu().numpy()
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    assert_close(ours, want, dtype, rtol=GRAD_TOLERANCE[dtype], atol=GRAD_TOLERANCE[dtype] * scale, msg=msg)


@pytest.mark.parametrize("shape,k", [((4, 7), 1), ((2, 3, 33), 1), ((2, 5, 6), 2), ((1, 1), 1)])
def test_layer_norm_matches_torch(device, shape, k):
    x, tx = _pair(shape, 0, device)
    w, tw = _pair(shape[-k:], 1, device)
    b, tb = _pair(shape[-k:], 2, device)
    y = _core.layer_norm(x, w, b, 1e-5)
    ty = torch.nn.functional.layer_norm(tx, shape[-k:], tw, tb, 1e-5)
    np.testing.assert_allclose(y.detach().cpu().numpy(), ty.detach().cpu().numpy(), rtol=1e-5, atol=1e-5)
    g = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    y.backward(oc.tensor(g, device=device))
    ty.backward(torch.tensor(g))
    for ours, ref in [(x, tx), (w, tw), (b, tb)]:
        assert ours.grad.device == device
        np.testing.assert_allclose(ours.grad.cpu().numpy(), ref.grad.cpu().numpy(), rtol=1e-4, atol=1e-4)


# Row lengths around the simdgroup (32) and threadgroup (256) widths; rows both under and over the
# row block of the weight/bias gradient sums (32), and not multiples of the rows per threadgroup.
@pytest.mark.parametrize("dtype", TRAINING_DTYPES)
@pytest.mark.parametrize("rows,n", [(3, 1), (5, 31), (2, 32), (40, 33), (1, 255), (3, 256), (70, 257), (2, 1025)])
def test_layer_norm_dtypes_and_row_lengths(device, dtype, rows, n):
    rng = np.random.default_rng(rows * 10000 + n)
    x, tx = _typed_pair(rng, (rows, n), dtype, device, -4.0, 6.0)
    w, tw = _typed_pair(rng, (n,), dtype, device)
    b, tb = _typed_pair(rng, (n,), dtype, device)
    y = oc.nn.functional.layer_norm(x, n, w, b, eps=1e-5)
    ty = torch.nn.functional.layer_norm(tx, (n,), tw, tb, 1e-5)
    # float32: (x - mean) * rstd * w + b may cancel to near 0 from terms of ~10
    kw = dict(rtol=1e-5, atol=1e-5) if dtype == oc.float32 else {}
    assert_close(y, ty.detach().cpu().numpy(), dtype, **kw, device=device)
    g = random_array(rng, (rows, n), dtype)
    y.backward(from_numpy(g, dtype, device))
    ty.backward(torch.tensor(g, dtype=torch.float64))
    for name, ours, ref in [("dx", x, tx), ("dweight", w, tw), ("dbias", b, tb)]:
        _assert_grad_close(ours.grad, ref.grad, dtype, msg=f"{name} of {rows}x{n}")


@pytest.mark.parametrize("dtype", [oc.float16, oc.bfloat16])
def test_layer_norm_of_a_16_bit_input_with_float32_parameters_matches_torch(device, dtype):
    """As autocast leaves it: computed in float32 and rounded once to the input's dtype."""
    rng = np.random.default_rng(7)
    tx = torch.tensor(rng.uniform(-3, 3, (6, 40))).to(TORCH_DTYPE[dtype]).requires_grad_()
    tw, tb = (torch.tensor(rng.uniform(-2, 2, 40), dtype=torch.float32, requires_grad=True) for _ in range(2))
    x, w, b = (oc.from_dlpack(t.detach().clone()).to(device).requires_grad_() for t in (tx, tw, tb))
    y, ty = oc.nn.functional.layer_norm(x, 40, w, b), torch.nn.functional.layer_norm(tx, (40,), tw, tb)
    assert y.dtype == dtype and w.dtype == oc.float32
    np.testing.assert_array_equal(y.float().cpu().numpy(), ty.float().detach().cpu().numpy())
    y.float().sum().backward()
    ty.float().sum().backward()
    for ours, ref in [(x, tx), (w, tw), (b, tb)]:
        assert ours.grad.dtype == FROM_TORCH[ref.grad.dtype]
        np.testing.assert_allclose(ours.grad.float().cpu().numpy(), ref.grad.float().cpu().numpy(), rtol=2e-2, atol=2e-2)


def test_layer_norm_refuses_other_dtype_mixes():
    with pytest.raises(oc.DTypeError, match=r"weight \(bfloat16\).*must have the input's dtype \(float32\)"):
        oc.nn.functional.layer_norm(oc.ones(2, 3), 3, oc.ones(3, dtype=oc.bfloat16), oc.ones(3, dtype=oc.bfloat16))


def test_layer_norm_gradcheck_float64():
    x = oc.randn(3, 5, dtype=oc.float64).requires_grad_()
    w = oc.randn(5, dtype=oc.float64).requires_grad_()
    b = oc.randn(5, dtype=oc.float64).requires_grad_()
    assert oc.autograd.gradcheck(lambda x, w, b: _core.layer_norm(x, w, b, 1e-5), [x, w, b])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch_with_ignore_index(device, reduction):
    logits, tlogits = _pair((6, 11), 4, device)
    targets = np.array([3, 0, -100, 10, 5, -100], dtype=np.int64)
    loss = _core.cross_entropy(logits, oc.tensor(targets, device=device), -100, reduction)
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.tensor(targets), ignore_index=-100, reduction=reduction)
    np.testing.assert_allclose(loss.detach().cpu().numpy(), tloss.detach().cpu().numpy(), rtol=1e-5, atol=1e-6)
    (loss.sum() if reduction == "none" else loss).backward()
    (tloss.sum() if reduction == "none" else tloss).backward()
    assert logits.grad.device == device
    np.testing.assert_allclose(logits.grad.cpu().numpy(), tlogits.grad.cpu().numpy(), rtol=1e-5, atol=1e-6)


# Class counts around the simdgroup and threadgroup widths; every third row ignored.
@pytest.mark.parametrize("dtype", TRAINING_DTYPES)
@pytest.mark.parametrize("rows,classes", [(4, 1), (7, 31), (3, 32), (9, 33), (2, 255), (5, 256), (3, 257), (2, 1025)])
def test_cross_entropy_dtypes_and_class_counts(device, dtype, rows, classes):
    rng = np.random.default_rng(rows * 10000 + classes)
    logits, tlogits = _typed_pair(rng, (rows, classes), dtype, device, -8.0, 8.0)
    targets = rng.integers(0, classes, size=rows)
    targets[::3] = -1
    loss = oc.nn.functional.cross_entropy(logits, oc.tensor(targets, device=device), ignore_index=-1, reduction="none")
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.tensor(targets), ignore_index=-1, reduction="none")
    assert_close(loss, tloss.detach().cpu().numpy(), dtype, device=device)
    g = random_array(rng, (rows,), dtype)
    loss.backward(from_numpy(g, dtype, device))
    tloss.backward(torch.tensor(g, dtype=torch.float64))
    _assert_grad_close(logits.grad, tlogits.grad, dtype, msg=f"{rows}x{classes}")
    assert not to_numpy(logits.grad)[::3].any()  # ignored rows


@pytest.mark.parametrize("dtype", TRAINING_DTYPES)
def test_cross_entropy_is_finite_for_huge_logits(device, dtype):
    values = [[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]]
    logits = oc.tensor(values, device=device).to(dtype).requires_grad_()
    tlogits = torch.tensor(values, dtype=TORCH_DTYPE[dtype]).double().requires_grad_()
    targets = [0, 1, 2]
    loss = _core.cross_entropy(logits, oc.tensor(targets, device=device), -100, "none")
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.tensor(targets), reduction="none")
    assert np.isfinite(loss.float().cpu().numpy()).all()
    assert_close(loss, tloss.detach().cpu().numpy(), dtype, device=device)
    loss.sum().backward()
    tloss.sum().backward()
    assert np.isfinite(logits.grad.float().cpu().numpy()).all()
    # softmax = exp(x - lse) with a float32 lse near 1e4 (ulp ~1e-3): a few 1e-4 off in any dtype
    assert_close(logits.grad, tlogits.grad.cpu().numpy(), dtype, rtol=2e-3, atol=1e-3, device=device)


def test_cross_entropy_rejects_bad_targets(device):
    zeros = oc.zeros(2, 3, device=device)
    with pytest.raises(IndexError, match="out of bounds|must lie in"):
        _core.cross_entropy(zeros, oc.tensor([0, 3], device=device), -100, "mean")
    with pytest.raises(IndexError):
        _core.cross_entropy(zeros, oc.tensor([0, -2], device=device), -100, "mean")
    with pytest.raises(ValueError, match="expected logits"):
        _core.cross_entropy(zeros, oc.tensor([0, 1, 2], device=device), -100, "mean")
    with pytest.raises(ValueError, match="reduction"):
        _core.cross_entropy(zeros, oc.tensor([0, 1], device=device), -100, "avg")


def test_adamw_step_matches_torch_over_several_steps(device):
    p, tp = _pair((17, 3), 5, device)
    opt = torch.optim.AdamW([tp], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    m, v = oc.zeros(17, 3, device=device), oc.zeros(17, 3, device=device)
    for step in range(1, 6):
        g = np.random.default_rng(10 + step).standard_normal((17, 3)).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        with oc.no_grad():
            _core.adamw_step(p, oc.tensor(g, device=device), m, v, 1e-2, 0.9, 0.95, 1e-8, 0.1, step)
    assert p.device == device
    np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().cpu().numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", TRAINING_DTYPES)
def test_adamw_optimizer_16bit_params_keep_float32_moments(device, dtype):
    # The reference follows the kernel's rule in float32, rounding the parameter to its dtype after
    # each step; 300 elements span more than one threadgroup.
    rng = np.random.default_rng(7)
    w0 = random_array(rng, (300,), dtype)
    p = from_numpy(w0, dtype, device).requires_grad_()
    opt = oc.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.05)
    ref, m, v = w0.astype(np.float32), np.zeros(300, np.float32), np.zeros(300, np.float32)
    for step in range(1, 4):
        g = random_array(rng, (300,), dtype)
        p.grad = from_numpy(g, dtype, device)
        g = g.astype(np.float32)
        opt.step()
        m = np.float32(0.9) * m + np.float32(0.1) * g
        v = np.float32(0.99) * v + np.float32(0.01) * g * g
        denom = np.sqrt(v) / np.float32(np.sqrt(1 - 0.99**step)) + np.float32(1e-6)
        ref = ref * np.float32(1 - 1e-2 * 0.05) - np.float32(1e-2 / (1 - 0.9**step)) * m / denom
        ref = np.asarray(to_torch(ref, dtype).float().cpu().numpy())
    state = opt.state[p]
    assert state["exp_avg"].dtype == oc.float32 and state["exp_avg"].device == device
    r, a = TOLERANCE[dtype]
    assert_close(state["exp_avg"], m, oc.float32, rtol=1e-6, atol=1e-7, device=device)
    assert_close(state["exp_avg_sq"], v, oc.float32, rtol=1e-6, atol=1e-7, device=device)
    assert_close(p.detach(), ref, dtype, rtol=r, atol=a, device=device)


def test_adamw_step_validates_its_arguments(device):
    p = oc.zeros(3, device=device)
    z3 = oc.zeros(3, device=device)
    with pytest.raises(ValueError, match="shape"):
        _core.adamw_step(p, oc.zeros(4, device=device), z3, z3, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="step counts from 1"):
        _core.adamw_step(p, z3, z3, z3, 1e-3, 0.9, 0.999, 1e-8, 0.0, 0)


# ---- dropout -------------------------------------------------------------------------------------

def _dropout(x, p, seed):
    oc.manual_seed(seed)
    return F.dropout(x, p)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keep_fraction_and_scaling(device, dtype, p):
    require(device, dtype)
    y = to_numpy(_dropout(oc.ones(20_003, dtype=dtype, device=device), p, 1))
    kept = np.unique(y[y != 0])
    assert len(kept) == 1
    np.testing.assert_allclose(kept, 1 / (1 - p), rtol=TOLERANCE[dtype][0])
    assert abs((y != 0).mean() - (1 - p)) < 0.01


@pytest.mark.skipif(not oc.metal.is_available(), reason="needs the Metal device (GPU or emulator)")
@pytest.mark.parametrize("dtype", [oc.float16, oc.bfloat16, oc.float32])
def test_dropout_is_bit_identical_on_cpu_and_metal(dtype):
    # 1001 elements after a 7-element draw: an offset inside a Philox block and a ragged tail.
    arr = random_array(np.random.default_rng(0), (7, 143), dtype)
    outs = []
    for device in ("cpu", "metal"):
        oc.manual_seed(11)
        oc.rand(7, device=device)
        outs.append(to_numpy(F.dropout(from_numpy(arr, dtype, device), 0.3)))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_dropout_gradient_is_grad_times_mask(device):
    rng = np.random.default_rng(1)
    x = from_numpy(random_array(rng, (33, 65), oc.float32, 0.5, 2.0), oc.float32, device).requires_grad_()
    y = _dropout(x, 0.4, 5)
    keep = to_numpy(y.detach()) != 0  # x is never 0
    assert_close(y.detach(), np.where(keep, to_numpy(x.detach()) / 0.6, 0.0), oc.float32, rtol=1e-6, atol=0)
    g = random_array(rng, (33, 65), oc.float32)
    y.backward(from_numpy(g, oc.float32, device))
    assert_close(x.grad, np.where(keep, g / 0.6, 0.0), oc.float32, rtol=1e-6, atol=0, device=device)


def test_dropout_repeats_under_manual_seed_and_advances_otherwise(device):
    x = oc.ones(1000, device=device)
    a = to_numpy(_dropout(x, 0.5, 3))
    np.testing.assert_array_equal(to_numpy(_dropout(x, 0.5, 3)), a)
    assert not np.array_equal(to_numpy(F.dropout(x, 0.5)), a)
    assert not np.array_equal(to_numpy(_dropout(x, 0.5, 4)), a)


@pytest.mark.parametrize("layout", ["strided", "transposed", "expanded", "offset"])
def test_dropout_of_a_view_masks_its_row_major_elements(device, layout):
    x, arr = make_tensor(np.random.default_rng(2), (9, 17), oc.float32, layout, device)
    y = _dropout(x, 0.5, 8)
    assert_close(y, to_numpy(_dropout(from_numpy(arr, oc.float32, device), 0.5, 8)), exact=True)


def test_dropout_special_cases(device):
    x = oc.tensor([1.0, -2.0, float("nan"), 4.0], device=device).requires_grad_()
    for same in (F.dropout(x, 0.0), F.dropout(x, 0.7, training=False)):  # x itself, as in PyTorch
        assert same.is_alias_of(x) and same.requires_grad and same.grad_fn is None
    assert np.isnan(to_numpy(F.dropout(x, 0.5).detach())[2])  # dropped (x * 0) or kept, NaN stays NaN
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(to_numpy(y.detach()), [0.0, -0.0, np.nan, 0.0])  # x * 0, as PyTorch
    y.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [0.0] * 4)
    assert F.dropout(oc.ones(0, 3, device=device), 0.5).shape == (0, 3)


def test_dropout_rejects_bad_arguments(device):
    x = oc.ones(3, device=device)
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\]"):
            F.dropout(x, p)
    with pytest.raises(TypeError, match="floating point"):
        F.dropout(oc.ones(3, dtype=oc.int64, device=device), 0.5)
    with pytest.raises(TypeError, match="orchard.Tensor"):
        F.dropout([1.0, 2.0], 0.5)
