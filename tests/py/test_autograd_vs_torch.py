"""Random compositions of ops, differentiated by Orchard and by torch.autograd on the same float32
inputs: the gradients of every leaf must agree to a relative error of 1e-5 (max-norm) on these
well-conditioned graphs (bounded activations, divisors kept away from 0, small sizes).

A seeded generator writes a small program (a chain of 4-9 ops over a running 2-D tensor, with
partner operands sliced from shared leaves so gradients also accumulate through views), then both
libraries run it. Orchard runs it on each device (`L` is then orchard with its factories on that
device); the plan is made on the CPU."""
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import orchard as oc
from conftest import OrchardOn, supports

MAX_SIDE = 6
POOL = 2 * MAX_SIDE  # leaves P, Q, v are this large, so partners fit any [r, c] the chain reaches


def gelu(L, x, approximate="none"):
    return F.gelu(x, approximate=approximate) if L is torch else x.gelu(approximate=approximate)


def widest(L, x):
    """x as float64, or as float32 on a device without float64 (Metal)."""
    return x.double() if L is torch or supports(L.device, oc.float64) else x.float()


def partner(leaves, kind, r, c):
    """An operand broadcastable against an [r, c] tensor, viewed out of the leaf P or v."""
    P, v = leaves["P"], leaves["v"]
    if kind == "full":
        return P[:r, :c]
    if kind == "row":
        return P[1, :c]
    if kind == "col":
        return P[:r, 2:3]
    if kind == "scalar":
        return v[3]
    if kind == "transposed":
        return P[:c, :r].T
    if kind == "strided":
        return P[::1, ::1][:r, :c] if c > 3 else v[:c]
    raise ValueError(kind)


PARTNERS = ["full", "row", "col", "scalar", "transposed", "strided"]

UNARY = {
    "tanh": lambda L, x: x.tanh(),
    "sigmoid": lambda L, x: x.sigmoid(),
    "sin": lambda L, x: x.sin(),
    "cos": lambda L, x: x.cos(),
    "erf": lambda L, x: x.erf(),
    "exp_tanh": lambda L, x: x.tanh().exp(),
    "gelu": lambda L, x: gelu(L, x),
    "gelu_tanh": lambda L, x: gelu(L, x, "tanh"),
    "relu": lambda L, x: x.relu() + x * 0.1,
    "abs": lambda L, x: x.abs(),
    "square": lambda L, x: x * x,
    "neg": lambda L, x: -x,
    "sqrt": lambda L, x: (x * x + 1).sqrt(),
    "rsqrt": lambda L, x: (x * x + 1).rsqrt(),
    "log": lambda L, x: (x.sigmoid() + 0.5).log(),
    "pow": lambda L, x: (x * x + 0.5) ** 1.5,
    "rpow": lambda L, x: 2.0 ** x.tanh(),
    "clamp": lambda L, x: x.clamp(min=-0.8, max=0.9),
    "recip": lambda L, x: 1.0 / (x.sigmoid() + 1),
    "affine": lambda L, x: 2.5 - x * 0.75,
    "to_double": lambda L, x: widest(L, x).tanh().float(),
}

BINARY = {
    "add": lambda L, x, p: x + p,
    "sub": lambda L, x, p: p - x,
    "mul": lambda L, x, p: x * p,
    "div": lambda L, x, p: x / (p.sigmoid() + 0.5),
    "rdiv": lambda L, x, p: p / (x.tanh() + 2),
    "maximum": lambda L, x, p: x.maximum(p),
    "minimum": lambda L, x, p: L.minimum(x, p),
    "pow": lambda L, x, p: (x.sigmoid() + 0.5) ** p.tanh(),
    "where": lambda L, x, p: L.where(p > 0, x, x * 2 - p),
    "add_alpha": lambda L, x, p: L.add(x, p, alpha=-1.5),
}


class Op:
    """`draw(rng, r, c)` returns params (or None when the op does not apply to an [r, c] input);
    `run(L, x, leaves, params)` applies it with library L (orchard or torch)."""

    def __init__(self, name, draw, run):
        self.name, self.draw, self.run = name, draw, run


def _choice(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _ops():
    ops = []

    def add(name, draw, run):
        ops.append(Op(name, draw, run))

    add("unary", lambda rng, r, c: _choice(rng, list(UNARY)), lambda L, x, lv, p: UNARY[p](L, x))
    add("binary", lambda rng, r, c: (_choice(rng, list(BINARY)), _choice(rng, PARTNERS)),
        lambda L, x, lv, p: BINARY[p[0]](L, x, partner(lv, p[1], *x.shape)))
    add("matmul", lambda rng, r, c: int(rng.integers(1, MAX_SIDE + 1)),
        lambda L, x, lv, k: (x @ lv["Q"][: x.shape[1], :k]).tanh())
    add("matmul_t", lambda rng, r, c: int(rng.integers(1, MAX_SIDE + 1)),
        lambda L, x, lv, k: lv["Q"][:k, : x.shape[1]].matmul(x.T).T)
    add("matvec", lambda rng, r, c: None,
        lambda L, x, lv, p: (x @ lv["v"][: x.shape[1]]).unsqueeze(1) + x)
    add("batched_matmul", lambda rng, r, c: None if r % 2 else True,
        lambda L, x, lv, p: (x.reshape(2, x.shape[0] // 2, x.shape[1])
                             @ lv["Q"][: x.shape[1], :3].unsqueeze(0).expand(2, x.shape[1], 3)).reshape(x.shape[0], 3))
    add("transpose", lambda rng, r, c: None, lambda L, x, lv, p: x.transpose(0, 1))
    add("permute3", lambda rng, r, c: None, lambda L, x, lv, p: x.unsqueeze(2).permute(1, 2, 0).squeeze(1))
    add("reshape", lambda rng, r, c: None, lambda L, x, lv, p: x.reshape(x.shape[1], x.shape[0]))
    add("flatten", lambda rng, r, c: None, lambda L, x, lv, p: x.flatten().reshape(x.shape).contiguous())
    add("rows_step", lambda rng, r, c: None if r < 2 else int(rng.integers(0, 2)),
        lambda L, x, lv, s: x[s::2])
    add("cols_slice", lambda rng, r, c: None if c < 2 else int(rng.integers(1, c)),
        lambda L, x, lv, s: x[:, s:])
    add("select_expand", lambda rng, r, c: int(rng.integers(0, r)),
        lambda L, x, lv, i: x[i].unsqueeze(0).expand(x.shape[0], x.shape[1]) * x)
    add("expand_col", lambda rng, r, c: int(rng.integers(0, c)),
        lambda L, x, lv, j: x[:, j : j + 1].expand(x.shape[0], 4))
    add("normalize", lambda rng, r, c: int(rng.integers(0, 2)) if min(r, c) > 1 else None,
        lambda L, x, lv, d: (x - x.mean(d, keepdim=True)) / (x.var(d, keepdim=True) + 1).sqrt())
    add("sum_keepdim", lambda rng, r, c: int(rng.integers(0, 2)),
        lambda L, x, lv, d: x.sum(d, keepdim=True) * 0.5 + x)
    add("mean_all", lambda rng, r, c: None, lambda L, x, lv, p: x - x.mean())
    add("softmax", lambda rng, r, c: int(rng.integers(0, 2)), lambda L, x, lv, d: x.softmax(d) * 3)
    add("log_softmax", lambda rng, r, c: int(rng.integers(0, 2)), lambda L, x, lv, d: x.log_softmax(d))
    add("logsumexp", lambda rng, r, c: int(rng.integers(0, 2)),
        lambda L, x, lv, d: x - x.logsumexp(d, keepdim=True))
    add("amax", lambda rng, r, c: int(rng.integers(0, 2)), lambda L, x, lv, d: x - _untie(L, x).amax(d, keepdim=True))
    add("amin_all", lambda rng, r, c: None, lambda L, x, lv, p: x * _untie(L, x).amin())
    add("max_dim", lambda rng, r, c: int(rng.integers(0, 2)),
        lambda L, x, lv, d: _untie(L, x).max(d, keepdim=True).values + _untie(L, x).min(d, keepdim=True).values * x)
    add("var_vec", lambda rng, r, c: None, lambda L, x, lv, p: x.var(0).unsqueeze(0) + x)
    add("index_select", lambda rng, r, c: [int(i) for i in rng.integers(0, r, size=rng.integers(1, 5))],
        lambda L, x, lv, idx: x.index_select(0, L.tensor(idx)))
    add("gather", lambda rng, r, c: rng.integers(0, c, size=(r, int(rng.integers(1, 4)))).tolist(),
        lambda L, x, lv, idx: x.gather(1, L.tensor(idx)))
    add("scatter_add", lambda rng, r, c: rng.integers(0, c, size=(r, int(rng.integers(1, 4)))).tolist(),
        lambda L, x, lv, idx: x.scatter_add(1, L.tensor(idx), partner(lv, "full", len(idx), len(idx[0]))))
    add("cat", lambda rng, r, c: (int(rng.integers(0, 2)) if 2 * max(r, c) <= 8 else None),
        lambda L, x, lv, d: L.cat([x, x.tanh() * 2], d))
    add("stack", lambda rng, r, c: _choice(rng, PARTNERS),
        lambda L, x, lv, k: L.stack([x, x * partner(lv, k, *x.shape)], 0).sum(0))
    add("split", lambda rng, r, c: (int(rng.integers(1, 3)), int(rng.integers(0, 2))),
        lambda L, x, lv, p: L.cat([t * (i + 1) for i, t in enumerate(x.split(p[0], p[1]))], p[1]))
    add("tril", lambda rng, r, c: (int(rng.integers(-1, 2)), bool(rng.integers(0, 2))),
        lambda L, x, lv, p: x.triu(p[0]) if p[1] else x.tril(p[0]))
    add("inplace", lambda rng, r, c: _choice(rng, PARTNERS),
        lambda L, x, lv, k: _inplace(x, partner(lv, k, *x.shape)))
    add("clone", lambda rng, r, c: None, lambda L, x, lv, p: x.clone() * x)
    return ops


def _untie(L, x):
    """x plus distinct offsets, so max/min never meet ties (which rounding could break differently)."""
    r, c = x.shape
    return x + L.tensor(np.linspace(0.0, 0.37, r * c, dtype=np.float32).reshape(r, c)[:, ::-1].copy())


def _inplace(x, p):
    y = x * 1
    y.mul_(0.5)
    y.add_(p)
    y.div_(p.sigmoid() + 1)
    y.mul_(p.tanh())
    y -= 0.25
    return y


OPS = _ops()


def make_program(seed):
    rng = np.random.default_rng(seed)
    r, c = int(rng.integers(1, MAX_SIDE + 1)), int(rng.integers(1, MAX_SIDE + 1))
    values = {
        "A": rng.uniform(-1, 1, size=(r, c)).astype(np.float32),
        "P": rng.uniform(-1, 1, size=(POOL, POOL)).astype(np.float32),
        "Q": rng.uniform(-0.6, 0.6, size=(POOL, POOL)).astype(np.float32),
        "v": rng.uniform(-1, 1, size=(POOL,)).astype(np.float32),
    }
    # Plan with Orchard shapes on the CPU (no gradients) so every op gets parameters valid for its input.
    steps = []
    L = OrchardOn("cpu")
    x = L.tensor(values["A"])
    leaves = {k: L.tensor(v) for k, v in values.items()}
    with oc.no_grad():
        for _ in range(int(rng.integers(4, 10))):
            for _attempt in range(20):
                op = OPS[int(rng.integers(len(OPS)))]
                params = op.draw(rng, *x.shape)
                if params is None and op.name not in ("transpose", "permute3", "reshape", "flatten",
                                                      "mean_all", "amin_all", "var_vec", "matvec",
                                                      "clone"):
                    continue
                if op.name == "var_vec" and x.shape[0] < 2:
                    continue
                y = op.run(L, x, leaves, params)
                if max(y.shape) <= POOL:
                    break
            steps.append((op, params))
            x = y
    weight = rng.standard_normal(x.shape).astype(np.float32)
    return values, steps, weight


def run_program(L, values, steps, weight):
    leaves = {k: L.tensor(v, requires_grad=True) for k, v in values.items()}
    x = leaves["A"]
    for op, params in steps:
        x = op.run(L, x, leaves, params)
    (x * L.tensor(weight)).sum().backward()
    return x, leaves


@pytest.mark.parametrize("seed", range(120))
def test_random_composition_matches_torch(device, seed):
    seed = zlib.crc32(f"autograd-vs-torch-{seed}".encode())
    values, steps, weight = make_program(seed)
    names = [op.name if op.name not in ("unary", "binary") else f"{op.name}:{p}" for op, p in steps]
    out, leaves = run_program(OrchardOn(device), values, steps, weight)
    assert out.device == device
    tout, tleaves = run_program(torch, values, steps, weight)
    np.testing.assert_allclose(out.detach().cpu().numpy(), tout.detach().cpu().numpy(), rtol=1e-5, atol=1e-5,
                               err_msg=f"forward of {names}")
    # Errors are relative to the largest gradient of any leaf: a leaf whose true gradient cancels
    # to ~0 (e.g. a shift that a later max-subtraction removes) only carries float32 roundoff. The
    # floor covers graphs whose output does not depend on the leaves at all (every gradient is
    # roundoff); inputs, weights and intermediates are O(1), so a wrong formula errs by far more.
    scale = max([np.abs(t.grad.cpu().numpy()).max(initial=0.0) for t in tleaves.values() if t.grad is not None]
                + [1e-2])
    for k in values:
        g = leaves[k].grad
        tg = tleaves[k].grad
        if tg is None:
            assert g is None or not np.any(g.cpu().numpy()), f"{k}: torch has no gradient, {names}"
            continue
        assert g is not None, f"{k}: missing gradient for {names}"
        assert g.shape == tuple(tg.shape) and g.dtype == oc.float32 and g.device == device
        got, want = g.cpu().numpy().astype(np.float64), tg.cpu().numpy().astype(np.float64)
        err = np.abs(got - want).max(initial=0.0) / scale
        assert err <= 1e-5, f"{k}: relative error {err:.3g} for {names}"


def test_programs_cover_every_op():
    used = set()
    for seed in range(120):
        _, steps, _ = make_program(zlib.crc32(f"autograd-vs-torch-{seed}".encode()))
        used |= {op.name for op, _ in steps}
    assert used == {op.name for op in OPS}, {op.name for op in OPS} - used


@pytest.mark.parametrize("seed", range(6))
def test_mlp_training_steps_match_torch(device, seed):
    """A few SGD steps of a small MLP (the benchmark's model) stay together with PyTorch's."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.standard_normal((8, 3)).astype(np.float32)
    shapes = [(6, 10), (10, 10), (10, 3)]
    init = [rng.uniform(-0.4, 0.4, s).astype(np.float32) for s in shapes] + \
           [rng.uniform(-0.1, 0.1, s[1]).astype(np.float32) for s in shapes]

    def train(L):
        no_grad = torch.no_grad if L is torch else oc.no_grad
        params = [L.tensor(p, requires_grad=True) for p in init]
        X, Y = L.tensor(x), L.tensor(y)
        losses = []
        for _ in range(5):
            h = X
            for i in range(3):
                h = h @ params[i] + params[3 + i]
                if i < 2:
                    h = h.relu()
            loss = ((h - Y) ** 2).mean()
            loss.backward()
            losses.append(float(loss.item()))
            with no_grad():
                for p in params:
                    p -= 0.1 * p.grad
                    p.grad = None
        return losses, [p.detach().cpu().numpy() for p in params]

    losses, params = train(OrchardOn(device))
    tlosses, tparams = train(torch)
    np.testing.assert_allclose(losses, tlosses, rtol=1e-5)
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp, rtol=1e-5, atol=1e-6)
