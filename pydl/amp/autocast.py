"""``pydl.autocast``: run each op in the dtype its numerics allow, as ``torch.autocast`` does.

Inside ``with pydl.autocast("cpu", dtype=pydl.bfloat16):`` every op goes through one hook in
``Function.apply`` (the op dispatch), which casts the op's floating-point tensor arguments by
the op table below before ``forward`` sees them:

- ``LOW``: matmul, linear, conv and the recurrent layers run in the autocast dtype (their
  kernels accumulate in float32 and round the result once);
- ``FLOAT32``: reductions, softmax/log-softmax, the normalizations, exp/log/pow and every loss
  run in float32, where a low-precision accumulator or range would lose the result;
- every other op runs in its inputs' dtype, and inputs of mixed float dtypes are first cast
  to the widest (float16 with bfloat16 gives float32).

float64 tensors are never narrowed. The casts are recorded ops, so gradients flow back through
them and every parameter's gradient arrives in the parameter's own dtype. A leaf that requires
grad (a parameter) is cast once per region and dtype, and the cast is reused until the
parameter changes (its version counter moves), as torch's autocast weight cache.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import autograd
from ..tensor import Tensor, as_dtype, bfloat16, dtype_name, float16, float32, float64

__all__ = ["autocast", "is_autocast_enabled", "get_autocast_dtype", "LOW", "FLOAT32",
           "op_policy"]

LOW, FLOAT32 = "low", "float32"

#: Function class name -> LOW or FLOAT32 (subclasses inherit their base's entry). Names, not
#: classes, so the table needs no import of pydl.functions (which imports autograd).
_TABLE = {
    # low precision: the matrix products
    "MatMul": LOW, "Linear": LOW, "Conv2d": LOW, "ConvTranspose2d": LOW,
    "RecurrenceBase": LOW,
    # float32: reductions
    "Sum": FLOAT32, "Mean": FLOAT32, "Var": FLOAT32, "LogSumExp": FLOAT32, "Prod": FLOAT32,
    "Cumsum": FLOAT32, "Norm": FLOAT32,
    # float32: softmax / log-softmax, normalizations, exp / log / pow
    "_Softmax": FLOAT32, "Normalize": FLOAT32,
    "Exp": FLOAT32, "Exp2": FLOAT32, "Log": FLOAT32, "Log1p": FLOAT32, "LogAddExp": FLOAT32,
    "Pow": FLOAT32, "Rsqrt": FLOAT32, "Reciprocal": FLOAT32, "Softplus": FLOAT32,
    # float32: every loss
    "CrossEntropy": FLOAT32, "SoftCrossEntropy": FLOAT32, "NLLLoss": FLOAT32,
    "DifferenceLoss": FLOAT32, "BinaryCrossEntropy": FLOAT32,
    "BinaryCrossEntropyWithLogits": FLOAT32, "KLDiv": FLOAT32,
}

#: the low-precision dtypes each device type supports under autocast
_DEVICE_DTYPES = {"cpu": (bfloat16, float16), "cuda": (float16, bfloat16)}
_DEFAULT_DTYPE = {"cpu": bfloat16, "cuda": float16}


@functools.lru_cache(maxsize=None)
def op_policy(cls) -> str | None:
    """LOW, FLOAT32 or None (promote mixed inputs to the widest) for Function class ``cls``."""
    for klass in cls.__mro__:
        rule = _TABLE.get(klass.__name__)
        if rule is not None:
            return rule
    return None


class _Region:
    """One open autocast region of a thread: its device type, dtype and weight-cast cache."""

    __slots__ = ("device_type", "dtype", "cache")

    def __init__(self, device_type, dtype):
        self.device_type = device_type
        self.dtype = dtype
        self.cache = {}


_open_regions = 0  # across threads: the hook stays installed while any region is open


def _is_float(dt) -> bool:
    return dt.kind == "f" or dt == bfloat16


def _rank(dt) -> int:
    return 2 if dt == float64 else 1 if dt == float32 else 0


def _widest(dtypes) -> np.dtype:
    dtypes = set(dtypes)
    if len(dtypes) == 1:
        return dtypes.pop()
    top = max(_rank(d) for d in dtypes)
    if top == 0:  # float16 with bfloat16: neither holds the other
        return float32
    return float64 if top == 2 else float32


def _cast(region, t: Tensor, dtype):
    """``t`` in ``dtype`` through a recorded cast; parameters' casts are cached."""
    from ..functions.convert import Cast

    if not (t._requires_grad and t._ctx is None):
        return Cast.apply(t, dtype)
    key = (id(t), dtype)
    hit = region.cache.get(key)
    if hit is not None and hit[0] is t and hit[1] == t._version[0]:
        return hit[2]
    out = Cast.apply(t, dtype)
    region.cache[key] = (t, t._version[0], out)
    return out


def _autocast_args(cls, args):
    """The hook ``Function.apply`` calls: ``args`` with float tensors cast by the op table."""
    region = getattr(autograd._state, "autocast", None)
    if region is None:
        return args
    floats = [a for a in args if isinstance(a, Tensor) and _is_float(a.data.dtype)
              and a.device.type == region.device_type]
    if not floats:
        return args
    rule = op_policy(cls)
    if rule is LOW:
        target = region.dtype
        wanted = [a for a in floats if a.data.dtype != float64]
    elif rule is FLOAT32:
        target = float32
        wanted = [a for a in floats if a.data.dtype != float64]
    else:
        target = _widest(a.data.dtype for a in floats)
        wanted = floats
    if all(a.data.dtype == target for a in wanted):
        return args
    marked = {id(a) for a in wanted}
    return tuple(
        _cast(region, a, target)
        if isinstance(a, Tensor) and id(a) in marked and a.data.dtype != target else a
        for a in args
    )


class autocast:
    """Run ops in a lower-precision dtype where it is safe, as ``torch.autocast``.

    Args:
        device_type: ``"cpu"`` or ``"cuda"``; only tensors on that device type are cast.
        dtype: ``pydl.bfloat16`` or ``pydl.float16`` (default: bfloat16 on the CPU, float16
            on CUDA).
        enabled: ``False`` makes the region a no-op (the ops run in their inputs' dtypes).

    Use it as a context manager or a decorator. Regions nest; an inner region with
    ``enabled=False`` turns autocast off inside it. Run only the forward pass and the loss
    under autocast; ``backward()`` runs outside it, in the dtypes forward chose.

    >>> model = pydl.nn.Linear(4, 2)
    >>> with pydl.autocast("cpu", dtype=pydl.bfloat16):
    ...     y = model(pydl.randn(3, 4))
    >>> y.dtype
    dtype(bfloat16)
    """

    def __init__(self, device_type: str, dtype=None, enabled: bool = True, cache_enabled=None):
        if not isinstance(device_type, str) or device_type.split(":")[0] not in _DEVICE_DTYPES:
            raise ValueError(f"autocast: device_type must be 'cpu' or 'cuda', got {device_type!r}")
        self.device_type = device_type.split(":")[0]
        dt = _DEFAULT_DTYPE[self.device_type] if dtype is None else as_dtype(dtype)
        if enabled and dt not in _DEVICE_DTYPES[self.device_type]:
            raise ValueError(
                f"autocast: {self.device_type} autocast runs ops in pydl.bfloat16 or "
                f"pydl.float16, not {dtype_name(dt)}; pass dtype=pydl.bfloat16 (or "
                "pydl.float16), or enabled=False to run in the tensors' own dtype"
            )
        if enabled and self.device_type == "cuda":
            _check_cuda(dt)
        self.dtype = dt
        self.enabled = bool(enabled)
        self._saved = []

    def __enter__(self):
        global _open_regions
        self._saved.append(getattr(autograd._state, "autocast", None))
        autograd._state.autocast = _Region(self.device_type, self.dtype) if self.enabled else None
        _open_regions += 1
        autograd._autocast_hook = _autocast_args
        return self

    def __exit__(self, *exc):
        global _open_regions
        autograd._state.autocast = self._saved.pop()
        _open_regions -= 1
        if _open_regions == 0:
            autograd._autocast_hook = None
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with autocast(self.device_type, self.dtype, self.enabled):
                return func(*args, **kwargs)

        return wrapper


def _check_cuda(dtype) -> None:
    """Refuse a CUDA autocast where no GPU is present, saying what to use instead.

    (bfloat16 CUDA tensors are CuPy arrays of ml_dtypes' bfloat16, which CuPy 14 supports;
    docs/mixed_precision.md.)"""
    from .. import cuda

    if not cuda.is_available():
        raise RuntimeError(
            "autocast: device_type='cuda' needs a CUDA GPU and none is available; use "
            "pydl.autocast('cpu', dtype=pydl.bfloat16) on the CPU"
        )


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """True inside an enabled autocast region (for ``device_type``, when given)."""
    region = getattr(autograd._state, "autocast", None)
    return region is not None and (device_type is None or region.device_type == device_type)


def get_autocast_dtype(device_type: str):
    """The dtype of the open autocast region for ``device_type`` (its default when none)."""
    region = getattr(autograd._state, "autocast", None)
    if region is not None and region.device_type == device_type:
        return region.dtype
    return _DEFAULT_DTYPE[device_type]
