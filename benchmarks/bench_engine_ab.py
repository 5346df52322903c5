"""A/B of a training step between two pydl source trees, in alternating processes.

For a change to the engine (pydl/autograd) or anything else on the step's hot path: the
same three small training steps (an MLP, a deep narrow MLP where per-op Python overhead
dominates, a small CNN; float32, SGD, one thread) run in a fresh process per tree, the
trees taking turns (``--rounds``), and each step's median time is compared: the ratio
this tree / baseline, per round (paired, so load changes between rounds cancel) and of
the medians.

Before timing, each process trains a few float64 steps and prints the loss; the two trees
must agree bitwise (a change that alters the numbers is INVALID, not faster).

    git archive main pydl | tar -x -C /tmp/base && cp pydl/_C*.so /tmp/base/pydl/
    python benchmarks/bench_engine_ab.py --baseline /tmp/base

Results: ``results_dir()/engine_ab.json`` and ``.md``.
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
from common import ROOT, load_note, machine_info, print_table, write_results  # noqa: E402

MODELS = ("mlp", "deep_narrow_mlp", "cnn")


def _make(name, nn):
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10)), (64, 784)
    if name == "deep_narrow_mlp":
        layers = [m for _ in range(8) for m in (nn.Linear(32, 32), nn.Tanh())]
        return nn.Sequential(*layers, nn.Linear(32, 10)), (16, 32)
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(6 * 12 * 12, 10)), (32, 1, 28, 28)


def worker(tree, repeats):
    """In a process whose pydl comes from ``tree``: validation losses, then step times."""
    import pydl
    from pydl import nn, optim

    got = os.path.dirname(os.path.dirname(os.path.abspath(pydl.__file__)))
    if got != os.path.abspath(tree):
        raise RuntimeError(f"imported pydl from {got}, expected {tree}")
    result = {"loss": {}, "us": {}}
    for name in MODELS:
        for dtype, timed in ((np.float64, False), (np.float32, True)):
            rng = np.random.default_rng(0)
            pydl.manual_seed(0)
            net, shape = _make(name, nn)
            if dtype == np.float64:
                net = net.double()
            opt = optim.SGD(net.parameters(), lr=0.01)
            x = pydl.tensor(rng.standard_normal(shape), dtype=pydl.float64 if dtype ==
                            np.float64 else pydl.float32)
            y = pydl.tensor(rng.integers(0, 10, shape[0]))

            def step(net=net, opt=opt, x=x, y=y):
                loss = nn.functional.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                return loss

            if not timed:
                result["loss"][name] = [float(step().item()) for _ in range(3)]
                continue
            for _ in range(10):
                step()
            times = []
            for _ in range(repeats if name != "cnn" else repeats // 3):
                start = time.perf_counter()
                step()
                times.append(time.perf_counter() - start)
            result["us"][name] = 1e6 * float(np.median(times))
    print("RESULT " + json.dumps(result), flush=True)


def run_tree(tree, repeats):
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", tree,
                          "--repeats", str(repeats)], capture_output=True, text=True,
                         env=env, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"the run on {tree} failed:\n{out.stdout}\n{out.stderr}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=False, help="a folder holding a pydl package")
    parser.add_argument("--tree", default=ROOT, help="the tree under test (this checkout)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.repeats)
    if not args.baseline:
        parser.error("--baseline is required")
    start_load = os.getloadavg()[0]
    runs = {"baseline": [], "tree": []}
    for _ in range(args.rounds):
        runs["baseline"].append(run_tree(os.path.abspath(args.baseline), args.repeats))
        runs["tree"].append(run_tree(os.path.abspath(args.tree), args.repeats))
    rows, summary = [], {}
    for name in MODELS:
        base = [r["us"][name] for r in runs["baseline"]]
        mine = [r["us"][name] for r in runs["tree"]]
        valid = all(r["loss"][name] == runs["baseline"][0]["loss"][name]
                    for side in runs.values() for r in side)
        paired = float(np.median([m / b for m, b in zip(mine, base)]))
        summary[name] = {"baseline_us": float(np.median(base)), "tree_us": float(np.median(mine)),
                         "paired_ratio": paired, "valid": valid}
        rows.append([name, "ok" if valid else "INVALID", f"{np.median(base):.0f}",
                     f"{np.median(mine):.0f}", f"{np.median(mine) / np.median(base):.3f}",
                     f"{paired:.3f}"])
    title = (f"training step, one thread, float32, {args.rounds} alternating rounds; "
             f"machine: {load_note(start_load)}")
    table = print_table(["model", "check", "baseline us", "this tree us", "ratio of medians",
                         "median paired ratio"], rows, title)
    payload = {"machine": machine_info(), "args": vars(args), "results": summary,
               "runs": runs}
    paths = write_results("engine_ab", payload, f"# Training step A/B\n\n{title}\n\n{table}\n")
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    main()
