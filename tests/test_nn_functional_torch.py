"""Parity of pydl.nn.functional with torch.nn.functional in float64 over many random
configurations: outputs and the gradients of every floating input. Skipped without torch."""

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional
# torch warns about its own deprecations (kl_div 'mean', 'same' padding copies)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _pydl(a, device, grad):
    if a.dtype.kind == "f":
        return pydl.tensor(a, dtype=pydl.float64, device=device, requires_grad=grad)
    return pydl.tensor(a.astype(np.int64), device=device)


def _torch(a, grad):
    if a.dtype.kind == "f":
        return torch.tensor(a, dtype=torch.float64, requires_grad=grad)
    return torch.tensor(a.astype(np.int64))


def _close(ours, theirs, what, rtol, atol):
    ours = ours.detach().cpu().numpy() if hasattr(ours, "detach") else np.asarray(ours)
    theirs = theirs.detach().numpy()
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


def check(pfn, tfn, inputs, device="cpu", grads=None, rtol=1e-9, atol=1e-11, seed=0):
    """Run both with the same inputs; compare outputs and input gradients.

    ``inputs`` are NumPy arrays (float -> float64 tensors requiring grad unless ``grads``
    says otherwise, int -> int64) or None. Extra outputs (indices) are compared exactly.
    """
    grads = grads or [a is not None and a.dtype.kind == "f" for a in inputs]
    ours = [None if a is None else _pydl(a, device, g) for a, g in zip(inputs, grads,
                                                                         strict=True)]
    theirs = [None if a is None else _torch(a, g) for a, g in zip(inputs, grads, strict=True)]
    out, ref = pfn(*ours), tfn(*theirs)
    if isinstance(ref, tuple):
        for k, (o, r) in enumerate(zip(out[1:], ref[1:], strict=True)):
            _close(o, r, f"output {k + 1}", 0, 0)
        out, ref = out[0], ref[0]
    _close(out, ref, "output", rtol, atol)
    g = np.random.default_rng(seed).standard_normal(tuple(ref.shape))
    out.backward(pydl.tensor(g, dtype=pydl.float64, device=device))
    ref.backward(torch.tensor(g))
    for i, (o, r) in enumerate(zip(ours, theirs, strict=True)):
        if o is None or not o.requires_grad:
            continue
        expected = r.grad if r.grad is not None else torch.zeros_like(r)
        assert o.grad is not None, f"input {i}: no gradient"
        _close(o.grad, expected, f"gradient of input {i}", rtol * 10, atol * 10)


def configs(n, seed):
    return [np.random.default_rng(seed * 1000 + i) for i in range(n)]


# -- convolution ----------------------------------------------------------------------------
@pytest.mark.parametrize("r", configs(40, 1))
def test_conv2d(device, r):
    groups = int(r.choice([1, 1, 2, 3]))
    cin, cout = groups * int(r.integers(1, 3)), groups * int(r.integers(1, 3))
    k = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    stride = (int(r.integers(1, 3)), int(r.integers(1, 3)))
    dilation = (int(r.integers(1, 3)), int(r.integers(1, 3)))
    padding = (int(r.integers(0, 3)), int(r.integers(0, 3)))
    if r.uniform() < 0.2:
        padding, stride = str(r.choice(["same", "valid"])), (1, 1)
    size = [int(r.integers(d * (kk - 1) + 1, d * (kk - 1) + 6))
            for d, kk in zip(dilation, k, strict=True)]
    x = r.standard_normal((int(r.integers(1, 3)), cin, *size))
    w = r.standard_normal((cout, cin // groups, *k))
    b = r.standard_normal(cout) if r.uniform() < 0.7 else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    check(lambda a, c, d: F.conv2d(a, c, d, **args), lambda a, c, d: TF.conv2d(a, c, d, **args),
          [x, w, b], device)


@pytest.mark.parametrize("r", configs(30, 2))
def test_conv_transpose2d(device, r):
    groups = int(r.choice([1, 1, 2]))
    cin, cog = groups * int(r.integers(1, 3)), int(r.integers(1, 3))
    k = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    stride = (int(r.integers(1, 4)), int(r.integers(1, 3)))
    dilation = (int(r.integers(1, 3)), int(r.integers(1, 3)))
    padding = tuple(int(r.integers(0, max(1, (d * (kk - 1)) // 2 + 1)))
                    for d, kk in zip(dilation, k, strict=True))
    out_pad = tuple(int(r.integers(0, max(s, d))) for s, d in zip(stride, dilation, strict=True))
    x = r.standard_normal((int(r.integers(1, 3)), cin, int(r.integers(2, 5)),
                           int(r.integers(2, 5))))
    w = r.standard_normal((cin, cog, *k))
    b = r.standard_normal(cog * groups) if r.uniform() < 0.7 else None
    args = dict(stride=stride, padding=padding, output_padding=out_pad, groups=groups,
                dilation=dilation)
    check(lambda a, c, d: F.conv_transpose2d(a, c, d, **args),
          lambda a, c, d: TF.conv_transpose2d(a, c, d, **args), [x, w, b], device)


@pytest.mark.parametrize("r", configs(10, 3))
def test_conv1d_and_transpose1d(device, r):
    k, s, d, p = int(r.integers(1, 4)), int(r.integers(1, 3)), int(r.integers(1, 3)), 1
    x = r.standard_normal((2, 2, int(r.integers(d * (k - 1) + 1, 9))))
    w, b = r.standard_normal((3, 2, k)), r.standard_normal(3)
    args = dict(stride=s, padding=p, dilation=d)
    check(lambda a, c, e: F.conv1d(a, c, e, **args), lambda a, c, e: TF.conv1d(a, c, e, **args),
          [x, w, b], device)
    wt = r.standard_normal((2, 3, k))
    check(lambda a, c: F.conv_transpose1d(a, c, **args),
          lambda a, c: TF.conv_transpose1d(a, c, **args), [x, wt], device)


# -- pooling --------------------------------------------------------------------------------
def _pool_config(r):
    k = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    stride = (int(r.integers(1, 4)), int(r.integers(1, 4))) if r.uniform() < 0.7 else None
    padding = (int(r.integers(0, k[0] // 2 + 1)), int(r.integers(0, k[1] // 2 + 1)))
    x = r.standard_normal((int(r.integers(1, 3)), int(r.integers(1, 3)),
                           int(r.integers(k[0], k[0] + 6)), int(r.integers(k[1], k[1] + 6))))
    return x, k, stride, padding, bool(r.uniform() < 0.4)


@pytest.mark.parametrize("r", configs(40, 4))
def test_max_pool2d(device, r):
    x, k, stride, padding, ceil = _pool_config(r)
    check(lambda a: F.max_pool2d(a, k, stride, padding, ceil_mode=ceil, return_indices=True),
          lambda a: TF.max_pool2d(a, k, stride, padding, ceil_mode=ceil, return_indices=True),
          [x], device)


@pytest.mark.parametrize("r", configs(30, 41))
def test_max_pool2d_dilated(device, r):
    k = (int(r.integers(1, 4)), int(r.integers(1, 4)))
    d = (int(r.integers(1, 4)), int(r.integers(2, 4)))
    stride = (int(r.integers(1, 4)), int(r.integers(1, 4))) if r.uniform() < 0.7 else None
    padding = (int(r.integers(0, k[0] // 2 + 1)), int(r.integers(0, k[1] // 2 + 1)))
    span = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    x = r.standard_normal((int(r.integers(1, 3)), int(r.integers(1, 3)),
                           int(r.integers(span[0], span[0] + 6)),
                           int(r.integers(span[1], span[1] + 6))))
    ceil = bool(r.uniform() < 0.4)
    check(lambda a: F.max_pool2d(a, k, stride, padding, d, ceil_mode=ceil, return_indices=True),
          lambda a: TF.max_pool2d(a, k, stride, padding, d, ceil_mode=ceil, return_indices=True),
          [x], device)
    k1, d1 = k[1], d[1]
    x1 = x[:, :, 0, :]
    check(lambda a: F.max_pool1d(a, k1, 1, 0, d1), lambda a: TF.max_pool1d(a, k1, 1, 0, d1),
          [x1], device)


@pytest.mark.parametrize("r", configs(40, 5))
def test_avg_pool2d(device, r):
    x, k, stride, padding, ceil = _pool_config(r)
    kw = dict(ceil_mode=ceil, count_include_pad=bool(r.uniform() < 0.5))
    if r.uniform() < 0.2:
        kw["divisor_override"] = int(r.integers(1, 5))
    check(lambda a: F.avg_pool2d(a, k, stride, padding, **kw),
          lambda a: TF.avg_pool2d(a, k, stride, padding, **kw), [x], device)


@pytest.mark.parametrize("r", configs(10, 6))
def test_pool1d(device, r):
    k = int(r.integers(1, 4))
    s, p, ceil = int(r.integers(1, 3)), int(r.integers(0, k // 2 + 1)), bool(r.uniform() < 0.5)
    x = r.standard_normal((2, 3, int(r.integers(k, k + 7))))
    check(lambda a: F.max_pool1d(a, k, s, p, ceil_mode=ceil),
          lambda a: TF.max_pool1d(a, k, s, p, ceil_mode=ceil), [x], device)
    check(lambda a: F.avg_pool1d(a, k, s, p, ceil_mode=ceil, count_include_pad=False),
          lambda a: TF.avg_pool1d(a, k, s, p, ceil_mode=ceil, count_include_pad=False),
          [x], device)


@pytest.mark.parametrize("r", configs(20, 7))
def test_adaptive_pools(device, r):
    x = r.standard_normal((int(r.integers(1, 3)), 2, int(r.integers(1, 9)),
                           int(r.integers(1, 9))))
    out = (int(r.integers(1, 6)), int(r.integers(1, 6)))
    check(lambda a: F.adaptive_avg_pool2d(a, out), lambda a: TF.adaptive_avg_pool2d(a, out),
          [x], device)
    check(lambda a: F.adaptive_max_pool2d(a, out, return_indices=True),
          lambda a: TF.adaptive_max_pool2d(a, out, return_indices=True), [x], device)
    x1 = x.reshape(x.shape[0], 2, -1)
    check(lambda a: F.adaptive_avg_pool1d(a, out[0]), lambda a: TF.adaptive_avg_pool1d(a, out[0]),
          [x1], device)
    check(lambda a: F.adaptive_max_pool1d(a, out[1]), lambda a: TF.adaptive_max_pool1d(a, out[1]),
          [x1], device)


# -- softmax and classification losses ------------------------------------------------------
@pytest.mark.parametrize("r", configs(15, 8))
def test_softmax_family(device, r):
    shape = tuple(int(s) for s in r.integers(1, 5, size=int(r.integers(1, 4))))
    dim = int(r.integers(-len(shape), len(shape)))
    x = r.standard_normal(shape) * 3
    for ours, theirs in ((F.softmax, TF.softmax), (F.log_softmax, TF.log_softmax),
                         (F.softmin, TF.softmin)):
        check(lambda a, f=ours: f(a, dim), lambda a, f=theirs: f(a, dim), [x], device)


@pytest.mark.parametrize("r", configs(40, 9))
def test_cross_entropy(device, r):
    c = int(r.integers(1, 6))
    extra = tuple(int(s) for s in r.integers(1, 4, size=int(r.integers(0, 3))))
    n = int(r.integers(1, 5))
    x = r.standard_normal((n, c) + extra) * 3
    kw = dict(reduction=str(r.choice(["mean", "sum", "none"])),
              label_smoothing=float(r.choice([0.0, 0.0, 0.1, 0.5])))
    weight = r.uniform(0.2, 2, c) if r.uniform() < 0.5 else None
    if r.uniform() < 0.3:  # class probabilities
        t = r.uniform(size=x.shape)
        t /= t.sum(axis=1, keepdims=True)
        check(lambda a, b, w: F.cross_entropy(a, b, w, **kw),
              lambda a, b, w: TF.cross_entropy(a, b, w, **kw), [x, t, weight], device,
              grads=[True, True, False])
        return
    t = r.integers(0, c, size=(n,) + extra)
    ignore = int(r.choice([-100, 0, c - 1]))
    t.reshape(-1)[0] = ignore if r.uniform() < 0.5 else t.reshape(-1)[0]
    if kw["reduction"] == "mean" and np.all(t == ignore):
        t.reshape(-1)[0] = (ignore + 1) % c if c > 1 else 0
        if np.all(t == ignore):
            return  # all ignored: nan on both sides
    check(lambda a, b, w: F.cross_entropy(a, b, w, ignore_index=ignore, **kw),
          lambda a, b, w: TF.cross_entropy(a, b, w, ignore_index=ignore, **kw),
          [x, t, weight], device, grads=[True, False, False])
    if kw["label_smoothing"] == 0:
        lp = np.asarray(TF.log_softmax(torch.tensor(x), 1))
        red = kw["reduction"]
        check(lambda a, b, w: F.nll_loss(a, b, w, ignore_index=ignore, reduction=red),
              lambda a, b, w: TF.nll_loss(a, b, w, ignore_index=ignore, reduction=red),
              [lp, t, weight], device, grads=[True, False, False])


# -- other losses ---------------------------------------------------------------------------
@pytest.mark.parametrize("r", configs(12, 10))
def test_binary_losses(device, r):
    shape = tuple(int(s) for s in r.integers(1, 4, size=int(r.integers(1, 4))))
    red = str(r.choice(["mean", "sum", "none"]))
    p = r.uniform(0.02, 0.98, shape)
    y = r.uniform(size=shape)
    w = r.uniform(0.5, 2, shape[-1:])
    check(lambda a, b, c: F.binary_cross_entropy(a, b, c, reduction=red),
          lambda a, b, c: TF.binary_cross_entropy(a, b, c, reduction=red), [p, y, w], device,
          grads=[True, True, False])
    x = r.standard_normal(shape) * 4
    pw = r.uniform(0.5, 3, shape[-1:])
    check(lambda a, b, c, d: F.binary_cross_entropy_with_logits(a, b, c, reduction=red,
                                                                pos_weight=d),
          lambda a, b, c, d: TF.binary_cross_entropy_with_logits(a, b, c, reduction=red,
                                                                 pos_weight=d),
          [x, y, w, pw], device, grads=[True, True, False, False])


@pytest.mark.parametrize("r", configs(12, 11))
def test_regression_losses(device, r):
    shape = tuple(int(s) for s in r.integers(1, 4, size=int(r.integers(0, 4))))
    red = str(r.choice(["mean", "sum", "none"]))
    x, y = r.standard_normal(shape) * 2, r.standard_normal(shape)
    for name, kw in (("mse_loss", {}), ("l1_loss", {}), ("huber_loss", {"delta": 0.7}),
                     ("smooth_l1_loss", {"beta": 0.6})):
        check(lambda a, b, n=name, k=kw: getattr(F, n)(a, b, reduction=red, **k),
              lambda a, b, n=name, k=kw: getattr(TF, n)(a, b, reduction=red, **k),
              [x, y], device)
    logp = np.asarray(TF.log_softmax(torch.tensor(x.reshape(-1, shape[-1] if shape else 1)),
                                     -1)).reshape(shape)
    q = r.uniform(0.05, 1, shape)
    for red_kl in ("batchmean", red):
        for log_target, target in ((False, q), (True, np.log(q))):
            kw = dict(reduction=red_kl, log_target=log_target)
            check(lambda a, b, kw=kw: F.kl_div(a, b, **kw),
                  lambda a, b, kw=kw: TF.kl_div(a, b, **kw), [logp, target], device)


# -- layers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("r", configs(8, 12))
def test_linear_embedding(device, r):
    lead = tuple(int(s) for s in r.integers(1, 4, size=int(r.integers(0, 3))))
    x, w, b = (r.standard_normal(lead + (5,)), r.standard_normal((3, 5)),
               r.standard_normal(3))
    check(F.linear, TF.linear, [x, w, b], device)
    idx = r.integers(0, 6, size=lead + (4,))
    emb = r.standard_normal((6, 3))
    pad = int(r.integers(0, 6)) if r.uniform() < 0.5 else None
    check(lambda i, e: F.embedding(i, e, padding_idx=pad),
          lambda i, e: TF.embedding(i, e, padding_idx=pad), [idx, emb], device,
          grads=[False, True])


@pytest.mark.parametrize("r", configs(8, 13))
def test_normalizations(device, r):
    n, c = int(r.integers(2, 4)), 2 * int(r.integers(1, 3))
    spatial = tuple(int(s) for s in r.integers(1, 4, size=int(r.integers(1, 3))))
    x = r.standard_normal((n, c) + spatial) * 2 + 0.5
    w, b = r.standard_normal(c), r.standard_normal(c)
    check(lambda a, d, e: F.layer_norm(a, x.shape[-2:], None, None, 1e-5) * 1.0,
          lambda a, d, e: TF.layer_norm(a, x.shape[-2:], None, None, 1e-5) * 1.0,
          [x, w, b], device, grads=[True, False, False])
    lw, lb = r.standard_normal(spatial[-1:]), r.standard_normal(spatial[-1:])
    check(lambda a, d, e: F.layer_norm(a, spatial[-1:], d, e),
          lambda a, d, e: TF.layer_norm(a, spatial[-1:], d, e), [x, lw, lb], device)
    check(lambda a, d, e: F.group_norm(a, 2, d, e), lambda a, d, e: TF.group_norm(a, 2, d, e),
          [x, w, b], device)
    if np.prod(spatial) > 1:
        check(lambda a, d, e: F.instance_norm(a, weight=d, bias=e),
              lambda a, d, e: TF.instance_norm(a, weight=d, bias=e), [x, w, b], device)
    ours = [pydl.zeros(c, dtype=pydl.float64, device=device),
            pydl.ones(c, dtype=pydl.float64, device=device)]
    theirs = [torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)]
    for training in (True, True, False):
        check(lambda a, d, e, t=training: F.batch_norm(a, *ours, d, e, t, 0.2, 1e-5),
              lambda a, d, e, t=training: TF.batch_norm(a, *theirs, d, e, t, 0.2, 1e-5),
              [x, w, b], device)
        for o, t in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(o.cpu().numpy(), t.numpy(), rtol=1e-10)


ACTIVATIONS = [("relu", {}), ("leaky_relu", {"negative_slope": 0.1}), ("elu", {"alpha": 0.5}),
               ("selu", {}), ("celu", {"alpha": 1.5}), ("gelu", {}),
               ("gelu", {"approximate": "tanh"}), ("silu", {}), ("mish", {}),
               ("softplus", {"beta": 2.0}), ("sigmoid", {}), ("tanh", {}),
               ("hardtanh", {}), ("relu6", {}), ("hardsigmoid", {}), ("hardswish", {}),
               ("logsigmoid", {}), ("softsign", {}), ("tanhshrink", {}), ("glu", {})]


@pytest.mark.parametrize("name, kw", ACTIVATIONS)
def test_activations(device, name, kw):
    x = np.random.default_rng(14).uniform(-7, 7, (4, 6))
    # torch's hardsigmoid backward multiplies by the float32 constant 1.0f / 6.0f
    rtol = 1e-7 if name == "hardsigmoid" else 1e-9
    check(lambda a: getattr(F, name)(a, **kw), lambda a: getattr(TF, name)(a, **kw), [x],
          device, rtol=rtol)
