"""orchard.autocast against torch.autocast: the dtype each op returns inside a region, its values,
gradients through the casts, the parameter-cast cache, and the region's state rules.

On the CPU the reference is torch.autocast("cpu") run live. PyTorch's GPU autocasts (MPS, CUDA) cannot
run on this machine, so on Metal and CUDA the expected dtypes come from the CPU's, except for the ops
PyTorch's MPS and CUDA lists run in float32 (GPU_FLOAT32 below, from aten/src/ATen/autocast_mode.cpp)."""
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import orchard as oc
import orchard.nn.functional as F
from conftest import FROM_TORCH, TORCH_DTYPE

GPU_FLOAT32 = {"exp", "log", "rsqrt", "pow", "pow_tensor", "softmax", "log_softmax", "layer_norm",
                 "layer_norm_fp32_params", "sum", "logsumexp", "cumsum"}

# name: (function of a library's names (TORCH or ORCHARD below), the input dtypes)
# Inputs: x [4, 8], y [8, 6], w [6, 8], b [6], v [4, 6], q/k/val [2, 3, 5, 8], t (class indices [4]).
OPS = {
    "matmul": (lambda m, i: m.matmul(i["x"], i["y"]), {"x": "f32", "y": "f32"}),
    "matmul_mixed": (lambda m, i: m.matmul(i["x"], i["y"]), {"x": "bf16", "y": "f32"}),
    "matmul_float64": (lambda m, i: m.matmul(i["x"], i["y"]), {"x": "f64", "y": "f64"}),
    "matmul_batched": (lambda m, i: m.matmul(i["q"], i["k"].transpose(-2, -1)), {"q": "f32", "k": "f32"}),
    "addmm": (lambda m, i: m.addmm(i["b"], i["x"], i["w"].T), {"b": "f32", "x": "f32", "w": "f32"}),
    "linear": (lambda m, i: m.F.linear(i["x"], i["w"], i["b"]), {"x": "f32", "w": "f32", "b": "f32"}),
    "linear_bf16_input": (lambda m, i: m.F.linear(i["x"], i["w"]), {"x": "bf16", "w": "f32"}),
    "sdpa": (lambda m, i: m.F.scaled_dot_product_attention(i["q"], i["k"], i["val"], is_causal=True),
             {"q": "f32", "k": "f32", "val": "f32"}),
    "softmax": (lambda m, i: m.F.softmax(i["v"], -1), {"v": "bf16"}),
    "log_softmax": (lambda m, i: m.F.log_softmax(i["v"], -1), {"v": "bf16"}),
    "softmax_fp32": (lambda m, i: m.F.softmax(i["v"], -1), {"v": "f32"}),
    "layer_norm": (lambda m, i: m.F.layer_norm(i["v"], (6,)), {"v": "bf16"}),
    "layer_norm_fp32_params": (lambda m, i: m.F.layer_norm(i["v"], (6,), i["b"], i["b"]), {"v": "bf16", "b": "f32"}),
    "exp": (lambda m, i: i["v"].exp(), {"v": "bf16"}),
    "log": (lambda m, i: i["v"].abs().log(), {"v": "bf16"}),
    "rsqrt": (lambda m, i: i["v"].abs().rsqrt(), {"v": "bf16"}),
    "pow": (lambda m, i: i["v"] ** 2, {"v": "bf16"}),
    "pow_tensor": (lambda m, i: m.pow(i["v"].abs(), i["v"]), {"v": "bf16"}),
    "sum": (lambda m, i: i["v"].sum(), {"v": "bf16"}),
    "mean": (lambda m, i: i["v"].mean(1), {"v": "bf16"}),
    "logsumexp": (lambda m, i: m.logsumexp(i["v"], 1), {"v": "bf16"}),
    "cumsum": (lambda m, i: m.cumsum(i["v"], 1), {"v": "bf16"}),
    "cross_entropy": (lambda m, i: m.F.cross_entropy(i["v"], i["t"]), {"v": "bf16"}),
    "nll_loss": (lambda m, i: m.F.nll_loss(i["v"], i["t"]), {"v": "bf16"}),
    "mse_loss": (lambda m, i: m.F.mse_loss(i["v"], i["v"] * 0.5), {"v": "bf16"}),
    "add_mixed": (lambda m, i: i["v"] + i["b"], {"v": "bf16", "b": "f32"}),
    "mul_scalar": (lambda m, i: i["v"] * 3.0, {"v": "bf16"}),
    "cat_mixed": (lambda m, i: m.cat([i["v"], i["b"].reshape(1, 6)]), {"v": "bf16", "b": "f32"}),
    "gelu": (lambda m, i: m.F.gelu(i["v"]), {"v": "bf16"}),
    "relu": (lambda m, i: m.F.relu(i["v"]), {"v": "f32"}),
}

SHAPES = {"x": (4, 8), "y": (8, 6), "w": (6, 8), "b": (6,), "v": (4, 6), "q": (2, 3, 5, 8), "k": (2, 3, 5, 8),
          "val": (2, 3, 5, 8)}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f64": torch.float64}


class Names:
    """A library's top-level names, with its nn.functional as .F."""

    def __init__(self, module, functional):
        self.module, self.F = module, functional

    def __getattr__(self, name):
        return getattr(self.module, name)


TORCH, ORCHARD = Names(torch, TF), Names(oc, F)


def inputs(spec, device):
    """The same values as torch tensors and as orchard tensors on device."""
    rng = np.random.default_rng(0)
    torch_in = {name: torch.tensor(rng.uniform(-2, 2, SHAPES[name])).to(DTYPES[kind]) for name, kind in spec.items()}
    torch_in["t"] = torch.tensor([0, 5, 2, 3])
    orchard_in = {name: oc.from_dlpack(t.clone()).to(device) for name, t in torch_in.items()}
    return torch_in, orchard_in


def run_ops(name, device, low=oc.bfloat16):
    fn, spec = OPS[name]
    torch_in, orchard_in = inputs(spec, device)
    with torch.autocast("cpu", dtype=TORCH_DTYPE[low]):
        expected = fn(TORCH, torch_in)
    with oc.autocast(device, dtype=low):
        actual = fn(ORCHARD, orchard_in)
    return actual, expected


@pytest.mark.parametrize("name", OPS)
def test_op_dtypes_and_values_match_torch_autocast(device, name):
    if device != "cpu" and OPS[name][1].get("x") == "f64":
        pytest.skip(f"{device} has no float64")
    actual, expected = run_ops(name, device)
    expected_dtype = FROM_TORCH[expected.dtype]
    if device != "cpu" and name in GPU_FLOAT32:
        expected_dtype = oc.float32
    assert actual.dtype == expected_dtype, f"{name} on {device}"
    got = actual.float().cpu().numpy()
    # Both sides compute in bfloat16 where autocast says so; they may round differently.
    np.testing.assert_allclose(got, expected.float().numpy(), rtol=3e-2, atol=3e-2)


def test_float16_region(device):
    x, w = oc.randn(4, 8, device=device), oc.randn(6, 8, device=device)
    with oc.autocast(device, dtype=oc.float16):
        assert F.linear(x, w).dtype == oc.float16
        assert F.cross_entropy(F.linear(x, w), oc.tensor([0, 1, 2, 3], device=device)).dtype == oc.float32


def test_defaults_follow_pytorch_cpu_and_mps():
    assert oc.autocast("cpu").fast_dtype == oc.bfloat16
    assert oc.autocast("metal").fast_dtype == oc.float16
    x = oc.randn(2, 2, device="metal" if oc.metal.is_available() else "cpu")
    with oc.autocast(x.device.type):
        assert (x @ x).dtype == oc.autocast(x.device.type).fast_dtype


def small_mlp(m, params, x, t):
    h = m.F.gelu(m.F.linear(x, params["w1"], params["b1"]))
    logits = m.F.linear(m.F.layer_norm(h, (16,)), params["w2"], params["b2"])
    return m.F.cross_entropy(logits, t)


def test_gradients_stay_float32_and_match_torch(device):
    rng = np.random.default_rng(1)
    shapes = {"w1": (16, 8), "b1": (16,), "w2": (5, 16), "b2": (5,)}
    values = {k: rng.standard_normal(s).astype(np.float32) * 0.3 for k, s in shapes.items()}
    x, t = rng.standard_normal((12, 8)).astype(np.float32), rng.integers(0, 5, 12)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in values.items()}
    op = {k: oc.tensor(v, device=device, requires_grad=True) for k, v in values.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tloss = small_mlp(TORCH, tp, torch.tensor(x), torch.tensor(t))
    tloss.backward()
    with oc.autocast(device, dtype=oc.bfloat16):
        loss = small_mlp(ORCHARD, op, oc.tensor(x, device=device), oc.tensor(t, device=device))
    loss.backward()
    assert loss.dtype == oc.float32
    assert abs(loss.item() - tloss.item()) < 2e-2
    for k in shapes:
        assert op[k].grad.dtype == oc.float32
        np.testing.assert_allclose(op[k].grad.cpu().numpy(), tp[k].grad.numpy(), rtol=5e-2, atol=1e-2, err_msg=k)


def casts(t):
    """The cast nodes in t's history."""
    found, pending = [], [t.grad_fn]
    while pending:
        node = pending.pop()
        if node is not None:
            found += [node] if node.name() == "ToCopyBackward" else []
            pending += list(node.next_functions)
    return found


def test_a_weight_is_cast_once_per_region_and_again_after_it_changes(device):
    x = oc.randn(3, 4, device=device)
    w = oc.randn(5, 4, device=device, requires_grad=True)
    with oc.autocast(device, dtype=oc.bfloat16):
        first, second = casts(F.linear(x, w)), casts(F.linear(x * 2, w))
        assert len(first) == 1 and first[0] is second[0]  # both products reach w through one cast
        before = F.linear(x, w).float().cpu().numpy()
        with oc.no_grad():
            w.mul_(2)
        after = F.linear(x, w)
        assert casts(after)[0] is not first[0]
        np.testing.assert_allclose(after.float().cpu().numpy(), 2 * before, rtol=1e-2)
    with oc.autocast(device, dtype=oc.bfloat16, cache_enabled=False):
        assert casts(F.linear(x, w))[0] is not casts(F.linear(x, w))[0]


def test_regions_nest_restore_and_decorate():
    x = oc.randn(2, 2)
    assert not oc.is_autocast_enabled("cpu")
    with oc.autocast("cpu"):
        assert oc.is_autocast_enabled("cpu") and (x @ x).dtype == oc.bfloat16
        with oc.autocast("cpu", enabled=False):
            assert not oc.is_autocast_enabled("cpu") and (x @ x).dtype == oc.float32
        with oc.autocast("cpu", dtype=oc.float16):
            assert oc.get_autocast_dtype("cpu") == oc.float16 and (x @ x).dtype == oc.float16
        assert oc.get_autocast_dtype("cpu") == oc.bfloat16
    assert not oc.is_autocast_enabled("cpu") and (x @ x).dtype == oc.float32

    @oc.autocast("cpu")
    def product(a):
        return a @ a
    assert product(x).dtype == oc.bfloat16 and (x @ x).dtype == oc.float32


def test_state_is_per_thread():
    x, seen = oc.randn(2, 2), []
    with oc.autocast("cpu"):
        worker = threading.Thread(target=lambda: seen.append((x @ x).dtype))
        worker.start()
        worker.join()
        assert (x @ x).dtype == oc.bfloat16
    assert seen == [oc.float32]


def test_other_devices_tensors_are_left_alone():
    x = oc.randn(2, 2)
    with oc.autocast("metal" if oc.metal.is_available() else "cuda", dtype=oc.float16):
        assert (x @ x).dtype == oc.float32


def test_explicit_dtype_overrides_autocast(device):
    v = oc.randn(3, 4, device=device, dtype=oc.bfloat16)
    with oc.autocast(device, dtype=oc.bfloat16):
        assert F.softmax(v, -1, dtype=oc.bfloat16).dtype == oc.bfloat16
        assert oc.sum(v, dtype=oc.bfloat16).dtype == oc.bfloat16
        assert oc.cumsum(v, 1, dtype=oc.bfloat16).dtype == oc.bfloat16


def test_backward_inside_the_region_matches_backward_after_it():
    w = oc.randn(4, 4, requires_grad=True)
    x = oc.randn(3, 4)
    with oc.autocast("cpu"):
        F.layer_norm(F.linear(x, w), (4,)).float().sum().backward()
        inside = w.grad.clone()
    w.grad = None
    with oc.autocast("cpu"):
        loss = F.layer_norm(F.linear(x, w), (4,)).float().sum()
    loss.backward()
    np.testing.assert_array_equal(inside.numpy(), w.grad.numpy())


@pytest.mark.skipif(oc.cuda.is_available(), reason="what a machine without a CUDA device answers")
def test_cuda_and_unsupported_dtypes_warn_and_disable_as_pytorch():
    x = oc.randn(2, 2)
    with pytest.warns(UserWarning, match="CUDA is not available"):
        region = oc.autocast("cuda")
    with region:
        assert not oc.is_autocast_enabled("cuda")
    with pytest.warns(UserWarning, match="CUDA is not available"):
        region = oc.cuda.amp.autocast()
    with pytest.warns(UserWarning, match="not supported"):
        region = oc.autocast("cpu", dtype=oc.float64)
    with region:
        assert (x @ x).dtype == oc.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oc.autocast("cpu", dtype=oc.float16)


def test_bad_device_types_raise():
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'tpu'"):
        oc.autocast("tpu")
    with pytest.raises(ValueError, match="Expected `device_type` of type `str`"):
        oc.autocast(0)
    assert oc.amp.is_autocast_available("cpu") and oc.amp.is_autocast_available("cuda") == oc.cuda.is_available()


@pytest.mark.parametrize("low", [oc.bfloat16, oc.float16])
def test_attention_backward_under_autocast_matches_torch(device, low):
    rng = np.random.default_rng(3)
    values = [rng.standard_normal((2, 3, 17, 16)).astype(np.float32) for _ in range(3)]
    tq, tk, tv = (torch.tensor(v, requires_grad=True) for v in values)
    q, k, v = (oc.tensor(v, device=device, requires_grad=True) for v in values)
    with torch.autocast("cpu", dtype=TORCH_DTYPE[low]):
        tout = TF.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    (tout.float() ** 2).sum().backward()
    with oc.autocast(device, dtype=low):
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert out.dtype == low
    (out.float() ** 2).sum().backward()
    for ours, ref in [(q, tq), (k, tk), (v, tv)]:
        assert ours.grad.dtype == oc.float32
        np.testing.assert_allclose(ours.grad.cpu().numpy(), ref.grad.numpy(), rtol=5e-2, atol=5e-2)


def test_a_python_scalar_first_does_not_decide_the_device():
    if not oc.metal.is_available():
        pytest.skip("no Metal device in this build")
    x = oc.rand(3, device="metal", dtype=oc.float16)
    with oc.autocast("metal"):
        assert (2 ** x).dtype == oc.float32  # pow runs in float32 on Metal
