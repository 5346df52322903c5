"""pydl.set_num_threads / get_num_threads: pydl's C++ kernels and NumPy's BLAS together."""

import numpy as np
import pytest

import pydl
from pydl.backend import cpu


def test_set_num_threads_sets_kernels_and_blas():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = pydl.get_num_threads()
    try:
        pydl.set_num_threads(1)
        if cpu.extension is not None:
            assert pydl.get_num_threads() == 1
        blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
        assert blas and all(p["num_threads"] == 1 for p in blas)
        a = np.ones((64, 64), dtype=np.float32)
        assert np.allclose(a @ a, 64.0)  # still computes
    finally:
        pydl.set_num_threads(before)


def test_set_num_threads_rejects_nonpositive():
    with pytest.raises(ValueError, match="at least 1 thread"):
        pydl.set_num_threads(0)


@pytest.mark.parametrize("env, expected", [
    ({}, lambda n: 1),  # BLAS has every core: pydl's kernels run on the calling thread
    ({"OPENBLAS_NUM_THREADS": "1"}, lambda n: n),
    ({"OPENBLAS_NUM_THREADS": "2"}, lambda n: max(1, n - 1)),
    ({"GOTO_NUM_THREADS": "1"}, lambda n: n),
    ({"OPENBLAS_NUM_THREADS": "x"}, lambda n: 1),  # not a number: OpenBLAS's default
    ({"OPENBLAS_NUM_THREADS": "1000"}, lambda n: 1),
    ({"OMP_NUM_THREADS": "3"}, lambda n: None),  # chosen: the C++ pool follows it
])
def test_default_threads_leave_the_cores_blas_spins_on(env, expected):
    from pydl.threads import cores, default_num_threads

    n = cores()
    got = default_num_threads(env)
    assert got == expected(n)
    if got is not None:  # busy at once: the caller, BLAS's other workers, pydl's workers
        blas = min(n, int(next((v for v in env.values() if v.isdigit()), n)))
        assert 1 + (blas - 1) + (got - 1) <= n


BUSY_PROBE = r"""
import os, sys, threading, time
import numpy as np
import pydl
from pydl import nn, optim
import threadpoolctl

me, samples, stop = None, [], False

def monitor():  # count this process's threads in state R (running or runnable)
    global me
    me = threading.get_native_id()
    while not stop:
        busy = 0
        for tid in os.listdir("/proc/self/task"):
            if int(tid) == me:
                continue
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    busy += f.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:
                pass
        samples.append(busy)
        time.sleep(0.0005)

rng = np.random.default_rng(0)
# conv (pydl's im2col and pooling kernels) and linear layers (BLAS), Adam (pydl's kernel)
net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(16 * 13 * 13, 256), nn.ReLU(), nn.Linear(256, 10))
opt = optim.Adam(net.parameters())
x = pydl.tensor(rng.standard_normal((128, 1, 28, 28)).astype(np.float32))
y = pydl.tensor(rng.integers(0, 10, 128))
watcher = threading.Thread(target=monitor, daemon=True)
watcher.start()
steps, start = 0, time.monotonic()
while time.monotonic() - start < float(sys.argv[1]) or steps < 5:
    loss = nn.functional.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    steps += 1
stop = True
watcher.join()
blas = max(p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas")
print("RESULT", max(samples), len(samples), steps, blas, pydl.get_num_threads())
"""


def test_default_threads_never_run_more_busy_threads_than_cores():
    """Not timed: a training loop (BLAS and pydl's C++ kernels) under pydl's default thread
    setting, its threads' states sampled; at no sample are more of them running or
    runnable than the process has cores. (The previous default, every core for both pools,
    showed 3 busy threads on 2 cores in ~15% of the samples.)"""
    import os
    import subprocess
    import sys

    pytest.importorskip("threadpoolctl")
    if not os.path.exists("/proc/self/task"):
        pytest.skip("needs Linux's /proc to read thread states")
    from pydl.threads import cores

    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS",
                        "MKL_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", BUSY_PROBE, "2"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    most, n_samples, steps, blas, ours = map(int, line.split()[1:])
    assert n_samples > 100 and steps >= 5
    assert blas <= cores()  # the default left BLAS alone (a wheel may cap it: 64)
    assert most <= cores(), (f"{most} threads busy at once on {cores()} cores (BLAS "
                             f"{blas} threads, pydl {ours})")
