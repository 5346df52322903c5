"""matmul / @, mm, bmm, dot, outer, inner: NumPy reference, gradcheck, torch parity, errors."""

import numpy as np
import pytest

import pydl
from pydl.backend import backend_of
from pydl.testing import assert_close, gradcheck


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def T(a, device, grad=False, dtype=pydl.float64):
    return pydl.tensor(np.asarray(a), dtype=dtype, device=device, requires_grad=grad)


def host(t):
    return np.asarray(t.detach())


SHAPES = [
    ((3,), (3,)),  # 1-D @ 1-D -> 0-d
    ((1,), (1,)),
    ((4,), (4, 5)),  # 1-D @ 2-D
    ((2, 3), (3,)),  # 2-D @ 1-D
    ((2, 3), (3, 4)),
    ((1, 1), (1, 1)),
    ((7, 3), (3, 5)),
    ((13, 11), (11, 1)),
    ((2, 1, 3, 4), (5, 4, 2)),  # broadcast batch dims
    ((5, 4, 2), (2, 1, 2, 3)),
    ((7, 3, 5), (5, 2)),  # batched @ matrix (folded into one 2-D product)
    ((3, 5), (7, 5, 2)),  # matrix @ batched
    ((4,), (2, 4, 3)),  # vector @ batched
    ((2, 3, 4), (4,)),  # batched @ vector
    ((1, 2, 3), (4, 3, 1)),
    ((2, 1, 1, 3), (1, 3, 3, 2)),
    ((3, 0), (0, 4)),  # K = 0: zeros
    ((0, 3), (3, 4)),
    ((2, 0, 3), (3, 4)),
]


def _id(p):
    return "@".join("x".join(map(str, s)) or "0d" for s in p)


@pytest.mark.parametrize("sa,sb", SHAPES, ids=[_id(p) for p in SHAPES])
def test_matmul_forward_and_grad(device, sa, sb):
    a, b = rnd(*sa), rnd(*sb, seed=1)
    out = T(a, device) @ T(b, device)
    want = np.matmul(a, b)
    assert out.shape == want.shape
    assert_close(out, want)
    if out.numel() and a.size and b.size:
        gradcheck(pydl.matmul, [T(a, device, True), T(b, device, True)])
    # float32 against the float64 reference
    out32 = T(a, device, dtype=pydl.float32) @ T(b, device, dtype=pydl.float32)
    assert out32.dtype == pydl.float32
    assert_close(out32, want.astype(np.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sa,sb", SHAPES, ids=[_id(p) for p in SHAPES])
def test_matmul_torch_parity(device, sa, sb):
    torch = pytest.importorskip("torch")
    a, b = rnd(*sa), rnd(*sb, seed=1)
    x, y = T(a, device, True), T(b, device, True)
    tx, ty = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out, tout = x @ y, tx @ ty
    np.testing.assert_allclose(host(out), tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rnd(*tout.shape, seed=2)
    out.backward(T(g, device))
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(host(x.grad), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(y.grad), ty.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_matmul_non_contiguous(device):
    a, b = rnd(5, 3), rnd(4, 10, seed=1)
    x = T(a, device).t()  # (3, 5), transposed view
    y = T(b, device)[:, ::2].t()  # (5, 4), strided and transposed
    assert not x.is_contiguous() and not y.is_contiguous()
    assert_close(x @ y, a.T @ b[:, ::2].T)
    gradcheck(lambda p, q: p.t() @ q[:, ::2].t(), [T(a, device, True), T(b, device, True)])
    c = rnd(2, 4, 3, 6)  # batched, permuted
    gradcheck(lambda p, q: p.permute(0, 2, 1, 3)[..., :4] @ q,
              [T(c, device, True), T(rnd(4, 2, seed=3), device, True)])
    from pydl.functions import cat  # a batch built from a non-contiguous cat/transposes
    z = cat([T(a, device), T(a, device)], 1).reshape(5, 2, 3).transpose(0, 1)
    assert_close(z @ T(rnd(3, 2, seed=4), device),
                 np.concatenate([a, a], 1).reshape(5, 2, 3).swapaxes(0, 1) @ rnd(3, 2, seed=4))


def test_kernel_gets_contiguous_operands_and_trans_flags(device, monkeypatch):
    """Backward uses the kernel's transpose flags: no transposed copies reach it."""
    a, b = rnd(2, 3, 4), rnd(2, 4, 5, seed=1)
    x, y = T(a, device, True), T(b, device, True)
    backend = backend_of(x.data)
    calls = []
    real = backend.matmul

    def spy(p, q, trans_a=False, trans_b=False):
        calls.append((p.flags.c_contiguous, q.flags.c_contiguous, trans_a, trans_b))
        return real(p, q, trans_a, trans_b)

    monkeypatch.setattr(backend, "matmul", spy)
    out = x @ y
    out.backward(pydl.ones_like(out))
    assert len(calls) == 3
    assert all(ca and cb for ca, cb, _, _ in calls)
    assert {(ta, tb) for _, _, ta, tb in calls[1:]} == {(False, True), (True, False)}
    calls.clear()
    w = T(rnd(5, 4), device, True)
    (T(a, device) @ w.t()).backward(pydl.ones(2, 3, 5, dtype=pydl.float64, device=device))
    assert calls and all(ca and cb for ca, cb, _, _ in calls)
    assert calls[0][3] is True  # w.t() handed over as w with trans_b


def test_matmul_errors(device):
    a, b = T(rnd(3, 4), device), T(rnd(5, 6), device)
    with pytest.raises(RuntimeError) as e:
        a @ b
    assert str(e.value) == "matmul: shapes (3, 4) and (5, 6) cannot be multiplied"
    with pytest.raises(RuntimeError, match=r"matmul: shapes \(3,\) and \(4,\) cannot"):
        T(rnd(3), device) @ T(rnd(4), device)
    with pytest.raises(RuntimeError, match=r"\(2, 3, 4\) and \(5, 4, 2\).*batch"):
        T(rnd(2, 3, 4), device) @ T(rnd(5, 4, 2), device)
    with pytest.raises(RuntimeError, match="at least 1-D"):
        T(2.0, device) @ a
    with pytest.raises(TypeError, match=r"pydl.float32 and pydl.float64"):
        a.float() @ T(rnd(4, 2), device)
    with pytest.raises(TypeError, match="int64"):
        pydl.arange(6, device=device).reshape(2, 3) @ pydl.arange(6, device=device).reshape(3, 2)
    with pytest.raises(RuntimeError, match="mm: expected 2-D"):
        pydl.mm(T(rnd(3), device), a)
    with pytest.raises(RuntimeError, match=r"bmm: shapes \(2, 3, 4\) and \(3, 4, 2\)"):
        pydl.bmm(T(rnd(2, 3, 4), device), T(rnd(3, 4, 2), device))
    with pytest.raises(RuntimeError, match="dot: inconsistent"):
        pydl.dot(T(rnd(3), device), T(rnd(4), device))


@pytest.mark.gpu
def test_matmul_mixed_devices():
    with pytest.raises(RuntimeError, match=r"cpu.*cuda"):
        pydl.randn(2, 3) @ pydl.randn(3, 2, device="cuda")


def test_mm_bmm_dot_outer_inner(device):
    a, b = rnd(3, 4), rnd(4, 5, seed=1)
    assert_close(pydl.mm(T(a, device), T(b, device)), a @ b)
    assert_close(T(a, device).mm(T(b, device)), a @ b)
    p, q = rnd(6, 2, 3), rnd(6, 3, 7, seed=1)
    assert_close(T(p, device).bmm(T(q, device)), p @ q)
    gradcheck(pydl.bmm, [T(p, device, True), T(q, device, True)])
    u, v = rnd(5), rnd(5, seed=1)
    d = pydl.dot(T(u, device), T(v, device))
    assert d.shape == () and abs(float(d) - u @ v) < 1e-12
    gradcheck(pydl.dot, [T(u, device, True), T(v, device, True)])
    assert_close(pydl.outer(T(u, device), T(v[:3], device)), np.outer(u, v[:3]))
    gradcheck(pydl.outer, [T(u, device, True), T(v[:3], device, True)])
    assert_close(pydl.inner(T(p, device), T(rnd(4, 3), device)), np.inner(p, rnd(4, 3)))
    gradcheck(pydl.inner, [T(p, device, True), T(rnd(4, 3), device, True)])
    assert_close(T(u, device).inner(T(v, device)), np.inner(u, v))


def test_matmul_with_python_data(device):
    a = T(rnd(2, 3), device)
    assert_close(a @ [[1.0], [2.0], [3.0]], host(a) @ np.array([[1.0], [2.0], [3.0]]))
    assert_close(np.ones((4, 2)) @ a, np.ones((4, 2)) @ host(a))


def test_matmul_grad_only_one_side(device):
    a, b = rnd(2, 3, 4), rnd(4, 2, seed=1)
    x = T(a, device, True)
    out = x @ T(b, device)
    out.backward(pydl.ones_like(out))
    np.testing.assert_allclose(host(x.grad), np.ones((2, 3, 2)) @ b.T)
    y = T(b, device, True)
    out = T(a, device) @ y
    out.backward(pydl.ones_like(out))
    np.testing.assert_allclose(host(y.grad), np.einsum("bmk,bmn->kn", a, np.ones((2, 3, 2))))
