"""Tensor.register_hook against torch: when hooks run, what they see, replacements, removal, errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import orchard as oc


def run_both(program, device="cpu"):
    """program(lib, leaf) -> list of recorded arrays, for torch and orchard with the same leaf values."""
    values = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    results = []
    for lib, make in ((torch, lambda: torch.tensor(values, requires_grad=True)),
                      (oc, lambda: oc.tensor(values, device=device).requires_grad_())):
        record = []
        program(lib, make(), record)
        results.append([np.asarray(r.detach().cpu().numpy() if hasattr(r, "detach") else r) for r in record])
    theirs, ours = results
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_leaf_hook_sees_the_summed_gradient_and_may_replace_it(device):
    def program(lib, x, record):
        x.register_hook(lambda g: record.append(g.clone()))
        x.register_hook(lambda g: g * 10)
        x.register_hook(lambda g: record.append(g.clone()))  # sees the replacement
        (x * 2 + x * x).sum().backward()
        record.append(x.grad)
    run_both(program, device)


def test_non_leaf_hook_runs_before_its_grad_fn(device):
    def program(lib, x, record):
        y = x * 3
        y.register_hook(lambda g: record.append(g.clone()) or g + 1)
        z = y.exp()
        z.register_hook(lambda g: record.append(g.clone()))
        (z * 2).sum().backward()
        record.append(x.grad)
    run_both(program, device)


def test_removed_hook_no_longer_runs(device):
    def program(lib, x, record):
        handle = x.register_hook(lambda g: g * 0)
        handle.remove()
        handle.remove()  # twice: nothing
        (x * 2).sum().backward()
        record.append(x.grad)
    run_both(program, device)


def test_hooks_run_under_autograd_grad_and_with_retain_graph(device):
    def program(lib, x, record):
        y = (x * x).sum()
        x.register_hook(lambda g: record.append(g.clone()) or g * 2)
        record.append(lib.autograd.grad(y, x, retain_graph=True)[0])
        y.backward()
        record.append(x.grad)
    run_both(program, device)


def test_hook_on_a_view(device):
    def program(lib, x, record):
        row = x[1]
        row.register_hook(lambda g: g * 5)
        (row.sum() + x.sum()).backward()
        record.append(x.grad)
    run_both(program, device)


def test_handle_as_context_manager():
    x = oc.ones(2).requires_grad_()
    with x.register_hook(lambda g: g * 3):
        (x * 1).sum().backward()
    (x * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [4.0, 4.0])


def test_errors():
    with pytest.raises(RuntimeError, match="does not require grad"):
        oc.ones(2).register_hook(lambda g: g)
    with pytest.raises(TypeError, match="callable"):
        oc.ones(2).requires_grad_().register_hook(3)
    x = oc.ones(2).requires_grad_()
    x.register_hook(lambda g: 3)
    with pytest.raises(TypeError, match="must return a Tensor or None, got int"):
        (x * 1).sum().backward()
    x = oc.ones(2).requires_grad_()
    x.register_hook(lambda g: oc.zeros(3))
    with pytest.raises(RuntimeError, match=r"shape \[3\].*expected the gradient's shape \[2\]"):
        (x * 1).sum().backward()
    x = oc.ones(2).requires_grad_()
    x.register_hook(lambda g: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        (x * 1).sum().backward()


def test_a_hook_referring_to_its_tensor_is_freed_at_exit():
    """Module-level tensors whose hooks reach them back (through the module's globals) are a cycle
    through C++; the exit handler breaks it, so nanobind reports no leak."""
    program = ("import orchard as oc\n"
               "x = oc.ones(2).requires_grad_()\n"
               "x.register_hook(lambda g: g * x)\n"
               "y = x * 2\n"
               "y.register_hook(lambda g: g + y)\n"
               "(y * 1).sum().backward()\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "leaked" not in result.stderr, result.stderr
