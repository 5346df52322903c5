"""Binary elementwise ops of functions/elementwise_extra.py (lerp logaddexp copysign fmod
remainder floor_divide div(rounding_mode) isclose, the // and % operators), and the pow
gradient at 0: float64 NumPy references, gradchecks over broadcast shapes, torch parity.
(The unary ones are rows of UNARY in test_ops_elementwise.py.)"""

import numpy as np
import pytest
from test_ops_elementwise import BROADCAST

import pydl
from pydl.testing import assert_close, gradcheck, gradgradcheck


def leaf(arr, device, requires_grad=True, dtype=pydl.float64):
    return pydl.tensor(arr, dtype=dtype, device=device, requires_grad=requires_grad)


def host(t):
    return np.asarray(t.detach())


def _away(rng, s, lo=0.5, hi=2.0):
    return rng.uniform(lo, hi, s) * rng.choice([-1.0, 1.0], s)


def _dividend(rng, s):  # quotients clear of integers: fmod/remainder jump there
    return rng.integers(-4, 4, s) * 1.0 + rng.choice([0.3, 0.6], s)


# name -> (pydl fn, float64 numpy reference, torch fn, domain of a, domain of b)
BINARY_EXTRA = {
    "logaddexp": (pydl.logaddexp, np.logaddexp, "logaddexp", lambda r, s: r.normal(0, 3, s),
                  lambda r, s: r.normal(0, 3, s)),
    "copysign": (pydl.copysign, np.copysign, "copysign", _away, _away),
    "fmod": (pydl.fmod, np.fmod, "fmod", _dividend, lambda r, s: np.ones(s)),
    "remainder": (pydl.remainder, np.remainder, "remainder", _dividend,
                  lambda r, s: np.full(s, -1.0)),
    "mod_operator": (lambda a, b: a % b, np.remainder, "remainder", _dividend,
                     lambda r, s: np.ones(s)),
    "lerp": (lambda a, b: pydl.lerp(a, b, 0.3), lambda a, b: a + 0.3 * (b - a),
             "lerp", _away, _away),
}


def _torch_fn(name):
    torch = pytest.importorskip("torch")
    if name == "lerp":
        return lambda a, b: torch.lerp(a, b, 0.3)
    return getattr(torch, name)


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY_EXTRA))
def test_binary_extra_forward_and_gradcheck(name, shapes, device):
    fn, ref, _, dom_a, dom_b = BINARY_EXTRA[name]
    rng = np.random.default_rng(0)
    a_np, b_np = dom_a(rng, shapes[0]), dom_b(rng, shapes[1])
    a, b = leaf(a_np, device), leaf(b_np, device)
    y = fn(a, b)
    assert y.dtype == pydl.float64 and y.shape == np.broadcast_shapes(shapes[0], shapes[1])
    assert_close(host(y), ref(a_np, b_np), rtol=1e-12, atol=1e-14)
    assert gradcheck(fn, [a, b])


@pytest.mark.parametrize("name", sorted(BINARY_EXTRA))
def test_binary_extra_torch_parity(name, device):
    torch = pytest.importorskip("torch")
    fn, _, tname, dom_a, dom_b = BINARY_EXTRA[name]
    rng = np.random.default_rng(1)
    a_np, b_np = dom_a(rng, (3, 4)), dom_b(rng, (4,))
    w = rng.standard_normal((3, 4))
    a, b = leaf(a_np, device), leaf(b_np, device)
    (fn(a, b) * leaf(w, device, False)).sum().backward()
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a_np, b_np))
    ty = _torch_fn(tname)(ta, tb)
    (ty * torch.tensor(w)).sum().backward()
    assert_close(host(fn(a, b)), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert_close(host(a.grad), ta.grad.numpy(), rtol=1e-12, atol=1e-14)
    assert_close(host(b.grad), tb.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(BINARY_EXTRA))
def test_binary_extra_gradgradcheck(name, device):
    fn, _, _, dom_a, dom_b = BINARY_EXTRA[name]
    rng = np.random.default_rng(2)
    a, b = leaf(dom_a(rng, (3, 2)), device), leaf(dom_b(rng, (2,)), device)
    assert gradgradcheck(fn, [a, b])


def test_lerp_tensor_weight_and_errors(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    s, e, w = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.random((4,))
    a, b, c = leaf(s, device), leaf(e, device), leaf(w, device)
    assert gradcheck(lambda x, y, z: x.lerp(y, z), [a, b, c])
    ref = torch.lerp(torch.tensor(s), torch.tensor(e), torch.tensor(w))
    assert_close(host(pydl.lerp(a, b, c)), ref.numpy(), rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match="lerp"):
        pydl.lerp(a, b.float(), 0.5)


@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_div_rounding_modes_match_torch(mode, device):
    torch = pytest.importorskip("torch")
    a_np = np.array([7.5, -7.5, 3.0, -3.0, 0.5, -0.5])
    b_np = np.array([2.0, 2.0, -2.0, -2.0, 0.25, 3.0])
    a, b = leaf(a_np, device), leaf(b_np, device)
    y = pydl.div(a, b, rounding_mode=mode)
    ref = torch.div(torch.tensor(a_np), torch.tensor(b_np), rounding_mode=mode)
    assert host(y).tolist() == ref.tolist()
    y.sum().backward()  # zero gradient, as PyTorch
    assert host(a.grad).tolist() == [0.0] * 6 and host(b.grad).tolist() == [0.0] * 6
    ia, ib = np.array([7, -7, 7, -7, 0, 5]), np.array([2, 2, -2, -2, 3, -5])
    iy = pydl.div(pydl.tensor(ia, device=device), pydl.tensor(ib, device=device),
                  rounding_mode=mode)
    iref = torch.div(torch.tensor(ia), torch.tensor(ib), rounding_mode=mode)
    assert iy.dtype == pydl.int64 and iy.tolist() == iref.tolist()
    with pytest.raises(ValueError, match="rounding_mode"):
        pydl.div(a, b, rounding_mode="round")


def test_floordiv_and_mod_operators_match_python(device):
    ia, ib = [7, -7, 7, -7, 9], [2, 2, -2, -2, 3]
    a, b = pydl.tensor(ia, device=device), pydl.tensor(ib, device=device)
    assert (a // b).tolist() == [x // y for x, y in zip(ia, ib)]
    assert (a % b).tolist() == [x % y for x, y in zip(ia, ib)]
    assert (a // 2).tolist() == [x // 2 for x in ia] and (a // 2).dtype == pydl.int64
    assert (17 // b).tolist() == [17 // y for y in ib]
    assert (17 % b).tolist() == [17 % y for y in ib]
    f = pydl.tensor([7.5, -7.5], device=device)
    assert (f // 2).tolist() == [3.0, -4.0] and (f % 2).tolist() == [1.5, 0.5]
    assert pydl.fmod(f, 2).tolist() == [1.5, -1.5]
    with pytest.raises(ZeroDivisionError, match="floor_divide"):
        a // 0
    with pytest.raises(ZeroDivisionError, match="remainder"):
        a % pydl.tensor([1, 0, 1, 1, 1], device=device)


def test_isclose_matches_torch(device):
    torch = pytest.importorskip("torch")
    a = np.array([1.0, 1.0 + 1e-6, np.inf, -np.inf, np.nan, 2.0])
    b = np.array([1.0, 1.0, np.inf, np.inf, np.nan, 2.1])
    for kw in ({}, {"equal_nan": True}, {"rtol": 0.1, "atol": 0.0}):
        got = pydl.isclose(pydl.tensor(a, device=device), pydl.tensor(b, device=device), **kw)
        ref = torch.isclose(torch.tensor(a), torch.tensor(b), **kw)
        assert got.dtype == pydl.bool and got.tolist() == ref.tolist()
    assert pydl.tensor([1.0], device=device).isclose(1.0 + 1e-9).tolist() == [True]


def test_logaddexp_extremes(device):
    a = pydl.tensor([1000.0, -1000.0, 0.0], dtype=pydl.float64, device=device)
    b = pydl.tensor([1000.0, -1000.0, -np.inf], dtype=pydl.float64, device=device)
    assert_close(host(pydl.logaddexp(a, b)), np.logaddexp(host(a), host(b)))


def test_copysign_gradient_is_zero_at_zero(device):
    x = leaf([0.0, 2.0, -3.0], device)
    y = pydl.copysign(x, pydl.tensor([-1.0, -1.0, 1.0], dtype=pydl.float64, device=device))
    y.sum().backward()
    assert host(y).tolist() == [-0.0, -2.0, 3.0] and host(x.grad).tolist() == [0.0, -1.0, -1.0]


# -- regression: the gradient of x ** 0 at x == 0 (issue 22) ----------------------------------
def test_pow_zero_exponent_gradient_at_zero_is_zero(device):
    torch = pytest.importorskip("torch")
    x_np = np.array([0.0, 1.5, -2.0])
    for make in (lambda t: t ** 0, lambda t: t.pow(0), lambda t: t ** 0.0):
        x = leaf(x_np, device)
        make(x).sum().backward()
        tx = torch.tensor(x_np, requires_grad=True)
        make(tx).sum().backward()
        assert host(x.grad).tolist() == tx.grad.tolist() == [0.0, 0.0, 0.0]
    # tensor exponent: x = 0, y = 0 (PyTorch: d/dx = 0, d/dy = 0)
    x, y = leaf([0.0, 2.0, 0.0], device), leaf([0.0, 0.0, 2.0], device)
    (x ** y).sum().backward()
    tx = torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64, requires_grad=True)
    ty = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    (tx ** ty).sum().backward()
    assert host(x.grad).tolist() == tx.grad.tolist()
    assert host(y.grad).tolist() == ty.grad.tolist()
    # second derivative stays finite too
    x = leaf([0.0, 1.5], device)
    (g,) = pydl.autograd.grad((x ** 0).sum(), [x], create_graph=True)
    (h,) = pydl.autograd.grad(g.sum(), [x], allow_unused=True)
    assert h is None or np.isfinite(host(h)).all()
    assert gradcheck(lambda t: t ** 2.0, [leaf([0.0, 1.0], device)])
