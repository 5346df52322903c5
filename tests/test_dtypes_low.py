"""float16 and bfloat16 tensors: creation, casts, printing, safetensors, ops in float32."""

import os
import warnings

import ml_dtypes
import numpy as np
import pytest

import pydl
from pydl.backend.cpu import reference

BF16 = np.dtype(ml_dtypes.bfloat16)
LOW = [pydl.float16, pydl.bfloat16]
#: relative precision of each dtype (one unit in the last place at 1.0)
EPS = {np.dtype(np.float16): 2.0 ** -10, BF16: 2.0 ** -7}


def _close(actual, expected, dtype, scale=1.0, ulps=4):
    tol = ulps * EPS[np.dtype(dtype)] * scale
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, rtol=tol, atol=tol)


def test_bfloat16_is_ml_dtypes_and_a_float():
    assert pydl.bfloat16 == BF16
    assert pydl.bfloat16.kind == "V"  # why pydl asks is_floating_dtype, never .kind
    t = pydl.zeros(2, dtype="bfloat16")
    assert t.dtype == pydl.bfloat16 and t.is_floating_point()
    assert pydl.tensor([1.0], dtype=pydl.bfloat16).requires_grad_().requires_grad


@pytest.mark.parametrize("dtype", LOW)
def test_creation_functions(device, dtype):
    for t in (pydl.zeros(2, 3, dtype=dtype, device=device),
              pydl.ones(4, dtype=dtype, device=device),
              pydl.full((2,), 1.5, dtype=dtype, device=device),
              pydl.randn(3, 5, dtype=dtype, device=device),
              pydl.rand(7, dtype=dtype, device=device), pydl.empty(2, dtype=dtype, device=device),
              pydl.arange(0, 5, dtype=dtype, device=device)):
        assert t.dtype == dtype
    assert pydl.ones(3, dtype=dtype, device=device).tolist() == [1.0, 1.0, 1.0]
    r = pydl.rand(1000, dtype=dtype, device=device).float().numpy()
    assert 0.0 <= r.min() and r.max() <= 1.0 and 0.4 < r.mean() < 0.6


def test_low_precision_numpy_data_keeps_its_dtype():
    for dt in LOW:
        a = np.arange(4, dtype=np.float32).astype(dt)
        assert pydl.tensor(a).dtype == dt
        assert pydl.from_numpy(a).dtype == dt


@pytest.mark.parametrize("dtype", LOW)
def test_casts_and_methods(device, dtype):
    x = pydl.randn(5, 7, dtype=pydl.float64, device=device)
    low = x.to(dtype)
    expect = x.numpy().astype(dtype)
    assert low.dtype == dtype
    assert np.array_equal(low.numpy().view(np.uint16), expect.view(np.uint16))  # same rounding
    assert x.half().dtype == pydl.float16 and x.bfloat16().dtype == pydl.bfloat16
    back = low.float()
    assert back.dtype == pydl.float32
    np.testing.assert_array_equal(back.numpy(), expect.astype(np.float32))


@pytest.mark.parametrize("dtype", LOW)
def test_gradient_flows_through_casts_in_the_source_dtype(device, dtype):
    x = pydl.randn(4, 3, device=device, requires_grad=True)
    (x.to(dtype) * 3.0).float().sum().backward()
    assert x.grad.dtype == pydl.float32
    np.testing.assert_array_equal(x.grad.numpy(), np.full((4, 3), 3.0, np.float32))
    w = pydl.randn(3, dtype=dtype, device=device, requires_grad=True)
    (w.float() * 2.0).sum().backward()
    assert w.grad.dtype == dtype and w.grad.float().tolist() == [2.0, 2.0, 2.0]


def test_float16_overflow_is_inf_without_a_warning():
    x = pydl.tensor([1e5, -1e6, 65504.0, 65520.0, 1e-9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = x.half()
    assert h.float().tolist() == [np.inf, -np.inf, 65504.0, np.inf, 0.0]
    # bfloat16 has float32's range: no overflow there
    assert np.isfinite(pydl.tensor([3e38]).bfloat16().float().numpy()).all()


def test_printing_names_the_dtype():
    assert "dtype=pydl.bfloat16" in repr(pydl.tensor([1.0, 2.5], dtype=pydl.bfloat16))
    # the values print as float32's do
    assert repr(pydl.tensor([1.0, 2.5], dtype=pydl.bfloat16)).startswith(
        repr(pydl.tensor([1.0, 2.5]))[:-1])
    assert "dtype=pydl.float16" in repr(pydl.tensor([1.0], dtype=pydl.float16))
    assert "requires_grad=True" in repr(pydl.ones(2, dtype=pydl.bfloat16, requires_grad=True))


def test_module_dtype_methods():
    m = pydl.nn.Linear(3, 2)
    assert m.bfloat16().weight.dtype == pydl.bfloat16 and m.weight.requires_grad
    assert m.half().bias.dtype == pydl.float16
    assert m.float().weight.dtype == pydl.float32


@pytest.mark.parametrize("dtype,code", [(pydl.float16, "F16"), (pydl.bfloat16, "BF16")])
def test_safetensors_roundtrip_is_bit_exact(tmp_path, dtype, code):
    import json
    import struct

    x = pydl.randn(3, 5).to(dtype)
    path = os.fspath(tmp_path / "x.safetensors")
    pydl.save({"x": x}, path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    assert header["x"]["dtype"] == code
    y = pydl.load(path)["x"]
    assert y.dtype == dtype
    assert np.array_equal(y.numpy().view(np.uint16), x.numpy().view(np.uint16))


def test_safetensors_bf16_reads_in_torch(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    x = pydl.randn(4, 6).bfloat16()
    path = os.fspath(tmp_path / "x.safetensors")
    pydl.save({"x": x}, path)
    t = st.load_file(path)["x"]
    assert t.dtype == torch.bfloat16
    assert np.array_equal(t.float().numpy(), x.float().numpy())
    # and the other way: torch's bf16 file loads as pydl.bfloat16
    st.save_file({"y": t * 2}, os.fspath(tmp_path / "y.safetensors"))
    y = pydl.io.load_safetensors(os.fspath(tmp_path / "y.safetensors"))["y"]
    assert y.dtype == pydl.bfloat16 and np.array_equal(y.float().numpy(), 2 * x.float().numpy())


def test_unsupported_dtype_names_the_supported_ones():
    with pytest.raises(TypeError, match="bfloat16"):
        pydl.zeros(2, dtype=np.complex64)


# -- ops on low-precision tensors compute in float32 and round once --------------------------
@pytest.mark.parametrize("dtype", LOW)
def test_matmul_accumulates_in_float32(device, dtype):
    rng = np.random.default_rng(0)
    a64, b64 = rng.standard_normal((17, 129)), rng.standard_normal((129, 9))
    a, b = pydl.tensor(a64, dtype=dtype, device=device), pydl.tensor(b64, dtype=dtype,
                                                                        device=device)
    c = a @ b
    assert c.dtype == dtype
    # the exact product of the rounded inputs, rounded once: within one rounding of it
    exact = a.double().numpy() @ b.double().numpy()
    _close(c.float().numpy(), exact, dtype, scale=np.abs(exact).max(), ulps=1)


@pytest.mark.parametrize("dtype", LOW)
def test_reference_kernels_take_low_precision(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    y = reference.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), 1)
    assert y.dtype == dtype
    exact = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1),
                                     (1, 1), 1)
    _close(y.astype(np.float64), exact, dtype, scale=np.abs(exact).max(), ulps=1)
    s = reference.softmax_forward(x.reshape(-1, 11))
    _close(s.astype(np.float64), reference.softmax_forward(x.reshape(-1, 11).astype(np.float64)),
           dtype)


@pytest.mark.parametrize("dtype", LOW)
def test_layer_ops_forward_and_backward_in_low_precision(device, dtype):
    """conv -> relu -> pool -> linear -> log_softmax in ``dtype`` against the same net in
    float64 on the rounded inputs: within a few roundings of each output/gradient's scale."""
    rng = np.random.default_rng(2)
    arrays = {"x": rng.standard_normal((2, 3, 8, 8)), "w": rng.standard_normal((4, 3, 3, 3)) / 5,
              "v": rng.standard_normal((5, 16)) / 4}
    arrays = {k: v.astype(dtype).astype(np.float64) for k, v in arrays.items()}

    def run(dt):
        ts = {k: pydl.tensor(v, dtype=dt, device=device, requires_grad=True)
              for k, v in arrays.items()}
        h = pydl.nn.functional.conv2d(ts["x"], ts["w"], padding=1).relu()
        h = pydl.nn.functional.max_pool2d(h, 3).flatten(1)
        out = pydl.nn.functional.log_softmax(pydl.nn.functional.linear(h, ts["v"]), dim=-1)
        (out * pydl.tensor(np.linspace(-1, 1, 10).reshape(2, 5), dtype=dt,
                           device=device)).sum().backward()
        return out, ts

    out, ts = run(dtype)
    ref, ref_ts = run(pydl.float64)
    assert out.dtype == dtype and all(t.grad.dtype == dtype for t in ts.values())
    ref = ref.detach().numpy()
    _close(out.detach().float().numpy(), ref, dtype, scale=np.abs(ref).max(), ulps=16)
    for k in arrays:
        g = ref_ts[k].grad.numpy()
        _close(ts[k].grad.float().numpy(), g, dtype, scale=np.abs(g).max(), ulps=32)


def test_assert_close_compares_bfloat16_with_its_tolerance():
    x = pydl.tensor([1.0, 2.0, 3.0])
    pydl.testing.assert_close(x.bfloat16(), x.numpy() * (1 + 2 ** -8))  # within bf16 rounding
    with pytest.raises(AssertionError, match="differ beyond"):
        pydl.testing.assert_close(x.bfloat16(), x.numpy() * 1.05)
