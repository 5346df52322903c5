"""Small helpers shared by the benchmarks: timing, tables, result files with machine info.

    from common import time_ms, print_table, write_results
    ms = time_ms(lambda: f(x))                       # median of repeated runs, after warm-up
    print_table(["kernel", "ms"], [["softmax", f"{ms:.3f}"]])
    write_results("cpu_kernels", {"rows": rows}, markdown)   # benchmarks/results/cpu_kernels.*
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time

import numpy as np

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


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


def machine_info(**extra) -> dict:
    """CPU model and cores, OS, Python and NumPy versions, BLAS, UTC date; plus ``extra``."""
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        # other processes competing for the cores make timings (especially threaded) noisy
        "load_average_1_5_15min": [round(v, 2) for v in os.getloadavg()]
        if hasattr(os, "getloadavg") else None,
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
    """Write ``results/<name>.json`` (payload) and ``results/<name>.md``; return both paths."""
    os.makedirs(RESULTS, exist_ok=True)
    json_path = os.path.join(RESULTS, f"{name}.json")
    md_path = os.path.join(RESULTS, f"{name}.md")
    with open(json_path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
        f.write("\n")
    with open(md_path, "w") as f:
        f.write(markdown.rstrip() + "\n")
    return json_path, md_path
