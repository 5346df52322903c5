"""The profiler's cost, and the numba-written ops against the built-in paths, on the CPU.

1. Profiler overhead per op: ``(a * b).sum().backward()`` on tiny tensors (2 ops forward, 2
   backward), interleaved, with the profiler never used ("before"), after a profile has been
   entered and left ("after, off"), and while profiling ("on").
2. ``pydl.custom.bias_gelu`` against ``F.gelu(x + b)`` and ``pydl.custom.layer_norm`` against
   ``F.layer_norm``, forward + backward, validated first, then timed interleaved.

    python benchmarks/bench_interop.py --before /tmp/pydl-main   # writes <results>/interop.*

The overhead rows run each tree in its own process (pure-Python path, PYDL_DISABLE_EXT=1),
taking turns, nine rounds, in CPU time (process_time: robust to a shared machine); "profiler
on" scales this tree's time by the on/off CPU-time ratio measured interleaved in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    machine_info,
    print_table,
    time_stats_interleaved,
    write_results,
)

import pydl  # noqa: E402
import pydl.nn.functional as F  # noqa: E402
import pydl.profiler  # noqa: E402

STEP_SCRIPT = """
import statistics, sys, time
import pydl
a = pydl.randn(4, requires_grad=True); b = pydl.randn(4, requires_grad=True)
def step():
    a.grad = b.grad = None
    (a * b).sum().backward()
for _ in range(2000):
    step()
means = []
for _ in range(5):
    t0 = time.process_time()  # CPU time: waiting for a busy core does not count
    for _ in range(4000):
        step()
    means.append((time.process_time() - t0) / 4000)
print(1e6 * statistics.median(means), pydl.__file__)
"""


def _step_us(src: str) -> float:
    env = dict(os.environ, PYTHONPATH=src, PYDL_DISABLE_EXT="1")
    out = subprocess.run([sys.executable, "-c", STEP_SCRIPT], env=env, check=True,
                         capture_output=True, text=True, cwd=src).stdout.split()
    assert out[1].startswith(src), f"ran {out[1]}, not the tree in {src}"
    return float(out[0])


def profiler_overhead(before: str | None, rounds: int = 9):
    """CPU us per tiny step: this tree vs ``before`` (a source tree of the baseline),
    alternating processes; and, in this process, with the profiler on."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"after (this tree), profiler off": here}
    if before:
        trees = {"before (baseline tree)": os.path.abspath(before), **trees}
    times = {name: [] for name in trees}
    for _ in range(rounds):
        for name, src in trees.items():
            times[name].append(_step_us(src))
    stats = {name: statistics.median(v) for name, v in times.items()}
    best = {name: min(v) for name, v in times.items()}

    a = pydl.randn(4, requires_grad=True)
    b = pydl.randn(4, requires_grad=True)
    prof = pydl.profiler.profile()

    def off():
        a.grad = b.grad = None
        (a * b).sum().backward()

    def on():
        with prof:
            off()
        prof._records.clear()

    inproc = time_stats_interleaved({"off": off, "on": on}, min_runs=3000, max_runs=3000,
                                    min_time=0)
    stats["profiler on (in-process ratio on/off applied)"] = (
        stats["after (this tree), profiler off"] * inproc["on"]["cpu_time_median_ms"]
        / inproc["off"]["cpu_time_median_ms"])
    base = next(iter(stats.values()))
    base_min = next(iter(best.values()))
    rows = [[name, f"{us:.1f}", f"{us / 4:.2f}", f"{us / base:.3f}",
             f"{best[name]:.1f} ({best[name] / base_min:.3f})" if name in best else ""]
            for name, us in stats.items()]
    return rows, {"us_per_step": stats, "per_round": times, "in_process": inproc}


def _compare(ours, builtin, leaves, g):
    """Validate ``ours`` against ``builtin`` (forward and input gradient), then time both."""

    def step(fn):
        for t in leaves:
            t.grad = None
        (fn(*leaves) * g).sum().backward()
        return leaves[0].grad.numpy().copy()

    np.testing.assert_allclose(ours(*leaves).detach().numpy(),
                               builtin(*leaves).detach().numpy(),
                               rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(step(ours), step(builtin), rtol=2e-4, atol=2e-4)
    return time_stats_interleaved({"numba": lambda: step(ours),
                                   "built-in": lambda: step(builtin)}, min_runs=10)


def numba_ops():
    rng = np.random.default_rng(0)
    rows, stats = [], {}
    for rows_n, cols in [(256, 1024), (4096, 768)]:
        x = pydl.tensor(rng.standard_normal((rows_n, cols)), requires_grad=True)
        w = pydl.tensor(1 + 0.1 * rng.standard_normal(cols), requires_grad=True)
        b = pydl.tensor(rng.standard_normal(cols), requires_grad=True)
        g = pydl.tensor(rng.standard_normal((rows_n, cols)))
        pairs = {
            "bias+GELU": (lambda x, w, b: pydl.custom.bias_gelu(x, b),
                          lambda x, w, b: F.gelu(x + b)),
            "layer norm": (lambda x, w, b: pydl.custom.layer_norm(x, w, b),
                           lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b)),
        }
        for op, (ours, builtin) in pairs.items():
            t = _compare(ours, builtin, (x, w, b), g)
            stats[f"{op} {rows_n}x{cols}"] = t
            ours_t, ref_t = t["numba"], t["built-in"]
            rows.append([op, f"{rows_n}x{cols}",
                         f"{ours_t['median_ms']:.2f} / {ours_t['cpu_time_median_ms']:.2f}",
                         f"{ref_t['median_ms']:.2f} / {ref_t['cpu_time_median_ms']:.2f}",
                         f"{ref_t['median_ms'] / ours_t['median_ms']:.2f}"])
    return rows, stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="source tree of the baseline for the overhead rows "
                        "(e.g. `git archive main | tar -x -C /tmp/pydl-main`)")
    parser.add_argument("--threads", type=int, help="threads for pydl's kernels and numba's "
                        "(both; default: theirs)")
    args = parser.parse_args()
    if args.threads:
        import numba

        pydl.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    pydl.manual_seed(0)
    over_rows, over = profiler_overhead(args.before)
    t1 = print_table(["tiny step (a*b).sum().backward()", "CPU us / step", "us / call", "ratio",
                      "fastest round us (ratio)"],
                     over_rows, "Profiler overhead (4 calls per step: Mul, Sum, 2 backwards)")
    op_rows, ops = numba_ops()
    t2 = print_table(["op (fwd+bwd, float32)", "shape", "numba ms wall / CPU",
                      "built-in ms wall / CPU",
                      "speedup (built-in / numba)"], op_rows,
                     "numba custom ops against the built-in paths (interleaved)")
    info = machine_info(threads=pydl.get_num_threads())
    md = (f"# Interop benchmarks\n\n{info['date']}, {info['cpu']}, {info['machine_load']}; "
          f"{info['threads']} thread(s) for pydl's kernels and numba's\n\n"
          f"## Profiler overhead\n\n{t1}\n\n## numba custom ops\n\n{t2}\n")
    paths = write_results("interop", {"machine": info, "profiler": over, "numba_ops": ops}, md)
    print("wrote", *paths, file=sys.stderr)


if __name__ == "__main__":
    main()
