"""orchard.amp.GradScaler against torch.amp.GradScaler("cpu"): on the same gradients (clean, inf, NaN) both
skip the same steps, back off and grow the scale at the same steps, and leave the same parameters."""
import math
import warnings

import numpy as np
import pytest
import torch

import orchard as oc
from orchard import amp, optim

DTYPES = [oc.bfloat16, oc.float32]  # parameters and gradients of one optimizer in two dtypes
# The gradient each step sees: finite, or with an inf / -inf / NaN in one place.
SCHEDULE = ["ok", "ok", "inf", "ok", "ok", "ok", "ok", "nan", "ok", "-inf", "inf", "ok", "ok", "ok", "ok", "ok"]


def make(device, growth_interval=3, **kw):
    rng = np.random.default_rng(0)
    inits = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (5,)]]
    ours = [oc.tensor(a, device=device).requires_grad_() for a in inits]
    theirs = [torch.tensor(a, requires_grad=True) for a in inits]
    opt, topt = optim.SGD(ours, lr=0.1, momentum=0.9), torch.optim.SGD(theirs, lr=0.1, momentum=0.9)
    scaler = amp.GradScaler(device, init_scale=2.0 ** 10, growth_interval=growth_interval, **kw)
    tscaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=growth_interval, **kw)
    tscaler.scale(torch.ones(()))  # PyTorch creates its scale lazily, at the first scale()
    return ours, theirs, opt, topt, scaler, tscaler


def set_scaled_grads(ours, theirs, scale, step, kind):
    """Gradients as backward through a loss multiplied by `scale` would leave them."""
    rng = np.random.default_rng(100 + step)
    for i, (p, tp) in enumerate(zip(ours, theirs)):
        g = rng.standard_normal(tuple(p.shape)).astype(np.float32) * np.float32(scale)
        if kind != "ok" and i == 1:
            g[3] = {"inf": np.inf, "-inf": -np.inf, "nan": np.nan}[kind]
        p.grad, tp.grad = oc.tensor(g, device=p.device), torch.tensor(g)


@pytest.mark.parametrize("unscale_first", [False, True])
def test_skip_backoff_and_growth_match_torch(device, unscale_first):
    ours, theirs, opt, topt, scaler, tscaler = make(device)
    scales = []
    for step, kind in enumerate(SCHEDULE):
        set_scaled_grads(ours, theirs, scaler.get_scale(), step, kind)
        if unscale_first:  # as a script that clips the gradients does
            scaler.unscale_(opt)
            tscaler.unscale_(topt)
            for p, tp in zip(ours, theirs):
                np.testing.assert_array_equal(p.grad.cpu().numpy(), tp.grad.numpy())
        assert scaler.step(opt) is None and tscaler.step(topt) is None
        scaler.update()
        tscaler.update()
        scales.append(scaler.get_scale())
        assert scaler.get_scale() == tscaler.get_scale(), f"step {step}"
        assert scaler.state_dict() == tscaler.state_dict()
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().numpy(), rtol=1e-6, atol=1e-7)
    assert scales[:4] == [1024.0, 1024.0, 512.0, 512.0] and max(scales) == 1024.0 and min(scales) == 128.0


def test_scale_and_backward(device):
    ours, theirs, opt, topt, scaler, tscaler = make(device, growth_interval=1)
    x = np.arange(3, dtype=np.float32)
    loss = (ours[0] * oc.tensor(x, device=device)).sum()
    tloss = (theirs[0] * torch.tensor(x)).sum()
    scaled, tscaled = scaler.scale(loss), tscaler.scale(tloss)
    assert scaled.item() == pytest.approx(tscaled.item(), rel=1e-6) and scaled.dtype == oc.float32
    scaled.backward()
    tscaled.backward()
    scaler.step(opt)
    tscaler.step(topt)
    scaler.update()
    tscaler.update()
    assert scaler.get_scale() == tscaler.get_scale() == 2048.0
    np.testing.assert_allclose(ours[0].detach().cpu().numpy(), theirs[0].detach().numpy(), rtol=1e-6)


def test_scale_keeps_dtype_and_nesting(device):
    scaler = amp.GradScaler(device, init_scale=4.0)
    half = oc.tensor([1.0, 2.0], dtype=oc.float16, device=device)
    out = scaler.scale([half, (oc.tensor(3.0, device=device),)])
    assert isinstance(out, list) and isinstance(out[1], tuple)
    assert out[0].dtype == oc.float16 and out[0].tolist() == [4.0, 8.0] and out[1][0].item() == 12.0
    assert [t.item() for t in scaler.scale(iter([oc.tensor(1.0)]))] == [4.0]
    with pytest.raises(ValueError, match="Tensor or an iterable of Tensors"):
        scaler.scale(3.0)
    with pytest.raises(ValueError, match="Tensor or an iterable of Tensors"):
        torch.amp.GradScaler("cpu").scale(3.0)


def test_growth_stops_at_a_finite_scale():
    scaler = amp.GradScaler("cpu", init_scale=2.0 ** 127, growth_interval=1)
    tscaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127, growth_interval=1)
    tscaler.scale(torch.ones(()))
    p, tp = oc.zeros(2).requires_grad_(), torch.zeros(2, requires_grad=True)
    opt, topt = optim.SGD([p], lr=0.1), torch.optim.SGD([tp], lr=0.1)
    for _ in range(2):
        p.grad, tp.grad = oc.ones(2), torch.ones(2)
        scaler.step(opt)
        tscaler.step(topt)
        scaler.update()
        tscaler.update()
        assert scaler.get_scale() == tscaler.get_scale() == 2.0 ** 127


def test_update_with_a_new_scale_and_state_dict_round_trip():
    scaler, tscaler = amp.GradScaler("cpu", growth_interval=7), torch.amp.GradScaler("cpu", growth_interval=7)
    scaler.update(3.3)
    tscaler.scale(torch.ones(1))  # PyTorch creates its scale tensor lazily, at the first scale()
    tscaler.update(3.3)
    assert scaler.get_scale() == tscaler.get_scale() == float(np.float32(3.3))
    scaler.update(oc.tensor(8.0))
    assert scaler.get_scale() == 8.0
    with pytest.raises(AssertionError, match="1-element"):
        scaler.update(oc.tensor([1.0, 2.0]))
    state = scaler.state_dict()
    assert set(state) == set(tscaler.state_dict())
    fresh = amp.GradScaler("cpu")
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    fresh.load_state_dict(tscaler.state_dict())
    assert fresh.state_dict() == tscaler.state_dict()
    with pytest.raises(RuntimeError, match="state dict is empty"):
        fresh.load_state_dict({})


def test_call_order_errors_as_torch():
    ours, theirs, opt, topt, scaler, _ = make("cpu")
    tscaler = torch.amp.GradScaler("cpu")
    for s, o, params in ((scaler, opt, ours), (tscaler, topt, theirs)):
        s.scale(params[0].sum())
        with pytest.raises(AssertionError, match="No inf checks were recorded prior to update"):
            s.update()
        for p in params:
            p.grad = p.detach() * 0 + 1
        s.unscale_(o)
        with pytest.raises(RuntimeError, match="already been called on this optimizer"):
            s.unscale_(o)
        s.step(o)
        with pytest.raises(RuntimeError, match="after step"):
            s.unscale_(o)
        with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
            s.step(o)
        s.update()
        with pytest.raises(RuntimeError, match="Closure use is not currently supported"):
            s.step(o, closure=lambda: None)
        for p in params:
            p.grad = None
        with pytest.raises(AssertionError, match="No inf checks were recorded for this optimizer"):
            s.step(o)


@pytest.mark.parametrize("kind", ["ok", "inf", "nan"])
def test_unscale_is_one_fused_call_per_device_over_mixed_dtypes(device, monkeypatch, kind):
    """bfloat16 and float32 gradients unscaled as PyTorch does (it calls once per dtype, Orchard once per
    device), with one found-inf flag read on the host."""
    rng = np.random.default_rng(5)
    grads = [rng.standard_normal(s).astype(np.float32) * 256 for s in [(3, 4), (6,)]]
    if kind != "ok":
        grads[0][2, 1] = np.inf if kind == "inf" else np.nan
    ours = [oc.zeros(tuple(g.shape), dtype=d, device=device).requires_grad_() for g, d in zip(grads, DTYPES)]
    theirs = [torch.zeros(g.shape, dtype=getattr(torch, str(d).split(".")[-1]), requires_grad=True)
              for g, d in zip(grads, DTYPES)]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad = oc.tensor(g, device=device).to(p.dtype)
        tp.grad = torch.tensor(g).to(tp.dtype)
    calls = []
    fused = amp.grad_scaler._core._amp_foreach_non_finite_check_and_unscale_
    monkeypatch.setattr(amp.grad_scaler._core, "_amp_foreach_non_finite_check_and_unscale_",
                        lambda *args: calls.append(len(args[0])) or fused(*args))
    scaler = amp.GradScaler(device, init_scale=256.0)
    tscaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    tscaler.scale(torch.ones(()))
    opt, topt = optim.SGD(ours, lr=0.1), torch.optim.SGD(theirs, lr=0.1)
    scaler.unscale_(opt)
    tscaler.unscale_(topt)
    assert calls == [2]
    for p, tp in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad.float().cpu().numpy(), tp.grad.float().numpy())
    scaler.step(opt)
    tscaler.step(topt)
    scaler.update()
    tscaler.update()
    assert scaler.get_scale() == tscaler.get_scale() == (256.0 if kind == "ok" else 128.0)
    for p, tp in zip(ours, theirs):
        np.testing.assert_array_equal(p.detach().float().cpu().numpy(), tp.detach().float().numpy())


def test_float16_gradients_cannot_be_unscaled():
    p = oc.zeros(2, dtype=oc.float16).requires_grad_()
    p.grad = oc.ones(2, dtype=oc.float16)
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        amp.GradScaler("cpu").unscale_(optim.SGD([p], lr=0.1))


def test_disabled_is_a_pass_through(device):
    ours, theirs, opt, topt, _, _ = make(device)
    scaler = amp.GradScaler(device, enabled=False)
    tscaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = ours[0].sum()
    assert scaler.scale(loss) is loss and not scaler.is_enabled()
    set_scaled_grads(ours, theirs, 1.0, 0, "inf")
    scaler.unscale_(opt)
    scaler.step(opt)  # steps even on an inf, as PyTorch's disabled scaler
    tscaler.unscale_(topt)
    tscaler.step(topt)
    scaler.update()
    assert scaler.get_scale() == tscaler.get_scale() == 1.0
    assert scaler.state_dict() == tscaler.state_dict() == {}
    scaler.load_state_dict({})
    assert not np.isfinite(ours[1].detach().cpu().numpy()).all() and not torch.isfinite(theirs[1]).all()


@pytest.mark.skipif(oc.cuda.is_available(), reason="what a machine without a CUDA device answers")
def test_cuda_scaler_warns_and_disables_itself():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = amp.GradScaler()
    assert not scaler.is_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not amp.grad_scaler.CudaGradScaler(enabled=False).is_enabled()
    with pytest.raises(ValueError, match="unknown device"):
        amp.GradScaler("tpu")
    with pytest.raises(AssertionError, match="growth factor"):
        amp.GradScaler("cpu", growth_factor=1.0)
    assert math.isclose(amp.GradScaler("cpu").get_scale(), 65536.0)
