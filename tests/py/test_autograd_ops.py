"""Backward formulas of every differentiable op, checked with oc.autograd.gradcheck (central finite
differences in float64) on small random shapes, with broadcasting and non-contiguous inputs.
Where PyTorch defines a convention finite differences cannot see (ties of max/min, kinks of relu
and clamp, 0 ** 0), the gradient is compared with torch.autograd instead.

Every test runs on each device. Metal has no float64: there the inputs are float32, and the
device's gradients are compared with the CPU's float64 analytic ones (themselves checked by
gradcheck on the CPU run) at float32 tolerance. Constant tensors a function needs (indices, masks)
are passed to it as inputs, so that the same function runs on either device."""
import zlib

import numpy as np
import pytest
import torch

import orchard as oc
from conftest import TOLERANCE, supports

LAYOUTS = ["contiguous", "transposed", "strided"]
# Gradients computed in float32 against float64 ones: the suite's float32 tolerance, the absolute
# part relative to the largest gradient of the input.
FLOAT32_RTOL, FLOAT32_ATOL = TOLERANCE[oc.float32]


def grad_dtype(device):
    """The dtype gradients are checked in: float64 where the device has it, float32 otherwise."""
    return oc.float64 if supports(device, oc.float64) else oc.float32


def make(rng, shape, layout="contiguous", low=-2.0, high=2.0, requires_grad=True, values=None, device="cpu"):
    """A leaf of `shape` on `device` in the given memory layout (float64, or float32 on Metal)."""
    shape = tuple(shape)
    dtype = grad_dtype(device)
    arr = rng.uniform(low, high, size=shape) if values is None else np.asarray(values, dtype=np.float64)
    if layout == "contiguous" or len(shape) == 0:
        t = oc.tensor(arr, dtype=dtype, device=device)
    elif layout == "transposed":
        perm = list(range(len(shape)))[::-1]
        t = oc.tensor(np.ascontiguousarray(np.transpose(arr, perm)), dtype=dtype, device=device).permute(*perm)
    elif layout == "strided":
        buf = np.zeros(shape[:-1] + (2 * shape[-1] + 1,))
        buf[..., 1::2] = arr
        t = oc.tensor(buf, dtype=dtype, device=device)[..., 1::2]
    else:
        raise ValueError(layout)
    assert t.shape == shape and t.is_leaf and t.device == device
    return t.requires_grad_(requires_grad)


def seed_of(*key):
    return zlib.crc32(repr(key).encode())


def away_from_zero(rng, shape, lo=0.2, hi=2.0):
    return rng.uniform(lo, hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def check(fn, *inputs):
    """fn's backward for every input that requires grad: gradcheck on float64 inputs, or the
    comparison with the CPU's float64 gradients on a device without float64."""
    device = next(x.device for x in inputs if isinstance(x, oc.Tensor))
    if supports(device, oc.float64):
        assert oc.autograd.gradcheck(fn, list(inputs))
    else:
        check_against_cpu_float64(fn, *inputs)


def _close(got, want, what):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=FLOAT32_RTOL, atol=FLOAT32_ATOL * scale, err_msg=what)


def check_against_cpu_float64(fn, *inputs):
    """Runs fn on the inputs where they are (float32) and on float64 CPU copies of their values,
    backpropagates sum(out * w) with the same fixed random w, and compares the outputs and every
    input's gradient."""
    def cpu_float64(x):
        if not isinstance(x, oc.Tensor):
            return x
        c = x.detach().cpu()
        return (c.double() if c.is_floating_point() else c).requires_grad_(x.requires_grad)

    device = next(x.device for x in inputs if isinstance(x, oc.Tensor))
    ref_inputs = [cpu_float64(x) for x in inputs]
    checked = [i for i, x in enumerate(inputs) if isinstance(x, oc.Tensor) and x.requires_grad]
    ref_out = fn(*ref_inputs)
    w = np.random.default_rng(0).standard_normal(ref_out.shape)
    ref_grads = oc.autograd.grad((ref_out * oc.tensor(w)).sum(), [ref_inputs[i] for i in checked], allow_unused=True)
    out = fn(*inputs)
    assert out.device == device and out.shape == ref_out.shape
    _close(out.detach().cpu().double().cpu().numpy(), ref_out.detach().cpu().numpy(), "forward")
    grads = oc.autograd.grad((out * oc.tensor(w, dtype=out.dtype, device=device)).sum(), [inputs[i] for i in checked],
                             allow_unused=True)
    for i, g, ref in zip(checked, grads, ref_grads):
        want = np.zeros(inputs[i].shape) if ref is None else ref.cpu().numpy()
        if g is None:
            assert not np.any(want), f"input {i}: no gradient on {device}"
            continue
        assert g.device == device and g.dtype == inputs[i].dtype and g.shape == inputs[i].shape
        _close(g.cpu().double().cpu().numpy(), want, f"gradient of input {i}")


def torch_grads(fn_oc, fn_torch, *arrays, device="cpu", weight_seed=0):
    """Gradients of sum(fn(x...) * w) from Orchard (on `device`) and PyTorch (float64) for each input."""
    dtype = grad_dtype(device)
    xs = [oc.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, tout = fn_oc(*xs), fn_torch(*ts)
    assert out.device == device
    w = np.random.default_rng(weight_seed).standard_normal(tuple(tout.shape))
    (out * oc.tensor(w, dtype=dtype, device=device)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == oc.float64 else {"rtol": FLOAT32_RTOL, "atol": FLOAT32_ATOL}
    np.testing.assert_allclose(out.detach().cpu().double().cpu().numpy(), tout.detach().cpu().numpy(), **tol)
    if dtype == oc.float64:
        tol = {"rtol": 1e-10, "atol": 1e-12}
    for x, t in zip(xs, ts):
        assert x.grad is None or x.grad.device == device
        got = np.zeros(x.shape) if x.grad is None else x.grad.cpu().double().cpu().numpy()
        want = np.zeros(t.shape) if t.grad is None else t.grad.cpu().numpy()
        np.testing.assert_allclose(got, want, **tol)


# ---- elementwise ----------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, "any"),
    "abs": (lambda x: x.abs(), "nonzero"),
    "exp": (lambda x: x.exp(), "any"),
    "log": (lambda x: x.log(), "positive"),
    "sqrt": (lambda x: x.sqrt(), "positive"),
    "rsqrt": (lambda x: x.rsqrt(), "positive"),
    "tanh": (lambda x: x.tanh(), "any"),
    "sigmoid": (lambda x: x.sigmoid(), "any"),
    "relu": (lambda x: x.relu(), "nonzero"),
    "gelu": (lambda x: x.gelu(), "any"),
    "gelu_tanh": (lambda x: x.gelu(approximate="tanh"), "any"),
    "sin": (lambda x: x.sin(), "any"),
    "cos": (lambda x: x.cos(), "any"),
    "erf": (lambda x: x.erf(), "any"),
    "module_fn": (lambda x: oc.sigmoid(oc.tanh(x)), "any"),
}
SHAPES = [(), (4,), (2, 3), (2, 1, 3)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(device, name, shape, layout):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed_of((name, shape, layout)))
    if domain == "positive":
        vals = rng.uniform(0.3, 2.0, size=shape)
    elif domain == "nonzero":
        vals = away_from_zero(rng, shape)
    else:
        vals = rng.uniform(-2, 2, size=shape)
    check(fn, make(rng, shape, layout, values=vals, device=device))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck_over_its_tails(device, approximate):
    # the fused backward kernel where the test_unary range does not reach: tanh and erf saturated
    vals = np.concatenate([np.linspace(-9, 9, 37), [-0.75, 0.0]])
    x = make(np.random.default_rng(0), vals.shape, values=vals, device=device)
    check(lambda x: x.gelu(approximate=approximate), x)


def test_relu_abs_at_zero_match_torch(device):
    v = np.array([-1.0, 0.0, 0.0, 2.0])
    torch_grads(lambda x: x.relu(), torch.relu, v, device=device)
    torch_grads(lambda x: x.abs(), torch.abs, v, device=device)


BROADCAST = [((2, 3), (2, 3)), ((2, 1, 3), (4, 1)), ((3,), ()), ((), (2, 2)), ((1, 3), (2, 1))]

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "add_alpha": lambda a, b: oc.add(a, b, alpha=2.5),
    "sub_alpha": lambda a, b: a.sub(b, alpha=-0.5),
    "pow": lambda a, b: a ** b,
    "maximum": lambda a, b: oc.maximum(a, b),
    "minimum": lambda a, b: a.minimum(b),
    "safe_div": lambda a, b: oc.safe_div(a, b),
}


@pytest.mark.parametrize("layouts", [("contiguous", "contiguous"), ("transposed", "strided")], ids=str)
@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary_broadcast(device, name, shapes, layouts):
    rng = np.random.default_rng(seed_of((name, shapes, layouts)))
    sa, sb = shapes
    va = rng.uniform(0.3, 2.0, size=sa) if name == "pow" else rng.uniform(-2, 2, size=sa)
    vb = away_from_zero(rng, sb) if name in ("div", "safe_div") else rng.uniform(-2, 2, size=sb)
    a = make(rng, sa, layouts[0], values=va, device=device)
    b = make(rng, sb, layouts[1], values=vb, device=device)
    check(BINARY[name], a, b)
    # one operand constant: only the other is checked (and the formula skips the constant's side)
    check(BINARY[name], a, make(rng, sb, layouts[1], values=vb, requires_grad=False, device=device))
    check(BINARY[name], make(rng, sa, layouts[0], values=va, requires_grad=False, device=device), b)


@pytest.mark.parametrize("fn", [
    lambda x: x ** 2.5, lambda x: x ** 2, lambda x: 2.0 ** x, lambda x: 1.5 / x, lambda x: 3 - x,
    lambda x: x * 0.5 + 1, lambda x: x / 4, lambda x: 2 * x - x * x, lambda x: x ** -1.5,
    lambda x: x ** 1, lambda x: x ** 0 + x, lambda x: x ** 3, lambda x: x.pow(0.5),
], ids=["pow_scalar", "pow_int", "rpow", "rtruediv", "rsub", "scale_shift", "div_scalar", "poly",
        "pow_negative", "pow_one", "pow_zero", "pow_three", "pow_method"])
def test_binary_with_python_scalars(device, fn):
    rng = np.random.default_rng(1)
    check(fn, make(rng, (2, 3), "transposed", values=rng.uniform(0.5, 2.0, size=(2, 3)), device=device))


def test_pow_at_zero_matches_torch(device):
    base = np.array([0.0, 0.0, 2.0, 0.0, 1.5])
    expo = np.array([0.0, 2.0, 0.0, 1.0, 3.0])
    torch_grads(lambda a, b: a ** b, lambda a, b: a ** b, base, expo, device=device)
    torch_grads(lambda a: a ** 0.0, lambda a: a ** 0.0, base, device=device)
    torch_grads(lambda a: a ** 2.0, lambda a: a ** 2.0, base, device=device)
    torch_grads(lambda a: a ** 2, lambda a: a ** 2, base, device=device)
    torch_grads(lambda a: a ** 1, lambda a: a ** 1, base, device=device)
    torch_grads(lambda a: a ** 0.5, lambda a: a ** 0.5, base[2:3], device=device)
    # an exponent tensor that needs no gradient takes the general formula
    torch_grads(lambda a: a ** oc.tensor(0.0, dtype=a.dtype, device=device),
                lambda a: a ** torch.tensor(0.0, dtype=torch.float64), base, device=device)


def test_maximum_minimum_ties_split_like_torch(device):
    a = np.array([1.0, 2.0, 3.0, 3.0])
    b = np.array([1.0, 1.0, 4.0, 3.0])
    torch_grads(lambda x, y: oc.maximum(x, y), torch.maximum, a, b, device=device)
    torch_grads(lambda x, y: oc.minimum(x, y), torch.minimum, a, b, device=device)


def test_safe_div_zero_divisor(device):
    rng = np.random.default_rng(2)
    a = make(rng, (2, 3), device=device)
    b = make(rng, (2, 3), values=[[1.0, 0.0, -2.0], [0.0, 0.5, 3.0]], requires_grad=False, device=device)
    check(lambda a, b: oc.safe_div(a, b), a, b)
    out = oc.safe_div(a, b)
    out.sum().backward()
    g = a.grad.cpu().numpy()
    assert g[0, 1] == 0 and g[1, 0] == 0
    bb = make(rng, (2, 3), values=[[1.0, 0.0, -2.0], [0.0, 0.5, 3.0]], device=device)
    oc.safe_div(a.detach(), bb).sum().backward()
    assert np.all(np.isfinite(bb.grad.cpu().numpy())) and bb.grad.cpu().numpy()[0, 1] == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clamp(device, layout):
    rng = np.random.default_rng(3)
    vals = np.array([[-1.7, -0.3, 0.2], [0.9, 1.6, -0.8]])
    x = make(rng, (2, 3), layout, values=vals, device=device)
    check(lambda x: x.clamp(min=-0.5, max=0.5), x)
    check(lambda x: x.clamp(min=0.0), x)
    check(lambda x: oc.clamp(x, max=0.1), x)
    lo = make(rng, (3,), values=[-1.0, -0.5, 0.4], device=device)
    hi = make(rng, (2, 1), values=[[0.5], [1.2]], device=device)
    check(lambda x, lo, hi: x.clamp(min=lo, max=hi), x, lo, hi)


def test_clamp_at_bounds_matches_torch(device):
    v = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    torch_grads(lambda x: x.clamp(min=-0.5, max=0.5), lambda x: x.clamp(min=-0.5, max=0.5), v, device=device)
    lo, hi = np.array([-0.5] * 5), np.array([0.5] * 5)
    torch_grads(lambda x, a, b: x.clamp(min=a, max=b), lambda x, a, b: torch.clamp(x, min=a, max=b), v, lo, hi,
                device=device)


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3), (2, 3)), ((2, 1), (3,), (2, 3)), ((3,), (2, 3), ())],
                         ids=str)
def test_where(device, shapes):
    rng = np.random.default_rng(4)
    sc, sa, sb = shapes
    cond = oc.tensor(rng.random(sc) < 0.5, device=device)
    a, b = make(rng, sa, "transposed", device=device), make(rng, sb, device=device)
    check(lambda a, b, cond: oc.where(cond, a, b), a, b, cond)
    check(lambda a, cond: a.where(cond, 0.5), a, cond)


# ---- reductions -----------------------------------------------------------------------------

DIMS = [None, 0, -1, (0, 2), (2, 0), 1]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "logsumexp", "var", "var0", "var2"])
def test_reductions(device, op, dim, keepdim):
    if op == "var2" and dim == 0:
        pytest.skip("correction 2 over 2 elements divides by zero")
    rng = np.random.default_rng(seed_of((op, str(dim), keepdim)))
    x = make(rng, (2, 3, 4), "transposed" if keepdim else "strided", device=device)
    if op.startswith("var"):
        corr = {"var": 1, "var0": 0, "var2": 2}[op]
        fn = lambda x: x.var(dim, correction=corr, keepdim=keepdim)  # noqa: E731
    elif op == "logsumexp":
        fn = lambda x: x.logsumexp(dim if dim is not None else (0, 1, 2), keepdim=keepdim)  # noqa: E731
    else:
        fn = lambda x: getattr(x, op)(dim, keepdim=keepdim)  # noqa: E731
    check(fn, x)


def test_reductions_of_scalars_and_vectors(device):
    rng = np.random.default_rng(5)
    s = make(rng, (), device=device)
    for fn in (lambda x: x.sum(), lambda x: x.mean(), lambda x: x.amax(), lambda x: x.logsumexp(0),
               lambda x: x.sum(0), lambda x: x.max()):
        check(fn, s)
    v = make(rng, (5,), "strided", device=device)
    for fn in (lambda x: x.sum(), lambda x: x.mean(0, keepdim=True), lambda x: x.var(), lambda x: x.max(),
               lambda x: x.min(0).values, lambda x: x.logsumexp(-1)):
        check(fn, v)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_with_dim(device, dim, keepdim):
    rng = np.random.default_rng(6)
    x = make(rng, (3, 4, 2), "transposed", device=device)
    check(lambda x: x.max(dim, keepdim=keepdim).values, x)
    check(lambda x: oc.min(x, dim=dim, keepdim=keepdim).values, x)


def test_extreme_ties_match_torch(device):
    v = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 5.0, 4.0]])
    # amax/amin and max()/min() without a dim split the gradient evenly among ties
    torch_grads(lambda x: x.amax(1), lambda x: x.amax(1), v, device=device)
    torch_grads(lambda x: x.amin(0, keepdim=True), lambda x: x.amin(0, keepdim=True), v, device=device)
    torch_grads(lambda x: x.amax((0, 1)), lambda x: x.amax((0, 1)), v, device=device)
    torch_grads(lambda x: x.max(), lambda x: x.max(), v, device=device)
    torch_grads(lambda x: x.min(), lambda x: x.min(), v, device=device)
    # max(dim)/min(dim) send it to the returned index only
    for d in (0, 1):
        for kd in (False, True):
            got = oc.tensor(v, dtype=grad_dtype(device), device=device).max(d, keepdim=kd)
            want = torch.tensor(v).max(d, keepdim=kd)
            np.testing.assert_array_equal(got.indices.cpu().numpy(), want.indices.cpu().numpy())
            torch_grads(lambda x: x.max(d, keepdim=kd).values, lambda x: x.max(d, keepdim=kd).values, v,
                        device=device)
            torch_grads(lambda x: x.min(d, keepdim=kd).values, lambda x: x.min(d, keepdim=kd).values, v,
                        device=device)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax(device, log, dim, layout):
    rng = np.random.default_rng(7)
    x = make(rng, (3, 2, 4), layout, device=device)
    fn = (lambda x: x.log_softmax(dim)) if log else (lambda x: oc.softmax(x, dim))
    check(fn, x)


def test_softmax_0d_and_1d(device):
    rng = np.random.default_rng(8)
    check(lambda x: x.softmax(0) * 3, make(rng, (), device=device))
    check(lambda x: x.log_softmax(0), make(rng, (5,), "strided", device=device))


# ---- matmul ---------------------------------------------------------------------------------

MATMUL = [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 2, 3), (2, 3, 4)),
    ((2, 1, 2, 3), (3, 3, 4)), ((2, 2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)),
    ((2, 3), (2, 3, 4)), ((1, 2, 3), (2, 1, 3, 2)),
]


@pytest.mark.parametrize("layouts", [("contiguous", "contiguous"), ("transposed", "transposed"),
                                     ("strided", "transposed")], ids=str)
@pytest.mark.parametrize("shapes", MATMUL, ids=str)
def test_matmul(device, shapes, layouts):
    rng = np.random.default_rng(seed_of((shapes, layouts)))
    a, b = make(rng, shapes[0], layouts[0], device=device), make(rng, shapes[1], layouts[1], device=device)
    check(lambda a, b: a @ b, a, b)
    check(lambda a, b: oc.matmul(a, b), a, make(rng, shapes[1], layouts[1], requires_grad=False, device=device))
    check(lambda a, b: a.matmul(b), make(rng, shapes[0], layouts[0], requires_grad=False, device=device), b)


@pytest.mark.parametrize("input_shape", [(4,), (1, 4), (3, 1), (3, 4), ()], ids=str)
def test_addmm(device, input_shape):
    rng = np.random.default_rng(seed_of(input_shape))
    i, a, b = make(rng, input_shape, device=device), make(rng, (3, 5), device=device), make(rng, (5, 4), device=device)
    check(lambda i, a, b: oc.addmm(i, a, b), i, a, b)
    check(lambda i, a, b: i.addmm(a, b), i, make(rng, (3, 5), "transposed", device=device), b)
    assert oc.addmm(i, a, b).grad_fn.name() == "AddmmBackward"


def test_addmm_outside_the_fused_case_is_add_of_matmul(device):
    rng = np.random.default_rng(11)
    a3, b = make(rng, (2, 3, 5), device=device), make(rng, (5, 4), device=device)
    check(lambda i, a, b: oc.addmm(i, a, b), make(rng, (2, 3, 4), device=device), a3, b)  # batched operands
    check(lambda i, a, b: oc.addmm(i, a, b), make(rng, (2, 3, 4), device=device), a3[0], b)  # input larger
    with pytest.raises(ValueError, match="cannot be broadcast"):
        oc.addmm(oc.zeros(7, device=device), a3[0], b)
    with pytest.raises(ValueError, match="not aligned"):
        oc.addmm(oc.zeros(4, device=device), a3[0], a3[0])


def test_matmul_same_operand_and_transpose(device):
    rng = np.random.default_rng(9)
    a = make(rng, (3, 3), "transposed", device=device)
    check(lambda a: a @ a, a)
    check(lambda a: a @ a.T, a)
    check(lambda a: a.mT @ a, a)


# ---- views ----------------------------------------------------------------------------------

VIEWS = {
    "reshape": lambda x: x.reshape(4, 6),
    "reshape_infer": lambda x: x.reshape(-1, 2),
    "view": lambda x: x.contiguous().view(3, 8),
    "view_after_reshape": lambda x: x.reshape(24).view(2, 12),
    "transpose": lambda x: x.transpose(0, 2),
    "transpose_neg": lambda x: x.transpose(-1, -2),
    "permute": lambda x: x.permute(1, 2, 0),
    "T": lambda x: x.T,
    "mT": lambda x: x.mT,
    "expand": lambda x: x[:, :1, :].expand(2, 3, 4),
    "expand_new_dims": lambda x: x[0, 0].expand(3, 2, 4),
    "expand_as": lambda x: x[:1].expand_as(x),
    "broadcast_to": lambda x: x[:, 1:2].broadcast_to(5, 2, 3, 4),
    "slice_step": lambda x: x[::2, 1:, ::3],
    "slice_neg": lambda x: x[-1:, :-1, 1:3],
    "slice_empty": lambda x: x[:, 2:2] + 1,
    "narrow": lambda x: x.narrow(2, 1, 2),
    "select": lambda x: x[1],
    "select_neg": lambda x: x[:, -1],
    "select_method": lambda x: x.select(2, 3),
    "int_and_slice": lambda x: x[0, 1:, ::2],
    "none_ellipsis": lambda x: x[None, ..., 1],
    "index_list": lambda x: x[[1, 0, 1]],
    "index_tensor": lambda x: x[:, oc.tensor([2, 0], device=x.device)],
    "index_tensor_2d": lambda x: x[..., oc.tensor([[3, 3], [0, 1]], device=x.device)],
    "bool_mask": lambda x: x[oc.tensor([[True, False, True], [False, False, True]], device=x.device)],
    "squeeze_all": lambda x: x[:, :1].squeeze(),
    "squeeze_dim": lambda x: x[:, :1].squeeze(1),
    "squeeze_dims": lambda x: x[:1, :1].squeeze((0, 1)),
    "squeeze_non_one": lambda x: x.squeeze(0),
    "unsqueeze": lambda x: x.unsqueeze(1),
    "unsqueeze_last": lambda x: x.unsqueeze(-1),
    "flatten": lambda x: x.flatten(),
    "flatten_range": lambda x: x.flatten(1, 2),
    "contiguous": lambda x: x.contiguous(),
    "clone": lambda x: x.clone(),
    "view_chain": lambda x: x.permute(2, 0, 1)[1:].reshape(3, -1).T.unsqueeze(0).squeeze(0),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", list(VIEWS))
def test_views(device, name, layout):
    rng = np.random.default_rng(seed_of((name, layout)))
    check(VIEWS[name], make(rng, (2, 3, 4), layout, device=device))


def test_view_of_0d_and_1d(device):
    rng = np.random.default_rng(10)
    s = make(rng, (), device=device)
    for fn in (lambda x: x.reshape(1, 1), lambda x: x.unsqueeze(0), lambda x: x.expand(3),
               lambda x: x.flatten(), lambda x: x.squeeze(), lambda x: x.squeeze(0), lambda x: x.transpose(0, -1),
               lambda x: x.T, lambda x: x[None], lambda x: x[...]):
        check(fn, s)
    v = make(rng, (5,), "strided", device=device)
    for fn in (lambda x: x[::2], lambda x: x[3], lambda x: x[1:4:2], lambda x: x.reshape(5, 1).T):
        check(fn, v)


# ---- indexing, joining ----------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select(device, dim):
    rng = np.random.default_rng(11)
    x = make(rng, (3, 4, 2), "transposed", device=device)
    idx = oc.tensor([1, 0, 1, 2][: x.shape[dim]] if dim != -1 else [1, 1, 0], device=device)
    check(lambda x, idx: x.index_select(dim, idx), x, idx)
    check(lambda x, i: oc.index_select(x, dim, i), x, oc.tensor(0, device=device))


def test_negative_indices_of_python_style_keys(device):
    rng = np.random.default_rng(21)
    x = make(rng, (4, 3), "transposed", device=device)
    check(lambda x, i: x[i], x, oc.tensor([-4, 3, -1, -1], device=device))
    check(lambda x, i: x[:, i], x, oc.tensor([[-1, 0], [2, -3]], device=device))


@pytest.mark.parametrize("dim", [0, 1])
def test_gather_and_scatter_add(device, dim):
    rng = np.random.default_rng(12)
    x = make(rng, (3, 4), "strided", device=device)
    idx = oc.tensor(rng.integers(0, x.shape[dim], size=(2, 3)), device=device)  # repeats: gradients must add up
    check(lambda x, idx: x.gather(dim, idx), x, idx)
    check(lambda x, idx: oc.gather(x, dim, idx.to(oc.int32)), x, idx)
    src = make(rng, (2, 3), "transposed", device=device)
    check(lambda x, s, idx: x.scatter_add(dim, idx, s), x, src, idx)
    check(lambda x, s, idx: oc.scatter_add(x, dim, idx, s), x.detach().requires_grad_(False), src, idx)
    src_big = make(rng, (3, 4), device=device)  # only the index-shaped corner of src is used
    check(lambda x, s, idx: x.scatter_add(dim, idx, s), x, src_big, idx)


def test_embedding(device):
    rng = np.random.default_rng(13)
    w = make(rng, (5, 3), "transposed", device=device)
    idx = oc.tensor([[1, 4, 1], [0, 1, 2]], device=device)
    check(lambda w, idx: oc.embedding(idx, w), w, idx)
    check(lambda w, idx: oc.embedding(idx, w), w, oc.tensor(3, device=device))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_stack(device, dim):
    rng = np.random.default_rng(14)
    shape = [2, 3, 2]
    parts = []
    for i, layout in enumerate(LAYOUTS):
        s = list(shape)
        s[dim] = i + 1
        parts.append(make(rng, s, layout, device=device))
    check(lambda *ts: oc.cat(list(ts), dim), *parts)
    const = make(rng, [2, 3, 2], requires_grad=False, device=device)
    same = [make(rng, shape, layout, device=device) for layout in LAYOUTS]
    check(lambda a, b, c, const: oc.stack([a, b, const, c], dim), *same, const)
    check(lambda a: oc.cat([a, a * 2], dim), same[0])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_split(device, dim):
    rng = np.random.default_rng(15)
    x = make(rng, (5, 4, 3), "transposed", device=device)

    def parts_combined(x):
        parts = x.split(2, dim)
        return oc.cat([p * (i + 1) for i, p in enumerate(parts)], dim)

    def sections_one_unused(x):
        n = x.shape[dim]
        a, b = oc.split(x, [1, n - 1], dim)
        return b.exp()

    check(parts_combined, x)
    check(sections_one_unused, x)


@pytest.mark.parametrize("k", [-1, 0, 2])
def test_tril_triu(device, k):
    rng = np.random.default_rng(16)
    x = make(rng, (2, 3, 4), "transposed", device=device)
    check(lambda x: x.tril(k), x)
    check(lambda x: oc.triu(x, k), x)


# ---- conversions ----------------------------------------------------------------------------

def test_to_dtype_and_back(device):
    rng = np.random.default_rng(17)
    wide = grad_dtype(device)  # float64, or float32 on Metal
    narrow = oc.float32 if wide == oc.float64 else oc.float16
    x = make(rng, (2, 3), "transposed", device=device)
    check(lambda x: x.to(wide) * 2, x)
    y = oc.tensor(rng.uniform(-1, 1, (2, 3)), dtype=narrow, device=device, requires_grad=True)
    z = y.to(wide) * oc.tensor(np.arange(6.0).reshape(2, 3), dtype=wide, device=device)
    assert z.dtype == wide and z.grad_fn.next_functions[0].name() == "ToCopyBackward"
    z.sum().backward()
    assert y.grad.dtype == narrow and y.grad.device == device
    np.testing.assert_array_equal(y.grad.cpu().numpy(), np.arange(6.0).reshape(2, 3))
    h = oc.tensor([1.0, 2.0], dtype=wide, device=device, requires_grad=True)
    (h.to(dtype=oc.float16) * 3).sum().backward()
    assert h.grad.dtype == wide and h.grad.device == device
    np.testing.assert_array_equal(h.grad.cpu().numpy(), [3.0, 3.0])
    b = oc.tensor([1.0, 2.0], dtype=wide, device=device, requires_grad=True)
    (b.to(oc.bfloat16).float() * 2).sum().backward()
    np.testing.assert_array_equal(b.grad.cpu().numpy(), [2.0, 2.0])
    i = b.long()  # to an integer dtype: not differentiable
    assert not i.requires_grad


def test_to_device_and_clone(device):
    rng = np.random.default_rng(18)
    x = make(rng, (3, 2), "strided", device=device)
    check(lambda x: (x.to("cpu") * x.cpu()).to(x.device), x)  # through the CPU and back
    check(lambda x: x.clone() * x, x)
    check(lambda x: x.contiguous().exp(), x)


# ---- compositions ---------------------------------------------------------------------------

def test_small_network(device):
    rng = np.random.default_rng(19)
    x = make(rng, (4, 3), requires_grad=False, device=device)
    w1, b1 = make(rng, (3, 5), "transposed", device=device), make(rng, (5,), device=device)
    w2 = make(rng, (5, 2), "strided", device=device)
    target = oc.tensor([0, 1, 1, 0], device=device)

    def loss(w1, b1, w2, x, target):
        h = (x @ w1 + b1).gelu().tanh()
        logits = h @ w2
        logp = logits.log_softmax(-1)
        return -logp.gather(1, target.unsqueeze(1)).mean() + (w1 * w1).sum() * 0.01

    check(loss, w1, b1, w2, x, target)


def test_attention_like_block(device):
    rng = np.random.default_rng(20)
    q, k = make(rng, (2, 3, 4), device=device), make(rng, (2, 3, 4), "transposed", device=device)
    v = make(rng, (2, 3, 4), "strided", device=device)
    mask = oc.tensor(np.tril(np.ones((3, 3))) > 0, device=device)

    def attn(q, k, v, mask):
        s = (q @ k.transpose(-1, -2)) * 0.5
        s = oc.where(mask, s, -1e9)
        return s.softmax(-1) @ v

    check(attn, q, k, v, mask)
