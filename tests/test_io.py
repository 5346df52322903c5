"""Checkpoints: safetensors round trips, atomic writes, refusal of malformed files."""

import json
import os
import struct

import numpy as np
import pytest

import pydl
from pydl.io import CheckpointError, load, save


def test_roundtrip_nested(tmp_path):
    obj = {"w": pydl.randn(3, 4), "b": pydl.zeros(4, dtype=pydl.float64),
           "state": {0: {"step": 3, "m": np.arange(3.0)}}, "lrs": [0.1, float("inf")],
           "t": (1, "a", None), "flag": True, "scalar": pydl.tensor(1.5),
           "strided": pydl.from_numpy(np.arange(12.0).reshape(3, 4)[:, ::2])}
    save(obj, tmp_path / "c.safetensors")
    got = load(tmp_path / "c.safetensors")
    assert np.array_equal(got["w"].numpy(), obj["w"].numpy()) and got["w"].dtype == pydl.float32
    assert got["b"].dtype == pydl.float64
    assert got["state"][0]["step"] == 3 and np.array_equal(got["state"][0]["m"], np.arange(3.0))
    assert got["scalar"].shape == () and got["scalar"].item() == 1.5
    assert np.array_equal(got["strided"].numpy(), obj["strided"].numpy())
    assert got["lrs"] == [0.1, float("inf")] and got["t"] == (1, "a", None) and got["flag"] is True


def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save({"w": pydl.ones(3)}, path)

    def crash(*a, **k):
        raise KeyboardInterrupt("simulated crash mid-write")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save({"w": pydl.zeros(3)}, path)
    monkeypatch.undo()
    assert np.array_equal(load(path)["w"].numpy(), np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left


def _header(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data, n, json.loads(data[8:8 + n])


def test_refuses_malformed(tmp_path):
    good = tmp_path / "good.safetensors"
    save({"w": pydl.randn(8, 8)}, good)
    data, n, header = _header(good)
    bad = tmp_path / "bad.safetensors"

    bad.write_bytes(b"PK\x03\x04 this is a zip file, not safetensors")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load(bad)
    bad.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        load(bad)
    bad.write_bytes(struct.pack("<Q", len(data) * 2) + data[8:])
    with pytest.raises(CheckpointError, match="larger than the file"):
        load(bad)

    def with_meta(meta):
        header["__metadata__"] = meta
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + data[8 + n:]

    meta = dict(header["__metadata__"])
    bad.write_bytes(with_meta({k: v for k, v in meta.items() if k != "format_version"}))
    with pytest.raises(CheckpointError, match="format version"):
        load(bad)
    bad.write_bytes(with_meta({**meta, "format_version": "99"}))
    with pytest.raises(CheckpointError, match="newer"):
        load(bad)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.safetensors")


def test_refuses_unsupported_values(tmp_path):
    with pytest.raises(TypeError, match="can't store a object"):
        save({"x": object()}, tmp_path / "x.safetensors")
