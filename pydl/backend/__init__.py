"""Devices and backends.

A *device* names where a tensor's memory lives (``Device("cpu")`` or ``Device("cuda", 0)``).
A *backend* is the module that holds the code for one kind of device: ``pydl.backend.cpu``
(NumPy plus the optional C++ extension) or ``pydl.backend.cuda`` (CuPy plus our NVRTC-compiled
kernels). Every backend exposes ``xp`` (its NumPy-compatible array module) and the kernels named
in ``pydl.backend.protocol``. Functions ask for ``backend_of(array)`` and never branch on the
device.
"""

from __future__ import annotations

import importlib

import numpy as np

__all__ = ["Device", "as_device", "get_backend", "backend_of", "device_of", "CPU",
           "register_optimizer_step_hook", "optimizer_step_hooks"]


class Device:
    """Where a tensor lives: ``Device("cpu")``, ``Device("cuda")`` or ``Device("cuda:1")``."""

    __slots__ = ("type", "index")

    def __init__(self, type: str, index: int | None = None):  # noqa: A002 - PyTorch's name
        if isinstance(type, Device):
            type, index = type.type, type.index
        if not isinstance(type, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {type!r}")
        text = type.strip().lower()
        if ":" in text:
            text, _, idx = text.partition(":")
            if index is not None:
                raise ValueError(f"device {type!r} gives an index twice")
            try:
                index = int(idx)
            except ValueError:
                raise ValueError(f"bad device index in {type!r}") from None
        if text not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {type!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if text == "cpu":
            if index not in (None, 0):
                raise ValueError(f"the CPU device has no index {index}")
            index = None
        elif index is None:
            index = 0
        elif index < 0:
            raise ValueError(f"bad device index {index}")
        self.type = text
        self.index = index

    def __repr__(self):
        return f"device(type='{self.type}')" if self.index is None else (
            f"device(type='{self.type}', index={self.index})"
        )

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = Device(other)
            except (ValueError, TypeError):
                return False
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))


CPU = Device("cpu")


def as_device(device) -> Device:
    """Turn ``None``, a string or a Device into a Device (``None`` means the CPU)."""
    if device is None:
        return CPU
    if isinstance(device, Device):
        return device
    return Device(device)


_BACKENDS: dict[str, object] = {}


def get_backend(device):
    """The backend module for a device; importing the CUDA one checks CuPy and the GPU."""
    device = as_device(device)
    mod = _BACKENDS.get(device.type)
    if mod is None:
        mod = importlib.import_module(f"pydl.backend.{device.type}")
        if hasattr(mod, "ensure_available"):
            mod.ensure_available()
        _BACKENDS[device.type] = mod
    if device.type == "cuda":
        mod.check_device_index(device.index)
    return mod


def device_of(array) -> Device:
    """The device an array lives on (NumPy arrays are on the CPU, CuPy arrays on a GPU)."""
    if type(array) is np.ndarray:
        return CPU
    if type(array).__module__.startswith("cupy"):
        return Device("cuda", array.device.id)
    return CPU


def backend_of(array):
    """The backend module that owns ``array``."""
    if type(array) is np.ndarray:
        return _BACKENDS.get("cpu") or get_backend("cpu")
    if type(array).__module__.startswith("cupy"):
        return get_backend("cuda")
    return _BACKENDS.get("cpu") or get_backend("cpu")


#: called with the optimizer at the start of every ``Optimizer.step``, before any update
#: (the CUDA graph recorder registers one: pydl/backend/cuda/graph.py)
optimizer_step_hooks: list = []


def register_optimizer_step_hook(hook) -> None:
    """Have ``hook(optimizer)`` called at the start of every optimizer step (once per hook)."""
    if hook not in optimizer_step_hooks:
        optimizer_step_hooks.append(hook)
