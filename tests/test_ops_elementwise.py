"""Elementwise ops (pydl.functions.unary): forward against float64 NumPy references,
central-difference gradchecks over several shapes, PyTorch parity, stability and dtypes.

Inputs are drawn away from kinks (relu/abs at 0, clamp bounds, ties) on purpose; the
behaviour at kinks and ties is tested separately against PyTorch's conventions.
"""

import math
import warnings

import numpy as np
import pytest

import pydl
from pydl.functions._special import erf as special_erf
from pydl.testing import assert_close, gradcheck

SHAPES = [(), (1,), (5,), (7, 3, 5)]
_erf = np.vectorize(math.erf, otypes=[np.float64])


# -- input domains (all away from the op's kinks) -------------------------------------------
def _real(rng, s):
    return rng.standard_normal(s)


def _pos(rng, s):
    return rng.uniform(0.5, 2.0, s)


def _away0(rng, s):
    return np.where(rng.random(s) < 0.5, -1.0, 1.0) * rng.uniform(0.2, 2.0, s)


def _gt_minus1(rng, s):
    return rng.uniform(-0.5, 2.0, s)


def _softplus_dom(rng, s):  # beta=2, threshold=1: stay clear of 2x == 1
    return np.where(rng.random(s) < 0.5, rng.uniform(-2.0, 0.3, s), rng.uniform(0.8, 2.0, s))


def _clamp_dom(rng, s):  # bounds -0.5 and 0.5: stay clear of both
    pick = rng.integers(0, 3, s)
    lo, mid, hi = rng.uniform(-2, -0.7, s), rng.uniform(-0.3, 0.3, s), rng.uniform(0.7, 2, s)
    return np.choose(pick, [lo, mid, hi])


def _unit(rng, s):  # inside (-1, 1), clear of the ends (asin, acos)
    return rng.uniform(-0.9, 0.9, s)


def _tan_dom(rng, s):  # clear of the poles at +-pi/2
    return rng.uniform(-1.2, 1.2, s)


def _away_int(rng, s):  # clear of integers and halves (floor, ceil, round, trunc jump there)
    return rng.integers(-3, 3, s) + rng.choice([0.2, 0.35, 0.65, 0.8], s)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


# name -> (pydl fn, float64 numpy reference, domain)
UNARY = {
    "exp": (pydl.exp, np.exp, _real),
    "log": (pydl.log, np.log, _pos),
    "log1p": (pydl.log1p, np.log1p, _gt_minus1),
    "sqrt": (pydl.sqrt, np.sqrt, _pos),
    "rsqrt": (pydl.rsqrt, lambda x: 1 / np.sqrt(x), _pos),
    "reciprocal": (pydl.reciprocal, lambda x: 1 / x, _away0),
    "square": (pydl.square, np.square, _real),
    "abs": (pydl.abs, np.abs, _away0),
    "sin": (pydl.sin, np.sin, _real),
    "cos": (pydl.cos, np.cos, _real),
    "tanh": (pydl.tanh, np.tanh, _real),
    "sigmoid": (pydl.sigmoid, _sigmoid, _real),
    "erf": (pydl.erf, _erf, _real),
    "relu": (pydl.relu, lambda x: np.maximum(x, 0), _away0),
    "leaky_relu": (lambda t: pydl.leaky_relu(t, 0.1), lambda x: np.where(x > 0, x, 0.1 * x),
                   _away0),
    "gelu": (pydl.gelu, lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))), _real),
    "gelu_tanh": (lambda t: pydl.gelu(t, approximate="tanh"), _gelu_tanh, _real),
    "elu": (lambda t: pydl.elu(t, alpha=1.5), lambda x: np.where(x > 0, x, 1.5 * np.expm1(x)),
            _away0),
    "softplus": (lambda t: pydl.softplus(t, beta=2.0, threshold=1.0),
                 lambda x: np.where(2 * x > 1, x, np.log1p(np.exp(2 * x)) / 2), _softplus_dom),
    "silu": (pydl.silu, lambda x: x * _sigmoid(x), _real),
    "clamp": (lambda t: pydl.clamp(t, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), _clamp_dom),
    "clamp_min": (lambda t: t.clamp(min=-0.5), lambda x: np.maximum(x, -0.5), _clamp_dom),
    "clip_max": (lambda t: t.clip(max=0.5), lambda x: np.minimum(x, 0.5), _clamp_dom),
    # elementwise_extra.py
    "tan": (pydl.tan, np.tan, _tan_dom),
    "sinh": (pydl.sinh, np.sinh, _real),
    "cosh": (pydl.cosh, np.cosh, _real),
    "asin": (pydl.asin, np.arcsin, _unit),
    "acos": (lambda t: t.acos(), np.arccos, _unit),
    "atan": (pydl.atan, np.arctan, _real),
    "log2": (pydl.log2, np.log2, _pos),
    "log10": (lambda t: t.log10(), np.log10, _pos),
    "exp2": (pydl.exp2, np.exp2, _real),
    "floor": (pydl.floor, np.floor, _away_int),
    "ceil": (lambda t: t.ceil(), np.ceil, _away_int),
    "round": (pydl.round, np.round, _away_int),
    "round_2": (lambda t: t.round(decimals=2), lambda x: np.round(x, 2), _away_int),
    "trunc": (pydl.trunc, np.trunc, _away_int),
}


def _torch_unary():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    return {
        "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "sqrt": torch.sqrt,
        "rsqrt": torch.rsqrt, "reciprocal": torch.reciprocal, "square": torch.square,
        "abs": torch.abs, "sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh,
        "sigmoid": torch.sigmoid, "erf": torch.erf, "relu": torch.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.1), "gelu": F.gelu,
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "elu": lambda t: F.elu(t, alpha=1.5),
        "softplus": lambda t: F.softplus(t, beta=2.0, threshold=1.0), "silu": F.silu,
        "clamp": lambda t: torch.clamp(t, -0.5, 0.5), "clamp_min": lambda t: t.clamp(min=-0.5),
        "clip_max": lambda t: t.clip(max=0.5),
        "tan": torch.tan, "sinh": torch.sinh, "cosh": torch.cosh, "asin": torch.asin,
        "acos": torch.acos, "atan": torch.atan, "log2": torch.log2, "log10": torch.log10,
        "exp2": torch.exp2, "floor": torch.floor, "ceil": torch.ceil, "round": torch.round,
        "round_2": lambda t: torch.round(t, decimals=2), "trunc": torch.trunc,
    }


def leaf(arr, device, requires_grad=True, dtype=pydl.float64):
    return pydl.tensor(arr, dtype=dtype, device=device, requires_grad=requires_grad)


def noncontig_leaf(arr, device):
    """A float64 leaf requiring grad whose data is a strided (every other column) view."""
    arr = np.asarray(arr, dtype=np.float64)
    base = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],))
    base[..., ::2] = arr
    if device == "cpu":
        t = pydl.from_numpy(base[..., ::2])
    else:
        t = pydl.Tensor._make_leaf(pydl.tensor(base, device=device).data[..., ::2])
    assert not t.is_contiguous()
    return t.requires_grad_()


def host(t):
    return np.asarray(t.detach())


# -- unary: forward, gradcheck, non-contiguous, torch parity ---------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_forward_and_gradcheck(name, shape, device):
    fn, ref, dom = UNARY[name]
    arr = dom(np.random.default_rng(1), shape)
    x = leaf(arr, device)
    y = fn(x)
    assert y.shape == shape and y.dtype == pydl.float64 and y.device == x.device
    assert_close(host(y), ref(arr), rtol=1e-12, atol=1e-14)
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_noncontiguous_matches_contiguous(name, device):
    fn, ref, dom = UNARY[name]
    arr = dom(np.random.default_rng(2), (4, 6))
    nc, c = noncontig_leaf(arr, device), leaf(arr, device)
    y_nc, y_c = fn(nc), fn(c)
    assert_close(host(y_nc), ref(arr), rtol=1e-12, atol=1e-14)
    w = np.random.default_rng(3).standard_normal((4, 6))
    (y_nc * leaf(w, device, False)).sum().backward()
    (y_c * leaf(w, device, False)).sum().backward()
    assert_close(host(nc.grad), host(c.grad), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_torch_parity(name, device):
    torch = pytest.importorskip("torch")
    tfn = _torch_unary()[name]
    fn, _, dom = UNARY[name]
    arr = dom(np.random.default_rng(4), (3, 7))
    w = np.random.default_rng(5).standard_normal((3, 7))
    x = leaf(arr, device)
    (fn(x) * leaf(w, device, False)).sum().backward()
    tx = torch.tensor(arr, dtype=torch.float64, requires_grad=True)
    ty = tfn(tx)
    (ty * torch.tensor(w)).sum().backward()
    assert_close(host(fn(x)), ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "gelu", "gelu_tanh",
                                  "softplus", "silu", "elu", "leaky_relu", "erf", "clamp",
                                  "tan", "sinh", "asin", "log2", "exp2", "floor", "round"])
def test_unary_float32_stays_float32(name, device):
    fn, ref, dom = UNARY[name]
    arr = dom(np.random.default_rng(6), (5, 4))
    x = leaf(arr.astype(np.float32), device, dtype=pydl.float32)
    y = fn(x)
    assert y.dtype == pydl.float32
    assert_close(host(y), ref(arr.astype(np.float32).astype(np.float64)), rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert x.grad.dtype == pydl.float32


# -- dtypes ------------------------------------------------------------------------------------
def test_float_ops_promote_integers_to_float32(device):
    i = pydl.tensor([1, 2, 3], device=device)
    for fn in (pydl.exp, pydl.log, pydl.sqrt, pydl.sigmoid, pydl.tanh, pydl.reciprocal):
        assert fn(i).dtype == pydl.float32
    assert_close(host(pydl.sqrt(pydl.tensor([4, 9], device=device))), np.array([2.0, 3.0]))


def test_integer_preserving_ops(device):
    i = pydl.tensor([-3, 0, 2], device=device)
    assert i.abs().dtype == pydl.int64 and i.abs().tolist() == [3, 0, 2]
    assert pydl.relu(i).tolist() == [0, 0, 2]
    assert pydl.square(i).tolist() == [9, 0, 4]
    assert i.sign().tolist() == [-1, 0, 1] and i.sign().dtype == pydl.int64
    assert i.clamp(-1, 1).tolist() == [-1, 0, 1] and i.clamp(-1, 1).dtype == pydl.int64
    assert pydl.maximum(i, 0).tolist() == [0, 0, 2]
    assert i.clamp(min=0.5).dtype == pydl.float32  # a float bound promotes, as in PyTorch


# -- stability ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [pydl.float32, pydl.float64], ids=str)
def test_sigmoid_softplus_silu_at_extremes(dtype, device):
    vals = [-1000.0, -50.0, 0.0, 50.0, 1000.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings
        x = pydl.tensor(vals, dtype=dtype, device=device, requires_grad=True)
        s = pydl.sigmoid(x)
        assert np.isfinite(host(s)).all()
        assert_close(host(s), np.array([0.0, 1.9287498479639178e-22, 0.5, 1.0, 1.0]),
                     rtol=1e-5, atol=0)
        s.sum().backward()
        assert np.isfinite(host(x.grad)).all()
        x.grad = None
        sp = pydl.softplus(x)
        assert_close(host(sp), np.array([0.0, 1.9287498479639178e-22, math.log(2), 50, 1000]),
                     rtol=1e-6, atol=0)
        sp.sum().backward()
        assert_close(host(x.grad), np.array([0.0, 1.9287498479639178e-22, 0.5, 1, 1]),
                     rtol=1e-5, atol=0)
        x.grad = None
        si = pydl.silu(x)
        assert np.isfinite(host(si)).all()
        si.sum().backward()
        assert np.isfinite(host(x.grad)).all()
        e = pydl.elu(x)
        assert_close(host(e), np.array([-1.0, np.expm1(-50.0), 0.0, 50.0, 1000.0]), rtol=1e-6)
        assert np.isfinite(host(pydl.tanh(x))).all()


def test_softplus_large_beta_x_uses_identity(device):
    x = pydl.tensor([10.0, 30.0], dtype=pydl.float64, device=device)
    assert_close(host(pydl.softplus(x)), np.array([np.log1p(np.exp(10.0)), 30.0]))


def test_erf_accuracy_and_specials(device):
    grid = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-300, 5e-324, 0.84375,
                                                        1.25, 6.0, 2.857142857142857]])
    got = host(pydl.erf(pydl.tensor(grid, dtype=pydl.float64, device=device)))
    want = _erf(grid)
    ulps = np.abs(got - want) / np.spacing(np.maximum(np.abs(want), 1e-300))
    assert ulps.max() <= 2
    specials = pydl.tensor([np.inf, -np.inf, np.nan], dtype=pydl.float64, device=device)
    out = host(pydl.erf(specials))
    assert out[0] == 1 and out[1] == -1 and np.isnan(out[2])
    assert special_erf(np, np.array([0.5], dtype=np.float32)).dtype == np.float32


def test_gelu_modes(device):
    x = pydl.tensor([-2.0, 0.5, 3.0], dtype=pydl.float64, device=device)
    exact, approx = host(pydl.gelu(x)), host(pydl.gelu(x, approximate="tanh"))
    assert np.abs(exact - approx).max() < 1e-3 and not np.array_equal(exact, approx)
    with pytest.raises(ValueError, match="approximate"):
        pydl.gelu(x, approximate="fast")


# -- behaviour at kinks (PyTorch conventions) --------------------------------------------------
def test_kink_conventions_match_torch(device):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    arr = np.array([-1.0, 0.0, 1.0])
    cases = [
        (pydl.relu, torch.relu),
        (pydl.abs, torch.abs),
        (lambda t: pydl.leaky_relu(t, 0.2), lambda t: F.leaky_relu(t, 0.2)),
        (lambda t: pydl.elu(t, 2.0), lambda t: F.elu(t, 2.0)),
        (lambda t: t.clamp(0.0, 1.0), lambda t: t.clamp(0.0, 1.0)),
        (lambda t: t.clamp(min=0.0), lambda t: t.clamp(min=0.0)),
        (pydl.sign, torch.sign),
    ]
    for fn, tfn in cases:
        x = leaf(arr, device)
        fn(x).sum().backward()
        tx = torch.tensor(arr, requires_grad=True)
        tfn(tx).sum().backward()
        assert_close(host(x.grad), tx.grad.numpy())


def test_sign_has_zero_gradient(device):
    x = leaf([-2.0, 3.0], device)
    y = x.sign()
    assert y.requires_grad
    (y * 5).sum().backward()
    assert host(x.grad).tolist() == [0.0, 0.0]


# -- binary: maximum, minimum, where, clamp with tensor bounds ---------------------------------
BROADCAST = [((), ()), ((5,), (5,)), ((3, 1), (4,)), ((1,), (7, 3, 5)), ((7, 3, 5), ())]


@pytest.mark.parametrize("shapes", BROADCAST, ids=str)
@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum(op, shapes, device):
    rng = np.random.default_rng(7)
    a_np, b_np = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    a, b = leaf(a_np, device), leaf(b_np, device)
    fn = getattr(pydl, op)
    assert_close(host(fn(a, b)), getattr(np, op)(a_np, b_np))
    assert gradcheck(fn, [a, b])
    assert_close(host(getattr(a, op)(b)), getattr(np, op)(a_np, b_np))  # method form


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_gradient(op, device):
    torch = pytest.importorskip("torch")
    a_np, b_np = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    a, b = leaf(a_np, device), leaf(b_np, device)
    getattr(pydl, op)(a, b).sum().backward()
    ta = torch.tensor(a_np, requires_grad=True)
    tb = torch.tensor(b_np, requires_grad=True)
    getattr(torch, op)(ta, tb).sum().backward()
    assert_close(host(a.grad), ta.grad.numpy())
    assert_close(host(b.grad), tb.grad.numpy())
    assert host(a.grad)[0] == 0.5 and host(b.grad)[0] == 0.5


def test_maximum_with_scalar_and_nan(device):
    x = leaf([-1.0, np.nan, 2.0], device)
    y = pydl.maximum(x, 0.0)
    out = host(y)
    assert out[0] == 0 and np.isnan(out[1]) and out[2] == 2
    assert pydl.minimum(3.0, x).shape == (3,)


@pytest.mark.parametrize("shapes", [((), (), ()), ((3, 1), (3, 1), (4,)), ((3, 4), (4,), (3, 1)),
                                    ((7, 3, 5), (1, 3, 1), (5,))], ids=str)
def test_where_broadcasts_and_routes_gradient(shapes, device):
    rng = np.random.default_rng(8)
    c_np = rng.random(shapes[0]) < 0.5
    a_np, b_np = rng.standard_normal(shapes[1]), rng.standard_normal(shapes[2])
    cond = pydl.tensor(c_np, device=device)
    a, b = leaf(a_np, device), leaf(b_np, device)
    assert_close(host(pydl.where(cond, a, b)), np.where(c_np, a_np, b_np))
    assert gradcheck(lambda p, q: pydl.where(cond, p, q), [a, b])


def test_where_scalars_and_torch_parity(device):
    torch = pytest.importorskip("torch")
    c_np = np.array([[True, False, True], [False, False, True]])
    x_np = np.arange(6.0).reshape(2, 3)
    cond = pydl.tensor(c_np, device=device)
    x = leaf(x_np, device)
    y = pydl.where(cond, x, 0.0)
    assert y.dtype == pydl.float64
    (y * 2).sum().backward()
    tx = torch.tensor(x_np, requires_grad=True)
    (torch.where(torch.tensor(c_np), tx, 0.0) * 2).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy())
    both = pydl.where(cond, 1.0, -1.0)
    assert both.dtype == pydl.float32 and host(both).tolist() == [[1, -1, 1], [-1, -1, 1]]
    assert pydl.where(cond, -1.0, x).dtype == pydl.float64
    rows, cols = pydl.where(cond)
    assert rows.tolist() == [0, 0, 1] and cols.tolist() == [0, 2, 2]
    mixed = pydl.where(cond, x, x.detach().float())  # promoted, as torch.where does
    assert mixed.dtype == pydl.float64
    assert str(torch.where(torch.tensor(c_np), tx, tx.detach().float()).dtype) == "torch.float64"


def test_clamp_tensor_bounds_match_torch(device):
    torch = pytest.importorskip("torch")
    x_np = np.array([1.0, 2.0, 3.0, 2.0, 1.0])
    lo_np = np.array([2.0, 0.0, 0.0, 2.5, 3.0])  # last: lo > hi -> result is hi
    hi_np = np.array([5.0, 5.0, 2.5, 4.0, 2.0])
    x, lo, hi = leaf(x_np, device), leaf(lo_np, device), leaf(hi_np, device)
    y = pydl.clamp(x, lo, hi)
    (y * leaf([1.0, 2.0, 3.0, 4.0, 5.0], device, False)).sum().backward()
    tx, tlo, thi = (torch.tensor(v, requires_grad=True) for v in (x_np, lo_np, hi_np))
    ty = torch.clamp(tx, tlo, thi)
    (ty * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)).sum().backward()
    assert_close(host(y), ty.detach().numpy())
    for ours, theirs in ((x, tx), (lo, tlo), (hi, thi)):
        assert_close(host(ours.grad), theirs.grad.numpy())


def test_clamp_tensor_bounds_gradcheck_broadcast(device):
    rng = np.random.default_rng(9)
    x = leaf(_clamp_dom(rng, (3, 4)), device)
    lo = leaf(np.full((4,), -0.5) + rng.uniform(-0.05, 0.05, 4), device)
    assert gradcheck(lambda a, b: pydl.clamp(a, min=b), [x, lo])


def test_clamp_needs_a_bound(device):
    with pytest.raises(ValueError, match="at least one"):
        pydl.clamp(leaf([1.0], device))
    assert pydl.clip is pydl.clamp


# -- comparisons, logic, tests: bool results, no graph -----------------------------------------
def test_comparisons(device):
    a_np, b_np = np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])
    a, b = leaf(a_np, device), leaf(b_np, device)
    for name, op in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                     ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)]:
        for out in (getattr(pydl, name)(a, b), getattr(a, name)(b)):
            assert out.dtype == pydl.bool and not out.requires_grad
            assert host(out).tolist() == op(a_np, b_np).tolist()
        assert host(getattr(pydl, name)(a, 2.0)).tolist() == op(a_np, 2.0).tolist()
        assert host(getattr(pydl, name)(2.0, a)).tolist() == op(2.0, a_np).tolist()
    assert host(a < b).tolist() == [True, False, False]
    assert host(a >= 2).tolist() == [False, True, True]
    assert host(a == b).tolist() == [False, True, False]
    assert host(a != b).tolist() == [True, False, True]
    assert host(2.0 < a).tolist() == [False, False, True]  # reflected operator
    assert host(a.float() < b).tolist() == [True, False, False]  # mixed float dtypes compare
    assert host(pydl.tensor([1, 2], device=device) == pydl.tensor([1.0, 3.0], device=device)
                ).tolist() == [True, False]
    assert (a == None) is False  # noqa: E711 - PyTorch returns False here too


def test_comparison_broadcasting(device):
    a = pydl.tensor(np.arange(3.0).reshape(3, 1), device=device)
    b = pydl.tensor(np.arange(4.0), device=device)
    assert (a < b).shape == (3, 4)
    assert host(a < b).tolist() == (np.arange(3.0).reshape(3, 1) < np.arange(4.0)).tolist()


def test_logical_ops(device):
    p = pydl.tensor([True, True, False, False], device=device)
    q = pydl.tensor([True, False, True, False], device=device)
    assert host(pydl.logical_and(p, q)).tolist() == [True, False, False, False]
    assert host(pydl.logical_or(p, q)).tolist() == [True, True, True, False]
    assert host(pydl.logical_xor(p, q)).tolist() == [False, True, True, False]
    assert host(pydl.logical_not(p)).tolist() == [False, False, True, True]
    assert host(p & q).tolist() == [True, False, False, False]
    assert host(p | q).tolist() == [True, True, True, False]
    assert host(p ^ q).tolist() == [False, True, True, False]
    assert host(~p).tolist() == [False, False, True, True]
    n = pydl.tensor([0.0, 2.0, -1.0], device=device)
    assert host(n.logical_not()).tolist() == [True, False, False]  # non-zero is true
    assert host(pydl.logical_and(n, 1)).tolist() == [False, True, True]


def test_isnan_isinf_isfinite(device):
    x = pydl.tensor([1.0, np.nan, np.inf, -np.inf], device=device, requires_grad=True)
    assert host(x.isnan()).tolist() == [False, True, False, False]
    assert host(pydl.isinf(x)).tolist() == [False, False, True, True]
    assert host(pydl.isfinite(x)).tolist() == [True, False, False, False]
    assert not pydl.isnan(x).requires_grad
    assert host(pydl.isnan(pydl.tensor([1, 2], device=device))).tolist() == [False, False]


# -- what backward keeps -----------------------------------------------------------------------
def test_exp_keeps_its_output_not_its_input(device):
    x = leaf([0.5, 1.0], device)
    a = x * 1
    y = a.exp()
    with pydl.no_grad():
        a.mul_(10)  # exp saved its output, so changing its input is harmless
    y.sum().backward()
    assert_close(host(x.grad), np.exp([0.5, 1.0]))


def test_log_keeps_its_input(device):
    x = leaf([0.5, 1.0], device)
    a = x * 1
    y = a.log()
    with pydl.no_grad():
        a.mul_(10)
    with pytest.raises(RuntimeError, match="Log.*in-place"):
        y.sum().backward()


def test_ops_accept_python_numbers_and_lists():
    assert_close(host(pydl.exp(0.0)), np.array(1.0, dtype=np.float32))
    assert pydl.sigmoid([0.0, 0.0]).shape == (2,)
