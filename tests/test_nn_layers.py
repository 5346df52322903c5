"""Layers, activations, norms and losses: float64 gradchecks of input and parameter gradients,
and parity with PyTorch (weights copied in through load_state_dict) over random
configurations: outputs, every gradient, and the running statistics of BatchNorm."""

import math

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.testing import assert_close, gradcheck

TOL = {pydl.float64: 1e-8, pydl.float32: 1e-5}
DTYPES = [pydl.float64, pydl.float32]


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def _tdtype(torch, dtype):
    return torch.float64 if dtype == pydl.float64 else torch.float32


def copy_from_torch(ours, theirs):
    """Load a torch module's state_dict into ours; the names must be the same."""
    sd = {k: v.detach().cpu().numpy() for k, v in theirs.state_dict().items()}
    assert list(ours.state_dict()) == list(sd), "state_dict names differ from PyTorch's"
    ours.load_state_dict(sd)


def check_parity(torch, ours, theirs, inputs, dtype=pydl.float64, device="cpu", *,
                 steps=1, tol=None):
    """Run both modules on the same inputs and compare outputs, input gradients, parameter
    gradients and buffers. ``inputs`` holds NumPy arrays; float ones get gradients unless
    given as ("nograd", array)."""
    tol = TOL[dtype] if tol is None else tol
    tdt = _tdtype(torch, dtype)
    theirs = theirs.to(tdt)
    copy_from_torch(ours, theirs)
    ours.to(device).to(dtype)
    rng = np.random.default_rng(7)
    for step in range(steps):
        xs, ts = [], []
        for a in inputs:
            grad = not (isinstance(a, tuple) and a[0] == "nograd")
            a = a if grad else a[1]
            if a.dtype.kind == "f":
                xs.append(pydl.tensor(a, dtype=dtype, device=device, requires_grad=grad))
                ts.append(torch.tensor(a, dtype=tdt, requires_grad=grad))
            else:
                xs.append(pydl.tensor(a, device=device))
                ts.append(torch.tensor(a))
        y, ty = ours(*xs), theirs(*ts)
        assert y.shape == tuple(ty.shape), f"step {step}: output shapes differ"
        assert_close(y.detach(), ty.detach().numpy(), rtol=tol, atol=tol, msg=f"step {step} out: ")
        if y.requires_grad:
            g = rng.standard_normal(y.shape)
            y.backward(pydl.tensor(g, dtype=dtype, device=device))
            ty.backward(torch.tensor(g, dtype=tdt))
            for i, (x, t) in enumerate(zip(xs, ts, strict=True)):
                if t.requires_grad:
                    assert_close(x.grad, t.grad.numpy(), rtol=tol, atol=tol,
                                 msg=f"step {step} grad of input {i}: ")
            theirs_params = dict(theirs.named_parameters())
            for name, p in ours.named_parameters():
                tp = theirs_params[name]
                if tp.grad is None:
                    assert p.grad is None or not p.grad.numpy().any(), name
                    continue
                assert_close(p.grad, tp.grad.numpy(), rtol=tol, atol=tol,
                             msg=f"step {step} grad of {name}: ")
            ours.zero_grad()
            theirs.zero_grad()
        theirs_buffers = dict(theirs.named_buffers())
        for name, b in ours.named_buffers():
            assert_close(b, theirs_buffers[name].numpy(), rtol=tol, atol=tol,
                         msg=f"step {step} buffer {name}: ")
    return ours


def grads_ok(module, *inputs):
    """float64 gradcheck of a module with respect to its float inputs and its parameters."""
    module.double()
    params = [p for p in module.parameters() if p.requires_grad]
    n = len(inputs)
    return gradcheck(lambda *args: module(*args[:n]), list(inputs) + params)


def r64(*shape, requires_grad=True):
    return pydl.randn(*shape, dtype=pydl.float64, requires_grad=requires_grad)


# -- gradchecks ----------------------------------------------------------------------------
@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Linear(4, 3), (2, 4)),
    (lambda: nn.Linear(4, 3, bias=False), (2, 5, 4)),
    (lambda: nn.Bilinear(3, 2, 4), None),
    (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (2, 4, 5, 5)),
    (lambda: nn.Conv2d(2, 3, (2, 3), padding="same", dilation=2), (1, 2, 5, 6)),
    (lambda: nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"), (1, 2, 4, 4)),
    (lambda: nn.Conv1d(2, 4, 3, padding=2, groups=2), (2, 2, 6)),
    (lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
     (2, 4, 3, 3)),
    (lambda: nn.ConvTranspose1d(2, 3, 3, stride=2), (1, 2, 4)),
    (lambda: nn.MaxPool2d(2), (1, 2, 4, 4)),
    (lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 1, 5, 5)),
    (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (1, 2, 5, 5)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 7)),
    (lambda: nn.AdaptiveMaxPool2d(2), (1, 2, 5, 5)),
    (lambda: nn.MaxPool1d(2), (1, 2, 6)),
    (lambda: nn.Conv3d(2, 4, (2, 3, 2), stride=(1, 2, 1), padding=1, groups=2), (1, 2, 3, 5, 4)),
    (lambda: nn.Conv3d(1, 2, 2, padding="same", padding_mode="replicate"), (1, 1, 3, 3, 4)),
    (lambda: nn.MaxPool3d(2, stride=(1, 2, 2), padding=1), (1, 2, 3, 4, 5)),
    (lambda: nn.AvgPool3d(2, stride=1, padding=1, count_include_pad=False), (1, 2, 2, 3, 3)),
    (lambda: nn.AvgPool1d(3, stride=2), (1, 2, 7)),
    (lambda: nn.Flatten(), (2, 3, 2, 2)),
    (lambda: nn.Unflatten(1, (2, 3)), (2, 6)),
    (lambda: nn.Upsample(scale_factor=2), (1, 2, 3, 3)),
    (lambda: nn.Upsample(size=(5, 4)), (1, 2, 3, 3)),
    (lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 3, 3)),
    (lambda: nn.Upsample(size=(4, 7), mode="bilinear", align_corners=True), (1, 1, 3, 3)),
    (lambda: nn.BatchNorm1d(3), (5, 3)),
    (lambda: nn.BatchNorm1d(3), (4, 3, 2)),
    (lambda: nn.BatchNorm2d(2), (3, 2, 2, 3)),
    (lambda: nn.BatchNorm2d(2).eval(), (3, 2, 2, 3)),
    (lambda: nn.LayerNorm((3, 4)), (2, 3, 4)),
    (lambda: nn.GroupNorm(2, 4), (2, 4, 3)),
    (lambda: nn.InstanceNorm2d(2, affine=True), (2, 2, 3, 3)),
    (lambda: nn.PReLU(3), (2, 3, 4)),
    (lambda: nn.Identity(), (2, 3)),
])
def test_layer_gradcheck(make, shape):
    m = make()
    if shape is None:  # Bilinear: two inputs
        assert grads_ok(m, r64(4, 3), r64(4, 2))
        return
    assert grads_ok(m, r64(*shape))


def test_embedding_gradcheck():
    emb = nn.Embedding(6, 3).double()
    ids = pydl.tensor([[0, 1, 5], [5, 2, 1]])
    assert gradcheck(lambda w: emb(ids), [emb.weight])
    # the padding row is used in forward but, by design, gets no gradient
    emb = nn.Embedding(6, 3, padding_idx=1)
    emb(ids).sum().backward()
    g = emb.weight.grad.numpy()
    assert not g[1].any() and np.all(g[5] == 2) and np.all(g[3] == 0)


def test_dropout_gradcheck():
    drop = nn.Dropout(0.4)

    def fn(x):
        pydl.manual_seed(3)  # the same mask at every evaluation
        return drop(x)

    assert gradcheck(fn, [r64(4, 5)])


@pytest.mark.parametrize("make", [
    lambda: nn.ReLU(), lambda: nn.LeakyReLU(0.1), lambda: nn.Sigmoid(), lambda: nn.Tanh(),
    lambda: nn.GELU(), lambda: nn.GELU("tanh"), lambda: nn.ELU(0.7), lambda: nn.SiLU(),
    lambda: nn.Softplus(2.0, 5.0), lambda: nn.Softmax(dim=1), lambda: nn.LogSoftmax(dim=-1),
    lambda: nn.Softmin(dim=0), lambda: nn.Mish(), lambda: nn.SELU(), lambda: nn.CELU(0.5),
    lambda: nn.Hardtanh(-0.5, 0.5), lambda: nn.ReLU6(), lambda: nn.Hardswish(),
    lambda: nn.Hardsigmoid(), lambda: nn.LogSigmoid(), lambda: nn.Softsign(),
    lambda: nn.Tanhshrink(), lambda: nn.GLU(dim=1),
])
def test_activation_gradcheck(make):
    x = pydl.tensor(np.random.default_rng(0).uniform(-3, 3, (3, 4)) + 0.01,
                    dtype=pydl.float64, requires_grad=True)
    assert grads_ok(make(), x)


# -- torch parity: layers ------------------------------------------------------------------
def _seeds(n):
    return [pytest.param(s, id=f"cfg{s}") for s in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(4))
def test_linear_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(seed)
    i, o, bias = int(rng.integers(1, 8)), int(rng.integers(1, 8)), bool(rng.integers(2))
    lead = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(1, 3))))
    check_parity(torch, nn.Linear(i, o, bias), torch.nn.Linear(i, o, bias),
                 [rng.standard_normal(lead + (i,))], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bilinear_parity(torch, dtype, device):
    rng = np.random.default_rng(0)
    check_parity(torch, nn.Bilinear(3, 4, 5), torch.nn.Bilinear(3, 4, 5),
                 [rng.standard_normal((6, 3)), rng.standard_normal((6, 4))], dtype, device)


def _conv_config(rng, dims, transposed=False):
    groups = int(rng.choice([1, 1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 4, size=dims))
    stride = tuple(int(v) for v in rng.integers(1, 3 if not transposed else 4, size=dims))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=dims))
    kw = dict(stride=stride, dilation=dilation, groups=groups, bias=bool(rng.integers(2)))
    if transposed:
        kw["padding"] = tuple(int(rng.integers(0, (kk - 1) * d // 2 + 1))
                              for kk, d in zip(k, dilation, strict=True))
        kw["output_padding"] = tuple(int(rng.integers(0, max(s, d)))
                                     for s, d in zip(stride, dilation, strict=True))
    else:
        choice = int(rng.integers(4))
        if choice == 0 and all(s == 1 for s in stride):
            kw["padding"] = "same"
        elif choice == 1:
            kw["padding"] = "valid"
        else:
            kw["padding"] = tuple(int(v) for v in rng.integers(0, 3, size=dims))
        kw["padding_mode"] = str(rng.choice(["zeros", "zeros", "reflect", "replicate",
                                             "circular"]))
    size = tuple(int(v) for v in rng.integers(5, 9, size=dims))
    shape = (int(rng.integers(1, 3)), cin) + size
    return cin, cout, k, kw, shape


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(8))
def test_conv2d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(seed)
    cin, cout, k, kw, shape = _conv_config(rng, 2)
    check_parity(torch, nn.Conv2d(cin, cout, k, **kw), torch.nn.Conv2d(cin, cout, k, **kw),
                 [rng.standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(4))
def test_conv1d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(100 + seed)
    cin, cout, k, kw, shape = _conv_config(rng, 1)
    check_parity(torch, nn.Conv1d(cin, cout, k, **kw), torch.nn.Conv1d(cin, cout, k, **kw),
                 [rng.standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(5))
def test_conv3d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(500 + seed)
    cin, cout, k, kw, shape = _conv_config(rng, 3)
    check_parity(torch, nn.Conv3d(cin, cout, k, **kw), torch.nn.Conv3d(cin, cout, k, **kw),
                 [rng.standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(6))
def test_conv_transpose2d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(200 + seed)
    cin, cout, k, kw, shape = _conv_config(rng, 2, transposed=True)
    check_parity(torch, nn.ConvTranspose2d(cin, cout, k, **kw),
                 torch.nn.ConvTranspose2d(cin, cout, k, **kw), [rng.standard_normal(shape)],
                 dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose1d_parity(torch, dtype, device):
    rng = np.random.default_rng(3)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    check_parity(torch, nn.ConvTranspose1d(4, 6, 3, **kw), torch.nn.ConvTranspose1d(4, 6, 3, **kw),
                 [rng.standard_normal((2, 4, 5))], dtype, device)


def test_conv_transpose_output_size(torch):
    ours, theirs = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1), \
        torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    copy_from_torch(ours, theirs)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    y = ours(pydl.tensor(x), output_size=(8, 8))
    ty = theirs(torch.tensor(x), output_size=(8, 8))
    assert y.shape == (1, 3, 8, 8)
    assert_close(y.detach(), ty.detach().numpy())


def _pool_config(rng, max_pool):
    k = int(rng.integers(1, 4))
    stride = int(rng.integers(1, 4))
    padding = int(rng.integers(0, k // 2 + 1))
    kw = dict(kernel_size=k, stride=stride, padding=padding, ceil_mode=bool(rng.integers(2)))
    if not max_pool:  # (max pooling with dilation > 1 is not implemented by pydl)
        kw["count_include_pad"] = bool(rng.integers(2))
    return kw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(8))
def test_pool2d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(300 + seed)
    shape = (2, 3, int(rng.integers(5, 9)), int(rng.integers(5, 9)))
    kw = _pool_config(rng, True)
    check_parity(torch, nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw),
                 [rng.standard_normal(shape)], dtype, device)
    kw = _pool_config(rng, False)
    if seed % 3 == 0:
        kw["divisor_override"] = 2
    check_parity(torch, nn.AvgPool2d(**kw), torch.nn.AvgPool2d(**kw),
                 [rng.standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(3))
def test_pool1d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(400 + seed)
    shape = (2, 3, int(rng.integers(5, 10)))
    kw = _pool_config(rng, True)
    check_parity(torch, nn.MaxPool1d(**kw), torch.nn.MaxPool1d(**kw),
                 [rng.standard_normal(shape)], dtype, device)
    kw = _pool_config(rng, False)
    check_parity(torch, nn.AvgPool1d(**kw), torch.nn.AvgPool1d(**kw),
                 [rng.standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", _seeds(4))
def test_pool3d_parity(torch, seed, dtype, device):
    rng = np.random.default_rng(600 + seed)
    shape = (2, 2) + tuple(int(v) for v in rng.integers(4, 7, size=3))
    kw = _pool_config(rng, True)
    check_parity(torch, nn.MaxPool3d(**kw), torch.nn.MaxPool3d(**kw),
                 [rng.standard_normal(shape)], dtype, device)
    kw = _pool_config(rng, False)
    if seed % 2 == 0:
        kw["divisor_override"] = 3
    check_parity(torch, nn.AvgPool3d(**kw), torch.nn.AvgPool3d(**kw),
                 [rng.standard_normal(shape)], dtype, device)


def test_maxpool3d_return_indices_match_torch(torch, device):
    """The module returns (values, indices); the indices are PyTorch's flat ones, also with
    padding, ceil_mode, unbatched input and ties (the first maximum in (d, h, w) order)."""
    rng = np.random.default_rng(11)
    cases = [
        (dict(kernel_size=2), (2, 3, 4, 6, 5), False),
        (dict(kernel_size=(3, 2, 3), stride=(2, 1, 2), padding=1, ceil_mode=True),
         (1, 2, 5, 4, 7), False),
        (dict(kernel_size=2, stride=1), (2, 3, 4, 4), False),            # unbatched
        (dict(kernel_size=3, stride=2, padding=1), (1, 2, 5, 5, 5), True),  # many ties
    ]
    for kw, shape, ties in cases:
        a = rng.integers(0, 3, size=shape).astype(np.float64) if ties else \
            rng.standard_normal(shape)
        y, idx = nn.MaxPool3d(**kw, return_indices=True)(
            pydl.tensor(a, dtype=pydl.float64, device=device))
        ty, tidx = torch.nn.MaxPool3d(**kw, return_indices=True)(torch.tensor(a))
        assert idx.dtype == pydl.int64 and idx.shape == tuple(tidx.shape), kw
        assert_close(y, ty.numpy(), rtol=0, atol=0)
        np.testing.assert_array_equal(idx.numpy(), tidx.numpy(), err_msg=str(kw))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out", [1, 3, (2, 5), (4, 1)])
def test_adaptive_pool_parity(torch, out, dtype, device):
    x = np.random.default_rng(5).standard_normal((2, 3, 7, 9))
    check_parity(torch, nn.AdaptiveAvgPool2d(out), torch.nn.AdaptiveAvgPool2d(out), [x], dtype,
                 device)
    check_parity(torch, nn.AdaptiveMaxPool2d(out), torch.nn.AdaptiveMaxPool2d(out), [x], dtype,
                 device)
    n = out if isinstance(out, int) else out[0]
    check_parity(torch, nn.AdaptiveAvgPool1d(n), torch.nn.AdaptiveAvgPool1d(n), [x[:, :, 0]],
                 dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw, shape", [
    (dict(scale_factor=2), (2, 3, 4, 5)),
    (dict(scale_factor=3), (1, 2, 3, 2)),
    (dict(scale_factor=(2, 3)), (1, 2, 3, 4)),
    (dict(scale_factor=1.5), (1, 2, 4, 5)),
    (dict(size=(7, 5)), (1, 2, 3, 4)),
    (dict(size=3), (1, 2, 5, 6)),
    (dict(scale_factor=2, mode="nearest-exact"), (1, 2, 3, 3)),
    (dict(size=(5, 7), mode="nearest-exact"), (1, 2, 3, 4)),
    (dict(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    (dict(scale_factor=2, mode="bilinear", align_corners=True), (1, 2, 4, 3)),
    (dict(size=(7, 3), mode="bilinear"), (1, 2, 4, 5)),
    (dict(size=(6, 9), mode="bilinear", align_corners=True), (1, 2, 4, 5)),
    (dict(scale_factor=0.5, mode="bilinear"), (1, 2, 8, 6)),
])
def test_upsample_parity(torch, kw, shape, dtype, device):
    x = np.random.default_rng(6).standard_normal(shape)
    check_parity(torch, nn.Upsample(**kw), torch.nn.Upsample(**kw), [x], dtype, device)


@pytest.mark.parametrize("kw", [dict(scale_factor=2), dict(size=7, mode="linear"),
                                dict(scale_factor=3, mode="linear", align_corners=True)])
def test_upsample_1d_parity(torch, kw, device):
    x = np.random.default_rng(6).standard_normal((2, 3, 4))
    check_parity(torch, nn.Upsample(**kw), torch.nn.Upsample(**kw), [x], pydl.float64, device)


def test_upsample_nearest_is_block_copy():
    x = pydl.arange(6.0).reshape(1, 1, 2, 3)
    y = nn.Upsample(scale_factor=2)(x).numpy()[0, 0]
    np.testing.assert_array_equal(y, np.kron(np.arange(6.0).reshape(2, 3), np.ones((2, 2))))
    assert nn.functional.interpolate(x, size=(4, 6)).shape == (1, 1, 4, 6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flatten_unflatten_parity(torch, dtype, device):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5))
    check_parity(torch, nn.Flatten(), torch.nn.Flatten(), [x], dtype, device)
    check_parity(torch, nn.Flatten(0, 2), torch.nn.Flatten(0, 2), [x], dtype, device)
    check_parity(torch, nn.Unflatten(2, (2, 2)), torch.nn.Unflatten(2, (2, 2)), [x], dtype,
                 device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_parity(torch, padding_idx, dtype, device):
    ids = np.array([[0, 3, 4], [4, 4, 1]])
    ours = check_parity(torch, nn.Embedding(5, 3, padding_idx=padding_idx),
                        torch.nn.Embedding(5, 3, padding_idx=padding_idx), [ids], dtype, device)
    if padding_idx is not None:
        assert not ours.weight.detach().numpy()[padding_idx].any()
        fresh = nn.Embedding(5, 3, padding_idx=padding_idx)
        assert not fresh.weight.detach().numpy()[padding_idx].any()


def test_embedding_from_pretrained():
    w = pydl.randn(4, 2)
    emb = nn.Embedding.from_pretrained(w)
    assert not emb.weight.requires_grad
    assert_close(emb(pydl.tensor([3])), w[3:4])


# -- torch parity: normalization -----------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, shape", [
    ("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 5)), ("BatchNorm2d", (4, 3, 3, 2)),
])
@pytest.mark.parametrize("opts", [
    dict(), dict(momentum=None), dict(momentum=0.3, affine=False),
    dict(track_running_stats=False), dict(eps=1e-3, bias=False),
])
def test_batchnorm_parity_over_steps(torch, cls, shape, opts, dtype, device):
    rng = np.random.default_rng(11)
    ours, theirs = getattr(nn, cls)(3, **opts), getattr(torch.nn, cls)(3, **opts)
    with torch.no_grad():  # non-trivial affine parameters
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.uniform(0.5, 1.5, p.shape)))
    x = rng.standard_normal(shape) * 3 + 1
    # several training steps: outputs, gradients and running statistics agree at each one
    check_parity(torch, ours, theirs, [x], dtype, device, steps=4)
    # then evaluation with the running statistics
    ours.eval(), theirs.eval()
    check_parity(torch, ours, theirs, [rng.standard_normal(shape)], dtype, device)


def test_batchnorm_train_eval_differ_and_needs_batch():
    bn = nn.BatchNorm1d(2)
    x = pydl.randn(8, 2) * 5 + 3
    y_train = bn(x).detach().numpy()
    np.testing.assert_allclose(y_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y_train.std(0), 1, atol=1e-3)
    bn.eval()
    y_eval = bn(x).detach().numpy()
    assert not np.allclose(y_eval, y_train)
    assert int(bn.num_batches_tracked.item()) == 1
    bn.train()
    with pytest.raises(ValueError, match="more than 1 value"):
        bn(pydl.randn(1, 2))
    with pytest.raises(ValueError, match="3 channels"):
        bn(pydl.randn(4, 3))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, normalized, opts", [
    ((2, 5), 5, dict()),
    ((2, 3, 4), (4,), dict(eps=1e-3)),
    ((2, 3, 4), (3, 4), dict()),
    ((3, 2, 2, 3), (2, 3), dict(elementwise_affine=False)),
    ((4, 6), 6, dict(bias=False)),
])
def test_layernorm_parity(torch, shape, normalized, opts, dtype, device):
    rng = np.random.default_rng(12)
    ours, theirs = nn.LayerNorm(normalized, **opts), torch.nn.LayerNorm(normalized, **opts)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.uniform(0.5, 1.5, p.shape)))
    check_parity(torch, ours, theirs, [rng.standard_normal(shape) * 2 + 1], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups, channels, shape, affine", [
    (1, 4, (2, 4, 3), True), (2, 4, (2, 4, 3, 2), True), (4, 4, (3, 4, 5), False),
    (3, 6, (2, 6, 2, 2), True),
])
def test_groupnorm_parity(torch, groups, channels, shape, affine, dtype, device):
    rng = np.random.default_rng(13)
    ours = nn.GroupNorm(groups, channels, affine=affine)
    theirs = torch.nn.GroupNorm(groups, channels, affine=affine)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.tensor(rng.uniform(0.5, 1.5, p.shape)))
    check_parity(torch, ours, theirs, [rng.standard_normal(shape)], dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls, shape, opts", [
    ("InstanceNorm1d", (2, 3, 5), dict()), ("InstanceNorm2d", (2, 3, 4, 4), dict(affine=True)),
    ("InstanceNorm2d", (3, 3, 2, 3), dict(track_running_stats=True, affine=True)),
])
def test_instancenorm_parity(torch, cls, shape, opts, dtype, device):
    rng = np.random.default_rng(14)
    ours, theirs = getattr(nn, cls)(3, **opts), getattr(torch.nn, cls)(3, **opts)
    check_parity(torch, ours, theirs, [rng.standard_normal(shape)], dtype, device, steps=2)
    ours.eval(), theirs.eval()
    check_parity(torch, ours, theirs, [rng.standard_normal(shape)], dtype, device)


# -- torch parity: activations -------------------------------------------------------------
ACTIVATIONS = [
    ("ReLU", {}), ("LeakyReLU", {"negative_slope": 0.2}), ("Sigmoid", {}), ("Tanh", {}),
    ("GELU", {}), ("GELU", {"approximate": "tanh"}), ("ELU", {"alpha": 0.5}), ("SiLU", {}),
    ("Softplus", {}), ("Softplus", {"beta": 2.0, "threshold": 1.0}), ("Softmax", {"dim": 1}),
    ("Softmax", {"dim": 0}), ("LogSoftmax", {"dim": -1}), ("Softmin", {"dim": 1}),
    ("ReLU6", {}), ("SELU", {}), ("CELU", {"alpha": 2.0}), ("Mish", {}), ("Hardtanh", {}),
    ("Hardsigmoid", {}), ("Hardswish", {}), ("LogSigmoid", {}), ("Softsign", {}),
    ("Tanhshrink", {}), ("GLU", {"dim": 1}), ("PReLU", {}), ("PReLU", {"num_parameters": 4}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", ACTIVATIONS)
def test_activation_parity(torch, name, kw, dtype, device):
    x = np.random.default_rng(15).uniform(-4, 4, (3, 4, 5))
    check_parity(torch, getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw), [x], dtype,
                 device)


def test_implicit_softmax_dim(torch):
    x = np.random.default_rng(0).standard_normal((2, 3))
    with pytest.warns(UserWarning):
        ref = torch.nn.Softmax()(torch.tensor(x)).numpy()
    assert_close(nn.Softmax()(pydl.tensor(x, dtype=pydl.float64)), ref)


def test_inplace_activation_writes_input():
    x = pydl.tensor([-1.0, 2.0])
    y = nn.ReLU(inplace=True)(x)
    assert y is x and x.tolist() == [0.0, 2.0]
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"


# -- torch parity: losses ------------------------------------------------------------------
def _loss_cases(rng):
    n, c = 6, 4
    logits = rng.standard_normal((n, c)) * 2
    probs = 1 / (1 + np.exp(-rng.standard_normal((n, c))))
    y01 = (rng.random((n, c)) > 0.5).astype(np.float64)
    soft = rng.random((n, c))
    soft = soft / soft.sum(1, keepdims=True)
    cls = rng.integers(0, c, n)
    cls_ignore = cls.copy()
    cls_ignore[[1, 4]] = -100
    w = rng.uniform(0.5, 2.0, c)
    a, b = rng.standard_normal((n, c)), rng.standard_normal((n, c)) * 2
    spatial = rng.standard_normal((2, c, 3, 2))
    spatial_t = rng.integers(0, c, (2, 3, 2))
    logp = np.log(soft)
    return [
        ("MSELoss", {}, [a, ("nograd", b)], None),
        ("L1Loss", {}, [a, ("nograd", b)], None),
        ("HuberLoss", {"delta": 0.7}, [a, ("nograd", b)], None),
        ("SmoothL1Loss", {"beta": 0.5}, [a, ("nograd", b)], None),
        ("BCELoss", {}, [probs, ("nograd", y01)], None),
        ("BCELoss", {"weight": "w_nc"}, [probs, ("nograd", soft)], None),
        ("BCEWithLogitsLoss", {}, [logits, ("nograd", y01)], None),
        ("BCEWithLogitsLoss", {"pos_weight": "w", "weight": "w"}, [logits, ("nograd", y01)],
         None),
        ("CrossEntropyLoss", {}, [logits, cls], None),
        ("CrossEntropyLoss", {"weight": "w", "ignore_index": -100}, [logits, cls_ignore], None),
        ("CrossEntropyLoss", {"label_smoothing": 0.1, "weight": "w"}, [logits, cls], None),
        ("CrossEntropyLoss", {"ignore_index": 2}, [spatial, spatial_t], None),
        ("CrossEntropyLoss", {}, [logits, ("nograd", soft)], None),
        ("NLLLoss", {}, [logp, cls], None),
        ("NLLLoss", {"weight": "w", "ignore_index": 1}, [logp, cls], None),
        ("KLDivLoss", {}, [logp, ("nograd", soft)], None),
        ("KLDivLoss", {"log_target": True}, [logits, ("nograd", logp)], None),
    ], {"w": w, "w_nc": rng.uniform(0.5, 2.0, (n, c))}


@pytest.mark.filterwarnings("ignore:reduction")  # torch's note on KLDivLoss 'mean'
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", range(17))
def test_loss_parity(torch, case, reduction, dtype, device):
    cases, weights = _loss_cases(np.random.default_rng(16))
    name, kw, inputs, _ = cases[case]
    ours_kw, theirs_kw = {}, {}
    for k, v in kw.items():
        if isinstance(v, str):
            ours_kw[k] = pydl.tensor(weights[v], dtype=dtype, device=device)
            theirs_kw[k] = torch.tensor(weights[v], dtype=_tdtype(torch, dtype))
        else:
            ours_kw[k] = theirs_kw[k] = v
    ours = getattr(nn, name)(reduction=reduction, **ours_kw)
    theirs = getattr(torch.nn, name)(reduction=reduction, **theirs_kw)
    check_parity(torch, ours, theirs, inputs, dtype, device)


def test_kl_div_batchmean(torch):
    rng = np.random.default_rng(0)
    logp = np.log(rng.dirichlet(np.ones(5), 4))
    q = rng.dirichlet(np.ones(5), 4)
    check_parity(torch, nn.KLDivLoss(reduction="batchmean"),
                 torch.nn.KLDivLoss(reduction="batchmean"), [logp, ("nograd", q)])


def test_loss_weight_is_a_buffer():
    loss = nn.CrossEntropyLoss(weight=pydl.ones(3))
    assert list(loss.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    loss.to(pydl.float64)
    assert loss.weight.dtype == pydl.float64
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_gradcheck(dtype):
    x = r64(4, 3)
    t = pydl.tensor([0, 2, 1, 2])
    assert gradcheck(lambda a: nn.CrossEntropyLoss(label_smoothing=0.2)(a, t), [x])
    assert gradcheck(lambda a: nn.HuberLoss(delta=0.5)(a, pydl.zeros(4, 3, dtype=pydl.float64)),
                     [x])


# -- dropout -------------------------------------------------------------------------------
def test_dropout_train_and_eval(device):
    drop = nn.Dropout(0.3)
    x = pydl.ones(200, 100, device=device)
    y = drop(x).numpy()
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    drop.eval()
    assert drop(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert not nn.Dropout(1.0)(x).numpy().any()
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)
    pydl.manual_seed(5)
    a = nn.Dropout(0.5)(x).numpy()
    pydl.manual_seed(5)
    np.testing.assert_array_equal(a, nn.Dropout(0.5)(x).numpy())


def test_dropout2d_drops_whole_channels():
    y = nn.Dropout2d(0.5)(pydl.ones(8, 16, 3, 3)).numpy()
    per_channel = y.reshape(8, 16, 9)
    assert np.all((per_channel == 0).all(-1) | (per_channel == 2).all(-1))


# -- a small model end to end --------------------------------------------------------------
def test_small_cnn_matches_torch(torch, device):
    tn = torch.nn
    ours = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding="same", bias=False), nn.GroupNorm(2, 8), nn.GELU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10), nn.LogSoftmax(dim=1),
    )
    theirs = tn.Sequential(
        tn.Conv2d(1, 4, 3, padding=1), tn.BatchNorm2d(4), tn.ReLU(), tn.MaxPool2d(2),
        tn.Conv2d(4, 8, 3, padding="same", bias=False), tn.GroupNorm(2, 8), tn.GELU(),
        tn.AdaptiveAvgPool2d(2), tn.Flatten(), tn.Linear(32, 10), tn.LogSoftmax(dim=1),
    )
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8))
    check_parity(torch, ours, theirs, [x], pydl.float64, device, steps=2)
    ours.eval(), theirs.eval()
    check_parity(torch, ours, theirs, [x], pydl.float32, device)


def test_layer_validation_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="normalized"):
        nn.LayerNorm(4)(pydl.randn(2, 5))
    with pytest.raises(ValueError, match="exactly one"):
        nn.Upsample()(pydl.randn(1, 1, 2, 2))


def test_default_init_matches_torch_distribution(torch):
    """Weights and biases are U(-b, b) with PyTorch's bound b, as sampled by PyTorch too."""
    pydl.manual_seed(0)
    torch.manual_seed(0)
    cases = [("Linear", (300, 200), 300), ("Conv2d", (16, 32, 3), 16 * 9),
             ("ConvTranspose2d", (32, 16, 3), 16 * 9), ("Conv1d", (8, 64, 5), 8 * 5),
             ("Conv3d", (4, 16, 3), 4 * 27),
             ("Bilinear", (30, 20, 50), 30)]
    for name, args, fan_in in cases:
        ours, theirs = getattr(nn, name)(*args), getattr(torch.nn, name)(*args)
        bound = 1 / math.sqrt(fan_in)
        for (n1, p), (n2, q) in zip(ours.named_parameters(), theirs.named_parameters(),
                                    strict=True):
            assert n1 == n2 and p.shape == tuple(q.shape)
            for w in (np.abs(p.detach().numpy()), np.abs(q.detach().numpy())):
                assert w.max() <= bound * (1 + 1e-6), (name, n1)
                if w.size >= 1000:  # enough samples to pin down the distribution
                    assert w.max() >= 0.99 * bound, (name, n1)
                    assert w.mean() == pytest.approx(bound / 2, rel=0.05), (name, n1)
    assert math.isclose(float(nn.PReLU().weight.item()), 0.25)
