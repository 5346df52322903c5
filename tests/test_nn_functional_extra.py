"""F.conv3d, F.max_pool3d / avg_pool3d (composed from the 2-D/1-D kernels), bicubic
interpolate, scaled_dot_product_attention(enable_gqa=True) and scatter_reduce: float64 NumPy
references, gradchecks and torch parity."""

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl.testing import assert_close, gradcheck


def leaf(arr, device, requires_grad=True):
    return pydl.tensor(np.asarray(arr, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=requires_grad)


def host(t):
    return np.asarray(t.detach())


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _conv3d_ref(x, w, b, stride, padding, dilation, groups):
    """Direct float64 NumPy conv3d: one einsum per kernel tap."""
    n, c, *size = x.shape
    o, cg, *k = w.shape
    x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
    out = [(s + 2 * p - d * (kk - 1) - 1) // st + 1
           for s, p, d, kk, st in zip(size, padding, dilation, k, stride)]
    y = np.zeros((n, o, *out))
    og = o // groups
    for g in range(groups):
        xs, ws = x[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og]
        for i in range(k[0]):
            for j in range(k[1]):
                for m in range(k[2]):
                    patch = xs[:, :,
                               i * dilation[0]:i * dilation[0] + stride[0] * out[0]:stride[0],
                               j * dilation[1]:j * dilation[1] + stride[1] * out[1]:stride[1],
                               m * dilation[2]:m * dilation[2] + stride[2] * out[2]:stride[2]]
                    y[:, g * og:(g + 1) * og] += np.einsum("ncdhw,oc->nodhw", patch,
                                                           ws[:, :, i, j, m])
    return y + (0 if b is None else b.reshape(1, -1, 1, 1, 1))


CONV3D = [  # x shape, w shape, stride, padding, dilation, groups, bias
    ((2, 3, 5, 6, 4), (4, 3, 3, 2, 3), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, True),
    ((1, 4, 6, 5, 7), (6, 2, 2, 3, 3), (2, 1, 2), (1, 1, 0), (1, 1, 1), 2, False),
    ((2, 2, 7, 5, 5), (3, 2, 3, 3, 1), (1, 2, 1), (2, 0, 1), (2, 1, 1), 1, True),
    ((1, 1, 3, 3, 3), (2, 1, 1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), 1, True),
]


@pytest.mark.parametrize("case", CONV3D, ids=str)
def test_conv3d_forward_gradcheck_torch(case, device):
    torch = pytest.importorskip("torch")
    xs, ws, stride, padding, dilation, groups, has_bias = case
    x_np, w_np, b_np = rnd(*xs), rnd(*ws, seed=1), rnd(ws[0], seed=2)
    x, w = leaf(x_np, device), leaf(w_np, device)
    b = leaf(b_np, device) if has_bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv3d(x, w, b, **kw)
    ref = _conv3d_ref(x_np, w_np, b_np if has_bias else None, stride, padding, dilation, groups)
    assert y.shape == ref.shape
    assert_close(host(y), ref, rtol=1e-12, atol=1e-12)
    inputs = [x, w] + ([b] if has_bias else [])
    assert gradcheck(lambda *t: F.conv3d(t[0], t[1], t[2] if has_bias else None, **kw), inputs)
    tx, tw = torch.tensor(x_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
    tb = torch.tensor(b_np, requires_grad=True) if has_bias else None
    ty = torch.nn.functional.conv3d(tx, tw, tb, **kw)
    g = rnd(*ty.shape, seed=3)
    (ty * torch.tensor(g)).sum().backward()
    x, w = leaf(x_np, device), leaf(w_np, device)
    b = leaf(b_np, device) if has_bias else None
    (F.conv3d(x, w, b, **kw) * leaf(g, device, False)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(host(w.grad), tw.grad.numpy(), rtol=1e-12, atol=1e-12)
    if has_bias:
        assert_close(host(b.grad), tb.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on its own copy
def test_conv3d_same_padding_unbatched_and_errors(device):
    torch = pytest.importorskip("torch")
    x_np, w_np = rnd(2, 5, 4, 6), rnd(3, 2, 2, 3, 3, seed=1)
    y = F.conv3d(leaf(x_np, device), leaf(w_np, device), padding="same")
    ty = torch.nn.functional.conv3d(torch.tensor(x_np), torch.tensor(w_np), padding="same")
    assert y.shape == tuple(ty.shape) and y.shape == (3, 5, 4, 6)
    assert_close(host(y), ty.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="conv3d: input of shape .* and weight of shape"):
        F.conv3d(leaf(rnd(1, 3, 4, 4, 4), device), leaf(rnd(2, 2, 1, 1, 1), device))
    with pytest.raises(ValueError, match="conv3d: expected a 4-D"):
        F.conv3d(leaf(rnd(3, 4, 4), device), leaf(w_np, device))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv3d(leaf(rnd(1, 2, 1, 4, 4), device), leaf(w_np, device))


POOL3D = [  # kernel, stride, padding, ceil_mode
    (2, None, 0, False),
    ((3, 2, 3), (2, 1, 2), (1, 0, 1), False),
    ((2, 3, 2), (2, 2, 1), 0, True),
    (3, 2, 1, True),
]


def _pool3d_ref(x, kernel, stride, largest):
    """No padding: each output is the max/mean of its box."""
    n, c, *size = x.shape
    out = [(s - k) // st + 1 for s, k, st in zip(size, kernel, stride)]
    y = np.empty((n, c, *out))
    for i in range(out[0]):
        for j in range(out[1]):
            for m in range(out[2]):
                box = x[:, :, i * stride[0]:i * stride[0] + kernel[0],
                        j * stride[1]:j * stride[1] + kernel[1],
                        m * stride[2]:m * stride[2] + kernel[2]]
                y[:, :, i, j, m] = box.max(axis=(2, 3, 4)) if largest else box.mean(axis=(2, 3, 4))
    return y


@pytest.mark.parametrize("case", POOL3D, ids=str)
@pytest.mark.parametrize("kind", ["max", "avg", "avg-no-pad-count"])
def test_pool3d_gradcheck_and_torch(case, kind, device):
    torch = pytest.importorskip("torch")
    kernel, stride, padding, ceil_mode = case
    x_np = np.random.default_rng(4).permutation(2 * 3 * 7 * 6 * 5).reshape(2, 3, 7, 6, 5) * 0.1
    if kind == "max":
        ours = lambda t: F.max_pool3d(t, kernel, stride, padding, ceil_mode=ceil_mode)  # noqa: E731
        theirs = lambda t: torch.nn.functional.max_pool3d(t, kernel, stride, padding,  # noqa: E731
                                                          ceil_mode=ceil_mode)
    else:
        cip = kind == "avg"
        ours = lambda t: F.avg_pool3d(t, kernel, stride, padding, ceil_mode, cip)  # noqa: E731
        theirs = lambda t: torch.nn.functional.avg_pool3d(t, kernel, stride, padding,  # noqa: E731
                                                          ceil_mode, cip)
    x = leaf(x_np, device)
    y = ours(x)
    tx = torch.tensor(x_np, requires_grad=True)
    ty = theirs(tx)
    assert y.shape == tuple(ty.shape)
    assert_close(host(y), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rnd(*ty.shape, seed=5)
    (ty * torch.tensor(g)).sum().backward()
    (y * leaf(g, device, False)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert gradcheck(ours, [leaf(x_np[:1, :2], device)])
    if padding == 0 and not ceil_mode:
        k3 = kernel if isinstance(kernel, tuple) else (kernel,) * 3
        s3 = k3 if stride is None else stride if isinstance(stride, tuple) else (stride,) * 3
        assert_close(host(y), _pool3d_ref(x_np, k3, s3, kind == "max"), rtol=1e-12, atol=1e-12)
    if kind == "max":  # return_indices: PyTorch's flat (d * H + h) * W + w, same values
        y2, idx = F.max_pool3d(leaf(x_np, device), kernel, stride, padding, ceil_mode=ceil_mode,
                               return_indices=True)
        _, tidx = torch.nn.functional.max_pool3d(torch.tensor(x_np), kernel, stride, padding,
                                                 ceil_mode=ceil_mode, return_indices=True)
        assert idx.dtype == pydl.int64
        np.testing.assert_array_equal(host(idx), tidx.numpy())
        assert_close(host(y2), host(y), rtol=0, atol=0)
        flat = x_np.reshape(2, 3, -1)
        picked = np.take_along_axis(flat, host(idx).reshape(2, 3, -1), axis=-1)
        assert_close(picked.reshape(y.shape), host(y), rtol=0, atol=0)  # the max is there


def test_max_pool3d_indices_ties_take_the_first(device):
    """Ties pick the first maximum in (d, h, w) order, as PyTorch (also dilated): an all-equal
    volume gives each box's first corner."""
    torch = pytest.importorskip("torch")
    x_np = np.random.default_rng(9).integers(0, 2, size=(2, 3, 5, 6, 4)).astype(np.float64)
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
               dict(kernel_size=(2, 3, 2), stride=1, ceil_mode=True),
               dict(kernel_size=2, dilation=(2, 1, 2)),
               dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)):
        _, idx = F.max_pool3d(leaf(x_np, device), return_indices=True, **kw)
        _, tidx = torch.nn.functional.max_pool3d(torch.tensor(x_np), return_indices=True, **kw)
        np.testing.assert_array_equal(host(idx), tidx.numpy(), err_msg=str(kw))
    _, idx = F.max_pool3d(leaf(np.ones((1, 1, 4, 4, 4)), device), 2, return_indices=True)
    d, h, w = np.meshgrid(*[np.arange(0, 4, 2)] * 3, indexing="ij")
    np.testing.assert_array_equal(host(idx)[0, 0], (d * 4 + h) * 4 + w)


def test_pool3d_unbatched_divisor_override_and_errors(device):
    torch = pytest.importorskip("torch")
    x_np = rnd(2, 4, 4, 4)
    y = F.avg_pool3d(leaf(x_np, device), 2, divisor_override=3)
    ty = torch.nn.functional.avg_pool3d(torch.tensor(x_np), 2, divisor_override=3)
    assert y.shape == (2, 2, 2, 2)
    assert_close(host(y), ty.numpy(), rtol=1e-12, atol=1e-12)
    assert F.max_pool3d(leaf(x_np, device), 2).shape == (2, 2, 2, 2)
    y, idx = F.max_pool3d(leaf(x_np, device), 2, return_indices=True)  # unbatched
    ty, tidx = torch.nn.functional.max_pool3d(torch.tensor(x_np), 2, return_indices=True)
    assert idx.shape == (2, 2, 2, 2) and idx.dtype == pydl.int64
    np.testing.assert_array_equal(host(idx), tidx.numpy())
    with pytest.raises(ValueError, match="max_pool3d: expected a 4-D"):
        F.max_pool3d(leaf(rnd(3, 4, 4), device), 2)
    with pytest.raises(ValueError, match="padding should be at most half"):
        F.avg_pool3d(leaf(x_np, device), 2, padding=2)


# -- interpolate(mode="bicubic") ----------------------------------------------------------------
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size,scale", [((9, 7), None), ((3, 2), None), (None, 2.0),
                                        (None, (0.6, 1.5))], ids=str)
def test_bicubic_interpolate_matches_torch(size, scale, align_corners, device):
    torch = pytest.importorskip("torch")
    x_np = rnd(2, 3, 5, 4)
    kw = dict(size=size, scale_factor=scale, mode="bicubic", align_corners=align_corners)
    x = leaf(x_np, device)
    y = F.interpolate(x, **kw)
    tx = torch.tensor(x_np, requires_grad=True)
    ty = torch.nn.functional.interpolate(tx, **kw)
    assert y.shape == tuple(ty.shape)
    assert_close(host(y), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rnd(*ty.shape, seed=1)
    (ty * torch.tensor(g)).sum().backward()
    (y * leaf(g, device, False)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda t: F.interpolate(t, **kw), [leaf(x_np[:1, :1], device)])


def test_bicubic_reference_at_integer_positions(device):
    # with align_corners=True and an exact 2x-1 upsampling every other output is an input
    x_np = rnd(1, 1, 4, 4)
    y = F.interpolate(leaf(x_np, device), size=(7, 7), mode="bicubic", align_corners=True)
    assert_close(host(y)[..., ::2, ::2], x_np, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="bicubic interpolation needs 4-D"):
        F.interpolate(leaf(rnd(1, 2, 5), device), scale_factor=2, mode="bicubic")


# -- scaled_dot_product_attention(enable_gqa=True) ------------------------------------------
@pytest.mark.parametrize("is_causal", [False, True])
def test_sdpa_grouped_query_attention_matches_torch(is_causal, device):
    torch = pytest.importorskip("torch")
    q_np, k_np, v_np = rnd(2, 6, 5, 4), rnd(2, 2, 5, 4, seed=1), rnd(2, 2, 5, 3, seed=2)
    q, k, v = (leaf(a, device) for a in (q_np, k_np, v_np))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, enable_gqa=True)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q_np, k_np, v_np))
    ty = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=is_causal,
                                                          enable_gqa=True)
    assert_close(host(y), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rnd(*ty.shape, seed=3)
    (ty * torch.tensor(g)).sum().backward()
    (y * leaf(g, device, False)).sum().backward()
    for ours, theirs in ((q, tq), (k, tk), (v, tv)):
        assert_close(host(ours.grad), theirs.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, enable_gqa=True),
                     [leaf(q_np[:1, :4, :3], device), leaf(k_np[:1, :, :3], device),
                      leaf(v_np[:1, :, :3], device)])
    with pytest.raises(ValueError, match="enable_gqa"):
        F.scaled_dot_product_attention(q, leaf(rnd(2, 4, 5, 4), device),
                                       leaf(rnd(2, 4, 5, 3), device), enable_gqa=True)


# -- scatter_reduce -------------------------------------------------------------------------
def _scatter_reduce_ref(x, dim, index, src, reduce, include_self):
    out = x.copy()
    groups = {}
    for pos in np.ndindex(index.shape):
        target = list(pos)
        target[dim] = index[pos]
        groups.setdefault(tuple(target), []).append(src[pos])
    fn = {"sum": np.sum, "prod": np.prod, "mean": np.mean, "amax": np.max, "amin": np.min}[reduce]
    for target, vals in groups.items():
        out[target] = fn(([x[target]] if include_self else []) + vals)
    return out


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_reduce_forward_gradcheck_torch(reduce, include_self, dim, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x_np = rng.permutation(12).reshape(4, 3) * 0.3 - 1.0
    src_np = rng.permutation(np.arange(15) * 0.25 - 2.0).reshape(5, 3)
    if dim == 1:
        x_np, src_np = x_np.T.copy(), src_np.T.copy()
    shape = list(src_np.shape)
    shape[1 - dim] = shape[1 - dim] - 1  # index smaller than src: src's leading block only
    index_np = rng.integers(0, x_np.shape[dim], shape)
    x, src = leaf(x_np, device), leaf(src_np, device)
    index = pydl.tensor(index_np, device=device)
    y = x.scatter_reduce(dim, index, src, reduce, include_self=include_self)
    sub = src_np[tuple(slice(0, n) for n in index_np.shape)]
    assert_close(host(y), _scatter_reduce_ref(x_np, dim, index_np, sub, reduce, include_self),
                 rtol=1e-12, atol=1e-12)
    assert gradcheck(lambda a, b: pydl.scatter_reduce(a, dim, index, b, reduce,
                                                      include_self=include_self),
                     [leaf(x_np, device), leaf(src_np, device)])
    # torch's backward fails for an index smaller than src: compare on src's leading block
    src_np = np.ascontiguousarray(sub)
    index = pydl.tensor(index_np, device=device)
    tx, ts = torch.tensor(x_np, requires_grad=True), torch.tensor(src_np, requires_grad=True)
    ty = tx.scatter_reduce(dim, torch.tensor(index_np), ts, reduce, include_self=include_self)
    g = rng.standard_normal(ty.shape)
    (ty * torch.tensor(g)).sum().backward()
    x, src = leaf(x_np, device), leaf(src_np, device)
    (x.scatter_reduce(dim, index, src, reduce, include_self=include_self)
     * leaf(g, device, False)).sum().backward()
    assert_close(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(host(src.grad), ts.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_scatter_reduce_ties_zeros_ints_and_errors(device):
    torch = pytest.importorskip("torch")
    x_np, s_np, i_np = np.array([1.0, 0.0, 2.0]), np.array([1.0, 0.0, 5.0, 0.0]), \
        np.array([0, 1, 2, 2])
    for reduce in ("amax", "prod"):
        x, s = leaf(x_np, device), leaf(s_np, device)
        x.scatter_reduce(0, pydl.tensor(i_np, device=device), s, reduce).sum().backward()
        tx, ts = torch.tensor(x_np, requires_grad=True), torch.tensor(s_np, requires_grad=True)
        tx.scatter_reduce(0, torch.tensor(i_np), ts, reduce).sum().backward()
        assert host(x.grad).tolist() == tx.grad.tolist()
        assert host(s.grad).tolist() == ts.grad.tolist()
    xi = pydl.tensor([5, 1, 7], device=device)
    got = xi.scatter_reduce(0, pydl.tensor([0, 0, 2], device=device),
                            pydl.tensor([2, 9, 3], device=device), "mean")
    want = torch.tensor([5, 1, 7]).scatter_reduce(0, torch.tensor([0, 0, 2]),
                                                  torch.tensor([2, 9, 3]), "mean")
    assert got.tolist() == want.tolist()
    with pytest.raises(ValueError, match="reduce must be one of"):
        xi.scatter_reduce(0, pydl.tensor([0], device=device), xi, "max")
    with pytest.raises(TypeError, match="expected src of dtype"):
        xi.scatter_reduce(0, pydl.tensor([0], device=device), xi.float(), "sum")
