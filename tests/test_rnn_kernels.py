"""The recurrent-cell kernels of the protocol (``lstm_cell_*``, ``gru_cell_*``).

The NumPy references are checked against PyTorch's autograd (float64), the C++ versions
against the references at odd sizes (batch 1, primes) in float32 and float64, including the
in-place activations, the optional output arrays and the fallbacks for arrays _C cannot take.
The CUDA versions (csrc/cuda/rnn.cu) the same way, on a GPU and, with
``PYDL_CUDA_EMULATE=1``, on the CPU through the host emulation of ``tests/_cuda_emu.py``.
"""

import _cuda_emu
import numpy as np
import pytest

from pydl.backend import cpu, protocol
from pydl.backend import cuda as backend

ref = cpu.reference
ext = cpu.extension

DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
SIZES = [(1, 1), (1, 7), (5, 13), (3, 31), (64, 64), (17, 2)]

needs_ext = pytest.mark.skipif(
    ext is None, reason="the C++ extension pydl._C is not built (pip install -e . builds it)"
)


def rand(rng, shape, dtype, scale=2.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def close(actual, expected, dtype):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **TOL[dtype])


def lstm_inputs(n, h, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rand(rng, (n, 4 * h), dtype, 3.0), rand(rng, (n, h), dtype),
            rand(rng, (n, h), dtype), rand(rng, (n, h), dtype))


def gru_inputs(n, h, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rand(rng, (n, 3 * h), dtype), rand(rng, (n, 3 * h), dtype),
            rand(rng, (n, h), dtype), rand(rng, (n, h), dtype))


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_every_backend_exports_the_cell_kernels(backend):
    import importlib

    module = importlib.import_module(f"pydl.backend.{backend}")
    names = [k for k in protocol.KERNELS if "_cell_" in k]
    assert len(names) == 4
    assert not [k for k in names if k in protocol.missing_kernels(module)]


# -- references against torch --------------------------------------------------------------
def test_lstm_reference_matches_torch():
    torch = pytest.importorskip("torch")
    gates, c_prev, dh, dc = lstm_inputs(6, 5, np.float64)
    tg = torch.tensor(gates, requires_grad=True)
    tc = torch.tensor(c_prev, requires_grad=True)
    i, f, g, o = tg.chunk(4, dim=1)
    c = torch.sigmoid(f) * tc + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    (h * torch.tensor(dh) + c * torch.tensor(dc)).sum().backward()

    acts = gates.copy()
    rh, rc, tanh_c = ref.lstm_cell_forward(acts, c_prev)
    close(rh, h.detach().numpy(), np.float64)
    close(rc, c.detach().numpy(), np.float64)
    close(tanh_c, np.tanh(rc), np.float64)
    dgates, dc_prev = ref.lstm_cell_backward(dh, dc, acts, tanh_c, c_prev)
    close(dgates, tg.grad.numpy(), np.float64)
    close(dc_prev, tc.grad.numpy(), np.float64)


def test_gru_reference_matches_torch():
    torch = pytest.importorskip("torch")
    xg, hg, h_prev, dh = gru_inputs(4, 7, np.float64)
    txg, thg, thp = (torch.tensor(a, requires_grad=True) for a in (xg, hg, h_prev))
    xr, xz, xn = txg.chunk(3, dim=1)
    hr, hz, hn = thg.chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h = (1 - z) * n + z * thp
    (h * torch.tensor(dh)).sum().backward()

    rzh = hg.copy()
    rh, rn = ref.gru_cell_forward(xg, rzh, h_prev)
    close(rh, h.detach().numpy(), np.float64)
    close(rn, n.detach().numpy(), np.float64)
    dxg, dhg, dh_direct = ref.gru_cell_backward(dh, rzh, rn, h_prev)
    close(dxg, txg.grad.numpy(), np.float64)
    close(dhg, thg.grad.numpy(), np.float64)
    close(dh_direct, thp.grad.numpy(), np.float64)  # h_prev's only path here is z * h_prev


# -- C++ against the references ------------------------------------------------------------
@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h", SIZES)
def test_lstm_cell_ext_matches_reference(n, h, dtype):
    gates, c_prev, dh, dc = lstm_inputs(n, h, dtype, seed=n * 100 + h)
    ra, ea = gates.copy(), gates.copy()
    expected = ref.lstm_cell_forward(ra, c_prev)
    got = ext.lstm_cell_forward(ea, c_prev)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == dtype and a.shape == (n, h)
        close(a, b, dtype)
    close(ea, ra, dtype)  # the activations, written in place

    expected = ref.lstm_cell_backward(dh, dc, ra, expected[2], c_prev)
    out = np.full((n, 4 * h), np.nan, dtype)
    for dgates in (None, out):
        got = ext.lstm_cell_backward(dh, dc, ra, ref.lstm_cell_forward(gates.copy(), c_prev)[2],
                                     c_prev, dgates=dgates)
        assert dgates is None or got[0] is out
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == dtype
            close(a, b, dtype)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h", SIZES)
def test_gru_cell_ext_matches_reference(n, h, dtype):
    xg, hg, h_prev, dh = gru_inputs(n, h, dtype, seed=n * 100 + h)
    rr, er = hg.copy(), hg.copy()
    expected = ref.gru_cell_forward(xg, rr, h_prev)
    got = ext.gru_cell_forward(xg, er, h_prev)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == dtype and a.shape == (n, h)
        close(a, b, dtype)
    close(er, rr, dtype)  # r, z written in place, h_n kept

    expected = ref.gru_cell_backward(dh, rr, expected[1], h_prev)
    outs = np.full((n, 3 * h), np.nan, dtype), np.full((n, 3 * h), np.nan, dtype)
    for dxg, dhg in ((None, None), outs):
        got = ext.gru_cell_backward(dh, rr, ref.gru_cell_forward(xg, hg.copy(), h_prev)[1],
                                    h_prev, dxg=dxg, dhg=dhg)
        assert dxg is None or (got[0] is outs[0] and got[1] is outs[1])
        for a, b in zip(got, expected, strict=True):
            close(a, b, dtype)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_kernels_saturate_and_propagate_nan(dtype):
    big = np.array([[-1e4, -60.0, -1e-3, 0.0, 1e-3, 60.0, 1e4, np.inf]], dtype)
    gates = np.concatenate([big, big, big, big], axis=1)
    c_prev = np.zeros((1, 8), dtype)
    ra, ea = gates.copy(), gates.copy()
    expected = ref.lstm_cell_forward(ra, c_prev)
    got = ext.lstm_cell_forward(ea, c_prev)
    close(ea, ra, dtype)
    for a, b in zip(got, expected, strict=True):
        close(a, b, dtype)
    nan = gates.copy()
    nan[0, 0] = np.nan
    h, c, _ = ext.lstm_cell_forward(nan, c_prev)
    assert np.isnan(h[0, 0]) and np.isnan(c[0, 0]) and np.isfinite(h[0, 1:]).all()


@needs_ext
def test_cell_kernels_fall_back_for_arrays_c_cannot_take():
    # non-contiguous in-place gates (a column slice), mixed dtypes, float16, empty batch
    gates, c_prev, dh, dc = lstm_inputs(3, 4, np.float64)
    wide = np.zeros((3, 20))
    wide[:, :16] = gates
    view = wide[:, :16]
    expected_gates = gates.copy()
    expected = ref.lstm_cell_forward(expected_gates, c_prev)
    got = ext.lstm_cell_forward(view, c_prev)
    close(view, expected_gates, np.float64)
    for a, b in zip(got, expected, strict=True):
        close(a, b, np.float64)
    got = ext.lstm_cell_forward(gates.astype(np.float32), c_prev)  # mixed: the reference
    assert got[0].shape == (3, 4)
    h16 = ext.lstm_cell_forward(gates.astype(np.float16), c_prev.astype(np.float16))[0]
    assert h16.dtype == np.float16
    empty = ext.lstm_cell_forward(np.zeros((0, 8)), np.zeros((0, 2)))
    assert all(a.shape == (0, 2) for a in empty)
    xg, hg, h_prev, dh = gru_inputs(0, 3, np.float32)
    assert all(a.shape == (0, 3) for a in ext.gru_cell_forward(xg, hg, h_prev))


# -- CUDA (csrc/cuda/rnn.cu) against the references -----------------------------------------
# On a GPU, and with PYDL_CUDA_EMULATE=1 on the CPU: tests/_cuda_emu.py compiles the kernels
# with g++ (tests/test_cuda_compile.py compiles them with NVRTC). What the backend allocates
# is NaN-poisoned, so an element no thread writes shows up.
@pytest.fixture(params=_cuda_emu.KINDS)
def cuda(request, monkeypatch):
    return _cuda_emu.device(request.param, monkeypatch)


def _column_slice(dev, shape, dtype):
    """A non-contiguous (rows, cols) array: the left columns of a wider one, NaN-filled."""
    wide = dev.put(np.full((shape[0], shape[1] + 3), np.nan, dtype))
    return wide[:, :shape[1]]


def _placed(dev, a, layout):
    """``a`` on the device, C-contiguous or as a column slice (the backend copies those)."""
    if layout == "contiguous":
        return dev.put(a)
    out = _column_slice(dev, a.shape, a.dtype)
    out[...] = dev.put(a)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h", SIZES + [(0, 3)])
def test_lstm_cell_cuda_matches_reference(cuda, n, h, dtype):
    gates, c_prev, dh, dc = lstm_inputs(n, h, dtype, seed=n * 100 + h)
    ra = gates.copy()
    expected = ref.lstm_cell_forward(ra, c_prev)
    for layout in ("contiguous", "column_slice"):  # the second goes through a copy
        da = _placed(cuda, gates, layout)
        got = backend.lstm_cell_forward(da, cuda.put(c_prev))
        for a, b in zip(got + (da,), expected + (ra,), strict=True):  # da: written in place
            assert a.dtype == dtype and a.shape == b.shape
            close(cuda.get(a), b, dtype)

    args = [cuda.put(a) for a in (dh, dc, ra, expected[2], c_prev)]
    expected = ref.lstm_cell_backward(dh, dc, ra, expected[2], c_prev)
    for out in (None, cuda.put(np.full((n, 4 * h), np.nan, dtype)),
                _column_slice(cuda, (n, 4 * h), dtype)):
        got = backend.lstm_cell_backward(*args, dgates=out)
        assert out is None or got[0] is out
        for a, b in zip(got, expected, strict=True):
            close(cuda.get(a), b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,h", SIZES + [(0, 3)])
def test_gru_cell_cuda_matches_reference(cuda, n, h, dtype):
    xg, hg, h_prev, dh = gru_inputs(n, h, dtype, seed=n * 100 + h)
    rr = hg.copy()
    expected = ref.gru_cell_forward(xg, rr, h_prev)
    for layout in ("contiguous", "column_slice"):
        dr = _placed(cuda, hg, layout)
        got = backend.gru_cell_forward(cuda.put(xg), dr, cuda.put(h_prev))
        for a, b in zip(got + (dr,), expected + (rr,), strict=True):  # dr: r, z in place
            assert a.dtype == dtype and a.shape == b.shape
            close(cuda.get(a), b, dtype)

    args = [cuda.put(a) for a in (dh, rr, expected[1], h_prev)]
    expected = ref.gru_cell_backward(dh, rr, expected[1], h_prev)
    given = [(None, None),
             (cuda.put(np.full((n, 3 * h), np.nan, dtype)),
              cuda.put(np.full((n, 3 * h), np.nan, dtype))),
             (_column_slice(cuda, (n, 3 * h), dtype), _column_slice(cuda, (n, 3 * h), dtype))]
    for dxg, dhg in given:
        got = backend.gru_cell_backward(*args, dxg=dxg, dhg=dhg)
        assert dxg is None or (got[0] is dxg and got[1] is dhg)
        for a, b in zip(got, expected, strict=True):
            close(cuda.get(a), b, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_kernels_cuda_saturate_and_propagate_nan(cuda, dtype):
    big = np.array([[-1e4, -60.0, -1e-3, 0.0, 1e-3, 60.0, 1e4, np.inf]], dtype)
    gates = np.concatenate([big, big, big, big], axis=1)
    gates[0, 0] = np.nan
    c_prev = np.zeros((1, 8), dtype)
    ra, da = gates.copy(), cuda.put(gates)
    with np.errstate(invalid="ignore"):
        expected = ref.lstm_cell_forward(ra, c_prev)
    got = backend.lstm_cell_forward(da, cuda.put(c_prev))
    close(cuda.get(da), ra, dtype)
    for a, b in zip(got, expected, strict=True):
        close(cuda.get(a), b, dtype)
    h = cuda.get(got[0])
    assert np.isnan(h[0, 0]) and np.isfinite(h[0, 1:]).all()


def test_cell_kernels_cuda_reject_mixed_dtypes(cuda):
    gates, c_prev, _, _ = lstm_inputs(2, 3, np.float64)
    with pytest.raises(TypeError):
        backend.lstm_cell_forward(cuda.put(gates), cuda.put(c_prev.astype(np.float32)))
