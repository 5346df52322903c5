"""Checkpoints you can trust: checksums, one error type for every damaged file, no debris
after a killed save, reproducible bytes, umask modes, other tools' safetensors files."""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import pydl
from pydl.io import CheckpointError, atomic_write_bytes, load, load_safetensors, read_metadata, save


def _state():
    rng = np.random.default_rng(0)
    return {"model": {"w": pydl.from_numpy(rng.standard_normal((6, 5)).astype(np.float32)),
                      "b": pydl.from_numpy(rng.standard_normal(5)),
                      "steps": pydl.from_numpy(np.arange(4, dtype=np.int64)),
                      "mask": np.array([True, False, True])},
            "epoch": 3, "lr": 0.01, "name": "run", "history": {"loss": [1.5, 0.75]}}


def _parts(data):
    """(header length, parsed header) of a safetensors file's bytes."""
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8:8 + n])


def _rebuild(header, body):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


def _tensor_range(data, name):
    n, header = _parts(data)
    start, stop = header[name]["data_offsets"]
    return 8 + n + start, 8 + n + stop


def test_checksum_names_the_damaged_tensor(tmp_path):
    path = tmp_path / "c.safetensors"
    save(_state(), path)
    data = bytearray(path.read_bytes())
    start, _ = _tensor_range(bytes(data), "model.b")
    data[start + 3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tensor 'model.b' does not match its checksum"):
        load(path)
    with pytest.raises(CheckpointError, match="'model.b'"):
        load_safetensors(path)
    # the documented opt-out reads it without looking (the flipped value comes back)
    got = load(path, verify=False)
    assert not np.array_equal(got["model"]["b"].numpy(), _state()["model"]["b"].numpy())
    assert np.array_equal(got["model"]["w"].numpy(), _state()["model"]["w"].numpy())


def test_header_checksum_catches_structure_edits(tmp_path):
    path = tmp_path / "c.safetensors"
    save(_state(), path)
    data = path.read_bytes()
    n, header = _parts(data)
    tree = json.loads(header["__metadata__"]["tree"])
    tree["__dict__"]["epoch"] = 2  # a silent wrong resume without the header's checksum
    header["__metadata__"]["tree"] = json.dumps(tree)
    path.write_bytes(_rebuild(header, data[8 + n:]))
    with pytest.raises(CheckpointError, match="header does not match its checksum"):
        load(path)
    assert load(path, verify=False)["epoch"] == 2


def _mutants(data, rng):
    """Damaged copies of a valid checkpoint: bit flips (half in the header), truncations, and
    structured header edits written back with a consistent length prefix."""
    n, header = _parts(data)
    names = [k for k in header if k != "__metadata__"]
    for _ in range(300):
        pos = int(rng.integers(0, 8 + n)) if rng.random() < 0.5 else int(rng.integers(0, len(data)))
        mutated = bytearray(data)
        mutated[pos] ^= 1 << int(rng.integers(0, 8))
        yield f"flip byte {pos}", bytes(mutated)
    for _ in range(100):
        cut = int(rng.integers(0, len(data)))
        yield f"truncate to {cut}", data[:cut]
    body = data[8 + n:]
    meta = header["__metadata__"]

    def edit(kind):
        h = json.loads(json.dumps(header))
        name = names[int(rng.integers(len(names)))]
        if kind == "rename":
            h[name + "x"] = h.pop(name)
        elif kind == "shape":
            h[name]["shape"] = h[name]["shape"][::-1] + [1]
        elif kind == "dtype":
            swap = {"F32": "I32", "F64": "I64", "I64": "F64", "BOOL": "U8"}
            h[name]["dtype"] = swap[h[name]["dtype"]]
        elif kind == "offsets":
            a, b = h[name]["data_offsets"]
            h[name]["data_offsets"] = [a + 8, b + 8]
        elif kind == "drop_tensor":
            del h[name]
        elif kind == "drop_meta":
            del h["__metadata__"][sorted(meta)[int(rng.integers(len(meta)))]]
        elif kind == "meta_value":
            key = sorted(meta)[int(rng.integers(len(meta)))]
            value = h["__metadata__"][key]
            i = int(rng.integers(len(value)))
            h["__metadata__"][key] = value[:i] + ("7" if value[i] != "7" else "8") + value[i + 1:]
        elif kind == "version1":
            h["__metadata__"]["format_version"] = "1"
        elif kind == "not_strings":
            h["__metadata__"]["format_version"] = 2
        return h

    kinds = ["rename", "shape", "dtype", "offsets", "drop_tensor", "drop_meta", "meta_value",
             "version1", "not_strings"]
    for i in range(100):
        kind = kinds[i % len(kinds)]
        yield f"header edit {kind}", _rebuild(edit(kind), body)


def test_every_damaged_file_raises_checkpoint_error(tmp_path):
    good = tmp_path / "good.safetensors"
    save(_state(), good)
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    count = 0
    for what, mutated in _mutants(data, np.random.default_rng(1234)):
        if mutated == data:
            continue
        bad.write_bytes(mutated)
        for reader in (load, load_safetensors):
            try:
                reader(bad)
            except CheckpointError:
                pass
            else:
                pytest.fail(f"{what}: {reader.__name__} loaded a damaged file")
        # unverified: wrong values maybe, but no error other than CheckpointError
        for reader in (load, load_safetensors):
            try:
                reader(bad, verify=False)
            except CheckpointError:
                pass
        count += 1
    assert count >= 480


def test_same_state_same_bytes(tmp_path):
    save(_state(), tmp_path / "a.safetensors", metadata={"note": "x", "seed": 1})
    save(_state(), tmp_path / "b.safetensors", metadata={"note": "x", "seed": 1})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    save({**_state(), "epoch": 4}, tmp_path / "c.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() != (tmp_path / "c.safetensors").read_bytes()


def test_training_checkpoint_same_bytes_across_processes(tmp_path):
    """A compiled model's full checkpoint, written by two interpreters with different hash
    seeds (the old nondeterminism came from hash-ordered metadata), is the same bytes."""
    script = textwrap.dedent("""
        import sys, numpy as np, pydl
        pydl.manual_seed(0)
        model = pydl.Sequential([pydl.nn.Linear(4, 8), pydl.nn.ReLU(), pydl.nn.Linear(8, 3)])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
        y = np.arange(32) % 3
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)
        model.save_checkpoint(sys.argv[1])
    """)
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"ckpt{seed}.safetensors"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        for umask in (0o022, 0o077, 0o002):
            os.umask(umask)
            save({"w": pydl.ones(2)}, tmp_path / f"c{umask:o}.safetensors")
            atomic_write_bytes(tmp_path / f"r{umask:o}.json", b"{}")
            for name in (f"c{umask:o}.safetensors", f"r{umask:o}.json"):
                assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    finally:
        os.umask(old)


def _temps(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".pydl-"))


@pytest.mark.skipif(sys.platform == "win32", reason="stale temporaries are found by flock")
def test_stale_temporaries_removed_in_flight_ones_kept(tmp_path):
    import fcntl

    old = time.time() - 60
    dead = tmp_path / ".pydl-0123456789abcdef.tmp"  # a killed save's: old, nobody holds it
    live = tmp_path / ".pydl-fedcba9876543210.tmp"  # a running save's: old, but locked
    newer = tmp_path / ".pydl-00000000000000ff.tmp"  # started after ours
    legacy_old = tmp_path / ".pydl-abc_1234.tmp"  # mkstemp name of an older pydl, 2 h old
    legacy_new = tmp_path / ".pydl-xyz_5678.tmp"  # the same, a minute old: may be in flight
    others = [tmp_path / ".pydl-notes.txt", tmp_path / "x.pydl-0123456789abcdef.tmp"]
    for p in [dead, live, newer, legacy_old, legacy_new, *others]:
        p.write_bytes(b"debris")
    for p in [dead, live, legacy_new]:
        os.utime(p, (old, old))
    os.utime(legacy_old, (old - 7200, old - 7200))
    os.utime(newer, (time.time() + 3600, time.time() + 3600))
    holder = os.open(live, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        save({"w": pydl.ones(2)}, tmp_path / "c.safetensors")
        assert _temps(tmp_path) == sorted([live.name, newer.name, legacy_new.name, others[0].name])
    finally:
        os.close(holder)  # the running save ended without cleaning up (killed)
    save({"w": pydl.ones(2)}, tmp_path / "c.safetensors")
    assert live.name not in _temps(tmp_path)
    assert all(p.exists() for p in others)


def _size(path):
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return 0


_KILLED_SAVER = textwrap.dedent("""
    import sys, numpy as np, pydl
    big = {f"layer{i}": np.full((1 << 20,), i, dtype=np.float32) for i in range(48)}
    print("ready", flush=True)
    pydl.save(big, sys.argv[1])
""")


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 and flock are POSIX")
def test_kill_9_mid_save_keeps_previous_and_next_save_leaves_no_debris(tmp_path):
    path = tmp_path / "c.safetensors"
    save({"w": pydl.ones(3)}, path)
    for _attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _KILLED_SAVER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if any(_size(p) > 0 for p in tmp_path.iterdir() if p.name.startswith(".pydl-")):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.wait()
        proc.stdout.close()
        if proc.returncode == -signal.SIGKILL and _temps(tmp_path):
            break  # killed mid-save, debris left behind
        save({"w": pydl.ones(3)}, path)  # it finished first: put the small one back, try again
    else:
        pytest.fail("could not kill the saver mid-save in 5 tries")
    assert np.array_equal(load(path)["w"].numpy(), np.ones(3))  # the previous checkpoint
    save({"w": pydl.zeros(3)}, path)
    assert _temps(tmp_path) == []
    assert np.array_equal(load(path)["w"].numpy(), np.zeros(3))


def test_other_tools_safetensors_files_load():
    st = pytest.importorskip("safetensors.numpy")
    arrays = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3),
              "f64": np.linspace(0, 1, 5), "f16": np.ones(3, dtype=np.float16),
              "i64": np.arange(3, dtype=np.int64), "u8": np.arange(7, dtype=np.uint8),
              "i8": -np.arange(3, dtype=np.int8), "flag": np.array([True, False]),
              "scalar": np.array(2.5, dtype=np.float32), "empty": np.zeros((0, 4), np.float32)}
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "other.safetensors")
        st.save_file(arrays, path, metadata={"producer": "someone else"})
        got = load_safetensors(path)
        assert set(got) == set(arrays)
        widened = {"u8": np.int32, "i8": np.int32}
        for k, v in arrays.items():
            assert got[k].numpy().dtype == widened.get(k, v.dtype), k
            assert np.array_equal(got[k].numpy(), v), k
        with pytest.raises(CheckpointError, match="not a pydl checkpoint"):
            load(path)
        # and pydl's own files are plain safetensors to the safetensors package
        mine = os.path.join(d, "mine.safetensors")
        save(arrays, mine)
        back = st.load_file(mine)
        assert all(np.array_equal(back[k], v) for k, v in arrays.items())


def test_torch_safetensors_files_load(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    weights = {"layer.weight": torch.randn(4, 3), "layer.bias": torch.randn(3, dtype=torch.float64),
               "count": torch.tensor(7)}
    st_torch.save_file(weights, tmp_path / "t.safetensors")
    got = load_safetensors(tmp_path / "t.safetensors")
    for k, v in weights.items():
        assert np.array_equal(got[k].numpy(), v.numpy()), k
    st_torch.save_file({"h": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "bf.safetensors")
    h = load_safetensors(tmp_path / "bf.safetensors")["h"]  # BF16 is pydl.bfloat16
    assert h.dtype == pydl.bfloat16 and h.float().tolist() == [1.0, 1.0]
    st_torch.save_file({"q": torch.ones(2, dtype=torch.float8_e4m3fn)}, tmp_path / "f8.safetensors")
    with pytest.raises(CheckpointError, match="dtype F8_E4M3"):
        load_safetensors(tmp_path / "f8.safetensors")


def test_format_1_files_still_load(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    tree = {"__dict__": {"w": {"__tensor__": "w"}, "epoch": 5}}
    meta = {"format": "pydl", "format_version": "1", "pydl_version": "0", "tree": json.dumps(tree)}
    st.save_file({"w": np.arange(3.0, dtype=np.float32)}, tmp_path / "v1.safetensors",
                 metadata=meta)
    got = load(tmp_path / "v1.safetensors")
    assert got["epoch"] == 5 and np.array_equal(got["w"].numpy(), np.arange(3.0))


def test_odd_but_valid_names_and_absurd_shapes(tmp_path):
    path = tmp_path / "c.safetensors"
    state = {"header_checksum": pydl.ones(2), "checksums": {"x": pydl.zeros(1)}}
    save(state, path)
    assert np.array_equal(load(path)["header_checksum"].numpy(), np.ones(2))
    st = pytest.importorskip("safetensors.numpy")
    st.save_file({"e": np.zeros((0, 3), np.float32)}, path)
    data = path.read_bytes()
    n, header = _parts(data)
    header["e"]["shape"] = [0, 2**62]  # zero bytes, but no array can have that shape
    path.write_bytes(_rebuild(header, data[8 + n:]))
    with pytest.raises(CheckpointError, match="malformed header entry"):
        load_safetensors(path)


def test_read_metadata_and_refused_names(tmp_path):
    save({"w": pydl.ones(2)}, tmp_path / "c.safetensors", metadata={"acc": 0.5})
    assert read_metadata(tmp_path / "c.safetensors") == {"acc": 0.5}
    with pytest.raises(ValueError, match="both be stored as '1'"):
        save({1: pydl.ones(2), "1": pydl.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="complex"):
        save({"z": np.ones(2, dtype=np.complex64)}, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


_CONCURRENT_SAVER = textwrap.dedent("""
    import sys, numpy as np, pydl
    for i in range(4):
        state = {f"t{j}": np.full((1 << 19,), i, dtype=np.float32) for j in range(16)}
        pydl.save(state, sys.argv[1])
        assert pydl.load(sys.argv[1])["t0"][0] == i
""")


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_concurrent_saves_in_one_directory_leave_each_other_alone(tmp_path):
    # each save cleans the directory while the other process has a temporary file in flight
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_SAVER,
                               str(tmp_path / f"c{k}.safetensors")]) for k in range(3)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    for k in range(3):
        assert np.all(load(tmp_path / f"c{k}.safetensors")["t5"] == 3)
    assert _temps(tmp_path) == []
