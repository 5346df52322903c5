"""Containers: Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict.

>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> net[0], len(net)
(Linear(in_features=4, out_features=8, bias=True), 3)
"""

from __future__ import annotations

import operator
from collections import OrderedDict

from .module import Module
from .parameter import Parameter

__all__ = ["Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict"]


def _index(idx: int, size: int, what: str) -> int:
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"{what}: index {idx} is out of range for {size} modules")
    return idx % size


class _ListLike:
    """List methods over ``_modules`` (keys "0", "1", ...), shared by Sequential and
    ModuleList."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _renumber(self, modules) -> None:
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __delitem__(self, idx):
        items = list(self._modules.items())
        if isinstance(idx, slice):
            del items[idx]
        else:
            del items[_index(idx, len(items), type(self).__name__)]
        if all(k.isdigit() for k, _ in items):  # keep the names 0..n-1, as PyTorch does
            self._renumber([m for _, m in items])
        else:
            self._modules.clear()
            self._modules.update(items)

    def append(self, module: Module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module):
        items = list(self._modules.values())
        n = len(items)
        if not -n <= index <= n:
            raise IndexError(f"{type(self).__name__}.insert: index {index} is out of range "
                             f"for {n} modules")
        items.insert(index, module)
        self._renumber(items)
        return self


class Sequential(_ListLike, Module):
    """Modules applied in order: ``Sequential(m1, m2, ...)`` or ``Sequential(OrderedDict)``.

    Sub-modules are named ``"0"``, ``"1"``... (or by the OrderedDict's keys), so state_dict
    keys match PyTorch's (``0.weight``). Indexing, slicing, ``len``, iteration, ``append``,
    ``insert`` and ``del`` work as on a list.
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (OrderedDict, dict)):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        keys = list(self._modules)
        return self._modules[keys[_index(idx, len(keys), "Sequential")]]

    def __setitem__(self, idx, module):
        keys = list(self._modules)
        self.add_module(keys[_index(idx, len(keys), "Sequential")], module)


class ModuleList(_ListLike, Module):
    """A list of sub-modules, registered (so their parameters are found) and indexable.

    >>> layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self), "ModuleList"))]

    def __setitem__(self, idx, module):
        self.add_module(str(_index(idx, len(self), "ModuleList")), module)

    def __iadd__(self, modules):
        return self.extend(modules)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it instead")


class _DictLike:
    """Read-only dict methods over the registry named by ``_store``."""

    _store = "_modules"

    def _dict(self):
        return self.__dict__[self._store]

    def __getitem__(self, key):
        return self._dict()[key]

    def __delitem__(self, key) -> None:
        del self._dict()[key]

    def __len__(self):
        return len(self._dict())

    def __iter__(self):
        return iter(self._dict())

    def __contains__(self, key):
        return key in self._dict()

    def keys(self):
        return self._dict().keys()

    def values(self):
        return self._dict().values()

    def items(self):
        return self._dict().items()

    def pop(self, key):
        return self._dict().pop(key)

    def clear(self) -> None:
        self._dict().clear()

    def update(self, values) -> None:
        items = values.items() if hasattr(values, "items") else values
        for key, value in items:
            self[key] = value


class ModuleDict(_DictLike, Module):
    """A dict of sub-modules by name, registered and iterable like a dict."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(); index it instead")


class ParameterList(Module):
    """A list of Parameters, registered as ``"0"``, ``"1"``..."""

    def __init__(self, values=None):
        super().__init__()
        for v in values or ():
            self.append(v)

    def __getitem__(self, idx):
        return self._parameters[str(_index(idx, len(self), "ParameterList"))]

    def __setitem__(self, idx, value):
        self.register_parameter(str(_index(idx, len(self), "ParameterList")), _as_param(value))

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def append(self, value) -> ParameterList:
        self.register_parameter(str(len(self)), _as_param(value))
        return self

    def extend(self, values) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def extra_repr(self) -> str:
        return "\n".join(f"({k}): Parameter of shape {tuple(p.shape)}"
                         for k, p in self._parameters.items())


class ParameterDict(_DictLike, Module):
    """A dict of Parameters by name."""

    _store = "_parameters"

    def __init__(self, values=None):
        super().__init__()
        if values is not None:
            self.update(values)

    def __setitem__(self, key, value):
        self.register_parameter(key, _as_param(value))

    def extra_repr(self) -> str:
        return "\n".join(f"({k}): Parameter of shape {tuple(p.shape)}"
                         for k, p in self._parameters.items())


def _as_param(value) -> Parameter:
    return value if isinstance(value, Parameter) else Parameter(value)
