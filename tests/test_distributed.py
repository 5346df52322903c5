"""pydl.distributed: the single-process parts directly, the multi-process parts by launching
``mpiexec -n 2 python tests/_dist_worker.py SCENARIO OUT`` (skipped, with the reason, when
mpiexec or mpi4py is missing: ``pip install 'pydl[dist]'``)."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pydl
import pydl.distributed as dist
from pydl import nn, optim
from pydl.data import DataLoader, TensorDataset
from pydl.distributed.parallel import _make_buckets

WORKER = os.path.join(os.path.dirname(__file__), "_dist_worker.py")
LAUNCH_VARS = ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_RANK",
               "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "RANK", "WORLD_SIZE",
               "LOCAL_RANK")


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def _skip_reason():
    if _mpiexec() is None:
        return "mpiexec not found: pip install 'pydl[dist]' (the mpich wheel brings it)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py not installed: pip install 'pydl[dist]'"
    return None


needs_mpi = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def launch(scenario, tmp_path, timeout=240, env=None):
    """Run a worker scenario on 2 ranks; return (returncode, seconds, output, per-rank npz)."""
    clean = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    clean.update(env or {})
    start = time.monotonic()
    proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, WORKER, scenario,
                           str(tmp_path)], capture_output=True, text=True, timeout=timeout,
                          env=clean)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    results = []
    for rank in range(2):
        path = tmp_path / f"{scenario}-{rank}.npz"
        results.append(dict(np.load(path)) if path.exists() else None)
    return proc.returncode, seconds, out, results


# -- one process -------------------------------------------------------------------------
@pytest.fixture
def no_launcher(monkeypatch):
    for var in LAUNCH_VARS:
        monkeypatch.delenv(var, raising=False)
    dist.destroy_process_group()
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"PMI_RANK": "1", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1"}, ("mpich", 1, 4, 1)),
    ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8",
      "OMPI_COMM_WORLD_LOCAL_RANK": "1"}, ("openmpi", 3, 8, 1)),
    ({"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}, ("env", 2, 3, 0)),
    ({"RANK": "2", "WORLD_SIZE": "3"}, ("env", 2, 3, 2)),
])
def test_launcher_env_reads_each_launcher(env, expected):
    assert dist.launcher_env(env) == expected


def test_local_gpu_is_the_local_rank_under_a_launcher(no_launcher):
    assert dist.group.local_gpu(4, {}) == 0
    assert dist.group.local_gpu(4, {"PMI_RANK": "5", "PMI_SIZE": "8",
                                    "MPI_LOCALRANKID": "1"}) == 1
    assert dist.group.local_gpu(2, {"RANK": "3", "WORLD_SIZE": "4"}) == 1  # 3 % 2
    assert dist.group.local_gpu(0, {"RANK": "3", "WORLD_SIZE": "4"}) == 0


@pytest.mark.parametrize("env, match", [
    ({"PMI_RANK": "x", "PMI_SIZE": "2"}, "PMI_RANK='x' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 and WORLD_SIZE=2"),
])
def test_launcher_env_rejects_bad_values(env, match):
    with pytest.raises(ValueError, match=match):
        dist.launcher_env(env)


def test_single_process_group_and_collectives_are_identity(no_launcher):
    dist.init_process_group()
    assert (dist.get_rank(), dist.get_world_size(), dist.is_main_process()) == (0, 1, True)
    t = pydl.tensor(np.arange(3.0))
    dist.all_reduce(t, op="mean")
    dist.broadcast(t, src=0)
    dist.barrier()
    np.testing.assert_array_equal(t.numpy(), np.arange(3.0))
    (only,) = dist.all_gather(t)
    np.testing.assert_array_equal(only.numpy(), np.arange(3.0))


def test_collectives_reject_bad_input(no_launcher):
    dist.init_process_group()
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(pydl.tensor([1.0]), op="prod")
    with pytest.raises(TypeError, match="takes a pydl Tensor"):
        dist.all_reduce(np.ones(2))
    with pytest.raises(ValueError, match="src must be a rank"):
        dist.broadcast(pydl.tensor([1.0]), src=1)
    with pytest.raises(ValueError, match="timeout must be positive"):
        dist.destroy_process_group()
        dist.init_process_group(timeout=0)


@needs_mpi
def test_torchrun_variables_without_an_mpi_launcher_are_refused(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    code = "import pydl.distributed as d; d.init_process_group()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    assert "MPI started this process alone" in proc.stderr


def test_bad_timeout_variable_is_named(no_launcher, monkeypatch):
    monkeypatch.setenv("PYDL_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="PYDL_DIST_TIMEOUT='soon'"):
        dist.init_process_group()


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (12, 4, False),
                                                    (1, 2, False), (7, 1, False)])
def test_sampler_shards_partition_the_epoch(n, replicas, drop_last):
    shards = [dist.DistributedSampler(range(n), replicas, r, seed=4, drop_last=drop_last)
              for r in range(replicas)]
    for s in shards:
        s.set_epoch(2)
    got = [s.indices() for s in shards]
    per = n // replicas if drop_last else -(-n // replicas)
    assert all(len(g) == per == len(s) for g, s in zip(got, shards))
    order = np.random.default_rng(4 + 2).permutation(n)
    interleaved = np.stack(got, axis=1).ravel()  # position i*R + r holds rank r's i-th
    np.testing.assert_array_equal(interleaved, np.resize(order, per * replicas))
    if not drop_last:
        assert set(interleaved) == set(range(n))


def test_sampler_reshuffles_per_epoch_and_agrees_across_processes():
    a, b = dist.DistributedSampler(range(50), 2, 0, seed=1), dist.DistributedSampler(
        range(50), 2, 0, seed=1)
    first = a.indices()
    a.set_epoch(1)
    assert not np.array_equal(first, a.indices())
    b.set_epoch(1)
    np.testing.assert_array_equal(a.indices(), b.indices())
    np.testing.assert_array_equal(list(dist.DistributedSampler(range(5), 2, 1, shuffle=False)),
                                  [1, 3, 0])


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="rank must be in"):
        dist.DistributedSampler(range(4), 2, 2)
    with pytest.raises(ValueError, match="num_replicas must be at least 1"):
        dist.DistributedSampler(range(4), 0, 0)
    with pytest.raises(ValueError, match="cannot give each of 4"):
        dist.DistributedSampler(range(3), 4, 0, drop_last=True)


def test_dataloader_follows_the_sampler():
    x = np.arange(20.0).reshape(10, 2)
    sampler = dist.DistributedSampler(range(10), 2, 1, seed=0)
    loader = DataLoader(TensorDataset(x), batch_size=2, sampler=sampler)
    assert len(loader) == 3
    got = np.concatenate([b[0].numpy() for b in loader])
    np.testing.assert_array_equal(got, x[sampler.indices()])
    with pytest.raises(ValueError, match="shuffle or a sampler"):
        DataLoader(TensorDataset(x), sampler=sampler, shuffle=True)


def test_buckets_reverse_order_cap_and_dtype():
    ps = [nn.Parameter(pydl.zeros(n)) for n in (4, 4, 4, 2)]
    ps.insert(2, nn.Parameter(pydl.zeros(3).double()))
    rev = ps[::-1]
    # sizes in reverse: 2 f32, 4 f32, 3 f64, 4 f32, 4 f32; a cap of 8 float32 values
    by_cap = [b.params for b in _make_buckets(rev, 8 * 4)]
    assert by_cap == [[rev[0], rev[1]], [rev[2]], [rev[3], rev[4]]]
    by_small_cap = [b.params for b in _make_buckets(rev, 5 * 4)]  # bigger than a cap: alone
    assert by_small_cap == [[p] for p in rev]
    assert [b.params for b in _make_buckets(rev, 0)] == [[p] for p in rev]
    assert [b.params for b in _make_buckets(rev, 2**20)] == [rev[:2], [rev[2]], rev[3:]]


def test_ddp_in_one_process_trains_like_the_plain_module(no_launcher):
    x = np.random.default_rng(0).standard_normal((8, 3))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    finals = []
    for wrap in (False, True):
        pydl.manual_seed(0)
        module = nn.Linear(3, 3).double()
        model = dist.DistributedDataParallel(module) if wrap else module
        opt = optim.SGD(model.parameters(), lr=0.5)
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(pydl.tensor(x, dtype=pydl.float64)),
                                        pydl.tensor(y)).backward()
            opt.step()
        finals.append([p.data.copy() for p in module.parameters()])
    for a, b in zip(*finals):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="wraps an nn.Module"):
        dist.DistributedDataParallel(lambda v: v)
    with pytest.raises(ValueError, match="bucket_cap_mb"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=-1)


def test_available_backends_name_mpi_and_nccl():
    backends = dist.available_backends()
    assert set(backends) == {"mpi", "nccl"}
    if _skip_reason() is None:
        assert backends["mpi"].startswith("mpi4py")


def test_pydl_info_lists_distributed_backends():
    from pydl.__main__ import info

    text = info()
    assert "distributed: MPI: " in text and "; NCCL: " in text


# -- two processes -----------------------------------------------------------------------
@needs_mpi
def test_collectives_on_two_ranks(tmp_path):
    code, _, out, (r0, r1) = launch("collectives", tmp_path)
    assert code == 0, out
    for r in (r0, r1):
        np.testing.assert_array_equal(r["sum"], 2 * np.arange(4.0) + 10)
        np.testing.assert_array_equal(r["mean"], np.arange(4.0) + 5)
        np.testing.assert_array_equal(r["max"], np.array([1, 0], np.float32))
        np.testing.assert_array_equal(r["bcast"], np.ones((2, 3)))
        np.testing.assert_array_equal(r["col"], 3 * np.arange(12.0).reshape(3, 4)[:, 1])
        np.testing.assert_array_equal(r["gather"], [[0, 0], [1, 2]])


@needs_mpi
def test_ddp_ranks_identical_and_equal_to_one_process_on_the_combined_batch(tmp_path):
    code, _, out, (r0, r1) = launch("ddp", tmp_path)
    assert code == 0, out
    names = [k[len("single_"):] for k in r0 if k.startswith("single_")]
    assert len(names) == 4
    assert r0["one_bucket_buckets"][0] == 1 and r0["per_param_buckets"][0] == 4
    assert 1 < r0["small_buckets"][0] < 4
    for variant in ("one_bucket", "per_param", "small"):
        for name in names:
            a, b = r0[f"{variant}_{name}"], r1[f"{variant}_{name}"]
            assert a.tobytes() == b.tobytes(), f"{variant} {name} differs between ranks"
            # bucketed and per-parameter all-reduces sum the same numbers: bitwise equal
            assert a.tobytes() == r0[f"per_param_{name}"].tobytes()
            np.testing.assert_allclose(a, r0[f"single_{name}"], rtol=0, atol=1e-10)
            # and training moved the weights (the comparison is not of untouched values)
            assert np.abs(a - r0[f"single_{name}"]).max() < 1e-10 < np.abs(a).max()


@needs_mpi
def test_no_sync_accumulates_locally_then_averages(tmp_path):
    code, _, out, (r0, r1) = launch("accumulate", tmp_path)
    assert code == 0, out
    assert not np.array_equal(r0["local_0"], r1["local_0"])  # no_sync did not communicate
    for i in range(4):
        assert r0[f"p{i}"].tobytes() == r1[f"p{i}"].tobytes()
        np.testing.assert_allclose(r0[f"p{i}"], r0[f"single_p{i}"], rtol=0, atol=1e-10)


@needs_mpi
def test_fit_under_mpiexec_matches_one_process_on_the_combined_batch(tmp_path):
    code, _, out, (r0, r1) = launch("fit", tmp_path)
    assert code == 0, out
    rng = np.random.default_rng(1)  # the worker's data and net, in this one process
    x, y = rng.standard_normal((48, 5)), rng.integers(0, 3, 48)
    pydl.manual_seed(3)
    module = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    model = pydl.Model(module).compile(optimizer="sgd", lr=0.1, metrics=["accuracy"])
    hist = model.fit(x, y, epochs=2, batch_size=12, shuffle=False, verbose=0)
    for r in (r0, r1):
        # float32 (what fit feeds): the per-shard then cross-rank mean rounds differently
        np.testing.assert_allclose(r["loss"], hist.history["loss"], rtol=1e-5)
        np.testing.assert_array_equal(r["acc"], hist.history["accuracy"])
        for i, p in enumerate(module.parameters()):
            assert r[f"p{i}"].tobytes() == r0[f"p{i}"].tobytes()
            np.testing.assert_allclose(r[f"p{i}"], p.data, rtol=0, atol=1e-5)
    assert "epoch" not in out  # verbose=0: no progress output from any rank
    # rank 0's training checkpoint resumes in one process: same weights, epoch 2
    pydl.manual_seed(9)
    resumed = pydl.Model(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)))
    resumed.compile(optimizer="sgd", lr=0.1, metrics=["accuracy"])
    assert resumed.load_checkpoint(str(tmp_path / "fit-ckpt.safetensors")) == 2
    for i, p in enumerate(resumed.module.parameters()):
        assert p.data.tobytes() == r0[f"p{i}"].tobytes()


@needs_mpi
def test_pydl_train_under_mpiexec(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    base = [_mpiexec(), "-n", "2", sys.executable, "-m", "pydl", "train", "--device", "cpu",
            "--epochs", "1", "--quiet"]
    proc = subprocess.run(base + ["--model", "mlp", "--out", str(tmp_path / "mlp")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("test accuracy") == 1  # rank 1 trains but does not print
    assert (tmp_path / "mlp" / "result.json").exists()
    proc = subprocess.run(base + ["--model", "gan", "--out", str(tmp_path / "gan")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "--model gan has a training loop of its own" in proc.stderr


@needs_mpi
@pytest.mark.parametrize("scenario", ["fail", "stuck"])
def test_a_failing_or_stuck_rank_ends_the_job_with_an_error(tmp_path, scenario):
    code, seconds, out, _ = launch(scenario, tmp_path, timeout=120,
                                   env={"PYDL_DIST_TIMEOUT": "5"})
    assert code != 0, out
    assert seconds < 60, f"the job took {seconds:.0f} s to end"
    expected = "rank 1 fails on purpose" if scenario == "fail" else "waited 5 s"
    assert expected in out


@needs_mpi
def test_allreduces_start_during_backward_and_grads_are_averaged_when_it_returns(tmp_path):
    code, _, out, (r0, r1) = launch("overlap", tmp_path)
    assert code == 0, out
    for r in (r0, r1):
        events = list(r["events"])
        # buckets in reverse parameter order, one per parameter: the second layer's first
        assert list(r["order"]) == ["p3", "p2", "p1", "p0"]
        assert events.index("start0") < events.index("probe")  # started inside backward,
        assert events.index("start1") < events.index("probe")  # before the first layer's
        assert events.index("probe") < events.index("start2")  # gradients existed
        assert sorted(e for e in events if e.startswith("start")) == [
            "start0", "start1", "start2", "start3"]
        assert events[-1] == "returned"
        for i in range(4):  # .grad is the average of the ranks' gradients when backward returns
            assert r[f"grad_p{i}"].tobytes() == r0[f"grad_p{i}"].tobytes()
            np.testing.assert_allclose(r[f"grad_p{i}"], r[f"mean_p{i}"], rtol=0, atol=1e-15)
    assert not np.allclose(r0["grad_p0"], 0)


@needs_mpi
def test_clipping_and_optimizer_closure_need_no_manual_sync(tmp_path):
    code, _, out, (r0, r1) = launch("clip_closure", tmp_path)
    assert code == 0, out
    for i in range(4):
        assert r0[f"p{i}"].tobytes() == r1[f"p{i}"].tobytes()
        np.testing.assert_allclose(r0[f"p{i}"], r0[f"single_p{i}"], rtol=0, atol=1e-10)


@needs_mpi
def test_parameters_without_a_gradient_do_not_hang_the_job(tmp_path):
    code, seconds, out, (r0, r1) = launch("unused", tmp_path, timeout=120,
                                          env={"PYDL_DIST_TIMEOUT": "20"})
    assert code == 0, out
    assert seconds < 60
    assert r0["buckets"][0] == 6
    # the reference, in this process: each rank's local gradients, averaged
    local = []
    for rank in range(2):
        pydl.manual_seed(3)
        a, b, c = nn.Linear(4, 4).double(), nn.Linear(4, 4).double(), nn.Linear(4, 2).double()
        x = pydl.tensor(np.full((3, 4), rank + 1.0), dtype=pydl.float64)
        steps = []
        for skip_b in (rank == 1, True):
            for p in (*a.parameters(), *b.parameters(), *c.parameters()):
                p.grad = None
            h = a(x).tanh()
            c((h if skip_b else b(h).tanh())).sum().backward()
            steps.append([p.grad.numpy() if p.grad is not None else np.zeros((p.shape))
                          for p in (*a.parameters(), *b.parameters(), *c.parameters())])
        local.append(steps)
    for step in range(2):
        for i in range(6):
            assert r0[f"s{step}_p{i}"].tobytes() == r1[f"s{step}_p{i}"].tobytes()
            if step == 1 and i in (2, 3):  # b, used by no rank: .grad stays None
                assert r0[f"s{step}_p{i}"].size == 0
                continue
            expected = (local[0][step][i] + local[1][step][i]) / 2
            np.testing.assert_allclose(r0[f"s{step}_p{i}"], expected, rtol=0, atol=1e-15)
    assert np.abs(r0["s0_p2"]).max() > 0  # b, used on rank 0 only: rank 0's gradient / 2


@needs_mpi
def test_double_backward_through_ddp_raises_clearly_and_no_sync_or_grad_work(tmp_path):
    code, _, out, (r0, r1) = launch("double_backward", tmp_path)
    assert code == 0, out
    for r in (r0, r1):
        assert "create_graph=True" in str(r["message"]) and "no_sync" in str(r["message"])
    assert r0["p0"].tobytes() == r1["p0"].tobytes()  # the penalty's backward was averaged
    assert np.abs(r0["p0"]).max() > 0
