"""DataLoader workers: the same batches as num_workers=0 whatever the workers, augmentation
in the workers, errors surfacing with the worker's traceback, and clean shutdown."""

import multiprocessing
import os
import pickle
import threading

import numpy as np
import pytest

import pydl
from pydl.data import DataLoader, Dataset, TensorDataset
from pydl.data import transforms as T
from pydl.data.workers import WorkerError


def _data(n=203):
    rng = np.random.default_rng(0)
    return rng.random((n, 1, 12, 12)).astype(np.float32), np.arange(n)


def _augment():
    return T.Compose([T.RandomAffine(10, translate=(0.1, 0.1)), T.GaussianNoise(0.05)])


def _epochs(loader, epochs=2):
    out = [[(xb.numpy(), yb.numpy()) for xb, yb in loader] for _ in range(epochs)]
    loader.close()
    return out


def _same(a, b):
    return len(a) == len(b) and all(
        len(ea) == len(eb) and all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1])
                                   for p, q in zip(ea, eb))
        for ea, eb in zip(a, b))


class Samples(Dataset):
    """A map-style dataset (not a TensorDataset): goes through __getitem__ and collation."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


@pytest.mark.parametrize("workers", [
    {"num_workers": 1},
    {"num_workers": 2},
    {"num_workers": 3, "prefetch_factor": 1},
    {"num_workers": 2, "worker_type": "thread"},
    {"num_workers": 2, "persistent_workers": True},
    {"prefetch": 2},
])
@pytest.mark.parametrize("dataset", [TensorDataset, Samples])
def test_workers_give_the_same_batches_as_no_workers(workers, dataset):
    x, y = _data()

    def loader(**kw):
        return DataLoader(dataset(x, y), batch_size=16, shuffle=True, seed=7,
                          transform=_augment(), **kw)

    reference = _epochs(loader())
    got = _epochs(loader(**workers))
    assert _same(reference, got)
    # the order and the augmentation really are random, and differ between epochs
    first, second = reference
    assert not np.array_equal(np.concatenate([b[1] for b in first]), np.arange(len(y)))
    assert sorted(np.concatenate([b[1] for b in first])) == list(range(len(y)))
    assert not np.array_equal(first[0][0], x[first[0][1]])
    assert not np.array_equal(np.concatenate([b[1] for b in first]),
                              np.concatenate([b[1] for b in second]))
    # and another seed gives other batches
    other = _epochs(DataLoader(dataset(x, y), batch_size=16, shuffle=True, seed=8,
                               transform=_augment(), **workers))
    assert not _same(reference, other)


def test_generator_argument_and_pin_memory_on_the_cpu():
    x, y = _data(40)
    a = _epochs(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True,
                           generator=np.random.default_rng(3), num_workers=2, pin_memory=True))
    b = _epochs(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=3))
    assert _same(a, b)


class Failing(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        if i == 13:
            raise ValueError(f"sample {i} is corrupt")
        return np.zeros(3, dtype=np.float32), i


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_worker_error_surfaces_with_its_traceback(kind):
    loader = DataLoader(Failing(), batch_size=4, num_workers=2, worker_type=kind)
    seen = []
    with pytest.raises(ValueError) as info:
        for _, yb in loader:
            seen.append(yb.numpy())
    text = str(info.value)
    assert "sample 13 is corrupt" in text and "batch 3" in text
    assert "Traceback (most recent call last)" in text and "__getitem__" in text
    assert len(seen) == 3  # the batches before the failing one arrived, in order
    assert loader._pool is None  # the workers were stopped


class Dying(Dataset):
    def __len__(self):
        return 20

    def __getitem__(self, i):
        if i == 9:
            os._exit(3)
        return np.zeros(2, dtype=np.float32), i


def test_a_dead_worker_process_is_reported():
    with pytest.raises(WorkerError, match=r"exited unexpectedly with exit code 3"):
        list(DataLoader(Dying(), batch_size=4, num_workers=1))


def _children():
    return [p for p in multiprocessing.active_children() if p.name.startswith("pydl-loader")]


def test_workers_stop_after_each_epoch_unless_persistent():
    x, y = _data(64)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, num_workers=2)
    list(loader)
    assert _children() == []
    loader = DataLoader(TensorDataset(x, y), batch_size=8, num_workers=2, persistent_workers=True)
    list(loader)
    pids = [p.pid for p in _children()]
    assert len(pids) == 2
    list(loader)
    assert [p.pid for p in _children()] == pids  # the same workers for the second epoch
    loader.close()
    assert _children() == []


def test_breaking_out_early_then_iterating_again():
    x, y = _data(64)
    for persistent in (False, True):
        loader = DataLoader(TensorDataset(x, y), batch_size=8, num_workers=2, shuffle=True,
                            seed=1, persistent_workers=persistent)
        reference = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=1)
        it, ref_it = iter(loader), iter(reference)
        next(it), next(ref_it)
        it.close()  # what a `break` in a for loop does
        if not persistent:
            assert _children() == []
        # the second epoch is whole and matches, with no batch left over from the first
        assert _same([[(a.numpy(), b.numpy()) for a, b in loader]],
                     [[(a.numpy(), b.numpy()) for a, b in reference]])
        loader.close()
    assert _children() == [] and not [t for t in threading.enumerate()
                                      if t.name.startswith("pydl-loader")]


def test_collate_fn_runs_in_the_workers():
    x, y = _data(30)
    batches = list(DataLoader(Samples(x, y), batch_size=4, num_workers=2,
                              collate_fn=lambda s: (os.getpid(), len(s))))
    assert [n for _, n in batches] == [4] * 7 + [2]
    assert os.getpid() not in {pid for pid, _ in batches}


def test_model_fit_takes_a_worker_loader():
    x, y = _data(96)
    pydl.manual_seed(0)
    model = pydl.train.Model(pydl.nn.Sequential(pydl.nn.Flatten(), pydl.nn.Linear(144, 10)))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loader = DataLoader(TensorDataset(x, y % 10), batch_size=16, shuffle=True, seed=0,
                        num_workers=2, transform=_augment())
    history = model.fit(loader, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"num_workers": -1}, "num_workers must be 0 or more"),
    ({"prefetch_factor": 0}, "prefetch_factor must be at least 1"),
    ({"worker_type": "fiber"}, "worker_type must be 'process' or 'thread'"),
    ({"transform": lambda b: b}, "transform must be a pydl.data.transforms transform"),
    ({"seed": 1, "generator": np.random.default_rng(1)}, "seed or generator, not both"),
])
def test_bad_arguments_are_refused(kwargs, match):
    x, y = _data(8)
    with pytest.raises((ValueError, TypeError), match=match):
        DataLoader(TensorDataset(x, y), **kwargs)


@pytest.mark.gpu
def test_pinned_batches_reach_the_gpu_unchanged():
    x, y = _data(40)
    pinned = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=2, num_workers=1,
                        device="cuda", pin_memory=True, transform=_augment())
    plain = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=2,
                       transform=_augment())
    for (xa, ya), (xb, yb) in zip(pinned, plain):
        assert str(xa.device).startswith("cuda")
        assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(ya.numpy(), yb.numpy())


def test_a_worker_process_exits_when_its_main_process_dies():
    import subprocess
    import sys
    import time

    code = (
        "import os, numpy as np\n"
        "from pydl.data import DataLoader, TensorDataset\n"
        "dl = DataLoader(TensorDataset(np.zeros((64, 2)), np.arange(64)), batch_size=8,\n"
        "                num_workers=1, persistent_workers=True)\n"
        "list(dl)\n"
        "print(dl._pool.pids[0], flush=True)\n"
        "os._exit(0)  # no cleanup: the worker is left behind\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, 9)
    raise AssertionError(f"worker {pid} outlived its main process by 15 s")


def test_a_batch_that_cannot_travel_back_is_an_error_not_a_hang():
    x, y = _data(16)

    class Local(Exception):  # defined in a function: can't be pickled by reference
        pass

    def bad_collate(samples):
        if len(samples) == 4:
            raise Local("local failure")
        return lambda: None  # a batch that does not pickle

    with pytest.raises(WorkerError, match="local failure"):
        list(DataLoader(Samples(x, y), batch_size=4, num_workers=1, collate_fn=bad_collate,
                        timeout=20))
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError), match="pickle"):
        list(DataLoader(Samples(x, y), batch_size=5, num_workers=1, collate_fn=bad_collate,
                        timeout=20))


def test_spawned_workers_where_fork_is_missing(monkeypatch):
    """macOS and Windows start workers with spawn: the dataset and transform are pickled."""
    import pydl.data.workers as workers

    monkeypatch.setattr(workers.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    x, y = _data(48)
    reference = _epochs(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=4,
                                   transform=_augment()), epochs=1)
    got = _epochs(DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, seed=4,
                             transform=_augment(), num_workers=2, timeout=60), epochs=1)
    assert _same(reference, got)
