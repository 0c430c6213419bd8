"""Autograd engine semantics (issue 3): leaves and .grad, backward and retain_graph, grad mode,
autograd.grad, detach, version counters and in-place ops, deep graphs, and freeing the graph.
Every misuse has a test that it raises a clear error instead of returning a wrong gradient.

Tests whose backward runs kernels (gradients, accumulation, views, in-place ops, version counters,
freeing storage) run on every device; those about the engine's bookkeeping alone run on the CPU."""
import gc
import threading

import numpy as np
import pytest
import torch

import orchard as oc
from conftest import OrchardOn, forget_last_failure, supports


def leaf(values, dtype=oc.float32, device="cpu"):
    return oc.tensor(np.asarray(values), dtype=dtype, device=device, requires_grad=True)


def tleaf(values, dtype=torch.float32):
    return torch.tensor(np.asarray(values), dtype=dtype, requires_grad=True)


def grad_np(t):
    assert t.grad is not None
    assert t.grad.device == t.device and t.grad.dtype == t.dtype and t.grad.shape == t.shape
    return (t.grad.float() if t.grad.dtype == oc.bfloat16 else t.grad).cpu().numpy()


# ---- leaves, grad_fn, requires_grad ---------------------------------------------------------

def test_tensor_factory_accepts_requires_grad():
    x = oc.tensor([1.0, 2.0], requires_grad=True)
    assert x.requires_grad and x.is_leaf and x.grad is None and x.grad_fn is None
    y = oc.tensor([[1, 2]], dtype=oc.float64, requires_grad=True)
    assert y.requires_grad and y.dtype == oc.float64
    assert not oc.tensor([1.0]).requires_grad
    with pytest.raises(TypeError, match="floating point"):
        oc.tensor([1, 2], requires_grad=True)
    # a copy of a tensor that requires grad is a fresh leaf, as torch.tensor(t) is
    z = oc.tensor(x, requires_grad=True)
    assert z.is_leaf and not z.is_alias_of(x)


def test_autograd_module_is_exposed():
    assert oc.autograd.grad is not None and oc.autograd.backward is not None
    assert oc.autograd.gradcheck is not None and oc.autograd.no_grad is oc.no_grad
    assert oc.no_grad and oc.enable_grad and oc.set_grad_enabled and oc.is_grad_enabled


def test_grad_fn_names_and_graph():
    x = leaf([1.0, 2.0, 3.0])
    y = (x * 2).exp().sum()
    assert y.grad_fn.name() == "SumBackward"
    assert "SumBackward" in repr(y.grad_fn)
    (exp_node,) = y.grad_fn.next_functions
    assert exp_node.name() == "ExpBackward"
    (mul_node,) = exp_node.next_functions
    assert mul_node.name() == "MulBackward"
    assert mul_node.next_functions[0].name() == "AccumulateGrad"
    assert mul_node.next_functions[1] is None  # the scalar 2 needs no gradient
    assert not y.is_leaf and y.requires_grad
    assert (x @ x).grad_fn.name() == "MatmulBackward"
    assert x[1:].grad_fn.name() == "SliceBackward"
    assert x.reshape(3, 1).grad_fn.name() == "ReshapeBackward"


def test_requires_grad_propagates_and_ints_never_require_grad():
    x = leaf([1.0, 2.0])
    c = oc.tensor([3.0, 4.0])
    assert (x + c).requires_grad and not (c + c).requires_grad
    assert not (x > 1).requires_grad  # comparisons are not differentiable
    assert not x.argmax().requires_grad
    assert x.detach().requires_grad is False and x.detach().is_leaf


def test_requires_grad_only_on_leaves():
    x = leaf([1.0, 2.0])
    y = x * 2
    with pytest.raises(ValueError, match="leaf"):
        y.requires_grad_(False)
    y.requires_grad_(True)  # a no-op on a non-leaf, as in PyTorch
    assert y.requires_grad and not y.is_leaf
    with pytest.raises(TypeError, match="floating point"):
        oc.tensor([1, 2]).requires_grad_()
    x.requires_grad_(False)
    assert not x.requires_grad
    assert x.requires_grad_() is x and x.requires_grad


def test_grad_setter(device):
    x = leaf([1.0, 2.0], device=device)
    x.grad = oc.tensor([5.0, 6.0], device=device)
    np.testing.assert_array_equal(grad_np(x), [5, 6])
    (x * 3).sum().backward()
    np.testing.assert_array_equal(grad_np(x), [8, 9])
    x.grad = None
    assert x.grad is None
    with pytest.raises(ValueError, match="shape"):
        x.grad = oc.tensor([1.0, 2.0, 3.0], device=device)


# ---- backward -------------------------------------------------------------------------------

def test_backward_scalar_implicit_one(device):
    x = leaf([1.0, 2.0, 3.0], device=device)
    y = (x * x).sum()
    y.backward()
    np.testing.assert_allclose(grad_np(x), [2, 4, 6])
    assert y.grad is None  # non-leaf grads are not kept


def test_backward_accumulates_over_calls(device):
    x = leaf([1.0, -2.0], device=device)
    for _ in range(3):
        (x * 3).sum().backward()
    np.testing.assert_allclose(grad_np(x), [9, 9])


def test_backward_non_scalar_needs_gradient(device):
    x = leaf([[1.0, 2.0], [3.0, 4.0]], device=device)
    y = x * x
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        y.backward()
    y.backward(oc.tensor([[1.0, 0.0], [0.5, 2.0]], device=device))
    np.testing.assert_allclose(grad_np(x), [[2, 0], [3, 16]])
    with pytest.raises(ValueError, match="shape"):
        (x * x).backward(oc.tensor([1.0, 2.0], device=device))


def test_backward_single_element_non_scalar(device):
    x = leaf([[3.0]], device=device)
    (x * x).backward()  # one element: implicit gradient of ones, as in PyTorch
    np.testing.assert_allclose(grad_np(x), [[6.0]])


def test_backward_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        oc.tensor([1.0, 2.0]).sum().backward()
    x = leaf([1.0])
    with oc.no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_second_backward_raises_without_retain_graph():
    x = leaf([1.0, 2.0, 3.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph"):
        y.backward()
    # also for a graph whose nodes saved nothing
    z = (x + 1).sum()
    z.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        z.backward()


def test_second_backward_with_retain_graph(device):
    x = leaf([1.0, 2.0, 3.0], device=device)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = grad_np(x).copy()
    y.backward(retain_graph=True)
    np.testing.assert_allclose(grad_np(x), 2 * first, rtol=1e-6)
    y.backward()  # the last one may free the graph
    np.testing.assert_allclose(grad_np(x), 3 * first, rtol=1e-6)
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_shared_subgraph_two_roots(device):
    x = leaf([1.0, 2.0], device=device)
    h = x * x
    a, b = h.sum(), (h * 3).sum()
    oc.autograd.backward([a, b])
    np.testing.assert_allclose(grad_np(x), 4 * 2 * np.array([1.0, 2.0]))


def test_functional_backward_with_grad_tensors(device):
    x = leaf([1.0, 2.0], device=device)
    a, b = x * 2, (x * x).sum()
    oc.autograd.backward([a, b], [oc.tensor([1.0, 10.0], device=device), None])
    np.testing.assert_allclose(grad_np(x), [2 + 2, 20 + 4])
    with pytest.raises(ValueError, match="gradients"):
        oc.autograd.backward([x * 2, x * 3], [oc.tensor([1.0, 1.0], device=device)])


def test_root_depending_on_another_root(device):
    x = leaf([1.0, 2.0], device=device)
    y = (x * x).sum()
    z = y * 3
    oc.autograd.backward([y, z])
    np.testing.assert_allclose(grad_np(x), 4 * 2 * np.array([1.0, 2.0]))


def test_diamond_and_reuse_match_torch(device):
    v = np.array([0.5, -1.5, 2.0])
    x, tx = leaf(v, device=device), tleaf(v)
    for a, lib in ((x, oc), (tx, torch)):
        h = a * a
        out = (h.exp() + h.sin() * a + (h * h)).sum() + (a * a * a).sum()
        out.backward()
    np.testing.assert_allclose(grad_np(x), tx.grad.cpu().numpy(), rtol=1e-5)


def test_same_tensor_as_both_operands(device):
    x = leaf([1.0, 2.0, 3.0], device=device)
    (x * x).sum().backward()
    np.testing.assert_allclose(grad_np(x), [2, 4, 6])
    x.grad = None
    (x + x + x).sum().backward()
    np.testing.assert_allclose(grad_np(x), [3, 3, 3])


def test_split_parts_gradients_fill_one_tensor(device):
    # each part's gradient is added in place into the one gathered for the split tensor
    v = np.arange(12.0).reshape(3, 4) / 7
    w = (np.arange(6.0).reshape(3, 2) - 2).astype(np.float32)  # float32: Metal has no float64
    x, tx = leaf(v, device=device), tleaf(v)
    for a, L in ((x, OrchardOn(device)), (tx, torch)):
        p, q = (a * 1.5).split(2, dim=-1)
        r = a[1] * 2  # a select, whose gradient joins the split's parts
        (p * L.tensor(w) + q.exp() + r.sum() * q).sum().backward()
    np.testing.assert_allclose(grad_np(x), tx.grad.cpu().numpy(), rtol=1e-6)


def test_view_gradient_never_added_into_a_shared_one(device):
    # the Add node hands one gradient tensor to both b and c: a slice of b, whose backward runs
    # after it, must not add its part into that tensor in place, which c's gradient is too
    v = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]])
    x, tx = leaf(v, device=device), tleaf(v)
    for a in (x, tx):
        b, c = a * 2.0, a * -3.0
        s = b[:, :2]
        ((b + c).sum() + (s * s).sum()).backward()
    np.testing.assert_allclose(grad_np(x), tx.grad.cpu().numpy())


def test_leaf_grad_not_aliased_with_other_grads(device):
    a, b = leaf([1.0, 2.0], device=device), leaf([3.0, 4.0], device=device)
    (a + b).sum().backward()
    assert not a.grad.is_alias_of(b.grad)
    a.grad.add_(1)
    np.testing.assert_allclose(grad_np(b), [1, 1])


def test_leaf_grad_not_aliased_with_backward_gradient(device):
    a = leaf([1.0, 2.0], device=device)
    g = oc.tensor([5.0, 6.0], device=device)
    (a + 0).backward(g)
    assert not a.grad.is_alias_of(g)
    g.add_(1)
    np.testing.assert_allclose(grad_np(a), [5, 6])
    b = leaf([1.0, 2.0], device=device)
    b.backward(g)  # backward from a leaf adds the given gradient
    assert not b.grad.is_alias_of(g)
    np.testing.assert_allclose(grad_np(b), [6, 7])


def test_grad_dtype_follows_leaf(device):
    for dt in [oc.float64, oc.float16, oc.bfloat16]:
        if supports(device, dt):
            x = leaf([1.0, 2.0], dtype=dt, device=device)
            (x.float() * 2).sum().backward()
            assert x.grad.dtype == dt
            np.testing.assert_allclose(grad_np(x), [2, 2])
    h = leaf([1.0, 2.0], dtype=oc.float16, device=device)
    (h * h).sum().backward()
    assert h.grad.dtype == oc.float16
    np.testing.assert_allclose(grad_np(h), [2, 4])


def test_broadcast_leaf_grad_is_reduced(device):
    b = leaf([1.0, 2.0, 3.0], device=device)
    x = oc.ones(4, 3, device=device)
    (x * b).sum().backward()
    assert b.grad.shape == (3,)
    np.testing.assert_allclose(grad_np(b), [4, 4, 4])
    s = leaf(2.0, device=device)
    (x * s).sum().backward()
    assert s.grad.shape == ()
    np.testing.assert_allclose(grad_np(s), 12.0)


# ---- autograd.grad --------------------------------------------------------------------------

def test_autograd_grad_leaves_grad_untouched(device):
    a, b = leaf([1.0, 2.0], device=device), leaf([3.0, 4.0], device=device)
    out = (a * b).sum()
    (ga,) = oc.autograd.grad(out, [a])
    np.testing.assert_allclose(ga.cpu().numpy(), [3, 4])
    assert a.grad is None and b.grad is None  # not even the input not asked for


def test_autograd_grad_existing_grad_unchanged(device):
    a = leaf([1.0, 2.0], device=device)
    a.grad = oc.tensor([10.0, 10.0], device=device)
    ga, = oc.autograd.grad((a * a).sum(), a)
    np.testing.assert_allclose(ga.cpu().numpy(), [2, 4])
    np.testing.assert_allclose(grad_np(a), [10, 10])


def test_autograd_grad_non_leaf_input(device):
    x = leaf([1.0, 2.0], device=device)
    w = leaf([0.5, 0.5], device=device)
    h = x * 3
    out = (h * h * w).sum()
    gh, gx = oc.autograd.grad(out, [h, x])
    np.testing.assert_allclose(gh.cpu().numpy(), 2 * np.array([3.0, 6.0]) * 0.5)
    np.testing.assert_allclose(gx.cpu().numpy(), 2 * np.array([3.0, 6.0]) * 0.5 * 3)
    assert x.grad is None and w.grad is None


def test_autograd_grad_grad_outputs_multiple_and_unused(device):
    x, y = leaf([1.0, 2.0], device=device), leaf([3.0], device=device)
    out = x * 2
    (gx,) = oc.autograd.grad([out], [x], grad_outputs=[oc.tensor([1.0, 10.0], device=device)])
    np.testing.assert_allclose(gx.cpu().numpy(), [2, 20])
    with pytest.raises(RuntimeError, match="allow_unused"):
        oc.autograd.grad((x * 2).sum(), [x, y])
    gx, gy = oc.autograd.grad((x * 2).sum(), [x, y], allow_unused=True)
    assert gy is None
    np.testing.assert_allclose(gx.cpu().numpy(), [2, 2])
    with pytest.raises(RuntimeError, match="does not require grad"):
        oc.autograd.grad((x * 2).sum(), [oc.tensor([1.0], device=device)])


def test_autograd_grad_retain_graph(device):
    x = leaf([1.0, 2.0], device=device)
    out = (x.exp()).sum()
    g1, = oc.autograd.grad(out, x, retain_graph=True)
    g2, = oc.autograd.grad(out, x)
    np.testing.assert_allclose(g1.cpu().numpy(), g2.cpu().numpy())
    with pytest.raises(RuntimeError, match="retain_graph"):
        oc.autograd.grad(out, x)


def test_autograd_grad_then_backward(device):
    x = leaf([1.0, 2.0], device=device)
    out = (x * x).sum()
    oc.autograd.grad(out, x, retain_graph=True)
    out.backward()
    np.testing.assert_allclose(grad_np(x), [2, 4])


# ---- grad mode ------------------------------------------------------------------------------

def test_no_grad_context_manager():
    x = leaf([1.0])
    assert oc.is_grad_enabled()
    with oc.no_grad():
        assert not oc.is_grad_enabled()
        y = x * 2
        with oc.enable_grad():
            assert oc.is_grad_enabled()
            z = x * 2
        assert not oc.is_grad_enabled()
    assert oc.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad


def test_no_grad_restores_on_exception():
    with pytest.raises(KeyError):
        with oc.no_grad():
            raise KeyError("boom")
    assert oc.is_grad_enabled()


def test_grad_mode_decorators():
    x = leaf([1.0])

    @oc.no_grad()
    def f():
        return x * 2

    @oc.no_grad
    def f_bare():
        return x * 2

    @oc.enable_grad()
    def g():
        return x * 2

    @oc.enable_grad
    def g_bare():
        return x * 2

    assert not f().requires_grad and not f_bare().requires_grad
    assert oc.is_grad_enabled()
    with oc.no_grad():
        assert g().requires_grad and g_bare().requires_grad
        assert not oc.is_grad_enabled()
    assert f.__name__ == "f"


def test_no_grad_decorator_recursion_restores_mode():
    @oc.no_grad()
    def depth(n):
        assert not oc.is_grad_enabled()
        return depth(n - 1) if n else 0

    depth(3)
    assert oc.is_grad_enabled()


def test_set_grad_enabled_function_and_context():
    x = leaf([1.0])
    try:
        oc.set_grad_enabled(False)  # takes effect at once, as torch.set_grad_enabled
        assert not oc.is_grad_enabled()
        assert not (x * 2).requires_grad
    finally:
        oc.set_grad_enabled(True)
    assert oc.is_grad_enabled()
    with oc.set_grad_enabled(False):
        assert not oc.is_grad_enabled()
    assert oc.is_grad_enabled()
    with oc.no_grad():
        with oc.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not oc.is_grad_enabled()

    @oc.set_grad_enabled(False)
    def f():
        return oc.is_grad_enabled()

    assert oc.is_grad_enabled()  # decorating does not change the mode
    assert f() is False and oc.is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []
    with oc.no_grad():
        t = threading.Thread(target=lambda: seen.append(oc.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_backward_inside_no_grad_still_works():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    with oc.no_grad():
        y.backward()
    np.testing.assert_allclose(grad_np(x), [2, 4])


def test_sgd_update_under_no_grad(device):
    w = leaf([1.0, 2.0], device=device)
    (w * w).sum().backward()
    with oc.no_grad():
        w -= 0.5 * w.grad
    assert w.is_leaf and w.requires_grad
    np.testing.assert_allclose(w.detach().cpu().numpy(), [0.0, 0.0])
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_allclose(grad_np(w), [3, 3])


# ---- detach ---------------------------------------------------------------------------------

def test_detach_shares_storage_and_mutation_is_visible(device):
    x = leaf([1.0, 2.0, 3.0], device=device)
    d = x.detach()
    assert d.is_alias_of(x) and x.is_alias_of(d)
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    d.mul_(10)  # allowed: d does not require grad
    np.testing.assert_allclose(x.detach().cpu().numpy(), [10, 20, 30])
    assert x._version == d._version


def test_detach_of_non_leaf_cuts_graph(device):
    x = leaf([1.0, 2.0], device=device)
    y = x * 3
    z = (y.detach() * y).sum()
    z.backward()
    np.testing.assert_allclose(grad_np(x), [9.0, 18.0])  # only through the second factor


def test_detach_mutation_invalidates_saved_tensor(device):
    x = leaf([1.0, 2.0], device=device)
    y = (x * x).sum()  # saves x
    x.detach().add_(1)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


# ---- in-place ops ---------------------------------------------------------------------------

def test_inplace_on_leaf_requiring_grad_raises(device):
    x = leaf([1.0, 2.0], device=device)
    version = x._version
    for op in (lambda: x.add_(1), lambda: x.mul_(2), lambda: x.div_(2), lambda: x.sub_(1),
               lambda: x.zero_(), lambda: x.fill_(3), lambda: x.copy_(oc.tensor([5.0, 6.0], device=device))):
        with pytest.raises(RuntimeError, match="leaf"):
            op()
    with pytest.raises(RuntimeError, match="leaf"):
        x += 1
    with pytest.raises(RuntimeError, match="leaf"):
        x[0] = 5.0  # a view of the leaf
    with pytest.raises(RuntimeError, match="leaf"):
        x[1:].mul_(2)
    np.testing.assert_array_equal(x.detach().cpu().numpy(), [1.0, 2.0])  # nothing changed
    assert x._version == version
    with oc.no_grad():
        x.add_(1)
    np.testing.assert_array_equal(x.detach().cpu().numpy(), [2.0, 3.0])


def test_inplace_bumps_version(device):
    t = oc.tensor([1.0, 2.0], device=device)
    v = t._version
    t.add_(1)
    t.mul_(2)
    assert t._version == v + 2
    assert t[0:1]._version == t._version  # views share the counter


def test_saved_tensor_modified_in_place_raises_at_backward(device):
    # the saved tensor does not require grad: the in-place op records nothing
    x = leaf([1.0, 2.0], device=device)
    c = oc.tensor([3.0, 4.0], device=device)
    y = (x * c).sum()  # saves c
    c.mul_(2)
    with pytest.raises(RuntimeError, match="MulBackward: .*modified by an in-place operation"):
        y.backward()
    assert x.grad is None  # nothing was accumulated
    # modified under no_grad
    x2 = leaf([1.0, 2.0], device=device)
    e = x2.exp()  # saves its output
    out = (e * 2).sum()
    with oc.no_grad():
        e.add_(1)
    with pytest.raises(RuntimeError, match="ExpBackward: .*modified by an in-place operation.*clone"):
        out.backward()


def test_saved_output_modified_in_place_is_refused(device):
    x = leaf([1.0, 2.0], device=device)
    e = x.exp()  # saves its output, which the in-place op would overwrite
    with pytest.raises(RuntimeError, match="in-place|modified"):
        e.mul_(2)
        e.sum().backward()


def test_inplace_on_view_sharing_memory_is_refused(device):
    x = leaf([1.0, 2.0, 3.0], device=device)
    y = x * 1
    v = y[1:]
    with pytest.raises(RuntimeError, match="share memory"):
        v.mul_(2)


def _div_cases():
    def single(t, lib):
        y = t * 2
        y.div_(3)
        return y

    def repeated(t, lib):
        y = t + 1
        y.div_(2)
        y.div_(4)
        y.div_(0.5)
        return y

    def chained(t, lib):
        y = t * t
        y.div_(3).div_(5).div_(2)
        return y

    def tensor_divisor(t, lib):
        y = t.exp()
        d = lib.tensor([2.0, 4.0, 8.0])
        y = y * 1
        y.div_(d)
        return y

    def divisor_requires_grad(t, lib):
        d = (t * 0.5 + 2)
        y = t * 3
        y.div_(d).div_(d)
        return y

    def div_then_use(t, lib):
        y = t * 2
        z = y * 3  # saves nothing of y
        y.div_(4)
        return y * z

    def itruediv(t, lib):
        y = t - 1
        y /= 3
        y /= t + 5
        return y

    return [single, repeated, chained, tensor_divisor, divisor_requires_grad, div_then_use, itruediv]


@pytest.mark.parametrize("case", _div_cases(), ids=lambda f: f.__name__)
def test_div_inplace_matches_torch(device, case):
    v = np.array([0.5, -1.25, 2.0], dtype=np.float32)
    w = np.array([1.0, -2.0, 0.5], dtype=np.float32)
    x, tx = leaf(v, device=device), tleaf(v)
    y, ty = case(x, OrchardOn(device)), case(tx, torch)
    assert y.device == device
    np.testing.assert_allclose(y.detach().cpu().numpy(), ty.detach().cpu().numpy(), rtol=1e-6)
    (y * oc.tensor(w, device=device)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(grad_np(x), tx.grad.cpu().numpy(), rtol=1e-5, atol=1e-7)


def _add_mul_cases():
    def add_scalar(t, lib):
        y = t * 2
        y.add_(1)
        return y

    def add_tensor_grad(t, lib):
        y = t.sin()
        y = y * 1
        y.add_(t * t)
        return y

    def mul_scalar(t, lib):
        y = t + 0.5
        y.mul_(3)
        return y

    def mul_self_grad(t, lib):
        y = t * 2
        y.mul_(t)  # needs y's value before the multiplication
        y.mul_(t + 1)
        return y

    def mul_by_itself(t, lib):
        y = t + 1
        if lib is torch:  # PyTorch refuses at backward (y's old value was overwritten): compare
            return (y * y) * (y * y)  # with the out-of-place result
        y.mul_(y)
        y.mul_(y)
        return y

    def mixed_chain(t, lib):
        y = t.exp() * 1
        y.add_(t).mul_(t).sub_(2).div_(t + 3)
        return y

    def iadd_imul(t, lib):
        y = t * 1
        y += t
        y *= t
        y -= 1
        return y

    def inplace_broadcast_value(t, lib):
        y = t.reshape(3, 1) * lib.ones(3, 2)
        y.mul_(t.reshape(3, 1))
        y.add_(t[:2])
        return y.sum(1)

    return [add_scalar, add_tensor_grad, mul_scalar, mul_self_grad, mul_by_itself, mixed_chain, iadd_imul,
            inplace_broadcast_value]


@pytest.mark.parametrize("case", _add_mul_cases(), ids=lambda f: f.__name__)
def test_add_mul_inplace_matches_torch(device, case):
    v = np.array([0.5, -1.25, 2.0], dtype=np.float32)
    x, tx = leaf(v, device=device), tleaf(v)
    y, ty = case(x, OrchardOn(device)), case(tx, torch)
    assert y.device == device
    np.testing.assert_allclose(y.detach().cpu().numpy(), ty.detach().cpu().numpy(), rtol=1e-6)
    y.sum().backward()
    ty.sum().backward()
    np.testing.assert_allclose(grad_np(x), tx.grad.cpu().numpy(), rtol=1e-5, atol=1e-7)


def test_inplace_gradient_accumulated_exactly_once(device):
    x = leaf([1.0, 2.0, 3.0], device=device)
    y = x * 1
    y.div_(2)
    y.div_(2)
    y.sum().backward()
    np.testing.assert_allclose(grad_np(x), [0.25] * 3)
    x.grad = None
    y = x * 1
    y.add_(x)  # x reaches the sum twice: once through y's old history, once as the value
    y.sum().backward()
    np.testing.assert_allclose(grad_np(x), [2.0] * 3)


def test_inplace_grad_fn_moves_to_the_modified_tensor():
    x = leaf([1.0, 2.0])
    y = x * 2
    y.div_(2)
    assert y.grad_fn.name() == "DivBackward"
    assert y.grad_fn.next_functions[0].name() == "MulBackward"
    assert not y.is_leaf


def test_inplace_on_tensor_not_requiring_grad_with_grad_value(device):
    x = leaf([1.0, 2.0], device=device)
    buf = oc.zeros(2, device=device)
    buf.add_(x * 3)  # buf joins the graph
    assert buf.requires_grad and not buf.is_leaf
    (buf * buf).sum().backward()
    np.testing.assert_allclose(grad_np(x), 2 * 3 * 3 * np.array([1.0, 2.0]))


def test_setitem_with_grad_value_raises_clearly_or_records(device):
    x = leaf([1.0, 2.0], device=device)
    buf = oc.zeros(3, device=device)
    try:
        buf[1:] = x * 2
    except RuntimeError as e:
        assert "share memory" in str(e)
        return
    buf.sum().backward()
    np.testing.assert_allclose(grad_np(x), [2.0, 2.0])


# ---- deep graphs and memory -----------------------------------------------------------------

def test_chain_of_100000_ops_backward_and_free():
    def run():
        x = leaf([1.0, 2.0])
        y = x
        for _ in range(100_000):
            y = y * 1.0
        y.sum().backward()
        np.testing.assert_allclose(grad_np(x), [1.0, 1.0])
        z = x
        for _ in range(100_000):
            z = z + 0.0
        del z  # never backpropagated: freeing a deep graph must not recurse either
        return True

    # A small thread stack (macOS gives secondary threads 512 KiB) shows any recursion.
    result = []
    old = threading.stack_size(1 << 20)
    try:
        t = threading.Thread(target=lambda: result.append(run()))
        t.start()
        t.join()
    finally:
        threading.stack_size(old)
    assert result == [True]


@pytest.fixture
def profiled(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE", "1")
    monkeypatch.setenv("ORCHARD_TENSOR_PROFILE_LOG", str(tmp_path / "profile.log"))
    forget_last_failure()
    gc.collect()
    oc.profile.reset()
    yield
    gc.collect()


def _model_step(device):
    L = OrchardOn(device)
    x = L.randn(8, 5)
    w1 = L.randn(5, 6).requires_grad_()
    b1 = L.zeros(6).requires_grad_()
    w2 = L.randn(6, 3).requires_grad_()
    h = (x @ w1 + b1).relu()
    h2 = (h @ w2).softmax(-1).log().exp().sigmoid()
    loss = ((h2 - 0.5) ** 2).mean() + h[:, ::2].sum() * 0.01 + h2.var(0).sum()
    return loss, [w1, b1, w2]


def test_graph_freed_after_backward(device, profiled):
    loss, params = _model_step(device)
    loss.backward()
    allocs, frees = oc.profile.counts()
    # alive now: x's graph-less input is gone; params, their grads and the loss remain
    assert allocs - frees <= 2 * len(params) + 2, (allocs, frees)
    del loss, params
    gc.collect()
    allocs, frees = oc.profile.counts()
    assert allocs > 0 and allocs == frees, (allocs, frees)


def test_graph_freed_without_backward_and_with_retain(device, profiled):
    loss, params = _model_step(device)
    del loss, params
    gc.collect()
    allocs, frees = oc.profile.counts()
    assert allocs > 0 and allocs == frees, (allocs, frees)

    loss, params = _model_step(device)
    loss.backward(retain_graph=True)
    loss.backward()
    loss2, params2 = _model_step(device)
    grads = oc.autograd.grad(loss2, params2)
    assert all(g is not None for g in grads) and all(p.grad is None for p in params2)
    del loss2, params2, grads
    del loss, params
    gc.collect()
    allocs, frees = oc.profile.counts()
    assert allocs == frees, (allocs, frees)


def test_graph_freed_after_inplace_and_error(device, profiled):
    x = oc.randn(4, device=device).requires_grad_()
    y = x * 2
    y.div_(3).mul_(x)
    c = oc.ones(4, device=device)
    z = (y * c).sum()
    c.add_(1)
    with pytest.raises(RuntimeError):
        z.backward()
    del x, y, c, z
    gc.collect()
    allocs, frees = oc.profile.counts()
    assert allocs == frees, (allocs, frees)
