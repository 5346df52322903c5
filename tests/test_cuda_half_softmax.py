"""softmax / log-softmax / cross-entropy kernels on float16 and bfloat16 storage
(csrc/cuda/softmax.cu with a storage tag, float32 math inside), on a GPU and in the host
emulation (PYDL_CUDA_EMULATE=1), against the float64 reference of the same rounded inputs.

Each output is float32 math rounded once to the low dtype, so it is within one unit in the
last place of the exact value plus float32 error. Outputs are poisoned first. Widths cover
every launch plan: narrow rows (groups of lanes), one warp per row (VPT 2..32), one block per
row (VPT 4, 8) and the two-pass loop past 512 * 8 columns (16-bit storage has no VPT 16). A
recorder checks that the 16-bit instances ran, not the widening fallback.
"""

from __future__ import annotations

import _cuda_emu
import ml_dtypes
import numpy as np
import pytest

from pydl.backend import cuda as backend
from pydl.backend.cpu import reference as ref
from pydl.backend.cuda import runtime

F16, BF16, F32 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32)
ULP = {F16: 2.0 ** -10, BF16: 2.0 ** -7}
TINY = {F16: 2.0 ** -24, BF16: 2.0 ** -133}  # the subnormal spacing
WIDTHS = [1, 3, 17, 33, 100, 515, 1000, 2049, 5000, 8193]


@pytest.fixture(params=_cuda_emu.KINDS)
def dev(request, monkeypatch):
    if request.param == "gpu":
        backend.precompile(["softmax.cu"])
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
    got = got.astype(np.float64)
    tol = ULP[dtype] * np.abs(want) + 2.0 ** -18 * scale + TINY[dtype]
    err = np.abs(got - want)
    assert np.all(err <= tol), f"worst {np.max(err / tol):.3g} x the tolerance"


def _native(dev, dtype):
    tag = {F16: "pydl::f16>", BF16: "pydl::bf16>"}[dtype]
    assert dev.launched and all(n.endswith(tag) for n in dev.launched), dev.launched


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
@pytest.mark.parametrize("cols", WIDTHS)
def test_softmax_and_log_softmax(dev, dtype, cols):
    rng = np.random.default_rng(cols)
    rows = 3 if cols > 1000 else 7
    x = (3 * rng.standard_normal((rows, cols))).astype(dtype)
    gy = rng.standard_normal((rows, cols)).astype(dtype)
    x64, gy64 = x.astype(np.float64), gy.astype(np.float64)
    y = backend.softmax_forward(dev.put(x))
    want = ref.softmax_forward(x64)
    _close(dev.get(y), want, dtype, scale=want)
    ly = backend.log_softmax_forward(dev.put(x))
    lwant = ref.log_softmax_forward(x64)
    _close(dev.get(ly), lwant, dtype, scale=np.abs(x64).max() + 1)
    # backward from the kernel's own (rounded) outputs
    y_low, ly_low = dev.get(y), dev.get(ly)
    y64, ly64 = y_low.astype(np.float64), ly_low.astype(np.float64)
    g = backend.softmax_backward(dev.put(gy), dev.put(y_low))
    want = ref.softmax_backward(gy64, y64)
    bound = y64 * (np.abs(gy64) + np.sum(np.abs(gy64 * y64), -1, keepdims=True))
    _close(dev.get(g), want, dtype, scale=bound * cols)
    g = backend.log_softmax_backward(dev.put(gy), dev.put(ly_low))
    want = ref.log_softmax_backward(gy64, ly64)
    bound = np.abs(gy64) + np.exp(ly64) * np.sum(np.abs(gy64), -1, keepdims=True)
    _close(dev.get(g), want, dtype, scale=bound * cols)
    _native(dev, dtype)


@pytest.mark.parametrize("dtype", [F16, BF16], ids=str)
@pytest.mark.parametrize("classes", [1, 7, 33, 1000, 1025, 3001])
@pytest.mark.parametrize("weighted,smoothing", [(False, 0.0), (True, 0.1)])
def test_cross_entropy(dev, dtype, classes, weighted, smoothing):
    rng = np.random.default_rng(classes)
    n = 9
    logits = (2 * rng.standard_normal((n, classes))).astype(dtype)
    target = rng.integers(0, classes, n)
    target[3] = -100  # ignored
    weight = rng.uniform(0.5, 2, classes).astype(dtype) if weighted else None
    l64 = logits.astype(np.float64)
    w64 = weight.astype(np.float64) if weighted else None
    loss, lse = backend.cross_entropy_forward(dev.put(logits), dev.put(target),
                                              dev.put(weight) if weighted else None, -100,
                                              smoothing)
    want_loss, want_lse = ref.cross_entropy_forward(l64, target, w64, -100, smoothing)
    scale = np.abs(want_lse) + np.abs(l64).max() * (1 + (w64.max() if weighted else 1))
    _close(dev.get(loss), want_loss, dtype, scale=scale * classes)
    _close(dev.get(lse), want_lse, dtype, scale=scale)
    grad_loss = rng.uniform(0.5, 1.5, n).astype(dtype)
    lse_low = dev.get(lse)
    g = backend.cross_entropy_backward(dev.put(grad_loss), dev.put(logits), dev.put(lse_low),
                                       dev.put(target), dev.put(weight) if weighted else None,
                                       -100, smoothing)
    want = ref.cross_entropy_backward(grad_loss.astype(np.float64), l64,
                                      lse_low.astype(np.float64), target, w64, -100, smoothing)
    _close(dev.get(g), want, dtype, scale=np.full(want.shape, 4.0 * classes))
    assert np.all(dev.get(g)[3].astype(np.float64) == 0)  # the ignored row
    _native(dev, dtype)


def test_mixed_dtypes_are_widened(dev):
    """float16 upstream gradients with float32 outputs: no 16-bit instance, float32 math."""
    rng = np.random.default_rng(2)
    y = ref.softmax_forward(rng.standard_normal((5, 9))).astype(F32)
    gy = rng.standard_normal((5, 9)).astype(F16)
    g = backend.softmax_backward(dev.put(gy), dev.put(y))
    want = ref.softmax_backward(gy.astype(np.float64), y.astype(np.float64))
    _close(dev.get(g), want, F16, scale=np.abs(want) + 1e-3)
    assert dev.launched and all(n.split("<")[1].startswith("float, ") and "pydl::" not in
                                n.split("<")[1] for n in dev.launched)


def test_bad_dtypes_name_the_op(dev):
    with pytest.raises(TypeError, match="softmax_backward: dtypes float32 and float64 differ"):
        backend.softmax_backward(dev.put(np.ones((2, 3), F32)),
                                 dev.put(np.ones((2, 3), np.float64)))
    with pytest.raises(TypeError, match="cross_entropy.*int32"):
        backend.cross_entropy_forward(dev.put(np.ones((2, 3), np.int32)),
                                      dev.put(np.zeros(2, np.int64)), None, -100, 0.0)
