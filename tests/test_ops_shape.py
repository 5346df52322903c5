"""Shape ops: NumPy reference (float64), gradcheck, views and versions, errors, torch parity."""

import numpy as np
import pytest

import pydl
from pydl.testing import assert_close, gradcheck


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def T(a, device, grad=False):
    return pydl.tensor(np.asarray(a, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=grad)


def host(t):
    return np.asarray(t.detach())


# -- forward against NumPy + gradcheck -------------------------------------------------------
# (name, input shape, pydl fn, numpy reference)
CASES = [
    ("reshape", (3, 4), lambda x: x.reshape(2, 6), lambda a: a.reshape(2, 6)),
    ("reshape-1", (7, 3, 5), lambda x: x.reshape(-1, 5), lambda a: a.reshape(-1, 5)),
    ("reshape-tuple", (2, 3), lambda x: pydl.reshape(x, (3, 2)), lambda a: a.reshape(3, 2)),
    ("reshape0d", (), lambda x: x.reshape(1, 1), lambda a: a.reshape(1, 1)),
    ("reshape-to0d", (1,), lambda x: x.reshape(()), lambda a: a.reshape(())),
    ("view", (7, 3, 5), lambda x: x.view(7, 15), lambda a: a.reshape(7, 15)),
    ("flatten", (2, 3, 4), lambda x: x.flatten(), lambda a: a.reshape(-1)),
    ("flatten12", (2, 3, 4, 5), lambda x: x.flatten(1, 2), lambda a: a.reshape(2, 12, 5)),
    ("flatten0d", (), lambda x: x.flatten(), lambda a: a.reshape(1)),
    ("unflatten", (2, 12), lambda x: x.unflatten(1, (3, -1)), lambda a: a.reshape(2, 3, 4)),
    ("transpose", (7, 3, 5), lambda x: x.transpose(0, 2), lambda a: a.swapaxes(0, 2)),
    ("transpose-neg", (3, 4), lambda x: x.transpose(-1, -2), lambda a: a.T),
    ("t", (3, 4), lambda x: x.t(), lambda a: a.T),
    ("T", (2, 3, 4), lambda x: x.T, lambda a: a.transpose(2, 1, 0)),
    ("mT", (2, 3, 4), lambda x: x.mT, lambda a: a.swapaxes(-1, -2)),
    ("permute", (2, 3, 5), lambda x: x.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1)),
    ("permute-tuple", (2, 3, 5), lambda x: x.permute((1, 2, 0)),
     lambda a: a.transpose(1, 2, 0)),
    ("movedim", (2, 3, 5), lambda x: x.movedim(0, -1), lambda a: np.moveaxis(a, 0, -1)),
    ("movedim2", (2, 3, 5, 7), lambda x: pydl.movedim(x, (0, 1), (3, 0)),
     lambda a: np.moveaxis(a, (0, 1), (3, 0))),
    ("squeeze", (1, 3, 1, 2), lambda x: x.squeeze(), lambda a: a.squeeze()),
    ("squeeze-dim", (1, 3, 1, 2), lambda x: x.squeeze(2), lambda a: a.squeeze(2)),
    ("squeeze-noop", (1, 3, 1, 2), lambda x: x.squeeze(1), lambda a: a),
    ("squeeze-tuple", (1, 3, 1, 2), lambda x: x.squeeze((0, 2)), lambda a: a.reshape(3, 2)),
    ("unsqueeze", (3, 2), lambda x: x.unsqueeze(1), lambda a: a[:, None]),
    ("unsqueeze-end", (3, 2), lambda x: x.unsqueeze(-1), lambda a: a[..., None]),
    ("unsqueeze0d", (), lambda x: x.unsqueeze(0), lambda a: a.reshape(1)),
    ("expand", (3, 1), lambda x: x.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4))),
    ("expand-1", (3, 1), lambda x: x.expand(-1, 5), lambda a: np.broadcast_to(a, (3, 5))),
    ("expand0d", (), lambda x: x.expand(2, 3), lambda a: np.broadcast_to(a, (2, 3))),
    ("broadcast_to", (1, 4), lambda x: pydl.broadcast_to(x, (3, 4)),
     lambda a: np.broadcast_to(a, (3, 4))),
    ("flip", (7, 3, 5), lambda x: x.flip(0, 2), lambda a: a[::-1, :, ::-1]),
    ("flip-list", (4, 3), lambda x: pydl.flip(x, [1]), lambda a: a[:, ::-1]),
    ("repeat", (2, 3), lambda x: x.repeat(2, 1, 3), lambda a: np.tile(a, (2, 1, 3))),
    ("repeat0d", (), lambda x: x.repeat(3), lambda a: np.tile(a, 3)),
    ("tile", (2, 3), lambda x: x.tile(2), lambda a: np.tile(a, 2)),
    ("narrow", (5, 4), lambda x: x.narrow(0, 1, 3), lambda a: a[1:4]),
    ("pad", (3, 4), lambda x: pydl.pad(x, (1, 2)),
     lambda a: np.pad(a, ((0, 0), (1, 2)))),
    ("pad2", (2, 3, 4), lambda x: pydl.pad(x, (1, 0, 2, 3), value=1.5),
     lambda a: np.pad(a, ((0, 0), (2, 3), (1, 0)), constant_values=1.5)),
    ("pad-crop", (3, 5), lambda x: pydl.pad(x, (-1, 2, 1, -2)),
     lambda a: np.pad(a[:-2, 1:], ((1, 0), (0, 2)))),
    ("pad-reflect", (2, 3, 5), lambda x: pydl.pad(x, (2, 4, 1, 2), mode="reflect"),
     lambda a: np.pad(a, ((0, 0), (1, 2), (2, 4)), mode="reflect")),
    ("pad-replicate", (2, 3, 5), lambda x: pydl.pad(x, (3, 1), mode="replicate"),
     lambda a: np.pad(a, ((0, 0), (0, 0), (3, 1)), mode="edge")),
    ("pad-circular", (2, 3, 5), lambda x: pydl.pad(x, (2, 3, 1, 0), mode="circular"),
     lambda a: np.pad(a, ((0, 0), (1, 0), (2, 3)), mode="wrap")),
]


@pytest.mark.parametrize("name,shape,fn,ref", CASES, ids=[c[0] for c in CASES])
def test_forward_and_grad(device, name, shape, fn, ref):
    a = rnd(*shape)
    x = T(a, device, grad=True)
    out = fn(x)
    assert_close(out, ref(a))
    assert out.dtype == pydl.float64 and out.device == x.device
    gradcheck(fn, [T(a, device, grad=True)])


@pytest.mark.parametrize("name,shape,fn,ref", CASES, ids=[c[0] for c in CASES])
def test_forward_non_contiguous(device, name, shape, fn, ref):
    if len(shape) < 2:
        pytest.skip("needs 2 dims to make a non-contiguous view")
    base = rnd(*shape[:-1], 2 * shape[-1])
    a = base[..., ::2]
    x = T(base, device)[..., ::2]
    assert not x.is_contiguous()
    assert_close(fn(x), ref(a))
    # gradient through a strided view of a contiguous leaf
    gradcheck(lambda b: fn(b[..., ::2]), [T(base, device, grad=True)])
    # and through a transposed one
    if len(shape) == 2:
        gradcheck(lambda b: fn(b.t()), [T(rnd(*shape[::-1]), device, grad=True)])


def test_cat_stack(device):
    a, b, c = rnd(2, 3), rnd(4, 3, seed=1), rnd(1, 3, seed=2)
    out = pydl.cat([T(a, device), T(b, device), T(c, device)])
    assert_close(out, np.concatenate([a, b, c]))
    assert_close(pydl.concatenate((T(a, device), T(a, device)), dim=1),
                 np.concatenate([a, a], 1))
    assert_close(pydl.cat([T(a, device), T(a, device)], -1), np.concatenate([a, a], -1))
    gradcheck(lambda x, y, z: pydl.cat([x, y, z], 0),
              [T(a, device, True), T(b, device, True), T(c, device, True)])
    gradcheck(lambda x, y: pydl.cat([x, y], 1), [T(a, device, True), T(rnd(2, 5), device, True)])
    # some inputs without grad, one empty along the cat dim
    e = T(np.zeros((0, 3)), device)
    gradcheck(lambda x: pydl.cat([x, e, T(b, device)]), [T(a, device, True)])
    s = pydl.stack([T(a, device), T(a * 2, device)], 1)
    assert_close(s, np.stack([a, a * 2], 1))
    gradcheck(lambda x, y: pydl.stack([x, y], -1), [T(a, device, True), T(a + 1, device, True)])
    gradcheck(lambda x, y: pydl.stack([x, y]), [T(3.0, device, True), T(2.0, device, True)])


def test_split_chunk_unbind(device):
    a = rnd(7, 3, 5)
    x = T(a, device)
    parts = x.split(3)
    assert [p.shape for p in parts] == [(3, 3, 5), (3, 3, 5), (1, 3, 5)]
    assert_close(parts[2], a[6:])
    parts = pydl.split(x, [2, 0, 3], dim=2)
    assert [p.shape for p in parts] == [(7, 3, 2), (7, 3, 0), (7, 3, 3)]
    assert_close(parts[2], a[:, :, 2:])
    chunks = x.chunk(3, dim=2)
    assert [p.shape[2] for p in chunks] == [2, 2, 1]
    assert [p.shape[0] for p in x.chunk(4)] == [2, 2, 2, 1]
    assert [p.shape[0] for p in x.chunk(6)] == [2, 2, 2, 1]  # fewer chunks, as in PyTorch
    rows = x.unbind(1)
    assert len(rows) == 3 and rows[1].shape == (7, 5)
    assert_close(rows[1], a[:, 1])
    # gradients: all pieces, only some pieces used
    gradcheck(lambda t: x_mul(t.split(3), [1.0, 2.0, 3.0]), [T(a, device, True)])
    gradcheck(lambda t: t.split([2, 5])[1], [T(a, device, True)])
    gradcheck(lambda t: t.chunk(2, -1), [T(a, device, True)])
    gradcheck(lambda t: t.unbind(2)[3] * 2, [T(a, device, True)])
    gradcheck(lambda t: pydl.stack(t.unbind(0), 1), [T(a, device, True)])


def x_mul(parts, weights):
    return tuple(p * w for p, w in zip(parts, weights, strict=True))


# -- views and versions ----------------------------------------------------------------------
VIEW_OPS = [
    ("reshape", lambda x: x.reshape(3, 4)),
    ("view", lambda x: x.view(-1)),
    ("flatten", lambda x: x.flatten()),
    ("transpose", lambda x: x.transpose(0, 1)),
    ("permute", lambda x: x.permute(1, 0)),
    ("unsqueeze", lambda x: x.unsqueeze(0)),
    ("squeeze", lambda x: x.unsqueeze(1).squeeze(1)),
    ("expand", lambda x: x.unsqueeze(0).expand(2, 4, 3)),
    ("split", lambda x: x.split(2)[1]),
    ("unbind", lambda x: x.unbind(0)[1]),
    ("narrow", lambda x: x.narrow(1, 1, 2)),
    ("getitem", lambda x: x[1:, ::2]),
    ("getitem-int", lambda x: x[1]),
]


@pytest.mark.parametrize("name,op", VIEW_OPS, ids=[v[0] for v in VIEW_OPS])
def test_views_share_memory_and_version(device, name, op):
    x = T(rnd(4, 3), device)
    v = op(x)
    assert v._version is x._version
    with pydl.no_grad():
        x.mul_(2.0)  # a write to the base shows through the view
    assert v._version[0] == 1


def test_copies_do_not_share_version(device):
    x = T(rnd(4, 3), device)
    for out in (x.flip(0), x.repeat(2, 1), pydl.cat([x, x]), pydl.stack([x]), pydl.pad(x, (1, 1)),
                x.t().reshape(-1), x[[0, 1]], x[x > 0]):
        assert out._version is not x._version
        before = host(x).copy()
        with pydl.no_grad():
            out.zero_()
        np.testing.assert_array_equal(host(x), before)


def test_inplace_through_view_before_backward_raises(device):
    x = T(rnd(4, 3), device, grad=True)
    y = x * 1.0
    z = y * y  # saves y
    v = y.view(-1)
    v[0] = 5.0  # writes into y's memory through the view
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward(pydl.ones_like(z))


def test_inplace_on_base_seen_by_op_that_saved_view(device):
    x = T(rnd(4, 3), device, grad=True)
    y = x * 1.0
    v = y.transpose(0, 1)
    z = v * v  # saves v (a view of y)
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        z.backward(pydl.ones_like(z))


def test_view_chain_backward(device):
    x = T(rnd(4, 3), device, grad=True)
    y = x.view(3, 4).transpose(0, 1).reshape(-1)  # reshape of a transposed view copies
    y.backward(T(np.arange(12.0), device))
    idx = np.arange(12).reshape(3, 4).T.reshape(-1)  # y[k] = x.flat[idx[k]]
    want = np.zeros(12)
    want[idx] = np.arange(12.0)
    np.testing.assert_array_equal(host(x.grad), want.reshape(4, 3))


def test_view_non_contiguous_raises_reshape_copies(device):
    x = T(rnd(3, 4), device).t()  # (4, 3), not contiguous
    with pytest.raises(RuntimeError, match=r"view size is not compatible.*reshape"):
        x.view(12)
    y = x.reshape(12)  # copies
    assert_close(y, host(x).reshape(12))
    assert y._version is not x._version
    # views that ARE possible on non-contiguous tensors
    assert x.view(4, 1, 3).shape == (4, 1, 3)
    z = T(rnd(4, 6), device)[:, :4]  # rows of 4 out of 6
    assert z.view(2, 2, 4).shape == (2, 2, 4)
    assert z.view(4, 2, 2).shape == (4, 2, 2)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        z.view(16)


def test_expand_is_a_view_without_copy(device):
    x = T(rnd(3, 1), device)
    e = x.expand(3, 1000)
    assert e.data.strides[1] == 0


# -- errors ----------------------------------------------------------------------------------
def test_errors_name_shapes(device):
    x = T(rnd(3, 4), device)
    with pytest.raises(RuntimeError, match=r"\(5, 3\) is invalid for input of shape \(3, 4\)"):
        x.reshape(5, 3)
    with pytest.raises(RuntimeError, match="only one dimension can be inferred"):
        x.reshape(-1, -1)
    with pytest.raises(RuntimeError, match=r"expanded size 5 must match the existing size 4"):
        x.expand(3, 5)
    with pytest.raises(IndexError, match="out of range"):
        x.transpose(0, 2)
    with pytest.raises(IndexError, match="out of range"):
        x.unsqueeze(3)
    with pytest.raises(RuntimeError, match="not a permutation"):
        x.permute(0, 0)
    with pytest.raises(RuntimeError, match="doesn't match"):
        x.permute(0, 1, 2)
    with pytest.raises(RuntimeError, match=r"\(3, 4\).*\(3, 5\)"):
        pydl.cat([x, T(rnd(3, 5), device)])
    with pytest.raises(RuntimeError, match="zero-dimensional"):
        pydl.cat([T(1.0, device), T(2.0, device)])
    assert pydl.cat([x, x.float()]).dtype == pydl.float64  # promoted, as torch.cat
    with pytest.raises(RuntimeError, match="non-empty"):
        pydl.cat([])
    with pytest.raises(RuntimeError, match=r"\(3, 4\).*\(4, 3\)"):
        pydl.stack([x, x.t()])
    with pytest.raises(RuntimeError, match="sum to the size 3"):
        x.split([1, 1])
    with pytest.raises(RuntimeError, match="can not be smaller"):
        x.repeat(2)
    with pytest.raises(RuntimeError, match="must be even"):
        pydl.pad(x, (1,))
    with pytest.raises(RuntimeError, match="reflect padding"):
        pydl.pad(x, (4, 0), mode="reflect")
    with pytest.raises(ValueError, match="unknown mode"):
        pydl.pad(x, (1, 1), mode="nope")
    with pytest.raises(RuntimeError, match="dim appears multiple times"):
        x.flip(0, 0)


@pytest.mark.gpu
def test_cat_mixed_devices_names_both():
    a = pydl.zeros(2, 3)
    b = pydl.zeros(2, 3, device="cuda")
    with pytest.raises(RuntimeError, match=r"cpu.*cuda"):
        pydl.cat([a, b])


def test_int_and_bool_tensors(device):
    x = pydl.arange(12, device=device).reshape(3, 4)
    assert x.dtype == pydl.int64
    np.testing.assert_array_equal(host(x.t().flip(0)), np.arange(12).reshape(3, 4).T[::-1])
    m = x > 5
    assert m.reshape(-1).dtype == pydl.bool
    np.testing.assert_array_equal(host(pydl.cat([m, m], 1)), np.concatenate([host(m)] * 2, 1))


def test_empty_tensors(device):
    x = T(np.zeros((0, 3)), device, grad=True)
    y = x.reshape(3, 0)
    assert y.shape == (3, 0)
    assert x.view(0, 1, 3).shape == (0, 1, 3)
    out = pydl.cat([x, T(rnd(2, 3), device)])
    out.backward(pydl.ones_like(out))
    assert x.grad.shape == (0, 3)
    assert x.transpose(0, 1).shape == (3, 0)


# -- torch parity (float64) ------------------------------------------------------------------
torch_cases = [
    ("reshape", (2, 3, 4), lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1)),
    ("view", (2, 3, 4), lambda x: x.view(6, 4), lambda x: x.view(6, 4)),
    ("flatten", (2, 3, 4, 5), lambda x: x.flatten(1, -2), lambda x: x.flatten(1, -2)),
    ("unflatten", (2, 12), lambda x: x.unflatten(1, (2, 2, 3)),
     lambda x: x.unflatten(1, (2, 2, 3))),
    ("transpose", (2, 3, 4), lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2)),
    ("permute", (2, 3, 4), lambda x: x.permute(1, 2, 0), lambda x: x.permute(1, 2, 0)),
    ("movedim", (2, 3, 4, 5), lambda x: x.movedim((3, 0), (1, 2)),
     lambda x: x.movedim((3, 0), (1, 2))),
    ("squeeze", (1, 3, 1), lambda x: x.squeeze(), lambda x: x.squeeze()),
    ("squeeze-dim", (1, 3, 1), lambda x: x.squeeze(-1), lambda x: x.squeeze(-1)),
    ("unsqueeze", (2, 3), lambda x: x.unsqueeze(-2), lambda x: x.unsqueeze(-2)),
    ("expand", (3, 1), lambda x: x.expand(2, -1, 4), lambda x: x.expand(2, -1, 4)),
    ("flip", (2, 3, 4), lambda x: x.flip(0, -1), lambda x: x.flip(0, -1)),
    ("repeat", (2, 3), lambda x: x.repeat(3, 1, 2), lambda x: x.repeat(3, 1, 2)),
    ("tile", (2, 3), lambda x: x.tile((2,)), lambda x: x.tile((2,))),
    ("narrow", (5, 4), lambda x: x.narrow(1, -3, 2), lambda x: x.narrow(1, -3, 2)),
    ("split", (7, 4), lambda x: x.split(3), lambda x: x.split(3)),
    ("split-list", (7, 4), lambda x: x.split([1, 3], 1), lambda x: x.split([1, 3], 1)),
    ("chunk", (7, 4), lambda x: x.chunk(3), lambda x: x.chunk(3)),
    ("unbind", (3, 4), lambda x: x.unbind(1), lambda x: x.unbind(1)),
]


def _pad_case(pad, mode, value=0.0):
    return (f"pad-{mode}-{pad}", (2, 3, 5, 6),
            lambda x: pydl.pad(x, pad, mode=mode, value=value) if mode == "constant"
            else pydl.pad(x, pad, mode=mode),
            lambda x: _tf().pad(x, pad, mode=mode, value=value) if mode == "constant"
            else _tf().pad(x, pad, mode=mode))


def _tf():
    import torch.nn.functional as F

    return F


torch_cases += [
    _pad_case((1, 2), "constant", 0.5),
    _pad_case((1, 2, 0, 3, 1, 1), "constant"),
    _pad_case((-1, 2, 3, -2), "constant"),
    _pad_case((2, 3, 1, 2), "reflect"),
    _pad_case((4, 1, 0, 2), "replicate"),
    _pad_case((3, 2, 1, 2), "circular"),
]


def _torch_compare(device, pfn, tfn, arrays, atol=1e-12):
    torch = pytest.importorskip("torch")
    xs = [T(a, device, grad=True) for a in arrays]
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out, tout = pfn(*xs), tfn(*ts)
    outs = out if isinstance(out, tuple) else (out,)
    touts = tout if isinstance(tout, tuple) else (tout,)
    assert len(outs) == len(touts)
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(t.shape) for t in touts]
    for o, t in zip(outs, touts, strict=True):
        assert o.shape == tuple(t.shape)
        np.testing.assert_allclose(host(o), t.detach().numpy(), atol=atol, rtol=0)
    pydl.autograd.backward(list(outs), [T(g, device) for g in grads])
    torch.autograd.backward(list(touts), [torch.tensor(g) for g in grads])
    for x, t in zip(xs, ts, strict=True):
        np.testing.assert_allclose(host(x.grad), t.grad.numpy(), atol=atol, rtol=0)


@pytest.mark.parametrize("name,shape,pfn,tfn", torch_cases, ids=[c[0] for c in torch_cases])
def test_torch_parity(device, name, shape, pfn, tfn):
    _torch_compare(device, pfn, tfn, [rnd(*shape)])


def test_torch_parity_cat_stack(device):
    a, b = rnd(2, 3, 4), rnd(2, 5, 4, seed=1)
    torch = pytest.importorskip("torch")
    _torch_compare(device, lambda x, y: pydl.cat([x, y, x], 1),
                   lambda x, y: torch.cat([x, y, x], 1), [a, b])
    _torch_compare(device, lambda x, y: pydl.stack([x, y * 2], 2),
                   lambda x, y: torch.stack([x, y * 2], 2), [a, a + 1])


def test_torch_chunk_split_edge_cases():
    torch = pytest.importorskip("torch")
    for n in (0, 1, 5, 6, 7):
        for c in (1, 2, 3, 4, 6):
            x = pydl.zeros(n, 2)
            got = [p.shape for p in x.chunk(c)]
            want = [tuple(p.shape) for p in torch.zeros(n, 2).chunk(c)]
            assert got == want, (n, c)
        for s in (1, 2, 3, 7):
            got = [p.shape for p in pydl.zeros(n, 2).split(s)]
            want = [tuple(p.shape) for p in torch.zeros(n, 2).split(s)]
            assert got == want, (n, s)
