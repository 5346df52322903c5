"""sort argsort topk cumprod cummax cummin logcumsumexp (pydl/functions/sorting.py): float64
NumPy references, gradchecks over shapes and dims, stability and NaN order, torch parity."""

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck

SHAPE_DIMS = [((7,), 0), ((1,), -1), ((4, 5, 3), 1), ((4, 5, 3), -1), ((3, 6), 0)]


def leaf(arr, device, requires_grad=True):
    return pydl.tensor(np.asarray(arr, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=requires_grad)


def host(t):
    return np.asarray(t.detach())


def _distinct(shape, seed=0):  # no ties: the sorted order (and so the gradient) is unique
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.37 - 1.0


def _ties(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.float64)


def _np_sort(a, axis, descending):
    idx = np.argsort(-a if descending else a, axis=axis, kind="stable")
    return np.take_along_axis(a, idx, axis), idx


@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("shape,dim", SHAPE_DIMS, ids=str)
def test_sort_forward_and_gradcheck(shape, dim, descending, device):
    a = _distinct(shape)
    x = leaf(a, device)
    values, indices = pydl.sort(x, dim=dim, descending=descending)
    want_v, want_i = _np_sort(a, dim, descending)
    assert_close(host(values), want_v, rtol=0, atol=0)
    assert indices.dtype == pydl.int64 and host(indices).tolist() == want_i.tolist()
    assert host(x.argsort(dim=dim, descending=descending)).tolist() == want_i.tolist()
    assert gradcheck(lambda t: t.sort(dim=dim, descending=descending).values, [x])


@pytest.mark.parametrize("descending", [False, True])
def test_sort_is_stable_and_matches_torch(descending, device):
    torch = pytest.importorskip("torch")
    a = _ties((5, 9), seed=1)
    x = leaf(a, device)
    v, i = x.sort(dim=1, descending=descending)
    tx = torch.tensor(a, requires_grad=True)
    tv, ti = torch.sort(tx, dim=1, descending=descending, stable=True)
    assert host(i).tolist() == ti.tolist() and host(v).tolist() == tv.tolist()
    w = np.random.default_rng(2).standard_normal(a.shape)
    (v * leaf(w, device, False)).sum().backward()
    (tv * torch.tensor(w)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=0, atol=1e-15)
    ta = torch.argsort(torch.tensor(a), dim=0, descending=descending, stable=True)
    assert host(pydl.argsort(x, dim=0, descending=descending)).tolist() == ta.tolist()


def test_sort_nan_is_largest_as_torch(device):
    torch = pytest.importorskip("torch")
    a = np.array([2.0, np.nan, -1.0, np.nan, 0.5])
    for descending in (False, True):
        v, i = pydl.tensor(a, device=device).sort(descending=descending)
        tv, ti = torch.tensor(a).sort(descending=descending, stable=True)
        np.testing.assert_array_equal(host(v), tv.numpy())
        assert host(i).tolist() == ti.tolist()


def test_sort_integers_and_0d(device):
    x = pydl.tensor([3, -1, 2, -1], device=device)
    v, i = x.sort()
    assert v.dtype == pydl.int64 and v.tolist() == [-1, -1, 2, 3] and i.tolist() == [1, 3, 2, 0]
    v0, i0 = pydl.tensor(2.0, device=device).sort()
    assert v0.shape == () and i0.tolist() == 0
    assert pydl.msort(pydl.tensor([[2, 1], [0, 5]], device=device)).tolist() == [[0, 1], [2, 5]]


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("shape,dim", SHAPE_DIMS, ids=str)
def test_topk_forward_gradcheck_and_torch(shape, dim, largest, device):
    torch = pytest.importorskip("torch")
    a = _distinct(shape, seed=3)
    k = min(3, a.shape[dim])
    x = leaf(a, device)
    v, i = x.topk(k, dim=dim, largest=largest)
    tv, ti = torch.tensor(a).topk(k, dim=dim, largest=largest)
    assert host(v).tolist() == tv.tolist() and host(i).tolist() == ti.tolist()
    assert gradcheck(lambda t: pydl.topk(t, k, dim=dim, largest=largest).values, [x])
    with pytest.raises(RuntimeError, match="topk: k"):
        x.topk(a.shape[dim] + 1, dim=dim)


def test_topk_ties_keep_original_order(device):
    v, i = pydl.tensor([1.0, 3.0, 3.0, 2.0, 3.0], device=device).topk(2)
    assert v.tolist() == [3.0, 3.0] and i.tolist() == [1, 2]


def _stable_topk_ref(a, k, axis, largest):
    """Indices of a full stable sort (NaN largest), cut at k: what topk must equal."""
    key = np.where(np.isnan(a), np.inf, a) if a.dtype.kind == "f" else a
    rank = np.isnan(a).astype(np.int8) if a.dtype.kind == "f" else np.zeros(a.shape, np.int8)
    # lexsort: last key is primary; NaN above +inf, then the value, then the index (stable)
    moved_key, moved_rank = np.moveaxis(key, axis, -1), np.moveaxis(rank, axis, -1)
    pos = np.broadcast_to(np.arange(moved_key.shape[-1]), moved_key.shape)
    sign = -1 if largest else 1
    idx = np.lexsort((pos, sign * moved_key, sign * moved_rank), axis=-1)[..., :k]
    return np.moveaxis(idx, -1, axis)


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("kind", ["float-ties", "float-nan", "int"])
def test_topk_partition_matches_a_stable_full_sort(kind, largest, device):
    """topk partitions instead of sorting the row; among equal values at the cut it must keep
    the first ones, and order its k as a stable sort would (NaN largest), for every k."""
    rng = np.random.default_rng(8)
    if kind == "int":
        a = rng.integers(-3, 3, (5, 23)).astype(np.int64)
    else:
        a = rng.integers(0, 4, (5, 23)).astype(np.float64)
        if kind == "float-nan":
            a[rng.random(a.shape) < 0.2] = np.nan
            a[0, -3:] = [np.inf, -np.inf, np.nan]
    x = pydl.tensor(a, device=device)
    for dim in (1, 0):
        for k in range(a.shape[dim] + 1):
            v, i = x.topk(k, dim=dim, largest=largest)
            ref = _stable_topk_ref(a, k, dim, largest)
            np.testing.assert_array_equal(host(i), ref, err_msg=f"dim={dim} k={k}")
            np.testing.assert_array_equal(host(v), np.take_along_axis(a, ref, axis=dim))
    if kind != "int":  # torch's ties come in no promised order: compare the values only
        torch = pytest.importorskip("torch")
        tv, _ = torch.tensor(a).topk(7, dim=1, largest=largest)
        np.testing.assert_array_equal(host(x.topk(7, dim=1, largest=largest).values), tv.numpy())


# -- running reductions ---------------------------------------------------------------------
SCAN_SHAPE_DIMS = [((1,), 0), ((9,), 0), ((3, 17), 1), ((6, 2, 5), 0), ((2, 3, 4), -1)]


@pytest.mark.parametrize("shape,dim", SCAN_SHAPE_DIMS, ids=str)
def test_cumprod_forward_gradcheck(shape, dim, device):
    rng = np.random.default_rng(4)
    a = rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
    x = leaf(a, device)
    assert_close(host(x.cumprod(dim)), np.cumprod(a, axis=dim), rtol=1e-13, atol=1e-15)
    assert gradcheck(lambda t: pydl.cumprod(t, dim), [x])


def test_cumprod_with_zeros_matches_torch(device):
    torch = pytest.importorskip("torch")
    a = np.array([[2.0, 0.0, 3.0, 0.0, 4.0], [1.5, -2.0, 0.0, 0.5, 1.0]])
    x = leaf(a, device)
    w = np.random.default_rng(5).standard_normal(a.shape)
    (x.cumprod(1) * leaf(w, device, False)).sum().backward()
    tx = torch.tensor(a, requires_grad=True)
    (tx.cumprod(1) * torch.tensor(w)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-13, atol=1e-15)
    assert gradcheck(lambda t: t.cumprod(1), [leaf(a, device)])
    i = pydl.tensor([1, 2, 3], dtype=pydl.int32, device=device).cumprod(0)
    assert i.dtype == pydl.int64 and i.tolist() == [1, 2, 6]


def test_cumprod_one_pass_and_scan_paths_agree(device):
    """Without a zero (or without autograd) cumprod is xp.cumprod with a ``/ x`` backward;
    with a zero and a gradient it is the scan. Both match NumPy and torch, first and second
    order (the one-pass backward records itself again under create_graph)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    a = rng.uniform(0.5, 1.5, (3, 11)) * rng.choice([-1, 1], (3, 11))
    with pydl.no_grad():
        y = leaf(a, device).cumprod(1)
    assert not y.requires_grad
    assert_close(host(y), np.cumprod(a, axis=1), rtol=1e-13, atol=1e-15)
    big = pydl.tensor(np.arange(1, 21), device=device).cumprod(0)  # int64, exact
    assert big.tolist() == np.cumprod(np.arange(1, 21, dtype=np.int64)).tolist()
    for arr in (a, np.where(rng.random(a.shape) < 0.2, 0.0, a)):
        x = leaf(arr, device)
        (gx,) = pydl.autograd.grad((x.cumprod(1) ** 2).sum(), [x], create_graph=True)
        (ggx,) = pydl.autograd.grad((gx * leaf(a, device, False)).sum(), [x])
        tx = torch.tensor(arr, requires_grad=True)
        (tgx,) = torch.autograd.grad((tx.cumprod(1) ** 2).sum(), [tx], create_graph=True)
        (tggx,) = torch.autograd.grad((tgx * torch.tensor(a)).sum(), [tx])
        assert_close(host(gx), tgx.detach().numpy(), rtol=1e-12, atol=1e-13)
        assert_close(host(ggx), tggx.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,dim", SCAN_SHAPE_DIMS, ids=str)
def test_logcumsumexp_forward_gradcheck(shape, dim, device):
    a = np.random.default_rng(6).normal(0, 4, shape)
    x = leaf(a, device)
    assert_close(host(x.logcumsumexp(dim)), np.logaddexp.accumulate(a, axis=dim),
                 rtol=1e-13, atol=1e-13)
    assert gradcheck(lambda t: pydl.logcumsumexp(t, dim), [x])


def test_logcumsumexp_large_values_and_torch(device):
    torch = pytest.importorskip("torch")
    a = np.array([1000.0, -1000.0, 999.0, 0.0, 1001.0])
    x = leaf(a, device)
    y = x.logcumsumexp(0)
    ty = torch.tensor(a, requires_grad=True)
    tz = ty.logcumsumexp(0)
    assert_close(host(y), tz.detach().numpy(), rtol=1e-14)
    y.sum().backward()
    tz.sum().backward()
    assert_close(host(x.grad), ty.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op", ["cummax", "cummin"])
@pytest.mark.parametrize("shape,dim", SCAN_SHAPE_DIMS, ids=str)
def test_cummax_cummin_forward_gradcheck(op, shape, dim, device):
    a = _distinct(shape, seed=7)
    x = leaf(a, device)
    v, i = getattr(x, op)(dim)
    acc = np.maximum if op == "cummax" else np.minimum
    assert_close(host(v), acc.accumulate(a, axis=dim), rtol=0, atol=0)
    assert i.dtype == pydl.int64
    np.testing.assert_array_equal(np.take_along_axis(a, host(i), dim), host(v))
    assert gradcheck(lambda t: getattr(pydl, op)(t, dim).values, [x])


@pytest.mark.parametrize("op", ["cummax", "cummin"])
def test_cummax_cummin_ties_and_nan_match_torch(op, device):
    torch = pytest.importorskip("torch")
    for a in (_ties((4, 11), seed=8), np.array([[1.0, np.nan, 3.0, np.nan, 0.0, 5.0]])):
        x = leaf(a, device)
        v, i = getattr(x, op)(1)
        tx = torch.tensor(a, requires_grad=True)
        tv, ti = getattr(torch, op)(tx, 1)
        np.testing.assert_array_equal(host(v), tv.detach().numpy())
        assert host(i).tolist() == ti.tolist()
        v.sum().backward()
        tv.sum().backward()
        np.testing.assert_array_equal(host(x.grad), tx.grad.numpy())
    ints = pydl.tensor([2, 1, 3, 3, 0], device=device)
    assert getattr(ints, op)(0).values.tolist() == \
        getattr(torch, op)(torch.tensor([2, 1, 3, 3, 0]), 0).values.tolist()


def test_scan_dim_errors(device):
    x = pydl.ones(3, 4, device=device)
    with pytest.raises(IndexError, match="cumprod: dimension 2"):
        x.cumprod(2)
    with pytest.raises(IndexError, match="sort: dimension -3"):
        x.sort(dim=-3)
