"""Reductions (pydl.functions.reduce): forward against float64 NumPy references, gradchecks
over shapes and dims, PyTorch parity, tie conventions, argument spellings and stability."""

import warnings

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck


def leaf(arr, device, requires_grad=True, dtype=pydl.float64):
    return pydl.tensor(arr, dtype=dtype, device=device, requires_grad=requires_grad)


def host(t):
    return np.asarray(t.detach())


def noncontig_leaf(arr, device):
    """A float64 leaf requiring grad whose data is a transposed (Fortran-order) view."""
    base = np.ascontiguousarray(np.asarray(arr, dtype=np.float64).T)
    if device == "cpu":
        t = pydl.from_numpy(base.T)
    else:
        t = pydl.Tensor._make_leaf(pydl.tensor(base, device=device).data.T)
    assert not t.is_contiguous() or t.ndim < 2
    return t.requires_grad_()


def _np_logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _np_norm(p):
    def ref(x, axis, keepdims):
        if p == np.inf:
            return np.max(np.abs(x), axis=axis, keepdims=keepdims)
        return np.sum(np.abs(x) ** p, axis=axis, keepdims=keepdims) ** (1 / p)
    return ref


# name -> (pydl fn(x, dim, keepdim), numpy ref(x, axis, keepdims), torch fn(x, dim, keepdim))
REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(d, k), lambda x, a, k: np.sum(x, axis=a, keepdims=k),
            lambda t, x, d, k: x.sum() if d is None else x.sum(d, k)),
    "mean": (lambda x, d, k: x.mean(d, k), lambda x, a, k: np.mean(x, axis=a, keepdims=k),
             lambda t, x, d, k: x.mean() if d is None else x.mean(d, k)),
    "var": (lambda x, d, k: x.var(d, keepdim=k),
            lambda x, a, k: np.var(x, axis=a, ddof=1, keepdims=k),
            lambda t, x, d, k: x.var(d, keepdim=k)),
    "var_pop": (lambda x, d, k: pydl.var(x, d, keepdim=k, correction=0),
                lambda x, a, k: np.var(x, axis=a, keepdims=k),
                lambda t, x, d, k: t.var(x, d, keepdim=k, correction=0)),
    "std": (lambda x, d, k: x.std(d, keepdim=k),
            lambda x, a, k: np.std(x, axis=a, ddof=1, keepdims=k),
            lambda t, x, d, k: x.std(d, keepdim=k)),
    "logsumexp": (lambda x, d, k: x.logsumexp(d, k), _np_logsumexp,
                  lambda t, x, d, k: t.logsumexp(x, tuple(range(x.ndim)) if d is None else d, k)),
    "norm2": (lambda x, d, k: x.norm(dim=d, keepdim=k), _np_norm(2),
              lambda t, x, d, k: t.linalg.vector_norm(x, 2, d, k)),
    "norm1": (lambda x, d, k: x.norm(1, d, k), _np_norm(1),
              lambda t, x, d, k: t.linalg.vector_norm(x, 1, d, k)),
    "norm3": (lambda x, d, k: pydl.norm(x, 3, d, k), _np_norm(3),
              lambda t, x, d, k: t.linalg.vector_norm(x, 3, d, k)),
    "norm_inf": (lambda x, d, k: x.norm(float("inf"), d, k), _np_norm(np.inf),
                 lambda t, x, d, k: t.linalg.vector_norm(x, float("inf"), d, k)),
    "amax": (lambda x, d, k: x.amax(d, k), lambda x, a, k: np.max(x, axis=a, keepdims=k),
             lambda t, x, d, k: x.amax(() if d is None else d, k)),
    "amin": (lambda x, d, k: pydl.amin(x, d, k), lambda x, a, k: np.min(x, axis=a, keepdims=k),
             lambda t, x, d, k: x.amin(() if d is None else d, k)),
}

DIMS = [None, 0, -1, (0, 2), (2, 0, 1)]


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_forward_and_gradcheck(name, dim, keepdim, device):
    fn, ref, _ = REDUCTIONS[name]
    arr = np.random.default_rng(1).standard_normal((7, 3, 5))
    x = leaf(arr, device)
    axis = dim if not isinstance(dim, tuple) else tuple(dim)
    want = np.asarray(ref(arr, axis, keepdim))
    got = fn(x, dim, keepdim)
    assert got.shape == want.shape
    assert_close(host(got), want, rtol=1e-12, atol=1e-13)
    assert gradcheck(lambda t: fn(t, dim, keepdim), [x])


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")  # NumPy's reference
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("shape", [(), (1,), (5,), (3, 1)], ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_small_shapes(name, shape, device):
    fn, ref, _ = REDUCTIONS[name]
    arr = np.random.default_rng(2).standard_normal(shape) + 0.5
    x = leaf(arr, device)
    got = fn(x, None, False)
    assert got.shape == ()
    want = np.asarray(ref(arr, None, False))
    assert_close(host(got), want, rtol=1e-12, atol=1e-13)
    correction = 1 if name in ("var", "std") else 0  # fewer elements give NaN, as PyTorch
    if arr.size > correction:
        assert gradcheck(lambda t: fn(t, None, False), [x])
    if arr.ndim and arr.shape[-1] > correction:
        assert gradcheck(lambda t: fn(t, -1, True), [x])


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_noncontiguous(name, device):
    fn, ref, _ = REDUCTIONS[name]
    arr = np.random.default_rng(3).standard_normal((4, 6))
    nc, c = noncontig_leaf(arr, device), leaf(arr, device)
    assert_close(host(fn(nc, 1, False)), np.asarray(ref(arr, 1, False)), rtol=1e-12, atol=1e-13)
    fn(nc, 0, False).sum().backward()
    fn(c, 0, False).sum().backward()
    assert_close(host(nc.grad), host(c.grad), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dim", [None, 1, (0, 2)], ids=str)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_torch_parity(name, dim, device):
    torch = pytest.importorskip("torch")
    fn, _, tfn = REDUCTIONS[name]
    arr = np.random.default_rng(4).standard_normal((4, 3, 5))
    x = leaf(arr, device)
    y = fn(x, dim, False)
    tx = torch.tensor(arr, requires_grad=True)
    ty = tfn(torch, tx, dim, False)
    w = np.random.default_rng(5).standard_normal(ty.shape)
    (y * leaf(w, device, False)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    assert_close(host(y), ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-13)


# -- max / min ---------------------------------------------------------------------------------
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_max_min_with_dim(largest, dim, device):
    arr = np.random.default_rng(6).standard_normal((4, 3, 5))
    x = leaf(arr, device)
    fn, npfn, nparg = (pydl.max, np.max, np.argmax) if largest else (pydl.min, np.min, np.argmin)
    res = fn(x, dim)
    values, indices = res  # unpacks like PyTorch's namedtuple
    assert res.values is values and res.indices is indices
    assert indices.dtype == pydl.int64 and not indices.requires_grad
    assert_close(host(values), npfn(arr, axis=dim))
    assert host(indices).tolist() == nparg(arr, axis=dim).tolist()
    kept = fn(x, dim, keepdim=True)
    assert kept.values.shape == np.max(arr, axis=dim, keepdims=True).shape
    assert kept.indices.shape == kept.values.shape
    assert gradcheck(lambda t: fn(t, dim).values, [x])
    method = x.max(dim) if largest else x.min(dim)
    assert_close(host(method.values), npfn(arr, axis=dim))


def test_max_full_reduction_splits_ties_and_dim_routes_to_index(device):
    torch = pytest.importorskip("torch")
    arr = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 0.0]])
    for fn, tfn in [(lambda t: t.max(), lambda t: t.max()),
                    (lambda t: t.min(), lambda t: t.min()),
                    (lambda t: t.max(1).values.sum(), lambda t: t.max(1).values.sum()),
                    (lambda t: t.min(0).values.sum(), lambda t: t.min(0).values.sum()),
                    (lambda t: t.amax(1).sum(), lambda t: t.amax(1).sum()),
                    (lambda t: t.norm(float("inf")), lambda t: t.norm(float("inf")))]:
        x = leaf(arr, device)
        fn(x).backward()
        tx = torch.tensor(arr, requires_grad=True)
        tfn(tx).backward()
        assert_close(host(x.grad), tx.grad.numpy())
    x = leaf(arr, device)
    x.max().backward()
    assert host(x.grad).tolist() == [[0.5, 0, 0.5], [0, 0, 0]]
    x = leaf(arr, device)
    v, i = x.max(1)
    assert host(i).tolist() == [0, 0]  # first of the tied maxima
    v.sum().backward()
    assert host(x.grad).tolist() == [[1, 0, 0], [1, 0, 0]]


def test_max_variants(device):
    x = leaf([[1.0, 5.0], [4.0, 2.0]], device)
    assert x.max().shape == () and host(x.max()) == 5
    other = leaf([[2.0, 2.0], [2.0, 2.0]], device)
    assert host(pydl.max(x, other)).tolist() == [[2, 5], [4, 2]]  # torch.max(a, b)
    assert host(x.min(other)).tolist() == [[1, 2], [2, 2]]
    s = leaf(7.0, device)
    v, i = s.max(0)
    assert host(v) == 7 and host(i) == 0
    with pytest.raises(RuntimeError, match="empty"):
        pydl.zeros(0, device=device).max()
    with pytest.raises(TypeError, match="amax"):
        x.max((0, 1))
    assert host(pydl.tensor([3, 9, 2], device=device).max()) == 9  # integers work


def test_max_nan_propagates(device):
    x = leaf([1.0, np.nan, 3.0], device)
    assert np.isnan(host(x.max()))
    v, i = x.max(0)
    assert np.isnan(host(v)) and host(i) == 1


# -- var / std ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,rtol", [(pydl.float64, 1e-9), (pydl.float32, 1e-3)], ids=str)
def test_var_no_catastrophic_cancellation(dtype, rtol, device):
    rng = np.random.default_rng(7)
    data = (1e4 + 1e-2 * rng.standard_normal(1000)).astype(np.dtype(dtype))
    shifted = data.astype(np.float64) - 1e4  # exact (Sterbenz), so the reference is clean
    want = np.var(shifted, ddof=1)
    got = float(pydl.var(pydl.tensor(data, dtype=dtype, device=device)).item())
    assert abs(got - want) <= rtol * want
    got_std = float(pydl.std(pydl.tensor(data, dtype=dtype, device=device)).item())
    assert abs(got_std - np.sqrt(want)) <= rtol * np.sqrt(want)


def test_var_std_spellings(device):
    arr = np.random.default_rng(8).standard_normal((4, 6))
    x = leaf(arr, device, requires_grad=False)
    assert_close(host(x.var()), np.var(arr, ddof=1))
    assert_close(host(x.var(unbiased=False)), np.var(arr))
    assert_close(host(x.var(False)), np.var(arr))  # legacy positional unbiased
    assert_close(host(x.var(1, correction=0)), np.var(arr, axis=1))
    assert_close(host(x.var(axis=0, ddof=2)), np.var(arr, axis=0, ddof=2))
    assert_close(host(x.std(dim=1, keepdim=True)), np.std(arr, axis=1, ddof=1, keepdims=True))
    assert_close(host(x.std(axis=(0, 1), keepdims=True)), np.std(arr, ddof=1, keepdims=True))
    with pytest.raises(TypeError, match="unbiased or correction"):
        x.var(unbiased=True, correction=1)


def test_var_degenerate_counts(device):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = leaf([2.0], device)
        assert np.isnan(host(one.var()))  # 0/0, as in PyTorch
        assert np.isinf(host(leaf([1.0, 2.0], device).var(correction=3)))


def test_std_of_constant_has_zero_gradient(device):
    x = leaf([2.0, 2.0, 2.0], device)
    s = x.std()
    assert host(s) == 0
    s.backward()
    assert host(x.grad).tolist() == [0.0, 0.0, 0.0]


def test_var_std_integer_refused(device):
    with pytest.raises(RuntimeError, match="floating point"):
        pydl.tensor([1, 2, 3], device=device).var()


# -- logsumexp ---------------------------------------------------------------------------------
def test_logsumexp_stability(device):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = leaf([[-np.inf, -np.inf, -np.inf], [1000.0, 1000.0, -np.inf]], device)
        out = x.logsumexp(1)
        assert host(out)[0] == -np.inf
        assert_close(host(out)[1], 1000.0 + np.log(2.0))
        out.sum().backward()
        g = host(x.grad)
        assert not np.isnan(g).any()
        assert_close(g, np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.0]]), rtol=1e-12, atol=0)
        big = leaf([-1000.0, -1001.0], device)
        assert_close(host(big.logsumexp(0)), np.array(-1000 + np.log1p(np.exp(-1.0))))
    assert host(leaf([np.inf, 1.0], device).logsumexp(0)) == np.inf


def test_logsumexp_of_integers_is_float(device):
    out = pydl.logsumexp(pydl.tensor([0, 0], device=device), 0)
    assert out.dtype == pydl.float32
    assert_close(host(out), np.array(np.log(2.0), dtype=np.float32))


# -- sum / mean: dtypes, spellings, errors -----------------------------------------------------
def test_sum_mean_dtypes(device):
    i = pydl.tensor([[1, 2], [3, 4]], dtype=pydl.int32, device=device)
    assert i.sum().dtype == pydl.int64 and i.sum().item() == 10
    assert pydl.tensor([True, True, False], device=device).sum().item() == 2
    assert i.sum(dtype=pydl.float64).dtype == pydl.float64
    with pytest.raises(RuntimeError, match="mean.*floating point.*pydl.int32"):
        i.mean()
    assert i.mean(dtype=pydl.float32).item() == 2.5
    f = pydl.tensor([1.0, 2.0], device=device)
    assert f.sum().dtype == pydl.float32 and f.mean().dtype == pydl.float32


def test_dim_spellings_agree(device):
    arr = np.random.default_rng(9).standard_normal((3, 4, 5))
    x = leaf(arr, device, requires_grad=False)
    want = np.sum(arr, axis=(0, 2), keepdims=True)
    for got in (x.sum((0, 2), True), x.sum(dim=(0, 2), keepdim=True), x.sum(axis=(0, 2),
                keepdims=True), x.sum(dim=[2, 0], keepdims=True), pydl.sum(x, (-1, -3), True)):
        assert_close(host(got), want)
    assert_close(host(x.sum(dim=())), np.sum(arr))  # empty dim list: everything, as PyTorch
    with pytest.raises(TypeError, match="dim or axis"):
        x.sum(dim=0, axis=0)
    with pytest.raises(IndexError, match="out of range"):
        x.sum(3)
    with pytest.raises(ValueError, match="more than once"):
        x.sum((0, -3))
    s = leaf(2.0, device)
    assert host(s.sum(0)) == 2 and host(s.mean(-1)) == 2  # 0-d tensors accept dim 0 / -1


def test_empty_reductions(device):
    e = pydl.zeros(0, 3, device=device)
    assert e.sum().item() == 0
    assert host(e.sum(0)).tolist() == [0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(e.mean().item())
    assert e.amax(1).shape == (0,)
    with pytest.raises(RuntimeError, match="size 0"):
        e.amax(0)


# -- prod, cumsum, norm, argmax, all/any -------------------------------------------------------
@pytest.mark.parametrize("dim", [None, 0, 1, -1])
def test_prod(dim, device):
    arr = np.random.default_rng(10).uniform(0.5, 1.5, (4, 3)) * np.where(
        np.random.default_rng(11).random((4, 3)) < 0.5, -1, 1)
    x = leaf(arr, device)
    fn = (lambda t: t.prod()) if dim is None else (lambda t: t.prod(dim))
    assert_close(host(fn(x)), np.prod(arr, axis=dim))
    assert gradcheck(fn, [x])


def test_prod_gradient_with_zeros_matches_torch(device):
    torch = pytest.importorskip("torch")
    arr = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0]])
    for fn in (lambda t: t.prod(), lambda t: t.prod(1).sum(), lambda t: t.prod(0, True).sum()):
        x = leaf(arr, device)
        fn(x).backward()
        tx = torch.tensor(arr, requires_grad=True)
        fn(tx).backward()
        assert_close(host(x.grad), tx.grad.numpy())
    assert pydl.tensor([2, 3], dtype=pydl.int32, device=device).prod().dtype == pydl.int64


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum(dim, device):
    arr = np.random.default_rng(12).standard_normal((4, 5, 3))
    x = leaf(arr, device)
    assert_close(host(x.cumsum(dim)), np.cumsum(arr, axis=dim))
    assert gradcheck(lambda t: pydl.cumsum(t, dim), [x])
    assert pydl.tensor([1, 2], dtype=pydl.int32, device=device).cumsum(0).dtype == pydl.int64
    with pytest.raises(TypeError, match="dim"):
        x.cumsum()


def test_norm_details(device):
    z = leaf([0.0, 0.0, 0.0], device)
    z.norm().backward()
    assert host(z.grad).tolist() == [0.0, 0.0, 0.0]  # as PyTorch: no NaN at the origin
    x = leaf([3.0, -4.0, 0.0], device)
    assert host(x.norm()) == 5 and host(x.norm("fro")) == 5
    assert host(x.norm(0)) == 2 and host(x.norm(1)) == 7
    assert host(x.norm(float("-inf"))) == 0
    with pytest.raises(RuntimeError, match="floating point"):
        pydl.tensor([1, 2], device=device).norm()


def test_argmax_argmin(device):
    arr = np.random.default_rng(13).standard_normal((4, 3, 5))
    x = leaf(arr, device)
    assert x.argmax().item() == np.argmax(arr) and x.argmax().dtype == pydl.int64
    assert host(x.argmin(1)).tolist() == np.argmin(arr, axis=1).tolist()
    assert host(pydl.argmax(x, dim=-1, keepdim=True)).tolist() == np.argmax(
        arr, axis=-1, keepdims=True).tolist()
    assert host(x.argmax(axis=0)).tolist() == np.argmax(arr, axis=0).tolist()
    assert not x.argmax().requires_grad


def test_all_any(device):
    b = pydl.tensor([[True, False, True], [True, True, True]], device=device)
    assert b.all().item() is False and b.any().item() is True
    assert host(b.all(1)).tolist() == [False, True]
    assert host(b.any(dim=0, keepdim=True)).tolist() == [[True, True, True]]
    f = pydl.tensor([0.0, 2.0], device=device)
    assert not pydl.all(f).item() and pydl.any(f).item()
    assert b.all().dtype == pydl.bool


def test_reductions_are_methods():
    x = pydl.tensor([1.0, 2.0])
    for name in ("sum", "mean", "max", "min", "var", "std", "logsumexp", "argmax", "argmin",
                 "prod", "all", "any", "cumsum", "norm", "amax", "amin"):
        assert callable(getattr(x, name)), name
