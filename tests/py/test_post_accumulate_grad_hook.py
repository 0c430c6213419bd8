"""Tensor.register_post_accumulate_grad_hook against PyTorch: when the hooks run, what they see, removal, and the
errors."""
import numpy as np
import pytest
import torch

import orchard as oc


def record_calls(lib, device=None):
    """Runs a backward in which `w` is used twice and `b` once, each with a hook recording the .grad it saw."""
    kw = {} if device is None else {"device": device}
    w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True, **kw) if lib is torch else \
        oc.tensor([1.0, 2.0, 3.0], **kw).requires_grad_()
    b = lib.tensor([0.5], requires_grad=True, **kw) if lib is torch else oc.tensor([0.5], **kw).requires_grad_()
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append(("w", p.grad.tolist())))
    handle = b.register_post_accumulate_grad_hook(lambda p: seen.append(("b", p.grad.tolist())))
    ((w * w).sum() + (w * b).sum()).backward()  # w's gradient arrives along two paths, accumulated once
    ((w * b).sum()).backward()                  # a second backward adds into the existing .grad
    handle.remove()
    (w * b).sum().backward()
    return seen


def test_hooks_run_after_accumulation_like_pytorch(device):
    ours = record_calls(oc, device)
    theirs = record_calls(torch)
    assert sorted(ours) == sorted(theirs)
    assert [name for name, _ in ours].count("b") == 2  # removed before the third backward


def test_hook_receives_the_leaf_itself(device):
    w = oc.ones(2, device=device).requires_grad_()
    got = []  # what the hook saw, not the tensor: the tensor keeps its hooks, and so would keep itself alive
    w.register_post_accumulate_grad_hook(lambda p: got.append((p.data_ptr(), p.grad.tolist())))
    (w * 3).sum().backward()
    assert got == [(w.data_ptr(), [3.0, 3.0])]


def test_a_hook_may_replace_the_grad_and_remove_itself():
    w = oc.ones(2).requires_grad_()
    handles = []

    def hook(p):
        p.grad = p.grad * 10
        handles[0].remove()
    handles.append(w.register_post_accumulate_grad_hook(hook))
    w.sum().backward()
    w.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [11.0, 11.0])
    handles[0].remove()  # removing twice does nothing


def test_an_exception_in_a_hook_reaches_the_caller():
    w = oc.ones(2).requires_grad_()

    def hook(p):
        raise KeyError("from the hook")
    w.register_post_accumulate_grad_hook(hook)
    with pytest.raises(KeyError, match="from the hook"):
        w.sum().backward()


def test_autograd_grad_runs_no_hooks():
    w = oc.ones(2).requires_grad_()
    calls = []
    w.register_post_accumulate_grad_hook(calls.append)
    oc.autograd.grad((w * 2).sum(), [w])
    assert calls == [] and w.grad is None


@pytest.mark.parametrize("case", ["no grad", "non-leaf"])
def test_wrong_tensors_raise_like_pytorch(case):
    def make(lib):
        leaf = lib.ones(2, requires_grad=True) if lib is torch else oc.ones(2).requires_grad_()
        return lib.ones(2) if case == "no grad" else leaf * 2
    with pytest.raises(RuntimeError) as theirs:
        make(torch).register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(RuntimeError) as ours:
        make(oc).register_post_accumulate_grad_hook(lambda p: None)
    assert str(ours.value) == str(theirs.value)
