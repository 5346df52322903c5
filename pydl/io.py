"""Saving and loading: the safetensors format, checksums, atomic writes, strict and safe loading.

``pydl.save(obj, path)`` writes any nest of dicts, lists and tuples whose leaves are tensors,
arrays, numbers, strings, booleans or None (a model's ``state_dict()``, an optimizer's, a whole
training checkpoint). Tensors go into the safetensors body by their dotted path; everything
else goes into the JSON header's metadata, with the pydl version and a format version. The
file never holds pickled data, so loading never executes code from it.

Checksums: the metadata holds a CRC-32 of every tensor's bytes and one of the header itself,
so a flipped bit anywhere in the file is refused on load (naming the tensor) instead of
loading wrong values. ``load(..., verify=False)`` skips them for trusted huge files. They
detect corruption (every burst of up to 32 flipped bits; other damage with probability
1 - 2**-32), not deliberate tampering: whoever edits the file can recompute them. CRC-32 from
the standard library's zlib runs at about 5 GB/s, against 1.5 GB/s for hashlib's fastest
(SHA-256); benchmarks/bench_io.py measures what it costs a 1 GB save and load.

Writes are atomic: the bytes go to a temporary file ``.pydl-<hex>.tmp`` in the same directory
(created with the mode the umask gives any new file), which is flushed, fsynced and renamed
over the target, so an interrupted save leaves the previous file intact. The saving process
holds a lock on its temporary file; the next save into the directory removes pydl's temporary
files that are older than its own and that no live process holds (debris of a killed save).

The same object saved twice gives the same bytes: the header's keys are sorted, the tensors
laid out by (item size, name), and nothing time- or host-dependent is stored.

Loading checks the file before trusting it: the 8-byte header length against the file size,
the JSON header, every tensor's dtype, shape and offsets (which must tile the body exactly),
the checksums, the format name and version, the stored structure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import struct
import zlib

import ml_dtypes
import numpy as np

from .tensor import Tensor

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, so no cleaning of stale files
    fcntl = None

__all__ = ["save", "load", "load_safetensors", "read_metadata", "CheckpointError",
           "FORMAT_VERSION", "atomic_write_bytes"]

FORMAT_NAME = "pydl"
FORMAT_VERSION = 2  # 2: checksums; 1 (no checksums) still loads
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header
_HASH = "crc32"
_PLACEHOLDER = "0" * 8
_HEADER_CHECKSUM = re.compile(rb'"header_checksum"\s*:\s*"([0-9a-f]{8})"')  # only outside strings
_CODES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_CODES["BF16"] = ml_dtypes.bfloat16  # little-endian bytes, as safetensors writes them
_CODE_OF = {np.dtype(v): k for k, v in _CODES.items()}
_TMP_OURS = re.compile(r"\.pydl-[0-9a-f]{16}\.tmp")
_TMP_LEGACY = re.compile(r"\.pydl-[a-z0-9_]{8}\.tmp")  # mkstemp names of pydl <= format 1
_LEGACY_GRACE_S = 3600  # legacy temps hold no lock: remove only when surely abandoned


class CheckpointError(ValueError):
    """A file that cannot be loaded as a pydl checkpoint; the message says why."""


def _contiguous(arr):
    """C-contiguous little-endian, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    little = arr.dtype.newbyteorder("<")
    if arr.dtype != little:
        arr = arr.astype(little)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _flatten(obj, prefix, tensors):
    """Split ``obj`` into a JSON-able skeleton and a dict of named arrays."""
    if isinstance(obj, Tensor) or isinstance(obj, np.ndarray) \
            or type(obj).__module__.startswith("cupy"):
        kind = "__tensor__" if isinstance(obj, Tensor) else "__array__"
        arr = obj.data if isinstance(obj, Tensor) else obj
        if type(arr).__module__.startswith("cupy"):
            arr = arr.get()
        name = prefix or kind.strip("_")
        if name in tensors or name == "__metadata__":
            raise ValueError(f"save: two entries would both be stored as '{name}' (keys like 1 "
                             "and '1', or 'a.b' beside 'a': {'b': ...}); rename one")
        arr = _contiguous(arr)
        if arr.dtype not in _CODE_OF:
            raise TypeError(f"save: '{name}' has dtype {arr.dtype}, which safetensors can't store")
        tensors[name] = arr
        return {kind: name}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__}")
            key = str(k)
            out[key] = _flatten(v, f"{prefix}.{key}" if prefix else key, tensors)
        keys_int = all(isinstance(k, int) for k in obj)
        return {"__dict__": out, "__int_keys__": True} if keys_int and obj else {"__dict__": out}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors)
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
    """Rebuild what :func:`_flatten` split; KeyError/TypeError/ValueError mean a bad tree."""
    if isinstance(node, list):
        return [_unflatten(v, tensors, as_tensors, device) for v in node]
    if isinstance(node, dict):
        if "__tensor__" in node:
            arr = tensors[node["__tensor__"]]
            return _as_tensor(arr, device) if as_tensors else arr
        if "__array__" in node:
            return tensors[node["__array__"]]
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors, as_tensors, device)
                         for v in _expect(node["__tuple__"], list))
        if "__float__" in node:
            return float(_expect(node["__float__"], str))
        if "__dict__" in node:
            conv = int if node.get("__int_keys__") else str
            return {conv(k): _unflatten(v, tensors, as_tensors, device)
                    for k, v in _expect(node["__dict__"], dict).items()}
        raise ValueError("an object node of unknown kind")
    return node


def _as_tensor(arr, device):
    """A Tensor of ``arr``; integer types pydl has no tensors of are widened without loss."""
    if arr.dtype.kind in "iu" and arr.dtype not in (np.int32, np.int64):
        wide = np.int32 if arr.dtype.itemsize < 4 else np.int64
        if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
            raise ValueError("uint64 values beyond int64's range")
        arr = arr.astype(wide)
    return Tensor(arr, dtype=arr.dtype, device=device)


def _expect(value, kind):
    if not isinstance(value, kind):
        raise TypeError(f"expected a {kind.__name__}, got {type(value).__name__}")
    return value


# -- atomic writes and stale temporary files --------------------------------------------------
def _create_locked_temp(directory):
    """A new ``.pydl-<hex>.tmp`` in ``directory``, opened for writing and locked by us.

    ``os.open(..., 0o666)`` lets the umask decide the mode, as for any new file. A cleaner in
    another process may catch the file between its creation and our lock; then it is gone (or
    locked by the cleaner) and we try another name.
    """
    while True:
        tmp = os.path.join(directory, f".pydl-{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                     0o666)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except BlockingIOError:  # a cleaner holds it: leave no file behind
            with contextlib.suppress(OSError):
                if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    os.unlink(tmp)
        except FileNotFoundError:  # a cleaner removed it
            pass
        except OSError:  # no locks on this filesystem: cleaners can't lock it either
            return fd, tmp
        os.close(fd)


def _remove_stale_temps(directory, own_tmp, own_mtime_ns):
    """Remove pydl's temporary files in ``directory`` older than ``own_tmp`` and held by no
    live process (a process killed mid-save drops its lock). Errors just skip a file."""
    if fcntl is None:
        return
    legacy_before = own_mtime_ns - _LEGACY_GRACE_S * 10**9
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        ours = _TMP_OURS.fullmatch(entry.name)
        if entry.path == own_tmp or not (ours or _TMP_LEGACY.fullmatch(entry.name)):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its saver lives
            st = os.fstat(fd)
            before = own_mtime_ns if ours else legacy_before
            if stat.S_ISREG(st.st_mode) and st.st_mtime_ns < before \
                    and os.stat(entry.path).st_ino == st.st_ino:
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic_file(path):
    """A binary file to write ``path``'s new contents into; on success it replaces ``path``
    atomically and durably, on any error ``path`` is untouched and the temporary file gone."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_locked_temp(directory)
    try:
        _remove_stale_temps(directory, tmp, os.fstat(fd).st_mtime_ns)
        with os.fdopen(os.dup(fd), "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # drops the lock, after the rename
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file."""
    with _atomic_file(path) as f:
        f.write(data)


# -- writing ----------------------------------------------------------------------------------
def _digest(data) -> str:
    """The CRC-32 of an array's bytes (or of a bytes object), as 8 hex digits."""
    if isinstance(data, np.ndarray):
        data = data.reshape(-1).view(np.uint8)
    return f"{zlib.crc32(data):08x}"


def _header_bytes(entries, meta) -> bytes:
    """The 8-byte length and the sorted, compact JSON header, space-padded to 8 bytes."""
    header = dict(entries, __metadata__=meta)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")
    text += b" " * (-(8 + len(text)) % 8)  # keeps every tensor 8-byte aligned
    return struct.pack("<Q", len(text)) + text


def _blank_header_checksum(path, raw: bytes):
    """``(raw with its header checksum zeroed, the stored checksum)``; the field must appear
    exactly once outside JSON strings (inside them its quotes would be escaped)."""
    found = list(_HEADER_CHECKSUM.finditer(raw))
    if len(found) != 1:
        raise CheckpointError(f"{path}: the header's checksum is malformed")
    start, stop = found[0].span(1)
    return raw[:start] + _PLACEHOLDER.encode() + raw[stop:], found[0].group(1).decode()


def _with_header_checksum(raw: bytes) -> bytes:
    """Fill the header's own checksum: a hash of all header bytes with it still zero."""
    start, stop = _HEADER_CHECKSUM.search(raw).span(1)  # written as the zero placeholder
    return raw[:start] + _digest(raw).encode() + raw[stop:]


def _write_safetensors(f, tensors, meta) -> None:
    """Write a safetensors file with a checksum of every tensor and of the header."""
    names = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    entries, offset = {}, 0
    for name in names:
        arr = tensors[name]
        entries[name] = {"dtype": _CODE_OF[arr.dtype], "shape": list(arr.shape),
                         "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    sums = {name: _digest(tensors[name]) for name in names}
    meta = dict(meta, checksums=json.dumps(sums, sort_keys=True), checksum_algorithm=_HASH,
                header_checksum=_PLACEHOLDER)
    f.write(_with_header_checksum(_header_bytes(entries, meta)))
    for name in names:
        f.write(tensors[name].reshape(-1).view(np.uint8))


def save(obj, path, metadata: dict | None = None) -> None:
    """Save tensors (or a nest of dicts/lists holding them) to ``path`` in safetensors format,
    with a checksum of every tensor; the same ``obj`` always gives the same bytes.

    >>> pydl.save(model.state_dict(), "model.safetensors")
    """
    from . import __version__

    tensors: dict = {}
    tree = _flatten(obj, "", tensors)
    meta = {"format": FORMAT_NAME, "format_version": str(FORMAT_VERSION),
            "pydl_version": __version__, "tree": json.dumps(tree)}
    if metadata:
        meta["user"] = json.dumps(metadata)
    with _atomic_file(path) as f:
        _write_safetensors(f, tensors, meta)


# -- reading ----------------------------------------------------------------------------------
def _read_header(f, path, size):
    """The raw header bytes (with the length prefix) and the parsed, validated header.

    Returns ``(raw, entries, meta)``: ``entries`` maps each tensor name to its numpy dtype,
    shape and byte range; they tile the body exactly.
    """
    if size < 8:
        raise CheckpointError(f"{path}: {size} bytes is too short to be a safetensors file")
    prefix = f.read(8)
    (n,) = struct.unpack("<Q", prefix)
    if n > _MAX_HEADER:
        raise CheckpointError(f"{path}: not a safetensors file (header length {n} is absurd)")
    if 8 + n > size:
        raise CheckpointError(f"{path}: header of {n} bytes is larger than the file ({size} "
                              "bytes): truncated or not a safetensors file")
    text = f.read(n)
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: not a safetensors file (the header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (the header is not an object)")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{path}: the header's __metadata__ is not a map of strings")
    entries = {name: _entry(path, name, info) for name, info in header.items()}
    body, end = size - 8 - n, 0
    for name, (_, _, start, stop) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if stop > body:
            raise CheckpointError(f"{path}: tensor '{name}' needs bytes {start}..{stop} but the "
                                  f"body has {body}: the file is truncated")
        if start != end:
            raise CheckpointError(f"{path}: tensor '{name}' starts at byte {start} of the body, "
                                  f"expected {end} (tensors overlap or leave a gap)")
        end = stop
    if end != body:
        raise CheckpointError(f"{path}: the tensors end at byte {end} of the body but it has "
                              f"{body}: extra bytes, or a damaged header")
    return prefix + text, entries, meta


def _entry(path, name, info):
    """``(dtype, shape, start, stop)`` of one header entry, or a CheckpointError."""
    code = info.get("dtype") if isinstance(info, dict) else None
    if isinstance(code, str) and code not in _CODES:
        raise CheckpointError(f"{path}: tensor '{name}' has dtype {code}, which pydl can't load "
                              f"(it reads {', '.join(_CODES)})")
    try:
        dtype = np.dtype(_CODES[info["dtype"]])
        shape = tuple(_expect(d, int) for d in _expect(info["shape"], list))
        start, stop = (_expect(o, int) for o in _expect(info["data_offsets"], list))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path}: tensor '{name}' has a malformed header entry "
                              "(dtype, shape and data_offsets)") from None
    if any(isinstance(d, bool) or not 0 <= d < 2**31 for d in shape) or isinstance(start, bool) \
            or isinstance(stop, bool) or not 0 <= start <= stop:
        raise CheckpointError(f"{path}: tensor '{name}' has a malformed header entry {info}")
    if stop - start != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise CheckpointError(f"{path}: tensor '{name}' of shape {shape} and dtype "
                              f"{info['dtype']} does not fill its bytes {start}..{stop}")
    return dtype, shape, start, stop


def _checksums(path, raw, entries, meta):
    """The per-tensor checksums after checking the header's own; None if the file has none."""
    if "header_checksum" not in meta:
        if "checksums" in meta:
            raise CheckpointError(f"{path}: the header's checksum is missing")
        return None
    blank, stored = _blank_header_checksum(path, raw)
    if meta.get("checksum_algorithm") != _HASH or stored != meta["header_checksum"]:
        raise CheckpointError(f"{path}: the header's checksum is malformed")
    if _digest(blank) != stored:
        raise CheckpointError(f"{path}: the header does not match its checksum: the file is "
                              "damaged")
    try:
        sums = json.loads(meta["checksums"])
    except (KeyError, ValueError):
        sums = None
    if not isinstance(sums, dict) or set(sums) != set(entries):
        raise CheckpointError(f"{path}: the tensors' checksums are missing or malformed")
    return sums


def _read(path, verify, header_only=False, check_meta=None):
    """``(entries, meta, arrays)`` of a safetensors file; ``check_meta(path, meta)`` runs on the
    header before the body is read; the checksums are checked when the file has them and
    ``verify`` is set, so a damaged tensor is named."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        raw, entries, meta = _read_header(f, path, size)
        if check_meta is not None:
            check_meta(path, meta)
        sums = _checksums(path, raw, entries, meta) if verify else None
        if header_only:
            return entries, meta, None
        arrays = {}
        for name, (dtype, shape, start, stop) in sorted(entries.items(), key=lambda kv: kv[1][2]):
            arr = np.empty(shape, dtype=dtype)
            if f.readinto(arr.reshape(-1).view(np.uint8)) != stop - start:
                raise CheckpointError(f"{path}: the file ended inside tensor '{name}' "
                                      "(it changed while being read)")
            if sums is not None and _digest(arr) != sums[name]:
                raise CheckpointError(f"{path}: tensor '{name}' does not match its checksum: "
                                      "the file is damaged")
            arrays[name] = arr
    return entries, meta, arrays


def _pydl_meta(path, meta):
    """Check the format name and version of a pydl checkpoint's metadata."""
    if meta.get("format") != FORMAT_NAME or "format_version" not in meta:
        raise CheckpointError(
            f"{path}: a safetensors file but not a pydl checkpoint (no format version "
            "in its metadata); read plain safetensors files with pydl.io.load_safetensors"
        )
    version = meta["format_version"]
    if not re.fullmatch(r"[0-9]{1,6}", version) or int(version) < 1:
        raise CheckpointError(f"{path}: bad format version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {version} is newer than this pydl reads "
                              f"({FORMAT_VERSION}); upgrade pydl")
    if int(version) >= 2 and "header_checksum" not in meta:
        raise CheckpointError(f"{path}: the checkpoint's checksums are missing")


def _json_field(path, meta, key, what):
    try:
        return json.loads(meta[key])
    except (KeyError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: the checkpoint's {what} is missing or not JSON") from None


def load(path, device=None, as_tensors: bool = True, verify: bool = True):
    """Load what :func:`save` wrote; tensors come back on ``device`` (default CPU).

    Raises CheckpointError for a file that is not safetensors, truncated, whose header is
    larger than the file, whose format version is missing or newer than this pydl reads, or
    whose bytes do not match their checksums (naming the tensor). ``verify=False`` skips the
    checksums (CRC-32 at about 5 GB/s, most of the time of a load from the page cache):
    only for files you trust.

    >>> state = pydl.load("model.safetensors")
    """
    path = os.fspath(path)
    _, meta, arrays = _read(path, verify, check_meta=_pydl_meta)
    tree = _json_field(path, meta, "tree", "structure")
    try:
        return _unflatten(tree, arrays, as_tensors, device)
    except KeyError as exc:
        raise CheckpointError(f"{path}: the structure names a tensor {exc} that the file does "
                              "not hold") from None
    except (TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: the checkpoint's structure is malformed ({exc})") from None


def load_safetensors(path, device=None, verify: bool = True) -> dict:
    """Any safetensors file (pydl's, or another tool's) as a dict name -> Tensor, checked like
    :func:`load`; checksums are verified where the file has pydl's. Integer types that pydl
    has no tensors of (int8, uint8, int16, uint16, uint32, uint64) come back widened to int32
    or int64.

    >>> weights = pydl.io.load_safetensors("model.safetensors")
    """
    _, _, arrays = _read(path, verify)
    out = {}
    for name, arr in arrays.items():
        try:
            out[name] = _as_tensor(arr, device)
        except ValueError as exc:
            raise CheckpointError(f"{os.fspath(path)}: tensor '{name}' holds {exc}") from None
    return out


def read_metadata(path) -> dict:
    """The user metadata stored with :func:`save` (empty dict if none); reads only the header."""
    path = os.fspath(path)
    _, meta, _ = _read(path, verify=True, header_only=True)
    return _json_field(path, meta, "user", "user metadata") if "user" in meta else {}
