"""orchard.nn.Module, Parameter and the containers, checked against the same modules built with torch:
names and orders (parameters, buffers, modules, state_dict keys), load_state_dict's results and
errors, to()/dtype conversions, hooks."""
import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

import orchard as oc
from orchard import nn


def build(lib):
    """One model in torch or orchard: a tied weight, buffers (persistent and not), nested containers."""

    class Block(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = lib.nn.LayerNorm(4, bias=False)
            self.fc = lib.nn.Linear(4, 4)
            self.register_buffer("mask", lib.ones(4, 4).tril())
            self.register_buffer("scratch", lib.zeros(2), persistent=False)

        def forward(self, x):
            return self.fc(self.ln(x)) @ self.mask

    class Model(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = lib.nn.Embedding(10, 4)
            self.register_buffer("steps", lib.zeros(1, dtype=lib.int64))
            self.blocks = lib.nn.ModuleList([Block(), Block()])
            self.heads = lib.nn.ModuleDict({"main": lib.nn.Linear(4, 10, bias=False)})
            self.scale = lib.nn.Parameter(lib.ones(1))
            self.heads["main"].weight = self.emb.weight  # tied

        def forward(self, idx):
            x = self.emb(idx)
            for block in self.blocks:
                x = block(x)
            return self.heads["main"](x) * self.scale

    return Model()


def torch_state_to_numpy(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def test_names_and_orders_match_torch():
    ours, theirs = build(oc), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for method in ("named_parameters", "named_buffers", "named_modules", "named_children"):
        assert [n for n, _ in getattr(ours, method)()] == [n for n, _ in getattr(theirs, method)()], method
    for kwargs in (dict(recurse=False), dict(prefix="m"), dict(remove_duplicate=False)):
        assert ([n for n, _ in ours.named_parameters(**kwargs)] ==
                [n for n, _ in theirs.named_parameters(**kwargs)]), kwargs
        assert [n for n, _ in ours.named_buffers(**kwargs)] == [n for n, _ in theirs.named_buffers(**kwargs)]
    assert ([n for n, _ in ours.named_modules(prefix="m", remove_duplicate=False)] ==
            [n for n, _ in theirs.named_modules(prefix="m", remove_duplicate=False)])
    assert len(list(ours.parameters())) == len(list(theirs.parameters()))
    assert len(list(ours.buffers(recurse=False))) == len(list(theirs.buffers(recurse=False))) == 1
    assert {"blocks", "emb", "heads", "scale", "steps", "forward"} <= set(dir(ours))
    assert not any(name.isdigit() for name in dir(ours.blocks))


def test_state_dict_lists_tied_weights_under_both_names_and_round_trips():
    ours, theirs = build(oc), build(torch)
    state = ours.state_dict()
    assert state["emb.weight"].is_alias_of(state["heads.main.weight"])
    assert "blocks.0.scratch" not in state and "blocks.0.mask" in state
    assert not any(v.requires_grad for v in state.values())
    assert all(isinstance(v, nn.Parameter) for k, v in ours.state_dict(keep_vars=True).items()
               if k in dict(ours.named_parameters(remove_duplicate=False)))
    result = ours.load_state_dict(torch_state_to_numpy(theirs))
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == repr(theirs.load_state_dict(theirs.state_dict()))
    idx = [[1, 2, 3], [4, 5, 9]]
    # Float32 sums of terms near 1 in another order: an output near 0 may differ by a few ulps of 1.
    np.testing.assert_allclose(ours(oc.tensor(idx)).detach().numpy(), theirs(torch.tensor(idx)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    assert ours.emb.weight is ours.heads.main.weight  # loading copies in place: still tied


@pytest.mark.parametrize("edit", ["missing", "unexpected", "size", "nested unexpected", "all"])
@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_reports_keys_and_errors_as_torch(edit, strict):
    ours, theirs = build(oc), build(torch)
    state = torch_state_to_numpy(theirs)
    if edit in ("missing", "all"):
        del state["blocks.1.fc.bias"], state["steps"]
    if edit in ("unexpected", "all"):
        state["extra"] = np.zeros(1, np.float32)
        state["blocks.0.scratch"] = np.zeros(2, np.float32)  # a non-persistent buffer is not loaded
    if edit in ("nested unexpected", "all"):
        state["blocks.0.fc.other"] = np.zeros(1, np.float32)
    if edit in ("size", "all"):
        state["blocks.0.fc.weight"] = np.zeros((3, 4), np.float32)
    results = []
    for module, convert in ((theirs, torch.from_numpy), (ours, lambda a: a)):
        try:
            results.append(module.load_state_dict({k: convert(v) for k, v in state.items()}, strict=strict))
        except RuntimeError as e:
            results.append(str(e).replace("torch.Size([3, 4])", "(3, 4)").replace("torch.Size([4, 4])", "(4, 4)"))
    assert results[1] == results[0]


def test_load_state_dict_assign_and_type_errors():
    model = nn.Linear(3, 2)
    weight = oc.ones(2, 3)
    model.load_state_dict({"weight": weight, "bias": oc.zeros(2)}, assign=True)
    assert isinstance(model.weight, nn.Parameter) and model.weight.is_alias_of(weight) and model.weight.requires_grad
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        model.load_state_dict([1])
    with pytest.raises(RuntimeError, match='While copying the parameter named "weight"'):
        model.load_state_dict({"weight": 1, "bias": oc.zeros(2)})


def test_parameter_is_a_tensor_subclass():
    data = oc.randn(3)
    p = nn.Parameter(data)
    assert isinstance(p, nn.Parameter) and isinstance(p, oc.Tensor)
    assert p.requires_grad and p.is_leaf and p.is_alias_of(data)
    assert not nn.Parameter(data, requires_grad=False).requires_grad
    assert type(p * 2) is oc.Tensor and type(p.detach()) is oc.Tensor
    assert p.requires_grad_() is p
    (p * p).sum().backward()
    np.testing.assert_allclose(p.grad.numpy(), 2 * data.numpy())
    assert repr(p).startswith("Parameter containing:\ntensor(")
    nonleaf = oc.randn(2).requires_grad_() * 2
    q = nn.Parameter(nonleaf)
    assert q.is_leaf and q.requires_grad
    copied = copy.deepcopy(p)
    assert isinstance(copied, nn.Parameter) and not copied.is_alias_of(p)
    assert nn.Parameter().shape == (0,)
    with pytest.raises(TypeError, match="must be an orchard.Tensor"):
        nn.Parameter([1.0])


def test_attribute_assignment_rules_follow_torch():
    for lib in (oc, torch):
        m = lib.nn.Linear(3, 2)
        m.weight = None  # keeps the slot
        assert "weight" in m._parameters and m.weight is None
        assert [n for n, _ in m.named_parameters()] == ["bias"]
        with pytest.raises(TypeError):
            m.bias = lib.zeros(2)  # a plain tensor is not a parameter
        m.register_buffer("buf", lib.zeros(1))
        m.buf = None
        assert "buf" in m._buffers and "buf" not in m.state_dict()
        with pytest.raises(TypeError):
            m.buf = 3
        m.plain = lib.zeros(1)  # plain attribute
        assert "plain" not in m.state_dict() and "plain" not in dict(m.named_buffers())
        del m.plain
        m.child = lib.nn.ReLU()
        m.child = None
        assert "child" in m._modules and m.child is None
        with pytest.raises(KeyError):
            m.register_buffer("bias", lib.zeros(1))
        with pytest.raises(KeyError):
            m.register_buffer("a.b", lib.zeros(1))
        with pytest.raises(TypeError):
            m.register_buffer("c", 3)
        with pytest.raises(TypeError):
            m.register_parameter("p", lib.zeros(1))
        with pytest.raises(TypeError):
            m.add_module("x", 3)
        with pytest.raises(AttributeError):
            m.get_submodule("nothing")
        with pytest.raises(AttributeError):
            m.nothing


def test_register_parameter_add_module_get_submodule_apply():
    model = build(oc)
    model.register_parameter("extra", nn.Parameter(oc.zeros(2)))
    model.register_module("tail", nn.Identity())
    assert model.get_submodule("blocks.1.fc") is model.blocks[1].fc
    assert model.get_submodule("") is model
    assert [n for n, _ in model.named_parameters(recurse=False)] == ["scale", "extra"]
    seen = []
    assert model.apply(lambda m: seen.append(type(m).__name__)) is model
    assert seen[-1] == "Model" and seen.index("LayerNorm") < seen.index("Block")


def test_train_eval_requires_grad_zero_grad():
    model = build(oc)
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError):
        model.train("yes")
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    model(oc.tensor([[1, 2]])).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_to_moves_parameters_and_buffers_and_keeps_ties(device):
    model = build(oc).to(device)
    assert {str(t.device) for t in model.state_dict().values()} == {device}
    assert model.emb.weight is model.heads.main.weight
    assert all(isinstance(p, nn.Parameter) and p.is_leaf for p in model.parameters())
    same = model.to(device)
    assert same.emb.weight is model.emb.weight  # no move: the same Parameter objects
    model.to(dtype=oc.float16) if device == "cpu" else model.half()
    assert model.emb.weight.dtype == oc.float16 and model.blocks[0].mask.dtype == oc.float16
    assert model.steps.dtype == oc.int64  # integer buffers keep their dtype
    model.float()
    assert model.emb.weight.dtype == oc.float32
    model.bfloat16()
    assert model.scale.dtype == oc.bfloat16
    model.to(oc.zeros(1, dtype=oc.float32))
    assert model.cpu().emb.weight.device == "cpu"
    with pytest.raises(TypeError, match="floating point"):
        model.to(oc.int64)


def test_forward_hooks_match_torch():
    for lib in (oc, torch):
        m = lib.nn.Linear(2, 2)
        calls = []
        pre = m.register_forward_pre_hook(lambda mod, args: calls.append("pre") or (args[0] * 0,))
        post = m.register_forward_hook(lambda mod, args, out: calls.append("post") or out + 1)
        first = m.register_forward_hook(lambda mod, args, out: calls.append("first"), prepend=True)
        kw = m.register_forward_pre_hook(lambda mod, args, kwargs: calls.append("kw") or None, with_kwargs=True)
        out = m(lib.ones(1, 2))
        assert calls == ["pre", "kw", "first", "post"]
        np.testing.assert_allclose(out.detach().numpy(), m.bias.detach().numpy()[None] + 1, rtol=1e-6)
        for handle in (pre, post, first):
            handle.remove()
        kw.remove()
        calls.clear()
        m(lib.ones(1, 2))
        assert calls == []
        with m.register_forward_hook(lambda mod, args, out: calls.append("ctx")):
            m(lib.ones(1, 2))
        m(lib.ones(1, 2))
        assert calls == ["ctx"]


def test_forward_hook_with_kwargs_and_always_call():
    m = nn.Identity()
    m.forward = lambda x, scale=1: x * scale
    seen = []
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"scale": 3}), with_kwargs=True)
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs) or out, with_kwargs=True)
    assert m(oc.ones(1)).item() == 3 and seen == [{"scale": 3}]
    bad = nn.Identity()
    bad.forward = lambda x: 1 / 0
    bad.register_forward_hook(lambda mod, args, out: seen.append("always"), always_call=True)
    with pytest.raises(ZeroDivisionError):
        bad(oc.ones(1))
    assert seen[-1] == "always"
    m.register_forward_pre_hook(lambda mod, args, kwargs: 3, with_kwargs=True)
    with pytest.raises(RuntimeError, match="forward pre-hook must return None or a tuple"):
        m(oc.ones(1))


def test_repr_matches_torch():
    def normalise(text):
        return text.replace("torch.", "").replace("orchard.", "")
    for make in (lambda lib: lib.nn.Sequential(lib.nn.Linear(2, 3, bias=False), lib.nn.ReLU(), lib.nn.GELU("tanh"),
                                               lib.nn.Dropout(0.1), lib.nn.LayerNorm((3,)), lib.nn.SiLU(inplace=True)),
                 lambda lib: lib.nn.ModuleDict({"a": lib.nn.Embedding(5, 2, padding_idx=1), "b": lib.nn.Tanh()}),
                 lambda lib: lib.nn.Sequential(OrderedDict(x=lib.nn.Softmax(dim=-1), y=lib.nn.Identity())),
                 lambda lib: lib.nn.ParameterList([lib.nn.Parameter(lib.zeros(2, 3)), lib.zeros(4)])):
        assert normalise(repr(make(oc))) == normalise(repr(make(torch)))
    # torch's ParameterDict names tensor types ("FloatTensor"); Orchard's shows the dtype, as ParameterList
    assert repr(nn.ParameterDict({"a": oc.zeros(2, 3), "b": oc.ones(1)})) == (
        "ParameterDict(\n    (a): Parameter containing: [orchard.float32 of size 2x3]\n"
        "    (b): Parameter containing: [orchard.float32 of size 1]\n)")


# ---- containers --------------------------------------------------------------------------------

def test_sequential_indexing_slicing_and_ordered_dict():
    for lib in (oc, torch):
        a, b, c = lib.nn.Linear(2, 2), lib.nn.ReLU(), lib.nn.Tanh()
        seq = lib.nn.Sequential(OrderedDict(first=a, second=b, third=c))
        assert [n for n, _ in seq.named_children()] == ["first", "second", "third"]
        assert seq[0] is a and seq[-1] is c and len(seq) == 3
        assert [n for n, _ in seq[1:].named_children()] == ["second", "third"]
        assert isinstance(seq[:2], lib.nn.Sequential)
        seq[1] = lib.nn.Identity()
        assert isinstance(seq.second, lib.nn.Identity)
        del seq[0]
        assert [n for n, _ in seq.named_children()] == ["0", "1"]
        seq.append(lib.nn.ReLU())
        seq.insert(0, lib.nn.Identity())
        assert len(seq) == 4 and isinstance(seq[0], lib.nn.Identity)
        with pytest.raises(IndexError):
            seq[10]
    x = oc.randn(3, 2)
    np.testing.assert_allclose(nn.Sequential(nn.ReLU(), nn.Tanh())(x).numpy(), np.tanh(np.maximum(x.numpy(), 0)),
                               rtol=1e-6)


def test_module_list_extend_insert_slice_delete():
    for lib in (oc, torch):
        mods = [lib.nn.Linear(1, 1) for _ in range(4)]
        ml = lib.nn.ModuleList(mods[:2])
        ml.extend(mods[2:3])
        ml += [mods[3]]
        assert list(ml) == mods and len(ml) == 4
        sliced = ml[1:3]
        assert isinstance(sliced, lib.nn.ModuleList) and list(sliced) == mods[1:3]
        extra = lib.nn.ReLU()
        ml.insert(1, extra)
        assert ml[1] is extra and ml[2] is mods[1] and len(ml) == 5
        del ml[1]
        assert list(ml) == mods
        assert [n for n, _ in ml.named_parameters()][-1] == "3.bias"
        ml[-1] = extra
        assert ml[3] is extra
        assert ml.pop(0) is mods[0] and len(ml) == 3
        with pytest.raises(TypeError, match="iterable"):
            ml.extend(3)
        with pytest.raises(IndexError):
            ml[3]
        with pytest.raises(NotImplementedError):
            ml(lib.ones(1))


def test_module_dict():
    for lib in (oc, torch):
        md = lib.nn.ModuleDict({"a": lib.nn.ReLU()})
        md["b"] = lib.nn.Tanh()
        md.update([("c", lib.nn.Identity())])
        assert list(lib.nn.ModuleDict(md)) == ["a", "b", "c"]
        assert list(md) == ["a", "b", "c"] and list(md.keys()) == ["a", "b", "c"] and len(md) == 3
        assert "b" in md and isinstance(md["b"], lib.nn.Tanh)
        assert [type(m).__name__ for m in md.values()] == ["ReLU", "Tanh", "Identity"]
        assert isinstance(md.pop("a"), lib.nn.ReLU) and "a" not in md
        del md["b"]
        assert [k for k, _ in md.items()] == ["c"]
        md.clear()
        assert len(md) == 0


def test_parameter_list_and_dict():
    for lib in (oc, torch):
        pl = lib.nn.ParameterList([lib.nn.Parameter(lib.zeros(2)), lib.ones(3)])
        pl.append(lib.zeros(1))
        assert len(pl) == 3 and all(isinstance(p, lib.nn.Parameter) for p in pl)
        assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
        assert tuple(pl[-1].shape) == (1,) and len(pl[1:]) == 2
        pd = lib.nn.ParameterDict({"w": lib.zeros(2)})
        pd["b"] = lib.nn.Parameter(lib.ones(1))
        pd.update({"c": lib.zeros(3)})
        assert list(pd) == ["w", "b", "c"] and isinstance(pd["w"], lib.nn.Parameter)
        assert [n for n, _ in pd.named_parameters()] == ["w", "b", "c"]
        assert tuple(pd.pop("w").shape) == (2,) and "w" not in pd and len(pd) == 2
        assert pd.get("nothing") is None
        assert list(lib.nn.ParameterDict(pd)) == ["b", "c"]
        owner = lib.nn.Module()
        owner.params = pl
        assert "params.2" in owner.state_dict()
