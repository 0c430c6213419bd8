"""orchard.einsum against torch.einsum: values and gradients for many equations, and the errors."""
import numpy as np
import pytest
import torch

import orchard as oc
from conftest import assert_close

# (equation, operand shapes)
CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    ("ij->ji", [(2, 3)]),
    ("ij->", [(2, 3)]),
    ("ij", [(2, 3)]),
    ("ji", [(2, 3)]),
    ("ij->j", [(2, 3)]),
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("i,j", [(3,), (4,)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("bhqk,bhkd->bhqd", [(2, 3, 4, 6), (2, 3, 6, 5)]),
    ("ii", [(4, 4)]),
    ("ii->i", [(4, 4)]),
    ("iij->ji", [(3, 3, 2)]),
    ("iji->j", [(3, 2, 3)]),
    ("...ij,...jk->...ik", [(2, 5, 3, 4), (5, 4, 2)]),
    ("...ij,...jk", [(2, 5, 3, 4), (4, 2)]),
    ("i...->...", [(3, 2, 4)]),
    ("...i,...i->...", [(2, 3, 4), (3, 4)]),
    ("...,...->...", [(2, 3), (3,)]),
    ("ij...,jk...->ik", [(2, 3, 5), (3, 4, 5)]),
    ("a...b->b...a", [(2, 3, 4, 5)]),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ab,ab,ab->a", [(3, 4), (3, 4), (3, 4)]),
    ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("ij,kl->ijkl", [(2, 3), (2, 2)]),
    ("ij,jk->ik", [(2, 1), (3, 4)]),  # a summed subscript of size 1 broadcasts
    ("i,i->i", [(1,), (3,)]),
    ("Ba,ab", [(2, 3), (3, 4)]),
    ("bA,Ab->", [(2, 3), (3, 2)]),
    (" ij , jk -> ik ", [(2, 3), (3, 4)]),
    ("ij,jk->ik", [(0, 3), (3, 4)]),
    ("ij,jk->ik", [(2, 0), (0, 4)]),
    ("i->", [(0,)]),
    ("bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
]


@pytest.mark.parametrize("equation,shapes", CASES, ids=[c[0].strip() + str(c[1]) for c in CASES])
def test_values_and_gradients_as_pytorch(device, equation, shapes):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours = [oc.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    got, want = oc.einsum(equation, *ours), torch.einsum(equation, *theirs)
    assert_close(got, want.detach().numpy(), rtol=1e-5, atol=1e-5, device=device, dtype=oc.float32)
    weight = rng.standard_normal(tuple(want.shape)).astype(np.float32)
    (got * oc.tensor(weight, device=device)).sum().backward()
    (want * torch.tensor(weight)).sum().backward()
    for o, t in zip(ours, theirs):
        assert_close(o.grad, t.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_operands_as_one_list():
    a, b = oc.ones(2, 3), oc.ones(3, 4)
    assert oc.einsum("ij,jk->ik", [a, b]).tolist() == [[3.0] * 4] * 2


def test_a_diagonal_ignores_the_other_elements():
    """Infinities and NaNs off the diagonal play no part, as mathematics has it."""
    x = oc.tensor([[1.0, float("inf")], [float("nan"), 2.0]])
    assert oc.einsum("ii->i", x).tolist() == [1.0, 2.0] and oc.einsum("ii", x).item() == 3.0


def test_float64_and_bfloat16(device):
    for dtype in ([oc.float64] if device == "cpu" else []) + [oc.bfloat16, oc.float16]:
        a = oc.ones(2, 3, dtype=dtype, device=device)
        got = oc.einsum("ij,kj->ik", a, a)
        assert got.dtype == dtype and got.float().tolist() == [[3.0, 3.0], [3.0, 3.0]]


@pytest.mark.parametrize("equation,shapes", [
    ("i,j", [(2,)]), ("i", [(2,), (2,)]), ("i$", [(2,)]), ("ij", [(2,)]), ("ij->ii", [(2, 2)]),
    ("ij->k", [(2, 2)]), ("ii", [(2, 3)]), ("i..j", [(2,)]), ("...i...", [(2,)]), ("ijk", [(2,)]),
    ("ij,jk", [(2, 3), (2, 4)]), ("bij,bjk->bik", [(2, 3, 4), (3, 4, 5)]), ("...i,...i", [(2, 3), (4, 3)]),
])
def test_errors_as_pytorch(equation, shapes):
    with pytest.raises(Exception) as want:
        torch.einsum(equation, *[torch.ones(s) for s in shapes])
    with pytest.raises(want.type):
        oc.einsum(equation, *[oc.ones(s) for s in shapes])


def test_argument_types():
    with pytest.raises(TypeError, match="equation"):
        oc.einsum(["i"], oc.ones(2))
    with pytest.raises(TypeError, match="operand 1"):
        oc.einsum("i,i", oc.ones(2), [1.0, 2.0])


def _random_case(rng):
    """A random equation over subscripts a-e (repeats within an operand included) and its operand shapes."""
    sizes = dict(zip("abcde", rng.integers(1, 4, size=5).tolist()))
    terms = ["".join(rng.choice(list("abcde"), size=rng.integers(0, 4))) for _ in range(rng.integers(1, 4))]
    used = sorted(set("".join(terms)))
    out = "".join(rng.permutation(used)[:rng.integers(0, len(used) + 1)]) if used else ""
    equation = ",".join(terms) + ("->" + out if rng.random() < 0.7 else "")
    return equation, [tuple(sizes[s] for s in t) for t in terms]


@pytest.mark.parametrize("seed", range(60))
def test_random_equations_as_pytorch(seed):
    equation, shapes = _random_case(np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = [oc.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    want = torch.einsum(equation, *theirs)
    got = oc.einsum(equation, *ours)
    assert_close(got, want.detach().numpy(), dtype=oc.float64, msg=equation)
    got.sum().backward()
    want.sum().backward()
    for o, t in zip(ours, theirs):
        assert_close(o.grad, t.grad.numpy(), msg=equation)
