"""pydl: a small deep-learning library.

A Tensor with reverse-mode autograd (``pydl.tensor``, ``backward()``), a CPU backend (NumPy
plus a C++ extension) and a CUDA backend (CuPy plus hand-written kernels), and on top of them
``pydl.nn``, ``pydl.optim``, ``pydl.data`` and a Keras-style training loop.

>>> import pydl
>>> x = pydl.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> y = (x * x).sum()
>>> y.backward()
>>> x.grad
tensor([2., 4., 6.])
"""

import importlib as _importlib
import os as _os

__version__ = "0.1.0"

from . import autograd, functions  # noqa: E402
from .autograd import (  # noqa: E402
    Function,
    detect_anomaly,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import Device  # noqa: E402
from .backend import Device as device  # noqa: E402,F401 - torch.device-style spelling
from .creation import *  # noqa: E402,F401,F403
from .dtypes import promote_types, result_type  # noqa: E402,F401
from .functions import *  # noqa: E402,F401,F403
from .tensor import (  # noqa: E402
    Tensor,
    bfloat16,
    bool_,
    float16,
    float32,
    float64,
    int32,
    int64,
)
from .threads import get_num_threads, set_num_threads  # noqa: E402,F401

if _os.environ.get("PYDL_KERNEL_LOG", "0") != "0":  # one log line per kernel call
    from . import profiler  # noqa: E402,F401

bool = bool_  # noqa: A001 - pydl.bool, as torch.bool
float = float32  # noqa: A001
double = float64
long = int64
half = float16

_LAZY_MODULES = ("nn", "optim", "data", "train", "io", "models", "cuda", "testing", "profiler",
                 "custom", "amp")
_LAZY_NAMES = {
    "Sequential": "train",
    "Model": "train",
    "save": "io",
    "load": "io",
    "autocast": "amp",
    "is_autocast_enabled": "amp",
}


def __getattr__(name):
    if name in _LAZY_MODULES:
        return _importlib.import_module(f"pydl.{name}")
    if name in _LAZY_NAMES:
        return getattr(_importlib.import_module(f"pydl.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'pydl' has no attribute '{name}'")
