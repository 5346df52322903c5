"""The Optimizer base class: parameter groups, state, ``zero_grad``, ``state_dict``.

An optimizer holds *parameter groups*: dicts with a ``"params"`` list and that group's
options (``lr``, ``momentum``...), filled in from the optimizer's ``defaults``. Its ``state``
maps each parameter to a dict of backend arrays (momentum buffers, moment estimates) and
step counts, created on the first step that parameter has a gradient.

The update itself is a fused, multi-tensor kernel of the backend (``sgd_step``,
``adam_step``... in ``pydl.backend.protocol``): a subclass collects a group's parameters that have
gradients, buckets them by device and dtype, and calls the kernel once per bucket with lists
of arrays, updating them in place.

Low-precision parameters (float16, bfloat16) get float32 master weights: the state holds a
float32 copy ``master_param`` and float32 moments; the kernel (``model_params``) steps the
float32 copy with the gradient widened to float32 and writes the rounded result into the
parameter (both copies written every step: in one pass on CUDA, whose step kernels read
the half gradients directly). The master copy is in ``state_dict()``, so a checkpoint
resumes exactly; a parameter changed outside the optimizer (``load_state_dict`` on the
model, an in-place write) is re-read into its master copy at the next step. A low-precision
parameter may carry a float32 ``.grad`` (``GradScaler.unscale_`` leaves one, so small
gradients do not underflow).
"""

from __future__ import annotations

import copy
import functools
import numbers
from collections import defaultdict

import numpy as np

from ..autograd import enable_grad, no_grad
from ..backend import backend_of, device_of, optimizer_step_hooks
from ..tensor import LOW_PRECISION, Tensor, dtype_name, float32

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    """Marks a hyperparameter a group must give when the optimizer has no default."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _count_steps(step):
    """Wrap a subclass's ``step`` so schedulers can tell whether the optimizer has stepped."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        self._step_count = getattr(self, "_step_count", 0) + 1
        return step(self, *args, **kwargs)

    wrapper._counts_steps = True
    return wrapper


class Optimizer:
    """Base class of all optimizers (PyTorch's ``torch.optim.Optimizer`` API).

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of dicts, each with a
            ``"params"`` entry and per-group options that override ``defaults``
            (``[{"params": body}, {"params": head, "lr": 1e-2}]``).
        defaults: the options of every group that does not set them.

    Subclasses implement ``_update_group(group)`` (called under ``no_grad`` by ``step``) or
    override ``step`` themselves, and may implement ``_validate(options)``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_counts_steps", False):
            cls.step = _count_steps(step)

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self._validate(self.defaults)
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        self._step_count = 0
        if isinstance(params, Tensor):
            raise TypeError(
                "params given to the optimizer should be an iterable of Tensors or dicts, but "
                "got a Tensor; pass [tensor] or model.parameters()"
            )
        if isinstance(params, dict):
            params = [params]
        if isinstance(params, (set, frozenset)):
            params = [{"params": params}]  # add_param_group explains why a set is refused
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # -- hyperparameter checks ------------------------------------------------------------
    def _validate(self, options: dict) -> None:
        """Raise ValueError for an invalid option (subclasses extend this)."""
        _check_nonnegative(options, "lr", "learning rate")

    # -- parameter groups -----------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own options (e.g. to unfreeze layers later).

        >>> opt.add_param_group({"params": model.head.parameters(), "lr": 1e-3})
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("a parameter group needs a 'params' entry")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters must be in an ordered collection (a list), not a set: "
                "the order of a set changes between runs"
            )
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        if names:
            if len(names) != len(params):
                raise ValueError("either every parameter in a group has a name or none has")
            group["param_names"] = names
            params = [p[1] for p in params]
        for p in params:
            _check_param(p)
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group lists the same parameter more than once")
        group["params"] = params

        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(
                    f"parameter group didn't specify a value of required option {name}"
                )
            group.setdefault(name, default)
        self._validate(group)

        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    # -- gradients ------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter.

        With ``set_to_none=True`` (the default) each ``.grad`` becomes ``None``, so a parameter
        that gets no gradient before the next ``step`` is skipped by it. With ``False`` the
        gradient tensors are kept and filled with zeros in place.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if p.grad._ctx is not None:
                        p.grad.detach_()
                    else:
                        p.grad.requires_grad_(False)
                    p.grad.zero_()

    # -- stepping -------------------------------------------------------------------------
    def step(self, closure=None):
        """Update every parameter that has a gradient; return ``closure()``'s loss if given.

        ``closure`` zeroes the gradients, re-evaluates the model, calls ``backward()`` and
        returns the loss; it runs with gradients enabled, before the update.
        """
        self._step_count += 1
        for hook in optimizer_step_hooks:  # e.g. the CUDA graph recorder (backend/cuda/graph.py)
            hook(self)
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._update_group(group)
        return loss

    def _update_group(self, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement an update")

    def _params_with_grad(self, group: dict) -> list[Tensor]:
        """The group's parameters that have a gradient, checked against their parameter."""
        out = []
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if not isinstance(g, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: .grad must be a Tensor, not {type(g).__name__}"
                )
            if g.data.shape != p.data.shape:
                raise RuntimeError(
                    f"{type(self).__name__}: gradient of shape {tuple(g.data.shape)} does not "
                    f"match its parameter of shape {tuple(p.data.shape)}"
                )
            if g.data.dtype != p.data.dtype and not (
                    g.data.dtype == float32 and p.data.dtype in LOW_PRECISION):
                raise RuntimeError(
                    f"{type(self).__name__}: gradient of dtype {dtype_name(g.data.dtype)} does "
                    f"not match its parameter of dtype {dtype_name(p.data.dtype)}"
                )
            if device_of(g.data) != device_of(p.data):
                raise RuntimeError(
                    f"{type(self).__name__}: gradient on {device_of(g.data)} for a parameter on "
                    f"{device_of(p.data)}"
                )
            out.append(p)
        return out

    @staticmethod
    def _zeros(p: Tensor, fill: float = 0.0):
        """A new C-contiguous state array shaped like parameter ``p``, on its device (float32
        for a low-precision parameter)."""
        xp = backend_of(p.data).xp
        return xp.full(p.data.shape, fill, dtype=_state_dtype(p.data.dtype))

    def _master(self, p: Tensor):
        """The float32 master copy of low-precision parameter ``p`` (made or re-read from
        ``p`` when the optimizer did not write ``p`` last)."""
        state = self.state[p]
        master = state.get("master_param")
        seen = getattr(self, "_master_versions", None)
        if seen is None:
            seen = self._master_versions = {}
        known = seen.get(id(p))
        if master is None or (known is not None and known != p._version[0]):
            master = state["master_param"] = p.data.astype(float32)
        return master

    @staticmethod
    def _buckets(entries) -> dict:
        """Group ``(key, param)`` pairs by (device, dtype, key), keeping their order."""
        buckets: dict = {}
        for key, p in entries:
            buckets.setdefault((device_of(p.data), p.data.dtype, key), []).append(p)
        return buckets

    def _launch(self, kernel: str, params: list[Tensor], state_keys, **hyper) -> None:
        """Run the backend's fused ``kernel`` once over ``params`` (one device and dtype).

        ``state_keys`` names, in the kernel's argument order, the state arrays to pass after
        the gradients; ``None`` passes ``None`` (a state the options leave unused).
        """
        backend = backend_of(params[0].data)
        arrays, writeback = [], []
        low = params[0].data.dtype in LOW_PRECISION
        for p in params:
            a = p.data
            if low:  # step the float32 master copy; the kernel also writes the parameter
                a = self._master(p)
            elif not a.flags.c_contiguous:  # kernels update contiguous memory in place
                c = a.copy(order="C")
                writeback.append((a, c))
                a = c
            arrays.append(a)
        # low-precision gradients go to the kernel as they are (it widens them)
        grads = [_contiguous(p.grad.data) for p in params]
        states = [
            None if key is None else [self.state[p][key] for p in params] for key in state_keys
        ]
        if low:
            hyper["model_params"] = [p.data for p in params]
        getattr(backend, kernel)(arrays, grads, *states, **hyper)
        for dst, src in writeback:
            dst[...] = src
        for p in params:
            p._bump()  # autograd sees that the parameter changed
            if low:
                self._master_versions[id(p)] = p._version[0]

    # -- saving and loading ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """The optimizer's state as a dict, PyTorch's layout::

            {"state": {0: {"step": 3, "exp_avg": Tensor, ...}, ...},
             "param_groups": [{"lr": 0.001, ..., "params": [0, 1, 2]}, ...]}

        Parameters are numbered in group order; state tensors are copies, so later steps do not
        change a saved dict.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, entry in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: _export(v) for k, v in entry.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the state saved by ``state_dict`` (group options and per-parameter state).

        The optimizer must hold the same number of groups with the same number of parameters
        in each, in the same order; state arrays are copied onto each parameter's device and
        dtype. Create schedulers before calling this, as they overwrite ``lr`` when built.
        """
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError(
                "an optimizer state dict is a dict with 'state' and 'param_groups' entries"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, but the optimizer "
                f"has {len(self.param_groups)}"
            )
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(
                    f"loaded state dict's parameter group {i} has {len(saved['params'])} "
                    f"parameters, but the optimizer's group {i} has {len(group['params'])}"
                )
        id_map = {
            saved_id: p
            for group, saved in zip(self.param_groups, saved_groups, strict=True)
            for saved_id, p in zip(saved["params"], group["params"], strict=True)
        }
        state: defaultdict = defaultdict(dict)
        for key, entry in state_dict["state"].items():
            if key not in id_map:
                raise ValueError(
                    f"loaded state dict has state for parameter {key}, which no group lists"
                )
            p = id_map[key]
            state[p] = {name: _import(value, p, key, name) for name, value in entry.items()}
        groups = []
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            new = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            new["params"] = group["params"]
            for k, v in self.defaults.items():  # options a saved dict may predate
                new.setdefault(k, group.get(k, v))
            if "param_names" in group and "param_names" not in new:
                new["param_names"] = group["param_names"]
            groups.append(new)
        self.state = state
        self.param_groups = groups
        self._master_versions = {}  # the loaded master copies are the truth, not the params

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            keys = sorted(k for k in group if k not in ("params", "param_names"))
            lines += [f"    {k}: {group[k]}" for k in keys]
        return "\n".join(lines) + "\n)"

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._step_count = 0


def _contiguous(array):
    return array if array.flags.c_contiguous else array.copy(order="C")


def _check_param(p) -> None:
    if not isinstance(p, Tensor):
        raise TypeError(
            f"an optimizer can only optimize Tensors, but one of the params is {type(p).__name__}"
        )
    if not p.is_leaf:
        raise ValueError(
            "can't optimize a non-leaf Tensor (one computed from others); optimize the leaf "
            "tensors it was computed from, or .detach().requires_grad_() it"
        )
    if not p.is_floating_point():
        raise TypeError(
            f"can't optimize a tensor of dtype {dtype_name(p.dtype)}: it must be floating point"
        )


def _check_nonnegative(options: dict, key: str, what: str) -> None:
    value = options.get(key)
    if value is None or value is required:
        return
    if not isinstance(value, (numbers.Real, Tensor)) or not float(value) >= 0.0:
        raise ValueError(f"Invalid {what}: {value} (must be >= 0)")


def _export(value):
    """A state value as it goes into a state dict: arrays become Tensors (copies)."""
    if isinstance(value, (numbers.Number, str, bool)) or value is None:
        return value
    if isinstance(value, Tensor):
        return Tensor._make(value.data.copy())
    return Tensor._make(value.copy())


def _import(value, p: Tensor, index, name):
    """A state-dict value as the optimizer keeps it: Tensors become arrays on p's device."""
    if isinstance(value, Tensor) and name == "step":
        value = value.item()
    if isinstance(value, (numbers.Number, str, bool)) or value is None:
        if name == "step" and float(value).is_integer():
            return int(value)
        return value
    if isinstance(value, Tensor):
        array = value.data
    elif isinstance(value, np.ndarray) or type(value).__module__.startswith("cupy"):
        array = value
    else:
        array = np.asarray(value)
    if tuple(array.shape) != tuple(p.data.shape):
        raise ValueError(
            f"loaded state {name!r} of parameter {index} has shape {tuple(array.shape)}, but the "
            f"parameter has shape {tuple(p.data.shape)}"
        )
    t = Tensor._make(array)
    if t.is_floating_point():
        t = t.to(dtype=_state_dtype(p.dtype))
    t = t.to(device=p.device)
    # np.dtype(char) is NumPy's canonical dtype object: an unpickled array carries an equal but
    # distinct one, which the C++ kernels (comparing dtypes by identity) would not take
    dtype = t.data.dtype if t.data.dtype in LOW_PRECISION else np.dtype(t.data.dtype.char)
    out = backend_of(t.data).xp.empty(t.data.shape, dtype=dtype)
    out[...] = t.data
    return out


def _state_dtype(dtype):
    """The dtype of optimizer state for a parameter of ``dtype``: float32 for float16 and
    bfloat16 (master weights), else the parameter's own."""
    return float32 if dtype in LOW_PRECISION else dtype
