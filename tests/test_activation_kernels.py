"""The activation kernels (erf, gelu_forward, gelu_backward): C++ against the NumPy reference,
the reference against math.erf, and GELU's gradient against finite differences.

The C++ kernels compute float32 in float32 (a few float32 ulp from the float64 reference)
and float64 to about 1 ulp. Sizes are odd on purpose (0, 1, primes, one past the parallel
grain) so the vector loops' remainders and the thread split both run. The CUDA kernels run
on a GPU and, with ``PYDL_CUDA_EMULATE=1``, on the CPU (``tests/_cuda_emu.py``).
"""

from __future__ import annotations

import math

import _cuda_emu
import numpy as np
import pytest

import pydl
from pydl.backend import cpu
from pydl.backend.cpu import reference as ref

ext = cpu.extension
needs_ext = pytest.mark.skipif(ext is None, reason="pydl._C is not built")
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TOL = {F32: 4e-7, F64: 4e-16}  # relative, against the float64 reference
SIZES = [0, 1, 2, 7, 31, 97, 1021, (1 << 15) + 3]
SPECIALS = [0.0, -0.0, 1e-30, -1e-30, 0.5, -0.84375, 0.84375, 1.25, -1.25, 2.857, -2.8571434,
            3.9, -3.9, 6.0, -6.0, 10.0, -10.0, 40.0, -40.0, np.inf, -np.inf, np.nan]
_math_erf = np.vectorize(math.erf, otypes=[np.float64])


def _inputs(n, dtype, seed=0):
    rng = np.random.default_rng(seed + n)
    x = rng.standard_normal(n) * 3
    x[: min(n, len(SPECIALS))] = SPECIALS[: min(n, len(SPECIALS))]
    return x.astype(dtype)


def _close(got, want, dtype, scale=1.0):
    """Relative to max(|want|, 1e-30) elementwise, NaN where NaN, signs of zeros kept."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    err = np.abs(got[ok] - want[ok])
    tol = TOL[np.dtype(dtype)] * scale * np.maximum(np.abs(want[ok]), 1e-30)
    assert np.all(err <= tol), f"worst {np.max(err / np.maximum(np.abs(want[ok]), 1e-30)):.3g}"


# ----------------------------------------------------------------------------- reference


def test_reference_erf_matches_libm():
    x = np.concatenate([np.linspace(-7, 7, 20001), np.array(SPECIALS[:-1])])
    _close(ref.erf(x), _math_erf(x), F64, scale=2)
    assert np.isnan(ref.erf(np.array([np.nan]))[0])
    assert np.signbit(ref.erf(np.array([-0.0]))[0])


@pytest.mark.parametrize("dtype", [F32, F64])
def test_reference_gelu_forward(dtype):
    x = _inputs(1021, dtype)
    with np.errstate(invalid="ignore"):  # -inf * 0, as 0.5 * x * (1 + erf) always gave
        y, cdf = ref.gelu_forward(x)
        xd = x.astype(np.float64)
        want_cdf = 0.5 * (1 + _math_erf(xd / math.sqrt(2)))
        want_y = xd * want_cdf
    assert y.dtype == cdf.dtype == dtype
    # 0.5 * (1 + erf) is accurate to one ulp of 1, not relative, where erf is near -1
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(cdf, want_cdf, rtol=4 * TOL[dtype], atol=eps)
    np.testing.assert_allclose(y, want_y, rtol=4 * TOL[dtype], atol=4 * eps, equal_nan=True)


# ----------------------------------------------------------------------------- C++ kernels


@needs_ext
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", SIZES)
def test_erf_kernel(n, dtype):
    x = _inputs(n, dtype)
    got = ext.erf(x)
    assert got.dtype == dtype and got.shape == x.shape
    _close(got, _math_erf(x.astype(np.float64)), dtype, scale=2)
    np.testing.assert_array_equal(np.signbit(got[x == 0]), np.signbit(x[x == 0]))


@needs_ext
@pytest.mark.parametrize("dtype", [F32, F64])
def test_erf_kernel_dense_grid(dtype):
    """Every range boundary of the method, densely: [-7, 7] with 2 million points."""
    x = np.linspace(-7, 7, 2_000_001).astype(dtype)
    _close(ext.erf(x), _math_erf(x.astype(np.float64)), dtype, scale=2)


@needs_ext
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", SIZES)
def test_gelu_kernels_match_reference(n, dtype, approximate):
    x = _inputs(n, dtype)
    gy = np.random.default_rng(n).standard_normal(n).astype(dtype)
    with np.errstate(invalid="ignore"):
        y, cdf = ext.gelu_forward(x, approximate)
        y_ref, cdf_ref = ref.gelu_forward(x, approximate)
    assert y.dtype == cdf.dtype == dtype and y.shape == cdf.shape == x.shape
    # cdf = 0.5 * (1 + erf) loses relative accuracy where erf is near -1 (x << 0): compare
    # with an absolute floor of one ulp of 1
    floor = np.finfo(dtype).eps
    np.testing.assert_allclose(cdf, cdf_ref, rtol=4 * TOL[dtype], atol=floor, equal_nan=True)
    np.testing.assert_allclose(y, y_ref, rtol=4 * TOL[dtype], atol=floor, equal_nan=True)
    with np.errstate(invalid="ignore"):
        gx, gx_ref = ext.gelu_backward(gy, x, cdf_ref, approximate), ref.gelu_backward(
            gy, x, cdf_ref, approximate)
    assert gx.dtype == dtype
    np.testing.assert_allclose(gx, gx_ref, rtol=16 * TOL[dtype], atol=4 * floor,
                               equal_nan=True)


@needs_ext
def test_gelu_kernels_shapes_and_layouts():
    x = np.random.default_rng(1).standard_normal((5, 6, 7)).astype(np.float32)
    xt = x.transpose(2, 0, 1)  # not contiguous
    y, cdf = ext.gelu_forward(xt)
    assert y.shape == cdf.shape == xt.shape
    np.testing.assert_allclose(y, ref.gelu_forward(xt)[0], rtol=1e-6, atol=1e-7)
    g = ext.gelu_backward(np.ones_like(xt), xt, cdf)
    np.testing.assert_allclose(g, ref.gelu_backward(np.ones_like(xt), xt, cdf), rtol=1e-6,
                               atol=1e-7)
    scalar = np.array(0.5, np.float64)
    assert ext.gelu_forward(scalar)[0].shape == ()
    half = np.linspace(-3, 3, 11).astype(np.float16)  # not a C++ dtype: the reference's answer
    np.testing.assert_array_equal(ext.gelu_forward(half)[0], ref.gelu_forward(half)[0])


# ----------------------------------------------------------------------------- CUDA kernels
# csrc/cuda/activation.cu (pydl/backend/cuda/activation.py): on a GPU, and with
# PYDL_CUDA_EMULATE=1 on the CPU, where tests/_cuda_emu.py builds them with g++ (glibc's
# erff / tanhf / expf standing in for CUDA's); tests/test_cuda_compile.py compiles them with
# NVRTC. float32 computes in float32: 0.5 * (1 + erf) cancels where
# erf is near -1, so the error bound has an absolute part, and y = x * cdf and gx carry it
# times |x| (x^2 for gx). The bound is 8 ulp of (|want| + that absolute part), against the
# reference in float64: room for CUDA's erff, tanhf, expf, erf, tanh (a couple of ulp each in
# the CUDA C++ Programming Guide's tables); glibc's stay under 1 ulp of it here.


@pytest.fixture(params=_cuda_emu.KINDS)
def cuda(request, monkeypatch):
    return _cuda_emu.device(request.param, monkeypatch)


def _within(got, want, dtype, scale, ulps=8):
    """|got - want| <= ulps * eps * (|want| + scale), NaN where NaN, infinities equal."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    same = (got == want) | np.isnan(want)
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite
        err = np.abs(np.where(same, 0.0, got - want))
    tol = ulps * np.finfo(dtype).eps * (np.abs(want) + scale)
    bad = ~same & (np.isinf(want) | ~(err <= tol))
    assert not bad.any(), f"{bad.sum()} elements off, e.g. {got[bad][:3]} for {want[bad][:3]}"


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", SIZES)
def test_cuda_activation_kernels_match_reference(cuda, n, dtype, approximate):
    from pydl.backend import cuda as backend

    x = _inputs(n, dtype)
    gy = np.random.default_rng(n).standard_normal(n).astype(dtype)
    x64, gy64 = x.astype(np.float64), gy.astype(np.float64)
    with np.errstate(invalid="ignore"):
        erf, erf_ref = backend.erf(cuda.put(x)), ref.erf(x64)
        y, cdf = backend.gelu_forward(cuda.put(x), approximate)
        y_ref, cdf_ref = ref.gelu_forward(x64, approximate)
        gx = backend.gelu_backward(cuda.put(gy), cuda.put(x), cuda.put(cdf_ref.astype(dtype)),
                                   approximate)
        gx_ref = ref.gelu_backward(gy64, x64, cdf_ref, approximate)
    for a in (erf, y, cdf, gx):
        assert a.dtype == dtype and a.shape == (n,)
    erf = cuda.get(erf)
    _within(erf, erf_ref, dtype, 0.0)
    np.testing.assert_array_equal(np.signbit(erf[x == 0]), np.signbit(x[x == 0]))
    _within(cuda.get(cdf), cdf_ref, dtype, 1.0)
    _within(cuda.get(y), y_ref, dtype, 1 + np.abs(x64))
    _within(cuda.get(gx), gx_ref, dtype, np.abs(gy64) * (1 + x64 * x64))


def test_cuda_activation_kernels_shapes_and_dtypes(cuda):
    from pydl.backend import cuda as backend

    x = np.random.default_rng(1).standard_normal((5, 6, 7)).astype(np.float32)
    xt = cuda.put(x).transpose(2, 0, 1)  # not contiguous
    y, cdf = backend.gelu_forward(xt)
    y_ref, cdf_ref = ref.gelu_forward(x.transpose(2, 0, 1).astype(np.float64))
    assert y.shape == cdf.shape == xt.shape
    _within(cuda.get(y), y_ref, F32, 1 + np.abs(y_ref))
    gx = backend.gelu_backward(cuda.put(np.ones(xt.shape, np.float32)), xt, cdf)
    assert gx.shape == xt.shape
    scalar = backend.gelu_forward(cuda.put(np.array(0.5)))[0]
    assert scalar.shape == () and scalar.dtype == F64
    _within(cuda.get(scalar), ref.gelu_forward(np.array(0.5))[0], F64, 0.0)
    half = np.linspace(-3, 3, 11).astype(np.float16)  # computed in float32, rounded back
    for got, want in ((backend.erf(cuda.put(half)), ref.erf(half.astype(np.float64))),
                      (backend.gelu_forward(cuda.put(half))[0],
                       ref.gelu_forward(half.astype(np.float64))[0])):
        assert got.dtype == np.float16
        np.testing.assert_allclose(cuda.get(got).astype(np.float64), want, rtol=1e-3,
                                   atol=1e-3)
    with pytest.raises(TypeError):
        backend.erf(cuda.put(np.arange(3)))  # integers: not a CUDA kernel dtype


# ----------------------------------------------------------------------------- through autograd


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradient_numerical(approximate):
    x = np.random.default_rng(2).standard_normal(37) * 3
    t = pydl.tensor(x, dtype=pydl.float64, requires_grad=True)
    pydl.gelu(t, approximate=approximate).sum().backward()
    h = 1e-6

    def f(v):
        return pydl.gelu(pydl.tensor(v, dtype=pydl.float64), approximate=approximate).numpy()

    numeric = (f(x + h) - f(x - h)) / (2 * h)
    np.testing.assert_allclose(t.grad.numpy(), numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_extension_and_reference_agree(approximate):
    x = np.random.default_rng(3).standard_normal((64, 33)).astype(np.float32) * 4
    results = []
    for enabled in (False, True):
        cpu.use_extension(enabled)
        try:
            t = pydl.tensor(x, requires_grad=True)
            y = pydl.gelu(t, approximate=approximate)
            (y * y).sum().backward()
            results.append((y.detach().numpy(), t.grad.numpy()))
        finally:
            cpu.use_extension(True)
    (y0, g0), (y1, g1) = results
    np.testing.assert_allclose(y1, y0, rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(g1, g0, rtol=2e-5, atol=2e-6)
