"""Fuzzing the public API: hypothesis throws random shapes, strides, dtypes, axes, indices, devices,
NaN/Inf values and malformed arguments at every public function and Tensor method.

The rules checked for every call:
- nothing crashes the interpreter (a crash fails the whole run);
- every rejection is a ValueError, TypeError, IndexError, MemoryError or RuntimeError with a message;
- `test_ops_agree_with_torch`: the same call goes to PyTorch; when both accept, shapes, dtypes and
  values (NaN where PyTorch has NaN) agree; when PyTorch rejects an input, Orchard rejects it too,
  except for the documented extensions in ORCHARD_ACCEPTS (e.g. arithmetic on bool tensors);
  when PyTorch accepts, Orchard does too, except for the documented limitations in ORCHARD_REFUSES
  (e.g. negative slice steps).
- `test_malformed_arguments`: every public callable, found by introspection, with arguments drawn
  from a pool of wrong types, absurd sizes, NaN/Inf, foreign arrays and tensors on both devices.

`pytest -s tests/py/test_fuzz.py` prints how many cases ran and how many bad inputs were tried;
ORCHARD_FUZZ_EXAMPLES scales the number of examples (default 150 per test and device).
"""
import collections
import inspect
import math
import os
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import orchard as oc
import orchard.nn.functional as F
from conftest import ALL_DTYPES, FROM_TORCH, LAYOUTS, TOLERANCE, TORCH_DTYPE, make_tensor, supports

ALLOWED = (ValueError, TypeError, IndexError, MemoryError, RuntimeError)
EXAMPLES = int(os.environ.get("ORCHARD_FUZZ_EXAMPLES", "150"))

# Counted over the session and printed at its end (`pytest -s`).
STATS = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    s = STATS
    print(f"\nfuzz: {s['cases'] + s['malformed']} cases. {s['cases']} op calls checked against PyTorch: "
          f"{s['compared']} results compared, {s['bad']} bad inputs ({s['bad_rejected']} rejected with a Python "
          f"exception, {s['bad_accepted']} accepted as documented extensions). {s['malformed']} calls with "
          f"malformed arguments: {s['malformed_rejected']} rejected, {s['malformed'] - s['malformed_rejected']} "
          f"accepted. Bad inputs in all: {s['bad'] + s['malformed_rejected']}.")


def check_rejection(exc, what):
    """A rejection must be one of the five Python exceptions the library promises, with a message."""
    assert isinstance(exc, ALLOWED), f"{what}: raised {type(exc).__name__}: {exc}"
    assert str(exc).strip(), f"{what}: {type(exc).__name__} without a message"


def attempt(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - classified by the caller
        return None, e


# ---- comparing an Orchard result with PyTorch's ------------------------------------------------

def host(x):
    """An Orchard or PyTorch tensor's values as a float64/int64/bool NumPy array."""
    if isinstance(x, oc.Tensor):
        x = x.detach().cpu()
        x = x.float() if x.dtype in (oc.bfloat16, oc.float16) else x
        return np.array(x.numpy(), copy=True)
    x = x.detach()
    return (x.float() if x.dtype in (torch.bfloat16, torch.float16) else x).numpy().copy()


def assert_same(ours, theirs, what, scale=1.0, atol=0.0):
    """Same structure, shapes, dtypes and values (within the result dtype's tolerance times `scale`)."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, oc.Tensor), f"{what}: got {type(ours).__name__}, PyTorch a tensor"
        assert ours.shape == tuple(theirs.shape), f"{what}: shape {ours.shape}, PyTorch {tuple(theirs.shape)}"
        assert ours.dtype == FROM_TORCH[theirs.dtype], f"{what}: dtype {ours.dtype!r}, PyTorch {theirs.dtype}"
        got, want = host(ours), host(theirs)
        if ours.dtype in TOLERANCE:
            rtol, atol_ = TOLERANCE[ours.dtype]
            with np.errstate(invalid="ignore"):
                np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol * scale,
                                           atol=atol_ * scale + atol, equal_nan=True, err_msg=what)
        else:
            np.testing.assert_array_equal(got, want, err_msg=what)
    elif isinstance(theirs, (tuple, list)):
        assert isinstance(ours, (tuple, list)) and len(ours) == len(theirs), f"{what}: {ours!r} vs {theirs!r}"
        for i, (o, t) in enumerate(zip(ours, theirs)):
            assert_same(o, t, f"{what}[{i}]", scale, atol)
    else:
        assert ours == theirs, f"{what}: {ours!r}, PyTorch {theirs!r}"


# ---- drawing inputs -------------------------------------------------------------------------------

SIDES = [0, 1, 1, 2, 3, 4, 5, 7, 9, 17]
SPECIAL_SCALARS = [0, 1, -1, 2, 7, -3, 0.5, -2.5, 1e-3, 1e4, -1e4, math.inf, -math.inf, math.nan, True, False, 0.0, -0.0]


class Pair:
    """One input in both libraries: `o` for Orchard (on the device under test), `t` for PyTorch."""

    def __init__(self, o, t):
        self.o, self.t = o, t

    def __repr__(self):
        if isinstance(self.o, oc.Tensor):
            return f"<{self.o.dtype!r} {self.o.shape} strides {self.o.stride()} on {self.o.device}>"
        return f"<{self.o!r} / {self.t!r}>"


def pick(x, lib):
    if isinstance(x, Pair):
        return x.o if lib == 0 else x.t
    if isinstance(x, list):
        return [pick(v, lib) for v in x]
    if isinstance(x, tuple):
        return tuple(pick(v, lib) for v in x)
    if isinstance(x, dict):
        return {k: pick(v, lib) for k, v in x.items()}
    return x


def torch_twin(o, arr):
    """A PyTorch tensor holding `arr` with the strides and storage offset of the Orchard tensor `o`, so
    that view(), is_contiguous() and in-place writes to expanded views behave alike."""
    t = torch.from_numpy(np.array(arr, copy=True)).to(TORCH_DTYPE[o.dtype])
    if any(n > 1 and s == 0 for n, s in zip(o.shape, o.stride())):  # expanded: a real expand of the base
        for dim, (n, stride) in enumerate(zip(o.shape, o.stride())):
            if n > 1 and stride == 0:
                t = t.narrow(dim, 0, 1)
        return t.expand(o.shape)
    if o.numel() == 0:
        return t
    extent = o.storage_offset() + sum((n - 1) * s for n, s in zip(o.shape, o.stride())) + 1
    view = torch.zeros(extent, dtype=t.dtype).as_strided(o.shape, o.stride(), o.storage_offset())
    view.copy_(t)
    return view


class Draw:
    """The drawing helpers of one example: tensors in random layouts with NaN/Inf sprinkled in,
    shapes, dims (a few out of range), indices (a few out of bounds)."""

    def __init__(self, data, device):
        self.data, self.device = data, device
        self.pairs = []  # every tensor drawn, for the documented-difference predicates
        self.theirs = None  # PyTorch's result, once known

    def __call__(self, strategy):
        return self.data.draw(strategy)

    def dtype(self, dtypes=ALL_DTYPES):
        return self(st.sampled_from([d for d in dtypes if supports(self.device, d)]))

    def shape(self, min_dims=0, max_dims=4):
        return tuple(self(st.lists(st.sampled_from(SIDES), min_size=min_dims, max_size=max_dims)))

    def tensor(self, shape=None, dtype=None, dtypes=ALL_DTYPES, special=True, low=-3.0, high=3.0):
        shape = self.shape() if shape is None else tuple(shape)
        dtype = self.dtype(dtypes) if dtype is None else dtype
        layout = self(st.sampled_from(LAYOUTS))
        rng = np.random.default_rng(self(st.integers(0, 2**32 - 1)))
        special = special and self(st.integers(0, 3)) == 0
        o, arr = make_tensor(rng, shape, dtype, layout, self.device, low=low, high=high, special=special)
        pair = Pair(o, torch_twin(o, arr))
        self.pairs.append(pair)
        return pair

    def index(self, shape, size, dtypes=(oc.int64, oc.int32)):
        """Indices for a dim of `size`: mostly in [0, size) or [-size, size) (negative ones count from the end in
        Python-style keys; index ops refuse them, as PyTorch does), sometimes out of bounds."""
        dtype = self(st.sampled_from(dtypes))
        lo, hi = (-size if self(st.booleans()) else 0, size - 1) if size else (-2, 1)
        if self(st.integers(0, 4)) == 0:
            lo, hi = lo - 3, hi + 3
        arr = np.random.default_rng(self(st.integers(0, 2**32 - 1))).integers(lo, hi + 1, size=shape)
        arr = arr.astype(np.int64)
        o = oc.tensor(arr, dtype=dtype, device=self.device)
        pair = Pair(o, torch.from_numpy(arr).to(TORCH_DTYPE[dtype]))
        return pair, arr

    def dim(self, ndim, allow_bad=True):
        lo, hi = (-max(ndim, 1), max(ndim, 1) - 1)
        if allow_bad and self(st.integers(0, 5)) == 0:
            return self(st.sampled_from([hi + 1, lo - 1, hi + 5, 2**62, -2**62]))
        return self(st.integers(lo, hi))

    def dims(self, ndim):
        """None, an int, or a tuple (possibly empty, possibly repeating, possibly out of range)."""
        kind = self(st.integers(0, 3))
        if kind == 0:
            return None
        if kind == 1:
            return self.dim(ndim)
        return tuple(self.dim(ndim) for _ in range(self(st.integers(0, min(ndim, 3) + (kind == 3)))))

    def scalar(self):
        return self(st.sampled_from(SPECIAL_SCALARS))

    def other(self, shape, dtypes=ALL_DTYPES):
        """The second operand of a binary op: a broadcastable (sometimes not) tensor, or a Python scalar."""
        kind = self(st.integers(0, 5))
        if kind == 0:
            return self.scalar()
        if kind == 1:  # not broadcastable, or a different rank
            return self.tensor(dtypes=dtypes)
        s = list(shape)
        drop = self(st.integers(0, len(s)))
        s = [1 if self(st.integers(0, 3)) == 0 else n for n in s[drop:]]
        return self.tensor(shape=s, dtypes=dtypes)


# ---- the op table ---------------------------------------------------------------------------------
# Each generator draws the arguments of one call and returns (name, orchard thunk, torch thunk,
# options). `scale` widens the tolerance (reductions, matmul: summation order differs);
# `check` replaces the comparison (e.g. argmax ties).

def call(fn_o, fn_t, *args, **kwargs):
    return (lambda: fn_o(*pick(args, 0), **pick(kwargs, 0)), lambda: fn_t(*pick(args, 1), **pick(kwargs, 1)))


def method(name, x, *args, **kwargs):
    return call(lambda s, *a, **k: getattr(s, name)(*a, **k), lambda s, *a, **k: getattr(s, name)(*a, **k),
                x, *args, **kwargs)


def promote_0d_like_orchard(*operands):
    """Orchard promotes a 0-d tensor like any other (torch.promote_types); PyTorch lets operands with
    dims win over 0-d ones of the same kind (int32 tensor + int64 0-d tensor is int32 there). When
    another operand has dims, the PyTorch twin of a 0-d operand becomes a one-element 1-d tensor: it
    broadcasts to the same shape and promotes as Orchard does."""
    pairs = [p for p in operands if isinstance(p, Pair)]
    if any(p.o.ndim for p in pairs):
        for p in pairs:
            if p.o.ndim == 0:
                p.t = p.t.reshape(1)


UNARY = ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "sin", "cos", "logical_not"]
BINARY = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
          "logical_and", "logical_or"]
# Operators, and the PyTorch function each one means (PyTorch's own reflected operators take other
# routes: its __rtruediv__ multiplies by a reciprocal rounded to the input's dtype).
OPERATORS = {"__add__": lambda x, y: torch.add(x, y), "__sub__": lambda x, y: torch.sub(x, y),
             "__mul__": lambda x, y: torch.mul(x, y), "__truediv__": lambda x, y: torch.div(x, y),
             "__pow__": lambda x, y: torch.pow(x, y), "__radd__": lambda x, y: torch.add(y, x),
             "__rsub__": lambda x, y: torch.sub(y, x), "__rmul__": lambda x, y: torch.mul(y, x),
             "__rtruediv__": lambda x, y: torch.div(y, x), "__rpow__": lambda x, y: torch.pow(y, x)}
INPLACE = ["add_", "sub_", "mul_", "div_"]
REDUCE = ["sum", "mean", "amax", "amin", "logsumexp"]


def torch_gelu_with_limits(x, approximate="none"):
    """PyTorch's gelu where its answer is defined: at +-inf, gelu's limits (+inf and -0) instead, since
    PyTorch's vector kernels give NaN at +inf and its scalar path +inf."""
    y = torch.nn.functional.gelu(x, approximate=approximate)
    return torch.where(x == math.inf, x, torch.where(x == -math.inf, -0.0, y))


def gen_unary(d):
    name = d(st.sampled_from(UNARY + ["gelu"]))
    x = d.tensor()
    if name == "gelu":
        approximate = d(st.sampled_from(["none", "tanh", "erf"]))
        return (name, *call(oc.gelu, torch_gelu_with_limits, x, approximate=approximate), {})
    return (name, *method(name, x), {})


def gen_binary(d):
    name = d(st.sampled_from(BINARY + list(OPERATORS) + INPLACE))
    x = d.tensor()
    y = d.other(x.o.shape)
    if name in INPLACE:
        promote_0d_like_orchard(y)
        return (name, *method(name, x, y), {})
    promote_0d_like_orchard(x, y)
    if name in ("add", "sub") and d(st.booleans()):
        alpha = d(st.sampled_from([2, -1, 0.5, 0]))
        return (name, *call(getattr(oc, name), getattr(torch, name), x, y, alpha=alpha), {})
    if name.startswith("__"):
        if not isinstance(y, Pair):  # a Python scalar: PyTorch's operator, within the dtype's tolerance
            return (name, *method(name, x, y), {})
        return (name, lambda: getattr(x.o, name)(y.o), lambda: OPERATORS[name](x.t, y.t), {})
    return (name, *call(getattr(oc, name), getattr(torch, name), x, y), {})


def gen_where_clamp(d):
    x = d.tensor()
    if d(st.booleans()):
        cond = d.tensor(shape=x.o.shape if d(st.integers(0, 4)) else d.shape(), dtypes=[oc.bool] * 4 + [oc.float32])
        y = d.other(x.o.shape)
        promote_0d_like_orchard(cond, x, y)
        return ("where", *call(oc.where, torch.where, cond, x, y), {})
    lo = None if d(st.integers(0, 2)) == 0 else d.other(x.o.shape)
    hi = None if d(st.integers(0, 2)) == 0 else d.other(x.o.shape)
    if isinstance(lo, Pair) != isinstance(hi, Pair) and lo is not None and hi is not None:
        # A Python scalar bound next to a tensor bound: Orchard applies them in turn, each promoting
        # as where() does; PyTorch converts the scalar to a tensor of its choosing. Same kind here.
        hi = d.other(x.o.shape) if isinstance(lo, Pair) else d.scalar()
        if isinstance(lo, Pair) != isinstance(hi, Pair):
            hi = None
    promote_0d_like_orchard(x, lo, hi)
    return ("clamp", *call(oc.clamp, torch.clamp, x, lo, hi), {})


def gen_reduce(d):
    name = d(st.sampled_from(REDUCE + ["var", "softmax", "log_softmax"]))
    x = d.tensor()
    keepdim = d(st.booleans())
    if name in ("softmax", "log_softmax"):
        return (name, *method(name, x, d.dim(x.o.ndim)), {"scale": 4})
    dims = d.dims(x.o.ndim)
    kw = {} if dims is None else {"dim": dims}
    if name == "logsumexp" and dims is None:
        kw = {"dim": ()}
    if name == "var":
        kw["correction"] = d(st.sampled_from([0, 1, 2]))
    return (name, *method(name, x, keepdim=keepdim, **kw), {"scale": 16})


def check_extreme(ours, theirs, x, dim, keepdim, name):
    """max/min and argmax/argmin: values as PyTorch's; indices pointing at elements equal to the
    ones PyTorch's indices point at (ties may resolve to another index)."""
    if name in ("max", "min") and dim is None:
        return assert_same(ours, theirs, name)
    if name in ("max", "min"):
        assert_same(ours[0], theirs[0], name)
        ours, theirs = ours[1], theirs[1]
    assert ours.shape == tuple(theirs.shape) and ours.dtype == oc.int64, f"{name}: {ours!r} vs {theirs!r}"
    xs, oi, ti = host(x.t), host(ours), host(theirs)
    if dim is None or xs.ndim == 0:
        flat = xs.reshape(-1)
        picked, want = flat[oi.reshape(-1)], flat[ti.reshape(-1)]
    else:
        d = dim % xs.ndim
        if not keepdim:
            oi, ti = np.expand_dims(oi, d), np.expand_dims(ti, d)
        picked, want = np.take_along_axis(xs, oi, d), np.take_along_axis(xs, ti, d)
    np.testing.assert_array_equal(picked, want, err_msg=name)


def gen_extreme(d):
    name = d(st.sampled_from(["max", "min", "argmax", "argmin"]))
    x = d.tensor()
    keepdim = d(st.booleans())
    dim = None if d(st.integers(0, 2)) == 0 else d.dim(x.o.ndim)
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    fo, ft = method(name, x, **kw)
    return (name, fo, ft, {"check": lambda o, t: check_extreme(o, t, x, dim, keepdim, name)})


def gen_matmul(d):
    m, k, n, b = (d(st.sampled_from([0, 1, 2, 3, 5, 9])) for _ in range(4))
    k2 = k if d(st.integers(0, 5)) else k + 1
    shapes_a = [(k,), (m, k), (b, m, k), (1, b, m, k), (2, 1, m, k)]
    shapes_b = [(k2,), (k2, n), (b, k2, n), (b, 1, k2, n)]
    dtypes = [oc.float16, oc.bfloat16, oc.float32, oc.float64, oc.int64, oc.int32, oc.bool]
    a = d.tensor(shape=d(st.sampled_from(shapes_a)), dtypes=dtypes, special=False)
    bt = d.tensor(shape=d(st.sampled_from(shapes_b)), dtypes=[a.o.dtype] * 3 + dtypes, special=False)
    # Orchard promotes mixed dtypes as the elementwise ops do; PyTorch wants one dtype (and answers
    # some mixes with odd dtypes), so its reference gets both operands in the promoted dtype.
    promoted = torch.promote_types(a.t.dtype, bt.t.dtype)
    return ("matmul", *call(oc.matmul, lambda x, y: torch.matmul(x.to(promoted), y.to(promoted)), a, bt), {"scale": 8})


def gen_index(d):
    name = d(st.sampled_from(["index_select", "gather", "scatter_add", "embedding", "getitem_list"]))
    x = d.tensor(shape=d.shape(min_dims=1, max_dims=3))
    dim = d.dim(x.o.ndim)
    size = x.o.shape[dim] if -x.o.ndim <= dim < x.o.ndim else 3
    if name == "index_select":
        idx, _ = d.index((d(st.sampled_from([0, 1, 2, 5])),), size)
        return (name, *call(oc.index_select, torch.index_select, x, dim, idx), {})
    if name == "embedding":
        w = d.tensor(shape=(d(st.sampled_from([1, 3, 7])), d(st.sampled_from([0, 1, 4]))), dtypes=[oc.float32, oc.float16])
        idx, _ = d.index(d.shape(max_dims=2), w.o.shape[0])
        return (name, *call(oc.embedding, torch.nn.functional.embedding, idx, w), {})
    if name == "getitem_list":
        idx, _ = d.index(d.shape(max_dims=2), x.o.shape[0])
        return (name, *call(lambda t, i: t[i], lambda t, i: t[i], x, idx), {})
    shape = list(x.o.shape)
    if -x.o.ndim <= dim < x.o.ndim:
        shape[dim] = d(st.sampled_from([0, 1, 2, 4]))
    shape = [min(s, d(st.sampled_from([s, s, 1, 0]))) if i != dim % len(shape) else s for i, s in enumerate(shape)]
    idx, _ = d.index(shape, size)
    if name == "gather":
        return (name, *call(oc.gather, torch.gather, x, dim, idx), {})
    src = d.tensor(shape=shape, dtype=x.o.dtype if d(st.integers(0, 5)) else None)
    base = Pair(x.o.clone(), x.t.clone())
    return (name, *call(oc.scatter_add, torch.scatter_add, base, dim, idx, src), {"scale": 8})


def gen_join(d):
    name = d(st.sampled_from(["cat", "stack", "split", "tril", "triu"]))
    x = d.tensor()
    if name in ("tril", "triu"):
        return (name, *method(name, x, d(st.integers(-4, 4))), {})
    if name == "split":
        if d(st.booleans()):
            size = d(st.sampled_from([-1, 0, 1, 2, 3]))
        else:
            size = [d(st.sampled_from([0, 1, 2, 3])) for _ in range(d(st.integers(0, 3)))]
        fo, ft = method("split", x, size, d.dim(x.o.ndim))
        return (name, lambda: list(fo()), lambda: list(ft()), {})
    others = [x] + [d.tensor(shape=x.o.shape if d(st.integers(0, 4)) else d.shape(),
                             dtype=x.o.dtype if d(st.integers(0, 3)) else None)
                    for _ in range(d(st.integers(0, 2)))]
    if name == "cat" and d(st.booleans()):  # cat along one dim of different sizes
        dim = d.dim(x.o.ndim)
        if -x.o.ndim <= dim < x.o.ndim:
            for i in range(1, len(others)):
                s = list(x.o.shape)
                s[dim] = d(st.sampled_from([0, 1, 3]))
                others[i] = d.tensor(shape=s, dtype=x.o.dtype)
        return (name, *call(oc.cat, torch.cat, others, dim), {})
    dim = d.dim(x.o.ndim + (name == "stack"))
    return (name, *call(getattr(oc, name), getattr(torch, name), others, dim), {})


def gen_view(d):
    name = d(st.sampled_from(["reshape", "view", "flatten", "transpose", "permute", "expand", "squeeze",
                              "unsqueeze", "narrow", "select", "T", "mT", "contiguous", "clone", "to"]))
    x = d.tensor()
    nd = x.o.ndim
    if name in ("reshape", "view"):
        n = x.o.numel()
        target = []
        rest = n
        for _ in range(d(st.integers(0, 3))):
            divs = [v for v in range(1, min(rest, 9) + 1) if rest % v == 0] if rest else [0, 1, 2]
            v = d(st.sampled_from(divs))
            target.append(v)
            rest = rest // v if v else 0
        target.append(rest if n else 0)
        if d(st.integers(0, 2)) == 0:
            target[d(st.integers(0, len(target) - 1))] = -1
        if d(st.integers(0, 5)) == 0:
            target.append(d(st.sampled_from([-1, -2, 2, 0])))  # often incompatible
        return (name, *method(name, x, *target), {})
    if name == "flatten":
        return (name, *method(name, x, d.dim(nd), d.dim(nd)), {})
    if name == "transpose":
        return (name, *method(name, x, d.dim(nd), d.dim(nd)), {})
    if name == "permute":
        perm = list(range(nd))
        perm = d(st.permutations(perm)) if d(st.integers(0, 4)) else [d.dim(nd) for _ in range(d(st.integers(0, nd + 1)))]
        return (name, *method(name, x, *perm), {})
    if name == "expand":
        shape = [s if s != 1 or d(st.booleans()) else d(st.sampled_from([1, 3, 0])) for s in x.o.shape]
        shape = [d(st.sampled_from([2, 1])) for _ in range(d(st.integers(0, 2)))] + shape
        if d(st.integers(0, 4)) == 0 and shape:
            shape[d(st.integers(0, len(shape) - 1))] = d(st.sampled_from([-1, -2, 5]))
        return (name, *method(name, x, *shape), {})
    if name == "squeeze":
        return (name, *method(name, x, d.dims(nd)), {}) if d(st.booleans()) else (name, *method(name, x), {})
    if name == "unsqueeze":
        return (name, *method(name, x, d.dim(nd + 1)), {})
    if name == "narrow":
        dim = d.dim(nd)
        return (name, *method(name, x, dim, d(st.integers(-4, 6)), d(st.integers(-1, 6))), {})
    if name == "select":
        return (name, *method(name, x, d.dim(nd), d(st.integers(-6, 6))), {})
    if name in ("T", "mT"):
        return (name, lambda: getattr(x.o, name), lambda: getattr(x.t, name), {})
    if name == "to":
        dtype = d.dtype()
        # Values that do not fit the target integer type convert to unspecified values in C++ and PyTorch.
        fits = dtype not in (oc.int32, oc.int64) or bool(np.all(np.isfinite(host(x.t))))
        fo, ft = call(lambda t, dt: t.to(dtype=dt), lambda t, dt: t.to(TORCH_DTYPE[dt]), x, dtype)
        return (name, fo, ft, {} if fits else {"check": lambda o, t: None})
    return (name, *method(name, x), {})


def random_key(d, nd):
    key = []
    for _ in range(d(st.integers(0, nd + 1))):
        kind = d(st.integers(0, 6))
        if kind == 0:
            key.append(d(st.integers(-6, 6)))
        elif kind in (1, 2):
            start = d(st.sampled_from([None, -7, -2, 0, 1, 3, 9]))
            stop = d(st.sampled_from([None, -7, -1, 0, 2, 4, 10]))
            step = d(st.sampled_from([None, 1, 2, 3, -1, 0]))
            key.append(slice(start, stop, step))
        elif kind == 3:
            key.append(None)
        elif kind == 4:
            key.append(Ellipsis)
        elif kind == 5:
            key.append(d(st.booleans()))
        else:
            key.append([d(st.integers(-4, 4)) for _ in range(d(st.integers(0, 3)))])
    return tuple(key) if len(key) != 1 or d(st.booleans()) else key[0]


def gen_getitem(d):
    x = d.tensor()
    key = random_key(d, x.o.ndim)
    if d(st.integers(0, 3)) == 0:  # t[key] = value
        value = d.other(())
        base = Pair(x.o.clone(), x.t.clone())

        def assign(t, v):
            t[key] = v
            return t
        return ("setitem", *call(assign, assign, base, value), {})
    return ("getitem", *call(lambda t: t[key], lambda t: t[key], x), {})


def gen_training(d):
    name = d(st.sampled_from(["cross_entropy", "layer_norm", "sdpa"]))
    if name == "cross_entropy":
        n, c = d(st.sampled_from([0, 1, 3, 8])), d(st.sampled_from([1, 2, 5, 33]))
        logits = d.tensor(shape=(n, c) if d(st.integers(0, 5)) else d.shape(), dtypes=[oc.float32, oc.float16, oc.bfloat16, oc.float64],
                          low=-30, high=30)
        tgt, arr = d.index((n,) if d(st.integers(0, 5)) else d.shape(max_dims=1), c)
        if d(st.booleans()) and arr.ndim == 1 and arr.size:
            arr[0] = -100
            tgt = Pair(oc.tensor(arr, device=d.device), torch.from_numpy(arr))
        reduction = d(st.sampled_from(["mean", "sum", "none", "avg"]))
        # The fused kernel keeps per-row losses in float32, also for float64 logits.
        scale = 16 * (TOLERANCE[oc.float32][0] / TOLERANCE[oc.float64][0] if logits.o.dtype == oc.float64 else 1)
        return (name, *call(oc._core.cross_entropy, torch.nn.functional.cross_entropy, logits, tgt,
                            reduction=reduction), {"scale": scale})
    if name == "layer_norm":
        x = d.tensor(shape=d.shape(min_dims=1), dtypes=[oc.float32, oc.float16, oc.bfloat16, oc.float64])
        norm = x.o.shape[-1:] if d(st.integers(0, 4)) else (d(st.sampled_from([1, 2, 3])),)
        w = d.tensor(shape=norm, dtype=x.o.dtype if d(st.integers(0, 4)) else None, special=False)
        b = d.tensor(shape=norm, dtype=w.o.dtype, special=False)
        # A row of equal values has variance 0: its x - mean (a rounding error of the mean) is
        # multiplied by 1/sqrt(eps) = 316. Orchard's two-pass mean is off by an ulp there where
        # PyTorch's Welford mean is exact, so allow that much more.
        amplified = 4 * float(np.finfo(np.float32).eps) * 3.0 * 3.0 / math.sqrt(1e-5)
        return (name, *call(F.layer_norm, torch.nn.functional.layer_norm, x, norm, w, b), {"scale": 16, "atol": amplified})
    B, H, Lq, Lk, D = (d(st.sampled_from(s)) for s in ([1, 2], [1, 2], [0, 1, 3, 5], [0, 1, 4], [1, 4, 8]))
    dtypes = [oc.float32, oc.float16, oc.bfloat16]
    q = d.tensor(shape=(B, H, Lq, D), dtypes=dtypes)
    k = d.tensor(shape=(B, H, Lk, D if d(st.integers(0, 6)) else D + 1), dtype=q.o.dtype, special=False)
    v = d.tensor(shape=(B, H, Lk, D), dtype=q.o.dtype, special=False)
    kw = {}
    if d(st.booleans()):
        kw["is_causal"] = True
    elif d(st.booleans()):
        kw["attn_mask"] = d.tensor(shape=(Lq, Lk), dtypes=[oc.bool, oc.bool, q.o.dtype], special=False)
    fo, ft = call(F.scaled_dot_product_attention, reference_attention, q, k, v, **kw)
    # An infinite q element times a hidden key can make a hidden score +inf (or NaN): unspecified, so
    # such rows are not compared when a mask hides keys.
    rows = np.flatnonzero(~np.isinf(host(q.t)).any(axis=(0, 1, 3))) if kw else np.arange(Lq)

    def check(o, t):
        assert o.shape == tuple(t.shape) and o.dtype == q.o.dtype, f"{name}: {o!r} vs {t!r}"
        assert_same(o[:, :, oc.tensor(rows, dtype=oc.int64)], t[:, :, rows], name, 16)
    return (name, fo, ft, {"check": check})


def reference_attention(q, k, v, attn_mask=None, is_causal=False):
    """PyTorch's scaled_dot_product_attention through its math path (its fused CPU kernel drops NaN
    in q), except that without keys every row is 0 in Orchard (PyTorch: NaN). k and v are drawn
    finite: NaN/Inf in keys or values that a mask hides is left unspecified (docs/ARCHITECTURE.md,
    "Numerical edge cases")."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.MATH):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    return torch.zeros_like(out) if k.shape[-2] == 0 else out


GENERATORS = {"unary": gen_unary, "binary": gen_binary, "where_clamp": gen_where_clamp, "reduce": gen_reduce,
              "extreme": gen_extreme, "matmul": gen_matmul, "index": gen_index, "join": gen_join,
              "view": gen_view, "getitem": gen_getitem, "training": gen_training}


# Documented differences from PyTorch: (ops or None for any, why, predicate(message, draw)).
def _drew_bool(d):
    return any(p.o.dtype == oc.bool for p in d.pairs)


# Inputs PyTorch refuses that Orchard defines.
ORCHARD_ACCEPTS = [
    (None, "bool tensors take part in arithmetic, abs, relu, clamp, argmax/argmin and matmul as 0 and 1 "
           "(as in NumPy); PyTorch implements few ops for bool",
     lambda msg, d: (_drew_bool(d) and re.search(r"Bool|bool", msg)) or "with a bool tensor is not supported" in msg),
    (None, "float ops of integer tensors (gelu) compute in float32, as exp and sqrt do in both",
     lambda msg, d: re.search(r"not implemented for '(Long|Int)'", msg)),
    ({"expand", "permute"}, "t.expand() and t.permute() of a 0-d tensor are the tensor itself",
     lambda msg, d: "missing 1 required positional" in msg and any(p.o.ndim == 0 for p in d.pairs)),
    (None, "a Python scalar is accepted wherever a tensor is (maximum(t, 2), clamp(t, tensor, 2.0)), and "
           "keepdim without dim", lambda msg, d: re.search(r"must be Tensor, not|invalid combination of arguments", msg)),
    ({"logsumexp"}, "logsumexp(dim=(), keepdim=True) reduces every dim; PyTorch fails on its own output shape",
     lambda msg, d: "doesn't match the broadcast shape" in msg),
    ({"squeeze"}, "squeeze(dim=None) squeezes every dim (some PyTorch builds look the None up as a dimension name)",
     lambda msg, d: "Please look up dimensions by name" in msg),
    ({"setitem"}, "t[mask] = value casts value to t's dtype, as every other assignment does",
     lambda msg, d: "source and destination dtypes match" in msg),
    ({"cross_entropy"}, "int32 class indices (PyTorch's CPU and CUDA kernels word their refusal differently)",
     lambda msg, d: "target dtype to be Long" in msg or "expected scalar type Long but found Int" in msg),
    ({"setitem"}, "assigning a Python float outside an integer dtype's range converts as a tensor cast does "
     "(an unspecified value, as PyTorch's casts)", lambda msg, d: "cannot be converted to type" in msg),
    ({"pow", "__pow__", "__rpow__"}, "an integer to a negative integer power is computed (1 and -1 keep their "
     "value, other bases give 0), as PyTorch does for a tensor exponent", lambda msg, d: "negative integer powers" in msg),
]
# Inputs PyTorch accepts that Orchard refuses.
ORCHARD_REFUSES = [
    ({"softmax", "log_softmax"}, "softmax needs floating point input",
     lambda msg, d: "input dtype must be floating point" in msg),
    ({"matmul"}, "no bool matmul", lambda msg, d: "not supported for bool" in msg),
    ({"expand"}, "negative sizes are refused (PyTorch lets one through when another side is 0)",
     lambda msg, d: "invalid size -" in msg),
    ({"mT"}, "mT needs at least 2 dims (PyTorch's identity on 0-d tensors is deprecated)",
     lambda msg, d: "dimension -2 is out of range" in msg),
    ({"cat"}, "PyTorch skips 1-d empty tensors in cat whatever the others' rank (a legacy rule)",
     lambda msg, d: any(p.o.shape == (0,) for p in d.pairs)),
    ({"sdpa"}, "q, k and v must have consistent shapes even when empty",
     lambda msg, d: any(p.o.numel() == 0 for p in d.pairs)),
    ({"getitem", "setitem"}, "negative slice steps, several index tensors or True/False in one key, assignment "
     "through integer index tensors and several ellipses are refused",
     lambda msg, d: re.search(r"slice step must be positive|only one index tensor|only one True/False|assignment "
                              r"with integer index tensors|single ellipsis", msg)),
    ({"setitem"}, "a value that cannot broadcast to the selection is refused even when nothing is selected (as in "
     "NumPy; PyTorch's t[False] = value ignores the value)", lambda msg, d: re.search(r"dimension \d+: 0 vs", msg)),
    ({"getitem", "setitem", "getitem_list"}, "out-of-bounds indices are refused even when the result is empty "
     "(PyTorch skips the check then)", lambda msg, d: "out of bounds" in msg and d.theirs is not None and d.theirs.numel() == 0),
]


def documented(table, name, exc, d):
    return any((ops is None or name in ops) and pred(str(exc), d) for ops, _, pred in table)


@pytest.mark.parametrize("family", list(GENERATORS))
def test_ops_agree_with_torch(device, family):
    @settings(max_examples=EXAMPLES)
    @given(data=st.data())
    def run(data):
        d = Draw(data, device)
        name, fo, ft, opts = GENERATORS[family](d)
        ours, err_o = attempt(fo)
        theirs, err_t = attempt(ft)
        STATS["cases"] += 1
        what = f"{name} on {device}"
        if err_o is not None:
            check_rejection(err_o, what)
        if err_t is not None:
            STATS["bad"] += 1
            if err_o is not None:
                STATS["bad_rejected"] += 1
                return
            assert documented(ORCHARD_ACCEPTS, name, err_t, d), \
                f"{what}: PyTorch refuses ({type(err_t).__name__}: {err_t}) but Orchard accepts"
            STATS["bad_accepted"] += 1
            return
        if err_o is not None:
            d.theirs = theirs if isinstance(theirs, torch.Tensor) else None
            assert documented(ORCHARD_REFUSES, name, err_o, d), \
                f"{what}: PyTorch accepts but Orchard raises {type(err_o).__name__}: {err_o}"
            STATS["bad"] += 1
            STATS["bad_rejected"] += 1
            return
        STATS["compared"] += 1
        if "check" in opts:
            opts["check"](ours, theirs)
        else:
            assert_same(ours, theirs, what, opts.get("scale", 1.0), opts.get("atol", 0.0))

    run()


# ---- malformed arguments to every public callable ------------------------------------------------

def public_callables():
    """Every public function of orchard, orchard.nn.functional, orchard.autograd and orchard.profile,
    and every public Tensor method and operator."""
    out = []
    skip = {"no_grad", "enable_grad", "set_grad_enabled", "gradcheck"}  # context managers; gradcheck is O(numel) calls
    for mod, prefix in [(oc, "oc"), (oc._core, "oc._core"), (F, "F"), (oc.autograd, "autograd"), (oc.profile, "profile")]:
        for name in sorted(dir(mod)):
            obj = getattr(mod, name)
            if name.startswith("_") or name in skip or inspect.isclass(obj) or inspect.ismodule(obj) or not callable(obj):
                continue
            out.append((f"{prefix}.{name}", None, obj))
    dunders = {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
               "__pow__", "__rpow__", "__matmul__", "__rmatmul__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
               "__ge__", "__and__", "__or__", "__invert__", "__neg__", "__abs__", "__iadd__", "__isub__", "__imul__",
               "__itruediv__", "__getitem__", "__setitem__", "__len__", "__iter__", "__bool__", "__float__",
               "__int__", "__index__", "__array__", "__dlpack__", "__dlpack_device__", "__repr__", "__hash__"}
    for name in sorted(dir(oc.Tensor)):
        if name.startswith("_") and name not in dunders:
            continue
        out.append((f"Tensor.{name}", name, None))
    return out


CALLABLES = public_callables()
KEYWORDS = ["dim", "keepdim", "dtype", "device", "alpha", "correction", "approximate", "min", "max", "diagonal",
            "scale", "dropout_p", "causal", "seed", "return_mask", "attn_mask", "is_causal", "enable_gqa",
            "retain_graph", "gradient", "reduction", "ignore_index", "eps", "requires_grad", "copy", "start_dim",
            "end_dim", "weight", "bias", "p", "training", "allow_unused", "grad_outputs"]


@st.composite
def junk(draw, device, depth=0):
    """One argument from the pool: tensors of any dtype and layout on either device (and the device
    under test), wrong types, absurd or negative sizes, NaN/Inf, foreign arrays, nested sequences."""
    kind = draw(st.integers(0, 15))
    if kind <= 3:
        dev = device if kind else draw(st.sampled_from(["cpu", device]))
        dtype = draw(st.sampled_from([t for t in ALL_DTYPES if supports(dev, t)]))
        shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5]), max_size=3)))
        layout = draw(st.sampled_from(LAYOUTS))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        t, _ = make_tensor(rng, shape, dtype, layout, dev, special=draw(st.booleans()))
        if t.is_floating_point() and draw(st.integers(0, 3)) == 0:
            t = t.detach().requires_grad_()
        return t
    if kind == 4:
        return draw(st.sampled_from([None, Ellipsis, object(), "x", "", "cpu", "metal", "cuda", "mean", "tanh", b"1"]))
    if kind == 5:
        return draw(st.sampled_from([1.5, -0.5, math.nan, math.inf, -math.inf, 0.0, -0.0, 1e300, 1e-300]))
    if kind in (6, 7):
        return draw(st.integers(-4, 6))
    if kind == 8:
        return draw(st.sampled_from([2**31, 2**32 + 1, 2**40, 2**62, 2**63 - 1, -2**63, 2**63, 2**64, 2**70, -2**40]))
    if kind == 9:
        return draw(st.booleans())
    if kind == 10 and depth < 2:
        items = draw(st.lists(junk(device, depth + 1), max_size=3))
        return items if draw(st.booleans()) else tuple(items)
    if kind == 11:
        return draw(st.sampled_from(ALL_DTYPES + [oc.device("cpu"), oc.device(device), np.float32, torch.float32]))
    if kind == 12:
        dtype = draw(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64, ">f4"]))
        return np.zeros(tuple(draw(st.lists(st.integers(0, 3), max_size=2))), dtype=dtype)
    if kind == 13:
        return draw(st.sampled_from([slice(None), slice(1, None), slice(None, None, -1), slice(0, 2, 0),
                                     slice(2**62, None), slice(-2**63, 2**63)]))
    if kind == 14:
        return draw(st.sampled_from([np.int64(2), np.float32(0.5), np.int32(-1), np.float64(np.nan), np.bool_(True)]))
    return torch.zeros(tuple(draw(st.lists(st.integers(0, 3), max_size=2))))


def test_malformed_arguments(device):
    @settings(max_examples=EXAMPLES * 4)
    @given(entry=st.sampled_from(CALLABLES), data=st.data())
    def run(entry, data):
        label, method_name, fn = entry
        args = data.draw(st.lists(junk(device), max_size=4), label="args")
        kwargs = data.draw(st.dictionaries(st.sampled_from(KEYWORDS), junk(device), max_size=2), label="kwargs")
        if method_name is not None:
            self_t = data.draw(junk(device).filter(lambda v: isinstance(v, oc.Tensor)), label="self")
            attr, err = attempt(lambda: getattr(self_t, method_name))
            if err is not None:
                check_rejection(err, label)
                return
            fn = attr
        STATS["malformed"] += 1
        result, err = attempt(lambda: fn(*args, **kwargs))
        if err is None and inspect.isgenerator(result):
            result, err = attempt(lambda: list(result))
        if err is not None:
            check_rejection(err, f"{label}(*{args!r}, **{kwargs!r})")
            STATS["malformed_rejected"] += 1

    run()


# ---- what the fuzzer found, pinned down --------------------------------------------------------

def test_found_add_with_alpha_keeps_a_python_scalar_weak(device):
    """add/sub(t, scalar, alpha=...) promote as t + scalar does, and work on every device (the
    scaled scalar used to become a float32/int64 CPU tensor)."""
    x = oc.ones(3, dtype=oc.bfloat16, device=device)
    assert oc.add(x, 2.0, alpha=0.5).dtype == oc.bfloat16 and oc.sub(x, 2, alpha=-1).dtype == oc.bfloat16
    i = oc.ones(3, dtype=oc.int32, device=device)
    assert oc.add(i, 2, alpha=2).tolist() == [5, 5, 5] and oc.add(i, 2, alpha=2).dtype == oc.int32
    assert oc.add(i, True, alpha=3).tolist() == [4, 4, 4]
    b = oc.tensor([True, False], device=device)
    assert oc.add(b, True, alpha=2).tolist() == [True, True]
    assert oc.add(x, 2.0, alpha=0.5).device == device


def test_found_clamp_takes_nan_bounds_as_torch(device):
    x = oc.tensor([1.0, NAN_, 5.0], device=device)
    assert np.isnan(oc.clamp(x, min=NAN_).cpu().numpy()).all()
    assert np.isnan(oc.clamp(x, max=oc.tensor([NAN_, 1.0, 1.0], device=device)).cpu().numpy()[:2]).all()
    assert oc.clamp(x, min=2.0, max=4).tolist()[::2] == [2.0, 4.0]


def test_found_zero_d_tensors_check_their_dims(device):
    t = oc.tensor(1.5, device=device)
    for bad in (lambda: t.softmax(1), lambda: t.log_softmax(-2), lambda: t.flatten(1, 0), lambda: t.narrow(0, 0, 1),
                lambda: t.size(0), lambda: t.stride(0)):
        with pytest.raises(IndexError):
            bad()
    assert t.softmax(-1).item() == 1.0 and t.flatten(0, -1).shape == (1,)


def test_found_keys_with_several_true_false_are_refused(device):
    t = oc.zeros(3, 4, device=device)
    for key in [(True, False), (False, [1, 2]), ([0], True), (0, True, True)]:
        with pytest.raises(IndexError, match="only one"):
            t[key]
    assert t[True].shape == (1, 3, 4) and t[None, False].shape == (1, 0, 3, 4)


def test_found_setitem_drops_leading_ones_of_the_value(device):
    t = oc.zeros(2, 3, device=device)
    t[0] = oc.tensor([[1.0, 2.0, 3.0]], device=device)
    t[1, 1:] = oc.ones(1, 1, 2, device=device)
    assert t.tolist() == [[1.0, 2.0, 3.0], [0.0, 1.0, 1.0]]
    with pytest.raises(ValueError):
        t[0] = oc.ones(2, 3, device=device)


def test_found_in_place_ops_on_empty_expanded_views(device):
    t = oc.zeros(0, 1, device=device).expand(0, 4)
    t.add_(1.0)
    t.fill_(2.0)
    assert t.shape == (0, 4)


def test_found_tensor_converts_python_floats_once_to_the_dtype_asked_for():
    assert oc.tensor([0.1], dtype=oc.float64).tolist() == [0.1]
    assert oc.tensor([1e300], dtype=oc.float64).tolist() == [1e300]
    assert oc.tensor([0.1]).dtype == oc.float32  # the default stays float32


@pytest.mark.parametrize("call", [
    lambda: oc.zeros_like(None), lambda: oc.full_like([1.0], 2.0), lambda: oc.rand_like(3),
    lambda: F.softmax([1.0, 2.0], 0), lambda: F.linear(oc.ones(2), "w"), lambda: F.layer_norm(None, 3),
    lambda: F.layer_norm(oc.ones(2, 3), 3, weight=[1.0] * 3), lambda: F.dropout(object()),
])
def test_found_python_helpers_raise_type_errors_for_non_tensors(call):
    with pytest.raises(TypeError, match="orchard.Tensor|Tensor"):
        call()


NAN_ = math.nan


def test_found_int_of_inf_or_nan_is_a_value_error(device):
    for v in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="cannot convert"):
            int(oc.tensor(v, device=device))
    assert int(oc.tensor(2.7, device=device)) == 2


def test_found_add_with_alpha_of_two_bool_tensors_stays_bool(device):
    a, b = oc.tensor(True, device=device), oc.tensor(False, device=device)
    assert oc.add(b, a, alpha=2).dtype == oc.bool and oc.add(b, a, alpha=2).item() is True
    assert oc.add(a, a, alpha=0).item() is True
