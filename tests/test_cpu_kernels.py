"""CPU protocol kernels: the NumPy references against PyTorch, the C++ versions against them.

The references (``pydl.backend.cpu.reference``) are the oracle of every other backend, so they
are checked against torch in float64 and float32 at odd sizes (1, primes, 0). The C++ kernels
(``pydl.backend.cpu.extension``) are then checked against the references, at the same sizes.
"""

import numpy as np
import pytest

from pydl.backend import cpu, protocol

ref = cpu.reference
ext = cpu.extension

torch = pytest.importorskip("torch", reason="the reference kernels are checked against PyTorch")
F = torch.nn.functional

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-5)}

needs_ext = pytest.mark.skipif(
    ext is None, reason="the C++ extension pydl._C is not built (pip install -e . builds it)"
)


def rand(shape, dtype, rng=None, low=-1.0, high=1.0):
    rng = rng if rng is not None else np.random.default_rng(0)
    return rng.uniform(low, high, size=shape).astype(dtype)


def close(actual, expected, dtype, scale=1.0):
    tol = TOL[dtype]
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected), rtol=tol["rtol"] * scale,
        atol=tol["atol"] * scale,
    )


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# ----------------------------------------------------------------------------- cases

CONV_CASES = [
    # (N, C, H, W), (O, kH, kW), stride, padding, dilation, groups
    ((2, 3, 7, 5), (4, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 1, 1, 1), (1, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((3, 4, 11, 13), (6, 3, 2), (2, 3), (1, 0), (2, 1), 2),
    ((2, 6, 9, 8), (6, 5, 3), (3, 2), (2, 1), (1, 2), 3),
    ((1, 5, 6, 7), (5, 3, 3), (1, 1), (0, 2), (1, 1), 5),  # depthwise
    ((2, 4, 9, 10), (12, 3, 3), (2, 1), (1, 2), (2, 1), 4),  # depthwise, 3 outputs per group
    ((0, 3, 5, 5), (2, 3, 3), (1, 1), (1, 1), (1, 1), 1),  # empty batch
    ((2, 3, 5, 5), (0, 3, 3), (1, 1), (1, 1), (1, 1), 1),  # no output channels
    ((2, 2, 4, 4), (3, 5, 5), (2, 2), (2, 2), (1, 1), 1),  # kernel wider than input
]

POOL_CASES = [
    # (N, C, H, W), kernel, stride, padding
    ((2, 3, 7, 5), (2, 2), (2, 2), (0, 0)),
    ((1, 1, 1, 1), (1, 1), (1, 1), (0, 0)),
    ((2, 3, 11, 13), (3, 3), (2, 1), (1, 1)),
    ((3, 2, 9, 8), (5, 3), (3, 2), (2, 1)),
    ((1, 2, 5, 7), (3, 2), (1, 1), (1, 0)),
    ((0, 3, 5, 5), (2, 2), (1, 1), (0, 0)),
]


def conv_inputs(case, dtype):
    xs, (o, kh, kw), stride, padding, dilation, groups = case
    rng = np.random.default_rng(1)
    x = rand(xs, dtype, rng)
    w = rand((o, xs[1] // groups, kh, kw), dtype, rng)
    return x, w, stride, padding, dilation, groups


def conv_out_shape(x, w, stride, padding, dilation):
    return (x.shape[0], w.shape[0]) + tuple(
        protocol.conv_output_size(x.shape[2 + a], w.shape[2 + a], stride[a], padding[a],
                                  dilation[a])
        for a in (0, 1)
    )


def pool_input(case, dtype, ties=False):
    xs = case[0]
    rng = np.random.default_rng(2)
    if ties:  # few distinct values: many equal maxima in a window
        return rng.integers(-2, 3, size=xs).astype(dtype)
    return rand(xs, dtype, rng)


# ----------------------------------------------------------------------------- references vs torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_reference_conv2d_matches_torch(case, dtype):
    x, w, stride, padding, dilation, groups = conv_inputs(case, dtype)
    args = (stride, padding, dilation, groups)
    y = ref.conv2d_forward(x, w, *args)
    assert y.dtype == dtype and y.flags.c_contiguous
    if x.shape[0] == 0 or w.shape[0] == 0:  # torch's conv2d refuses these; check shape only
        assert y.shape == conv_out_shape(x, w, stride, padding, dilation)
        assert ref.conv2d_backward_data(y, w, x.shape, *args).shape == x.shape
        gw = ref.conv2d_backward_weight(y, x, w.shape, *args)
        assert gw.shape == w.shape and not gw.any()
        return
    tx, tw = t(x).requires_grad_(), t(w).requires_grad_()
    ty = F.conv2d(tx, tw, None, stride, padding, dilation, groups)
    close(y, ty.detach().numpy(), dtype)
    gy = rand(y.shape, dtype, np.random.default_rng(3))
    ty.backward(t(gy))
    gx = ref.conv2d_backward_data(gy, w, x.shape, *args)
    gw = ref.conv2d_backward_weight(gy, x, w.shape, *args)
    assert gx.dtype == dtype and gw.dtype == dtype
    close(gx, tx.grad.numpy(), dtype)
    close(gw, tw.grad.numpy(), dtype)


def test_reference_conv2d_empty_output_is_an_error():
    with pytest.raises(ValueError, match="conv2d"):
        ref.conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)), (1, 1), (0, 0),
                           (1, 1), 1)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_reference_max_pool2d_matches_torch(case, dtype, ties):
    xs, k, s, p = case
    x = pool_input(case, dtype, ties)
    y, idx = ref.max_pool2d_forward(x, k, s, p)
    assert y.dtype == dtype and idx.dtype == np.int64 and y.shape == idx.shape
    gy = rand(y.shape, dtype, np.random.default_rng(4))
    gx = ref.max_pool2d_backward(gy, idx, x.shape)
    assert gx.shape == x.shape and gx.dtype == dtype
    if x.size == 0:
        return
    tx = t(x).requires_grad_()
    ty, tidx = F.max_pool2d(tx, k, s, p, return_indices=True)
    close(y, ty.detach().numpy(), dtype)
    np.testing.assert_array_equal(idx, tidx.numpy())
    ty.backward(t(gy))
    close(gx, tx.grad.numpy(), dtype)


def test_reference_max_pool2d_padding_only_window_and_real_minus_inf():
    x = np.full((1, 1, 2, 2), -np.inf)
    x[0, 0, 1, 1] = 5.0
    y, idx = ref.max_pool2d_forward(x, (2, 2), (1, 1), (1, 1))
    # the top-left window sees padding and x[0, 0] = -inf: the real element is chosen
    assert idx[0, 0, 0, 0] == 0 and y[0, 0, 0, 0] == -np.inf
    assert idx[0, 0, 2, 2] == 3 and y[0, 0, 2, 2] == 5.0
    # a window of padding only (kernel 1, padding 1): -1
    y, idx = ref.max_pool2d_forward(np.ones((1, 1, 2, 2)), (1, 1), (1, 1), (1, 1))
    assert idx[0, 0, 0, 0] == -1 and idx[0, 0, 1, 1] == 0
    gx = ref.max_pool2d_backward(np.ones_like(y), idx, (1, 1, 2, 2))
    np.testing.assert_array_equal(gx, np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_reference_avg_pool2d_matches_torch(case, dtype, count_include_pad):
    xs, k, s, p = case
    x = pool_input(case, dtype)
    y = ref.avg_pool2d_forward(x, k, s, p, count_include_pad)
    assert y.dtype == dtype
    gy = rand(y.shape, dtype, np.random.default_rng(4))
    gx = ref.avg_pool2d_backward(gy, x.shape, k, s, p, count_include_pad)
    assert gx.shape == x.shape and gx.dtype == dtype
    if x.size == 0:
        return
    tx = t(x).requires_grad_()
    ty = F.avg_pool2d(tx, k, s, p, count_include_pad=count_include_pad)
    close(y, ty.detach().numpy(), dtype)
    ty.backward(t(gy))
    close(gx, tx.grad.numpy(), dtype)


SOFTMAX_SHAPES = [(1, 1), (3, 7), (2, 5, 13), (4, 1031), (0, 5), (5, 0), (7,)]


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_reference_softmax_matches_torch(shape, dtype, log):
    x = rand(shape, dtype, low=-30, high=30)
    forward = ref.log_softmax_forward if log else ref.softmax_forward
    backward = ref.log_softmax_backward if log else ref.softmax_backward
    y = forward(x)
    gy = rand(shape, dtype, np.random.default_rng(5))
    gx = backward(gy, y)
    assert y.dtype == dtype and gx.dtype == dtype and y.shape == gx.shape == shape
    tx = t(x).requires_grad_()
    ty = (F.log_softmax if log else F.softmax)(tx, dim=-1)
    close(y, ty.detach().numpy(), dtype)
    if x.size:
        ty.backward(t(gy))
        close(gx, tx.grad.numpy(), dtype)


def test_reference_softmax_is_stable():
    x = np.array([[1000.0, 1000.0, -1000.0]], np.float32)
    np.testing.assert_allclose(ref.softmax_forward(x), [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(ref.log_softmax_forward(x)[0, :2], [-np.log(2)] * 2, rtol=1e-6)


XENT_CASES = [
    # N, C, weighted, ignore_index, label_smoothing
    (1, 1, False, -100, 0.0),
    (7, 5, False, -100, 0.0),
    (13, 11, True, -100, 0.0),
    (13, 11, False, 3, 0.1),
    (17, 7, True, 2, 0.25),
    (5, 1031, True, -100, 0.05),
    (0, 5, True, -100, 0.1),
]


def xent_inputs(case, dtype):
    n, c, weighted, ignore, eps = case
    rng = np.random.default_rng(6)
    logits = rand((n, c), dtype, rng, -8, 8)
    target = rng.integers(0, c, size=n).astype(np.int64)
    if n > 2 and ignore < 0:
        target[1] = ignore
    weight = rand((c,), dtype, rng, 0.1, 2.0) if weighted else None
    return logits, target, weight, ignore, eps


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", XENT_CASES)
def test_reference_cross_entropy_matches_torch(case, dtype):
    logits, target, weight, ignore, eps = xent_inputs(case, dtype)
    loss, lse = ref.cross_entropy_forward(logits, target, weight, ignore, eps)
    assert loss.dtype == dtype and lse.dtype == dtype and loss.shape == lse.shape == target.shape
    g = rand(target.shape, dtype, np.random.default_rng(7))
    glogits = ref.cross_entropy_backward(g, logits, lse, target, weight, ignore, eps)
    assert glogits.dtype == dtype and glogits.shape == logits.shape
    if logits.size == 0:
        return
    tx = t(logits).requires_grad_()
    tl = F.cross_entropy(tx, t(target), None if weight is None else t(weight),
                         ignore_index=ignore, reduction="none", label_smoothing=eps)
    close(loss, tl.detach().numpy(), dtype)
    close(lse, torch.logsumexp(t(logits), -1).numpy(), dtype)
    tl.backward(t(g))
    close(glogits, tx.grad.numpy(), dtype)
    assert not glogits[target == ignore].any()


@pytest.mark.parametrize("bad", [5, -1, 99])
def test_reference_cross_entropy_names_a_bad_target(bad):
    logits = np.zeros((3, 5))
    target = np.array([0, bad, 1])
    with pytest.raises(IndexError, match=str(bad)):
        ref.cross_entropy_forward(logits, target, None, -100, 0.0)
    with pytest.raises(IndexError, match=str(bad)):
        ref.cross_entropy_backward(np.ones(3), logits, np.zeros(3), target, None, -100, 0.0)


# ----------------------------------------------------------------------------- optimizers

OPT_SHAPES = [(1,), (7, 3), (13,), (0,), (2, 5, 3)]


def opt_state(dtype, n_states, seed=8):
    rng = np.random.default_rng(seed)
    params = [rand(s, dtype, rng) for s in OPT_SHAPES]
    states = [[np.zeros(s, dtype) for s in OPT_SHAPES] for _ in range(n_states)]
    return params, states


def grads_at(step, dtype):
    rng = np.random.default_rng(100 + step)
    return [rand(s, dtype, rng) for s in OPT_SHAPES]


def run_torch_optimizer(make, params, steps, dtype):
    tparams = [torch.nn.Parameter(t(p.copy())) for p in params]
    opt = make(tparams)
    for k in range(steps):
        for tp, g in zip(tparams, grads_at(k, dtype), strict=True):
            tp.grad = t(g)
        opt.step()
    return [tp.detach().numpy() for tp in tparams]


SGD_OPTIONS = [
    dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False),
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=False, maximize=False),
    dict(lr=0.05, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True, maximize=True),
    dict(lr=0.02, momentum=0.5, dampening=0.3, weight_decay=0.1, nesterov=False, maximize=False),
]
ADAM_OPTIONS = [
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False,
         decoupled_weight_decay=False, maximize=False),
    dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1, amsgrad=False,
         decoupled_weight_decay=False, maximize=True),
    dict(lr=3e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05, amsgrad=True,
         decoupled_weight_decay=True, maximize=False),
    dict(lr=3e-3, beta1=0.5, beta2=0.9, eps=1e-8, weight_decay=0.0, amsgrad=True,
         decoupled_weight_decay=False, maximize=False),
]
RMSPROP_OPTIONS = [
    dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
         maximize=False),
    dict(lr=1e-2, alpha=0.9, eps=1e-6, weight_decay=0.1, momentum=0.9, centered=False,
         maximize=True),
    dict(lr=5e-3, alpha=0.95, eps=1e-8, weight_decay=0.0, momentum=0.5, centered=True,
         maximize=False),
    dict(lr=5e-3, alpha=0.99, eps=1e-8, weight_decay=0.01, momentum=0.0, centered=True,
         maximize=False),
]
ADAGRAD_OPTIONS = [
    dict(lr=1e-1, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False),
    dict(lr=5e-2, lr_decay=0.1, weight_decay=0.1, eps=1e-6, maximize=True),
]
STEPS = 5


def sgd_run(kernels, params, states, opts, dtype):
    for k in range(STEPS):
        kernels.sgd_step(params, grads_at(k, dtype), states[0], first_step=(k == 0), **opts)


def adam_run(kernels, params, states, opts, dtype):
    for k in range(STEPS):
        kernels.adam_step(params, grads_at(k, dtype), states[0], states[1],
                          states[2] if opts["amsgrad"] else None, step=k + 1, **opts)


def rmsprop_run(kernels, params, states, opts, dtype):
    for k in range(STEPS):
        kernels.rmsprop_step(params, grads_at(k, dtype), states[0], states[1],
                             states[2] if opts["centered"] else None, **opts)


def adagrad_run(kernels, params, states, opts, dtype):
    for k in range(STEPS):
        kernels.adagrad_step(params, grads_at(k, dtype), states[0], step=k + 1, **opts)


def torch_sgd(o):
    return lambda ps: torch.optim.SGD(
        ps, lr=o["lr"], momentum=o["momentum"], dampening=o["dampening"],
        weight_decay=o["weight_decay"], nesterov=o["nesterov"], maximize=o["maximize"],
        foreach=False)


def torch_adam(o):
    cls = torch.optim.AdamW if o["decoupled_weight_decay"] else torch.optim.Adam
    return lambda ps: cls(ps, lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"],
                          weight_decay=o["weight_decay"], amsgrad=o["amsgrad"],
                          maximize=o["maximize"], foreach=False)


def torch_rmsprop(o):
    return lambda ps: torch.optim.RMSprop(
        ps, lr=o["lr"], alpha=o["alpha"], eps=o["eps"], weight_decay=o["weight_decay"],
        momentum=o["momentum"], centered=o["centered"], maximize=o["maximize"], foreach=False)


def torch_adagrad(o):
    return lambda ps: torch.optim.Adagrad(
        ps, lr=o["lr"], lr_decay=o["lr_decay"], weight_decay=o["weight_decay"], eps=o["eps"],
        maximize=o["maximize"], foreach=False)


OPTIMIZERS = (
    [("sgd", sgd_run, torch_sgd, o) for o in SGD_OPTIONS]
    + [("adam", adam_run, torch_adam, o) for o in ADAM_OPTIONS]
    + [("rmsprop", rmsprop_run, torch_rmsprop, o) for o in RMSPROP_OPTIONS]
    + [("adagrad", adagrad_run, torch_adagrad, o) for o in ADAGRAD_OPTIONS]
)
OPT_IDS = [f"{name}-{i}" for i, (name, *_) in enumerate(OPTIMIZERS)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,run,make_torch,opts", OPTIMIZERS, ids=OPT_IDS)
def test_reference_optimizer_matches_torch(name, run, make_torch, opts, dtype):
    params, states = opt_state(dtype, 3)
    expected = run_torch_optimizer(make_torch(opts), params, STEPS, dtype)
    run(ref, params, states, opts, dtype)
    for p, e in zip(params, expected, strict=True):
        assert p.dtype == dtype
        close(p, e, dtype, scale=10.0)


# ----------------------------------------------------------------------------- C++ vs reference


def same(actual, expected, dtype, scale=1.0):
    """The C++ result equals the reference's to rounding, with the same dtype and shape."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    close(actual, expected, dtype, scale)


def strided(a):
    """A non-contiguous view with the same values as ``a``."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


@needs_ext
@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_ext_conv2d_matches_reference(case, dtype, chunked, monkeypatch):
    if chunked:  # a tiny column budget: one image per chunk
        monkeypatch.setattr(ext, "COLS_BUDGET", 1)
    x, w, stride, padding, dilation, groups = conv_inputs(case, dtype)
    args = (stride, padding, dilation, groups)
    y = ref.conv2d_forward(x, w, *args)
    same(ext.conv2d_forward(x, w, *args), y, dtype)
    same(ext.conv2d_forward(strided(x), strided(w), *args), y, dtype)
    gy = rand(y.shape, dtype, np.random.default_rng(3))
    same(ext.conv2d_backward_data(gy, w, x.shape, *args),
         ref.conv2d_backward_data(gy, w, x.shape, *args), dtype)
    same(ext.conv2d_backward_weight(strided(gy), x, w.shape, *args),
         ref.conv2d_backward_weight(gy, x, w.shape, *args), dtype, scale=10.0)


@needs_ext
def test_ext_conv2d_errors_name_the_shapes():
    x, w = np.zeros((1, 4, 5, 5), np.float32), np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(1, 4, 5, 5\).*\(2, 3, 3, 3\)"):
        ext.conv2d_forward(x, w, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="empty output"):
        ext.conv2d_forward(x[:, :3], w, (1, 1), (0, 0), (3, 3), 1)


@needs_ext
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_ext_max_pool2d_matches_reference(case, dtype, ties):
    xs, k, s, p = case
    x = pool_input(case, dtype, ties)
    y, idx = ext.max_pool2d_forward(strided(x), k, s, p)
    ry, ridx = ref.max_pool2d_forward(x, k, s, p)
    same(y, ry, dtype)
    np.testing.assert_array_equal(idx, ridx)
    gy = rand(y.shape, dtype, np.random.default_rng(4))
    same(ext.max_pool2d_backward(gy, idx, x.shape), ref.max_pool2d_backward(gy, ridx, x.shape),
         dtype)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_ext_max_pool2d_special_values(dtype):
    x = np.full((1, 2, 3, 3), -np.inf, dtype)
    x[0, 1] = [[1, np.nan, 2], [np.nan, 0, 3], [5, 5, 1]]
    for k, s, p in [((2, 2), (1, 1), (1, 1)), ((1, 1), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1))]:
        y, idx = ext.max_pool2d_forward(x, k, s, p)
        ry, ridx = ref.max_pool2d_forward(x, k, s, p)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(idx, ridx)
        gx = ext.max_pool2d_backward(np.ones_like(y), idx, x.shape)
        np.testing.assert_array_equal(gx, ref.max_pool2d_backward(np.ones_like(y), ridx, x.shape))
    with pytest.raises(ValueError, match="argmax"):
        ext.max_pool2d_backward(np.ones((1, 1, 1, 1), dtype), np.array([[[[9]]]]), (1, 1, 3, 3))


@needs_ext
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_ext_avg_pool2d_matches_reference(case, dtype, count_include_pad):
    xs, k, s, p = case
    x = pool_input(case, dtype)
    y = ext.avg_pool2d_forward(strided(x), k, s, p, count_include_pad)
    same(y, ref.avg_pool2d_forward(x, k, s, p, count_include_pad), dtype)
    gy = rand(y.shape, dtype, np.random.default_rng(4))
    same(ext.avg_pool2d_backward(gy, x.shape, k, s, p, count_include_pad),
         ref.avg_pool2d_backward(gy, x.shape, k, s, p, count_include_pad), dtype)


@needs_ext
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES + [(3, 4099), (1, 100003)])
def test_ext_softmax_matches_reference(shape, dtype, log):
    x = rand(shape, dtype, low=-30, high=30)
    name = "log_softmax" if log else "softmax"
    forward_ext, forward_ref = getattr(ext, f"{name}_forward"), getattr(ref, f"{name}_forward")
    y = forward_ext(strided(x) if x.ndim else x)
    same(y, forward_ref(x), dtype)
    gy = rand(shape, dtype, np.random.default_rng(5))
    same(getattr(ext, f"{name}_backward")(gy, y), getattr(ref, f"{name}_backward")(gy, y), dtype)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_ext_softmax_special_values(dtype):
    x = np.array([[0, -np.inf, 3], [-np.inf] * 3, [1, np.nan, 2], [1e4, -1e4, 1e4]], dtype)
    with np.errstate(invalid="ignore"):
        for name in ("softmax_forward", "log_softmax_forward"):
            np.testing.assert_allclose(getattr(ext, name)(x), getattr(ref, name)(x), rtol=1e-6)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_ext_exp_is_accurate_over_its_range(dtype):
    # log_softmax_backward with gy = [1, 0] and y = [0, v] gives gx[1] = -exp(v): exp itself
    v = np.concatenate([-np.logspace(-8, np.log10(800), 4001), [0.0, -np.inf, -1e-30]])
    y = np.stack([np.zeros_like(v), v], axis=1).astype(dtype)
    gy = np.tile(np.array([1, 0], dtype), (len(v), 1))
    got = -ext.log_softmax_backward(gy, y)[:, 1]
    want = np.exp(v.astype(dtype))
    tiny = np.finfo(dtype).tiny  # below it the C++ exp flushes to zero
    np.testing.assert_allclose(got[want >= tiny], want[want >= tiny],
                               rtol=4 * np.finfo(dtype).eps, atol=0)
    assert np.all(got[want < tiny] <= tiny)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", XENT_CASES + [(64, 4099, True, 7, 0.1), (3, 1, True, 0, 0.2)])
def test_ext_cross_entropy_matches_reference(case, dtype):
    logits, target, weight, ignore, eps = xent_inputs(case, dtype)
    loss, lse = ext.cross_entropy_forward(strided(logits), target, weight, ignore, eps)
    rloss, rlse = ref.cross_entropy_forward(logits, target, weight, ignore, eps)
    same(loss, rloss, dtype, scale=10.0)
    same(lse, rlse, dtype)
    g = rand(target.shape, dtype, np.random.default_rng(7))
    same(ext.cross_entropy_backward(g, logits, lse, target, weight, ignore, eps),
         ref.cross_entropy_backward(g, logits, rlse, target, weight, ignore, eps), dtype)


@needs_ext
@pytest.mark.parametrize("bad", [5, -1, 99])
def test_ext_cross_entropy_names_a_bad_target(bad):
    logits = np.zeros((3, 5), np.float32)
    target = np.array([0, bad, 1])
    with pytest.raises(IndexError, match=f"target {bad} is out of bounds for 5 classes"):
        ext.cross_entropy_forward(logits, target, None, -100, 0.0)
    with pytest.raises(IndexError, match=f"target {bad} is out of bounds"):
        ext.cross_entropy_backward(np.ones(3, np.float32), logits, np.zeros(3, np.float32),
                                   target, None, -100, 0.0)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,run,make_torch,opts", OPTIMIZERS, ids=OPT_IDS)
def test_ext_optimizer_matches_reference(name, run, make_torch, opts, dtype):
    params, states = opt_state(dtype, 3)
    run(ext, params, states, opts, dtype)
    rparams, rstates = opt_state(dtype, 3)
    run(ref, rparams, rstates, opts, dtype)
    for a, b in zip(params + sum(states, []), rparams + sum(rstates, []), strict=True):
        same(a, b, dtype)


@needs_ext
def test_ext_optimizer_big_tensors_and_odd_layouts():
    rng = np.random.default_rng(9)
    shapes = [(100003,), (257, 129), (3,)]
    opts = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, amsgrad=False,
                decoupled_weight_decay=True, maximize=False)

    def state(layout_odd):
        params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        if layout_odd:  # a transposed parameter: the wrapper falls back to the reference
            params[1] = np.asfortranarray(params[1])
        return params, [np.zeros(s, np.float32) for s in shapes], [
            np.zeros(s, np.float32) for s in shapes]

    for odd in (False, True):
        rng = np.random.default_rng(9)
        p, m, v = state(odd)
        rng = np.random.default_rng(9)
        rp, rm, rv = state(False)
        grads = [np.ones(s, np.float32) for s in shapes]
        for step in (1, 2, 3):
            ext.adam_step(p, grads, m, v, None, step=step, **opts)
            ref.adam_step(rp, grads, rm, rv, None, step=step, **opts)
        for a, b in zip(p + m + v, rp + rm + rv, strict=True):
            close(a, b, np.float32)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[0][0] and c[1][0]])
def test_ext_direct_conv2d_matches_reference(case, dtype):
    # the wrapper sends only depthwise layers here; the kernels take any grouping
    x, w, stride, padding, dilation, groups = conv_inputs(case, dtype)
    args = (stride, padding, dilation, groups)
    y = ref.conv2d_forward(x, w, *args)
    got = np.empty_like(y)
    ext._C.conv2d_direct_forward(x, w, got, stride, padding, dilation, groups)
    same(got, y, dtype)
    gy = rand(y.shape, dtype, np.random.default_rng(3))
    got = np.empty_like(x)
    ext._C.conv2d_direct_backward_data(gy, w, got, stride, padding, dilation, groups)
    same(got, ref.conv2d_backward_data(gy, w, x.shape, *args), dtype)


@needs_ext
def test_ext_kernels_reject_wrong_arrays():
    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="C-contiguous writeable float32"):
        ext._C.im2col(x, np.zeros((27, 50), np.float64), (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="cols"):
        ext._C.im2col(x, np.zeros((27, 49), np.float32), (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(TypeError, match="float32 or float64"):
        ext._C.softmax_forward(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))


def _parallel_results(dtype=np.float32):
    """Kernel results on inputs big enough to be split over threads."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((16, 8, 20, 20)).astype(dtype)
    w = rng.standard_normal((12, 8, 3, 3)).astype(dtype)
    logits = rng.standard_normal((300, 257)).astype(dtype)
    params = [rng.standard_normal(70001).astype(dtype), rng.standard_normal((3, 5)).astype(dtype)]
    sgd = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True,
               maximize=False, first_step=True)
    out = {}
    for name, kernels in (("ref", ref), ("ext", ext)):
        p = [a.copy() for a in params]
        kernels.sgd_step(p, [a * 0.5 for a in params], [np.zeros_like(a) for a in params], **sgd)
        out[name] = [
            kernels.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), 1),
            kernels.softmax_forward(logits),
            kernels.max_pool2d_forward(x, (3, 3), (2, 2), (1, 1))[1],
            kernels.avg_pool2d_backward(x, (16, 8, 40, 40), (2, 2), (2, 2), (0, 0)),
        ] + p
    return out


@needs_ext
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_ext_results_do_not_depend_on_threads(threads):
    try:
        ext.set_num_threads(threads)
        assert ext.num_threads() == threads
        out = _parallel_results()
    finally:
        ext.set_num_threads(0)
    for got, want in zip(out["ext"], out["ref"], strict=True):
        close(got, want, np.float32, scale=10.0)


def _child_runs_kernels(queue):
    out = _parallel_results()
    queue.put(all(np.allclose(a, b, rtol=1e-3, atol=1e-4)
                  for a, b in zip(out["ext"], out["ref"], strict=True)))


@needs_ext
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork()")
def test_ext_thread_pool_survives_fork():
    import multiprocessing

    _parallel_results()  # the parent's pool is running
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_runs_kernels, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0, "the forked child hung or crashed in a parallel kernel"
    assert queue.get(timeout=5)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_ext_optimizer_sqrt_is_accurate_over_its_range(dtype):
    # the C++ steps use a vectorizable sqrt; Adagrad with g = 1, lr = 1 and eps = 0 from
    # p = 0 gives p = -1 / sqrt(s0 + 1), so s0 + 1 = v probes sqrt over many magnitudes
    tiny = np.finfo(dtype).tiny
    v = np.logspace(np.log10(tiny) + 1, np.log10(np.finfo(dtype).max) - 1, 5001).astype(dtype)
    v = v[v > 2]  # s0 = v - 1 is exact only for v well above 1
    p, g, s = np.zeros_like(v), np.ones_like(v), v - dtype(1)
    ext.adagrad_step([p], [g], [s], lr=1.0, lr_decay=0.0, weight_decay=0.0, eps=0.0, step=1,
                     maximize=False)
    np.testing.assert_allclose(-1 / p, np.sqrt(s), rtol=4 * np.finfo(dtype).eps, atol=0)
