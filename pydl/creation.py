"""Creating tensors: ``tensor``, ``zeros``, ``ones``, ``full``, ``empty``, ``arange``,
``linspace``, ``eye``, ``rand``, ``randn``, ``randint``, the ``*_like`` forms, and seeding.

Floats default to float32 and integers to int64, as in PyTorch. ``device`` is ``"cpu"``
(the default), ``"cuda"`` or ``"cuda:N"``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .backend import as_device, backend_of, get_backend
from .tensor import LOW_PRECISION, Tensor, as_dtype, float32, int64, is_floating_dtype

__all__ = [
    "tensor", "as_tensor", "from_numpy", "from_dlpack", "zeros", "ones", "full", "empty", "arange",
    "linspace", "eye", "rand", "randn", "randint", "zeros_like", "ones_like", "full_like",
    "empty_like", "rand_like", "randn_like", "randint_like", "manual_seed", "get_rng_state",
    "set_rng_state", "get_array_module",
]


def _default_dtype(array: np.ndarray) -> np.dtype:
    kind = array.dtype.kind
    if array.dtype in LOW_PRECISION:  # float16 / bfloat16 data keeps its dtype
        return array.dtype
    if kind == "f":
        return float32
    if kind in "iu":
        return int64
    if kind == "b":
        return array.dtype
    raise TypeError(f"can't make a tensor from data of dtype {array.dtype}")


def _to_array(data, dtype=None, device=None):
    """A backend array for ``data`` (lists, scalars, NumPy or CuPy arrays, Tensors)."""
    if isinstance(data, Tensor):
        data = data.data
    dtype = as_dtype(dtype)
    dev = as_device(device) if device is not None else None
    if type(data).__module__.startswith("cupy"):
        if dev is None:
            dev = as_device(f"cuda:{data.device.id}")
    if dev is None:
        dev = as_device("cpu")
    backend = get_backend(dev)
    if isinstance(data, np.ndarray) or type(data).__module__.startswith("cupy"):
        src_dtype = data.dtype
    else:
        probe = np.asarray(data)
        if probe.dtype == object:
            raise TypeError(
                "can't make a tensor from ragged or mixed data; every row must have the same "
                "length and hold numbers"
            )
        data = probe
        src_dtype = probe.dtype
    if dtype is None:
        dtype = _default_dtype(np.empty(0, dtype=src_dtype))
    return backend.from_numpy(data, dtype=dtype, device=dev)


def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new tensor holding a copy of ``data`` (a list, scalar, NumPy array or tensor).

    Without ``dtype``, floating data becomes float32 (pydl's default float) and integers
    int64. That includes float64 NumPy arrays, which ``torch.tensor`` would keep as float64:
    pass ``dtype=pydl.float64``, or use ``from_numpy``, to keep double precision.

    >>> pydl.tensor([[1, 2], [3, 4]], dtype=pydl.float64)
    """
    if isinstance(data, Tensor):
        data = data.data
    array = _to_array(data, dtype=dtype, device=device)
    if array is data or getattr(array, "base", None) is data:
        array = array.copy()
    return Tensor._make_leaf(array, requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with ``data`` when no conversion is needed."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    return Tensor._make_leaf(_to_array(data, dtype=dtype, device=device), False)


def from_numpy(array: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with a NumPy array (keeping its dtype)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    return Tensor._make_leaf(array, False)


def from_dlpack(obj, *, copy=None) -> Tensor:
    """A tensor sharing memory with any DLPack producer (NumPy, PyTorch, CuPy, JAX, pydl...).

    ``obj`` must have ``__dlpack__`` and ``__dlpack_device__``. CPU producers give a CPU
    tensor, CUDA producers a tensor on the same GPU (synchronized with pydl's current stream).
    ``copy=True`` copies, ``copy=False`` refuses to. The result is a leaf that does not
    require grad; writes through either side are seen by the other.

    >>> import numpy as np
    >>> a = np.arange(3.0)
    >>> t = from_dlpack(a); t[0] = 7.0; a[0]
    np.float64(7.0)
    """
    from .backend import dlpack

    array = dlpack.import_array(obj, copy=copy)
    try:
        as_dtype(array.dtype)
    except TypeError:
        raise TypeError(f"from_dlpack: dtype {array.dtype} is not supported by pydl (use "
                        "float16, bfloat16, float32, float64, int32, int64 or bool)") from None
    return Tensor._make_leaf(array, False)


def _shape(size) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for s in size:
        if not isinstance(s, numbers.Integral) or s < 0:
            raise ValueError(f"sizes must be non-negative integers, got {tuple(size)}")
    return tuple(int(s) for s in size)


def _xp(device):
    return get_backend(device).xp


def _make(array, requires_grad):
    return Tensor._make_leaf(array, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(_xp(device).zeros(_shape(size), dtype=as_dtype(dtype) or float32), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(_xp(device).ones(_shape(size), dtype=as_dtype(dtype) or float32), requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(_xp(device).empty(_shape(size), dtype=as_dtype(dtype) or float32), requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    if dtype is None:
        dtype = float32 if isinstance(fill_value, float) else (
            np.dtype(bool) if isinstance(fill_value, bool) else int64
        )
    shape = _shape((size,) if isinstance(size, (tuple, list)) else (size,))
    return _make(_xp(device).full(shape, fill_value, dtype=as_dtype(dtype)), requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Values from ``start`` to ``end`` (exclusive) by ``step``.

    ``arange(5)``, ``arange(0, 1, 0.1)``.
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = float32 if is_float else int64
    return _make(_xp(device).arange(start, end, step, dtype=as_dtype(dtype)), requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False) -> Tensor:
    if steps < 0:
        raise ValueError(f"linspace: steps must be non-negative, got {steps}")
    arr = _xp(device).linspace(start, end, int(steps), dtype=as_dtype(dtype) or float32)
    return _make(arr, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(_xp(device).eye(n, m, dtype=as_dtype(dtype) or float32), requires_grad)


def manual_seed(seed: int) -> None:
    """Seed every generator pydl uses (CPU always, the GPU's when CuPy is loaded)."""
    from .backend import _BACKENDS

    get_backend("cpu").manual_seed(seed)
    if "cuda" in _BACKENDS:
        _BACKENDS["cuda"].manual_seed(seed)


def get_rng_state() -> dict:
    """The state of pydl's random generators, to save in a checkpoint."""
    from .backend import _BACKENDS

    state = {"cpu": get_backend("cpu").get_rng_state()}
    if "cuda" in _BACKENDS:
        state["cuda"] = _BACKENDS["cuda"].get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    from .backend import _BACKENDS

    get_backend("cpu").set_rng_state(state["cpu"])
    if "cuda" in state and "cuda" in _BACKENDS:
        _BACKENDS["cuda"].set_rng_state(state["cuda"])


def _float_dtype(dtype):
    dt = as_dtype(dtype) or float32
    if not is_floating_dtype(dt):
        raise TypeError(f"random floats need a floating dtype, got {dt}")
    return dt


def rand(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    backend = get_backend(device)
    dt = _float_dtype(dtype)
    arr = backend.rng().random(_shape(size), dtype=np.float32 if dt in LOW_PRECISION else dt)
    return _make(arr.astype(dt, copy=False), requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Standard normal samples."""
    backend = get_backend(device)
    dt = _float_dtype(dtype)
    draw = np.float32 if dt in LOW_PRECISION else dt
    arr = backend.rng().standard_normal(_shape(size), dtype=draw)
    return _make(arr.astype(dt, copy=False), requires_grad)


def randint(low, high=None, size=(), dtype=None, device=None) -> Tensor:
    """Integers uniform in [low, high): ``randint(10, size=(3,))`` or ``randint(2, 5, (4,))``."""
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: need low < high, got [{low}, {high})")
    backend = get_backend(device)
    size = _shape(size if isinstance(size, (tuple, list)) else (size,))
    arr = backend.rng().integers(low, high, size=size)
    return _make(arr.astype(as_dtype(dtype) or int64, copy=False), False)


def _like(fn, t, dtype, device, **kw):
    return fn(*t.shape, dtype=dtype or t.dtype, device=device or t.device, **kw)


def zeros_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(zeros, t, dtype, device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(ones, t, dtype, device, requires_grad=requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(empty, t, dtype, device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return full(t.shape, fill_value, dtype=dtype or t.dtype, device=device or t.device,
                requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(rand, t, dtype, device, requires_grad=requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like(randn, t, dtype, device, requires_grad=requires_grad)


def randint_like(t, low, high=None, dtype=None, device=None) -> Tensor:
    return randint(low, high, t.shape, dtype=dtype or t.dtype, device=device or t.device)


def get_array_module(x):
    """The array module (``numpy`` or ``cupy``) of a tensor's data or of an array.

    For code that works on raw arrays device-independently, as ``cupy.get_array_module``:

    >>> xp = pydl.get_array_module(t)
    >>> mask = xp.triu(xp.ones((3, 3), dtype=bool), 1)
    """
    return backend_of(x.data if isinstance(x, Tensor) else x).xp
