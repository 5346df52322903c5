"""Convolution and pooling in pydl.nn.functional: forward against naive float64 NumPy loops,
float64 gradchecks, shapes PyTorch accepts (unbatched, 1-D, 'same'), and error messages.

Parity with PyTorch over random configurations is in test_nn_functional_torch.py.
"""

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl.testing import assert_close, gradcheck


def t64(array, device, grad=True):
    return pydl.tensor(np.asarray(array, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=grad)


def host(t):
    return np.asarray(t.detach().cpu().numpy() if t.requires_grad else t.cpu().numpy())


rng = np.random.default_rng(1234)


# -- NumPy references -----------------------------------------------------------------------
def np_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cg:(g + 1) * cg, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                           j * sw:j * sw + dw * (kw - 1) + 1:dw]
                y[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    if b is not None:
        y += b[None, :, None, None]
    return y


def np_conv_transpose2d(x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0),
                        groups=1, dilation=(1, 1)):
    n, cin, h, wd = x.shape
    _, cog, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    ho = (h - 1) * sh - 2 * ph + dh * (kh - 1) + output_padding[0] + 1
    wo = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + output_padding[1] + 1
    full = np.zeros((n, cog * groups, ho + 2 * ph, wo + 2 * pw))
    per_group = cin // groups
    for c in range(cin):
        g = c // per_group
        for i in range(h):
            for j in range(wd):
                for a in range(kh):
                    for e in range(kw):
                        full[:, g * cog:(g + 1) * cog, i * sh + a * dh, j * sw + e * dw] += (
                            x[:, c, i, j][:, None] * w[c, :, a, e][None, :])
    y = full[:, :, ph:ph + ho, pw:pw + wo]
    if b is not None:
        y = y + b[None, :, None, None]
    return y


def np_pool2d(x, kernel, stride, padding, kind, ceil_mode=False, count_include_pad=True,
              divisor_override=None):
    """Max or average pooling with PyTorch's window and divisor rules."""
    n, c, h, w = x.shape
    out = []
    for size, k, s, p in zip((h, w), kernel, stride, padding, strict=True):
        o = (size + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        out.append(o)
    y = np.zeros((n, c, *out))
    for i in range(out[0]):
        for j in range(out[1]):
            hs, ws = i * stride[0] - padding[0], j * stride[1] - padding[1]
            he, we = min(hs + kernel[0], h + padding[0]), min(ws + kernel[1], w + padding[1])
            pool_size = (he - hs) * (we - ws)
            h0, w0, h1, w1 = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, h0:h1, w0:w1]
            if kind == "max":
                y[:, :, i, j] = win.max(axis=(2, 3))
            else:
                div = divisor_override or (pool_size if count_include_pad
                                           else (h1 - h0) * (w1 - w0))
                y[:, :, i, j] = win.sum(axis=(2, 3)) / div
    return y


def np_adaptive2d(x, out, kind):
    n, c, h, w = x.shape
    y = np.zeros((n, c, *out))
    for i in range(out[0]):
        h0, h1 = i * h // out[0], -(-(i + 1) * h // out[0])
        for j in range(out[1]):
            w0, w1 = j * w // out[1], -(-(j + 1) * w // out[1])
            win = x[:, :, h0:h1, w0:w1]
            y[:, :, i, j] = win.max(axis=(2, 3)) if kind == "max" else win.mean(axis=(2, 3))
    return y


# -- conv2d ---------------------------------------------------------------------------------
CONV_CASES = [
    # (N, C, H, W), (O, kH, kW), stride, padding, dilation, groups
    ((2, 3, 5, 5), (4, 3, 3), 1, 0, 1, 1),
    ((2, 3, 7, 6), (2, 3, 1), 2, 1, 1, 1),
    ((2, 3, 7, 7), (6, 3, 3), 2, 1, 2, 3),
    ((1, 4, 6, 5), (2, 2, 3), (1, 2), (1, 0), (2, 1), 2),
    ((2, 2, 5, 5), (3, 5, 5), 1, 2, 1, 1),
    ((3, 1, 4, 7), (1, 1, 3), 3, (0, 1), 1, 1),
]


def _pairs(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CONV_CASES)
def test_conv2d_forward_and_gradcheck(device, xs, ws, stride, padding, dilation, groups):
    x = rng.standard_normal(xs)
    w = rng.standard_normal((ws[0], xs[1] // groups) + ws[1:])
    b = rng.standard_normal(ws[0])
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tx, tw, tb = t64(x, device), t64(w, device), t64(b, device)
    y = F.conv2d(tx, tw, tb, **args)
    expected = np_conv2d(x, w, b, _pairs(stride), _pairs(padding), _pairs(dilation), groups)
    assert_close(host(y), expected)
    assert gradcheck(lambda a, c, d: F.conv2d(a, c, d, **args), [tx, tw, tb])


def test_conv2d_without_bias_and_unbatched(device):
    x, w = rng.standard_normal((3, 6, 5)), rng.standard_normal((2, 3, 3, 2))
    tx, tw = t64(x, device), t64(w, device)
    y = F.conv2d(tx, tw, padding=1)
    assert y.shape == (2, 6, 6)
    assert_close(host(y), np_conv2d(x[None], w, padding=(1, 1))[0])
    assert gradcheck(lambda a, c: F.conv2d(a, c, padding=1), [tx, tw])


@pytest.mark.parametrize("kernel, dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), 2)])
def test_conv2d_same_and_valid_padding(device, kernel, dilation):
    x, w = rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2) + kernel)
    tx, tw = t64(x, device), t64(w, device)
    y = F.conv2d(tx, tw, padding="same", dilation=dilation)
    assert y.shape == (2, 3, 6, 5)
    # PyTorch pads total = d * (k - 1), the odd one out at the bottom/right
    pads = [dilation * (k - 1) for k in kernel]
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0] // 2, pads[0] - pads[0] // 2),
                    (pads[1] // 2, pads[1] - pads[1] // 2)))
    assert_close(host(y), np_conv2d(xp, w, dilation=(dilation, dilation)))
    assert gradcheck(lambda a, c: F.conv2d(a, c, padding="same", dilation=dilation), [tx, tw])
    valid = F.conv2d(tx, tw, padding="valid", dilation=dilation)
    assert_close(host(valid), np_conv2d(x, w, dilation=(dilation, dilation)))


def test_conv2d_non_contiguous_input(device):
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    tx = t64(x.transpose(0, 1, 3, 2).copy(), device)
    view = tx.transpose(2, 3)  # (2, 3, 6, 5), not contiguous
    y = F.conv2d(view, t64(w, device, grad=False), padding=1)
    assert_close(host(y), np_conv2d(x, w, padding=(1, 1)))
    y.sum().backward()
    assert tx.grad.shape == tx.shape


def test_conv1d(device):
    x, w, b = (rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 2, 3)),
               rng.standard_normal(6))
    tx, tw, tb = t64(x, device), t64(w, device), t64(b, device)
    y = F.conv1d(tx, tw, tb, stride=2, padding=1, dilation=2, groups=2)
    expected = np_conv2d(x[:, :, None], w[:, :, None], b, (1, 2), (0, 1), (1, 2), 2)[:, :, 0]
    assert_close(host(y), expected)
    assert gradcheck(lambda a, c, d: F.conv1d(a, c, d, stride=2, padding=1, dilation=2,
                                              groups=2), [tx, tw, tb])
    same = F.conv1d(tx[0], tw, padding="same", groups=2)  # unbatched, even total padding
    assert same.shape == (6, 9)


def test_conv2d_float32_matches_float64(device):
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((5, 3, 3, 3))
    y32 = F.conv2d(pydl.tensor(x, dtype=pydl.float32, device=device),
                   pydl.tensor(w, dtype=pydl.float32, device=device), stride=2, padding=1)
    assert y32.dtype == pydl.float32
    assert_close(host(y32), np_conv2d(x, w, stride=(2, 2), padding=(1, 1)).astype(np.float32),
                 rtol=1e-4, atol=1e-4)


def test_conv2d_empty_batch(device):
    x = pydl.zeros(0, 3, 5, 5, dtype=pydl.float64, device=device, requires_grad=True)
    w = t64(rng.standard_normal((2, 3, 3, 3)), device)
    y = F.conv2d(x, w)
    assert y.shape == (0, 2, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape and float(np.abs(host(w.grad)).sum()) == 0.0


# -- conv_transpose2d -----------------------------------------------------------------------
TRANSPOSE_CASES = [
    # (N, C_in, H, W), (C_out/groups, kH, kW), stride, padding, output_padding, groups, dilation
    ((2, 3, 4, 4), (2, 3, 3), 1, 0, 0, 1, 1),
    ((2, 4, 3, 5), (3, 4, 4), 2, 1, 0, 1, 1),
    ((1, 6, 3, 3), (1, 3, 2), 2, (1, 0), (1, 1), 3, 1),
    ((2, 2, 3, 4), (2, 3, 3), (3, 2), 0, (2, 1), 2, (1, 2)),
    ((1, 2, 3, 3), (2, 2, 2), 1, 0, 1, 1, 2),  # output_padding >= stride (< dilation)
]


@pytest.mark.parametrize("xs, ws, stride, padding, out_pad, groups, dilation", TRANSPOSE_CASES)
def test_conv_transpose2d_forward_and_gradcheck(device, xs, ws, stride, padding, out_pad,
                                                groups, dilation):
    x = rng.standard_normal(xs)
    w = rng.standard_normal((xs[1],) + ws)
    b = rng.standard_normal(ws[0] * groups)
    args = dict(stride=stride, padding=padding, output_padding=out_pad, groups=groups,
                dilation=dilation)
    tx, tw, tb = t64(x, device), t64(w, device), t64(b, device)
    y = F.conv_transpose2d(tx, tw, tb, **args)
    expected = np_conv_transpose2d(x, w, b, _pairs(stride), _pairs(padding), _pairs(out_pad),
                                   groups, _pairs(dilation))
    assert y.shape == expected.shape
    assert_close(host(y), expected)
    assert gradcheck(lambda a, c, d: F.conv_transpose2d(a, c, d, **args), [tx, tw, tb])


def test_conv_transpose_is_adjoint_of_conv(device):
    """<conv(u, w), v> == <u, conv_transpose(v, w)> for matching geometry."""
    u, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    tu, tw = t64(u, device, False), t64(w, device, False)
    y = F.conv2d(tu, tw, stride=2, padding=1)
    v = rng.standard_normal(y.shape)
    back = F.conv_transpose2d(t64(v, device, False), tw, stride=2, padding=1,
                              output_padding=(0, 1))
    assert back.shape == u.shape
    assert np.isclose((host(y) * v).sum(), (u * host(back)).sum())


def test_conv_transpose1d_and_unbatched(device):
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((4, 3, 3))
    tx, tw = t64(x, device), t64(w, device)
    y = F.conv_transpose1d(tx, tw, stride=2, padding=1, output_padding=1)
    expected = np_conv_transpose2d(x[None, :, None], w[:, :, None], None, (1, 2), (0, 1),
                                   (0, 1))[0, :, 0]
    assert_close(host(y), expected)
    assert gradcheck(lambda a, c: F.conv_transpose1d(a, c, stride=2, padding=1,
                                                     output_padding=1), [tx, tw])
    y2 = F.conv_transpose2d(t64(x.reshape(4, 1, 5), device), t64(w[:, :, None], device))
    assert y2.shape == (3, 1, 7)


# -- conv errors ----------------------------------------------------------------------------
def test_conv_errors():
    x = pydl.randn(2, 3, 5, 5)
    with pytest.raises(ValueError, match=r"has 3 channels, but weight of shape \(4, 2, 3, 3\)"):
        F.conv2d(x, pydl.randn(4, 2, 3, 3))
    with pytest.raises(ValueError, match="not divisible by groups=2"):
        F.conv2d(pydl.randn(2, 4, 5, 5), pydl.randn(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"smaller than the kernel"):
        F.conv2d(x, pydl.randn(4, 3, 7, 7))
    with pytest.raises(ValueError, match=r"smaller than the kernel"):
        F.conv2d(x, pydl.randn(4, 3, 3, 3), dilation=3)
    with pytest.raises(ValueError, match=r"expected a 3-D \(C, H, W\) or 4-D"):
        F.conv2d(pydl.randn(5, 5), pydl.randn(4, 3, 3, 3))
    with pytest.raises(ValueError, match="bias of shape"):
        F.conv2d(x, pydl.randn(4, 3, 3, 3), pydl.randn(3))
    with pytest.raises(ValueError, match="'same' is not supported for strided"):
        F.conv2d(x, pydl.randn(4, 3, 3, 3), padding="same", stride=2)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        F.conv2d(x, pydl.randn(4, 3, 3, 3), padding="full")
    with pytest.raises(ValueError, match="stride must be positive"):
        F.conv2d(x, pydl.randn(4, 3, 3, 3), stride=0)
    with pytest.raises(TypeError, match="float32 but weight is pydl.float64"):
        F.conv2d(x, pydl.randn(4, 3, 3, 3, dtype=pydl.float64))
    with pytest.raises(ValueError, match="output_padding .* must be smaller than either stride"):
        F.conv_transpose2d(x, pydl.randn(3, 2, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"has 3 channels, but weight of shape \(4, 2, 3, 3\)"):
        F.conv_transpose2d(x, pydl.randn(4, 2, 3, 3))


# -- pooling --------------------------------------------------------------------------------
POOL_CASES = [
    # (N, C, H, W), kernel, stride, padding, ceil_mode
    ((2, 3, 6, 6), 2, None, 0, False),
    ((2, 2, 7, 5), 3, 2, 1, False),
    ((1, 3, 7, 7), (3, 2), (2, 1), (1, 0), False),
    ((2, 2, 5, 7), 3, 2, 0, True),
    ((1, 2, 6, 5), (2, 3), (2, 2), (1, 1), True),
    ((2, 1, 5, 5), 1, 2, 0, False),
]


@pytest.mark.parametrize("xs, kernel, stride, padding, ceil_mode", POOL_CASES)
def test_max_pool2d(device, xs, kernel, stride, padding, ceil_mode):
    x = rng.permutation(np.prod(xs)).reshape(xs).astype(np.float64) / 7  # distinct values
    tx = t64(x, device)
    y = F.max_pool2d(tx, kernel, stride, padding, ceil_mode=ceil_mode)
    k, p = _pairs(kernel), _pairs(padding)
    s = k if stride is None else _pairs(stride)
    assert_close(host(y), np_pool2d(x, k, s, p, "max", ceil_mode))
    assert gradcheck(lambda a: F.max_pool2d(a, kernel, stride, padding, ceil_mode=ceil_mode),
                     [tx])


@pytest.mark.parametrize("xs, kernel, stride, padding, ceil_mode", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d(device, xs, kernel, stride, padding, ceil_mode, count_include_pad):
    x = rng.standard_normal(xs)
    tx = t64(x, device)
    args = dict(ceil_mode=ceil_mode, count_include_pad=count_include_pad)
    y = F.avg_pool2d(tx, kernel, stride, padding, **args)
    k, p = _pairs(kernel), _pairs(padding)
    s = k if stride is None else _pairs(stride)
    assert_close(host(y), np_pool2d(x, k, s, p, "avg", ceil_mode, count_include_pad))
    assert gradcheck(lambda a: F.avg_pool2d(a, kernel, stride, padding, **args), [tx])


def test_avg_pool2d_divisor_override(device):
    x = rng.standard_normal((2, 2, 5, 5))
    tx = t64(x, device)
    y = F.avg_pool2d(tx, 3, 2, 1, divisor_override=4)
    assert_close(host(y), np_pool2d(x, (3, 3), (2, 2), (1, 1), "avg", divisor_override=4))
    assert gradcheck(lambda a: F.avg_pool2d(a, 3, 2, 1, divisor_override=4), [tx])


def test_max_pool2d_return_indices_and_ties(device):
    x = np.array([[[[1.0, 5.0, 5.0, 2.0],
                    [0.0, 5.0, 3.0, 3.0],
                    [7.0, 7.0, -1.0, -2.0],
                    [7.0, 6.0, -3.0, -1.0]]]])
    tx = t64(x, device)
    y, idx = F.max_pool2d(tx, 2, return_indices=True)
    assert_close(host(y), np.array([[[[5.0, 5.0], [7.0, -1.0]]]]))
    assert idx.dtype == pydl.int64
    assert host(idx).tolist() == [[[[1, 2], [8, 10]]]]  # the first maximum of each window
    y.sum().backward()
    expected = np.zeros(16)
    expected[[1, 2, 8, 10]] = 1
    assert_close(host(tx.grad).reshape(-1), expected)


def test_max_pool_padding_is_minus_infinity(device):
    x = -np.ones((1, 1, 3, 3)) * 5
    y = F.max_pool2d(t64(x, device, False), 3, 1, 1)
    assert np.all(host(y) == -5.0)


def test_pool1d_and_unbatched(device):
    x = rng.standard_normal((2, 3, 9))
    tx = t64(x, device)
    y = F.max_pool1d(tx, 3, 2, 1)
    assert_close(host(y), np_pool2d(x[:, :, None], (1, 3), (1, 2), (0, 1), "max")[:, :, 0])
    assert gradcheck(lambda a: F.max_pool1d(a, 3, 2, 1), [tx])
    y = F.avg_pool1d(tx, 4, 3, 2, ceil_mode=True, count_include_pad=False)
    assert_close(host(y), np_pool2d(x[:, :, None], (1, 4), (1, 3), (0, 2), "avg", True,
                                    False)[:, :, 0])
    assert gradcheck(lambda a: F.avg_pool1d(a, 4, 3, 2, ceil_mode=True), [tx])
    u = F.max_pool2d(t64(x, device, False), 2)  # (C, H, W) unbatched
    assert u.shape == (2, 1, 4)


@pytest.mark.parametrize("xs, out", [((2, 3, 6, 6), 1), ((2, 3, 6, 6), (3, 2)),
                                     ((1, 2, 7, 5), (3, 4)), ((2, 2, 5, 7), (None, 3)),
                                     ((1, 1, 4, 4), 6)])
def test_adaptive_pool2d(device, xs, out):
    x = rng.permutation(np.prod(xs)).reshape(xs).astype(np.float64) / 5
    tx = t64(x, device)
    o = (out, out) if isinstance(out, int) else tuple(s if v is None else v
                                                    for s, v in zip(xs[2:], out, strict=True))
    for kind, fn in (("avg", F.adaptive_avg_pool2d), ("max", F.adaptive_max_pool2d)):
        y = fn(tx, out)
        assert y.shape == xs[:2] + o
        assert_close(host(y), np_adaptive2d(x, o, kind))
        assert gradcheck(lambda a, fn=fn: fn(a, out), [tx])
    y, idx = F.adaptive_max_pool2d(tx, out, return_indices=True)
    flat = x.reshape(xs[0], xs[1], -1)
    assert_close(np.take_along_axis(flat, host(idx).reshape(xs[0], xs[1], -1), -1),
                 host(y).reshape(xs[0], xs[1], -1))


def test_adaptive_pool1d(device):
    x = rng.standard_normal((2, 3, 7))
    tx = t64(x, device)
    y = F.adaptive_avg_pool1d(tx, 3)
    assert_close(host(y), np_adaptive2d(x[:, :, None], (1, 3), "avg")[:, :, 0])
    assert gradcheck(lambda a: F.adaptive_max_pool1d(a, 4), [tx])


def test_pool_errors():
    x = pydl.randn(1, 2, 5, 5)
    with pytest.raises(ValueError, match="padding should be at most half of the kernel size"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match=r"too small for kernel_size \(7, 7\)"):
        F.avg_pool2d(x, 7)
    with pytest.raises(ValueError, match=r"expected a 3-D or 4-D input, got shape \(5,\)"):
        F.max_pool2d(pydl.randn(5), 2)
    with pytest.raises(TypeError, match="kernel_size must be an int or a tuple of 2 ints"):
        F.max_pool2d(x, "2")
    with pytest.raises(ValueError, match="output_size must be positive"):
        F.adaptive_avg_pool2d(x, 0)
    with pytest.raises(TypeError, match="floating-point"):
        F.max_pool2d(pydl.ones(1, 1, 4, 4, dtype=pydl.int64), 2)
