"""Every differentiable op as a snake_case function (``pydl.functions.mul(a, b)``).

One file per op family; each defines its Function subclasses (forward and backward side by
side) and the public wrappers. The wrappers that are also Tensor methods (``x.exp()``,
``x.sum(dim=1)``) are listed in ``pydl/tensor.py`` (``FUNCTION_METHODS``) and bound below.
"""

from . import (
    arith,
    conv,
    conv3d,
    convert,
    einsum,
    elementwise_extra,
    indexing,
    loss,
    matmul,
    nn_misc,
    pool,
    reduce,
    scatter_reduce,
    shape,
    softmax,
    sorting,
    structure,
    unary,
)
from .arith import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .conv3d import *  # noqa: F401,F403
from .convert import *  # noqa: F401,F403
from .einsum import *  # noqa: F401,F403
from .elementwise_extra import *  # noqa: F401,F403
from .indexing import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .matmul import *  # noqa: F401,F403
from .nn_misc import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .reduce import *  # noqa: F401,F403
from .scatter_reduce import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .softmax import *  # noqa: F401,F403
from .sorting import *  # noqa: F401,F403
from .structure import *  # noqa: F401,F403
from .unary import *  # noqa: F401,F403


def _bind_tensor_methods():
    """Set the Tensor methods that tensor.py declares in FUNCTION_METHODS to these functions."""
    from ..tensor import FUNCTION_METHODS, Tensor

    for name in FUNCTION_METHODS:
        if name not in Tensor.__dict__:  # methods defined in the Tensor class win
            setattr(Tensor, name, globals()[name])


_bind_tensor_methods()
