"""Plots of the benchmark results: reads the results folder's *.json (``$PYDL_BENCH_RESULTS``,
else runs/bench; ``--results DIR``), writes PNGs beside them.

    python benchmarks/plot.py            # after bench_cpu.py / bench_gpu.py / bench_train.py

Each figure is drawn only when its results file exists:

- train_time_vs_batch.png   ms per training step against batch size, one panel per model,
                            pydl and PyTorch on every device measured (wall-time medians,
                            and dashed, the CPU time per step of the CPU rows)
                            (train_steps.json);
- train_ratio.png           pydl time / PyTorch time per row (below 1: pydl faster): bars
                            for the wall-time medians, dots for the ratio of CPU times (not
                            inflated by a busy machine), red marks for the targets
                            (train_steps.json);
- train_cpu_vs_gpu.png      the same training steps on the CPU and on the GPU, when the run
                            had a GPU (train_steps.json rows on both devices);
- cpu_kernels_speedup.png   C++ kernel speedup over the NumPy reference, 2x target line
                            (cpu_kernels.json);
- gpu_kernels_vs_ref.png    CUDA kernels: speed relative to cuBLAS/cuDNN/torch and fraction
                            of copy bandwidth (gpu_kernels.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import results_dir  # noqa: E402

COLORS = {("pydl", "cpu"): "tab:blue", ("torch", "cpu"): "tab:orange",
          ("pydl", "cuda"): "tab:green", ("torch", "cuda"): "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load(results_dir, name):
    path = os.path.join(results_dir, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _save(fig, results_dir, name):
    path = os.path.join(results_dir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _timed(rows):
    return [r for r in rows if r.get("pydl_ms") is not None]


def train_time_vs_batch(data, results_dir):
    plt = _pyplot()
    rows = _timed(data["rows"])
    models = list(dict.fromkeys(r["model"] for r in rows))
    cols = min(2, len(models))
    nrows = (len(models) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.8 * nrows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        for lib in ("pydl", "torch"):
            for device in ("cpu", "cuda"):
                pts = sorted((r["batch"], r[f"{lib}_ms"]) for r in rows
                             if r["model"] == model and r["device"] == device
                             and r.get(f"{lib}_ms") is not None)
                if pts:
                    xs, ys = zip(*pts, strict=True)
                    ax.plot(xs, ys, "o-", color=COLORS[lib, device], label=f"{lib} {device}")
                cpu_pts = sorted((r["batch"], r[f"{lib}_cpu_time_ms"]) for r in rows
                                 if r["model"] == model and r["device"] == "cpu" == device
                                 and r.get(f"{lib}_cpu_time_ms") is not None)
                if cpu_pts:  # the process's CPU time: what a busy machine does not inflate
                    xs, ys = zip(*cpu_pts, strict=True)
                    ax.plot(xs, ys, "x--", color=COLORS[lib, device], alpha=0.7,
                            label=f"{lib} {device}, CPU time")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel("ms per training step")
        ax.set_title(model)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    fig.suptitle("Training step time vs batch size (solid: wall-time median; dashed: CPU "
                 "time per step)")
    return _save(fig, results_dir, "train_time_vs_batch.png")


def train_ratio(data, results_dir):
    plt = _pyplot()
    rows = [r for r in _timed(data["rows"]) if r.get("ratio") is not None]
    if not rows:
        return None
    labels = [f"{r['model']} b{r['batch']} {r['device']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.2))
    colors = [COLORS["pydl", r["device"].split(":")[0]] for r in rows]
    ax.bar(range(len(rows)), [r["ratio"] for r in rows], color=colors)
    ax.scatter(range(len(rows)), [r.get("ratio_of_cpu_time") for r in rows], marker="o",
               s=14, color="black", zorder=3, label="ratio of CPU times per step")
    ax.axhline(1.0, color="black", lw=0.8)
    marked = [(i, r["target_max_ratio"]) for i, r in enumerate(rows)
              if r.get("target_max_ratio")]
    if marked:
        xs, ts = zip(*marked, strict=True)
        ax.scatter(xs, ts, marker="_", s=400, color="red", zorder=3, label="target (at most)")
    ax.legend(fontsize=8)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("pydl time / PyTorch time")
    ax.set_title("Training step: pydl vs PyTorch, same run (below 1: pydl faster)")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, results_dir, "train_ratio.png")


def train_cpu_vs_gpu(data, results_dir):
    rows = _timed(data["rows"])
    by_key = {(r["model"], r["batch"], r["device"].split(":")[0]): r for r in rows}
    pairs = sorted({(m, b) for m, b, d in by_key if d == "cuda" and (m, b, "cpu") in by_key})
    if not pairs:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(pairs) + 2), 4.2))
    width = 0.2
    series = [(lib, dev) for dev in ("cpu", "cuda") for lib in ("pydl", "torch")]
    for k, (lib, dev) in enumerate(series):
        ys = [by_key[m, b, dev].get(f"{lib}_ms") or 0.0 for m, b in pairs]
        ax.bar([i + (k - 1.5) * width for i in range(len(pairs))], ys, width,
               color=COLORS[lib, dev], label=f"{lib} {dev}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(pairs)), [f"{m} b{b}" for m, b in pairs], rotation=45, ha="right")
    ax.set_ylabel("ms per training step")
    ax.set_title("Training step: CPU vs GPU")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, results_dir, "train_cpu_vs_gpu.png")


def cpu_kernels_speedup(data, results_dir):
    plt = _pyplot()
    rows = data["kernels"]
    labels = [f"{r['kernel']}  {r['shape']}" for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.22 * len(rows) + 1.5))
    speedups = [r["speedup"] for r in rows]
    ax.barh(range(len(rows)), speedups,
            color=["tab:blue" if s >= 2.0 else "tab:gray" for s in speedups])
    ax.axvline(2.0, color="red", lw=1, label="target >= 2x")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("NumPy reference time / C++ time (higher: C++ faster)")
    ax.set_title("CPU kernels: C++ vs NumPy reference")
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return _save(fig, results_dir, "cpu_kernels_speedup.png")


def gpu_kernels_vs_ref(data, results_dir):
    rows = [r for r in data["rows"] if not r.get("invalid") and not r.get("failed")]
    vs_ref = [r for r in rows if r.get("speed_vs_ref")]
    of_copy = [r for r in rows if r.get("fraction_of_copy")]
    if not vs_ref and not of_copy:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.25 * max(len(vs_ref), len(of_copy)) + 2))
    for ax, subset, key, title in [
        (axes[0], vs_ref, "speed_vs_ref", "speed relative to the reference (1: equal)"),
        (axes[1], of_copy, "fraction_of_copy", "fraction of copy bandwidth"),
    ]:
        ax.barh(range(len(subset)), [r[key] for r in subset], color="tab:green")
        ax.set_yticks(range(len(subset)),
                      [f"{r['kernel']} {r['shape']} ({r.get('reference') or 'copy'})"
                       for r in subset], fontsize=6)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_title(title)
        ax.grid(True, axis="x", alpha=0.3)
    gpu = data.get("env", {}).get("gpu", "GPU")
    fig.suptitle(f"CUDA kernels on {gpu}")
    return _save(fig, results_dir, "gpu_kernels_vs_ref.png")


PLOTS = [("train_steps", train_time_vs_batch), ("train_steps", train_ratio),
         ("train_steps", train_cpu_vs_gpu), ("cpu_kernels", cpu_kernels_speedup),
         ("gpu_kernels", gpu_kernels_vs_ref)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=None,
                        help="folder of the JSON results (default: where the benchmarks write, "
                        "$PYDL_BENCH_RESULTS or runs/bench)")
    args = parser.parse_args(argv)
    args.results = args.results or results_dir()
    written = []
    for name, plot in PLOTS:
        data = load(args.results, name)
        if data is None:
            print(f"plot: no {name}.json, skipped {plot.__name__}")
            continue
        path = plot(data, args.results)
        if path is None:
            print(f"plot: nothing to draw for {plot.__name__} (e.g. no GPU rows)")
        else:
            written.append(path)
            print(f"plot: wrote {path}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
