"""numba-written custom ops: bias_gelu and layer_norm against float64 NumPy references, float64
gradcheck on every device, custom_op for a user's op, the on-disk kernel cache, and the CUDA
versions compiled to PTX for sm_80 and sm_90 (no GPU needed)."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import pydl
from pydl.testing import gradcheck

numba = pytest.importorskip("numba")
from pydl.custom import custom_op, fused, kernel  # noqa: E402

SHAPES = [(5, 7), (1, 1), (4,), (2, 3, 6), (0, 4), (33, 17)]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_reference(v):
    return 0.5 * v * (1.0 + _erf(v / math.sqrt(2.0)))


def layer_norm_reference(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _inputs(shape, device, dtype="float64", requires_grad=False):
    rng = np.random.default_rng(len(shape) * 31 + shape[-1])
    x = rng.standard_normal(shape) * 2
    v = rng.standard_normal(shape[-1:])
    w = 1.0 + 0.5 * rng.standard_normal(shape[-1:])
    make = lambda a: pydl.tensor(a, dtype=dtype, device=device, requires_grad=requires_grad)
    return (x, v, w), (make(x), make(v), make(w))


@pytest.mark.parametrize("shape", SHAPES)
def test_bias_gelu_forward(shape, device):
    (x, b, _), (tx, tb, _) = _inputs(shape, device)
    y = pydl.custom.bias_gelu(tx, tb)
    assert y.shape == shape and y.dtype == np.float64 and y.device == tx.device
    np.testing.assert_allclose(y.numpy(), gelu_reference(x + b), rtol=1e-12, atol=1e-14)
    y32 = pydl.custom.bias_gelu(tx.float(), tb.float())
    np.testing.assert_allclose(y32.numpy(), gelu_reference(x + b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_forward(shape, device):
    (x, b, w), (tx, tb, tw) = _inputs(shape, device)
    y = pydl.custom.layer_norm(tx, tw, tb, eps=1e-5)
    np.testing.assert_allclose(y.numpy(), layer_norm_reference(x, w, b, 1e-5), rtol=1e-10,
                               atol=1e-12)
    y32 = pydl.custom.layer_norm(tx.float(), tw.float(), tb.float())
    np.testing.assert_allclose(y32.numpy(), layer_norm_reference(x, w, b, 1e-5), rtol=1e-4,
                               atol=1e-5)


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (4,), (2, 3, 6)])
def test_gradcheck(shape, device):
    _, (x, b, w) = _inputs(shape, device, requires_grad=True)
    assert gradcheck(pydl.custom.bias_gelu, (x, b))
    assert gradcheck(lambda x, w, b: pydl.custom.layer_norm(x, w, b, eps=1e-3), (x, w, b))


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (2, 3, 6)])
def test_second_derivatives(shape, device):
    """Under create_graph both shipped ops differentiate a built-in reference: gradgradcheck,
    and the Hessian-vector product equals the built-in ops' one."""
    from pydl.testing import gradgradcheck

    _, (x, b, w) = _inputs(shape, device, requires_grad=True)
    assert gradgradcheck(pydl.custom.bias_gelu, (x, b))
    assert gradgradcheck(lambda x, w, b: pydl.custom.layer_norm(x, w, b, eps=1e-3), (x, w, b))
    F = pydl.nn.functional
    for mine, ref, args in (
            (pydl.custom.bias_gelu, lambda x, b: F.gelu(x + b), (x, b)),
            (lambda x, w, b: pydl.custom.layer_norm(x, w, b, eps=1e-3),
             lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, eps=1e-3), (x, w, b))):
        hv = []
        for fn in (mine, ref):
            out = (fn(*args) ** 2).sum()
            gs = pydl.autograd.grad(out, args, create_graph=True)
            dot = sum((g * g.detach()).sum() for g in gs)
            hv.append([h.numpy() for h in pydl.autograd.grad(dot, args)])
        for a, e in zip(*hv):
            np.testing.assert_allclose(a, e, rtol=1e-7, atol=1e-9)


def test_non_contiguous_input(device):
    (x, b, w), (tx, tb, tw) = _inputs((6, 5), device)
    view = tx.t()  # (5, 6), not contiguous
    ref_b = np.linspace(-1, 1, 6)
    tb6 = pydl.tensor(ref_b, dtype="float64", device=device)
    np.testing.assert_allclose(pydl.custom.bias_gelu(view, tb6).numpy(),
                               gelu_reference(x.T + ref_b), rtol=1e-12)
    xg = pydl.tensor(x, dtype="float64", device=device, requires_grad=True)
    assert gradcheck(lambda a, c: pydl.custom.bias_gelu(a.t(), c),
                     (xg, tb6.detach().requires_grad_()))


def test_matches_the_built_in_ops():
    import pydl.nn.functional as F

    _, (x, b, w) = _inputs((8, 16), "cpu", requires_grad=True)
    for ours, theirs in [
        (lambda: pydl.custom.bias_gelu(x, b), lambda: F.gelu(x + b)),
        (lambda: pydl.custom.layer_norm(x, w, b), lambda: F.layer_norm(x, (16,), w, b)),
    ]:
        grads = []
        for fn in (ours, theirs):
            for t in (x, b, w):
                t.grad = None
            (fn() * pydl.arange(16.0, dtype="float64")).sum().backward()
            grads.append([None if t.grad is None else t.grad.numpy().copy() for t in (x, b, w)])
        for g1, g2 in zip(*grads):
            if g2 is not None:
                np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)


def test_errors():
    x = pydl.randn(3, 4)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\).*\(3, 4\).*\(3,\)"):
        pydl.custom.bias_gelu(x, pydl.zeros(3))
    with pytest.raises(TypeError, match="x is float32 but bias is float64"):
        pydl.custom.bias_gelu(x, pydl.zeros(4, dtype="float64"))
    with pytest.raises(TypeError, match="must be floating point"):
        pydl.custom.layer_norm(pydl.ones(2, 4, dtype="int64"), pydl.ones(4), pydl.ones(4))
    with pytest.raises(ValueError, match="eps must be positive"):
        pydl.custom.layer_norm(x, pydl.ones(4), pydl.zeros(4), eps=0.0)
    with pytest.raises(ValueError, match="size 0"):
        pydl.custom.layer_norm(pydl.ones(2, 0), pydl.ones(0), pydl.ones(0))
    with pytest.raises(TypeError, match="needs a static backward"):
        custom_op(type("NoBackward", (), {"forward": staticmethod(lambda ctx, x: x)}))


def _cube_cpu(y, x):
    for i in numba.prange(x.size):
        y[i] = x[i] * x[i] * x[i]


def _cube_cuda(y, x):
    i = numba.cuda.grid(1)
    if i < x.size:
        y[i] = x[i] * x[i] * x[i]


cube_kernel = kernel(cpu=_cube_cpu, cuda=_cube_cuda)


@custom_op
class Cube:
    @staticmethod
    def forward(ctx, x):
        y = pydl.get_array_module(x).empty_like(x)
        cube_kernel(y, x, threads=x.size)
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, gy):
        (x,) = ctx.saved_tensors
        return 3 * x * x * gy


def test_custom_op_of_a_users_kernel(device):
    x = pydl.tensor(np.linspace(-2, 2, 9), dtype="float64", device=device, requires_grad=True)
    np.testing.assert_allclose(Cube(x).detach().numpy(), np.linspace(-2, 2, 9) ** 3)
    assert gradcheck(Cube, (x,))
    assert issubclass(Cube.function, pydl.Function) and Cube.__name__ == "Cube"


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cuda_kernels_compile_to_ptx(cc, dtype):
    pytest.importorskip("numba.cuda")
    for k, signature in fused.ptx_signatures(getattr(numba, dtype)).items():
        ptx = k.compile_ptx(signature, cc=cc)
        assert f".target sm_{cc[0]}{cc[1]}" in ptx, k.name
        assert ".entry" in ptx and ("f64" in ptx if dtype == "float64" else "f32" in ptx)


def test_compiled_kernels_are_cached_on_disk(tmp_path):
    code = ("import pydl; x = pydl.randn(4, 8); b = pydl.zeros(8);"
            "pydl.custom.bias_gelu(x, b);"
            "from pydl.custom import fused;"
            "print(sum(fused.bias_gelu_forward.cpu_dispatcher().stats.cache_hits.values()))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    run = lambda: subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, check=True).stdout.strip()
    assert run() == "0"  # compiled, and written to the cache
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*"))
    assert run() == "1"  # the second process loads it
