"""Every differentiable op as a snake_case function (``pydl.functions.mul(a, b)``).

One file per op family; each defines its Function subclasses (forward and backward side by
side) and the public wrappers. ``METHODS`` in each file names the wrappers that are also
Tensor methods (``x.exp()``, ``x.sum(dim=1)``); they are attached to Tensor below.
"""

import importlib

from . import (
    arith,
    conv,
    convert,
    indexing,
    loss,
    matmul,
    nn_misc,
    pool,
    reduce,
    shape,
    softmax,
    unary,
)
from .arith import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .convert import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .nn_misc import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
from .unary import *  # noqa: F401,F403

# by module object, not name: the star imports rebind e.g. `softmax` to the function
_MODULES = tuple(
    importlib.import_module(f"{__name__}.{name}")
    for name in ("arith", "convert", "conv", "indexing", "loss", "matmul", "nn_misc", "pool",
                 "reduce", "shape", "softmax", "unary")
)
ARITH_METHODS = ("add", "sub", "mul", "div", "neg", "pow")
TENSOR_METHODS = ARITH_METHODS + tuple(
    name for mod in _MODULES for name in getattr(mod, "METHODS", ())
)


def _attach_methods():
    from ..tensor import Tensor

    for name in TENSOR_METHODS:
        if name in Tensor.__dict__:  # explicit methods on Tensor win
            continue
        setattr(Tensor, name, globals()[name])


_attach_methods()
