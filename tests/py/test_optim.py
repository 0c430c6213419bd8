"""orchard.optim's optimizers against torch.optim: the same parameters and gradients for several steps give the
same parameters, the same state dicts (structure, keys, dtypes, values), and state dicts load across the two."""
import numpy as np
import pytest
import torch

import orchard as oc
from orchard import optim

SHAPES = [(4, 3), (3,), (2, 2, 2)]

CASES = [
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.05, maximize=True, decoupled_weight_decay=True, weight_decay=0.1)),
    ("AdamW", dict(lr=0.05, betas=(0.9, 0.95), weight_decay=0.1, fused=True)),
    ("AdamW", dict(lr=0.05, amsgrad=True, foreach=False)),
    ("AdamW", dict(lr=0.05, maximize=True)),
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
]


def arrays(seed, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def pair(device, shapes=SHAPES):
    inits = arrays(0, shapes)
    return ([oc.tensor(a, device=device, requires_grad=True) for a in inits],
            [torch.tensor(a, requires_grad=True) for a in inits])


def set_grads(ours, theirs, seed):
    for p, tp, g in zip(ours, theirs, arrays(seed, [tuple(p.shape) for p in ours])):
        p.grad, tp.grad = oc.tensor(g, device=p.device), torch.tensor(g)


def run(opt, topt, ours, theirs, steps, first_seed=1):
    for step in range(steps):
        set_grads(ours, theirs, first_seed + step)
        opt.step()
        topt.step()


def assert_params_close(ours, theirs):
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.detach().cpu().numpy(), tp.detach().numpy(), rtol=2e-5, atol=2e-6)


def to_numpy(value):
    return value.detach().cpu().numpy() if isinstance(value, (oc.Tensor, torch.Tensor)) else value


def assert_state_dicts_match(ours, theirs):
    """Same structure (keys, group options, parameter indices), same dtypes and shapes, close values."""
    assert ours["param_groups"] == theirs["param_groups"]
    assert list(ours["state"]) == list(theirs["state"])
    for index, state in theirs["state"].items():
        mine = ours["state"][index]
        assert list(mine) == list(state), f"parameter {index}"
        for key, value in state.items():
            assert isinstance(mine[key], oc.Tensor) and tuple(mine[key].shape) == tuple(value.shape)
            assert str(mine[key].dtype).split(".")[-1] == str(value.dtype).split(".")[-1]
            np.testing.assert_allclose(to_numpy(mine[key]), to_numpy(value), rtol=2e-5, atol=1e-7,
                                       err_msg=f"parameter {index}, {key}")


@pytest.mark.parametrize("name,kw", CASES)
def test_matches_torch_over_several_steps(device, name, kw):
    ours, theirs = pair(device)
    opt, topt = getattr(optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)
    run(opt, topt, ours, theirs, steps=6)
    assert_params_close(ours, theirs)
    assert_state_dicts_match(opt.state_dict(), topt.state_dict())
    assert all(p.device == device for p in ours)
    assert all(v.device == (oc.device("cpu") if k == "step" else device)
               for s in opt.state.values() for k, v in s.items())


@pytest.mark.parametrize("name,kw", [CASES[1], CASES[2], CASES[4], CASES[8]])
def test_groups_with_their_own_options_and_a_parameter_without_gradient(device, name, kw):
    ours, theirs = pair(device)
    groups = lambda ps: [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.01, "weight_decay": 0.0}]  # noqa: E731
    opt, topt = getattr(optim, name)(groups(ours), **kw), getattr(torch.optim, name)(groups(theirs), **kw)
    run(opt, topt, ours, theirs, steps=2)
    ours[2].grad = theirs[2].grad = None  # stepped twice, then left alone: its state stays
    ours[1].grad = None
    theirs[1].grad = None
    set_grads(ours[:1], theirs[:1], 9)
    opt.step()
    topt.step()
    assert_params_close(ours, theirs)
    assert_state_dicts_match(opt.state_dict(), topt.state_dict())


def test_state_is_keyed_by_the_parameter():
    ours, theirs = pair("cpu")
    opt, topt = optim.AdamW(ours, lr=0.1), torch.optim.AdamW(theirs, lr=0.1)
    set_grads(ours[:2], theirs[:2], 1)
    opt.step()
    topt.step()
    assert list(opt.state) == ours[:2] and ours[0] in opt.state and ours[2] not in opt.state
    assert len(opt.state) == len(topt.state) == 2
    state = opt.state[ours[0]]
    assert sorted(state) == ["exp_avg", "exp_avg_sq", "step"]
    assert state["step"].shape == () and state["step"].dtype == oc.float32 and state["step"].item() == 1
    assert opt.state.get(ours[2]) is None and ours[2] not in opt.state  # get() does not create an entry
    assert opt.state[ours[2]] == {} and ours[2] in opt.state  # indexing does, as PyTorch's defaultdict
    assert [p for p, _ in opt.state.items()][:2] == ours[:2]
    with pytest.raises(TypeError, match="keyed by parameters"):
        opt.state[id(ours[0])]


@pytest.mark.parametrize("name,kw", [CASES[2], CASES[4], CASES[8]])
def test_loads_a_torch_state_dict_and_steps_on_as_torch(device, name, kw):
    ours, theirs = pair(device)
    opt, topt = getattr(optim, name)(ours, **kw), getattr(torch.optim, name)(theirs, **kw)
    run(opt, topt, ours, theirs, steps=3)
    fresh_params = [oc.tensor(tp.detach().numpy(), device=device, requires_grad=True) for tp in theirs]
    fresh = getattr(optim, name)(fresh_params, lr=123.0)
    fresh.load_state_dict(topt.state_dict())  # PyTorch's tensors as they are
    assert fresh.param_groups[0]["lr"] == kw["lr"]
    assert_state_dicts_match(fresh.state_dict(), topt.state_dict())
    run(fresh, topt, fresh_params, theirs, steps=3, first_seed=20)
    assert_params_close(fresh_params, theirs)


def test_loads_numpy_arrays_and_an_old_integer_step():
    ours, theirs = pair("cpu")
    opt, topt = optim.AdamW(ours, lr=0.05), torch.optim.AdamW(theirs, lr=0.05)
    run(opt, topt, ours, theirs, steps=2)
    saved = topt.state_dict()
    saved["state"] = {i: {k: (int(v.item()) if k == "step" else v.numpy()) for k, v in s.items()}
                      for i, s in saved["state"].items()}
    opt.load_state_dict(saved)
    assert opt.state[ours[0]]["step"].dtype == oc.float32
    run(opt, topt, ours, theirs, steps=2, first_seed=7)
    assert_params_close(ours, theirs)


def test_torch_loads_an_orchard_state_dict():
    ours, theirs = pair("cpu")
    opt, topt = optim.SGD(ours, lr=0.1, momentum=0.9), torch.optim.SGD(theirs, lr=0.3, momentum=0.5)
    run(opt, topt, ours, theirs, steps=2)
    saved = opt.state_dict()
    saved["state"] = {i: {k: torch.from_numpy(v.numpy().copy()) for k, v in s.items()}
                      for i, s in saved["state"].items()}
    topt.load_state_dict(saved)
    assert topt.param_groups[0]["lr"] == 0.1 and topt.param_groups[0]["momentum"] == 0.9


def test_orchard_round_trip_through_save_and_load(tmp_path):
    ours, theirs = pair("cpu")
    opt, topt = optim.Adam(ours, lr=0.05, amsgrad=True), torch.optim.Adam(theirs, lr=0.05, amsgrad=True)
    run(opt, topt, ours, theirs, steps=2)
    oc.save(opt.state_dict(), tmp_path / "opt.pt")
    fresh = optim.Adam(ours, lr=0.5)
    fresh.load_state_dict(oc.load(tmp_path / "opt.pt"))
    assert_state_dicts_match(fresh.state_dict(), topt.state_dict())
    run(fresh, topt, ours, theirs, steps=2, first_seed=30)
    assert_params_close(ours, theirs)


def test_load_state_dict_says_what_differs():
    ours, _ = pair("cpu")
    opt = optim.AdamW(ours, lr=0.05)
    for p in ours:
        p.grad = oc.ones(*p.shape)
    opt.step()
    good = opt.state_dict()

    def fails(state_dict, match, optimizer=opt):
        before = optimizer.state_dict()
        with pytest.raises(ValueError, match=match):
            optimizer.load_state_dict(state_dict)
        assert optimizer.state_dict()["param_groups"] == before["param_groups"]  # left unchanged

    fails({"state": {}}, "keys 'state' and 'param_groups'")
    fails({"state": {}, "param_groups": [{"lr": 0.1}]}, "must be a dict with .params.")
    fails({**good, "param_groups": good["param_groups"] * 2}, "2 parameter groups, this optimizer has 1")
    short = [{**good["param_groups"][0], "params": [0, 1]}]
    fails({"state": {}, "param_groups": short}, r"hold \[2\] parameters, this optimizer's hold \[3\]")
    fails({**good, "state": {**good["state"], 7: {}}}, "state for parameter 7")
    opt.load_state_dict({**good, "state": {**good["state"], 2: {}}})  # an entry read before any step
    assert opt.state[ours[2]] == {}
    missing = {**good, "state": {0: {k: v for k, v in good["state"][0].items() if k != "exp_avg_sq"}}}
    fails(missing, r"missing \['exp_avg_sq'\]")
    sgd_state = {**good, "state": {0: {"momentum_buffer": oc.zeros(4, 3)}}}
    fails(sgd_state, r"unexpected \['momentum_buffer'\]")
    wrong_shape = {**good, "state": {0: {**good["state"][0], "exp_avg": oc.zeros(3, 4)}}}
    fails(wrong_shape, r"'exp_avg': shape \(3, 4\), expected the parameter's \(4, 3\)")
    amsgrad_groups = [{**good["param_groups"][0], "amsgrad": True}]
    fails({**good, "param_groups": amsgrad_groups}, r"missing \['max_exp_avg_sq'\]")
    not_array = {**good, "state": {0: {**good["state"][0], "exp_avg": "zeros"}}}
    fails(not_array, "expected a tensor or an array")


def test_param_groups_and_defaults_as_torch():
    ours, theirs = pair("cpu")
    opt, topt = optim.AdamW(ours[:1], lr=0.1), torch.optim.AdamW(theirs[:1], lr=0.1)
    assert opt.defaults == topt.defaults
    opt.add_param_group({"params": ours[1], "lr": 0.01})
    topt.add_param_group({"params": theirs[1], "lr": 0.01})
    strip = lambda groups: [{k: v for k, v in g.items() if k != "params"} for g in groups]  # noqa: E731
    assert strip(opt.param_groups) == strip(topt.param_groups)
    assert opt.param_groups[1]["params"] == [ours[1]]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [ours[0]]})
    with pytest.raises(TypeError, match="must be a dict"):
        opt.add_param_group(ours[2])
    with pytest.raises(TypeError, match="ordered collections"):
        opt.add_param_group({"params": {ours[2]}})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(ours[0], lr=0.1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([ours[0] * 2], lr=0.1)
    assert optim.SGD([ours[2]]).defaults == torch.optim.SGD([theirs[2]]).defaults


@pytest.mark.parametrize("name,kw,error,match", [
    ("Adam", dict(lr=-1.0), ValueError, "Invalid learning rate"),
    ("Adam", dict(betas=(1.0, 0.9)), ValueError, "Invalid beta parameter at index 0"),
    ("AdamW", dict(eps=-1.0), ValueError, "Invalid epsilon"),
    ("AdamW", dict(weight_decay=-1.0), ValueError, "Invalid weight_decay"),
    ("AdamW", dict(fused=True, foreach=True), RuntimeError, "cannot be `True` together"),
    ("SGD", dict(lr=0.1, nesterov=True), ValueError, "Nesterov momentum requires"),
    ("SGD", dict(lr=0.1, momentum=-0.5), ValueError, "Invalid momentum"),
])
def test_invalid_options_raise_as_torch(name, kw, error, match):
    ours, theirs = pair("cpu")
    with pytest.raises(error, match=match):
        getattr(torch.optim, name)(theirs, **kw)
    with pytest.raises(error, match=match):
        getattr(optim, name)(ours, **kw)


def test_options_orchard_cannot_honour_raise():
    ours, _ = pair("cpu")
    with pytest.raises(NotImplementedError, match="differentiable"):
        optim.AdamW(ours, differentiable=True)
    with pytest.raises(NotImplementedError, match="capturable"):
        optim.Adam(ours, capturable=True)


def test_zero_grad_and_closure():
    ours, theirs = pair("cpu")
    opt = optim.SGD(ours, lr=0.1)
    set_grads(ours, theirs, 1)
    opt.zero_grad(set_to_none=False)
    assert all(float(p.grad.abs().sum()) == 0 for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)

    def closure():
        opt.zero_grad()
        loss = (ours[0] * ours[0]).sum()
        loss.backward()
        return loss

    before = ours[0].detach().numpy().copy()
    loss = opt.step(closure)
    assert loss.item() == pytest.approx(float((before ** 2).sum()), rel=1e-6)
    np.testing.assert_allclose(ours[0].detach().numpy(), before * 0.8, rtol=1e-6)


class SignSGD(optim.Optimizer):
    """An optimizer written as PyTorch's documentation shows: its own step(), state read via self.state[p]."""

    def __init__(self, params, lr=0.01):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        with oc.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    state["count"] = state.get("count", 0) + 1
                    state["last"] = p.grad.clone()
                    p.sub_(oc.tensor(np.sign(p.grad.cpu().numpy()), device=p.device) * group["lr"])


def test_a_user_defined_optimizer_saves_and_loads_its_state(device):
    ours, theirs = pair(device)
    opt = SignSGD(ours)
    set_grads(ours, theirs, 1)
    opt.step()
    saved = opt.state_dict()
    assert saved["state"][0]["count"] == 1 and saved["param_groups"] == [{"lr": 0.01, "params": [0, 1, 2]}]
    fresh = SignSGD(ours, lr=0.5)
    saved["state"][1]["last"] = theirs[1].grad  # a PyTorch tensor moves to the parameter's device
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == 0.01 and fresh.state[ours[2]]["count"] == 1
    assert fresh.state[ours[1]]["last"].device == device
    np.testing.assert_array_equal(fresh.state[ours[1]]["last"].cpu().numpy(), theirs[1].grad.numpy())


def test_named_parameters_as_torch():
    model, tmodel = oc.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    opt, topt = optim.SGD(model.named_parameters(), lr=0.1), torch.optim.SGD(tmodel.named_parameters(), lr=0.1)
    assert opt.state_dict() == topt.state_dict()
    assert opt.param_groups[0]["params"] == list(model.parameters())
