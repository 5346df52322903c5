"""Softmax family and losses in pydl.nn.functional: float64 NumPy references, gradchecks,
stability at extreme logits, PyTorch's reduction rules, and error messages."""

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl.testing import assert_close, gradcheck

rng = np.random.default_rng(99)


def t64(array, device, grad=True):
    return pydl.tensor(np.asarray(array, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=grad)


def ints(array, device):
    return pydl.tensor(np.asarray(array, dtype=np.int64), device=device)


def host(t):
    return t.detach().cpu().numpy()


def np_log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_cross_entropy(x, t, weight=None, ignore_index=-100, reduction="mean", eps=0.0):
    """PyTorch's cross_entropy for (N, C, ...) logits and class targets, in NumPy."""
    logp = np.moveaxis(np_log_softmax(x, 1), 1, -1).reshape(-1, x.shape[1])
    t = t.reshape(-1)
    c = x.shape[1]
    w = np.ones(c) if weight is None else weight
    kept = t != ignore_index
    safe = np.where(kept, t, 0)
    nll = -w[safe] * logp[np.arange(len(t)), safe] * kept
    smooth = -(logp * w).sum(-1) * kept
    loss = (1 - eps) * nll + eps / c * smooth
    if reduction == "none":
        return loss.reshape((x.shape[0],) + x.shape[2:])
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (w[safe] * kept).sum()


# -- softmax --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, dim", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1), ((7,), 0),
                                        ((2, 1, 3), 1), ((), 0)])
def test_softmax_log_softmax(device, shape, dim):
    x = rng.standard_normal(shape)
    tx = t64(x, device)
    ls = np_log_softmax(x.reshape(shape or (1,)), dim).reshape(shape)
    assert_close(host(F.log_softmax(tx, dim)), ls)
    assert_close(host(F.softmax(tx, dim)), np.exp(ls))
    assert_close(host(F.softmin(tx, dim)), host(F.softmax(-tx, dim)))
    assert gradcheck(lambda a: F.softmax(a, dim), [tx])
    assert gradcheck(lambda a: F.log_softmax(a, dim), [tx])


def test_softmax_tensor_methods(device):
    x = rng.standard_normal((3, 4))
    tx = t64(x, device)
    assert_close(host(tx.softmax(1)), np.exp(np_log_softmax(x, 1)))
    assert_close(host(tx.log_softmax(0)), np_log_softmax(x, 0))


def test_softmax_dtype_and_non_contiguous(device):
    x = rng.standard_normal((3, 4))
    tx = t64(x.T.copy(), device).transpose(0, 1)  # a non-contiguous (3, 4) view
    assert_close(host(F.softmax(tx, 1)), np.exp(np_log_softmax(x, 1)))
    assert_close(host(F.log_softmax(tx, 0)), np_log_softmax(x, 0))
    assert gradcheck(lambda a: F.softmax(a.transpose(0, 1), 0), [t64(x.T.copy(), device)])
    y = F.softmax(pydl.tensor(x, dtype=pydl.float32, device=device), 1, dtype=pydl.float64)
    assert y.dtype == pydl.float64


def test_softmax_extreme_logits(device):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])
    for dtype in (pydl.float32, pydl.float64):
        tx = pydl.tensor(x, dtype=dtype, device=device, requires_grad=True)
        y = F.softmax(tx, -1)
        ls = F.log_softmax(tx, -1)
        assert np.isfinite(host(y)).all() and np.isfinite(host(ls)).all()
        assert_close(host(y), np.array([[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]]),
                     atol=1e-6, rtol=1e-6)
        assert_close(host(ls)[0], np.array([0.0, -2e4, -1e4]), rtol=1e-6, atol=1e-3)
        (y[:, 0].sum() + ls.sum()).backward()
        assert np.isfinite(host(tx.grad)).all()


def test_softmax_errors():
    with pytest.raises(IndexError, match="dimension 2 is out of range"):
        F.softmax(pydl.randn(3, 4), 2)
    with pytest.raises(TypeError, match="floating-point"):
        F.softmax(pydl.tensor([1, 2, 3]), 0)


# -- cross_entropy / nll_loss ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (2, 4, 3, 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted, eps", [(False, 0.0), (True, 0.0), (True, 0.2), (False, 0.1)])
def test_cross_entropy_class_targets(device, shape, reduction, weighted, eps):
    x = rng.standard_normal(shape)
    c = shape[1]
    t = rng.integers(0, c, size=(shape[0],) + shape[2:])
    t.reshape(-1)[::3] = -100  # some ignored
    t.reshape(-1)[1] = 0
    w = rng.uniform(0.5, 2.0, c) if weighted else None
    tx = t64(x, device)
    tw = None if w is None else t64(w, device, False)
    kw = dict(weight=tw, reduction=reduction, label_smoothing=eps)
    y = F.cross_entropy(tx, ints(t, device), **kw)
    assert_close(host(y), np_cross_entropy(x, t, w, -100, reduction, eps))
    assert gradcheck(lambda a: F.cross_entropy(a, ints(t, device), **kw), [tx])
    if eps == 0:
        z = F.nll_loss(F.log_softmax(tx, 1), ints(t, device), weight=tw, reduction=reduction)
        assert_close(host(z), host(y))
        assert gradcheck(lambda a: F.nll_loss(a, ints(t, device), weight=tw,
                                              reduction=reduction), [tx])


def test_cross_entropy_custom_ignore_index_and_unbatched(device):
    x = rng.standard_normal((4, 3))
    t = np.array([2, 1, 1, 0])
    tx = t64(x, device)
    y = F.cross_entropy(tx, ints(t, device), ignore_index=1)
    assert_close(host(y), np_cross_entropy(x, t, ignore_index=1))
    z = F.cross_entropy(tx[0], ints(2, device))  # (C,) logits with a 0-d target
    assert z.shape == () and np.isclose(z.item(), -np_log_softmax(x[0], 0)[2])
    assert gradcheck(lambda a: F.cross_entropy(a, ints(2, device), reduction="none"),
                     [t64(x[0], device)])


def test_cross_entropy_all_ignored_is_nan_like_torch(device):
    x = t64(rng.standard_normal((2, 3)), device)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = F.cross_entropy(x, ints([-100, -100], device))
    assert np.isnan(y.item())


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (5,)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_probability_targets(device, shape, reduction):
    x = rng.standard_normal(shape)
    p = rng.uniform(size=shape)
    axis = 0 if len(shape) == 1 else 1
    p /= p.sum(axis=axis, keepdims=True)
    w = rng.uniform(0.5, 2, shape[axis])
    tx, tp = t64(x, device), t64(p, device)
    wshape = [1] * len(shape)
    wshape[axis] = -1
    for eps in (0.0, 0.3):
        q = p * (1 - eps) + eps / shape[axis]
        loss = -(np_log_softmax(x, axis) * q * w.reshape(wshape)).sum(axis=axis)
        expected = {"none": loss, "sum": loss.sum(), "mean": loss.sum() / (x.size / shape[axis])}
        kw = dict(weight=t64(w, device, False), reduction=reduction, label_smoothing=eps)
        assert_close(host(F.cross_entropy(tx, tp, **kw)), expected[reduction])
        assert gradcheck(lambda a, b, kw=kw: F.cross_entropy(a, b, **kw), [tx, tp])


def test_cross_entropy_extreme_logits(device):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [0.0, 0.0, 1e4]])
    t = np.array([0, 0, 1])
    for dtype in (pydl.float32, pydl.float64):
        tx = pydl.tensor(x, dtype=dtype, device=device, requires_grad=True)
        y = F.cross_entropy(tx, ints(t, device), reduction="none")
        assert_close(host(y), np.array([0.0, 2e4, 1e4]), rtol=1e-6, atol=1e-3)
        y.sum().backward()
        g = host(tx.grad)
        assert np.isfinite(g).all()
        assert_close(g, np.array([[0, 0, 0], [-1, 1, 0], [0, -1, 1]]), atol=1e-6, rtol=0)


def test_cross_entropy_float32_matches_float64(device):
    x = rng.standard_normal((6, 10)) * 5
    t = rng.integers(0, 10, 6)
    y32 = F.cross_entropy(pydl.tensor(x, dtype=pydl.float32, device=device), ints(t, device))
    assert y32.dtype == pydl.float32
    assert np.isclose(y32.item(), np_cross_entropy(x, t), rtol=1e-5)


def test_cross_entropy_errors(device):
    x = pydl.randn(4, 3, device=device)
    with pytest.raises(IndexError, match="target 3 is out of bounds for 3 classes"):
        F.cross_entropy(x, ints([0, 1, 3, 2], device))
    with pytest.raises(IndexError, match="target -1 is out of bounds for 3 classes"):
        F.nll_loss(x, ints([0, -1, 2, 2], device))
    with pytest.raises(ValueError, match=r"input of shape \(4, 3\) needs a target of shape "
                                         r"\(4,\), got target of shape \(4, 1\)"):
        F.cross_entropy(x, ints([[0], [1], [2], [0]], device))
    with pytest.raises(ValueError, match=r"probability target of shape \(4, 2\) must match"):
        F.cross_entropy(x, pydl.rand(4, 2, device=device))
    with pytest.raises(ValueError, match=r"weight of shape \(2,\) must have one entry per class"):
        F.cross_entropy(x, ints([0, 1, 2, 0], device), weight=pydl.ones(2, device=device))
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none'"):
        F.cross_entropy(x, ints([0, 1, 2, 0], device), reduction="avg")


# -- binary cross-entropy -------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy(device, reduction):
    p = rng.uniform(0.05, 0.95, (3, 4))
    y = rng.uniform(size=(3, 4))
    w = rng.uniform(0.5, 2, 4)
    tp, ty, tw = t64(p, device), t64(y, device), t64(w, device)
    loss = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * w
    expected = {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]
    assert_close(host(F.binary_cross_entropy(tp, ty, tw, reduction=reduction)), expected)
    assert gradcheck(lambda a, b, c: F.binary_cross_entropy(a, b, c, reduction=reduction),
                     [tp, ty, tw])


def test_binary_cross_entropy_clamps_logs(device):
    p = t64([0.0, 1.0, 0.0, 1.0], device)
    y = t64([1.0, 0.0, 0.0, 1.0], device, False)
    loss = F.binary_cross_entropy(p, y, reduction="none")
    assert_close(host(loss), np.array([100.0, 100.0, 0.0, 0.0]))
    loss.sum().backward()
    assert np.isfinite(host(p.grad)).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_with_logits(device, reduction):
    x = rng.standard_normal((3, 4)) * 3
    y = rng.uniform(size=(3, 4))
    w = rng.uniform(0.5, 2, (3, 1))
    pw = rng.uniform(0.5, 3, 4)
    tx, ty, tw, tpw = t64(x, device), t64(y, device), t64(w, device), t64(pw, device)
    sp = np.log1p(np.exp(-x))  # softplus(-x), fine at these sizes
    for pos in (None, pw):
        lw = 1 if pos is None else (pos - 1) * y + 1
        loss = ((1 - y) * x + lw * sp) * w
        expected = {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]
        got = F.binary_cross_entropy_with_logits(tx, ty, tw, reduction=reduction,
                                                 pos_weight=None if pos is None else tpw)
        assert_close(host(got), expected)
    assert gradcheck(lambda a, b, c, d: F.binary_cross_entropy_with_logits(
        a, b, c, reduction=reduction, pos_weight=d), [tx, ty, tw, tpw])
    assert gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction),
                     [tx, ty])


def test_binary_cross_entropy_with_logits_extremes(device):
    x = np.array([100.0, -100.0, 100.0, -100.0, 0.0, 50.0])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.3])
    for dtype in (pydl.float32, pydl.float64):
        tx = pydl.tensor(x, dtype=dtype, device=device, requires_grad=True)
        loss = F.binary_cross_entropy_with_logits(tx, pydl.tensor(y, dtype=dtype, device=device),
                                                  reduction="none")
        assert_close(host(loss), np.array([0.0, 0.0, 100.0, 100.0, np.log(2), 35.0]),
                     rtol=1e-6, atol=1e-6)
        loss.sum().backward()
        sig = 1 / (1 + np.exp(-x))
        assert_close(host(tx.grad), (sig - y).astype(host(tx.grad).dtype), rtol=0, atol=1e-7)


# -- regression losses ----------------------------------------------------------------------
def _huber(d, delta):
    a = np.abs(d)
    return np.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))


def _smooth_l1(d, beta):
    a = np.abs(d)
    return np.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta)


REGRESSION = [
    ("mse_loss", {}, lambda d: d * d),
    ("l1_loss", {}, np.abs),
    ("huber_loss", {}, lambda d: _huber(d, 1.0)),
    ("huber_loss", {"delta": 0.5}, lambda d: _huber(d, 0.5)),
    ("smooth_l1_loss", {}, lambda d: _smooth_l1(d, 1.0)),
    ("smooth_l1_loss", {"beta": 0.3}, lambda d: _smooth_l1(d, 0.3)),
    ("smooth_l1_loss", {"beta": 0.0}, np.abs),
]


@pytest.mark.parametrize("name, kw, ref", REGRESSION)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(3, 4), (), (5,)])
def test_regression_losses(device, name, kw, ref, reduction, shape):
    x, y = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    tx, ty = t64(x, device), t64(y, device)
    fn = getattr(F, name)
    loss = ref(x - y)
    expected = {"none": loss, "sum": loss.sum(), "mean": loss.mean()}[reduction]
    assert_close(host(fn(tx, ty, reduction=reduction, **kw)), expected)
    assert gradcheck(lambda a, b: fn(a, b, reduction=reduction, **kw), [tx, ty])


def test_legacy_reduction_flags(device):
    x, y = t64([1.0, 2.0], device, False), t64([0.0, 0.0], device, False)
    assert F.mse_loss(x, y, reduce=False).shape == (2,)
    assert F.mse_loss(x, y, size_average=False).item() == 5.0
    assert F.mse_loss(x, y).item() == 2.5
    logits = t64([[0.0, 1.0], [2.0, 0.0]], device, False)
    t = ints([1, 0], device)
    assert F.cross_entropy(logits, t, None, None, -100, False).shape == (2,)
    assert np.isclose(F.nll_loss(logits, t, size_average=False).item(), -3.0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none", "batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(device, reduction, log_target):
    x = np_log_softmax(rng.standard_normal((3, 4)), 1)
    p = rng.uniform(0.1, 1, (3, 4))
    p /= p.sum(1, keepdims=True)
    p[0, 0] = 0.0 if not log_target else p[0, 0]
    t = np.log(p) if log_target else p
    tx, tt = t64(x, device), t64(t, device)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(p > 0, p * (np.log(p) - x), 0.0)
    expected = {"none": loss, "sum": loss.sum(), "mean": loss.mean(),
                "batchmean": loss.sum() / 3}[reduction]
    assert_close(host(F.kl_div(tx, tt, reduction=reduction, log_target=log_target)), expected)
    if not log_target:
        tt = t64(np.maximum(p, 0.05), device)  # central differences need t > 0
    assert gradcheck(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
                     [tx, tt])


def test_loss_errors(device):
    x = pydl.randn(3, 4, device=device)
    for fn in (F.mse_loss, F.l1_loss, F.huber_loss, F.smooth_l1_loss, F.kl_div,
               F.binary_cross_entropy_with_logits):
        with pytest.raises(ValueError, match=r"input of shape \(3, 4\) and target of shape "
                                             r"\(3, 1\) differ"):
            fn(x, pydl.randn(3, 1, device=device))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(x * 5, pydl.rand(3, 4, device=device))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast"):
        F.binary_cross_entropy_with_logits(x, pydl.rand(3, 4, device=device),
                                           pos_weight=pydl.ones(3, device=device))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.kl_div(x, x, reduction="batch")


def test_losses_accept_plain_targets_and_int_tensors(device):
    x = pydl.tensor([1.0, 2.0, 3.0], device=device)
    assert F.mse_loss(x, [1.0, 2.0, 5.0]).item() == pytest.approx(4 / 3)
    assert F.l1_loss(x, pydl.tensor([1, 2, 5], device=device)).item() == pytest.approx(2 / 3)
