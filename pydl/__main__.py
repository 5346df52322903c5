"""The ``pydl`` command line: ``pydl info``, ``pydl demo``, ``pydl train``."""

from __future__ import annotations

import argparse
import platform
import sys


def info() -> str:
    """Version, NumPy, the C++ extension's state and the GPU (or why there is none)."""
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
        lines.append(f"C++ extension: {state}")
    lines.append("GPU: " + _gpu_line())
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
    if args.command == "info":
        print(info())
    elif args.command == "demo":
        from pydl.demo import run

        result = run(epochs=args.epochs, device=args.device)
        return 0 if result["test_accuracy"] > 0.9 else 1
    elif args.command == "train":
        from pydl.cli import run

        run(args)
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
