"""float16 / bfloat16 inputs for kernels that compute in float32, on every backend.

``float32_compute(kernel)`` wraps a protocol kernel: float16 and bfloat16 array arguments are
widened to float32, the kernel runs, and its float32 results come back in the (first)
low-precision input's dtype, rounded once. That is float32 accumulation, the numerics of the
tensor-core kernels, for every kernel without a low-precision version of its own (the CPU's,
and the CUDA ones other than ``matmul``). Optimizer steps update their arguments in place and
are never wrapped: optimizers hand them float32 master copies (pydl/optim/optimizer.py)
and, in ``model_params``, the low-precision parameters to write. ``model_copies(step)`` gives
a backend without a native low-precision step (the CPU's) that argument: gradients widened
to float32, the float32 step, each master copy rounded into its model copy (the CUDA step
kernels read half gradients and write both copies in one pass instead).
"""

from __future__ import annotations

import functools
import inspect

import ml_dtypes
import numpy as np

LOW_PRECISION = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16))
FLOAT32 = np.dtype(np.float32)


def _is_low(a) -> bool:
    return getattr(a, "dtype", None) in LOW_PRECISION and hasattr(a, "astype")


def float32_compute(kernel):
    """``kernel`` made to take float16/bfloat16 arrays (see the module docstring)."""

    @functools.wraps(kernel)
    def run(*args, **kwargs):
        low = next((a.dtype for a in args if _is_low(a)), None)
        if low is None:
            return kernel(*args, **kwargs)
        out = kernel(*[a.astype(FLOAT32) if _is_low(a) else a for a in args], **kwargs)
        if isinstance(out, tuple):
            return tuple(_narrow(o, low) for o in out)
        return _narrow(out, low)

    return run


def native_low(kernel):
    """``kernel`` that computes float16/bfloat16 arrays itself, when all of its floating-point
    array arguments share that one dtype; low-precision arrays mixed with other float dtypes
    go through ``float32_compute``."""
    widened = float32_compute(kernel)

    @functools.wraps(kernel)
    def run(*args, **kwargs):
        floats = {a.dtype for a in args if _is_float_array(a)}
        if len(floats) > 1 and any(d in LOW_PRECISION for d in floats):
            return widened(*args, **kwargs)
        return kernel(*args, **kwargs)

    run.native_low = True
    return run


def _is_float_array(a) -> bool:
    dtype = getattr(a, "dtype", None)
    return dtype is not None and hasattr(a, "shape") and (
        dtype in LOW_PRECISION or np.dtype(dtype).kind == "f")


def _narrow(out, low):
    return out.astype(low) if getattr(out, "dtype", None) == FLOAT32 else out


def wrap_kernels(namespace: dict, names) -> None:
    """Wrap every kernel of ``names`` in ``namespace`` that is not an in-place optimizer step
    or a ``native_low`` kernel."""
    for name in names:
        if (not name.endswith("_step") and name in namespace
                and not getattr(namespace[name], "native_low", False)):
            namespace[name] = float32_compute(namespace[name])


def model_copies(step):
    """Optimizer ``step`` kernel taking ``model_params`` (see the module docstring)."""

    @functools.wraps(step)
    def run(params, grads, *states, model_params=None, **hyper):
        if model_params is None:
            return step(params, grads, *states, **hyper)
        if len(model_params) != len(params):
            raise ValueError(f"{step.__name__}: {len(model_params)} model copies for "
                             f"{len(params)} parameters")
        for m, p in zip(model_params, params, strict=True):
            if m.dtype not in LOW_PRECISION or p.dtype != FLOAT32 or m.shape != p.shape:
                raise TypeError(f"{step.__name__}: a model copy {m.dtype} {m.shape} needs a "
                                f"float32 master parameter of its shape, not {p.dtype} {p.shape}")
        grads = [g.astype(FLOAT32) if _is_low(g) else g for g in grads]
        step(params, grads, *states, **hyper)
        for m, p in zip(model_params, params, strict=True):
            m[...] = p

    sig = inspect.signature(step)
    run.__signature__ = sig.replace(parameters=[*sig.parameters.values(), inspect.Parameter(
        "model_params", inspect.Parameter.KEYWORD_ONLY, default=None)])
    return run
