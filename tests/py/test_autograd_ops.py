"""Backward formulas of every differentiable op, checked with oc.autograd.gradcheck (central finite
differences in float64) on small random shapes, with broadcasting and non-contiguous inputs.
Where PyTorch defines a convention finite differences cannot see (ties of max/min, kinks of relu
and clamp, 0 ** 0), the gradient is compared with torch.autograd instead."""
import zlib

import numpy as np
import pytest
import torch

import orchard as oc

LAYOUTS = ["contiguous", "transposed", "strided"]


def make(rng, shape, layout="contiguous", low=-2.0, high=2.0, requires_grad=True, values=None):
    """A float64 leaf of `shape` in the given memory layout, and its values."""
    shape = tuple(shape)
    arr = rng.uniform(low, high, size=shape) if values is None else np.asarray(values, dtype=np.float64)
    if layout == "contiguous" or len(shape) == 0:
        t = oc.tensor(arr, dtype=oc.float64)
    elif layout == "transposed":
        perm = list(range(len(shape)))[::-1]
        t = oc.tensor(np.ascontiguousarray(np.transpose(arr, perm)), dtype=oc.float64).permute(*perm)
    elif layout == "strided":
        buf = np.zeros(shape[:-1] + (2 * shape[-1] + 1,))
        buf[..., 1::2] = arr
        t = oc.tensor(buf, dtype=oc.float64)[..., 1::2]
    else:
        raise ValueError(layout)
    assert t.shape == shape and t.is_leaf
    return t.requires_grad_(requires_grad)


def seed_of(*key):
    return zlib.crc32(repr(key).encode())


def away_from_zero(rng, shape, lo=0.2, hi=2.0):
    return rng.uniform(lo, hi, size=shape) * rng.choice([-1.0, 1.0], size=shape)


def check(fn, *inputs):
    assert oc.autograd.gradcheck(fn, list(inputs))


def torch_grads(fn_oc, fn_torch, *arrays, weight_seed=0):
    """Gradients of sum(fn(x...) * w) from Orchard and PyTorch (float64) for each input."""
    xs = [oc.tensor(a, dtype=oc.float64, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, tout = fn_oc(*xs), fn_torch(*ts)
    w = np.random.default_rng(weight_seed).standard_normal(tuple(tout.shape))
    (out * oc.tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    for x, t in zip(xs, ts):
        got = np.zeros(x.shape) if x.grad is None else x.grad.numpy()
        want = np.zeros(t.shape) if t.grad is None else t.grad.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


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
    "module_fn": (lambda x: oc.sigmoid(oc.tanh(x)), "any"),
}
SHAPES = [(), (4,), (2, 3), (2, 1, 3)]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name, shape, layout):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed_of((name, shape, layout)))
    if domain == "positive":
        vals = rng.uniform(0.3, 2.0, size=shape)
    elif domain == "nonzero":
        vals = away_from_zero(rng, shape)
    else:
        vals = rng.uniform(-2, 2, size=shape)
    check(fn, make(rng, shape, layout, values=vals))


def test_relu_abs_at_zero_match_torch():
    v = np.array([-1.0, 0.0, 0.0, 2.0])
    torch_grads(lambda x: x.relu(), torch.relu, v)
    torch_grads(lambda x: x.abs(), torch.abs, v)


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
def test_binary_broadcast(name, shapes, layouts):
    rng = np.random.default_rng(seed_of((name, shapes, layouts)))
    sa, sb = shapes
    va = rng.uniform(0.3, 2.0, size=sa) if name == "pow" else rng.uniform(-2, 2, size=sa)
    vb = away_from_zero(rng, sb) if name in ("div", "safe_div") else rng.uniform(-2, 2, size=sb)
    a = make(rng, sa, layouts[0], values=va)
    b = make(rng, sb, layouts[1], values=vb)
    check(BINARY[name], a, b)
    # one operand constant: only the other is checked (and the formula skips the constant's side)
    check(BINARY[name], a, make(rng, sb, layouts[1], values=vb, requires_grad=False))
    check(BINARY[name], make(rng, sa, layouts[0], values=va, requires_grad=False), b)


@pytest.mark.parametrize("fn", [
    lambda x: x ** 2.5, lambda x: x ** 2, lambda x: 2.0 ** x, lambda x: 1.5 / x, lambda x: 3 - x,
    lambda x: x * 0.5 + 1, lambda x: x / 4, lambda x: 2 * x - x * x, lambda x: x ** -1.5,
    lambda x: x ** 1, lambda x: x ** 0 + x, lambda x: x ** 3, lambda x: x.pow(0.5),
], ids=["pow_scalar", "pow_int", "rpow", "rtruediv", "rsub", "scale_shift", "div_scalar", "poly",
        "pow_negative", "pow_one", "pow_zero", "pow_three", "pow_method"])
def test_binary_with_python_scalars(fn):
    rng = np.random.default_rng(1)
    check(fn, make(rng, (2, 3), "transposed", values=rng.uniform(0.5, 2.0, size=(2, 3))))


def test_pow_at_zero_matches_torch():
    base = np.array([0.0, 0.0, 2.0, 0.0, 1.5])
    expo = np.array([0.0, 2.0, 0.0, 1.0, 3.0])
    torch_grads(lambda a, b: a ** b, lambda a, b: a ** b, base, expo)
    torch_grads(lambda a: a ** 0.0, lambda a: a ** 0.0, base)
    torch_grads(lambda a: a ** 2.0, lambda a: a ** 2.0, base)
    torch_grads(lambda a: a ** 2, lambda a: a ** 2, base)
    torch_grads(lambda a: a ** 1, lambda a: a ** 1, base)
    torch_grads(lambda a: a ** 0.5, lambda a: a ** 0.5, base[2:3])
    # an exponent tensor that needs no gradient takes the general formula
    torch_grads(lambda a: a ** oc.tensor(0.0, dtype=oc.float64), lambda a: a ** torch.tensor(0.0, dtype=torch.float64), base)


def test_maximum_minimum_ties_split_like_torch():
    a = np.array([1.0, 2.0, 3.0, 3.0])
    b = np.array([1.0, 1.0, 4.0, 3.0])
    torch_grads(lambda x, y: oc.maximum(x, y), torch.maximum, a, b)
    torch_grads(lambda x, y: oc.minimum(x, y), torch.minimum, a, b)


def test_safe_div_zero_divisor():
    rng = np.random.default_rng(2)
    a = make(rng, (2, 3))
    b = make(rng, (2, 3), values=[[1.0, 0.0, -2.0], [0.0, 0.5, 3.0]], requires_grad=False)
    check(lambda a, b: oc.safe_div(a, b), a, b)
    out = oc.safe_div(a, b)
    out.sum().backward()
    g = a.grad.numpy()
    assert g[0, 1] == 0 and g[1, 0] == 0
    bb = make(rng, (2, 3), values=[[1.0, 0.0, -2.0], [0.0, 0.5, 3.0]])
    oc.safe_div(a.detach(), bb).sum().backward()
    assert np.all(np.isfinite(bb.grad.numpy())) and bb.grad.numpy()[0, 1] == 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_clamp(layout):
    rng = np.random.default_rng(3)
    vals = np.array([[-1.7, -0.3, 0.2], [0.9, 1.6, -0.8]])
    x = make(rng, (2, 3), layout, values=vals)
    check(lambda x: x.clamp(min=-0.5, max=0.5), x)
    check(lambda x: x.clamp(min=0.0), x)
    check(lambda x: oc.clamp(x, max=0.1), x)
    lo = make(rng, (3,), values=[-1.0, -0.5, 0.4])
    hi = make(rng, (2, 1), values=[[0.5], [1.2]])
    check(lambda x, lo, hi: x.clamp(min=lo, max=hi), x, lo, hi)


def test_clamp_at_bounds_matches_torch():
    v = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    torch_grads(lambda x: x.clamp(min=-0.5, max=0.5), lambda x: x.clamp(min=-0.5, max=0.5), v)
    lo, hi = np.array([-0.5] * 5), np.array([0.5] * 5)
    torch_grads(lambda x, a, b: x.clamp(min=a, max=b), lambda x, a, b: torch.clamp(x, min=a, max=b), v, lo, hi)


@pytest.mark.parametrize("shapes", [((2, 3), (2, 3), (2, 3)), ((2, 1), (3,), (2, 3)), ((3,), (2, 3), ())],
                         ids=str)
def test_where(shapes):
    rng = np.random.default_rng(4)
    sc, sa, sb = shapes
    cond = oc.tensor(rng.random(sc) < 0.5)
    a, b = make(rng, sa, "transposed"), make(rng, sb)
    check(lambda a, b: oc.where(cond, a, b), a, b)
    check(lambda a: a.where(cond, 0.5), a)


# ---- reductions -----------------------------------------------------------------------------

DIMS = [None, 0, -1, (0, 2), (2, 0), 1]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("op", ["sum", "mean", "amax", "amin", "logsumexp", "var", "var0", "var2"])
def test_reductions(op, dim, keepdim):
    if op == "var2" and dim == 0:
        pytest.skip("correction 2 over 2 elements divides by zero")
    rng = np.random.default_rng(seed_of((op, str(dim), keepdim)))
    x = make(rng, (2, 3, 4), "transposed" if keepdim else "strided")
    if op.startswith("var"):
        corr = {"var": 1, "var0": 0, "var2": 2}[op]
        fn = lambda x: x.var(dim, correction=corr, keepdim=keepdim)  # noqa: E731
    elif op == "logsumexp":
        fn = lambda x: x.logsumexp(dim if dim is not None else (0, 1, 2), keepdim=keepdim)  # noqa: E731
    else:
        fn = lambda x: getattr(x, op)(dim, keepdim=keepdim)  # noqa: E731
    check(fn, x)


def test_reductions_of_scalars_and_vectors():
    rng = np.random.default_rng(5)
    s = make(rng, ())
    for fn in (lambda x: x.sum(), lambda x: x.mean(), lambda x: x.amax(), lambda x: x.logsumexp(0),
               lambda x: x.sum(0), lambda x: x.max()):
        check(fn, s)
    v = make(rng, (5,), "strided")
    for fn in (lambda x: x.sum(), lambda x: x.mean(0, keepdim=True), lambda x: x.var(), lambda x: x.max(),
               lambda x: x.min(0).values, lambda x: x.logsumexp(-1)):
        check(fn, v)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_with_dim(dim, keepdim):
    rng = np.random.default_rng(6)
    x = make(rng, (3, 4, 2), "transposed")
    check(lambda x: x.max(dim, keepdim=keepdim).values, x)
    check(lambda x: oc.min(x, dim=dim, keepdim=keepdim).values, x)


def test_extreme_ties_match_torch():
    v = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 5.0, 4.0]])
    # amax/amin and max()/min() without a dim split the gradient evenly among ties
    torch_grads(lambda x: x.amax(1), lambda x: x.amax(1), v)
    torch_grads(lambda x: x.amin(0, keepdim=True), lambda x: x.amin(0, keepdim=True), v)
    torch_grads(lambda x: x.amax((0, 1)), lambda x: x.amax((0, 1)), v)
    torch_grads(lambda x: x.max(), lambda x: x.max(), v)
    torch_grads(lambda x: x.min(), lambda x: x.min(), v)
    # max(dim)/min(dim) send it to the returned index only
    for d in (0, 1):
        for kd in (False, True):
            got, want = oc.tensor(v).max(d, keepdim=kd), torch.tensor(v).max(d, keepdim=kd)
            np.testing.assert_array_equal(got.indices.numpy(), want.indices.numpy())
            torch_grads(lambda x: x.max(d, keepdim=kd).values, lambda x: x.max(d, keepdim=kd).values, v)
            torch_grads(lambda x: x.min(d, keepdim=kd).values, lambda x: x.min(d, keepdim=kd).values, v)


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_softmax(log, dim, layout):
    rng = np.random.default_rng(7)
    x = make(rng, (3, 2, 4), layout)
    fn = (lambda x: x.log_softmax(dim)) if log else (lambda x: oc.softmax(x, dim))
    check(fn, x)


def test_softmax_0d_and_1d():
    rng = np.random.default_rng(8)
    check(lambda x: x.softmax(0) * 3, make(rng, ()))
    check(lambda x: x.log_softmax(0), make(rng, (5,), "strided"))


# ---- matmul ---------------------------------------------------------------------------------

MATMUL = [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 2, 3), (2, 3, 4)),
    ((2, 1, 2, 3), (3, 3, 4)), ((2, 2, 3), (3, 4)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)),
    ((2, 3), (2, 3, 4)), ((1, 2, 3), (2, 1, 3, 2)),
]


@pytest.mark.parametrize("layouts", [("contiguous", "contiguous"), ("transposed", "transposed"),
                                     ("strided", "transposed")], ids=str)
@pytest.mark.parametrize("shapes", MATMUL, ids=str)
def test_matmul(shapes, layouts):
    rng = np.random.default_rng(seed_of((shapes, layouts)))
    a, b = make(rng, shapes[0], layouts[0]), make(rng, shapes[1], layouts[1])
    check(lambda a, b: a @ b, a, b)
    check(lambda a, b: oc.matmul(a, b), a, make(rng, shapes[1], layouts[1], requires_grad=False))
    check(lambda a, b: a.matmul(b), make(rng, shapes[0], layouts[0], requires_grad=False), b)


def test_matmul_same_operand_and_transpose():
    rng = np.random.default_rng(9)
    a = make(rng, (3, 3), "transposed")
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
    "index_tensor": lambda x: x[:, oc.tensor([2, 0])],
    "index_tensor_2d": lambda x: x[..., oc.tensor([[3, 3], [0, 1]])],
    "bool_mask": lambda x: x[oc.tensor([[True, False, True], [False, False, True]])],
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
def test_views(name, layout):
    rng = np.random.default_rng(seed_of((name, layout)))
    check(VIEWS[name], make(rng, (2, 3, 4), layout))


def test_view_of_0d_and_1d():
    rng = np.random.default_rng(10)
    s = make(rng, ())
    for fn in (lambda x: x.reshape(1, 1), lambda x: x.unsqueeze(0), lambda x: x.expand(3),
               lambda x: x.flatten(), lambda x: x.squeeze(), lambda x: x.squeeze(0), lambda x: x.transpose(0, -1),
               lambda x: x.T, lambda x: x[None], lambda x: x[...]):
        check(fn, s)
    v = make(rng, (5,), "strided")
    for fn in (lambda x: x[::2], lambda x: x[3], lambda x: x[1:4:2], lambda x: x.reshape(5, 1).T):
        check(fn, v)


# ---- indexing, joining ----------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select(dim):
    rng = np.random.default_rng(11)
    x = make(rng, (3, 4, 2), "transposed")
    idx = oc.tensor([1, 0, 1, 2][: x.shape[dim]] if dim != -1 else [1, 1, 0])
    check(lambda x: x.index_select(dim, idx), x)
    check(lambda x: oc.index_select(x, dim, oc.tensor(0)), x)


def test_negative_indices():
    rng = np.random.default_rng(21)
    x = make(rng, (4, 3), "transposed")
    check(lambda x: x.index_select(0, oc.tensor([-1, 0, -1])), x)
    check(lambda x: x.gather(1, oc.tensor([[-1, 0], [1, -3], [2, 2], [-2, -2]])), x)
    check(lambda x: x[oc.tensor([-4, 3])], x)


@pytest.mark.parametrize("dim", [0, 1])
def test_gather_and_scatter_add(dim):
    rng = np.random.default_rng(12)
    x = make(rng, (3, 4), "strided")
    idx = oc.tensor(rng.integers(0, x.shape[dim], size=(2, 3)))  # repeats: gradients must add up
    check(lambda x: x.gather(dim, idx), x)
    check(lambda x: oc.gather(x, dim, idx.to(oc.int32)), x)
    src = make(rng, (2, 3), "transposed")
    check(lambda x, s: x.scatter_add(dim, idx, s), x, src)
    check(lambda x, s: oc.scatter_add(x, dim, idx, s), x.detach().requires_grad_(False), src)
    src_big = make(rng, (3, 4))  # only the index-shaped corner of src is used
    check(lambda x, s: x.scatter_add(dim, idx, s), x, src_big)


def test_embedding():
    rng = np.random.default_rng(13)
    w = make(rng, (5, 3), "transposed")
    idx = oc.tensor([[1, 4, 1], [0, 1, 2]])
    check(lambda w: oc.embedding(idx, w), w)
    check(lambda w: oc.embedding(oc.tensor(3), w), w)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_stack(dim):
    rng = np.random.default_rng(14)
    shape = [2, 3, 2]
    parts = []
    for i, layout in enumerate(LAYOUTS):
        s = list(shape)
        s[dim] = i + 1
        parts.append(make(rng, s, layout))
    check(lambda *ts: oc.cat(list(ts), dim), *parts)
    const = make(rng, [2, 3, 2], requires_grad=False)
    same = [make(rng, shape, layout) for layout in LAYOUTS]
    check(lambda a, b, c: oc.stack([a, b, const, c], dim), *same)
    check(lambda a: oc.cat([a, a * 2], dim), same[0])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_split(dim):
    rng = np.random.default_rng(15)
    x = make(rng, (5, 4, 3), "transposed")

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
def test_tril_triu(k):
    rng = np.random.default_rng(16)
    x = make(rng, (2, 3, 4), "transposed")
    check(lambda x: x.tril(k), x)
    check(lambda x: oc.triu(x, k), x)


# ---- conversions ----------------------------------------------------------------------------

def test_to_dtype_and_back():
    rng = np.random.default_rng(17)
    x = make(rng, (2, 3), "transposed")
    check(lambda x: x.to(oc.float64) * 2, x)
    y = oc.tensor(rng.uniform(-1, 1, (2, 3)), dtype=oc.float32, requires_grad=True)
    z = y.double() * oc.tensor(np.arange(6.0).reshape(2, 3))
    assert z.dtype == oc.float64 and z.grad_fn.next_functions[0].name() == "ToCopyBackward"
    z.sum().backward()
    assert y.grad.dtype == oc.float32
    np.testing.assert_array_equal(y.grad.numpy(), np.arange(6.0).reshape(2, 3))
    h = oc.tensor([1.0, 2.0], dtype=oc.float64, requires_grad=True)
    (h.to(dtype=oc.float16) * 3).sum().backward()
    assert h.grad.dtype == oc.float64
    np.testing.assert_array_equal(h.grad.numpy(), [3.0, 3.0])
    b = oc.tensor([1.0, 2.0], dtype=oc.float64, requires_grad=True)
    (b.to(oc.bfloat16).float() * 2).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [2.0, 2.0])
    i = b.long()  # to an integer dtype: not differentiable
    assert not i.requires_grad


def test_to_device_and_clone():
    rng = np.random.default_rng(18)
    x = make(rng, (3, 2), "strided")
    check(lambda x: x.to("cpu") * x.cpu(), x)
    check(lambda x: x.clone() * x, x)
    check(lambda x: x.contiguous().exp(), x)


# ---- compositions ---------------------------------------------------------------------------

def test_small_network():
    rng = np.random.default_rng(19)
    x = make(rng, (4, 3), requires_grad=False)
    w1, b1 = make(rng, (3, 5), "transposed"), make(rng, (5,))
    w2 = make(rng, (5, 2), "strided")
    target = oc.tensor([0, 1, 1, 0])

    def loss(w1, b1, w2):
        h = (x @ w1 + b1).gelu().tanh()
        logits = h @ w2
        logp = logits.log_softmax(-1)
        return -logp.gather(1, target.unsqueeze(1)).mean() + (w1 * w1).sum() * 0.01

    check(loss, w1, b1, w2)


def test_attention_like_block():
    rng = np.random.default_rng(20)
    q, k, v = make(rng, (2, 3, 4)), make(rng, (2, 3, 4), "transposed"), make(rng, (2, 3, 4), "strided")
    mask = oc.tensor(np.tril(np.ones((3, 3))) > 0)

    def attn(q, k, v):
        s = (q @ k.transpose(-1, -2)) * 0.5
        s = oc.where(mask, s, -1e9)
        return s.softmax(-1) @ v

    check(attn, q, k, v)
