"""DLPack and the CUDA array interface: zero-copy exchange with NumPy, PyTorch and CuPy.

Shared memory is proven by writing through one library and reading through the other.
"""

import numpy as np
import pytest

import pydl

DTYPES = ["float16", "float32", "float64", "int32", "int64", "bool"]


def _sample(dtype, shape=(3, 4)):
    return (np.arange(int(np.prod(shape))).reshape(shape) % 3).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_to_pydl_shares_memory(dtype):
    a = _sample(dtype)
    t = pydl.from_dlpack(a)
    assert t.dtype == np.dtype(dtype) and t.shape == (3, 4) and t.device == "cpu"
    np.testing.assert_array_equal(t.numpy(), a)
    a[1, 2] = 1 if dtype != "bool" else True
    t.data[0, 0] = 2 if dtype != "bool" else False
    assert t.numpy()[1, 2] == a[1, 2] and a[0, 0] == t.numpy()[0, 0]
    assert np.shares_memory(t.data, a)


@pytest.mark.parametrize("dtype", DTYPES)
def test_pydl_to_numpy_shares_memory(dtype):
    t = pydl.tensor(_sample(dtype), dtype=dtype)
    a = np.from_dlpack(t)
    assert a.dtype == np.dtype(dtype)
    a[2, 3] = 1
    assert t.numpy()[2, 3] == 1
    t.data[0, 1] = 0
    assert a[0, 1] == 0


def test_non_contiguous_views_round_trip():
    base = pydl.arange(24.0).reshape(4, 6)
    view = base[:, 1::2]  # strides (6, 2) elements
    a = np.from_dlpack(view)
    np.testing.assert_array_equal(a, np.arange(24.0).reshape(4, 6)[:, 1::2])
    a[3, 2] = -1.0
    assert base.numpy()[3, 5] == -1.0
    back = pydl.from_dlpack(np.arange(12.0).reshape(3, 4).T)
    assert back.shape == (4, 3) and back.numpy()[1, 2] == 9.0


def test_zero_d_and_empty():
    assert np.from_dlpack(pydl.tensor(3.5)).shape == ()
    assert pydl.from_dlpack(np.zeros((0, 5), np.float32)).shape == (0, 5)


def test_copy_argument():
    a = np.ones(4)
    t = pydl.from_dlpack(a, copy=True)
    t.data[0] = 5.0
    assert a[0] == 1.0
    t = pydl.tensor([1.0, 2.0])
    c = np.from_dlpack(t, copy=True)
    c[0] = 9.0
    assert t.numpy()[0] == 1.0


def test_requires_grad_is_refused_like_torch():
    t = pydl.ones(3, requires_grad=True)
    with pytest.raises(BufferError, match="requires grad.*detach"):
        t.__dlpack__()
    a = np.from_dlpack(t.detach())  # the documented way: the same memory
    a[0] = 4.0
    assert t.detach().numpy()[0] == 4.0


def test_errors():
    t = pydl.ones(3)
    assert t.__dlpack_device__() == (1, 0)
    with pytest.raises(BufferError, match="CPU tensor takes stream=None"):
        t.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="cannot export a CPU tensor to CUDA"):
        t.__dlpack__(dl_device=(2, 0))
    with pytest.raises(TypeError, match="max_version"):
        t.__dlpack__(max_version=3)
    with pytest.raises(TypeError, match="does not implement the DLPack protocol"):
        pydl.from_dlpack([1.0, 2.0])
    with pytest.raises(TypeError, match="not a DLPack capsule"):
        pydl.from_dlpack(np.ones(2).__dlpack__())
    with pytest.raises(TypeError, match="dtype uint8 is not supported"):
        pydl.from_dlpack(np.ones(2, np.uint8))
    with pytest.raises(AttributeError, match="only on CUDA tensors"):
        t.__cuda_array_interface__  # noqa: B018
    # probing a CPU tensor that requires grad is a plain "no" (libraries probe with hasattr)
    assert not hasattr(pydl.ones(2, requires_grad=True), "__cuda_array_interface__")

    class OnVulkan:
        def __dlpack__(self, **kw):
            raise AssertionError("must not be asked for data")

        def __dlpack_device__(self):
            return (7, 0)

    with pytest.raises(BufferError, match="no Vulkan device"):
        pydl.from_dlpack(OnVulkan())


def test_versioned_capsule_when_asked():
    capsule = pydl.ones(2).__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(capsule)
    assert "dltensor" in repr(pydl.ones(2).__dlpack__())


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int32", "int64", "bool"])
def test_torch_round_trip_shares_memory(dtype):
    torch = pytest.importorskip("torch")
    t = pydl.tensor(_sample(dtype), dtype=dtype)
    tt = torch.from_dlpack(t)
    assert str(tt.dtype) == f"torch.{dtype}"
    tt[1, 1] = 1
    assert t.numpy()[1, 1] == 1
    src = torch.zeros(2, 5, dtype=getattr(torch, dtype))
    p = pydl.from_dlpack(src)
    p.data[1, 4] = 1
    assert bool(src[1, 4] == 1)
    assert p.dtype == np.dtype(dtype)


def test_torch_gradient_flows_after_import():
    torch = pytest.importorskip("torch")
    src = torch.linspace(-1, 1, 6, dtype=torch.float64)
    x = pydl.from_dlpack(src).requires_grad_()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * src.numpy())


@pytest.mark.gpu
def test_cupy_round_trip_and_cuda_array_interface():
    cupy = pytest.importorskip("cupy")
    t = pydl.arange(12.0, device="cuda").reshape(3, 4)
    assert t.__dlpack_device__() == (2, t.device.index)
    c = cupy.from_dlpack(t)
    c[0, 0] = 42.0
    assert t.numpy()[0, 0] == 42.0
    cai = t.__cuda_array_interface__
    assert cai["shape"] == (3, 4) and cai["data"][0] == t.data.data.ptr
    back = pydl.from_dlpack(cupy.arange(5, dtype=cupy.float32))
    assert back.device == "cuda" and back.numpy().tolist() == [0, 1, 2, 3, 4]
    host = np.from_dlpack(t, device="cpu")  # asks for dl_device=(1, 0): a host copy
    assert host[0, 0] == 42.0
    with pytest.raises(ValueError, match="stream=0 is ambiguous"):
        t.__dlpack__(stream=0)
    with pytest.raises(BufferError, match="needs a copy"):
        t.__dlpack__(dl_device=(1, 0), copy=False)
    with pytest.raises(RuntimeError, match="requires grad"):
        pydl.ones(2, device="cuda", requires_grad=True).__cuda_array_interface__  # noqa: B018


@pytest.mark.gpu
def test_cuda_stream_handshake_orders_work():
    cupy = pytest.importorskip("cupy")
    big = pydl.zeros(1 << 22, device="cuda")
    consumer = cupy.cuda.Stream(non_blocking=True)
    big.data += 1.0  # queued on pydl's stream
    capsule = big.__dlpack__(stream=consumer.ptr)  # consumer now waits for it
    with consumer:
        seen = cupy.from_dlpack(_Capsule(capsule, big.__dlpack_device__()))
        total = float(seen.sum())
    assert total == float(1 << 22)


class _Capsule:
    """Hands a ready capsule to a consumer (CuPy asks for ``__dlpack__`` itself)."""

    def __init__(self, capsule, device):
        self.capsule, self.device = capsule, device

    def __dlpack__(self, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return self.device


@pytest.mark.gpu
def test_torch_cuda_round_trip():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    t = pydl.ones(4, device="cuda")
    tt = torch.from_dlpack(t)
    tt.mul_(3)
    torch.cuda.synchronize()
    assert t.numpy().tolist() == [3.0] * 4
    p = pydl.from_dlpack(torch.arange(3.0, device="cuda"))
    assert p.numpy().tolist() == [0.0, 1.0, 2.0]
