"""Data-parallel scaling: the same training step on 1 and on 2 processes (``mpiexec -n``),
and how much of the gradient all-reduce overlaps backward.

Each process trains a LeNet-style CNN on synthetic 1x28x28 images with a fixed batch per
rank (weak scaling: 2 processes do twice the work per step). Reported per world size and
mode: images/s over all ranks, scaling efficiency (images/s on N / (N x images/s on 1)),
the backward time (it includes the synchronisation: DistributedDataParallel averages the
gradients before ``backward()`` returns), the *exposed* sync, the time from the end of
backward's computation to the averaged gradients being written back (starting the last
buckets, waiting for the all-reduces and for the slower rank, unpacking), and how many
buckets' all-reduces were started, and had completed (mean over steps), by the end of
backward's computation.

Two modes run on N > 1 processes, taking turns: ``overlap`` (the default: each bucket's
all-reduce starts from the gradient hooks as soon as the bucket is full) and ``after``
(every bucket started at the end of backward, what pydl did before). The overlap column is
``1 - exposed(overlap) / exposed(after)``: the share of the after-backward sync time that
starting early hid. The buckets (``--bucket-cap-mb``, default 0.05: LeNet's 178 KB of
float32 gradients make 3 buckets) matter: with the library default of 25 MB LeNet has one
bucket, which is full only when backward is done, so nothing can overlap.

Before timing, each multi-process run checks that the parameters are bitwise identical on
every rank (all-gathered), so a broken sync shows up as INVALID instead of a time.

    python benchmarks/bench_dist.py                   # 1 vs 2 processes, CPU
    python benchmarks/bench_dist.py --device cuda --procs 1 2 4   # one GPU per process

The runs take turns (``--rounds``, default 3) and the median is kept, because the machine
is shared. Each process uses one thread (BLAS and pydl's C++). Results:
``results_dir()/dist_scaling.json`` and ``.md``.
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
    ddp = dist.DistributedDataParallel(net, bucket_cap_mb=args.bucket_cap_mb)
    ddp._overlap = args.mode == "overlap"
    opt = optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(rank)
    x = pydl.tensor(rng.standard_normal((args.batch, 1, 28, 28)).astype(np.float32),
                    device=device)
    y = pydl.tensor(rng.integers(0, 10, args.batch), device=device)
    backward_ms, exposed_ms, early, done = [], [], [], []

    def step(timed):
        loss = nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        if size > 1 and args.split_wait:
            dist.barrier()  # the ranks enter backward together: the forward's skew is not
        start = time.perf_counter()  # counted in the exposed sync
        loss.backward()  # the averaged gradients are in .grad when it returns
        end = time.perf_counter()
        if timed:
            backward_ms.append(1e3 * (end - start))
            if size > 1:
                t = ddp._timings
                exposed_ms.append(1e3 * (t["done"] - t["backward_end"]))
                early.append(t["started_in_backward"])
                done.append(t["done_in_backward"])
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
            "procs": size, "mode": args.mode, "valid": bool(same), "seconds": seconds,
            "images_per_s": size * args.batch * args.steps / seconds,
            "backward_ms": float(np.median(backward_ms)),
            "exposed_sync_ms": float(np.median(exposed_ms)) if size > 1 else 0.0,
            "buckets_started_in_backward": float(np.median(early)) if size > 1 else 0.0,
            "buckets_done_in_backward": float(np.mean(done)) if size > 1 else 0.0,
            "step_ms": 1e3 * seconds / args.steps, "buckets": len(ddp.buckets)}), flush=True)


def launch(procs, mode, args):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        mpiexec = "mpiexec"
    cmd = [mpiexec, "-n", str(procs), sys.executable, os.path.abspath(__file__), "--worker",
           "--device", args.device, "--batch", str(args.batch), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--mode", mode, "--bucket-cap-mb",
           str(args.bucket_cap_mb)] + (["--split-wait"] if args.split_wait else [])
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
    parser.add_argument("--bucket-cap-mb", type=float, default=0.05)
    parser.add_argument("--mode", default="overlap", choices=["overlap", "after"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--split-wait", action="store_true",
                        help="a barrier before each backward, so that the exposed sync does "
                             "not include waiting for a rank whose forward was slower")
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    start_load = os.getloadavg()[0]
    configs = [(p, m) for p in args.procs for m in (["overlap", "after"] if p > 1 else
                                                    ["overlap"])]
    runs = {c: [] for c in configs}
    for _ in range(args.rounds):  # the world sizes and modes take turns
        for c in configs:
            runs[c].append(launch(*c, args))
    rows, summary = [], {}

    def med(c, key):
        return float(np.median([r[key] for r in runs[c]]))

    base = med(configs[0], "images_per_s")
    for p, mode in configs:
        c = (p, mode)
        ips, exposed = med(c, "images_per_s"), med(c, "exposed_sync_ms")
        valid = all(r["valid"] for r in runs[c])
        eff = ips / (p / args.procs[0] * base)
        hidden = None
        if p > 1 and mode == "overlap" and med((p, "after"), "exposed_sync_ms") > 0:
            hidden = 1 - exposed / med((p, "after"), "exposed_sync_ms")
        summary[f"{p}-{mode}"] = {
            "procs": p, "mode": mode, "images_per_s": ips, "scaling_efficiency": eff,
            "step_ms": med(c, "step_ms"), "backward_ms": med(c, "backward_ms"),
            "exposed_sync_ms": exposed, "overlap": hidden, "valid": valid,
            "buckets": runs[c][0]["buckets"],
            "buckets_started_in_backward": med(c, "buckets_started_in_backward"),
            "buckets_done_in_backward": med(c, "buckets_done_in_backward"),
            "runs": runs[c]}
        rows.append([p, mode if p > 1 else "-", "ok" if valid else "INVALID", f"{ips:.0f}",
                     f"{eff:.2f}", f"{med(c, 'step_ms'):.1f}", f"{med(c, 'backward_ms'):.1f}",
                     f"{exposed:.2f}" if p > 1 else "-",
                     f"{med(c, 'buckets_started_in_backward'):.0f} / "
                     f"{med(c, 'buckets_done_in_backward'):.1f} of {runs[c][0]['buckets']}"
                     if p > 1 else "-",
                     f"{100 * hidden:.0f}%" if hidden is not None else "-"])
    load = load_note(start_load)
    title = (f"LeNet, batch {args.batch} per rank, {args.device}, buckets of "
             f"{args.bucket_cap_mb:g} MB, median of {args.rounds} interleaved rounds"
             f"{', barrier before backward' if args.split_wait else ''}; machine: {load}")
    table = print_table(["procs", "sync", "check", "images/s", "efficiency", "step ms",
                         "backward ms (incl. sync)", "exposed sync ms",
                         "buckets started / done in backward", "overlap (sync hidden)"],
                        rows, title)
    payload = {"machine": machine_info(), "args": vars(args), "results": summary}
    paths = write_results("dist_scaling", payload, f"# Data-parallel scaling\n\n{title}\n\n"
                          f"{table}\n")
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
