"""Second derivatives of the ops added for issue 22 (gradgradcheck in float64 on every device,
and torch's double backward for a few): the unary ones are rows of UNARY (test_gradgrad.py
covers them) and the binary ones are in test_ops_elementwise_extra.py; the rest are here."""

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl.testing import gradgradcheck


def leaf(arr, device):
    return pydl.tensor(np.asarray(arr, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=True)


def _distinct(*shape, seed=0):
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.37 - 1.0


def _key(device):
    return (slice(None), pydl.tensor([0, 2, 0], device=device), slice(None), 1)


# name -> (fn of the inputs, input shapes); each result is squared so that ops linear in
# their input still have a non-zero second derivative to check
CASES = {
    "sort": (lambda t: t.sort(dim=1, descending=True).values, [(3, 4)]),
    "topk": (lambda t: t.topk(2, dim=0).values, [(4, 3)]),
    "cumprod": (lambda t: t.cumprod(1), [(2, 5)]),
    "logcumsumexp": (lambda t: t.logcumsumexp(0), [(5, 2)]),
    "cummax": (lambda t: t.cummax(1).values, [(3, 5)]),
    "cummin": (lambda t: t.cummin(0).values, [(5, 3)]),
    "triu": (lambda t: t.triu(1), [(3, 4)]),
    "tril": (lambda t: t.tril(), [(4, 3)]),
    "roll": (lambda t: t.roll((1, 2), (0, 1)), [(3, 4)]),
    "diagonal": (lambda t: t.diagonal(1), [(3, 4)]),
    "diag": (lambda t: pydl.diag(t, -1), [(3,)]),
    "repeat_interleave": (lambda t: t.repeat_interleave(2, dim=1), [(2, 3)]),
    "unfold": (lambda t: t.unfold(0, 2, 1), [(4, 2)]),
    "meshgrid": (lambda a, b: pydl.meshgrid(a, b)[0] * pydl.meshgrid(a, b)[1], [(3,), (2,)]),
    "einsum-matmul": (lambda a, b: pydl.einsum("ij,jk->ik", a, b), [(2, 3), (3, 2)]),
    "einsum-3": (lambda a, b, c: pydl.einsum("ab,bc,c->a", a, b, c), [(2, 3), (3, 2), (2,)]),
    "einsum-diag": (lambda a: pydl.einsum("ii->", a), [(3, 3)]),
    "scatter_reduce-sum": (lambda a, b: a.scatter_reduce(
        0, pydl.tensor([[0, 1], [0, 0]], device=a.device), b, "sum"), [(2, 2), (2, 2)]),
    "scatter_reduce-mean": (lambda a, b: a.scatter_reduce(
        0, pydl.tensor([[0, 1], [0, 0]], device=a.device), b, "mean", include_self=False),
        [(2, 2), (2, 2)]),
    "scatter_reduce-amax": (lambda a, b: a.scatter_reduce(
        0, pydl.tensor([[0, 1], [1, 0]], device=a.device), b, "amax"), [(2, 2), (2, 2)]),
    "index-int-beside-tensor": (lambda t: t[_key(t.device)], [(2, 3, 2, 2)]),
    "lerp": (lambda a, b: pydl.lerp(a, b, 0.25), [(3,), (3,)]),
    "sdpa-gqa": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                 [(1, 4, 2, 3), (1, 2, 2, 3), (1, 2, 2, 3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_new_ops_gradgradcheck(name, device):
    fn, shapes = CASES[name]
    xs = [leaf(_distinct(*s, seed=i), device) for i, s in enumerate(shapes)]
    assert gradgradcheck(lambda *ts: fn(*ts) ** 2, xs)


def test_einsum_and_cumprod_double_backward_match_torch(device):
    torch = pytest.importorskip("torch")
    a_np, b_np = _distinct(2, 3), _distinct(3, 4, seed=1)
    a, b = leaf(a_np, device), leaf(b_np, device)
    y = (pydl.einsum("ij,jk->ik", a, b).cumprod(1) ** 2).sum()
    (ga,) = pydl.autograd.grad(y, [a], create_graph=True)
    (hb,) = pydl.autograd.grad((ga ** 2).sum(), [b])
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a_np, b_np))
    ty = (torch.einsum("ij,jk->ik", ta, tb).cumprod(1) ** 2).sum()
    (tga,) = torch.autograd.grad(ty, [ta], create_graph=True)
    (thb,) = torch.autograd.grad((tga ** 2).sum(), [tb])
    np.testing.assert_allclose(np.asarray(hb), thb.numpy(), rtol=1e-10, atol=1e-12)


def test_composed_3d_ops_have_second_derivatives(device):
    """conv3d and the 3-D pools are composed of conv2d / the 2-D and 1-D pools, whose double
    backward runs on the kernels: gradgradcheck in float64, and torch's Hessian-vector product."""
    import torch

    x_np, w_np = _distinct(1, 2, 4, 3, 5), _distinct(3, 2, 2, 2, 3, seed=1) * 0.3
    cases = (
        lambda x, w: F.conv3d(x, w, padding=1),
        lambda x, w: F.max_pool3d(x, 2) * w.sum(),
        lambda x, w: F.avg_pool3d(x, 3, 1, 1) * w.sum(),
    )
    for fn in cases:
        assert gradgradcheck(lambda x, w, fn=fn: fn(x, w) ** 2,
                             (leaf(x_np, device), leaf(w_np, device)))
    x, w = leaf(x_np, device), leaf(w_np, device)
    (gx,) = pydl.autograd.grad((F.conv3d(x, w, padding=1) ** 2).sum(), [x], create_graph=True)
    (hw,) = pydl.autograd.grad((gx ** 2).sum(), [w])
    tx, tw = (torch.tensor(v, requires_grad=True) for v in (x_np, w_np))
    (tgx,) = torch.autograd.grad((torch.nn.functional.conv3d(tx, tw, padding=1) ** 2).sum(),
                                 [tx], create_graph=True)
    (thw,) = torch.autograd.grad((tgx ** 2).sum(), [tw])
    np.testing.assert_allclose(np.asarray(hw), thw.numpy(), rtol=1e-9, atol=1e-10)


def test_scatter_reduce_prod_raises_on_double_backward(device):
    a, b = leaf([1.0, 2.0], device), leaf([3.0, 4.0], device)
    y = a.scatter_reduce(0, pydl.tensor([0, 0], device=device), b, "prod").sum()
    (g,) = pydl.autograd.grad(y, [a], create_graph=True)
    with pytest.raises(RuntimeError, match="not differentiable yet"):
        pydl.autograd.grad(g.sum(), [b])
