"""orchard.einsum, PyTorch's Einstein summation, built from ops that have gradients (diagonal masks, sum,
permute, reshape and matmul), so autograd works through it.

Each operand first loses its repeated subscripts (their diagonal) and the subscripts nothing else uses
(summed). Then the operands are contracted left to right, two at a time, as one batched matmul: subscripts
both share and still need are batch dims, subscripts both share and no longer need are summed by the matmul.
Subscripts are letters; an ellipsis stands for dims that broadcast across operands, right-aligned.
"""
import string

from ._core import Tensor
from ._tensor import arange

_LETTERS = set(string.ascii_letters)


def _error(message):
    return RuntimeError(f"einsum(): {message}")


def _parse_term(term, where):
    """The term's subscripts: letters, and "..." once at most (kept as the string "...")."""
    out, i = [], 0
    while i < len(term):
        if term.startswith("...", i):
            if "..." in out:
                raise _error(f"found more than one ellipsis for {where}")
            out.append("...")
            i += 3
        elif term[i] == ".":
            raise _error(f"found '.' for {where} that is not part of any ellipsis")
        elif term[i] in _LETTERS:
            out.append(term[i])
            i += 1
        else:
            raise _error(f"invalid subscript {term[i]!r} for {where}; subscripts must be in [a-zA-Z]")
    return out


def _labels(subscripts, ndim, n_ellipsis_dims, where):
    """The operand's dims as labels: its letters, and for its ellipsis dims (i, right-aligned among the
    n_ellipsis_dims of the widest operand) the integers n_ellipsis_dims - k ... n_ellipsis_dims - 1."""
    letters = [s for s in subscripts if s != "..."]
    if "..." not in subscripts:
        if len(letters) != ndim:
            raise _error(f"the number of subscripts in the equation ({len(letters)}) does not match the number of "
                         f"dimensions ({ndim}) for {where} and no ellipsis was given")
        return letters
    k = ndim - len(letters)
    if k < 0:
        raise _error(f"the number of subscripts in the equation ({len(letters)}) is more than the number of "
                     f"dimensions ({ndim}) for {where}")
    at = subscripts.index("...")
    return letters[:at] + list(range(n_ellipsis_dims - k, n_ellipsis_dims)) + letters[at:]


def _diagonal(x, labels):
    """x with each repeated label kept once: the elements where those dims' indices agree (their diagonal, moved
    last, read by index_select so that other elements, infinities and NaNs included, play no part)."""
    labels = list(labels)
    for label in dict.fromkeys(labels):
        while labels.count(label) > 1:
            i = labels.index(label)
            j = labels.index(label, i + 1)
            n = x.shape[i]
            if x.shape[j] != n:
                raise _error(f"subscript {label} is repeated for an operand but the sizes don't match, "
                             f"{x.shape[j]} != {n}")
            rest = [d for d in range(x.ndim) if d not in (i, j)]
            flat = x.permute(*rest, i, j).reshape(*[x.shape[d] for d in rest], n * n)
            x = flat.index_select(flat.ndim - 1, arange(n, device=x.device) * (n + 1))
            labels = [labels[d] for d in rest] + [label]
    return x, labels


def _sum_out(x, labels, keep):
    """x summed over the labels not in keep."""
    dims = [d for d, label in enumerate(labels) if label not in keep]
    if not dims:
        return x, labels
    return x.sum(dims), [label for label in labels if label in keep]


def _contract(a, la, b, lb, keep):
    """The product of a and b summed over their shared labels not in keep, as one batched matmul; its labels."""
    shared = [label for label in la if label in lb]
    batch = [label for label in shared if label in keep]
    summed = [label for label in shared if label not in keep]
    for label in shared:
        na, nb = a.shape[la.index(label)], b.shape[lb.index(label)]
        if na != nb and 1 not in (na, nb):
            raise _error(f"operands do not broadcast with remapped shapes: subscript {label} has sizes {na} and "
                         f"{nb}")
    # A summed label of size 1 on one side broadcasts: sum the other side over it first. (Batch labels broadcast
    # in the matmul.)
    for label in summed:
        na, nb = a.shape[la.index(label)], b.shape[lb.index(label)]
        if na != nb:
            if na == 1:
                b = b.sum(lb.index(label), keepdim=True)
            else:
                a = a.sum(la.index(label), keepdim=True)
    only_a = [label for label in la if label not in lb]
    only_b = [label for label in lb if label not in la]
    a = a.permute(*[la.index(label) for label in batch + only_a + summed])
    b = b.permute(*[lb.index(label) for label in batch + summed + only_b])
    nbatch = len(batch)
    batch_a, batch_b = a.shape[:nbatch], b.shape[:nbatch]
    sizes_a = a.shape[nbatch:nbatch + len(only_a)]
    sizes_b = b.shape[nbatch + len(summed):]
    k = _prod(a.shape[nbatch + len(only_a):])
    out = a.reshape(*batch_a, _prod(sizes_a), k) @ b.reshape(*batch_b, k, _prod(sizes_b))
    out = out.reshape(*out.shape[:nbatch], *sizes_a, *sizes_b)
    return out, batch + only_a + only_b


def _prod(sizes):
    n = 1
    for s in sizes:
        n *= s
    return n


def einsum(equation, *operands):
    """Sums the product of the operands' elements over the subscripts the output leaves out, as torch.einsum:
    einsum("ij,jk->ik", a, b) is a @ b, einsum("bhqd,bhkd->bhqk", q, k) batched attention scores, einsum("ii", x)
    the trace. Without "->" the output is the subscripts that appear once, in alphabetical order, after the
    ellipsis dims. The operands may also come as one list."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum(): argument 'equation' must be str, not {type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, op in enumerate(operands):
        if not isinstance(op, Tensor):
            raise TypeError(f"einsum(): operand {i} must be an orchard.Tensor, got {type(op).__name__}")
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = [_parse_term(t, f"operand {i}") for i, t in enumerate(lhs.split(","))]
    if len(terms) > len(operands):
        raise _error("fewer operands were provided than specified in the equation")
    if len(terms) < len(operands):
        raise _error("more operands were provided than specified in the equation")
    n_ellipsis = max([op.ndim - (len(t) - 1) for t, op in zip(terms, operands) if "..." in t] + [0])
    labels = [_labels(t, op.ndim, n_ellipsis, f"operand {i}") for i, (t, op) in enumerate(zip(terms, operands))]
    if arrow:
        out_terms = _parse_term(rhs, "the output")
        output = []
        for s in out_terms:
            if s == "...":
                output.extend(range(n_ellipsis))
            elif s in output:
                raise _error(f"output subscript {s} appears more than once in the output")
            elif not any(s in ls for ls in labels):
                raise _error(f"output subscript {s} does not appear in the equation for any input operand")
            else:
                output.append(s)
    else:
        letters = [s for t in terms for s in t if s != "..."]
        output = list(range(n_ellipsis)) + sorted(s for s in set(letters) if letters.count(s) == 1)

    # Each operand alone: diagonals of repeated labels, then the labels no other operand nor the output has.
    prepared = []
    for i, (op, ls) in enumerate(zip(operands, labels)):
        op, ls = _diagonal(op, ls)
        elsewhere = {label for j, other in enumerate(labels) if j != i for label in other}
        prepared.append(_sum_out(op, ls, elsewhere | set(output)))
    result, result_labels = prepared[0]
    for i in range(1, len(prepared)):
        later = {label for _, ls in prepared[i + 1:] for label in ls} | set(output)
        b, lb = prepared[i]
        result, result_labels = _contract(result, result_labels, b, lb, later)
        result, result_labels = _sum_out(result, result_labels, later)
    result, result_labels = _sum_out(result, result_labels, set(output))
    return result.permute(*[result_labels.index(label) for label in output]) if output else result.reshape(())
