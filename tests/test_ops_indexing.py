"""Indexing: x[key], x[key] = v, gather/scatter, index_select, masked_fill, one_hot."""

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def T(a, device, grad=False):
    return pydl.tensor(np.asarray(a, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=grad)


def I(a, device):  # noqa: E743 - integer index tensor
    return pydl.tensor(np.asarray(a, dtype=np.int64), device=device)


def host(t):
    return np.asarray(t.detach())


# keys given as a function of the device (so index tensors live on it)
KEYS = [
    ("int", lambda d: 1),
    ("neg-int", lambda d: -1),
    ("int-int", lambda d: (1, 2)),
    ("full-int", lambda d: (2, 0, 4)),
    ("slice", lambda d: slice(1, 3)),
    ("slice-step", lambda d: (slice(None), slice(None, None, 2))),
    ("slice-neg-step", lambda d: (slice(None, None, -1), slice(3, 0, -2))),
    ("slice-neg-bounds", lambda d: (slice(-2, None), slice(-4, -1))),
    ("ellipsis", lambda d: (Ellipsis, 1)),
    ("none", lambda d: (None, 1, None)),
    ("ellipsis-none", lambda d: (0, ..., None)),
    ("list", lambda d: [0, 2, 2, 0]),
    ("list-2d", lambda d: ([0, 1], [2, 2])),
    ("int-tensor", lambda d: I([[0, 2], [1, 1]], d)),
    ("int-tensor-neg", lambda d: I([-1, 0, -3], d)),
    ("adv-slice-adv", lambda d: (I([0, 2, 0], d), slice(None), I([1, 4, 1], d))),
    ("adv-with-slice", lambda d: (slice(1, None), I([3, 3, 0], d))),
    ("bool-mask-row", lambda d: pydl.tensor([True, False, True], device=d)),
    ("bool-mask-full", lambda d: pydl.tensor(rnd(3, 4, 5) > 0, device=d)),
    ("bool-mask-2d", lambda d: (pydl.tensor(rnd(3, 4) > 0, device=d), 1)),
    ("bool-list", lambda d: (slice(None), [True, False, True, True])),
    ("mask-and-int", lambda d: (1, pydl.tensor([True, True, False, True], device=d))),
    ("0d-int-tensor", lambda d: I(2, d)),
    ("empty-list", lambda d: []),
    ("numpy-array", lambda d: np.array([2, 0])),
]


def _np_key(key):
    if isinstance(key, tuple):
        return tuple(_np_key(k) for k in key)
    if isinstance(key, pydl.Tensor):
        return host(key)
    return key


@pytest.mark.parametrize("name,make_key", KEYS, ids=[k[0] for k in KEYS])
def test_getitem_forward_and_grad(device, name, make_key):
    a = rnd(3, 4, 5)
    key = make_key(device)
    x = T(a, device)
    want = a[_np_key(key)]
    got = x[key]
    assert_close(got, np.asarray(want))
    gradcheck(lambda t: t[key], [T(a, device, True)])


@pytest.mark.parametrize("name,make_key", KEYS, ids=[k[0] for k in KEYS])
def test_getitem_torch_parity(device, name, make_key):
    torch = pytest.importorskip("torch")
    a = rnd(3, 4, 5)
    key = make_key(device)
    if name in ("empty-list",):
        pytest.skip("torch reads an empty list index as float")
    tkey = _torch_key(torch, key)
    x = T(a, device, True)
    tx = torch.tensor(a, requires_grad=True)
    out, tout = x[key], tx[tkey]
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(host(out), tout.detach().numpy(), rtol=0, atol=0)
    g = np.random.default_rng(1).standard_normal(tout.shape)
    out.backward(T(g, device))
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), rtol=0, atol=1e-12)


def _torch_key(torch, key):
    if isinstance(key, tuple):
        return tuple(_torch_key(torch, k) for k in key)
    if isinstance(key, pydl.Tensor):
        return torch.from_numpy(host(key))
    if isinstance(key, np.ndarray):
        return torch.from_numpy(key)
    if isinstance(key, slice) and key.step is not None and key.step < 0:
        pytest.skip("torch has no negative slice steps")
    return key


def test_repeated_indices_accumulate(device):
    x = T(np.arange(5.0), device, True)
    y = x[[0, 2, 2, 2, 4, 0]]
    y.backward(T(np.ones(6), device))
    np.testing.assert_array_equal(host(x.grad), [2.0, 0.0, 3.0, 0.0, 1.0])
    x2 = T(rnd(4, 3), device, True)
    idx = I([[1, 1], [3, 1]], device)
    out = x2[idx, 2]
    out.backward(T(np.full((2, 2), 2.0), device))
    want = np.zeros((4, 3))
    want[1, 2] = 6.0
    want[3, 2] = 2.0
    np.testing.assert_array_equal(host(x2.grad), want)


def test_boolean_mask_forward_backward(device):
    a = rnd(4, 5)
    x = T(a, device, True)
    m = x > 0.2
    y = x[m]
    assert y.shape == ((a > 0.2).sum(),)
    assert_close(y, a[a > 0.2])
    (y * y).backward(pydl.ones_like(y))
    np.testing.assert_allclose(host(x.grad), np.where(a > 0.2, 2 * a, 0.0))


def test_getitem_basic_is_view_advanced_is_copy(device):
    x = T(rnd(3, 4), device)
    v = x[1]
    with pydl.no_grad():
        x.mul_(2.0)
    assert_close(v, host(x)[1])
    c = x[[1]]
    before = host(c).copy()
    with pydl.no_grad():
        x.mul_(2.0)
    np.testing.assert_array_equal(host(c), before)
    s = x[1, 2]  # a 0-d view, as in PyTorch
    assert s.shape == ()
    with pydl.no_grad():
        x.add_(1.0)
    assert float(s) == float(host(x)[1, 2])


def test_index_errors(device):
    x = T(rnd(3, 4), device)
    with pytest.raises(IndexError, match="index 3 is out of range for dimension 0 with size 3"):
        x[3]
    with pytest.raises(IndexError, match="index -5 is out of range for dimension 1 with size 4"):
        x[:, -5]
    with pytest.raises(IndexError, match="index 7 is out of range for dimension 1 with size 4"):
        x[:, I([0, 7, 1], device)]
    with pytest.raises(IndexError, match="index -4 is out of range for dimension 0 with size 3"):
        x[[0, -4]]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match=r"shape of the mask \(2,\)"):
        x[pydl.tensor([True, False], device=device)]
    with pytest.raises(IndexError, match="must be long, int or bool"):
        x[T([0.0, 1.0], device)]
    with pytest.raises(IndexError, match="single ellipsis"):
        x[..., ...]
    with pytest.raises(IndexError, match=r"mask \(5,\).*\(3, 4\)"):
        x[T(rnd(5), device) > 0]  # wrong-size mask


# -- setitem / index_put ---------------------------------------------------------------------
def test_setitem_with_grad(device):
    x = T(rnd(3, 4), device, True)
    v = T(rnd(4, seed=1), device, True)
    y = x * 1.0
    y[0] = v
    w = rnd(3, 4, seed=2)
    (y * T(w, device)).backward(pydl.ones_like(y))
    gx = w.copy()
    gx[0] = 0
    np.testing.assert_allclose(host(x.grad), gx)
    np.testing.assert_allclose(host(v.grad), w[0])
    assert_close(y, np.concatenate([host(v)[None], host(x)[1:]]))


def test_setitem_broadcast_value_grad(device):
    x = T(rnd(4, 5), device, True)
    v = T(rnd(1, 5, seed=1), device, True)  # broadcast over the selected rows
    y = x * 1.0
    y[1:3] = v
    w = rnd(4, 5, seed=3)
    y.backward(T(w, device))
    np.testing.assert_allclose(host(v.grad), w[1:3].sum(0, keepdims=True))
    gx = w.copy()
    gx[1:3] = 0
    np.testing.assert_allclose(host(x.grad), gx)
    # leading size-1 dims of the value are dropped, as in NumPy and PyTorch
    v2 = T(rnd(1, 1, 5, seed=4), device, True)
    y2 = x * 1.0
    y2[2] = v2
    y2.backward(T(w, device))
    np.testing.assert_allclose(host(v2.grad), w[2][None, None])


def test_setitem_scalar_mask_and_adv(device):
    a = rnd(3, 4)
    x = T(a, device)
    x[x > 0] = 0.0
    np.testing.assert_array_equal(host(x), np.where(a > 0, 0.0, a))
    x[[0, 2], [1, 3]] = T([5.0, 6.0], device)
    assert host(x)[0, 1] == 5.0 and host(x)[2, 3] == 6.0
    x[..., 0] = 7
    assert (host(x)[:, 0] == 7).all()
    y = pydl.zeros(3, dtype=pydl.int64, device=device)
    y[1] = 4
    np.testing.assert_array_equal(host(y), [0, 4, 0])


def test_setitem_errors(device):
    x = T(rnd(3, 4), device)
    with pytest.raises(RuntimeError, match=r"value of shape \(3,\) cannot be broadcast.*\(4,\)"):
        x[0] = T(rnd(3), device)
    with pytest.raises(IndexError, match="out of range"):
        x[5] = 1.0
    leaf = T(rnd(3), device, True)
    with pytest.raises(RuntimeError, match="leaf"):
        leaf[0] = 1.0


def test_setitem_before_backward_of_saver_raises(device):
    x = T(rnd(3), device, True)
    y = x * 1.0
    z = y * y
    y[0] = 2.0
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward(pydl.ones_like(z))


def test_index_put_functional(device):
    a = rnd(5, 3)
    x = T(a, device, True)
    v = T(rnd(2, 3, seed=1), device, True)
    key = I([1, 3], device)
    gradcheck(lambda t, u: pydl.index_put(t, key, u), [T(a, device, True), v])
    gradcheck(lambda t, u: pydl.index_put(t, (key,), u, accumulate=True),
              [T(a, device, True), T(rnd(2, 3, seed=1), device, True)])
    out = pydl.index_put(x, I([1, 1, 4], device), T(np.ones(3), device), accumulate=True)
    want = a.copy()
    want[1] += 2
    want[4] += 1
    assert_close(out, want)


def test_index_put_torch_parity(device):
    torch = pytest.importorskip("torch")
    a, v = rnd(5, 3), rnd(3, seed=1)
    x, tv = T(a, device, True), T(v, device, True)
    tx, ttv = torch.tensor(a, requires_grad=True), torch.tensor(v, requires_grad=True)
    y = x * 1.0
    y[I([0, 2], device)] = tv
    ty = tx * 1.0
    ty[torch.tensor([0, 2])] = ttv
    g = rnd(5, 3, seed=2)
    y.backward(T(g, device))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(host(y), ty.detach().numpy())
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy())
    np.testing.assert_allclose(host(tv.grad), ttv.grad.numpy())


# -- gather / scatter / index_select ---------------------------------------------------------
def test_gather(device):
    a = rnd(3, 4, 5)
    idx = np.random.default_rng(1).integers(0, 4, size=(2, 6, 3))
    x = T(a, device)
    out = x.gather(1, I(idx, device))
    want = np.take_along_axis(a[:2, :, :3], idx, axis=1)
    assert_close(out, want)
    gradcheck(lambda t: pydl.gather(t, 1, I(idx, device)), [T(a, device, True)])
    gradcheck(lambda t: t.gather(-1, I([[4, 4, 0], [1, 1, 1], [0, 2, 4]], device)),
              [T(rnd(3, 5), device, True)])
    with pytest.raises(IndexError, match="index 5 is out of range for dimension 1 with size 5"):
        T(rnd(3, 5), device).gather(1, I([[5]], device))
    with pytest.raises(RuntimeError, match="same number of dimensions"):
        x.gather(0, I([0], device))


def test_gather_scatter_index_select_torch_parity(device):
    torch = pytest.importorskip("torch")
    a = rnd(4, 5)
    idx = np.array([[0, 1, 1], [3, 0, 2], [3, 3, 3]])
    src = rnd(2, 3, seed=1)
    cases = [
        (lambda x: x.gather(0, I(idx, device)), lambda x: x.gather(0, torch.tensor(idx))),
        (lambda x: x.index_select(1, I([4, 0, 4], device)),
         lambda x: x.index_select(1, torch.tensor([4, 0, 4]))),
        (lambda x: x.index_select(0, I(2, device)),
         lambda x: x.index_select(0, torch.tensor(2))),
        (lambda x: pydl.take_along_dim(x, I([[0], [4], [1], [1]], device), 1),
         lambda x: torch.take_along_dim(x, torch.tensor([[0], [4], [1], [1]]), 1)),
        (lambda x: pydl.take_along_dim(x, I([[0], [3]], device), 0),
         lambda x: torch.take_along_dim(x, torch.tensor([[0], [3]]), 0)),
        (lambda x: pydl.take_along_dim(x, I([3, 19, 0], device)),
         lambda x: torch.take_along_dim(x, torch.tensor([3, 19, 0]))),
        (lambda x: x.masked_fill(pydl.tensor(a > 0, device=device), -1.5),
         lambda x: x.masked_fill(torch.tensor(a > 0), -1.5)),
        (lambda x: x.masked_fill(pydl.tensor(a[0] > 0, device=device), 2.0),
         lambda x: x.masked_fill(torch.tensor(a[0] > 0), 2.0)),
        (lambda x: x.masked_select(pydl.tensor(a[:, :1] > 0, device=device)),
         lambda x: x.masked_select(torch.tensor(a[:, :1] > 0))),
    ]
    for pfn, tfn in cases:
        x = T(a, device, True)
        tx = torch.tensor(a, requires_grad=True)
        out, tout = pfn(x), tfn(tx)
        np.testing.assert_allclose(host(out), tout.detach().numpy())
        g = rnd(*tout.shape, seed=5)
        out.backward(T(g, device))
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), atol=1e-12)
    # scatter / scatter_add: gradients to both the input and src
    for name in ("scatter", "scatter_add"):
        x, s = T(a, device, True), T(src, device, True)
        tx, ts = torch.tensor(a, requires_grad=True), torch.tensor(src, requires_grad=True)
        sidx = np.array([[0, 1, 2], [1, 2, 3]])  # unique per column for scatter
        out = getattr(pydl, name)(x, 0, I(sidx, device), s)
        tout = getattr(torch, name)(tx, 0, torch.tensor(sidx), ts)
        np.testing.assert_allclose(host(out), tout.detach().numpy())
        g = rnd(4, 5, seed=6)
        out.backward(T(g, device))
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(host(x.grad), tx.grad.numpy())
        np.testing.assert_allclose(host(s.grad), ts.grad.numpy())
    # src larger than index (torch's own backward refuses this; checked numerically here)
    sidx = I([[0, 1, 2], [1, 2, 3]], device)
    for fn in (pydl.scatter, pydl.scatter_add):
        gradcheck(lambda t, u, fn=fn: fn(t, 0, sidx, u),
                  [T(a, device, True), T(rnd(3, 4, seed=1), device, True)])
    out = pydl.scatter_add(T(a, device), 1, I([[0, 0, 0]] * 4, device), T(np.ones((4, 3)),
                                                                           device))
    np.testing.assert_allclose(host(out)[:, 0], a[:, 0] + 3)


def test_index_select(device):
    a = rnd(3, 7, 5)
    x = T(a, device)
    idx = [6, 0, 0, 3]
    assert_close(x.index_select(1, I(idx, device)), a[:, idx])
    gradcheck(lambda t: t.index_select(1, I(idx, device)), [T(a, device, True)])
    gradcheck(lambda t: t.index_select(-1, I([4], device)), [T(a, device, True)])
    with pytest.raises(IndexError, match="index 7 is out of range for dimension 1 with size 7"):
        x.index_select(1, I([7], device))


def test_masked_fill(device):
    a = rnd(3, 4)
    mask = pydl.tensor(a > 0, device=device)
    x = T(a, device)
    assert_close(x.masked_fill(mask, 0.5), np.where(a > 0, 0.5, a))
    gradcheck(lambda t: t.masked_fill(mask, 3.0), [T(a, device, True)])
    # a 0-d tensor value gets a gradient too
    gradcheck(lambda t, v: pydl.masked_fill(t, mask, v), [T(a, device, True), T(2.0, device, True)])
    y = x * 1.0
    y.masked_fill_(mask, -1.0)
    np.testing.assert_array_equal(host(y), np.where(a > 0, -1.0, a))
    with pytest.raises(TypeError, match="bool"):
        x.masked_fill(I([1], device), 0.0)
    with pytest.raises(RuntimeError, match=r"mask of shape \(3,\) does not broadcast"):
        x.masked_fill(pydl.tensor([True, False, True], device=device), 0.0)


def test_one_hot(device):
    idx = I([[0, 2], [1, 4]], device)
    out = pydl.one_hot(idx)
    assert out.dtype == pydl.int64 and out.shape == (2, 2, 5)
    np.testing.assert_array_equal(host(out), np.eye(5, dtype=np.int64)[[[0, 2], [1, 4]]])
    assert pydl.one_hot(idx, num_classes=7).shape == (2, 2, 7)
    assert not out.requires_grad
    with pytest.raises(RuntimeError, match="out of range"):
        pydl.one_hot(idx, 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        pydl.one_hot(I([-1], device))
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(
        host(out), torch.nn.functional.one_hot(torch.tensor([[0, 2], [1, 4]])).numpy())


def test_write_inplace_helper(device):
    """The direct-write path meant for Tensor.__setitem__ when no graph is recorded."""
    from pydl.functions.indexing import _write_inplace

    a = rnd(4, 3)
    x = T(a, device)
    data, version = x.data, x._version[0]
    _write_inplace(x, (slice(1, 3), I([0, 2], device)), T([[1.0, 2.0]], device))
    _write_inplace(x, x > 1.5, 0.0)
    want = a.copy()
    want[1:3, [0, 2]] = [[1.0, 2.0]]
    want[want > 1.5] = 0.0
    np.testing.assert_array_equal(host(x), want)
    assert x.data is data and x._version[0] == version + 2
    with pytest.raises(RuntimeError, match=r"value of shape \(2,\) cannot be broadcast"):
        _write_inplace(x, 0, T([1.0, 2.0], device))


def test_cpu_index_tensor_on_any_device(device):
    x = T(rnd(4, 3), device)
    idx = pydl.tensor([3, 0])  # on the CPU
    np.testing.assert_array_equal(host(x[idx]), host(x)[[3, 0]])


# -- integers beside index tensors: PyTorch's rule, not NumPy's (issue 22) -------------------
# PyTorch applies integers first (as select), then the index tensors to what is left; NumPy
# counts an integer as an index array, which moves the indexed dims to the front when a slice
# separates it from an index tensor.
TORCH_RULE_KEYS = [
    ("slice-adv-slice-int", lambda d: (slice(None), I([0, 2, 1], d), slice(None), 1)),
    ("int-slice-adv", lambda d: (1, slice(None), I([0, 1, 0], d))),
    ("int-slice-adv-2d", lambda d: (-1, slice(None), I([[0, 2], [1, 1]], d))),
    ("adv-int-adv", lambda d: (I([0, 4], d), 1, I([2, 0], d))),
    ("int-adv-slice-int", lambda d: (2, I([3, 0], d), slice(None), 0)),
    ("ellipsis-adv-int", lambda d: (..., I([1, 2, 0], d), slice(None), 1)),
    ("none-int-slice-adv", lambda d: (None, 0, slice(1, 3), I([2, 0], d))),
    ("mask-slice-int", lambda d: (pydl.tensor([True, False, True, True, False], device=d),
                                  slice(None), slice(None), 1)),
]


@pytest.mark.parametrize("name,make_key", TORCH_RULE_KEYS, ids=[k[0] for k in TORCH_RULE_KEYS])
def test_int_beside_index_tensor_follows_torch(device, name, make_key):
    torch = pytest.importorskip("torch")
    a = rnd(5, 4, 3, 2)
    key = make_key(device)
    tkey = _torch_key(torch, key)
    x, tx = T(a, device, True), torch.tensor(a, requires_grad=True)
    out, tout = x[key], tx[tkey]
    assert out.shape == tuple(tout.shape)
    np.testing.assert_array_equal(host(out), tout.detach().numpy())
    g = np.random.default_rng(2).standard_normal(tout.shape)
    out.backward(T(g, device))
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), rtol=0, atol=1e-12)
    assert gradcheck(lambda t: t[key], [T(a, device, True)])
    # writes follow the same rule: x[key] = v takes a v of torch's shape
    v = np.random.default_rng(3).standard_normal(tout.shape)
    y, ty = T(a, device), torch.tensor(a)
    y[key] = T(v, device)
    ty[tkey] = torch.tensor(v)
    np.testing.assert_array_equal(host(y), ty.numpy())
    # ... also recorded by autograd, and with accumulate
    base, val = T(a, device, True), T(v, device, True)
    z = pydl.index_put(base * 1, key, val, accumulate=True)
    # torch's accumulated scatter of v into x[key] is the gradient of (x[key] * v).sum()
    tx = torch.tensor(a, requires_grad=True)
    (tx[tkey] * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(host(z), a + tx.grad.numpy(), rtol=0, atol=1e-12)
    assert gradcheck(lambda t, u: pydl.index_put(t * 1, key, u, accumulate=True), [base, val])


def test_issue_22_examples(device):
    x = pydl.rand(5, 4, 3, 2, device=device)
    assert x[:, I([0, 2, 1], device), :, 1].shape == (5, 3, 3)
    assert x[1, :, I([0, 1, 0], device)].shape == (4, 3, 2)
