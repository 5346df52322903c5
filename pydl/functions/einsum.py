"""``einsum``: Einstein summation, planned onto pydl's own ops.

The equation is reduced step by step to recorded ops, never a Python loop over elements:

1. ``...`` becomes fresh letters (right-aligned, broadcasting like NumPy); a letter repeated
   within one operand (``ii``) takes that operand's diagonal;
2. a letter found in one operand only and not in the output is summed out right away;
3. the operands are contracted left to right, two at a time, each pair as ONE batched
   ``matmul``: the pair's letters split into batch (in both, still needed), contracted (in
   both, not needed again), left-only and right-only; each side is permuted and reshaped to
   ``(batch, left, contracted)`` / ``(batch, contracted, right)``;
4. the last operand's leftover letters are summed and its dims permuted to the output.

Gradients (first and second order) are those of matmul, permute, reshape, sum and indexing.
"""

from __future__ import annotations

import math
import string

from ..tensor import Tensor

__all__ = ["einsum"]


def einsum(equation, *operands):
    """Sum of products over the indices named in ``equation``, as ``torch.einsum``.

    >>> a, b = pydl.ones(2, 3), pydl.ones(3, 4)
    >>> pydl.einsum("ij,jk->ik", a, b).shape
    (2, 4)
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    for i, t in enumerate(operands):
        if not isinstance(t, Tensor):
            raise TypeError(f"einsum: operand {i} must be a Tensor, got {type(t).__name__}")
    terms, output = _parse(equation, operands)
    sizes = _sizes(terms, operands, equation)
    ops = []
    for t, term in zip(operands, terms):
        t, term = _diagonals(t, term)
        ops.append([t, term])
    for i, (t, term) in enumerate(ops):  # sum letters nobody else needs
        others = set(output).union(*(o[1] for j, o in enumerate(ops) if j != i))
        ops[i] = _sum_out(t, term, others)
    t, term = ops[0]
    for k in range(1, len(ops)):
        keep = set(output).union(*(o[1] for o in ops[k + 1:]))
        t, term = _sum_out(t, term, keep | set(ops[k][1]))
        u, uterm = _sum_out(*ops[k], keep | set(term))
        t, term = _contract(t, term, u, uterm, keep, sizes)
    t, term = _sum_out(t, term, set(output))
    return t.permute(*[term.index(c) for c in output]) if term != output else t


def _parse(equation, operands):
    if not isinstance(equation, str):
        raise TypeError(f"einsum: equation must be a string, got {type(equation).__name__}")
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: equation {equation!r} names {len(terms)} operands, "
                         f"{len(operands)} were given")
    for term in terms + ([rhs] if arrow else []):
        body = term.replace("...", "")
        if "." in body or any(c not in string.ascii_letters for c in body):
            raise ValueError(f"einsum: invalid subscripts {term!r} in {equation!r}")
    free = [c for c in string.ascii_letters if c not in eq]
    n_ell = 0
    for term, t in zip(terms, operands):
        named = len(term.replace("...", ""))
        if "..." in term:
            n_ell = max(n_ell, t.ndim - named)
        elif named != t.ndim:
            raise ValueError(f"einsum: subscripts {term!r} name {named} dims, the operand has "
                             f"{t.ndim} (shape {t.shape})")
    ell = "".join(free[:n_ell])
    out_terms = []
    for term, t in zip(terms, operands):
        if "..." in term:
            n = t.ndim - len(term.replace("...", ""))
            if n < 0:
                raise ValueError(f"einsum: subscripts {term!r} name more dims than the operand "
                                 f"has (shape {t.shape})")
            term = term.replace("...", ell[n_ell - n:])
        out_terms.append(term)
    if arrow:
        output = rhs.replace("...", ell)
        for c in output:
            if not any(c in term for term in out_terms):
                raise ValueError(f"einsum: output subscript {c!r} appears in no operand")
        if len(set(output)) != len(output):
            raise ValueError(f"einsum: output subscripts {rhs!r} repeat a letter")
    else:
        counts = {}
        for term in out_terms:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        output = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return out_terms, output


def _sizes(terms, operands, equation):
    sizes = {}
    for term, t in zip(terms, operands):
        for c, n in zip(term, t.shape):
            m = sizes.get(c, 1)
            if n != m and 1 not in (n, m):
                raise ValueError(f"einsum: subscript {c!r} in {equation!r} has size {m} in one "
                                 f"operand and {n} in another")
            sizes[c] = n if c not in sizes or m == 1 else m
    return sizes


def _diagonals(t, term):
    """Take the diagonal for each letter repeated within one operand."""
    while len(set(term)) != len(term):
        c = next(c for c in term if term.count(c) > 1)
        i = term.index(c)
        j = term.index(c, i + 1)
        t = t.diagonal(0, i, j)
        term = "".join(x for k, x in enumerate(term) if k not in (i, j)) + c
    return t, term


def _sum_out(t, term, keep):
    drop = [i for i, c in enumerate(term) if c not in keep]
    if not drop:
        return t, term
    return t.sum(dim=tuple(drop)), "".join(c for c in term if c in keep)


def _contract(a, ta, b, tb, keep, sizes):
    """One batched matmul: (batch, left, k) @ (batch, k, right) -> letters batch+left+right."""
    batch = [c for c in ta if c in tb and c in keep]
    summed = [c for c in ta if c in tb and c not in keep]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]
    a = _arrange(a, ta, batch + left + summed, sizes, batch + summed)
    b = _arrange(b, tb, batch + summed + right, sizes, batch + summed)
    nbatch, nleft, nright = len(batch), len(left), len(right)
    batch_shape = a.shape[:nbatch]
    left_shape = a.shape[nbatch:nbatch + nleft]
    right_shape = b.shape[b.ndim - nright:]
    nb, nl, nr = math.prod(batch_shape), math.prod(left_shape), math.prod(right_shape)
    nk = math.prod(sizes[c] for c in summed)
    out = a.reshape(nb, nl, nk).matmul(b.reshape(nb, nk, nr))
    return out.reshape(tuple(batch_shape + left_shape + right_shape)), "".join(batch + left + right)


def _arrange(t, term, order, sizes, shared):
    """``t`` permuted to ``order``, its size-1 shared dims broadcast to the common size."""
    if list(term) != order:
        t = t.permute(*[term.index(c) for c in order])
    target = [sizes[c] if c in shared else t.shape[i] for i, c in enumerate(order)]
    if list(t.shape) != target:
        t = t.expand(*target)
    return t
