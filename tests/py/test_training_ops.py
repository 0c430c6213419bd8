"""Fused training ops (layer norm, cross-entropy, AdamW step) against PyTorch."""
import numpy as np
import pytest
import torch

import orchard as oc
from orchard import _core


def _pair(shape, seed, dtype=np.float32):
    a = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return oc.tensor(a).requires_grad_(), torch.tensor(a, requires_grad=True)


@pytest.mark.parametrize("shape,k", [((4, 7), 1), ((2, 3, 33), 1), ((2, 5, 6), 2), ((1, 1), 1)])
def test_layer_norm_matches_torch(shape, k):
    x, tx = _pair(shape, 0)
    w, tw = _pair(shape[-k:], 1)
    b, tb = _pair(shape[-k:], 2)
    y = _core.layer_norm(x, w, b, 1e-5)
    ty = torch.nn.functional.layer_norm(tx, shape[-k:], tw, tb, 1e-5)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    y.backward(oc.tensor(g))
    ty.backward(torch.tensor(g))
    for ours, ref in [(x, tx), (w, tw), (b, tb)]:
        np.testing.assert_allclose(ours.grad.numpy(), ref.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_layer_norm_gradcheck_float64():
    x = oc.randn(3, 5, dtype=oc.float64).requires_grad_()
    w = oc.randn(5, dtype=oc.float64).requires_grad_()
    b = oc.randn(5, dtype=oc.float64).requires_grad_()
    assert oc.autograd.gradcheck(lambda x, w, b: _core.layer_norm(x, w, b, 1e-5), [x, w, b])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch_with_ignore_index(reduction):
    logits, tlogits = _pair((6, 11), 4)
    targets = np.array([3, 0, -100, 10, 5, -100], dtype=np.int64)
    loss = _core.cross_entropy(logits, oc.tensor(targets), -100, reduction)
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.tensor(targets), ignore_index=-100, reduction=reduction)
    np.testing.assert_allclose(loss.detach().numpy(), tloss.detach().numpy(), rtol=1e-5, atol=1e-6)
    (loss.sum() if reduction == "none" else loss).backward()
    (tloss.sum() if reduction == "none" else tloss).backward()
    np.testing.assert_allclose(logits.grad.numpy(), tlogits.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_cross_entropy_is_finite_for_huge_logits():
    logits = oc.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]])
    loss = _core.cross_entropy(logits, oc.tensor([0, 1]), -100, "none")
    assert np.isfinite(loss.numpy()).all()


def test_cross_entropy_rejects_bad_targets():
    with pytest.raises(IndexError, match="out of bounds|must lie in"):
        _core.cross_entropy(oc.zeros(2, 3), oc.tensor([0, 3]), -100, "mean")
    with pytest.raises(IndexError):
        _core.cross_entropy(oc.zeros(2, 3), oc.tensor([0, -2]), -100, "mean")
    with pytest.raises(ValueError, match="expected logits"):
        _core.cross_entropy(oc.zeros(2, 3), oc.tensor([0, 1, 2]), -100, "mean")
    with pytest.raises(ValueError, match="reduction"):
        _core.cross_entropy(oc.zeros(2, 3), oc.tensor([0, 1]), -100, "avg")


def test_adamw_step_matches_torch_over_several_steps():
    p, tp = _pair((17, 3), 5)
    opt = torch.optim.AdamW([tp], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    m, v = oc.zeros(17, 3), oc.zeros(17, 3)
    for step in range(1, 6):
        g = np.random.default_rng(10 + step).standard_normal((17, 3)).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        with oc.no_grad():
            _core.adamw_step(p, oc.tensor(g), m, v, 1e-2, 0.9, 0.95, 1e-8, 0.1, step)
    np.testing.assert_allclose(p.detach().numpy(), tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_adamw_step_validates_its_arguments():
    p = oc.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        _core.adamw_step(p, oc.zeros(4), oc.zeros(3), oc.zeros(3), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    with pytest.raises(ValueError, match="step counts from 1"):
        _core.adamw_step(p, oc.zeros(3), oc.zeros(3), oc.zeros(3), 1e-3, 0.9, 0.999, 1e-8, 0.0, 0)
