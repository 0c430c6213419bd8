"""Every user error is a Python exception whose message names what was wrong and what was expected:
ValueError for shapes, axes, dtypes and values; IndexError for indices (RuntimeError for those of gather
and scatter_add, as in PyTorch); TypeError for wrong argument types; MemoryError for allocations that
cannot be served; RuntimeError for devices. Nothing crashes the interpreter."""
import re
import subprocess
import sys
import textwrap

import numpy as np
import torch
import pytest

import orchard as oc
from conftest import DEVICES

# (call, exception, regex the message must match: what was wrong ... what was expected)
SHAPE_ERRORS = [
    (lambda: oc.ones(2, 3) + oc.ones(4), r"shapes \[2, 3\] and \[4\] cannot be broadcast.*must match or be 1"),
    (lambda: oc.zeros(6).reshape(4, 2), r"cannot reshape tensor of shape \[6\] \(6 elements\) into \[4, 2\]"),
    (lambda: oc.zeros(2, 3).T.view(6), r"cannot be viewed as \[6\] without a copy; use reshape"),
    (lambda: oc.zeros(2, -3), r"negative dimension -3.*must be >= 0"),
    (lambda: oc.matmul(oc.zeros(2, 3), oc.zeros(2, 3)), r"not aligned.*must equal"),
    (lambda: oc.cat([oc.zeros(2, 3), oc.zeros(3, 2)], 0), r"tensor 1 has shape \[3, 2\].*must match except"),
    (lambda: oc.zeros(3).expand(2, 4), r"cannot be expanded to \[2, 4\]"),
    (lambda: oc.zeros(2).add_(oc.ones(3, 2)), r"value of shape \[3, 2\] cannot be broadcast to the shape \[2\]"),
    (lambda: oc.zeros(2, 3).permute(0), r"permute: got 1 dims for a tensor with 2 dimensions"),
    (lambda: oc.empty(2**62), r"more bytes than fit in 64 bits"),
    (lambda: oc.zeros(2**40, 2**40), r"more elements than fit in 64 bits"),
]
AXIS_ERRORS = [
    (lambda: oc.zeros(2, 3).sum((1, -1)), r"sum: a dimension appears more than once"),
    (lambda: oc.zeros(2, 3).permute(0, 0), r"permute: dimension 0 repeats"),
    (lambda: oc.zeros(2, 3).flatten(1, 0), r"flatten: start_dim 1 comes after end_dim 0"),
]
DTYPE_ERRORS = [
    (lambda: oc.rand(3, dtype=oc.int32), r"rand: dtype must be floating point, got int32"),
    (lambda: oc.where(oc.ones(2), oc.ones(2), oc.zeros(2)), r"where: condition must be a bool tensor, got float32"),
    (lambda: oc.ones(2, dtype=oc.bool) - oc.ones(2, dtype=oc.bool), r"sub: not supported for bool tensors"),
    (lambda: -oc.ones(2, dtype=oc.bool), r"neg: not supported for bool tensors; use logical_not"),
    (lambda: oc.ones(2, dtype=oc.int64).add_(0.5), r"result type float32 cannot be stored in the int64 tensor"),
    (lambda: oc.zeros(2, dtype=oc.bfloat16).numpy(), r"NumPy has no bfloat16; convert with .float\(\)"),
    (lambda: oc.from_numpy(np.zeros(2, np.uint8)), r"unsupported dtype uint8; Orchard supports"),
    (lambda: oc.from_numpy(np.zeros(2, ">f4")), r"unsupported dtype >f4; Orchard supports"),
    (lambda: oc.tensor(np.array([1j])), r"unsupported dtype complex128"),
]
DTYPE_ERRORS_OF_REDUCE_MATMUL_INDEX = [
    pytest.param(lambda: oc.ones(3, dtype=oc.int64).mean(), r"mean: input dtype must be floating point"),
    pytest.param(lambda: oc.softmax(oc.ones(3, dtype=oc.int64), 0), r"softmax: input dtype must be floating"),
    pytest.param(lambda: oc.matmul(oc.ones(2, 2, dtype=oc.bool), oc.ones(2, 2, dtype=oc.bool)),
                 r"matmul: not supported for bool"),
    pytest.param(lambda: oc.gather(oc.ones(2, 2), 0, oc.zeros(2, 2)), r"gather: indices must be an int32 or int64"),
    pytest.param(lambda: oc.scatter_add(oc.ones(2, 2), 0, oc.zeros(2, 2, dtype=oc.int64),
                                        oc.ones(2, 2, dtype=oc.float64)),
                 r"scatter_add: src has dtype float64 but the input has dtype float32"),
]
VALUE_ERRORS = [
    (lambda: oc.arange(0, 3, 0), r"arange: step must be nonzero"),
    (lambda: oc.arange(3, 0, 1), r"arange: step 1 goes the wrong way from 3 to 0"),
    (lambda: oc.gelu(oc.ones(2), approximate="fast"), r"approximate must be 'none' or 'tanh', got 'fast'"),
    (lambda: oc.clamp(oc.ones(2)), r"clamp: at least one of min and max"),
    (lambda: oc.zeros(3)[::-1], r"slice step must be positive"),
    (lambda: oc.ones(2).item(), r"only a tensor with one element.*has 2"),
    (lambda: bool(oc.ones(2)), r"truth value of a tensor with 2 elements is ambiguous"),
    (lambda: oc.zeros(0, 2).amax(0), r"amax\(\): cannot reduce over a dimension of size 0"),
    (lambda: oc.add(oc.ones(2, dtype=oc.int64), oc.ones(2, dtype=oc.int64), alpha=0.5),
     r"add: alpha must be a whole number for int64 inputs, got 0.5"),
    (lambda: oc.zeros(5).split([2, 2]), r"sum to 4 but dimension 0 of shape \[5\] has size 5"),
    (lambda: oc.device("tpu"), r"unknown device 'tpu'; expected 'cpu', 'metal' or 'cuda'"),
    (lambda: oc.zeros(3).expand(2, 3).fill_(1.0), r"cannot write in place to an expanded tensor.*clone"),
    (lambda: oc.from_numpy(np.arange(3.0)[::-1]), r"negative strides cannot be shared; pass a copy"),
]
INDEX_ERRORS = [
    (lambda: oc.zeros(2, 3)[2], r"index 2 is out of bounds for dimension 0 with size 2"),
    (lambda: oc.zeros(2, 3)[:, -4], r"index -4 is out of bounds for dimension 1 with size 3"),
    (lambda: oc.zeros(2, 3)[0, 0, 0], r"too many indices for tensor of dimension 2: got 3"),
    (lambda: oc.zeros(2, 3).sum(2),
     r"sum: dimension 2 is out of range for a tensor with 2 dimensions \(expected -2 to 1\)"),
    (lambda: oc.zeros(2, 3).transpose(0, -3), r"transpose: dimension -3 is out of range"),
    (lambda: oc.zeros(2, 3).unsqueeze(3), r"unsqueeze: dimension 3 is out of range"),
    (lambda: oc.index_select(oc.zeros(4), 0, oc.tensor([1, 4])),
     r"index 4 is out of bounds for dimension 0 with size 4"),
    (lambda: oc.index_select(oc.zeros(4), 0, oc.tensor([-1])),
     r"index_select: index -1 is out of bounds for dimension 0 with size 4 \(expected indices in \[0, 4\)\)"),
    (lambda: oc.zeros(2, 3)[:, [0, -4]],
     r"indexing: index -4 is out of bounds for dimension 1 with size 3 \(expected indices in \[-3, 3\)\)"),
    (lambda: oc.zeros(3)[oc.tensor([True, False])], r"boolean mask of shape \[2\] does not match"),
    (lambda: oc.zeros(2, 3)[..., ...], r"single ellipsis"),
    (lambda: oc.zeros(3).narrow(0, 2, 2), r"narrow: start 2 and length 2 do not fit in dimension 0 of size 3"),
]
TYPE_ERRORS = [
    (lambda: oc.zeros("3"), r"zeros: expected a shape given as ints"),
    (lambda: oc.ones(2, 3).reshape(2.0, 3), r"reshape: expected a shape given as ints"),
    (lambda: oc.ones(2).sum(dim="0"), r"sum: dim must be None, an int or a tuple of ints"),
    (lambda: oc.ones(2) + "a", r"unsupported operand|str"),
    (lambda: oc.add(oc.ones(2), [1, 2]), r"incompatible function arguments|add\(\)"),
    (lambda: oc.matmul(oc.ones(2), None), r"incompatible function arguments"),
    (lambda: oc.zeros(2, dtype="float32"), r"incompatible function arguments"),
    (lambda: oc.tensor([object()]), r"tensor\(\): data must be numbers"),
    (lambda: oc.from_numpy([1.0]), r"from_numpy: expected a numpy.ndarray, got list"),
    (lambda: oc.from_dlpack(3), r"from_dlpack: int does not support the DLPack protocol"),
    (lambda: oc.zeros(3)[1.5], r"invalid index of type float; expected int, slice"),
    (lambda: len(oc.tensor(1.0)), r"len\(\) of a 0-d tensor"),
    (lambda: oc.zeros(2).size("a"), r"size\(\): incompatible function arguments"),
    (lambda: oc.zeros(2).stride(1.5), r"stride\(\): incompatible function arguments"),
    (lambda: oc.arange("a"), r"arange: end must be a number, got str"),
    (lambda: oc.cat(oc.zeros(2, 3)), r"cat: expected a list or tuple of tensors, got (orchard\._core\.)?Tensor"),
    (lambda: oc.stack([oc.zeros(2), [1.0, 2.0]]),
     r"stack: expected a list or tuple of tensors, got an element of type list"),
]


def _ids(cases):
    """Readable test ids: the start of each expected message."""
    out = []
    for case in cases:
        match = case.values[1] if hasattr(case, "values") else case[1]
        out.append(re.sub(r"[^A-Za-z0-9_:.' -]+", "", match)[:40].strip())
    return out


@pytest.mark.parametrize("call,match", SHAPE_ERRORS + AXIS_ERRORS + VALUE_ERRORS,
                         ids=_ids(SHAPE_ERRORS + AXIS_ERRORS + VALUE_ERRORS))
def test_value_errors_for_shapes_axes_and_values(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call,match", DTYPE_ERRORS, ids=_ids(DTYPE_ERRORS))
def test_dtype_errors_are_value_errors_and_type_errors(call, match):
    """orchard.DTypeError: a ValueError (the issue's rule) and a TypeError (NumPy's for dtypes)."""
    with pytest.raises(oc.DTypeError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.parametrize("call,match", DTYPE_ERRORS_OF_REDUCE_MATMUL_INDEX, ids=_ids(DTYPE_ERRORS_OF_REDUCE_MATMUL_INDEX))
def test_dtype_errors_of_reduce_matmul_index(call, match):
    with pytest.raises(TypeError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError), f"{type(info.value).__name__} is not a ValueError"


@pytest.mark.parametrize("call,match", INDEX_ERRORS, ids=_ids(INDEX_ERRORS))
def test_index_errors(call, match):
    with pytest.raises(IndexError, match=match):
        call()


def test_gather_and_scatter_add_indices_raise_runtime_errors_as_in_pytorch():
    with pytest.raises(RuntimeError, match=r"gather: index 3 is out of bounds.*expected indices in \[0, 3\)"):
        oc.gather(oc.zeros(2, 3), 1, oc.tensor([[3]]))
    with pytest.raises(RuntimeError, match=r"scatter_add: index -1 is out of bounds for dimension 0 with size 2"):
        oc.scatter_add(oc.zeros(2), 0, oc.tensor([-1]), oc.ones(1))


@pytest.mark.parametrize("call,match", TYPE_ERRORS, ids=_ids(TYPE_ERRORS))
def test_type_errors_for_wrong_argument_types(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_memory_error_for_an_allocation_that_cannot_be_served():
    with pytest.raises(MemoryError, match=r"cannot allocate 4398046511104 bytes on cpu: out of memory"):
        oc.empty(2**40)
    with pytest.raises(MemoryError, match="cannot allocate"):
        oc.zeros(2**38, 64, dtype=oc.float64)
    oc.zeros(3)  # and the allocator still works afterwards


@pytest.mark.skipif(oc.metal.is_available(), reason="this build has a Metal device")
def test_runtime_error_for_devices():
    with pytest.raises(RuntimeError, match=r"device 'metal' is not available in this build of Orchard.*use 'cpu'"):
        oc.zeros(2, device="metal")
    with pytest.raises(RuntimeError, match="metal"):
        oc.ones(2).to("metal")
    with pytest.raises(RuntimeError, match="metal"):
        oc.synchronize("metal")


@pytest.mark.skipif(not oc.metal.is_available(), reason="this build has no Metal device")
@pytest.mark.parametrize("call", [
    lambda: oc.zeros(2, dtype=oc.float64, device="metal"),
    lambda: oc.ones(2, dtype=oc.float64).to("metal"),
    lambda: oc.tensor([1.0, 2.0], dtype=oc.float64, device="metal"),
    lambda: oc.ones(2, device="metal").to(oc.float64),
    lambda: oc.ones(2, device="metal").double(),
], ids=["zeros", "to_metal", "tensor", "to_dtype", "double"])
def test_metal_has_no_float64(call):
    """A DTypeError (so a ValueError and a TypeError) that names float64 and the way out."""
    with pytest.raises(oc.DTypeError, match=r"metal tensors cannot be float64.*use float32") as info:
        call()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


@pytest.mark.skipif(not oc.metal.is_available(), reason="this build has no Metal device")
@pytest.mark.parametrize("call", [
    lambda c, m: c + m,
    lambda c, m: m * c,
    lambda c, m: oc.maximum(m, c),
    lambda c, m: oc.where(m > 0, c, m),
    lambda c, m: m.add_(c),
    lambda c, m: oc.matmul(c.reshape(1, 2), m.reshape(2, 1)),
    lambda c, m: oc.cat([c, m]),
    lambda c, m: oc.index_select(m, 0, oc.tensor([0])),
    lambda c, m: oc.gather(c, 0, oc.tensor([1], device="metal")),
], ids=["add", "mul", "maximum", "where", "add_", "matmul", "cat", "index_select", "gather"])
def test_mixing_devices_in_one_op_names_both(call):
    c, m = oc.ones(2), oc.ones(2, device="metal")
    with pytest.raises(RuntimeError, match=r"same device, got (cpu and metal|metal and cpu)"):
        call(c, m)
    assert c.tolist() == [1.0, 1.0] and m.tolist() == [1.0, 1.0]  # nothing was written


@pytest.mark.skipif("metal" not in DEVICES, reason="needs the Metal device")
def test_a_cpu_scalar_tensor_joins_an_elementwise_op_on_another_device():
    """As in PyTorch: a 0-d CPU tensor acts as a number (nanoGPT compares a CPU loss with a checkpoint's)."""
    c = oc.tensor(2.0, requires_grad=True)
    m = oc.tensor([1.0, 3.0], device="metal", requires_grad=True)
    out = m * c
    assert out.device == "metal" and out.tolist() == [2.0, 6.0]
    out.sum().backward()
    assert c.grad.device == "cpu" and c.grad.item() == 4.0 and m.grad.tolist() == [2.0, 2.0]
    assert (oc.tensor(1.5) < oc.tensor(2.0, device="metal")).item()
    assert (oc.tensor(3, dtype=oc.int64) + oc.ones(2, device="metal")).dtype == oc.float32


def test_errors_leave_tensors_usable():
    t = oc.arange(6.0).reshape(2, 3)
    version = t._version
    for bad in [lambda: t.add_(oc.ones(4)), lambda: t[5], lambda: t.sum(7), lambda: t.reshape(4)]:
        with pytest.raises((ValueError, IndexError)):
            bad()
    assert t.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and t._version == version


MISUSE_SCRIPT = textwrap.dedent(r"""
    import gc, threading
    import numpy as np
    import orchard as oc
    attempts = [
        lambda: oc.empty(2**62), lambda: oc.zeros(-1), lambda: oc.zeros(2**63 - 1),
        lambda: oc.arange(0, 1e300, 1e-300), lambda: oc.zeros(0).max(), lambda: oc.zeros(0, 0).argmax(),
        lambda: oc.zeros(3)[3:1:-1], lambda: oc.zeros(3)[[5]], lambda: oc.zeros(3)[oc.tensor([9.5])],
        lambda: oc.gather(oc.zeros(3), 0, oc.tensor([-4])), lambda: oc.split(oc.zeros(3), -1),
        lambda: oc.from_numpy(np.zeros((2, 2))[:, ::-1]),
        lambda: oc.from_dlpack(object()), lambda: oc.tensor([[1], [1, 2]]), lambda: oc.ones(3).view(-1, -1),
        lambda: oc.matmul(oc.zeros(0, 3), oc.zeros(4, 0)), lambda: oc.zeros(2**31, 2**31).sum(),
        lambda: oc.zeros(3).expand(-2), lambda: oc.zeros(()).squeeze(1), lambda: oc.zeros(()).T.mT,
        lambda: oc.cat([oc.zeros(1)] * 3, 5), lambda: oc.stack([], 0), lambda: oc.zeros(3).narrow(0, -9, 1),
        lambda: oc.zeros(3).select(0, 2**62), lambda: oc.zeros(2, 3).permute(5, 0), lambda: oc.full((2,), "x"),
        lambda: oc.zeros(3).copy_(np.float64(1.0)), lambda: oc.zeros(3).fill_(float("nan")).int(),
        lambda: oc.tensor(2**70), lambda: oc.zeros(3) + 2**70, lambda: oc.tensor(float("inf")).long(),
        lambda: oc.scatter_add(oc.zeros(3), 0, oc.tensor([7]), oc.ones(1)),
        lambda: oc.embedding(oc.tensor([2**40]), oc.zeros(3, 2)), lambda: oc.zeros(3).__dlpack__(stream=5),
        lambda: oc.profile.counts(), lambda: oc.zeros(2, 3)[None, ..., None, 1, :, None],
    ]
    errors = 0
    for a in attempts:
        try:
            a()
        except (ValueError, IndexError, TypeError, MemoryError, RuntimeError, OverflowError, BufferError):
            errors += 1
    # errors raised on several threads at once
    def worker():
        for _ in range(200):
            try:
                oc.ones(3) + oc.ones(4)
            except ValueError:
                pass
    ts = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    gc.collect()
    print("survived", errors)
""")


def test_nothing_crashes_the_interpreter():
    """A battery of misuse in a child interpreter: it must exit normally, every attempt answered by
    a Python exception or a result."""
    proc = subprocess.run([sys.executable, "-c", MISUSE_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr[-3000:]}"
    assert "survived" in proc.stdout


def test_operands_of_other_types_get_pythons_answers_as_in_pytorch():
    t, r = oc.ones(2), torch.ones(2)
    assert (t == "a") is (r == "a") is False and (t != None) is (r != None) is True  # noqa: E711
    for op in (lambda x: x + "a", lambda x: x < "a", lambda x: x @ "a", lambda x: "a" - x):
        with pytest.raises(TypeError):
            op(t)
        with pytest.raises(TypeError):
            op(r)
