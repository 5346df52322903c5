"""linear, dropout, embedding, normalizations and the activations of pydl.nn.functional:
float64 NumPy references, gradchecks, dropout statistics, and error messages."""

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl.testing import assert_close, gradcheck

rng = np.random.default_rng(7)


def t64(array, device, grad=True):
    return pydl.tensor(np.asarray(array, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=grad)


def host(t):
    return t.detach().cpu().numpy()


# -- linear ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(4, 3), (2, 5, 3), (3,), (0, 3), (2, 1, 2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(device, x_shape, bias):
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal((4, 3)), rng.standard_normal(4)
    tx, tw = t64(x, device), t64(w, device)
    tb = t64(b, device) if bias else None
    y = F.linear(tx, tw, tb)
    assert_close(host(y), x @ w.T + (b if bias else 0))
    args = [tx, tw] + ([tb] if bias else [])
    assert gradcheck(lambda *a: F.linear(*a), args)


def test_linear_non_contiguous_and_float32(device):
    x = rng.standard_normal((3, 5))
    tx = t64(x.T.copy(), device).transpose(0, 1)
    w = rng.standard_normal((2, 5))
    assert_close(host(F.linear(tx, t64(w, device))), x @ w.T)
    y = F.linear(pydl.tensor(x, device=device), pydl.tensor(w, device=device))
    assert y.dtype == pydl.float32
    assert_close(host(y), (x @ w.T).astype(np.float32), rtol=1e-5, atol=1e-5)


def test_linear_errors():
    with pytest.raises(ValueError, match=r"input of shape \(2, 4\) cannot be multiplied with "
                                         r"weight of shape \(3, 5\)"):
        F.linear(pydl.randn(2, 4), pydl.randn(3, 5))
    with pytest.raises(ValueError, match=r"bias of shape \(2,\) does not match"):
        F.linear(pydl.randn(2, 5), pydl.randn(3, 5), pydl.randn(2))
    with pytest.raises(ValueError, match="weight must be 2-D"):
        F.linear(pydl.randn(2, 5), pydl.randn(5))


# -- dropout --------------------------------------------------------------------------------
def test_dropout_train_eval_and_scaling(device):
    x = pydl.ones(200, 500, device=device, requires_grad=True)
    y = F.dropout(x, 0.3)
    values = host(y)
    kept = values != 0
    assert np.allclose(values[kept], 1 / 0.7)
    assert abs(kept.mean() - 0.7) < 0.01
    y.sum().backward()
    assert_close(host(x.grad), values)  # the gradient uses the same mask
    assert F.dropout(x, 0.3, training=False) is x
    assert F.dropout(x, 0.0) is x
    zeros = F.dropout(x, 1.0)
    assert float(np.abs(host(zeros)).sum()) == 0.0


def test_dropout_reproducible_with_seed(device):
    x = pydl.ones(50, device=device)
    pydl.manual_seed(3)
    a = host(F.dropout(x, 0.5))
    pydl.manual_seed(3)
    b = host(F.dropout(x, 0.5))
    assert np.array_equal(a, b)


def test_dropout_inplace(device):
    x = pydl.ones(10, 10, device=device)
    h = x * 1.0
    out = F.dropout(h, 0.5, inplace=True)
    assert out is h
    assert set(np.unique(host(h))) <= {0.0, 2.0}


def test_feature_dropout(device):
    x = pydl.ones(8, 16, 5, 5, device=device)
    y = host(F.dropout2d(x, 0.5))
    per_channel = y.reshape(8, 16, -1)
    assert np.all(per_channel.min(-1) == per_channel.max(-1))  # whole channels dropped
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert F.dropout1d(pydl.ones(4, 3, 6, device=device), 0.5).shape == (4, 3, 6)
    with pytest.raises(ValueError, match="expected a 3-D or 4-D input"):
        F.dropout2d(pydl.ones(3, 3, device=device))


def test_dropout_errors():
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but "
                                         "got 1.5"):
        F.dropout(pydl.ones(3), 1.5)


# -- embedding ------------------------------------------------------------------------------
def test_embedding_forward_and_gradient(device):
    w = rng.standard_normal((6, 3))
    idx = np.array([[0, 2, 2], [5, 0, 2]])
    tw = t64(w, device)
    ti = pydl.tensor(idx, device=device)
    y = F.embedding(ti, tw)
    assert_close(host(y), w[idx])
    g = rng.standard_normal(y.shape)
    y.backward(pydl.tensor(g, dtype=pydl.float64, device=device))
    expected = np.zeros_like(w)
    np.add.at(expected, idx.reshape(-1), g.reshape(-1, 3))  # repeated rows accumulate
    assert_close(host(tw.grad), expected)
    assert gradcheck(lambda a: F.embedding(ti, a), [t64(w, device)])


def test_embedding_padding_idx(device):
    tw = t64(rng.standard_normal((5, 2)), device)
    ti = pydl.tensor([1, 4, 1, 3], device=device)
    F.embedding(ti, tw, padding_idx=-1).sum().backward()  # -1 is row 4
    grad = host(tw.grad)
    assert_close(grad[4], np.zeros(2))
    assert_close(grad[1], np.full(2, 2.0))


def test_embedding_errors(device):
    w = pydl.randn(4, 2, device=device)
    with pytest.raises(IndexError, match="index 4 is out of range for 4 embeddings"):
        F.embedding(pydl.tensor([0, 4], device=device), w)
    with pytest.raises(TypeError, match="indices must be an integer tensor"):
        F.embedding(pydl.tensor([0.0, 1.0], device=device), w)


# -- normalization --------------------------------------------------------------------------
def _np_norm(x, axes, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


@pytest.mark.parametrize("shape, normalized", [((4, 5), (5,)), ((2, 3, 4), (3, 4)),
                                               ((6,), 6)])
def test_layer_norm(device, shape, normalized):
    x = rng.standard_normal(shape)
    ns = (normalized,) if isinstance(normalized, int) else normalized
    w, b = rng.standard_normal(ns), rng.standard_normal(ns)
    tx, tw, tb = t64(x, device), t64(w, device), t64(b, device)
    axes = tuple(range(x.ndim - len(ns), x.ndim))
    y = F.layer_norm(tx, normalized, tw, tb, eps=1e-5)
    assert_close(host(y), _np_norm(x, axes, 1e-5) * w + b)
    assert gradcheck(lambda a, c, d: F.layer_norm(a, normalized, c, d), [tx, tw, tb])
    assert gradcheck(lambda a: F.layer_norm(a, normalized), [t64(x, device)])


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 5), (2, 3, 3, 2)])
def test_batch_norm_training_and_running_stats(device, shape):
    x = rng.standard_normal(shape) * 2 + 1
    c = shape[1]
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    tx, tw, tb = t64(x, device), t64(w, device), t64(b, device)
    rm = pydl.zeros(c, dtype=pydl.float64, device=device)
    rv = pydl.ones(c, dtype=pydl.float64, device=device)
    axes = (0,) + tuple(range(2, x.ndim))
    cshape = (1, c) + (1,) * (x.ndim - 2)
    y = F.batch_norm(tx, rm, rv, tw, tb, training=True, momentum=0.1, eps=1e-5)
    assert_close(host(y), _np_norm(x, axes, 1e-5) * w.reshape(cshape) + b.reshape(cshape))
    n = x.size // c
    assert_close(host(rm), 0.1 * x.mean(axis=axes))
    assert_close(host(rv), 0.9 + 0.1 * x.var(axis=axes) * n / (n - 1))
    assert gradcheck(lambda a, d, e: F.batch_norm(a, None, None, d, e, training=True),
                     [tx, tw, tb])
    # evaluation uses the running statistics
    z = F.batch_norm(tx, rm, rv, tw, tb, training=False, eps=1e-5)
    expected = ((x - host(rm).reshape(cshape)) / np.sqrt(host(rv).reshape(cshape) + 1e-5)
                * w.reshape(cshape) + b.reshape(cshape))
    assert_close(host(z), expected)
    assert gradcheck(lambda a, d, e: F.batch_norm(a, rm, rv, d, e), [tx, tw, tb])


def test_batch_norm_errors(device):
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        F.batch_norm(pydl.randn(1, 3, device=device), None, None, training=True)
    with pytest.raises(ValueError, match=r"running_mean of shape \(2,\) does not match 3"):
        F.batch_norm(pydl.randn(4, 3, device=device), pydl.zeros(2, device=device),
                     pydl.ones(3, device=device))


@pytest.mark.parametrize("shape, groups", [((2, 6, 3), 3), ((2, 4, 2, 3), 2), ((3, 4), 4),
                                           ((2, 3, 5), 1)])
def test_group_norm(device, shape, groups):
    x = rng.standard_normal(shape)
    c = shape[1]
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    tx, tw, tb = t64(x, device), t64(w, device), t64(b, device)
    y = F.group_norm(tx, groups, tw, tb)
    xg = x.reshape(shape[0], groups, -1)
    cshape = (1, c) + (1,) * (x.ndim - 2)
    expected = _np_norm(xg, (2,), 1e-5).reshape(shape) * w.reshape(cshape) + b.reshape(cshape)
    assert_close(host(y), expected)
    assert gradcheck(lambda a, d, e: F.group_norm(a, groups, d, e), [tx, tw, tb])
    with pytest.raises(ValueError, match="num_groups=5 must divide"):
        F.group_norm(tx, 5)


def test_instance_norm(device):
    x = rng.standard_normal((2, 3, 4, 3))
    tx = t64(x, device)
    y = F.instance_norm(tx)
    assert_close(host(y), _np_norm(x, (2, 3), 1e-5))
    assert gradcheck(lambda a: F.instance_norm(a), [tx])
    with pytest.raises(ValueError, match="expected more than 1 spatial element"):
        F.instance_norm(pydl.randn(2, 3, 1, device=device))


# -- activations and the namespace -----------------------------------------------------------
def _sig(x):
    return 1 / (1 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


ACTIVATIONS = [
    ("relu", {}, lambda x: np.maximum(x, 0)),
    ("leaky_relu", {"negative_slope": 0.2}, lambda x: np.where(x > 0, x, 0.2 * x)),
    ("elu", {"alpha": 0.7}, lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    ("selu", {}, lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772
                                                           * (np.exp(x) - 1))),
    ("celu", {"alpha": 2.0}, lambda x: np.where(x > 0, x, 2.0 * (np.exp(x / 2.0) - 1))),
    ("silu", {}, lambda x: x * _sig(x)),
    ("mish", {}, lambda x: x * np.tanh(_softplus(x))),
    ("softplus", {}, _softplus),
    ("sigmoid", {}, _sig),
    ("tanh", {}, np.tanh),
    ("hardtanh", {"min_val": -0.5, "max_val": 1.5}, lambda x: np.clip(x, -0.5, 1.5)),
    ("relu6", {}, lambda x: np.clip(x, 0, 6)),
    ("hardsigmoid", {}, lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    ("hardswish", {}, lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
    ("logsigmoid", {}, lambda x: -_softplus(-x)),
    ("softsign", {}, lambda x: x / (1 + np.abs(x))),
    ("tanhshrink", {}, lambda x: x - np.tanh(x)),
]


@pytest.mark.parametrize("name, kw, ref", ACTIVATIONS)
def test_activations(device, name, kw, ref):
    x = rng.uniform(-8, 8, (3, 7))
    x[np.abs(x - np.round(x)) < 1e-3] += 0.01  # keep central differences off the kinks
    tx = t64(x, device)
    fn = getattr(F, name)
    assert_close(host(fn(tx, **kw)), ref(x))
    assert gradcheck(lambda a: fn(a, **kw), [tx])


def test_activation_inplace(device):
    x = pydl.tensor([-1.0, 2.0, -3.0], device=device)
    h = x * 1.0
    assert F.relu(h, inplace=True) is h
    assert host(h).tolist() == [0.0, 2.0, 0.0]


def test_gelu_and_glu(device):
    from math import erf, sqrt

    x = rng.standard_normal((2, 6))
    tx = t64(x, device)
    exact = x * 0.5 * (1 + np.vectorize(erf)(x / sqrt(2)))
    assert_close(host(F.gelu(tx)), exact)
    tanh_form = 0.5 * x * (1 + np.tanh(sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    assert_close(host(F.gelu(tx, approximate="tanh")), tanh_form)
    assert_close(host(F.glu(tx)), x[:, :3] * _sig(x[:, 3:]))
    assert gradcheck(lambda a: F.glu(a, 0), [tx])
    with pytest.raises(ValueError, match="odd size 3"):
        F.glu(pydl.randn(2, 3))


def test_normalize_one_hot_pad(device):
    x = rng.standard_normal((3, 4))
    tx = t64(x, device)
    assert_close(host(F.normalize(tx)), x / np.linalg.norm(x, axis=1, keepdims=True))
    assert_close(host(F.normalize(tx, p=1, dim=0)), x / np.abs(x).sum(0))
    assert gradcheck(lambda a: F.normalize(a), [tx])
    oh = F.one_hot(pydl.tensor([0, 2, 1], device=device), 3)
    assert host(oh).tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert F.pad(tx, (1, 2)).shape == (3, 7)
    assert F.pad(tx, (1, 1, 2, 0), value=3.0).shape == (5, 6)


def test_namespace_exports_everything():
    for name in F.__all__:
        assert callable(getattr(F, name)), name
    assert F.interpolate is pydl.nn.layers.interpolate
