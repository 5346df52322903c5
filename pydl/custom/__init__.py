"""Custom ops whose kernels are written in Python with numba, differentiable on both devices.

``kernel(cpu=..., cuda=...)`` wraps two plain functions: the CPU one is compiled with
``numba.njit(parallel=True, cache=True)``, the CUDA one with ``numba.cuda.jit(cache=True)`` and
launched on pydl's current stream (see ``pydl.backend.numba_kernel``). ``custom_op`` turns a
class with ``forward(ctx, *arrays)`` and ``backward(ctx, *grads)`` (the ``pydl.Function``
contract) into a function of Tensors that records the graph, so ``pydl.testing.gradcheck``
checks it like any built-in op.

>>> import math, numba
>>> from pydl.custom import custom_op, kernel
>>> def square_cpu(y, x):
...     for i in numba.prange(x.size):
...         y[i] = x[i] * x[i]
>>> def square_cuda(y, x):
...     i = numba.cuda.grid(1)
...     if i < x.size:
...         y[i] = x[i] * x[i]
>>> square_kernel = kernel(cpu=square_cpu, cuda=square_cuda)
>>> @custom_op
... class Square:
...     @staticmethod
...     def forward(ctx, x):
...         y = pydl.get_array_module(x).empty_like(x)
...         square_kernel(y, x, threads=x.size)
...         ctx.save_for_backward(x)
...         return y
...     @staticmethod
...     def backward(ctx, gy):
...         (x,) = ctx.saved_tensors
...         return 2 * x * gy
>>> Square(pydl.arange(3.0, requires_grad=True))

Shipped ops written this way: ``bias_gelu`` and ``layer_norm`` (``pydl.custom.fused``).
"""

from __future__ import annotations

import functools

from ..autograd import Function
from ..backend.numba_kernel import Kernel
from ..tensor import Tensor

__all__ = ["custom_op", "kernel", "Kernel", "bias_gelu", "layer_norm"]


def kernel(cpu=None, cuda=None, name: str | None = None) -> Kernel:
    """A ``Kernel`` from a CPU function (for ``@njit(parallel=True)``) and a CUDA function
    (for ``@cuda.jit``); either may be missing. Call it as ``k(*arrays, threads=n)``."""
    return Kernel(cpu=cpu, cuda=cuda, name=name)


def custom_op(cls):
    """Make a differentiable op from a class with static ``forward`` and ``backward``.

    ``forward(ctx, *arrays)`` gets raw backend arrays (Tensors unwrapped, other arguments as
    given) and returns the output array(s); ``backward(ctx, *grads)`` returns one gradient per
    positional input (``None`` for non-differentiable ones). The result is a function of
    Tensors; its ``.function`` is the ``pydl.Function`` subclass behind it.

    Second derivatives: a class that sets ``double_backward = True`` promises that its
    ``backward`` also works when called with Tensors (under ``create_graph=True``), written with
    pydl ops; ``bias_gelu`` and ``layer_norm`` in ``pydl.custom.fused`` do this by taking the
    gradient of a reference written with built-in ops in that case. Without it, differentiating
    the op's gradient raises an error naming the op.
    """
    for method in ("forward", "backward"):
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"custom_op: {cls.__name__} needs a static {method}(ctx, ...)")
    body = {"forward": staticmethod(_plain(cls.forward)),
            "backward": staticmethod(_plain(cls.backward)),
            "double_backward": bool(getattr(cls, "double_backward", False)),
            "__doc__": cls.__doc__, "__module__": cls.__module__}
    function = type(cls.__name__, (Function,), body)

    @functools.wraps(cls, updated=())
    def op(*args, **kwargs):
        if not any(isinstance(a, Tensor) for a in args):
            raise TypeError(f"{cls.__name__}: expected at least one Tensor argument")
        return function.apply(*args, **kwargs)

    op.function = function
    return op


def _plain(fn):
    return fn.__func__ if isinstance(fn, staticmethod) else fn


def __getattr__(name):
    if name in ("bias_gelu", "layer_norm"):
        from . import fused

        return getattr(fused, name)
    raise AttributeError(f"module 'pydl.custom' has no attribute '{name}'")
