"""Parameter: a Tensor that a Module registers as one of its learnable weights.

Assigning a Parameter to a Module attribute (``self.weight = Parameter(...)``) registers it,
so it shows up in ``module.parameters()`` and ``state_dict()``. It requires a gradient by
default.

>>> w = Parameter(pydl.randn(3, 4))
>>> w.requires_grad
True
"""

from __future__ import annotations

from ..creation import _to_array
from ..tensor import Tensor, is_floating_dtype

__all__ = ["Parameter", "Buffer"]


class Parameter(Tensor):
    """A learnable tensor: ``Parameter(data, requires_grad=True)``.

    ``data`` may be a Tensor (its array is shared, not copied), a NumPy/CuPy array or
    nested lists. Parameters are leaves: optimizers update them in place under
    ``pydl.no_grad()``.
    """

    # no __slots__: a Parameter carries a __dict__, so user code may tag it (p.my_flag = 1)

    def __init__(self, data=None, requires_grad: bool = True):
        if data is None:
            from ..creation import empty

            array = empty(0).data
        elif isinstance(data, Tensor):
            array = data.data
        else:
            array = _to_array(data)
        self._init(array, requires_grad and is_floating_dtype(array.dtype))

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __reduce_ex__(self, protocol):
        # rebuild through __init__ so copy.deepcopy/pickle give a Parameter with its flag
        return (_rebuild_parameter, (self.data, self.requires_grad, self.grad))


def _rebuild_parameter(data, requires_grad, grad):
    # wrap the array as it is: going through _to_array would turn float64 into float32
    p = Parameter(Tensor._make(data), requires_grad)
    if grad is not None:
        p.grad = grad
    return p


class Buffer(Tensor):
    """Marks a tensor as a buffer when assigned to a Module attribute (``self.x = Buffer(t)``).

    Equivalent to ``module.register_buffer(name, t)``: saved in ``state_dict`` and moved by
    ``to()``, but not a parameter.
    """

    def __init__(self, data, persistent: bool = True):
        array = data.data if isinstance(data, Tensor) else _to_array(data)
        self._init(array, False)
        self.persistent = persistent
