"""Max and average pooling on float16 / bfloat16 storage (csrc/cuda/pool.cu with a storage
tag, float32 math), on a GPU and in the host emulation (PYDL_CUDA_EMULATE=1), against the
float64 reference of the same rounded inputs.

Maxima and argmax are exact; means and the backward sums are float32 sums rounded once
(max pooling's backward scatter-adds in a float32 buffer). Odd shapes, overlapping windows
(so the backward adds several contributions per input), padding, both count_include_pad
settings. Outputs are poisoned first; a recorder checks that the 16-bit instances ran.
"""

from __future__ import annotations

import _cuda_emu
import ml_dtypes
import numpy as np
import pytest

from pydl.backend import cuda as backend
from pydl.backend.cpu import reference as ref
from pydl.backend.cuda import runtime

F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
ULP = {F16: 2.0 ** -10, BF16: 2.0 ** -7}
TINY = {F16: 2.0 ** -24, BF16: 2.0 ** -133}
GEOMETRY = [  # x shape, kernel, stride, padding
    ((2, 3, 9, 11), (3, 3), (2, 2), (1, 1)),
    ((1, 5, 7, 13), (2, 3), (1, 2), (0, 1)),
    ((3, 1, 17, 5), (5, 2), (3, 1), (2, 0)),
]


@pytest.fixture(params=_cuda_emu.KINDS)
def dev(request, monkeypatch):
    if request.param == "gpu":
        backend.precompile(["pool.cu"])
    device = _cuda_emu.device(request.param, monkeypatch)
    device.launched = []
    launch = runtime.launch

    def record(filename, name_expr, *args, **kwargs):
        device.launched.append(name_expr)
        return launch(filename, name_expr, *args, **kwargs)

    monkeypatch.setattr(runtime, "launch", record)
    return device


def _close(got, want, dtype, scale):
    got = np.asarray(got)
    assert got.dtype == dtype and got.shape == want.shape
    err = np.abs(got.astype(np.float64) - want)
    tol = ULP[dtype] * np.abs(want) + 2.0 ** -20 * scale + TINY[dtype]
    assert np.all(err <= tol), f"worst {np.max(err / tol):.3g} x the tolerance"


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
@pytest.mark.parametrize("geometry", GEOMETRY, ids=lambda g: "x".join(map(str, g[0])))
def test_max_pool(dev, dtype, geometry):
    shape, k, s, p = geometry
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(dtype)
    x64 = x.astype(np.float64)
    y, arg = backend.max_pool2d_forward(dev.put(x), k, s, p)
    wy, warg = ref.max_pool2d_forward(x64, k, s, p)
    assert dev.get(y).dtype == dtype
    assert np.array_equal(dev.get(y).astype(np.float64), wy)  # maxima are exact
    assert np.array_equal(dev.get(arg), warg)
    gy = rng.standard_normal(wy.shape).astype(dtype)
    gx = backend.max_pool2d_backward(dev.put(gy), dev.put(warg), shape)
    want = ref.max_pool2d_backward(gy.astype(np.float64), warg, shape)
    _close(dev.get(gx), want, dtype, scale=np.abs(want) + 1)
    assert all(n.endswith(("pydl::f16>", "pydl::bf16>")) for n in dev.launched)


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
@pytest.mark.parametrize("geometry", GEOMETRY, ids=lambda g: "x".join(map(str, g[0])))
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool(dev, dtype, geometry, include_pad):
    shape, k, s, p = geometry
    rng = np.random.default_rng(sum(shape) + include_pad)
    x = rng.standard_normal(shape).astype(dtype)
    y = backend.avg_pool2d_forward(dev.put(x), k, s, p, include_pad)
    want = ref.avg_pool2d_forward(x.astype(np.float64), k, s, p, include_pad)
    _close(dev.get(y), want, dtype, scale=np.abs(x.astype(np.float64)).max())
    gy = rng.standard_normal(want.shape).astype(dtype)
    gx = backend.avg_pool2d_backward(dev.put(gy), shape, k, s, p, include_pad)
    wgx = ref.avg_pool2d_backward(gy.astype(np.float64), shape, k, s, p, include_pad)
    _close(dev.get(gx), wgx, dtype, scale=np.abs(gy.astype(np.float64)).max() * k[0] * k[1])
    assert dev.launched and all(n.endswith(("pydl::f16>", "pydl::bf16>")) for n in dev.launched)


def test_pool_nan_and_padding_only_windows(dev):
    """A NaN wins its window (the first NaN); a window of padding only gives -inf, argmax -1."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4).astype(BF16)
    x[0, 0, 1, 1] = np.nan
    y, arg = backend.max_pool2d_forward(dev.put(x), (2, 2), (2, 2), (0, 0))
    wy, warg = ref.max_pool2d_forward(x.astype(np.float64), (2, 2), (2, 2), (0, 0))
    assert np.array_equal(dev.get(y).astype(np.float64), wy, equal_nan=True)
    assert np.array_equal(dev.get(arg), warg)
    y, arg = backend.max_pool2d_forward(dev.put(np.ones((1, 1, 1, 1), F16)), (1, 1), (3, 3),
                                        (1, 1))
    wy, warg = ref.max_pool2d_forward(np.ones((1, 1, 1, 1)), (1, 1), (3, 3), (1, 1))
    assert np.array_equal(dev.get(y).astype(np.float64), wy)
    assert np.array_equal(dev.get(arg), warg)
