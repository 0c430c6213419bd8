"""Tensors pickle and deep-copy through their data, as PyTorch's do; orchard.load's map_location as a function."""
import copy
import io
import pickle

import numpy as np
import pytest
import torch

import orchard as oc
from conftest import ALL_DTYPES, DEVICES, make_tensor, require, to_numpy


def same_values(a, b):
    x, y = to_numpy(a), to_numpy(b)
    assert x.shape == y.shape and x.dtype == y.dtype
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 3), (4, 5)])
def test_pickle_and_deepcopy_round_trip(device, dtype, shape):
    require(device, dtype)
    t, _ = make_tensor(np.random.default_rng(0), shape, dtype, "strided" if shape and shape[-1] else "contiguous",
                       device, special=True)
    for copied in (pickle.loads(pickle.dumps(t, protocol=p)) for p in (2, pickle.HIGHEST_PROTOCOL)):
        assert (copied.dtype, copied.shape, copied.device) == (dtype, shape, device)
        same_values(copied, t)
        assert not copied.is_alias_of(t) and copied.is_contiguous()


def test_a_view_pickles_as_its_values_only():
    base = oc.zeros(1000, 1000)
    view = base[3, :4]
    assert len(pickle.dumps(view)) < 1000  # not the million elements of its storage
    same_values(pickle.loads(pickle.dumps(view)), view)


def test_deepcopy_keeps_requires_grad_and_grad_as_pytorch(device):
    w = oc.ones(3, device=device, requires_grad=True)
    (w * 2).sum().backward()
    ours, theirs = copy.deepcopy(w), copy.deepcopy(_torch_leaf_with_grad())
    assert ours.requires_grad and ours.is_leaf and ours.device == device
    assert ours.grad is not None and theirs.grad is not None
    same_values(ours.grad, w.grad)
    assert not ours.grad.is_alias_of(w.grad)
    assert pickle.loads(pickle.dumps(w)).grad is None  # pickle, like PyTorch's, leaves .grad out


def _torch_leaf_with_grad():
    w = torch.ones(3, requires_grad=True)
    (w * 2).sum().backward()
    return w


def test_deepcopy_of_an_intermediate_result_raises_as_pytorch():
    with pytest.raises(RuntimeError):
        copy.deepcopy(torch.ones(2, requires_grad=True) * 2)
    with pytest.raises(RuntimeError, match="graph leaves"):
        copy.deepcopy(oc.ones(2, requires_grad=True) * 2)
    # pickling one gives a leaf that requires grad, as in PyTorch
    loaded = pickle.loads(pickle.dumps(oc.ones(2, requires_grad=True) * 2))
    assert loaded.requires_grad and loaded.is_leaf


def test_deepcopy_keeps_sharing_inside_the_copied_object():
    w = oc.randn(2, 2)
    state = copy.deepcopy({"a": w, "b": [w], "c": w.clone()})
    assert state["a"] is state["b"][0] and state["a"] is not state["c"] and not state["a"].is_alias_of(w)


def _round_trip(obj, **kw):
    buf = io.BytesIO()
    oc.save(obj, buf)
    buf.seek(0)
    return oc.load(buf, **kw)


def test_map_location_as_a_function_as_pytorch(device):
    obj = {"w": oc.ones(2, device=device), "n": (oc.tensor(3), [1.5, None, "s"])}
    seen = []

    def to_cpu(t, location):
        seen.append((t.device, location))
        return t

    loaded = _round_trip(obj, map_location=to_cpu)
    assert loaded["w"].device == "cpu" and loaded["n"][1] == [1.5, None, "s"]
    assert seen == [("cpu", device), ("cpu", "cpu")]  # each tensor once, on the CPU, with its saved device
    assert _round_trip(obj, map_location=lambda t, loc: None)["w"].device == device  # None: the saved device
    for target in DEVICES:
        moved = _round_trip(obj, map_location=lambda t, loc: t.to(target))
        assert moved["w"].device == target and moved["n"][0].item() == 3
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    buf.seek(0)
    assert torch.load(buf, map_location=lambda storage, loc: storage)["w"].device.type == "cpu"


def test_nested_structures_with_zero_d_tensors_and_plain_values():
    obj = {"model": {"w": oc.ones(2, 2), "step": oc.tensor(7), "scale": oc.tensor(0.5, dtype=oc.float64)},
           "history": [(1, 2.5), [True, None], "text"], "iter_num": 3, "best": float("inf")}
    loaded = _round_trip(obj, weights_only=False)
    assert loaded["model"]["step"].shape == () and loaded["model"]["step"].item() == 7
    assert loaded["model"]["scale"].dtype == oc.float64 and loaded["model"]["scale"].item() == 0.5
    assert loaded["history"] == [(1, 2.5), [True, None], "text"] and loaded["iter_num"] == 3
    assert loaded["best"] == float("inf")
    assert _round_trip(obj, map_location="cpu", weights_only=True)["model"]["w"].tolist() == [[1.0, 1.0]] * 2
