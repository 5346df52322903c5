"""Data-parallel scaling: the same training step on 1 and on 2 processes (``mpiexec -n``).

Each process trains a LeNet-style CNN on synthetic 1x28x28 images with a fixed batch per
rank (weak scaling: 2 processes do twice the work per step). Reported per world size:
images/s over all ranks, scaling efficiency (images/s on N / (N x images/s on 1)), and the
time of the gradient synchronisation (packing, the bucketed all-reduces, unpacking, and
waiting for the slower rank; with ``--split-wait`` a barrier before it measures that wait
separately, so the sync column is then the all-reduce alone). The synchronisation runs
after backward, so none of it overlaps backward yet (docs/distributed.md); the "overlap"
column says so.

Before timing, each multi-process run checks that the parameters are bitwise identical on
every rank (all-gathered), so a broken sync shows up as INVALID instead of a time.

    python benchmarks/bench_dist.py                   # 1 vs 2 processes, CPU
    python benchmarks/bench_dist.py --device cuda --procs 1 2 4   # one GPU per process

The 1- and 2-process runs take turns (``--rounds``, default 3) and the median is kept,
because the machine is shared. Each process uses one thread (BLAS and pydl's C++).
Results: ``results_dir()/dist_scaling.json`` and ``.md``.
"""

from __future__ import annotations

import os
import sys

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import load_note, machine_info, print_table, write_results  # noqa: E402


def worker(args):
    """One rank: train ``--steps`` timed steps after ``--warmup``; rank 0 prints JSON."""
    import pydl
    import pydl.distributed as dist
    from pydl import nn, optim

    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    device = f"cuda:{dist.get_local_rank()}" if args.device == "cuda" else "cpu"
    pydl.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(256, 120),
                        nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)).to(device)
    ddp = dist.DistributedDataParallel(net)
    opt = optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = pydl.tensor(rng.standard_normal((args.batch, 1, 28, 28)).astype(np.float32),
                    device=device)
    y = pydl.tensor(rng.integers(0, 10, args.batch), device=device)
    wait_times, sync_times = [], []

    def step(timed):
        loss = nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        start = time.perf_counter()
        if size > 1 and args.split_wait:
            dist.barrier()  # the time the faster rank waits for the slower one
        middle = time.perf_counter()
        ddp.sync_gradients()
        if timed:
            wait_times.append(middle - start)
            sync_times.append(time.perf_counter() - middle)
        opt.step()

    for _ in range(args.warmup):
        step(False)
    flat = np.concatenate([p.detach().cpu().numpy().ravel() for p in net.parameters()])
    same = all(np.array_equal(g.numpy(), flat) for g in dist.all_gather(pydl.tensor(flat)))
    dist.barrier()
    start = time.perf_counter()
    for _ in range(args.steps):
        step(True)
    dist.barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        print("RESULT " + json.dumps({
            "procs": size, "valid": bool(same), "seconds": seconds,
            "images_per_s": size * args.batch * args.steps / seconds,
            "sync_ms_per_step": 1e3 * float(np.median(sync_times)) if size > 1 else 0.0,
            "wait_ms_per_step": 1e3 * float(np.median(wait_times)) if size > 1 else 0.0,
            "step_ms": 1e3 * seconds / args.steps, "buckets": len(ddp.buckets)}), flush=True)


def launch(procs, args):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    cmd = [mpiexec, "-n", str(procs), sys.executable, os.path.abspath(__file__), "--worker",
           "--device", args.device, "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup)] + (["--split-wait"] if args.split_wait else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64, help="images per rank per step")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--split-wait", action="store_true",
                        help="a barrier before each sync, to time the wait for the slower rank "
                             "apart from the all-reduce (adds one barrier per step)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    start_load = os.getloadavg()[0]
    runs = {p: [] for p in args.procs}
    for _ in range(args.rounds):  # the world sizes take turns
        for p in args.procs:
            runs[p].append(launch(p, args))
    rows, summary = [], {}
    base = float(np.median([r["images_per_s"] for r in runs[args.procs[0]]]))
    for p in args.procs:
        ips = float(np.median([r["images_per_s"] for r in runs[p]]))
        sync = float(np.median([r["sync_ms_per_step"] for r in runs[p]]))
        wait = float(np.median([r["wait_ms_per_step"] for r in runs[p]]))
        step = float(np.median([r["step_ms"] for r in runs[p]]))
        valid = all(r["valid"] for r in runs[p])
        eff = ips / (p / args.procs[0] * base)
        summary[p] = {"images_per_s": ips, "scaling_efficiency": eff, "step_ms": step,
                      "sync_ms_per_step": sync, "sync_share": sync / step,
                      "wait_ms_per_step": wait, "valid": valid,
                      "runs": runs[p]}
        rows.append([p, "ok" if valid else "INVALID", f"{ips:.0f}", f"{eff:.2f}", f"{step:.1f}",
                     f"{sync:.2f} ({100 * sync / step:.0f}%)",
                     f"{wait:.2f}" if args.split_wait else "not split", "0% (after backward)"])
    load = load_note(start_load)
    title = (f"LeNet, batch {args.batch} per rank, {args.device}, median of {args.rounds} "
             f"interleaved rounds; machine: {load}")
    table = print_table(["procs", "check", "images/s", "efficiency", "step ms",
                         "sync ms/step (share)", "wait for slower rank ms",
                         "overlap with backward"], rows, title)
    payload = {"machine": machine_info(), "args": vars(args), "results": summary}
    paths = write_results("dist_scaling", payload, f"# Data-parallel scaling\n\n{title}\n\n"
                          f"{table}\n")
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
