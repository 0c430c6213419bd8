"""Sizes: element counts, strides and sizes that overflow 64-bit arithmetic raise a clear ValueError
(IndexError for positions), and allocations far beyond memory raise MemoryError naming the bytes
and the device, on every device, leaving the allocator working. tests/py/test_errors.py has the
first cases of each (empty(2**62), zeros(2**40, 2**40), empty(2**40)); these are the rest."""
import numpy as np
import pytest

import orchard as oc

BIG = 2**62


def huge_view(device, n):
    """A tensor of n elements backed by one: an expanded view, which allocates nothing."""
    return oc.zeros(1, device=device).expand(n)


@pytest.mark.parametrize("call, match", [
    (lambda d: oc.zeros(1, device=d).expand(BIG, BIG), r"shape \[4611686018427387904, 4611686018427387904\] has "
                                                         r"more elements than fit in 64 bits"),
    (lambda d: oc.zeros(1, 1, device=d).expand(2**32, 2**31, 4), r"more elements than fit in 64 bits"),
    (lambda d: oc.zeros(0, BIG, BIG, device=d), r"sides whose product does not fit in 64 bits"),
    (lambda d: oc.ones(2**32, 2**32, device=d), r"more elements than fit in 64 bits"),
    (lambda d: oc.full((2**21,) * 3, 1.0, device=d), r"more elements than fit in 64 bits"),
    (lambda d: oc.rand(2**31, 2**33, device=d), r"more elements than fit in 64 bits"),
    (lambda d: oc.randn(3, 2**62, device=d), r"more elements than fit in 64 bits"),
    (lambda d: oc.empty(2**62, dtype=oc.int32, device=d), r"needs more bytes than fit in 64 bits"),
    (lambda d: oc.zeros(0, device=d).reshape(BIG, BIG, 0), r"reshape: shape \[4611686018427387904, 4611686018427387904, "
                                                           r"0\] has more elements than fit in 64 bits"),
    (lambda d: oc.zeros(0, device=d).view(-1, BIG, BIG), r"reshape: shape \[-1, .*\] has more elements than fit"),
    (lambda d: oc.cat([huge_view(d, BIG), huge_view(d, BIG)]), r"cat: the sizes in dimension 0 add up to more "
                                                               r"than fit in 64 bits"),
    (lambda d: oc.stack([huge_view(d, BIG)] * 4), r"more elements than fit in 64 bits"),
    (lambda d: huge_view(d, 2**32).reshape(-1, 1) + huge_view(d, 2**32), r"more elements than fit in 64 bits"),
    (lambda d: oc.matmul(huge_view(d, 2**32).reshape(-1, 1), huge_view(d, 2**32).reshape(1, -1)),
     r"more elements than fit in 64 bits"),
    (lambda d: oc.zeros(5, device=d).split([BIG] * 4), r"split: section sizes .* sum to"),
    (lambda d: oc.arange(0, 2.0**64, 1, device=d), r"arange: .* elements is too many"),
    (lambda d: oc.zeros(1, device=d).expand(-2), r"expand: invalid size -2"),
    (lambda d: oc.zeros(2, 1, device=d).expand(2, -5), r"expand: invalid size -5"),
], ids=["expand", "expand3", "zero_sided", "ones", "full", "rand", "randn", "bytes", "reshape", "view_infer",
        "cat", "stack", "broadcast", "matmul", "split", "arange", "expand_negative", "expand_negative_inner"])
def test_sizes_that_overflow_64_bits_raise_value_errors(device, call, match):
    with pytest.raises(ValueError, match=match):
        call(device)
    assert oc.ones(3, device=device).sum().item() == 3  # and everything still works


@pytest.mark.parametrize("call, match", [
    (lambda d: oc.zeros(5, device=d).narrow(0, 1, 2**63 - 1), r"narrow: start 1 and length 9223372036854775807 do "
                                                               r"not fit in dimension 0 of size 5"),
    (lambda d: oc.zeros(5, device=d).narrow(0, -2**63, 1), r"narrow: start"),
    (lambda d: oc.zeros(5, device=d).select(0, -2**63), r"index -9223372036854775808 is out of bounds"),
    (lambda d: oc.tensor(1.5, device=d).size(0), r"size: dimension 0 is out of range for a 0-d tensor"),
    (lambda d: oc.tensor(1.5, device=d).stride(-1), r"stride: dimension -1 is out of range for a 0-d tensor"),
    (lambda d: oc.tensor(1.5, device=d).narrow(0, 0, 1), r"narrow: dimension 0 is out of range for a 0-d tensor"),
    (lambda d: oc.tensor(1.5, device=d).softmax(1), r"softmax: dimension 1 is out of range"),
    (lambda d: oc.tensor(1.5, device=d).flatten(0, 2), r"flatten: dimension 2 is out of range"),
    (lambda d: oc.zeros(3, device=d).sum(2**62), r"sum: dimension 4611686018427387904 is out of range"),
    (lambda d: oc.zeros(3, device=d).unsqueeze(-2**63), r"unsqueeze: dimension -9223372036854775808 is out of range"),
], ids=["narrow_length", "narrow_start", "select", "size_0d", "stride_0d", "narrow_0d", "softmax_0d", "flatten_0d",
        "sum_dim", "unsqueeze"])
def test_positions_far_out_of_range_raise_index_errors(device, call, match):
    with pytest.raises(IndexError, match=match):
        call(device)


def test_extreme_slice_steps_and_bounds(device):
    """Slices whose start, stop or step are near the 64-bit limits select what NumPy selects."""
    t = oc.arange(5, device=device)
    a = np.arange(5)
    for key in [slice(None, None, 2**63 - 1), slice(1, None, 2**62), slice(-2**63, 2**63 - 1), slice(2**62, None),
                slice(-2**63, -2**62), slice(2, -2**63, 1), slice(None, None, 3)]:
        got = t[key]
        assert got.tolist() == a[key].tolist(), key


@pytest.mark.parametrize("make", [
    lambda d: oc.empty(2**40, device=d),
    lambda d: oc.zeros(2**20, 2**20, device=d),
    lambda d: oc.ones(2**39, dtype=oc.int64 if d == "cpu" else oc.int32, device=d),
    lambda d: oc.full((2**40,), 7.0, device=d),
    lambda d: oc.rand(2**40, device=d),
    lambda d: oc.randn(2**40, device=d),
    lambda d: huge_view(d, 2**40).contiguous(),
    lambda d: huge_view(d, 2**40) + 1,
    lambda d: huge_view(d, 2**40).to(oc.float16),
    lambda d: oc.matmul(oc.ones(2**20, 1, device=d), oc.ones(1, 2**20, device=d)),
    lambda d: oc.cat([huge_view(d, 2**39), huge_view(d, 2**39)]),
    lambda d: oc.zeros(1, device=d).requires_grad_().expand(2**40) * 2,
], ids=["empty", "zeros", "ones", "full", "rand", "randn", "contiguous", "binary", "cast", "matmul", "cat", "autograd"])
def test_allocations_far_beyond_memory_raise_memory_error(device, make):
    with pytest.raises(MemoryError, match=rf"cannot allocate \d+ bytes on {device}: out of memory"):
        make(device)
    # The allocator and its cache keep working.
    x = oc.arange(1000, dtype=oc.float32, device=device)
    assert (x * 2).sum().item() == 999000.0
