"""triu tril roll diagonal diag repeat_interleave unfold meshgrid nonzero
(pydl/functions/structure.py): float64 NumPy references, gradchecks, torch parity."""

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck, gradgradcheck


def leaf(arr, device, requires_grad=True):
    return pydl.tensor(np.asarray(arr, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=requires_grad)


def host(t):
    return np.asarray(t.detach())


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# name -> (pydl fn, float64 numpy reference, torch fn name + args, input shape)
CASES = [
    ("triu", lambda t: t.triu(), np.triu, lambda T, t: T.triu(t), (4, 5)),
    ("triu-k1-batched", lambda t: pydl.triu(t, 1), lambda a: np.triu(a, 1),
     lambda T, t: T.triu(t, 1), (2, 3, 4)),
    ("tril-k-2", lambda t: t.tril(-2), lambda a: np.tril(a, -2), lambda T, t: T.tril(t, -2),
     (5, 3)),
    ("tril", pydl.tril, np.tril, lambda T, t: T.tril(t), (3, 3)),
    ("roll-flat", lambda t: t.roll(3), lambda a: np.roll(a, 3), lambda T, t: T.roll(t, 3),
     (3, 4)),
    ("roll-dims", lambda t: pydl.roll(t, (1, -2), (0, 2)),
     lambda a: np.roll(a, (1, -2), (0, 2)), lambda T, t: T.roll(t, (1, -2), (0, 2)),
     (3, 2, 5)),
    ("roll-wrap", lambda t: t.roll(7, 1), lambda a: np.roll(a, 7, 1),
     lambda T, t: T.roll(t, 7, 1), (2, 5)),
    ("diagonal", lambda t: t.diagonal(), np.diagonal, lambda T, t: T.diagonal(t), (4, 6)),
    ("diagonal-off", lambda t: t.diagonal(2, 1, 2), lambda a: np.diagonal(a, 2, 1, 2),
     lambda T, t: T.diagonal(t, 2, 1, 2), (2, 4, 6)),
    ("diagonal-neg", lambda t: t.diagonal(-1, -1, 0), lambda a: np.diagonal(a, -1, -1, 0),
     lambda T, t: T.diagonal(t, -1, -1, 0), (5, 3, 4)),
    ("diag-vec", lambda t: pydl.diag(t), np.diag, lambda T, t: T.diag(t), (4,)),
    ("diag-vec-k", lambda t: t.diag(-2), lambda a: np.diag(a, -2), lambda T, t: T.diag(t, -2),
     (3,)),
    ("diag-mat-k", lambda t: pydl.diag(t, 1), lambda a: np.diag(a, 1),
     lambda T, t: T.diag(t, 1), (4, 5)),
    ("repeat-interleave", lambda t: t.repeat_interleave(2),
     lambda a: np.repeat(a, 2), lambda T, t: T.repeat_interleave(t, 2), (2, 3)),
    ("repeat-interleave-dim", lambda t: t.repeat_interleave(3, dim=1),
     lambda a: np.repeat(a, 3, axis=1), lambda T, t: T.repeat_interleave(t, 3, dim=1), (2, 3)),
    ("repeat-interleave-counts",
     lambda t: t.repeat_interleave(pydl.tensor([1, 0, 3]), dim=0),
     lambda a: np.repeat(a, [1, 0, 3], axis=0),
     lambda T, t: T.repeat_interleave(t, T.tensor([1, 0, 3]), dim=0), (3, 2)),
    ("unfold", lambda t: t.unfold(1, 3, 2), None, lambda T, t: t.unfold(1, 3, 2), (2, 7, 3)),
    ("unfold-last", lambda t: t.unfold(-1, 2, 1), None, lambda T, t: t.unfold(-1, 2, 1), (6,)),
]


@pytest.mark.parametrize("name,fn,ref,tfn,shape", CASES, ids=[c[0] for c in CASES])
def test_structure_forward_gradcheck_torch(name, fn, ref, tfn, shape, device):
    torch = pytest.importorskip("torch")
    a = rnd(*shape)
    x = leaf(a, device)
    y = fn(x)
    ty = tfn(torch, torch.tensor(a, requires_grad=True))
    if ref is not None:
        assert_close(host(y), ref(a), rtol=0, atol=0)
    assert y.shape == tuple(ty.shape) and y.dtype == pydl.float64
    assert_close(host(y), ty.detach().numpy(), rtol=0, atol=0)
    assert gradcheck(fn, [x])
    w = rnd(*ty.shape, seed=1)
    tx = torch.tensor(a, requires_grad=True)
    (tfn(torch, tx) * torch.tensor(w)).sum().backward()
    x = leaf(a, device)
    (fn(x) * leaf(w, device, False)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-14, atol=1e-15)


def test_diagonal_is_a_view_as_in_torch(device):
    """A write into ``diagonal`` reaches the input; autograd follows the write (first and
    second order), as in PyTorch."""
    torch = pytest.importorskip("torch")
    base = np.arange(24.0).reshape(2, 3, 4)
    x = pydl.tensor(base, dtype=pydl.float64, device=device)
    d = x.diagonal(1, 1, 2)
    d.mul_(-1.0)
    tx = torch.tensor(base)
    tx.diagonal(1, 1, 2).mul_(-1.0)
    np.testing.assert_array_equal(host(x), tx.numpy())
    np.testing.assert_array_equal(host(d), tx.diagonal(1, 1, 2).numpy())
    m = pydl.tensor(base[0], dtype=pydl.float64, device=device)
    pydl.diag(m).mul_(0.0)  # diag stays a copy, as torch.diag
    np.testing.assert_array_equal(host(m), base[0])
    e = pydl.tensor(base[0, 0], dtype=pydl.float64, device=device).expand(4, 4).diagonal()
    if not getattr(e.data.flags, "writeable", True):  # NumPy: a broadcast stays read-only
        with pytest.raises(RuntimeError, match="in-place write into a read-only tensor"):
            e.mul_(2.0)
    a_np = np.random.default_rng(3).standard_normal((4, 3))
    a = leaf(a_np, device)
    y = a * 1.0
    y.diagonal(-1).mul_(a.diagonal(-1) * 2.0)  # y's sub-diagonal becomes 2 a_ii^2
    (gy,) = pydl.autograd.grad((y ** 3).sum(), [a], create_graph=True)
    (gg,) = pydl.autograd.grad((gy * leaf(a_np, device, False)).sum(), [a])
    ta = torch.tensor(a_np, requires_grad=True)
    ty = ta * 1.0
    ty.diagonal(-1).mul_(ta.diagonal(-1) * 2.0)
    (tgy,) = torch.autograd.grad((ty ** 3).sum(), [ta], create_graph=True)
    (tgg,) = torch.autograd.grad((tgy * torch.tensor(a_np)).sum(), [ta])
    assert_close(host(y), ty.detach().numpy(), rtol=1e-13, atol=1e-13)
    assert_close(host(gy), tgy.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert_close(host(gg), tgg.numpy(), rtol=1e-12, atol=1e-12)
    assert gradgradcheck(lambda t: t.diagonal(1, 0, 1) ** 2, [leaf(a_np, device)])


def test_structure_keeps_integer_dtypes(device):
    i = pydl.tensor([[1, 2], [3, 4]], device=device)
    assert i.triu().tolist() == [[1, 2], [0, 4]] and i.triu().dtype == pydl.int64
    assert i.tril().tolist() == [[1, 0], [3, 4]]
    assert i.roll(1, 0).tolist() == [[3, 4], [1, 2]]
    assert pydl.diag(pydl.tensor([1, 2], device=device)).tolist() == [[1, 0], [0, 2]]
    assert i.diagonal().tolist() == [1, 4]


def test_repeat_interleave_counts_form_and_errors(device):
    torch = pytest.importorskip("torch")
    counts = pydl.tensor([2, 0, 1], device=device)
    assert counts.repeat_interleave().tolist() == \
        torch.repeat_interleave(torch.tensor([2, 0, 1])).tolist()
    x = pydl.ones(3, device=device)
    with pytest.raises(RuntimeError, match="repeats has 2 entries"):
        x.repeat_interleave(pydl.tensor([1, 2]), dim=0)
    with pytest.raises(RuntimeError, match="non-negative"):
        x.repeat_interleave(-1)


def test_unfold_and_roll_errors(device):
    x = pydl.ones(2, 5, device=device)
    with pytest.raises(RuntimeError, match="unfold: size 6"):
        x.unfold(1, 6, 1)
    with pytest.raises(RuntimeError, match="unfold: step"):
        x.unfold(1, 2, 0)
    with pytest.raises(RuntimeError, match="roll: shifts"):
        x.roll((1, 2), 0)
    with pytest.raises(RuntimeError, match="triu: expected a tensor with at least 2 dims"):
        pydl.ones(3, device=device).triu()
    with pytest.raises(RuntimeError, match="diagonal: dim1 and dim2"):
        x.diagonal(0, 1, 1)


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid(indexing, device):
    torch = pytest.importorskip("torch")
    a, b, c = rnd(3), rnd(4, seed=1), rnd(2, seed=2)
    xs = [leaf(v, device) for v in (a, b, c)]
    grids = pydl.meshgrid(*xs, indexing=indexing)
    want = np.meshgrid(a, b, c, indexing=indexing)
    twant = torch.meshgrid(*(torch.tensor(v) for v in (a, b, c)), indexing=indexing)
    for g, w, tw in zip(grids, want, twant):
        assert_close(host(g), w, rtol=0, atol=0)
        assert g.shape == tuple(tw.shape)
    assert gradcheck(lambda p, q, r: sum(g.sum() * (i + 1) for i, g in
                                         enumerate(pydl.meshgrid(p, q, r, indexing=indexing))),
                     xs)
    two = pydl.meshgrid([xs[0], xs[1]], indexing=indexing)
    assert two[0].shape == tuple(torch.meshgrid(torch.tensor(a), torch.tensor(b),
                                                indexing=indexing)[0].shape)


def test_nonzero(device):
    torch = pytest.importorskip("torch")
    a = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, -1.0]])
    x = pydl.tensor(a, device=device)
    nz = x.nonzero()
    assert nz.dtype == pydl.int64 and nz.tolist() == torch.tensor(a).nonzero().tolist()
    rows, cols = pydl.nonzero(x, as_tuple=True)
    assert rows.tolist() == [0, 1, 1] and cols.tolist() == [1, 0, 2]
    for v in (0.0, 3.0):
        assert pydl.tensor(v, device=device).nonzero().shape == \
            tuple(torch.tensor(v).nonzero().shape)
    assert pydl.zeros(2, 3, device=device).nonzero().shape == (0, 2)


# -- non-contiguous inputs and 0-d tensors, across the new families ---------------------------
NONCONTIG = {
    "sort": lambda t: t.sort(dim=0).values,
    "topk": lambda t: t.topk(2, dim=1).values,
    "cumprod": lambda t: t.cumprod(0),
    "logcumsumexp": lambda t: t.logcumsumexp(1),
    "cummax": lambda t: t.cummax(0).values,
    "triu": lambda t: t.triu(),
    "roll": lambda t: t.roll(2, 1),
    "diagonal": lambda t: t.diagonal(1),
    "repeat_interleave": lambda t: t.repeat_interleave(2, dim=0),
    "unfold": lambda t: t.unfold(1, 2, 2),
    "einsum": lambda t: pydl.einsum("ij,kj->ik", t, t),
    "logaddexp": lambda t: pydl.logaddexp(t, t.flip(0)),
    "fmod": lambda t: pydl.fmod(t, 0.7),
    "tan": lambda t: t.tan(),
}


@pytest.mark.parametrize("name", sorted(NONCONTIG))
def test_noncontiguous_input_matches_contiguous(name, device):
    fn = NONCONTIG[name]
    base = np.random.default_rng(9).permutation(30).reshape(6, 5) * 0.13 - 1.5
    x_nc = leaf(base, device).t()  # a transposed view: (5, 6), not contiguous
    assert not x_nc.is_contiguous()
    x_c = leaf(np.ascontiguousarray(base.T), device)
    assert_close(host(fn(x_nc)), host(fn(x_c)), rtol=1e-14, atol=1e-15)
    x = leaf(base, device)
    assert gradcheck(lambda t: fn(t.t()), [x])


def test_zero_dim_inputs(device):
    torch = pytest.importorskip("torch")
    a = pydl.tensor(1.5, dtype=pydl.float64, device=device)
    ta = torch.tensor(1.5, dtype=torch.float64)
    for ours, theirs in ((lambda t: t.cumprod(0), lambda t: t.cumprod(0)),
                         (lambda t: t.logcumsumexp(0), lambda t: t.logcumsumexp(0)),
                         (lambda t: t.cummax(0).values, lambda t: t.cummax(0).values),
                         (lambda t: t.sort().values, lambda t: t.sort().values),
                         (lambda t: t.topk(1).values, lambda t: t.topk(1).values),
                         (lambda t: t.floor(), lambda t: t.floor()),
                         (lambda t: pydl.einsum(",->", t, t), lambda t: torch.einsum(",->", t, t))):
        got, want = ours(a), theirs(ta)
        assert got.shape == tuple(want.shape) and got.item() == want.item()
