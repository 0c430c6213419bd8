"""orchard.optim.lr_scheduler against torch.optim.lr_scheduler: the same schedules set the same lrs (and
momentum or betas) step by step, and their state dicts hold the same entries and resume the same way."""
import warnings

import numpy as np
import pytest
import torch

import orchard as oc
from orchard import optim
from orchard.optim import lr_scheduler

STEPS = 30

SCHEDULES = {
    "LambdaLR": lambda m, opt: m.LambdaLR(opt, lambda e: 0.95 ** e),
    "LambdaLR per group": lambda m, opt: m.LambdaLR(opt, [lambda e: 1 / (e + 1), lambda e: 0.9 ** e]),
    "StepLR": lambda m, opt: m.StepLR(opt, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, opt: m.MultiStepLR(opt, milestones=[3, 7, 7, 20], gamma=0.3),
    "ConstantLR": lambda m, opt: m.ConstantLR(opt, factor=0.25, total_iters=6),
    "LinearLR": lambda m, opt: m.LinearLR(opt, start_factor=0.1, end_factor=0.9, total_iters=11),
    "ExponentialLR": lambda m, opt: m.ExponentialLR(opt, gamma=0.9),
    "CosineAnnealingLR": lambda m, opt: m.CosineAnnealingLR(opt, T_max=12, eta_min=1e-3),
    "CosineAnnealingLR no floor": lambda m, opt: m.CosineAnnealingLR(opt, T_max=7),
    "SequentialLR": lambda m, opt: m.SequentialLR(opt, [m.LinearLR(opt, 0.01, 1.0, total_iters=5),
                                                         m.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4)],
                                                  milestones=[5]),
    "SequentialLR three": lambda m, opt: m.SequentialLR(opt, [m.ConstantLR(opt, 0.5, total_iters=3),
                                                               m.ExponentialLR(opt, 0.8),
                                                               m.StepLR(opt, 3, 0.5)], milestones=[4, 12]),
    "MultiplicativeLR": lambda m, opt: m.MultiplicativeLR(opt, lambda e: 0.9 if e % 2 else 1.05),
    "PolynomialLR": lambda m, opt: m.PolynomialLR(opt, total_iters=17, power=2.0),
    "CosineAnnealingWarmRestarts": lambda m, opt: m.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=2, eta_min=1e-3),
    "ChainedScheduler": lambda m, opt: m.ChainedScheduler([m.ConstantLR(opt, 0.5, total_iters=4),
                                                           m.ExponentialLR(opt, 0.9)]),
    "OneCycleLR cos": lambda m, opt: m.OneCycleLR(opt, max_lr=[0.5, 0.2], total_steps=STEPS + 1),
    "OneCycleLR linear three_phase": lambda m, opt: m.OneCycleLR(
        opt, max_lr=0.4, epochs=4, steps_per_epoch=8, pct_start=0.25, anneal_strategy="linear", three_phase=True,
        base_momentum=0.8, max_momentum=0.9, div_factor=10.0, final_div_factor=100.0),
    "OneCycleLR no momentum": lambda m, opt: m.OneCycleLR(opt, max_lr=0.3, total_steps=STEPS, cycle_momentum=False),
}


def optimizers(kind):
    """An Orchard and a PyTorch optimizer over two parameter groups with different lrs."""
    ours, theirs = [oc.zeros(2).requires_grad_(), oc.zeros(3).requires_grad_()], \
        [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    make = {"AdamW": (optim.AdamW, torch.optim.AdamW, {}), "SGD": (optim.SGD, torch.optim.SGD, {"momentum": 0.9})}
    mine, torchs, kw = make[kind]
    groups = lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}]  # noqa: E731
    return mine(groups(ours), lr=0.1, **kw), torchs(groups(theirs), lr=0.1, **kw)


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def trace(sched, opt, steps):
    """The lrs and momenta after construction and after each step."""
    lrs, moms = [sched.get_last_lr()], [momenta(opt)]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append(sched.get_last_lr())
        moms.append(momenta(opt))
    return np.array(lrs), np.array(moms)


def plain(value):
    """A state dict entry in comparable form (Counters and dicts alike)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@pytest.mark.parametrize("kind", ["AdamW", "SGD"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedule_matches_torch(name, kind):
    opt, topt = optimizers(kind)
    sched = SCHEDULES[name](lr_scheduler, opt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns when the optimizer has not stepped (no gradients here)
        tsched = SCHEDULES[name](torch.optim.lr_scheduler, topt)
        theirs = trace(tsched, topt, STEPS)
    ours = trace(sched, opt, STEPS)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12, atol=0)
    assert getattr(sched, "base_lrs", None) == getattr(tsched, "base_lrs", None)
    assert getattr(sched, "last_epoch", None) == getattr(tsched, "last_epoch", None)
    assert [g.get("initial_lr") for g in opt.param_groups] == [g.get("initial_lr") for g in topt.param_groups]
    state, tstate = sched.state_dict(), tsched.state_dict()
    flags = {"_get_lr_called_within_step"}  # PyTorch's guard for a warning Orchard does not give
    assert set(state) == set(tstate) - flags
    assert plain({k: v for k, v in state.items() if k != "_schedulers"}) == \
        plain({k: v for k, v in tstate.items() if k not in flags | {"_schedulers"}})


@pytest.mark.parametrize("name", ["CosineAnnealingLR", "SequentialLR", "OneCycleLR cos", "MultiStepLR", "LambdaLR"])
def test_state_dict_resumes_the_schedule(name, tmp_path):
    """A fresh optimizer and scheduler loaded from a checkpoint at step 10 continue as the uninterrupted pair."""
    opt, _ = optimizers("AdamW")
    sched = SCHEDULES[name](lr_scheduler, opt)
    trace(sched, opt, 10)
    oc.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, tmp_path / "ckpt")
    expected = trace(sched, opt, 10)
    checkpoint = oc.load(tmp_path / "ckpt")
    opt2, _ = optimizers("AdamW")
    sched2 = SCHEDULES[name](lr_scheduler, opt2)
    sched2.load_state_dict(checkpoint["scheduler"])
    opt2.load_state_dict(checkpoint["optimizer"])
    resumed = trace(sched2, opt2, 10)
    np.testing.assert_allclose(resumed[0][1:], expected[0][1:], rtol=1e-12)
    np.testing.assert_allclose(resumed[1][1:], expected[1][1:], rtol=1e-12)


def test_resuming_with_last_epoch_uses_initial_lr():
    opt, topt = optimizers("SGD")
    for o in (opt, topt):
        for g in o.param_groups:
            g["initial_lr"] = 1.0
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=10, last_epoch=4)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=10, last_epoch=4)
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
    opt2, _ = optimizers("SGD")
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(opt2, 3, last_epoch=5)


def test_step_with_epoch_uses_the_closed_form_and_warns():
    opt, topt = optimizers("SGD")
    sched, tsched = lr_scheduler.StepLR(opt, 3, 0.5), torch.optim.lr_scheduler.StepLR(topt, 3, 0.5)
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tsched.step(7)
    assert sched.get_last_lr() == tsched.get_last_lr() == [0.1 * 0.25, 0.05 * 0.25]


@pytest.mark.parametrize("make,error,match", [
    (lambda m, o: m.StepLR(object(), 3), TypeError, "is not an Optimizer"),
    (lambda m, o: m.LambdaLR(o, [lambda e: 1.0]), ValueError, "same length as optimizer.param_groups|Expected 2"),
    (lambda m, o: m.LinearLR(o, start_factor=0.0), ValueError, "Starting multiplicative factor"),
    (lambda m, o: m.ConstantLR(o, factor=2.0), ValueError, "Constant multiplicative factor"),
    (lambda m, o: m.OneCycleLR(o, max_lr=0.1), ValueError, "either total_steps OR"),
    (lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda m, o: m.OneCycleLR(o, max_lr=0.1, total_steps=10, pct_start=1), ValueError, "pct_start"),
    (lambda m, o: m.SequentialLR(o, [m.StepLR(o, 2)], milestones=[3]), ValueError, "one more than the number"),
    (lambda m, o: m.ChainedScheduler([m.StepLR(o, 2), m.ReduceLROnPlateau(o)]), ValueError, "ReduceLROnPlateau"),
    (lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=0), ValueError, "positive integer T_0"),
    (lambda m, o: m.ReduceLROnPlateau(o, factor=1.0), ValueError, "Factor should be"),
    (lambda m, o: m.ReduceLROnPlateau(o, mode="up"), ValueError, "mode up is unknown"),
])
def test_invalid_arguments_raise_as_torch(make, error, match):
    opt, topt = optimizers("SGD")
    with pytest.raises(error, match=match):
        make(torch.optim.lr_scheduler, topt)
    with pytest.raises(error, match=match):
        make(lr_scheduler, opt)


def test_one_cycle_past_its_total_steps_raises():
    opt, _ = optimizers("SGD")
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 4 times"):
        sched.step()


def test_one_cycle_needs_momentum_to_cycle_it():
    class Plain(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {"lr": 0.1})
    with pytest.raises(ValueError, match="momentum or beta1"):
        lr_scheduler.OneCycleLR(Plain([oc.zeros(1).requires_grad_()]), max_lr=0.1, total_steps=5)



@pytest.mark.parametrize("kw", [dict(), dict(mode="max", threshold_mode="abs", threshold=0.1, patience=1, cooldown=2,
                                         factor=0.5, min_lr=[0.02, 0.001])])
def test_reduce_lr_on_plateau_matches_torch(kw):
    opt, topt = optimizers("SGD")
    sched, tsched = lr_scheduler.ReduceLROnPlateau(opt, **kw), torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    metrics = [5.0, 4.0, 4.0, 3.99, 4.2, 4.1, 3.0, 3.0, 3.1, 3.2, 3.3, 2.0, 2.5, 2.6, 2.7, 2.8] * 2
    for metric in metrics:
        sched.step(metric)
        tsched.step(metric)
        assert sched.get_last_lr() == tsched.get_last_lr()
    assert {k: v for k, v in sched.state_dict().items()} == \
        {k: v for k, v in tsched.state_dict().items() if k != "_get_lr_called_within_step"}


def test_warm_restarts_at_fractional_epochs_match_torch():
    opt, topt = optimizers("SGD")
    sched = lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=2)
    tsched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(topt, T_0=3, T_mult=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for epoch in [0.5, 1.25, 2.9, 3.0, 7.5, 9.1, 22.0, 1.0]:
            sched.step(epoch)
            tsched.step(epoch)
            assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
