"""The ops added for issue 22 that compose other ops (einsum, conv3d, 3-D pooling, sort/topk,
the log-step scans, scatter_reduce, bicubic resize), pydl against PyTorch on the CPU.

Each case first checks that pydl's forward and input gradient agree with PyTorch's on the same
float32 values (1e-4 relative), else the row is INVALID and not timed; then forward + backward
of both run interleaved (a, b, a, b...) and the table gives pydl/torch time (below 1: pydl is
faster) with CPU time next to wall time (robust to a shared machine). Both libraries run on
one thread by default (``--threads``).

    python benchmarks/bench_ops.py [--quick] [--only topk,cumprod]
                                          # writes <results>/ops.json and ops.md
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, print_table, time_stats_interleaved, write_results  # noqa: E402


def cases(quick: bool):
    """name -> (pydl fn, torch fn, input shapes); each fn maps its library and inputs to one
    output tensor."""
    b = 2 if quick else 8
    return {
        "einsum bhqd,bhkd->bhqk": (
            lambda L, q, k: L.einsum("bhqd,bhkd->bhqk", q, k),
            [(b, 4, 64, 32), (b, 4, 64, 32)]),
        "einsum ab,bc,cd->ad": (
            lambda L, x, y, z: L.einsum("ab,bc,cd->ad", x, y, z),
            [(64, 128), (128, 96), (96, 32)]),
        "conv3d 3x3x3 pad 1": (
            lambda L, x, w: _F(L).conv3d(x, w, padding=1),
            [(b // 2, 4, 8, 16, 16), (8, 4, 3, 3, 3)]),
        "max_pool3d 2": (lambda L, x: _F(L).max_pool3d(x, 2), [(b, 8, 8, 16, 16)]),
        "avg_pool3d 3 s2 p1": (lambda L, x: _F(L).avg_pool3d(x, 3, 2, 1), [(b, 8, 8, 16, 16)]),
        "sort dim -1": (lambda L, x: L.sort(x, dim=-1).values, [(b * 64, 256)]),
        "topk 8": (lambda L, x: L.topk(x, 8, dim=-1).values, [(b * 64, 256)]),
        "cumprod": (lambda L, x: L.cumprod(x, 1), [(b * 16, 512)]),
        "logcumsumexp": (lambda L, x: L.logcumsumexp(x, 1), [(b * 16, 512)]),
        "scatter_reduce amax": (
            lambda L, x, s: x.scatter_reduce(0, _index(L, s.shape, x.shape[0]), s, "amax"),
            [(64, 128), (1024, 128)]),
        "interpolate bicubic x2": (
            lambda L, x: _F(L).interpolate(x, scale_factor=2, mode="bicubic"),
            [(b, 3, 32, 32)]),
    }


def _F(lib):
    return lib.nn.functional


def _index(lib, shape, n):
    idx = np.random.default_rng(0).integers(0, n, shape)
    return lib.tensor(idx) if lib.__name__ == "pydl" else lib.from_numpy(idx)


def _inputs(lib, arrays, requires_grad=True):
    if lib.__name__ == "pydl":
        return [lib.tensor(a, dtype=a.dtype, requires_grad=requires_grad) for a in arrays]
    return [lib.tensor(a, requires_grad=requires_grad) for a in arrays]


def _host(t):
    return t.detach().numpy() if hasattr(t, "detach") else np.asarray(t)


def validate(fn, shapes, dtype=np.float32, rtol=1e-4):
    """pydl against torch on the same values: forward and the gradient of every input."""
    import torch

    import pydl

    rng = np.random.default_rng(1)
    # distinct values: no ties for sort/max to split differently
    arrays = [(rng.permutation(int(np.prod(s))).reshape(s) / np.prod(s)).astype(dtype)
              for s in shapes]
    ours, theirs = _inputs(pydl, arrays), _inputs(torch, arrays)
    y, ty = fn(pydl, *ours), fn(torch, *theirs)
    w = rng.standard_normal(ty.shape).astype(dtype)
    (y * pydl.tensor(w, dtype=w.dtype)).sum().backward()
    (ty * torch.tensor(w)).sum().backward()
    pairs = [(_host(y), _host(ty))] + [(_host(a.grad), _host(b.grad))
                                      for a, b in zip(ours, theirs)]
    worst = 0.0
    for got, want in pairs:
        if got.shape != want.shape:
            return False, float("inf")
        scale = max(float(np.abs(want).max()), 1e-30)
        worst = max(worst, float(np.abs(got - want).max()) / scale)
    return worst <= rtol, worst


def main(argv=None):
    import torch

    import pydl

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs, fewer runs")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads for both libraries (default 1: on a shared machine, "
                         "OpenMP threads waiting for a busy core distort the ratios)")
    ap.add_argument("--only", default="",
                    help="comma-separated substrings: run only the cases whose name has one")
    args = ap.parse_args(argv)
    wanted = [w for w in args.only.split(",") if w]
    pydl.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows, records = [], []
    for name, (fn, shapes) in cases(args.quick).items():
        if wanted and not any(w in name for w in wanted):
            continue
        ok, err = validate(fn, shapes)
        if not ok:
            rows.append([name, "INVALID", f"{err:.1e}", "-", "-", "-"])
            records.append({"case": name, "valid": False, "max_rel_err": err})
            continue
        arrays = [np.random.default_rng(2).standard_normal(s).astype(np.float32) for s in shapes]

        def step(lib, fn=fn, arrays=arrays):
            xs = _inputs(lib, arrays)
            fn(lib, *xs).sum().backward()

        stats = time_stats_interleaved({"pydl": lambda: step(pydl), "torch": lambda: step(torch)},
                                       min_runs=3 if args.quick else 5,
                                       min_time=0.2 if args.quick else 1.0)
        p, t = stats["pydl"], stats["torch"]
        rows.append([name, "ok", f"{err:.1e}", f"{p['median_ms']:.2f}", f"{t['median_ms']:.2f}",
                     f"{p['median_ms'] / t['median_ms']:.2f} "
                     f"(cpu {p['cpu_time_median_ms'] / t['cpu_time_median_ms']:.2f})"])
        records.append({"case": name, "valid": True, "max_rel_err": err, "pydl": p, "torch": t})
    headers = ["case (forward + backward, float32)", "valid", "max rel err", "pydl ms",
               "torch ms", "pydl/torch time (CPU time)"]
    table = print_table(headers, rows, "pydl vs PyTorch: composed ops of issue 22 (CPU)")
    info = machine_info(torch=torch.__version__, threads=pydl.get_num_threads())
    md = "# Composed ops: pydl vs PyTorch (CPU)\n\n" + table + "\n\n" + \
        "\n".join(f"- {k}: {v}" for k, v in info.items())
    paths = write_results("ops", {"machine": info, "cases": records}, md)
    print("\nwrote", *paths)


if __name__ == "__main__":
    main()
