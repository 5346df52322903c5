"""Small helpers shared by the benchmarks: timing, tables, result files with machine info.

    from common import time_ms, print_table, write_results
    ms = time_ms(lambda: f(x))                       # median of repeated runs, after warm-up
    print_table(["kernel", "ms"], [["softmax", f"{ms:.3f}"]])
    write_results("cpu_kernels", {"rows": rows}, markdown)   # <results folder>/cpu_kernels.*

Results go to ``results_dir()``: ``$PYDL_BENCH_RESULTS`` when set, else ``runs/bench`` in the
checkout (ignored by git). The committed tables in ``benchmarks/results`` change only when a
run is pointed there on purpose (``pydl bench --results benchmarks/results``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED_RESULTS = os.path.join(ROOT, "benchmarks", "results")


def results_dir() -> str:
    """Where this run writes: ``$PYDL_BENCH_RESULTS``, else ``runs/bench`` (not tracked)."""
    return os.path.abspath(os.environ.get("PYDL_BENCH_RESULTS") or
                           os.path.join(ROOT, "runs", "bench"))


def time_stats(fn, *, warmup: int = 2, min_runs: int = 5, max_runs: int = 50,
               min_time: float = 0.25, sync=None) -> dict:
    """Wall times of ``fn()`` in milliseconds (time.perf_counter): median, min, runs.

    Runs ``warmup`` untimed calls, then at least ``min_runs`` timed ones and more, up to
    ``max_runs``, until ``min_time`` seconds have been spent. ``sync`` (e.g. a device
    synchronize) is called after each run, inside the timed region.
    """
    for _ in range(warmup):
        fn()
        if sync:
            sync()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (
        len(times) < max_runs and time.perf_counter() - start < min_time
    ):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
            "runs": len(times)}


def time_stats_interleaved(fns: dict, *, warmup: int = 2, min_runs: int = 5,
                           max_runs: int = 50, min_time: float = 0.5, syncs=None) -> dict:
    """``time_stats`` for several functions at once, taking turns: a, b, a, b, ...

    For comparing two implementations on a machine whose load changes: each gets a run
    in every round, so a busy second slows both instead of biasing their ratio. Stops after
    ``max_runs`` rounds, or once ``min_runs`` rounds are done and ``min_time`` seconds have
    passed. ``syncs`` maps a name to its synchronize function (inside the timed region).

    Besides wall time it records the process's CPU time per run (``time.process_time``: all
    its threads), which waiting for a core does not inflate: on a machine shared with
    other work the wall-time median can be several scheduler slices above the real cost,
    while the CPU time stays put (spinning BLAS threads do count as CPU time).
    Returns ``{name: {"median_ms", "min_ms", "cpu_time_median_ms", "runs"}}``.
    """
    syncs = syncs or {}

    def run(name):
        fns[name]()
        if syncs.get(name):
            syncs[name]()

    for name in fns:
        for _ in range(warmup):
            run(name)
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    start = time.perf_counter()
    rounds = 0
    while rounds < min_runs or (rounds < max_runs and time.perf_counter() - start < min_time):
        for name in fns:
            c0, t0 = time.process_time(), time.perf_counter()
            run(name)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        rounds += 1
    return {name: {"median_ms": 1e3 * statistics.median(wall[name]),
                   "min_ms": 1e3 * min(wall[name]),
                   "cpu_time_median_ms": 1e3 * statistics.median(cpu[name]),
                   "runs": rounds} for name in fns}


def time_ms(fn, **kwargs) -> float:
    """Median wall time of ``fn()`` in milliseconds, after warm-up (see ``time_stats``)."""
    return time_stats(fn, **kwargs)["median_ms"]


def time_us_per_call(fn, *, calls: int = 2000, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of ``calls`` back-to-back calls, in us."""
    for _ in range(min(calls, 200)):
        fn()
    means = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - t0) / calls)
    return 1e6 * statistics.median(means)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_version() -> str | None:
    """The git commit of the checkout being measured, noting uncommitted changes to the
    library's sources (pydl/, csrc/), which the numbers then include; None outside git."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True)
        changed = subprocess.run(["git", "status", "--porcelain", "--", "pydl", "csrc"],
                                 cwd=root, capture_output=True, text=True, timeout=10,
                                 check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    files = [line[3:] for line in changed.stdout.splitlines() if line.strip()]
    return commit.stdout.strip() + (f" + uncommitted changes to {len(files)} file(s) in "
                                     f"pydl/ or csrc/" if files else "")


def load_note(start_load: float | None = None) -> str:
    """One line on how busy the machine is (1-minute load average against the cores), so a
    results file says whether other processes competed for the CPU while it was measured.
    ``start_load``: the load average when the run began, to report both."""
    if not hasattr(os, "getloadavg"):
        return "unknown (no load average on this OS)"
    now, cores = os.getloadavg()[0], os.cpu_count() or 1
    seen = now if start_load is None else max(now, start_load)
    text = (f"1-minute load average {now:.1f} on {cores} cores" if start_load is None else
            f"1-minute load average {start_load:.1f} at the start, {now:.1f} at the end, "
            f"on {cores} cores")
    if seen > 0.5 * cores:
        return text + ": shared/loaded, other processes competed for the cores, so times " \
                      "are noisy (ratios measured in the same run hold up better)"
    return text + ": mostly idle"


def machine_info(**extra) -> dict:
    """CPU model and cores, OS, Python and NumPy versions, BLAS, UTC date; plus ``extra``."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        # other processes competing for the cores make timings (especially threaded) noisy
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()]
        if hasattr(os, "getloadavg") else None,
        "machine_load": load_note(),
        "source": source_version(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - older NumPy: no dict mode
        pass
    info.update(extra)
    return info


def markdown_table(headers, rows) -> str:
    """A GitHub-markdown table with columns padded to their widest cell."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def print_table(headers, rows, title: str | None = None) -> str:
    """Print (and return) ``markdown_table(headers, rows)``, under ``title`` if given."""
    text = markdown_table(headers, rows)
    if title:
        print(f"\n{title}\n")
    print(text, flush=True)
    return text


def write_results(name: str, payload: dict, markdown: str) -> tuple[str, str]:
    """Write ``<name>.json`` (payload) and ``<name>.md`` into ``results_dir()``; return both
    paths."""
    folder = results_dir()
    os.makedirs(folder, exist_ok=True)
    json_path = os.path.join(folder, f"{name}.json")
    md_path = os.path.join(folder, f"{name}.md")
    with open(json_path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown.rstrip() + "\n")
    return json_path, md_path
