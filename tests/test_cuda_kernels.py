"""Every CUDA kernel against the NumPy reference (``pydl.backend.cpu.reference``).

Runs on a GPU (tests marked ``gpu``, skipped without one) and, with ``PYDL_CUDA_EMULATE=1``
and a C++ compiler, on the CPU: ``tests/cuda_emu.h`` runs the same kernels as C++ with CUDA
threads as coroutines. Both go through the backend's own dispatch code. With
AddressSanitizer (out-of-bounds and misaligned accesses) and a shuffled thread order
(missing barriers):

    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
    PYDL_EMU_ORDER=random PYDL_CUDA_EMULATE=1 python -m pytest tests/test_cuda_kernels.py

Every output the backend allocates is poisoned (NaN, or -7 for integers) so an element a
kernel fails to write shows up. Sizes are odd on purpose: 0, 1, primes, tile sizes +-1
(tiles are 64 and 128 wide, 8 and 16 deep). The ``plan`` fixture pretends the GPU has 1 SM
(large tiles, no split-K) or 4096 (small tiles, split-K wherever K allows), so both plans
run at small sizes. References run in float64; tolerances: float64 1e-10, float32 1e-5,
TF32 1e-3, relative, with an absolute part that grows with the reduction length.
"""

from __future__ import annotations

import copy
import math
import os
from itertools import product

import _cuda_emu
import numpy as np
import pytest

from pydl.backend import cuda as backend
from pydl.backend.cpu import reference as ref
from pydl.backend.cuda import graph, runtime

if os.environ.get("PYDL_CUDA_NO_POOL") == "1":  # for compute-sanitizer: no pooled slack
    try:
        import cupy

        cupy.cuda.set_allocator(None)
    except ImportError:
        pass
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)
TOL = {F32: 1e-5, F64: 1e-10}


@pytest.fixture(params=_cuda_emu.KINDS)
def dev(request, monkeypatch):
    if request.param == "gpu":
        backend.precompile()  # one NVRTC run per file instead of one per instance
    return _cuda_emu.device(request.param, monkeypatch)


@pytest.fixture(params=["large", "split"])
def plan(request, monkeypatch, dev):
    sms = 1 if request.param == "large" else 4096
    monkeypatch.setattr(runtime, "sm_count", lambda: sms)
    return request.param


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def assert_close(got, want, dtype, reduction=1, tol=None):
    """Relative tolerance by dtype, plus an absolute part growing with sqrt(reduction)."""
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    want = np.asarray(want, np.float64)
    scale = float(np.abs(want).max()) if want.size else 1.0
    atol = tol * math.sqrt(max(reduction, 1)) * max(scale, 1.0)
    got = np.asarray(got)
    assert got.shape == want.shape
    assert got.dtype == np.dtype(dtype)
    assert not np.isnan(got).any() or np.isnan(want).any(), "unwritten (NaN) outputs"
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=tol, atol=atol)


# ----------------------------------------------------------------------------- matmul
MATMUL_SHAPES = [  # (M, N, K)
    (1, 1, 1), (0, 3, 4), (3, 0, 4), (3, 4, 0), (7, 13, 29), (17, 1, 33), (63, 65, 17),
    (64, 64, 16), (65, 63, 129), (128, 128, 8), (129, 127, 300), (255, 257, 40),
    (31, 257, 1100),
]


def _stored(rng, rows, cols, trans, dtype, batch=None):
    """A random operand whose op() is rows x cols, stored transposed when ``trans``."""
    shape = (cols, rows) if trans else (rows, cols)
    return _rand(rng, shape if batch is None else (batch,) + shape, dtype)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("trans_a,trans_b", list(product([False, True], repeat=2)))
@pytest.mark.parametrize("mnk", MATMUL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul(dev, plan, dtype, trans_a, trans_b, mnk):
    m, n, k = mnk
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = _stored(rng, m, k, trans_a, dtype)
    b = _stored(rng, k, n, trans_b, dtype)
    got = backend.matmul(dev.put(a), dev.put(b), trans_a, trans_b)
    want = ref.matmul(a.astype(F64), b.astype(F64), trans_a, trans_b)
    assert_close(dev.get(got), want, dtype, reduction=k)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("trans_a,trans_b", list(product([False, True], repeat=2)))
@pytest.mark.parametrize("bmnk", [(1, 5, 6, 7), (3, 17, 19, 23), (2, 65, 33, 1030)],
                         ids=lambda s: "x".join(map(str, s)))
def test_matmul_batched(dev, plan, dtype, trans_a, trans_b, bmnk):
    bsz, m, n, k = bmnk
    rng = np.random.default_rng(bsz + m + n + k)
    a = _stored(rng, m, k, trans_a, dtype, bsz)
    b = _stored(rng, k, n, trans_b, dtype, bsz)
    got = backend.matmul(dev.put(a), dev.put(b), trans_a, trans_b)
    want = ref.matmul(a.astype(F64), b.astype(F64), trans_a, trans_b)
    assert_close(dev.get(got), want, dtype, reduction=k)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("case", ["transposed_view", "column_slice", "strided", "broadcast",
                                  "offset_view"])
def test_matmul_non_contiguous(dev, plan, dtype, case):
    rng = np.random.default_rng(7)
    m, n, k = 37, 66, 45
    if case == "transposed_view":  # a.T of a C-contiguous (K, M): read as trans_a, no copy
        a_host = _rand(rng, (k, m), dtype)
        a, a_np = dev.put(a_host).T, a_host.T
    elif case == "column_slice":  # rows longer than the view: ld = 50
        big = _rand(rng, (m, 50), dtype)
        a, a_np = dev.put(big)[:, 3 : 3 + k], big[:, 3 : 3 + k]
    elif case == "strided":  # neither layout: copied
        big = _rand(rng, (m, 2 * k), dtype)
        a, a_np = dev.put(big)[:, ::2], big[:, ::2]
    elif case == "offset_view":  # pointer not 16-byte aligned: scalar loads
        big = _rand(rng, (m * k + 1,), dtype)
        a, a_np = dev.put(big)[1:].reshape(m, k), big[1:].reshape(m, k)
    else:  # batch stride 0
        row = _rand(rng, (1, m, k), dtype)
        a = dev.xp.broadcast_to(dev.put(row), (3, m, k))
        a_np = np.broadcast_to(row, (3, m, k))
    b_host = _rand(rng, a_np.shape[:-2] + (k, n), dtype)
    got = backend.matmul(a, dev.put(b_host))
    want = ref.matmul(np.asarray(a_np, F64), b_host.astype(F64))
    assert_close(dev.get(got), want, dtype, reduction=k)


@pytest.mark.parametrize("trans_a,trans_b", list(product([False, True], repeat=2)))
@pytest.mark.parametrize("mnk", [(1, 1, 1), (7, 13, 29), (65, 63, 129), (128, 128, 16),
                                 (127, 131, 17), (129, 128, 15), (132, 124, 36), (129, 130, 300),
                                 (31, 257, 1100)], ids=lambda s: "x".join(map(str, s)))
def test_matmul_tf32(dev, plan, monkeypatch, trans_a, trans_b, mnk):
    monkeypatch.setitem(backend._settings, "allow_tf32", True)
    m, n, k = mnk
    rng = np.random.default_rng(m + n + k)
    a = _stored(rng, m, k, trans_a, F32)
    b = _stored(rng, k, n, trans_b, F32)
    got = backend.matmul(dev.put(a), dev.put(b), trans_a, trans_b)
    want = ref.matmul(a.astype(F64), b.astype(F64), trans_a, trans_b)
    assert_close(dev.get(got), want, F32, reduction=k, tol=1e-3)


@pytest.mark.parametrize("trans_a,trans_b", list(product([False, True], repeat=2)))
@pytest.mark.parametrize("n", [4, 5])  # aligned (cp.async 16 B, ldmatrix) and scalar paths
def test_matmul_tf32_truncates_operands(dev, monkeypatch, trans_a, trans_b, n):
    """The TF32 kernel feeds raw float32 bits to the tensor cores, which keep the top 10
    mantissa bits: 1 + 2^-11 + 2^-12 is read as 1 (rounding would give 1 + 2^-10), and the
    negative value as -1 (toward zero). B is the identity, so C = op(A) read as TF32."""
    monkeypatch.setitem(backend._settings, "allow_tf32", True)
    x = np.float32(1 + 2.0**-11 + 2.0**-12)
    a = np.full((n, n), x, F32)
    a[:, 0] = -x
    eye = np.eye(n, dtype=F32)
    got = dev.get(backend.matmul(dev.put(a), dev.put(eye), trans_a, trans_b))
    want = np.ones((n, n), F32)
    want[:, 0] = -1
    np.testing.assert_array_equal(got, want.T if trans_a else want)


def test_matmul_errors(dev):
    x = dev.put(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(3, 4\) and \(3, 4\) cannot be multiplied"):
        backend.matmul(x, x)
    with pytest.raises(TypeError, match="float32 and float64"):
        backend.matmul(x, dev.put(np.ones((4, 2), np.float64)))


# ----------------------------------------------------------------------------- conv2d
CONV_CASES = [  # N, C, H, W, O, kH, kW, stride, padding, dilation, groups
    (2, 3, 7, 9, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (1, 1, 1, 1, 1, 1, 1, (1, 1), (0, 0), (1, 1), 1),
    (1, 4, 5, 5, 6, 1, 1, (1, 1), (0, 0), (1, 1), 2),
    (2, 6, 11, 8, 9, 3, 2, (2, 3), (1, 0), (1, 2), 3),
    (3, 8, 9, 9, 16, 3, 3, (2, 2), (1, 1), (1, 1), 1),
    (2, 16, 12, 10, 33, 3, 3, (1, 1), (2, 2), (2, 2), 1),
    (2, 4, 6, 6, 4, 3, 3, (1, 1), (1, 1), (1, 1), 4),
    (0, 3, 5, 5, 2, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 64, 9, 9, 130, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (4, 3, 20, 20, 8, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (1, 128, 16, 16, 127, 3, 3, (1, 1), (1, 1), (1, 1), 1),  # 128-wide tiles, both VEC_A
    (1, 127, 16, 16, 128, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    # backward weight on 128-wide tiles with O and C*kH*kW just past a tile (rows clamped)
    (2, 15, 9, 9, 129, 3, 3, (1, 1), (1, 1), (1, 1), 1),
]


def _conv_id(case):
    n, c, h, w, o, kh, kw, s, p, d, g = case
    return f"n{n}c{c}h{h}w{w}o{o}k{kh}{kw}s{s[0]}{s[1]}p{p[0]}{p[1]}d{d[0]}{d[1]}g{g}"


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d(dev, plan, dtype, case):
    n, c, h, w, o, kh, kw, stride, padding, dilation, groups = case
    rng = np.random.default_rng(n + c + h + w + o)
    x = _rand(rng, (n, c, h, w), dtype)
    wt = _rand(rng, (o, c // groups, kh, kw), dtype)
    args = (stride, padding, dilation, groups)
    y = backend.conv2d_forward(dev.put(x), dev.put(wt), *args)
    want_y = ref.conv2d_forward(x.astype(F64), wt.astype(F64), *args)
    assert_close(dev.get(y), want_y, dtype, reduction=c // groups * kh * kw)

    gy = _rand(rng, want_y.shape, dtype)
    gx = backend.conv2d_backward_data(dev.put(gy), dev.put(wt), x.shape, *args)
    want_gx = ref.conv2d_backward_data(gy.astype(F64), wt.astype(F64), x.shape, *args)
    assert_close(dev.get(gx), want_gx, dtype, reduction=o // groups * kh * kw)

    gw = backend.conv2d_backward_weight(dev.put(gy), dev.put(x), wt.shape, *args)
    want_gw = ref.conv2d_backward_weight(gy.astype(F64), x.astype(F64), wt.shape, *args)
    assert_close(dev.get(gw), want_gw, dtype, reduction=n * want_y.shape[2] * want_y.shape[3])


def test_conv2d_non_contiguous_input(dev):
    rng = np.random.default_rng(3)
    big = _rand(rng, (2, 3, 9, 14), F32)
    x = big[:, :, :, ::2]
    wt = _rand(rng, (5, 3, 3, 3), F32)
    args = ((1, 1), (1, 1), (1, 1), 1)
    y = backend.conv2d_forward(dev.put(big)[:, :, :, ::2], dev.put(wt), *args)
    assert_close(dev.get(y), ref.conv2d_forward(x.astype(F64), wt.astype(F64), *args), F32, 27)


# ----------------------------------------------------------------------------- pooling
POOL_CASES = [  # N, C, H, W, kernel, stride, padding
    (2, 3, 7, 9, (3, 3), (2, 2), (1, 1)),
    (1, 1, 1, 1, (1, 1), (1, 1), (0, 0)),
    (2, 2, 8, 8, (2, 2), (2, 2), (0, 0)),
    (1, 3, 5, 7, (3, 2), (1, 2), (1, 0)),
    (2, 1, 6, 5, (4, 4), (3, 1), (2, 2)),
    (0, 2, 4, 4, (2, 2), (2, 2), (0, 0)),
]


def _pool_input(rng, shape, dtype, special):
    x = rng.integers(-3, 4, size=shape).astype(dtype)  # small integers: many ties
    if special and x.size > 4:
        flat = x.reshape(-1)
        flat[1], flat[-2] = np.nan, -np.inf
    return x


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c[:4])) + str(c[4:]))
@pytest.mark.parametrize("special", [False, True], ids=["ties", "nan_inf"])
def test_max_pool2d(dev, dtype, case, special):
    n, c, h, w, kernel, stride, padding = case
    rng = np.random.default_rng(h * w)
    x = _pool_input(rng, (n, c, h, w), dtype, special)
    y, arg = backend.max_pool2d_forward(dev.put(x), kernel, stride, padding)
    want_y, want_arg = ref.max_pool2d_forward(x, kernel, stride, padding)
    np.testing.assert_array_equal(dev.get(y), want_y)
    np.testing.assert_array_equal(dev.get(arg), want_arg)
    gy = _rand(rng, want_y.shape, dtype)
    gx = backend.max_pool2d_backward(dev.put(gy), arg, x.shape)
    assert_close(dev.get(gx), ref.max_pool2d_backward(gy.astype(F64), want_arg, x.shape), dtype,
                 reduction=kernel[0] * kernel[1])


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c[:4])) + str(c[4:]))
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d(dev, dtype, case, count_include_pad):
    n, c, h, w, kernel, stride, padding = case
    rng = np.random.default_rng(h + w)
    x = _rand(rng, (n, c, h, w), dtype)
    args = (kernel, stride, padding, count_include_pad)
    y = backend.avg_pool2d_forward(dev.put(x), *args)
    want_y = ref.avg_pool2d_forward(x.astype(F64), *args)
    assert_close(dev.get(y), want_y, dtype, reduction=kernel[0] * kernel[1])
    gy = _rand(rng, want_y.shape, dtype)
    gx = backend.avg_pool2d_backward(dev.put(gy), x.shape, *args)
    assert_close(dev.get(gx), ref.avg_pool2d_backward(gy.astype(F64), x.shape, *args), dtype,
                 reduction=kernel[0] * kernel[1])


def test_pool_non_contiguous_input(dev):
    rng = np.random.default_rng(5)
    big = _rand(rng, (2, 3, 8, 12), F32)
    y, arg = backend.max_pool2d_forward(dev.put(big)[..., ::2], (2, 2), (2, 2), (0, 0))
    want_y, want_arg = ref.max_pool2d_forward(np.ascontiguousarray(big[..., ::2]), (2, 2), (2, 2),
                                              (0, 0))
    np.testing.assert_array_equal(dev.get(y), want_y)
    np.testing.assert_array_equal(dev.get(arg), want_arg)


# ----------------------------------------------------------------------------- softmax family
ROW_SHAPES = [(0, 5), (3, 0), (1, 1), (5, 1), (7, 31), (3, 32), (7, 33), (5, 100), (3, 200),
              (2, 500), (2, 1000), (2, 1024), (3, 1025), (2, 4095), (2, 7000), (2, 8193),
              (2, 3, 17),
              # rows <= 32 columns: several rows per warp (groups of 1-32 lanes), last block
              # partly filled
              (129, 1), (37, 3), (300, 5), (45, 9), (70, 17), (11, 2)]


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("shape", ROW_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_softmax_family(dev, dtype, shape, kind):
    rng = np.random.default_rng(sum(shape))
    x = (3 * rng.standard_normal(shape)).astype(dtype)
    fwd, bwd = getattr(backend, f"{kind}_forward"), getattr(backend, f"{kind}_backward")
    y = fwd(dev.put(x))
    want_y = getattr(ref, f"{kind}_forward")(x.astype(F64))
    assert_close(dev.get(y), want_y, dtype, reduction=shape[-1])
    gy = _rand(rng, shape, dtype)
    y_in = want_y.astype(dtype)
    gx = bwd(dev.put(gy), dev.put(y_in))
    want_gx = getattr(ref, f"{kind}_backward")(gy.astype(F64), y_in.astype(F64))
    assert_close(dev.get(gx), want_gx, dtype, reduction=shape[-1])


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("cols", [5, 32, 300, 1000, 9000], ids=str)
@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_softmax_family_special_values(dev, dtype, cols, kind):
    """-inf (masked) and NaN logits and all -inf rows: the register variants sum exp over
    their padding columns untested (they hold -inf), and the online (max, sum) of wide rows
    must skip a -inf that comes before any finite value in a lane (it gave NaN rows)."""
    rng = np.random.default_rng(cols)
    x = rng.standard_normal((6, cols)).astype(dtype)
    x[0, ::3] = -np.inf  # some -inf, the first column among them
    x[1, :] = -np.inf  # all -inf: NaN in the reference
    x[2, : cols // 2] = -np.inf  # every lane starts at -inf
    x[3, -1] = np.nan
    x[4, :-1] = -np.inf  # one finite value
    y = dev.get(getattr(backend, f"{kind}_forward")(dev.put(x)))
    want = getattr(ref, f"{kind}_forward")(x.astype(F64))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(y[fin].astype(F64), want[fin], rtol=TOL[dtype], atol=TOL[dtype])


def test_softmax_non_contiguous(dev):
    rng = np.random.default_rng(11)
    big = _rand(rng, (6, 40), F32)
    y = backend.softmax_forward(dev.put(big)[::2, 1:38])
    assert_close(dev.get(y), ref.softmax_forward(big[::2, 1:38].astype(F64)), F32, 37)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("nc", [(0, 5), (1, 1), (7, 10), (5, 1000), (3, 1500)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_cross_entropy(dev, dtype, nc, weighted, eps):
    n, c = nc
    rng = np.random.default_rng(n + c)
    logits = (2 * rng.standard_normal((n, c))).astype(dtype)
    target = rng.integers(0, c, size=n).astype(np.int64)
    if n > 2:
        target[1] = -100  # ignored
    weight = rng.uniform(0.5, 2.0, size=c).astype(dtype) if weighted else None
    dweight = dev.put(weight) if weighted else None
    loss, lse = backend.cross_entropy_forward(dev.put(logits), dev.put(target), dweight, -100, eps)
    w64 = weight.astype(F64) if weighted else None
    want_loss, want_lse = ref.cross_entropy_forward(logits.astype(F64), target, w64, -100, eps)
    assert_close(dev.get(loss), want_loss, dtype, reduction=c)
    assert_close(dev.get(lse), want_lse, dtype, reduction=c)
    g = rng.uniform(0.5, 1.5, size=n).astype(dtype)
    lse_in = want_lse.astype(dtype)
    gl = backend.cross_entropy_backward(dev.put(g), dev.put(logits), dev.put(lse_in),
                                        dev.put(target), dweight, -100, eps)
    want_gl = ref.cross_entropy_backward(g.astype(F64), logits.astype(F64), lse_in.astype(F64),
                                         target, w64, -100, eps)
    assert_close(dev.get(gl), want_gl, dtype, reduction=c)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("c", [10, 700], ids=str)
def test_cross_entropy_masked_logits(dev, dtype, c):
    """-inf logits (masked classes) in every lane's first columns: a finite loss."""
    rng = np.random.default_rng(c)
    logits = rng.standard_normal((4, c)).astype(dtype)
    logits[:, : c // 2] = -np.inf
    target = rng.integers(c // 2, c, size=4).astype(np.int64)
    loss, lse = backend.cross_entropy_forward(dev.put(logits), dev.put(target), None, -100, 0.0)
    want_loss, want_lse = ref.cross_entropy_forward(logits.astype(F64), target, None, -100, 0.0)
    assert np.isfinite(want_loss).all()
    assert_close(dev.get(loss), want_loss, dtype, reduction=c)
    assert_close(dev.get(lse), want_lse, dtype, reduction=c)


@pytest.mark.parametrize("bad", [10, -1, 12345])
def test_cross_entropy_bad_target(dev, bad):
    logits = np.zeros((4, 10), np.float32)
    target = np.array([1, 2, bad, 10 if bad != 10 else 11], np.int64)
    with pytest.raises(IndexError) as cpu_error:
        ref.cross_entropy_forward(logits, target, None, -100, 0.0)
    with pytest.raises(IndexError) as gpu_error:
        backend.cross_entropy_forward(dev.put(logits), dev.put(target), None, -100, 0.0)
    assert str(gpu_error.value) == str(cpu_error.value)


# ----------------------------------------------------------------------------- optimizers
OPT_SIZES = [(1,), (7,), (3, 2731), (0,), (20000,), (5, 4)]


def _opt_lists(rng, dtype, count):
    return [[_rand(rng, s, dtype) for s in OPT_SIZES] for _ in range(count)]


OPTIMIZERS = {
    "sgd_plain": ("sgd_step", 3, dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0,
                                      nesterov=False, maximize=False)),
    "sgd_momentum": ("sgd_step", 3, dict(lr=0.05, momentum=0.9, dampening=0.1,
                                         weight_decay=0.01, nesterov=False, maximize=True)),
    "sgd_nesterov": ("sgd_step", 3, dict(lr=0.05, momentum=0.9, dampening=0.0,
                                         weight_decay=0.0, nesterov=True, maximize=False)),
    "adam": ("adam_step", 5, dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1,
                                  amsgrad=False, decoupled_weight_decay=False, maximize=False)),
    "adamw_amsgrad": ("adam_step", 5, dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6,
                                           weight_decay=0.1, amsgrad=True,
                                           decoupled_weight_decay=True, maximize=True)),
    "rmsprop": ("rmsprop_step", 5, dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                                        momentum=0.0, centered=False, maximize=False)),
    "rmsprop_centered_momentum": ("rmsprop_step", 5, dict(lr=1e-2, alpha=0.9, eps=1e-6,
                                                          weight_decay=0.05, momentum=0.5,
                                                          centered=True, maximize=True)),
    "adagrad": ("adagrad_step", 3, dict(lr=0.1, lr_decay=0.01, weight_decay=0.02, eps=1e-10,
                                        maximize=False)),
}


NON_NEGATIVE_STATES = {"adam_step": (3, 4), "rmsprop_step": (2,), "adagrad_step": (2,)}


def _opt_call(fn, name, lists, kw, step):
    kw = dict(kw)
    if name == "sgd_step":
        kw["first_step"] = step == 1
    elif name in ("adam_step", "adagrad_step"):
        kw["step"] = step
    if name == "adam_step":
        lists = lists[:4] + [lists[4] if kw["amsgrad"] else None]
    if name == "rmsprop_step":
        lists = (lists[:3] + [lists[3] if kw["momentum"] > 0 else None]
                 + [lists[4] if kw["centered"] else None])
    fn(*lists, **kw)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_optimizer_step(dev, dtype, which):
    _check_optimizer_steps(dev, dtype, which)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_optimizer_step_scalars_from_device(dev, monkeypatch, dtype, which):
    """The scalars read from a device array, as in a CUDA graph replay (backend/cuda/graph.py).

    The slot is filled with this step's scalars (what a replay's refresh writes) while the
    kernel's scalar arguments are NaN: the update is right only if the kernel reads the slot.
    """
    def slot(values, slot_dtype, key):
        assert len(key) >= 1
        return dev.put(np.asarray(values, slot_dtype))

    launch = runtime.launch

    def nan_scalars(filename, name_expr, grid, block, args):
        if filename == "optim.cu":  # (ptrs, chunks, ntensors, nchunks, dyn, *scalars, flags)
            args = args[:5] + tuple(type(v)(np.nan) for v in args[5:-1]) + args[-1:]
        launch(filename, name_expr, grid, block, args)

    monkeypatch.setattr(graph, "active", lambda: True)
    monkeypatch.setattr(graph, "scalar_slot", slot)
    monkeypatch.setattr(runtime, "launch", nan_scalars)
    _check_optimizer_steps(dev, dtype, which)


@pytest.mark.parametrize("dtype", [F32, F64], ids=str)
@pytest.mark.parametrize("which", ["sgd_momentum", "adamw_amsgrad", "rmsprop_centered_momentum",
                                   "adagrad"])
def test_optimizer_step_persistent_grid_misaligned(dev, monkeypatch, dtype, which):
    """Two blocks walk all the chunks (a persistent grid), and the 20000-element tensor's
    parameter and states sit one element past a 16-byte boundary (the scalar path) while
    its gradient is aligned."""
    from pydl.backend.cuda import optim

    monkeypatch.setattr(optim, "_OPT_BLOCKS_PER_SM", 2)
    monkeypatch.setattr(runtime, "sm_count", lambda: 1)
    _check_optimizer_steps(dev, dtype, which, misalign=4)


def _check_optimizer_steps(dev, dtype, which, misalign=None):
    """Three steps of optimizer ``which`` on the device against the NumPy reference; with
    ``misalign`` = k, tensor k's non-gradient lists are views one element into a buffer."""
    name, count, kw = OPTIMIZERS[which]
    rng = np.random.default_rng(len(which))
    host = _opt_lists(rng, dtype, count)
    for i in NON_NEGATIVE_STATES.get(name, ()):
        host[i] = [np.abs(a) for a in host[i]]
    if name == "rmsprop_step":  # centered needs square_avg >= grad_avg^2
        host[2] = [s + g * g for s, g in zip(host[2], host[4], strict=True)]
    # the last parameter is a transposed (non-contiguous) view, updated through a copy
    devs = [[dev.put(a) for a in lst] for lst in host]
    devs[0][-1] = dev.put(np.ascontiguousarray(host[0][-1].T)).T
    if misalign is not None:
        for li, lst in enumerate(host):
            if li != 1:
                devs[li][misalign] = dev.put(np.concatenate([[0], lst[misalign]]).astype(dtype))[1:]
    for step in (1, 2, 3):
        grads = [_rand(rng, s, dtype) for s in OPT_SIZES]
        host[1], devs[1] = grads, [dev.put(g) for g in grads]
        _opt_call(getattr(ref, name), name, host, kw, step)
        _opt_call(getattr(backend, name), name, devs, kw, step)
    for i, (want_list, got_list) in enumerate(zip(host, devs, strict=True)):
        if i == 1:
            continue
        for want, got in zip(want_list, got_list, strict=True):
            assert_close(dev.get(got), want, dtype, tol=10 * TOL[dtype])


# ----------------------------------------------------------------------------- end to end
@pytest.mark.gpu
@pytest.mark.parametrize("optimizer", ["SGD", "AdamW"])
def test_mlp_training_step_matches_cpu(optimizer):
    """A small MLP trained three steps on the GPU ends with the CPU's parameters (float64)."""
    import pydl

    nn = pytest.importorskip("pydl.nn")
    optim = pytest.importorskip("pydl.optim")
    pydl.manual_seed(0)
    cpu = nn.Sequential(nn.Linear(20, 33), nn.ReLU(), nn.Linear(33, 5)).double()
    gpu = copy.deepcopy(cpu).to("cuda")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((17, 20))
    y = rng.integers(0, 5, size=17)
    kw = {"lr": 0.1, "momentum": 0.9} if optimizer == "SGD" else {"lr": 1e-2, "weight_decay": 0.1}
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        opt = getattr(optim, optimizer)(model.parameters(), **kw)
        xt = pydl.tensor(x, dtype=pydl.float64, device=device)
        yt = pydl.tensor(y, device=device)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()
    for p_cpu, p_gpu in zip(cpu.parameters(), gpu.parameters(), strict=True):
        np.testing.assert_allclose(p_gpu.detach().cpu().numpy(), p_cpu.detach().numpy(),
                                   rtol=1e-9, atol=1e-12)
