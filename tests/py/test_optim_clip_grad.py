"""orchard.nn.utils' gradient clipping against torch.nn.utils: the same gradients give the same total norm
(a 0-d tensor) and the same clipped gradients; non-finite gradients follow mathematics."""
import math

import numpy as np
import pytest
import torch

import orchard as oc
from orchard.nn import utils

SHAPES = [(5, 3), (7,), (2, 3, 4)]


def pair(device, scale=1.0, special=None):
    rng = np.random.default_rng(3)
    grads = [(rng.standard_normal(s) * scale).astype(np.float32) for s in SHAPES]
    if special is not None:
        grads[1][2] = special
    ours, theirs = [], []
    for g in grads:
        p, tp = oc.zeros(*g.shape, device=device).requires_grad_(), torch.zeros(g.shape, requires_grad=True)
        p.grad, tp.grad = oc.tensor(g, device=device), torch.tensor(g)
        ours.append(p)
        theirs.append(tp)
    return ours, theirs


def assert_grads_close(ours, theirs):
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.cpu().numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, -math.inf, 0.0, 3.5, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(device, norm_type, max_norm):
    ours, theirs = pair(device)
    norm = utils.clip_grad_norm_((p for p in ours), max_norm, norm_type=norm_type)
    tnorm = torch.nn.utils.clip_grad_norm_((p for p in theirs), max_norm, norm_type=norm_type)
    assert isinstance(norm, oc.Tensor) and norm.shape == () and norm.dtype == oc.float32 and norm.device == device
    assert norm.item() == pytest.approx(tnorm.item(), rel=1e-5)
    assert_grads_close(ours, theirs)


def test_a_single_tensor_and_parameters_without_gradients(device):
    ours, theirs = pair(device)
    ours[1].grad = theirs[1].grad = None
    assert utils.clip_grad_norm_(ours, 1.0).item() == pytest.approx(
        torch.nn.utils.clip_grad_norm_(theirs, 1.0).item(), rel=1e-6)
    assert_grads_close([ours[0], ours[2]], [theirs[0], theirs[2]])
    norm = utils.clip_grad_norm_(ours[0], 0.1)
    assert norm.item() == pytest.approx(torch.nn.utils.clip_grad_norm_(theirs[0], 0.1).item(), rel=1e-6)
    assert_grads_close(ours[:1], theirs[:1])


def test_no_gradients_give_a_zero_norm():
    p = oc.zeros(3).requires_grad_()
    norm = utils.clip_grad_norm_([p], 1.0)
    assert norm.shape == () and norm.item() == 0.0
    assert torch.nn.utils.clip_grad_norm_([torch.zeros(3, requires_grad=True)], 1.0).item() == 0.0


@pytest.mark.parametrize("special", [math.inf, -math.inf, math.nan])
def test_non_finite_gradients(device, special):
    ours, _ = pair(device, special=special)
    norm = utils.clip_grad_norm_(ours, 1.0)
    assert math.isnan(norm.item()) if math.isnan(special) else norm.item() == math.inf
    # Scaled by max_norm / inf = 0 or by NaN: finite gradients become 0 or NaN, as in PyTorch
    finite = ours[0].grad.cpu().numpy()
    assert np.isnan(finite).all() if math.isnan(special) else (finite == 0).all()
    ours, _ = pair(device, special=special)
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    np.testing.assert_array_equal(ours[0].grad.cpu().numpy(), pair(device)[0][0].grad.cpu().numpy())


def test_large_gradients_do_not_overflow_the_norm(device):
    ours, theirs = pair(device, scale=1e18)
    norm = utils.clip_grad_norm_(ours, 1.0, norm_type=1)
    assert norm.item() == pytest.approx(torch.nn.utils.clip_grad_norm_(theirs, 1.0, norm_type=1).item(), rel=1e-5)


def test_get_total_norm_and_clip_grads_with_norm(device):
    ours, theirs = pair(device)
    total = utils.get_total_norm([p.grad for p in ours], 3.0)
    ttotal = torch.nn.utils.get_total_norm([p.grad for p in theirs], 3.0)
    assert total.item() == pytest.approx(ttotal.item(), rel=1e-5)
    utils.clip_grads_with_norm_(ours, 0.2, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 0.2, ttotal)
    assert_grads_close(ours, theirs)


def test_clip_grad_value_matches_torch(device):
    ours, theirs = pair(device)
    assert utils.clip_grad_value_(ours, 0.3) is None
    torch.nn.utils.clip_grad_value_(theirs, 0.3)
    assert_grads_close(ours, theirs)
