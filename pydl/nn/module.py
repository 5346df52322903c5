"""Module: the base class of every layer and model, with PyTorch's API.

A Module holds Parameters, buffers (non-learnable state such as BatchNorm's running mean)
and sub-Modules, registered simply by assigning them as attributes::

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 128)     # a sub-module
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

``model(x)`` runs ``forward`` (and any forward hooks). ``parameters()`` walks the tree,
``state_dict()`` / ``load_state_dict()`` save and restore every tensor by dotted name with
the same names PyTorch uses, ``to()`` moves or casts everything in place.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple

import numpy as np

from .. import Device
from ..autograd import hooks as _hooks
from ..autograd import is_grad_enabled, no_grad
from ..autograd.hooks import RemovableHandle
from ..creation import as_tensor, empty
from ..tensor import Tensor, as_dtype, bfloat16, dtype_name, is_floating_dtype
from .parameter import Buffer, Parameter

__all__ = ["Module", "RemovableHandle", "summary"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class _BackwardHookState:
    """One call of a module with full backward hooks: collects the output gradients (tensor
    hooks on the outputs) and calls the hooks when the input gradients arrive together."""

    def __init__(self, module, n_inputs):
        self.module = module
        self.n_inputs = n_inputs
        self.grad_output = []
        self.pending = 0

    def watch(self, out):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        tensors = [o for o in outs if isinstance(o, Tensor)]
        self.grad_output = [None] * len(tensors)
        for i, o in enumerate(tensors):
            if o.requires_grad:
                self.pending += 1
                o.register_hook(lambda g, i=i: self._got_output(i, g))

    def _got_output(self, i, g):
        self.grad_output[i] = g
        self.pending -= 1
        if self.pending == 0 and self.n_inputs == 0:  # no input needs a gradient
            self._run((None,))

    def call(self, grads):
        raw = not isinstance(grads[0], Tensor)
        tensors = tuple(Tensor._make(g, False) if raw else g for g in grads)
        result = self._run(tensors)
        return tuple(t.data if raw and isinstance(t, Tensor) else t for t in result)

    def _run(self, grad_input):
        grad_output = tuple(self.grad_output)
        for hook in list(self.module._backward_hooks.values()):
            res = hook(self.module, grad_input, grad_output)
            if res is not None:
                res = tuple(res) if isinstance(res, (tuple, list)) else (res,)
                if len(res) != len(grad_input):
                    raise RuntimeError(
                        f"{type(self.module).__name__} backward hook returned {len(res)} "
                        f"gradients for {len(grad_input)} inputs"
                    )
                grad_input = res
        return grad_input


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _device_of(array) -> Device:
    """Where a raw (NumPy or CuPy) array lives (wrapped as is: no copy, no cast)."""
    return as_tensor(array, dtype=array.dtype).device


def _convert_array(array, device=None, dtype=None):
    """``array`` on ``device`` in ``dtype`` (either may be None: unchanged)."""
    if dtype is not None and not is_floating_dtype(array.dtype):
        dtype = None  # like PyTorch, .to(dtype) casts only floating-point tensors
    if device is not None and Device(device) != _device_of(array):
        return as_tensor(array, dtype=dtype or array.dtype, device=device).data
    if dtype is not None and array.dtype != dtype:
        return array.astype(dtype)
    return array


def _parse_to_args(args, kwargs):
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"Module.to() got unexpected arguments {sorted(kwargs)}")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, Device) or (
            isinstance(a, str) and a.split(":")[0].strip().lower() in ("cpu", "cuda")
        ):
            device = a
        else:
            dtype = a
    if dtype is not None:
        dtype = as_dtype(dtype)
        if not is_floating_dtype(dtype):
            raise TypeError(
                f"Module.to only accepts floating-point dtypes, got {dtype_name(dtype)}"
            )
    return (Device(device) if device is not None else None), dtype


class Module:
    """Base class of layers and models: subclass it, assign layers in ``__init__``, write
    ``forward``.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x)
    >>> Net()(pydl.randn(3, 4)).shape
    (3, 2)
    """

    training: bool

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_non_persistent_buffers"] = set()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["_forward_pre_hooks"] = OrderedDict()
        d["_backward_hooks"] = OrderedDict()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} has no forward(); define forward(self, ...) in the subclass"
        )

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            res = hook(self, args)
            if res is not None:
                args = res if isinstance(res, tuple) else (res,)
        state = None
        if self.__dict__.get("_backward_hooks") and is_grad_enabled():
            args, state = self._hook_inputs(args)
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            res = hook(self, args, out)
            if res is not None:
                out = res
        if state is not None:
            state.watch(out)
        return out

    def _hook_inputs(self, args):
        """Route the tensor inputs that need a gradient through one ModuleBackwardHook node."""
        from ..functions.convert import ModuleBackwardHook

        where = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
        state = _BackwardHookState(self, len(where))
        if where:
            outs = ModuleBackwardHook.apply(*(args[i] for i in where), state=state)
            args = list(args)
            for i, o in zip(where, outs):
                args[i] = o
            args = tuple(args)
        return args, state

    def register_full_backward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, grad_input, grad_output)`` when the gradients with respect to
        the module's tensor inputs are computed (``grad_input`` holds one per input that
        requires grad, or ``(None,)`` when none does); a non-None return replaces
        ``grad_input``. Returns a handle whose ``remove()`` unregisters it."""
        if "_backward_hooks" not in self.__dict__:
            self.__dict__["_backward_hooks"] = OrderedDict()
        return _hooks._add(self._backward_hooks, hook)

    def register_forward_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs, output)`` after every forward; a non-None return
        replaces the output. Returns a handle whose ``remove()`` unregisters it."""
        return _hooks._add(self._forward_hooks, hook)

    def register_forward_pre_hook(self, hook) -> RemovableHandle:
        """Call ``hook(module, inputs)`` before every forward; a non-None return replaces
        the inputs."""
        return _hooks._add(self._forward_pre_hooks, hook)

    # -- registration --------------------------------------------------------------------
    def _check_name(self, name, kind):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {kind} before Module.__init__() call; call "
                "super().__init__() first"
            )
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f'{kind} name can\'t contain "." or be empty, got {name!r}')

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a Parameter, or None for an absent one such as ``bias``)."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"cannot assign {type(param).__name__} as parameter {name!r} "
                "(pydl.nn.Parameter or None expected)"
            )
        self._remove_elsewhere(name, self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Register a non-learnable tensor (saved in state_dict when ``persistent``)."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(
                f"cannot assign {type(tensor).__name__} as buffer {name!r} "
                "(pydl.Tensor or None expected)"
            )
        if name in self.__dict__ and name not in self._buffers:
            raise KeyError(f"attribute {name!r} already exists")
        self._remove_elsewhere(name, self._buffers)
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module) -> None:
        """Register a sub-module under ``name`` (the same as assigning an attribute)."""
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._remove_elsewhere(name, self._modules)
        self._modules[name] = module

    register_module = add_module

    def _remove_elsewhere(self, name, keep):
        """Drop ``name`` from every store but ``keep`` (where it keeps its position)."""
        self.__dict__.pop(name, None)
        for store in (self._parameters, self._buffers, self._modules):
            if store is not keep:
                store.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent_buffers.discard(name)

    def __setattr__(self, name, value):
        d = self.__dict__
        if isinstance(value, Parameter):
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self.add_module(name, value)
        elif isinstance(value, Buffer):
            self.register_buffer(name, value, getattr(value, "persistent", True))
        elif "_parameters" in d and name in d["_parameters"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as parameter {name!r} "
                    "(pydl.nn.Parameter or None expected)"
                )
            d["_parameters"][name] = None
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} as child module {name!r} "
                    "(pydl.nn.Module or None expected)"
                )
            d["_modules"][name] = None
        elif "_buffers" in d and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(
                    f"cannot assign {type(value).__name__} as buffer {name!r} "
                    "(pydl.Tensor or None expected)"
                )
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in (self._parameters, self._buffers, self._modules):
            if name in store:
                del store[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        keys = set(super().__dir__())
        keys.update(self._parameters, self._buffers, self._modules)
        return sorted(keys)

    # -- walking the tree ----------------------------------------------------------------
    def _named_members(self, get, prefix="", recurse=True, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if (
            recurse) else [(prefix, self)]
        for mod_prefix, mod in modules:
            for name, value in get(mod):
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                if remove_duplicate:
                    seen.add(id(value))
                yield (mod_prefix + "." + name if mod_prefix else name), value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        """Yield ``(dotted_name, parameter)``; a shared parameter appears once."""
        yield from self._named_members(lambda m: m._parameters.items(), prefix, recurse,
                                       remove_duplicate)

    def parameters(self, recurse: bool = True):
        """Yield every parameter (each shared one once); pass to an optimizer."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        yield from self._named_members(lambda m: m._buffers.items(), prefix, recurse,
                                       remove_duplicate)

    def buffers(self, recurse: bool = True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True):
        """Yield ``(dotted_name, module)`` for this module (name ``prefix``) and all below."""
        # an explicit stack instead of recursion: deep nets (1,000 layers) work too
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if remove_duplicate:
                if id(mod) in memo:
                    continue
                memo.add(id(mod))
            yield name, mod
            kids = [(name + "." + k if name else k, m) for k, m in mod._modules.items()
                    if m is not None]
            stack.extend(reversed(kids))

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def get_submodule(self, target: str) -> Module:
        """The sub-module at dotted path ``target`` (``""`` is this module)."""
        mod = self
        if target == "":
            return mod
        for part in target.split("."):
            if part not in mod._modules or mod._modules[part] is None:
                raise AttributeError(f"{type(mod).__name__} has no submodule {part!r} "
                                     f"(looking up {target!r})")
            mod = mod._modules[part]
        return mod

    def get_parameter(self, target: str) -> Parameter:
        mod_path, _, name = target.rpartition(".")
        mod = self.get_submodule(mod_path)
        if name not in mod._parameters:
            raise AttributeError(f"{type(mod).__name__} has no parameter {name!r}")
        return mod._parameters[name]

    def apply(self, fn) -> Module:
        """Call ``fn(module)`` on every sub-module (children first) and then on self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # -- modes ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout active, BatchNorm uses batch statistics)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be a bool")
        for m in self.modules():
            m.__dict__["training"] = mode
        return self

    def eval(self) -> Module:
        """Set evaluation mode: Dropout off, BatchNorm uses running statistics."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient (to None, or to zeros in place)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.data[...] = 0

    # -- device and dtype ----------------------------------------------------------------
    def to(self, *args, **kwargs) -> Module:
        """Move and/or cast every parameter and buffer in place: ``model.to("cuda")``,
        ``model.to(pydl.float64)``.

        Parameters keep their identity (only their ``.data`` is replaced), so an optimizer
        built before the move keeps working. Integer buffers (``num_batches_tracked``) keep
        their dtype.
        """
        device, dtype = _parse_to_args(args, dict(kwargs))
        if device is not None:
            empty(0, device=device)  # a clear error now if the device is not available
        return self._apply_to_tensors(lambda a: _convert_array(a, device, dtype))

    def _apply_to_tensors(self, convert) -> Module:
        seen = set()
        for t in itertools.chain(self.parameters(), self.buffers()):
            if id(t) in seen:
                continue
            seen.add(id(t))
            t.data = convert(t.data)
            t._version = [0]
            if t.grad is not None:
                t.grad.data = convert(t.grad.data)
        return self

    def cpu(self) -> Module:
        return self.to("cpu")

    def cuda(self, device=None) -> Module:
        return self.to("cuda" if device is None else (
            f"cuda:{device}" if isinstance(device, int) else device))

    def float(self) -> Module:  # noqa: A003
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    def half(self) -> Module:
        return self.to(np.float16)

    def bfloat16(self) -> Module:
        return self.to(bfloat16)

    # -- state dict ----------------------------------------------------------------------
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False):
        """An OrderedDict of every parameter and persistent buffer by dotted name.

        The tensors share memory with the module (detached unless ``keep_vars``). Names are
        PyTorch's (``0.weight``, ``bn.running_mean``, ``bn.num_batches_tracked``...).
        """
        out = OrderedDict() if destination is None else destination
        for name, t in self._state_entries(prefix.rstrip(".")):
            out[name] = t if keep_vars else t.detach()
        return out

    def _state_entries(self, prefix: str = ""):
        """(name, tensor) for everything state_dict saves; a shared tensor appears under
        every name it has, as in PyTorch."""
        entries = []
        for mod_prefix, mod in self.named_modules(prefix=prefix, remove_duplicate=False):
            head = mod_prefix + "." if mod_prefix else ""
            entries += [(head + name, p) for name, p in mod._parameters.items()
                        if p is not None]
            entries += [(head + name, b) for name, b in mod._buffers.items()
                        if b is not None and name not in mod._non_persistent_buffers]
        return entries

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Copy tensors from ``state_dict`` into this module's parameters and buffers.

        Values may be pydl Tensors, NumPy/CuPy arrays, or anything with ``.numpy()`` (a
        PyTorch tensor works after ``.detach()``). Each value is copied into the existing
        tensor (cast to its dtype, moved to its device), so parameters keep their identity.
        With ``strict`` every key must match; all missing, unexpected and wrong-shaped
        entries are named in one error. Wrong shapes are an error even when not strict.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"expected a dict-like state_dict, got {type(state_dict).__name__}")
        entries = self._state_entries()
        own = {name for name, _ in entries}
        missing = [name for name, _ in entries if name not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, converted = [], []
        for name, target in entries:
            if name not in state_dict:
                continue
            array = _as_host_or_device_array(state_dict[name], name)
            if tuple(array.shape) != tuple(target.shape):
                mismatched.append(
                    f"size mismatch for {name}: copying a param with shape "
                    f"{tuple(array.shape)} from checkpoint, the shape in current model is "
                    f"{tuple(target.shape)}."
                )
                continue
            converted.append((target, array))
        errors = list(mismatched)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ".")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ".")
        if errors:
            raise RuntimeError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                + "\n\t".join(errors)
            )
        with no_grad():
            for target, array in converted:
                if _device_of(array) == target.device:
                    new = array.astype(target.dtype, copy=False)
                else:
                    new = as_tensor(array, dtype=target.dtype, device=target.device).data
                if assign:
                    target.data = new
                    target._version = [0]
                else:
                    target.data[...] = new
                    target._bump()
        return IncompatibleKeys(missing, unexpected)

    # -- printing ------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's repr (override in layers)."""
        return ""

    def _get_name(self) -> str:
        return type(self).__name__

    def __repr__(self):
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, mod in self._modules.items():
            text = _addindent(repr(mod), 2)
            lines.append(f"({name}): {text}")
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"

    # -- summary -------------------------------------------------------------------------
    def summary(self, input_shape, device=None, dtype=None, print_fn=print) -> str:
        """Print (and return) a Keras-style table of layers, output shapes, parameters, memory.

        ``input_shape`` is the shape of one input batch including the batch dimension, e.g.
        ``(1, 3, 32, 32)``, or a list of shapes for a model with several inputs. A forward
        pass runs in eval mode under ``no_grad`` (training flags are restored after). Each
        row is a leaf layer (or a layer holding its own parameters); totals count shared
        parameters once. Memory: each layer's output bytes, and totals for the input, the
        layer outputs (the activations a training step keeps, roughly), and the parameters.

        >>> text = model.summary((1, 784))
        """
        from ..creation import randn, zeros

        if device is None:
            first = next(itertools.chain(self.parameters(), self.buffers()), None)
            device = first.device if first is not None else "cpu"
        if dtype is None:
            first = next((p for p in self.parameters() if p.is_floating_point()), None)
            dtype = first.dtype if first is not None else np.float32
        dtype = as_dtype(dtype)
        shapes = input_shape if (
            isinstance(input_shape, (list, tuple)) and input_shape
            and isinstance(input_shape[0], (list, tuple))) else [input_shape]
        inputs = [
            randn(*tuple(s), dtype=dtype, device=device) if is_floating_dtype(dtype)
            else zeros(*tuple(s), dtype=dtype, device=device)
            for s in shapes
        ]

        rows, handles = [], []

        def make_hook(name):
            def hook(mod, args, out):
                rows.append((name, mod, _shape_text(out), _nbytes(out)))
            return hook

        for name, mod in self.named_modules():
            has_own = any(p is not None for p in mod._parameters.values())
            if not mod._modules or has_own:
                handles.append(mod.register_forward_hook(make_hook(name)))
        modes = {id(m): m.training for m in self.modules()}
        try:
            self.eval()
            with no_grad():
                self(*inputs)
        finally:
            for h in handles:
                h.remove()
            for m in self.modules():
                m.__dict__["training"] = modes[id(m)]

        header = ("Layer (type)", "Output Shape", "Param #", "Output mem")
        table = [header]
        for name, mod, shape, out_bytes in rows:
            count = sum(p.numel() for p in mod._parameters.values() if p is not None)
            label = f"{name} ({type(mod).__name__})" if name else type(mod).__name__
            table.append((label, shape, f"{count:,}", _mb(out_bytes)))
        widths = [max(len(r[i]) for r in table) + 2 for i in range(4)]
        width = sum(widths)
        fmt = lambda r: (r[0].ljust(widths[0]) + r[1].ljust(widths[1]) + r[2].rjust(widths[2])
                         + r[3].rjust(widths[3]))
        params = list(self.parameters())
        total = sum(p.numel() for p in params)
        trainable = sum(p.numel() for p in params if p.requires_grad)
        size_bytes = sum(p.numel() * p.element_size() for p in params)
        input_bytes = sum(_nbytes(x) for x in inputs)
        activation_bytes = sum(r[3] for r in rows)
        lines = [f"Model: {type(self).__name__}", "=" * width, fmt(header), "=" * width]
        lines += [fmt(r) for r in table[1:]]
        lines += [
            "=" * width,
            f"Total params: {total:,}",
            f"Trainable params: {trainable:,}",
            f"Non-trainable params: {total - trainable:,}",
            "-" * width,
            f"Input size: {_mb(input_bytes)}",
            f"Forward pass size (layer outputs): {_mb(activation_bytes)}",
            f"Params size: {_mb(size_bytes)}",
            f"Estimated total size: {_mb(input_bytes + activation_bytes + size_bytes)}",
            "=" * width,
        ]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text


def _nbytes(out) -> int:
    if isinstance(out, Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    return 0


def _mb(nbytes: int) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (KB = 1024 bytes)."""
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.2f} {unit}"
    return f"{nbytes} B"


def _shape_text(out) -> str:
    if isinstance(out, Tensor):
        return str(list(out.shape))
    if isinstance(out, (tuple, list)):
        return ", ".join(_shape_text(o) for o in out)
    return type(out).__name__


def _as_host_or_device_array(value, name):
    """The raw array behind a state_dict value (pydl Tensor, NumPy/CuPy, torch tensor...)."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        return value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001
        raise TypeError(f"state_dict entry {name!r} is a {type(value).__name__}, not a "
                        "tensor or array") from exc


def summary(model: Module, input_shape, **kwargs) -> str:
    """Keras-style summary of ``model`` for one input batch of ``input_shape``.

    The function form of ``Module.summary`` (same arguments, same table).

    >>> text = pydl.nn.summary(model, (1, 784))
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary expects an nn.Module, got {type(model).__name__}")
    return model.summary(input_shape, **kwargs)
