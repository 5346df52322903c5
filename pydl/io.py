"""Saving and loading: the safetensors format, atomic writes, strict and safe loading.

``pydl.save(obj, path)`` writes any nest of dicts, lists and tuples whose leaves are tensors,
arrays, numbers, strings, booleans or None (a model's ``state_dict()``, an optimizer's, a whole
training checkpoint). Tensors go into the safetensors body by their dotted path; everything
else goes into the JSON header's metadata, with the pydl version and a format version. The
file never holds pickled data, so loading never executes code from it.

Writes are atomic: the bytes go to a temporary file in the same directory, which is flushed,
fsynced and renamed over the target, so an interrupted save leaves the previous file intact.

Loading checks the file before trusting it: the 8-byte header length against the file size,
the JSON header, every tensor's offsets against the body, the format name and version.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np

from .tensor import Tensor

__all__ = ["save", "load", "CheckpointError", "FORMAT_VERSION", "atomic_write_bytes"]

FORMAT_NAME = "pydl"
FORMAT_VERSION = 1
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


class CheckpointError(ValueError):
    """A file that cannot be loaded as a pydl checkpoint; the message says why."""


def _safetensors():
    try:
        import safetensors.numpy as st
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "saving and loading need the safetensors package: pip install 'pydl[io]' "
            "(or pip install safetensors)"
        ) from None
    return st


def _contiguous(arr):
    """C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray would make them 1-d)."""
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _flatten(obj, prefix, tensors, devices):
    """Split ``obj`` into a JSON-able skeleton and a dict of named arrays."""
    if isinstance(obj, Tensor):
        arr = obj.data
        name = prefix or "tensor"
        devices[name] = str(obj.device)
        if type(arr).__module__.startswith("cupy"):
            arr = arr.get()
        tensors[name] = _contiguous(arr)
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("cupy"):
        arr = obj.get() if type(obj).__module__.startswith("cupy") else obj
        name = prefix or "array"
        tensors[name] = _contiguous(arr)
        return {"__array__": name}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__}")
            key = str(k)
            out[key] = _flatten(v, f"{prefix}.{key}" if prefix else key, tensors, devices)
        keys_int = all(isinstance(k, int) for k in obj)
        return {"__dict__": out, "__int_keys__": True} if keys_int and obj else {"__dict__": out}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors, devices)
                 for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        if isinstance(obj, float) and not np.isfinite(obj):
            return {"__float__": repr(obj)}
        return obj
    raise TypeError(
        f"save: can't store a {type(obj).__name__} at '{prefix}'; store tensors, arrays, "
        "numbers, strings, None, and dicts/lists of them"
    )


def _unflatten(node, tensors, as_tensors, device):
    if isinstance(node, list):
        return [_unflatten(v, tensors, as_tensors, device) for v in node]
    if isinstance(node, dict):
        if "__tensor__" in node:
            arr = tensors[node["__tensor__"]]
            return Tensor(arr, dtype=arr.dtype, device=device) if as_tensors else arr
        if "__array__" in node:
            return tensors[node["__array__"]]
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors, as_tensors, device) for v in node["__tuple__"])
        if "__float__" in node:
            return float(node["__float__"])
        if "__dict__" in node:
            conv = int if node.get("__int_keys__") else str
            return {conv(k): _unflatten(v, tensors, as_tensors, device)
                    for k, v in node["__dict__"].items()}
    return node


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pydl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save(obj, path, metadata: dict | None = None) -> None:
    """Save tensors (or a nest of dicts/lists holding them) to ``path`` in safetensors format.

    >>> pydl.save(model.state_dict(), "model.safetensors")
    """
    from . import __version__

    tensors: dict = {}
    devices: dict = {}
    tree = _flatten(obj, "", tensors, devices)
    meta = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "pydl_version": __version__,
        "tree": json.dumps(tree),
    }
    if metadata:
        meta["user"] = json.dumps(metadata)
    data = _safetensors().save(tensors, metadata=meta)
    atomic_write_bytes(path, data)


def _read_checked(path):
    """The file's bytes and its parsed header, or a CheckpointError saying what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise CheckpointError(f"{path}: {len(data)} bytes is too short to be a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        raise CheckpointError(f"{path}: not a safetensors file (header length {n} is absurd)")
    if 8 + n > len(data):
        raise CheckpointError(
            f"{path}: header of {n} bytes is larger than the file ({len(data)} bytes): "
            "truncated or not a safetensors file"
        )
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (the header is not an object)")
    body = len(data) - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path}: tensor '{name}' has no valid data_offsets") from None
        if not (0 <= start <= end <= body):
            raise CheckpointError(
                f"{path}: tensor '{name}' needs bytes {start}..{end} but the body has {body}: "
                "the file is truncated"
            )
    return data, header


def load(path, device=None, as_tensors: bool = True):
    """Load what :func:`save` wrote; tensors come back on ``device`` (default CPU).

    Raises CheckpointError for a file that is not safetensors, truncated, whose header is
    larger than the file, or whose format version is missing or newer than this pydl reads.
    """
    data, header = _read_checked(path)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT_NAME or "format_version" not in meta:
        raise CheckpointError(
            f"{os.fspath(path)}: a safetensors file but not a pydl checkpoint (no format version "
            "in its metadata); read plain safetensors files with pydl.io.load_safetensors"
        )
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise CheckpointError(f"{path}: bad format version {meta['format_version']!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{os.fspath(path)}: format version {version} is newer than this pydl reads "
            f"({FORMAT_VERSION}); upgrade pydl"
        )
    try:
        tensors = _safetensors().load(data)
    except Exception as exc:  # noqa: BLE001 - the library's own validation
        raise CheckpointError(f"{os.fspath(path)}: invalid safetensors data ({exc})") from None
    try:
        tree = json.loads(meta["tree"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{os.fspath(path)}: the checkpoint's structure is missing") from None
    return _unflatten(tree, tensors, as_tensors, device)


def load_safetensors(path, device=None) -> dict:
    """Any safetensors file as a dict name -> Tensor (checked like :func:`load`)."""
    data, _ = _read_checked(path)
    try:
        arrays = _safetensors().load(data)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{os.fspath(path)}: invalid safetensors data ({exc})") from None
    return {k: Tensor(v, dtype=v.dtype, device=device) for k, v in arrays.items()}


def read_metadata(path) -> dict:
    """The user metadata stored with :func:`save` (empty dict if none)."""
    _, header = _read_checked(path)
    meta = header.get("__metadata__") or {}
    return json.loads(meta["user"]) if "user" in meta else {}
