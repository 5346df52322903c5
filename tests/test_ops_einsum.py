"""einsum (pydl/functions/einsum.py): np.einsum in float64 as the reference, gradchecks,
torch parity, broadcasting, and that it runs through matmul."""

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck

# equation, operand shapes
CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("ij,kj->ik", [(3, 4), (2, 4)]),
    ("ij->ji", [(3, 4)]),
    ("ij->", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("iij->j", [(3, 3, 2)]),
    ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ij,ij->ij", [(3, 4), (3, 4)]),
    ("ij,j->i", [(3, 4), (4,)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("abc,cd,de->abe", [(2, 3, 4), (4, 5), (5, 2)]),
    ("ijk,jil->kl", [(2, 3, 4), (3, 2, 5)]),
    ("i,i,i->i", [(4,), (4,), (4,)]),
    ("ij,jk", [(3, 4), (4, 2)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("b...,b...->b", [(3, 2, 4), (3, 2, 4)]),
    ("ij,kl->", [(2, 3), (4, 5)]),
    ("i,->i", [(3,), ()]),
    ("ab,ab,ab->", [(2, 3), (1, 3), (2, 1)]),
]


def leaf(arr, device):
    return pydl.tensor(arr, dtype=pydl.float64, device=device, requires_grad=True)


def host(t):
    return np.asarray(t.detach())


def _arrays(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


@pytest.mark.parametrize("eq,shapes", CASES, ids=[c[0] for c in CASES])
def test_einsum_forward_and_gradcheck(eq, shapes, device):
    arrays = _arrays(shapes)
    xs = [leaf(a, device) for a in arrays]
    y = pydl.einsum(eq, *xs)
    want = np.einsum(eq.replace("b...,b...->b", "b...,b...->b..."), *arrays)
    if eq == "b...,b...->b":  # NumPy wants the ellipsis in the output; torch sums it
        want = want.reshape(want.shape[0], -1).sum(axis=1)
    assert y.shape == want.shape and y.dtype == pydl.float64
    assert_close(host(y), want, rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda *ts: pydl.einsum(eq, *ts), xs)


@pytest.mark.parametrize("eq,shapes", CASES, ids=[c[0] for c in CASES])
def test_einsum_torch_parity(eq, shapes, device):
    torch = pytest.importorskip("torch")
    arrays = _arrays(shapes, seed=1)
    xs = [leaf(a, device) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = pydl.einsum(eq, xs), torch.einsum(eq, ts)  # the list form, too
    assert y.shape == tuple(ty.shape)
    assert_close(host(y), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    w = np.random.default_rng(2).standard_normal(ty.shape)
    (y * pydl.tensor(w, dtype=pydl.float64, device=device)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    for x, t in zip(xs, ts):
        assert_close(host(x.grad), t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_einsum_runs_through_matmul(device, monkeypatch):
    calls = []
    real = pydl.Tensor.matmul

    def counting(a, b):
        calls.append((a.shape, b.shape))
        return real(a, b)

    monkeypatch.setattr(pydl.Tensor, "matmul", counting)
    a, b = pydl.randn(2, 3, 4, device=device), pydl.randn(2, 4, 5, device=device)
    pydl.einsum("bij,bjk->bik", a, b)
    assert calls == [((2, 3, 4), (2, 4, 5))]


def test_einsum_errors(device):
    a = pydl.ones(2, 3, device=device)
    with pytest.raises(ValueError, match="names 2 operands, 1 were given"):
        pydl.einsum("ij,jk->ik", a)
    with pytest.raises(ValueError, match="subscripts 'ijk' name 3 dims, the operand has 2"):
        pydl.einsum("ijk->i", a)
    with pytest.raises(ValueError, match="subscript 'j' .* has size 3 in one operand and 4"):
        pydl.einsum("ij,jk->ik", a, pydl.ones(4, 2, device=device))
    with pytest.raises(ValueError, match="output subscript 'z' appears in no operand"):
        pydl.einsum("ij->z", a)
    with pytest.raises(ValueError, match="invalid subscripts"):
        pydl.einsum("i1->i", a)
    with pytest.raises(TypeError, match="operand 0 must be a Tensor"):
        pydl.einsum("ij->i", np.ones((2, 3)))
