"""The float16 / bfloat16 tensor-core matmul (csrc/cuda/matmul_half.cu) against the float64
product of the same (rounded) inputs, on a GPU and in the host emulation (PYDL_CUDA_EMULATE=1).

The kernel accumulates in float32 and rounds once, so each element is within one unit in the
last place of the low dtype of the exact product, plus float32 accumulation error (K terms).
Outputs are poisoned (NaN) first, so an unwritten element fails. Sizes are odd on purpose:
1, primes, the 64-wide tile +-1, K not a multiple of the 32-deep step.
"""

from __future__ import annotations

from itertools import product

import _cuda_emu
import ml_dtypes
import numpy as np
import pytest

from pydl.backend import cuda as backend
from pydl.backend.cuda import gemm_half

F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
ULP = {F16: 2.0 ** -10, BF16: 2.0 ** -7}  # one unit in the last place at 1.0


@pytest.fixture(params=_cuda_emu.KINDS)
def dev(request, monkeypatch):
    if request.param == "gpu":
        backend.precompile()
    return _cuda_emu.device(request.param, monkeypatch)


def _stored(rng, rows, cols, trans, dtype, batch=None):
    shape = (cols, rows) if trans else (rows, cols)
    if batch is not None:
        shape = (batch,) + shape
    return rng.standard_normal(shape).astype(dtype)


def _check(got, a, b, trans_a, trans_b, dtype):
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    op_a = np.swapaxes(a64, -1, -2) if trans_a else a64
    op_b = np.swapaxes(b64, -1, -2) if trans_b else b64
    want = op_a @ op_b
    k = op_a.shape[-1]
    bound = np.abs(op_a) @ np.abs(op_b)
    tol = ULP[dtype] * np.abs(want) + k * 2.0 ** -23 * bound + 1e-30
    assert got.dtype == dtype and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= tol), f"worst {np.max(err / tol):.3g} x the tolerance"


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
@pytest.mark.parametrize("trans_a,trans_b", list(product([False, True], repeat=2)))
@pytest.mark.parametrize("mnk", [(1, 1, 1), (5, 7, 3), (17, 19, 23), (63, 65, 33), (65, 64, 70),
                                 (130, 9, 97)], ids=lambda s: "x".join(map(str, s)))
def test_matmul_half(dev, dtype, trans_a, trans_b, mnk):
    m, n, k = mnk
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = _stored(rng, m, k, trans_a, dtype)
    b = _stored(rng, k, n, trans_b, dtype)
    got = dev.get(backend.matmul(dev.put(a), dev.put(b), trans_a, trans_b))
    _check(got, a, b, trans_a, trans_b, dtype)


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
def test_matmul_half_batched_and_views(dev, dtype):
    rng = np.random.default_rng(5)
    a = _stored(rng, 33, 40, False, dtype, batch=3)
    b = _stored(rng, 40, 17, True, dtype, batch=3)
    got = dev.get(backend.matmul(dev.put(a), dev.put(b), False, True))
    _check(got, a, b, False, True, dtype)
    big = rng.standard_normal((21, 50)).astype(dtype)  # a column slice: ld 50
    w = rng.standard_normal((11, 13)).astype(dtype)
    got = dev.get(backend.matmul(dev.put(big)[:, 2:13], dev.put(w)))
    _check(got, np.ascontiguousarray(big[:, 2:13]), w, False, False, dtype)


def test_matmul_half_empty_k_and_overflow(dev):
    for dtype in (F16, BF16):
        z = dev.get(backend.matmul(dev.put(np.ones((3, 0), dtype)),
                                   dev.put(np.ones((0, 4), dtype))))
        assert z.shape == (3, 4) and np.all(z.astype(np.float32) == 0)
    # 300 * 300 = 90000: past float16's 65504, so inf (IEEE); bfloat16 holds it
    a = np.full((2, 1), 300.0)
    b = np.full((1, 3), 300.0)
    h = dev.get(backend.matmul(dev.put(a.astype(F16)), dev.put(b.astype(F16))))
    assert np.all(np.isinf(h.astype(np.float32)))
    bf = dev.get(backend.matmul(dev.put(a.astype(BF16)), dev.put(b.astype(BF16))))
    assert np.all(bf.astype(np.float32) == np.float32(BF16.type(90000.0)))


def test_instances_cover_both_formats_and_transposes():
    names = backend.instances()["matmul_half.cu"]
    assert len(names) == 8 and len(set(names)) == 8
    assert any("pydl::bf16" in n for n in names) and any("pydl::f16" in n for n in names)
    assert gemm_half.launch_block(names[0]) == 128


# -- the other kernels: low-precision inputs computed in float32 (backend/low_precision.py) -----
def _close_low(got, want, dtype, scale):
    got = np.asarray(got).astype(np.float64)
    assert np.all(np.abs(got - want) <= 2 * ULP[dtype] * (np.abs(want) + scale)), \
        np.max(np.abs(got - want))


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
def test_kernels_take_low_precision_inputs(dev, dtype):
    from pydl.backend.cpu import reference as ref

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    w = (rng.standard_normal((5, 3, 3, 3)) / 4).astype(dtype)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    y = backend.conv2d_forward(dev.put(x), dev.put(w), (2, 1), (1, 1), (1, 1), 1)
    want = ref.conv2d_forward(x64, w64, (2, 1), (1, 1), (1, 1), 1)
    assert dev.get(y).dtype == dtype
    _close_low(dev.get(y), want, dtype, scale=np.abs(want).max() * 2 ** -10)
    p, arg = backend.max_pool2d_forward(dev.put(x), (3, 3), (2, 2), (1, 1))
    pw, pa = ref.max_pool2d_forward(x64, (3, 3), (2, 2), (1, 1))
    assert np.array_equal(dev.get(p).astype(np.float64), pw)  # maxima are exact
    assert np.array_equal(dev.get(arg), pa)
    logits = x.reshape(-1, 11)
    for name in ("softmax_forward", "log_softmax_forward"):
        got = dev.get(getattr(backend, name)(dev.put(logits)))
        want = getattr(ref, name)(logits.astype(np.float64))
        assert got.dtype == dtype
        _close_low(got, want, dtype, scale=0.0)
    target = rng.integers(0, 11, logits.shape[0])
    loss, _ = backend.cross_entropy_forward(dev.put(logits), dev.put(target), None, -100, 0.0)
    want, _ = ref.cross_entropy_forward(logits.astype(np.float64), target, None, -100, 0.0)
    _close_low(dev.get(loss), want, dtype, scale=0.0)
