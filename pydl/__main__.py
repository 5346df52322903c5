"""The ``pydl`` command line: ``pydl info``, ``pydl demo``, ``pydl train``, ``pydl bench``."""

from __future__ import annotations

import argparse
import platform
import sys


def info() -> str:
    """Version, NumPy, the C++ extension's state, the GPU (or why there is none) and the
    distributed backends (or what to install)."""
    import numpy as np

    import pydl
    from pydl.backend import cpu

    lines = [
        f"pydl {pydl.__version__}",
        f"python {platform.python_version()} ({sys.executable})",
        f"numpy {np.__version__}",
    ]
    if cpu.extension is None:
        lines.append("C++ extension: not built (NumPy reference kernels in use)")
    else:
        state = "active" if cpu.extension_active() else "built but disabled (PYDL_DISABLE_EXT)"
        lines.append(f"C++ extension: {state}" + _build_line())
    lines.append("GPU: " + _gpu_line())
    lines.append("distributed: " + _distributed_line())
    return "\n".join(lines)


def _distributed_line() -> str:
    """``MPI <what or why not>; NCCL <what or why not>``, and the launcher if one is running."""
    from pydl import distributed

    backends = distributed.available_backends()
    text = f"MPI: {backends['mpi']}; NCCL: {backends['nccl']}"
    try:
        found = distributed.launcher_env()
    except ValueError as exc:
        return text + f"; launcher variables malformed ({exc})"
    if found is not None:
        text += f"; launched by {found[0]}: rank {found[1]} of {found[2]}"
    return text


def _build_line() -> str:
    """`` (gcc 12.2.0, 2 threads, kernels for AVX-512 / AVX2+FMA / baseline)``, if known."""
    try:
        from pydl import _C

        info = _C.build_info()
    except Exception:  # noqa: BLE001 - an older build without build_info
        return ""
    parts = []
    if info.get("compiler"):
        parts.append(f"compiler {info['compiler']}")
    if info.get("threads"):
        parts.append(f"{info['threads']} threads")
    if info.get("clones"):
        parts.append(f"kernels for {info['clones']}")
    return f" ({', '.join(parts)})" if parts else ""


def _gpu_line() -> str:
    try:
        import cupy
    except ImportError:
        return "none: CuPy is not installed (pip install 'pydl[cuda12]' or 'pydl[cuda13]')"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver, no device
        return f"none: CuPy {cupy.__version__} is installed but found no usable device ({exc})"
    if n == 0:
        return f"none: CuPy {cupy.__version__} is installed but there is no CUDA device"
    names = []
    for i in range(n):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props["name"]
        names.append(f"cuda:{i} {name.decode() if isinstance(name, bytes) else name}")
    return f"{', '.join(names)} (CuPy {cupy.__version__})"


BENCH_SCRIPTS = {"cpu": "bench_cpu.py", "gpu": "bench_gpu.py", "train": "bench_train.py",
                 "ops": "bench_ops.py", "plot": "plot.py"}


def bench(args) -> int:
    """Run the benchmark scripts of the source checkout one after the other (see
    benchmarks/README.md); they are not part of the installed package."""
    import os
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    folder = os.path.join(root, "benchmarks")
    if not os.path.exists(os.path.join(folder, "bench_train.py")):
        print(f"pydl bench needs a source checkout of pydl: the benchmarks/ folder is not next "
              f"to this installation ({root}). Clone the repository, `pip install -e .` and "
              f"run `pydl bench` (or `make bench`) there.", file=sys.stderr)
        return 2
    chosen = [s for s in args.only.split(",") if s] or list(BENCH_SCRIPTS)
    unknown = sorted(set(chosen) - set(BENCH_SCRIPTS))
    if unknown:
        print(f"pydl bench: unknown part(s) {unknown}; known: {list(BENCH_SCRIPTS)}",
              file=sys.stderr)
        return 2
    results = os.path.abspath(args.results or os.path.join(root, "runs", "bench"))
    committed = os.path.join(root, "benchmarks", "results")
    env = dict(os.environ, PYDL_BENCH_RESULTS=results)
    print(f"pydl bench: results go to {results}"
          + (" (the committed tables: review the diff before committing)"
             if os.path.realpath(results) == os.path.realpath(committed) else ""), flush=True)
    extra = {"gpu": ["--quick"] if args.quick else [],
             "train": (["--quick"] if args.quick else []) + ["--threads", str(args.threads)],
             "ops": (["--quick"] if args.quick else [])
             + (["--threads", str(args.threads)] if args.threads > 0 else [])}
    status = 0
    for part in chosen:
        cmd = [sys.executable, os.path.join(folder, BENCH_SCRIPTS[part]), *extra.get(part, [])]
        if part == "cpu":
            cmd += ["--blas-threads", str(args.threads)]
        print(f"\n=== pydl bench: {' '.join(cmd[1:])}", flush=True)
        code = subprocess.call(cmd, cwd=root, env=env)
        if code:
            print(f"pydl bench: {BENCH_SCRIPTS[part]} exited with status {code}", flush=True)
            status = status or code
    return status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="pydl", description="pydl: a small deep-learning library (CPU and CUDA)."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="print versions, whether the C++ extension is active, the GPU")
    demo = sub.add_parser(
        "demo", help="train a small network built from Tensor ops on two spirals"
    )
    demo.add_argument("--epochs", type=int, default=400, help="full-batch steps (default 400)")
    demo.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    train = sub.add_parser(
        "train", help="train a model on data shipped with pydl; report test accuracy; save results"
    )
    from pydl.cli import add_arguments

    add_arguments(train)
    bench_parser = sub.add_parser(
        "bench", help="run the benchmark suite of a source checkout (CPU, GPU when present, "
        "training steps and composed ops vs PyTorch, plots); results in runs/bench/ unless "
        "--results"
    )
    bench_parser.add_argument("--quick", action="store_true",
                              help="fewer batch sizes and runs (the GPU kernels too)")
    bench_parser.add_argument("--only", default="",
                              help="comma-separated parts: " + ",".join(BENCH_SCRIPTS))
    bench_parser.add_argument("--results", default=None, metavar="DIR",
                              help="folder for the result tables (default runs/bench of the "
                              "checkout; benchmarks/results holds the committed ones, written "
                              "only when named here)")
    bench_parser.add_argument("--threads", type=int, default=1,
                              help="BLAS / C++ / torch threads for the CPU benchmarks "
                              "(default 1; 0: each library's default)")
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except (OSError, ValueError, TypeError, RuntimeError) as exc:
        import os

        if os.environ.get("PYDL_TRACEBACK") == "1":
            raise
        print(f"pydl {args.command}: {type(exc).__name__}: {exc} "
              "(PYDL_TRACEBACK=1 shows where)", file=sys.stderr)
        return 1


def _dispatch(parser, args) -> int:
    if args.command == "info":
        print(info())
    elif args.command == "demo":
        from pydl.demo import run

        result = run(epochs=args.epochs, device=args.device)
        return 0 if result["test_accuracy"] > 0.9 else 1
    elif args.command == "train":
        from pydl.cli import run

        run(args)
    elif args.command == "bench":
        return bench(args)
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
