"""orchard.save / orchard.load against torch.save / torch.load, and pickling tensors.

The same structure (dicts, lists, tuples, plain values, tensors of every dtype in every layout) goes through
both libraries; what each loads back must have the same types, dtypes, shapes and bit-exact values. Files
that are damaged, truncated, of another format or built to run code must raise a RuntimeError that says what
was wrong, and never run anything."""
import copy
import io
import os
import pathlib
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import orchard as oc
from conftest import ALL_DTYPES, DEVICES, LAYOUTS, TORCH_DTYPE, make_tensor, require, shapes, supports


def raw(t):
    """A tensor's values as an array, bit for bit (bfloat16 widened to float32, which is exact)."""
    if isinstance(t, torch.Tensor):
        t = t.detach()
        return (t.float() if t.dtype == torch.bfloat16 else t).contiguous().numpy()
    t = t.detach().cpu()
    return np.ascontiguousarray((t.float() if t.dtype == oc.bfloat16 else t).numpy())


def bits(t):
    """A tensor's values as bytes, signed zeros included; NaNs as one NaN (the libraries' conversions choose
    payloads differently)."""
    arr = raw(t)
    if arr.dtype.kind == "f":
        arr = np.where(np.isnan(arr), np.array(np.nan, dtype=arr.dtype), arr)
    return arr.tobytes()


def assert_same(ours, theirs, path="obj"):
    """Orchard's loaded object matches PyTorch's: container types, plain values, tensor dtypes, shapes, bits."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, oc.Tensor), f"{path}: {type(ours).__name__}, expected a tensor"
        assert TORCH_DTYPE[ours.dtype] == theirs.dtype, f"{path}: {ours.dtype!r} vs {theirs.dtype}"
        assert tuple(ours.shape) == tuple(theirs.shape), f"{path}: {ours.shape} vs {tuple(theirs.shape)}"
        assert ours.requires_grad == theirs.requires_grad, path
        assert bits(ours) == bits(theirs), f"{path}: values differ"
        return
    assert type(ours) is type(theirs), f"{path}: {type(ours).__name__} vs {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), f"{path}: keys {list(ours)} vs {list(theirs)}"
        for k in theirs:
            assert_same(ours[k], theirs[k], f"{path}[{k!r}]")
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float) and theirs != theirs:
        assert ours != ours, path
    else:
        assert ours == theirs and repr(ours) == repr(theirs), f"{path}: {ours!r} vs {theirs!r}"  # -0.0 too


def torch_twin(obj):
    """The same structure with PyTorch tensors (on the CPU, PyTorch's only device here)."""
    if isinstance(obj, oc.Tensor):
        t = obj.detach().cpu()
        twin = torch.from_numpy(np.array((t.float() if t.dtype == oc.bfloat16 else t).numpy()))
        twin = twin.to(TORCH_DTYPE[obj.dtype])
        return twin.requires_grad_() if obj.requires_grad else twin
    if isinstance(obj, dict):
        return type(obj)((k, torch_twin(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(torch_twin(v) for v in obj)
    return obj


def round_trip(obj, **load_kwargs):
    buf = io.BytesIO()
    oc.save(obj, buf)
    buf.seek(0)
    return oc.load(buf, **load_kwargs)


def torch_round_trip(obj, **load_kwargs):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, **load_kwargs)


PLAIN = {"str": "héllo", "int": -(2**70), "float": 0.1, "neg_zero": -0.0, "inf": float("inf"),
         "minus_inf": float("-inf"), "nan": float("nan"), "true": True, "none": None, "empty": [], "unit": (),
         "nested": {"list": [1, (2.5, "x", [None])], 3: {"k": False}, (1, "a"): "tuple key", 2.5: "float key",
                    None: "none key", True: "bool key"}}


def test_plain_values_round_trip_as_in_torch():
    assert_same(round_trip(PLAIN), torch_round_trip(PLAIN))


@given(shape=shapes(max_dims=3, max_numel=300), dtype=st.sampled_from(ALL_DTYPES), layout=st.sampled_from(LAYOUTS),
       seed=st.integers(0, 2**32 - 1), requires_grad=st.booleans())
def test_tensors_round_trip_as_in_torch(device, shape, dtype, layout, seed, requires_grad):
    """Every dtype, shape (0-d and empty included) and layout (views and non-contiguous tensors by value), with
    NaN, infinities and signed zeros among the values; they load on the device they were saved from."""
    require(device, dtype)
    t, _ = make_tensor(np.random.default_rng(seed), shape, dtype, layout, device, special=True)
    if requires_grad and t.is_floating_point():
        t = t.detach().clone().requires_grad_()
    obj = {"t": t, "in_list": [t.detach().sum(), 3], "in_tuple": (t.detach().clone(),),
           "ordered": OrderedDict(b=t.detach().reshape(-1)[:1], a=1)}
    ours = round_trip(obj)
    assert_same(ours, torch_round_trip(torch_twin(obj)))
    assert raw(ours["t"]).tobytes() == raw(t).tobytes()  # NaN payloads too
    assert ours["t"].device == device and ours["in_tuple"][0].device == device
    assert ours["t"].is_contiguous() and ours["t"].is_leaf


def test_bfloat16_and_float16_keep_every_bit_pattern(device):
    """All 65536 16-bit patterns (NaNs only as NaN: conversions may quiet them), as PyTorch keeps them."""
    patterns = np.arange(2**16, dtype=np.uint32)
    bf16 = oc.tensor((patterns << 16).view(np.float32)).to(oc.bfloat16).to(device)
    f16 = oc.tensor(patterns.astype(np.uint16).view(np.float16)).to(device)
    ours = round_trip({"bf16": bf16, "f16": f16})
    theirs = torch_round_trip(torch_twin({"bf16": bf16, "f16": f16}))
    for key in ("bf16", "f16"):
        got, want = ours[key].float().cpu().numpy(), theirs[key].float().numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        finite = ~np.isnan(want)
        np.testing.assert_array_equal(got[finite].view(np.uint32), want[finite].view(np.uint32))


def test_a_shared_tensor_is_stored_once_and_loads_as_one_tensor():
    w = oc.randn(64, 64)
    once, twice = io.BytesIO(), io.BytesIO()
    oc.save({"a": w}, once)
    oc.save({"a": w, "tied": w, "again": [w]}, twice)
    assert len(twice.getvalue()) < len(once.getvalue()) + 200  # the description grows, the data does not
    twice.seek(0)
    loaded = oc.load(twice)
    assert loaded["a"] is loaded["tied"] and loaded["again"][0] is loaded["a"]
    # PyTorch's loaded tensors share one storage, Orchard's are one tensor: a write shows through both names.
    x = torch.zeros(2)
    theirs = torch_round_trip({"a": x, "tied": x})
    for both in (theirs, loaded):
        both["a"].add_(1.0)
        assert bits(both["tied"]) == bits(both["a"])
    assert bits(loaded["tied"]) == bits(w + 1.0)


def test_views_are_saved_by_value():
    base = oc.arange(12, dtype=oc.float32).reshape(3, 4)
    loaded = round_trip({"base": base, "col": base[:, 1], "t": base.T})
    theirs = torch_round_trip(torch_twin({"base": base, "col": base[:, 1], "t": base.T}))
    assert_same(loaded, theirs)


def test_paths_and_file_objects(tmp_path):
    obj = {"w": oc.ones(3), "step": 7}
    for f in (str(tmp_path / "a.pt"), tmp_path / "b.pt"):
        oc.save(obj, f)
        assert_same(oc.load(f), torch_twin(obj))
    with open(tmp_path / "c.pt", "wb") as f:
        oc.save(obj, f)
    with open(tmp_path / "c.pt", "rb") as f:
        assert_same(oc.load(f), torch_twin(obj))
    # The file is a safetensors file: other tools read the tensors, bfloat16 included.
    from safetensors.numpy import load_file
    assert list(load_file(tmp_path / "c.pt").values())[0].tolist() == [1.0, 1.0, 1.0]
    from safetensors.torch import load
    x = oc.randn(5, 3).to(oc.bfloat16)
    buf = io.BytesIO()
    oc.save({"x": x, "i": oc.arange(4), "b": oc.ones(2, dtype=oc.bool)}, buf)
    theirs = sorted(load(buf.getvalue()).values(), key=lambda t: t.dtype is not torch.bfloat16)
    assert theirs[0].dtype == torch.bfloat16 and bits(theirs[0]) == bits(x)
    assert {str(t.dtype) for t in theirs} == {"torch.bfloat16", "torch.int64", "torch.bool"}


@pytest.mark.parametrize("where", ["cpu", "metal"])
def test_map_location(device, where):
    """As torch.load's: a device name or device object moves every tensor, a dict maps saved devices."""
    if not (supports(where, oc.float32) and where in DEVICES):
        pytest.skip(f"no {where} device in this build")
    obj = {"x": oc.ones(2, device=device), "n": [oc.zeros(1, dtype=oc.int64, device=device)]}
    for location in (where, oc.device(where), {device: where}, {"cuda:0": "cpu"} if device == where else None):
        loaded = round_trip(obj, map_location=location)
        expected = where if location is not None else device
        assert loaded["x"].device == expected and loaded["n"][0].device == expected, location
    theirs = torch_round_trip(torch_twin(obj), map_location="cpu")
    assert_same(round_trip(obj, map_location="cpu"), theirs)
    assert_same(round_trip(obj, map_location={"cpu": "cpu"}), torch_round_trip(torch_twin(obj),
                                                                                   map_location={"cpu": "cpu"}))


def test_map_location_errors():
    with pytest.raises(TypeError, match="map_location must be None, a device"):
        round_trip({"x": oc.ones(1)}, map_location=3)
    with pytest.raises(TypeError, match="map_location returned a str"):
        round_trip({"x": oc.ones(1)}, map_location=lambda storage, location: "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        round_trip({"x": oc.ones(1)}, map_location="tpu")


def test_weights_only_is_accepted_and_changes_nothing():
    obj = {"x": oc.ones(2), "k": (1, "a")}
    for weights_only in (True, False):
        assert_same(round_trip(obj, weights_only=weights_only), torch_twin(obj))


def test_what_cannot_be_saved_is_named():
    with pytest.raises(TypeError, match=r"cannot save obj\['opt'\]\[1\], a builtins.object"):
        oc.save({"opt": [1, object()]}, io.BytesIO())
    with pytest.raises(TypeError, match=r"numpy.ndarray"):
        oc.save(np.zeros(2), io.BytesIO())
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        oc.save(loop, io.BytesIO())
    # The same list twice is not a cycle.
    shared = [1]
    assert round_trip([shared, shared]) == [[1], [1]]


# ---- damaged and foreign files ------------------------------------------------------------------

def saved_bytes():
    buf = io.BytesIO()
    oc.save({"w": oc.arange(6, dtype=oc.float32).reshape(2, 3), "b": oc.zeros(2, dtype=oc.bfloat16), "step": 3,
             "hist": [(1, 0.5)]}, buf)
    return buf.getvalue()


def test_every_truncation_raises_a_clear_error():
    data = saved_bytes()
    for n in range(len(data)):
        with pytest.raises(RuntimeError, match="orchard.load: the file object"):
            oc.load(io.BytesIO(data[:n]))


def test_flipped_bytes_raise_or_load_data_never_crash():
    """A damaged byte in the header raises a RuntimeError or, where the header stays consistent, loads other
    values; in the data it changes values only."""
    data = saved_bytes()
    rng = np.random.default_rng(0)
    outcomes = set()
    for i in list(range(min(len(data), 600))) + list(rng.integers(0, len(data), 200)):
        damaged = bytearray(data)
        damaged[i] ^= 1 << int(rng.integers(0, 8))
        try:
            oc.load(io.BytesIO(bytes(damaged)))
            outcomes.add("loaded")
        except RuntimeError as e:
            assert "orchard.load" in str(e)
            outcomes.add("refused")
    assert outcomes == {"loaded", "refused"}


@pytest.mark.parametrize("content, match", [
    (b"", "fewer than the 8"),
    (b"\xff" * 64, "header says it has"),
    ((5).to_bytes(8, "little") + b"{nope", "not valid JSON"),
    ((2).to_bytes(8, "little") + b"{}", "without orchard.save's description"),
    ((30).to_bytes(8, "little") + b'{"__metadata__":{"orchard":1}}', "object description is not valid JSON"),
])
def test_foreign_content_is_refused(content, match):
    with pytest.raises(RuntimeError, match=match):
        oc.load(io.BytesIO(content))


def test_a_plain_safetensors_file_is_refused_with_advice(tmp_path):
    from safetensors.numpy import save_file
    save_file({"w": np.zeros(2, dtype=np.float32)}, tmp_path / "plain.safetensors")
    with pytest.raises(RuntimeError, match="without orchard.save's description.*safetensors.numpy.load_file"):
        oc.load(tmp_path / "plain.safetensors")


def test_descriptions_that_orchard_save_never_writes_are_refused():
    import json
    from safetensors.numpy import save
    tensors = {"0": np.zeros(2, dtype=np.float32)}

    def load(description):
        meta = {"orchard": json.dumps(description)}
        return oc.load(io.BytesIO(save(tensors, metadata=meta)))

    assert load({"version": 1, "object": {"tensor": "0", "device": "cpu"}}).shape == (2,)
    for bad, match in [({"version": 2, "object": 1}, "format version 2"),
                       ({"version": 1, "object": {"tensor": "1", "device": "cpu"}}, "refers to tensor '1'"),
                       ({"version": 1, "object": {"pickle": "cos\nsystem\n"}}, "none of the values"),
                       ({"version": 1, "object": {"dict": [[[1], 2]]}}, "unhashable dict key"),
                       ({"version": 1, "object": {"dict": [[1]]}}, r"expected a \[key, value\] pair"),
                       ({"version": 1, "object": {"float": "1e5"}}, "none of the values")]:
        with pytest.raises(RuntimeError, match=match):
            load(bad)
    with pytest.raises(RuntimeError, match="dtype U8, which Orchard has not"):
        oc.load(io.BytesIO(save({"0": np.zeros(2, dtype=np.uint8)}, metadata={"orchard": json.dumps(
            {"version": 1, "object": None})})))


class _RunsCode:
    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(os.environ["ORCHARD_TEST_MARKER"]),))


def test_pickles_are_never_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("ORCHARD_TEST_MARKER", str(marker))
    files = {"pickle": pickle.dumps(_RunsCode()), "torch": None}
    buf = io.BytesIO()
    torch.save({"x": torch.ones(2)}, buf)
    files["torch"] = buf.getvalue()
    for name, data in files.items():
        with pytest.raises(RuntimeError, match="looks like a PyTorch checkpoint"):
            oc.load(io.BytesIO(data))
    assert not marker.exists()


# ---- pickling and copying tensors -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_tensors_pickle_through_their_data(device, dtype):
    require(device, dtype)
    t, _ = make_tensor(np.random.default_rng(1), (3, 5), dtype, "transposed", device, special=True)
    for copied in (pickle.loads(pickle.dumps(t)), copy.deepcopy(t), copy.copy(t)):
        assert copied.dtype == dtype and copied.shape == t.shape and copied.device == device
        assert bits(copied) == bits(t) and not copied.is_alias_of(t)
    theirs = torch_twin(t)
    assert bits(pickle.loads(pickle.dumps(theirs))) == bits(pickle.loads(pickle.dumps(t)))


def test_pickled_tensors_keep_requires_grad_and_sharing():
    w = oc.randn(3).requires_grad_()
    w2, again = pickle.loads(pickle.dumps((w, w)))
    assert w2.requires_grad and w2.is_leaf and w2 is again
    assert copy.deepcopy({"a": w})["a"].requires_grad


# ---- a PyTorch training program's checkpoint --------------------------------------------------------

def test_a_nanogpt_style_checkpoint_restores_model_and_optimizer(tmp_path):
    from orchard.models import GPT2, GPT2Config
    from orchard.optim import AdamW
    config = GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2(config)
    optimizer = AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95))
    idx = oc.tensor(np.random.default_rng(0).integers(0, 32, (2, 8)))
    for _ in range(2):
        _, loss = model(idx, idx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_args": dict(n_layer=1),
            "iter_num": 2, "best_val_loss": loss.detach(), "config": {"dtype": "float32", "compile": False}}
    oc.save(ckpt, tmp_path / "ckpt.pt")
    loaded = oc.load(tmp_path / "ckpt.pt", map_location="cpu")
    assert_same(loaded, torch_twin(ckpt))
    restored = GPT2(config)
    restored.load_state_dict(loaded["model"])
    restored_opt = AdamW(restored.parameters(), lr=1e-2, betas=(0.9, 0.95))
    restored_opt.load_state_dict(loaded["optimizer"])
    for m, opt in ((model, optimizer), (restored, restored_opt)):
        _, loss = m(idx, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for (name, a), (_, b) in zip(model.named_parameters(), restored.named_parameters()):
        assert bits(a) == bits(b), name
