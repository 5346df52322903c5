"""``pydl train``: train one of the documented architectures on data shipped with pydl.

The training programs themselves are the recipes in :mod:`pydl.recipes`; this module parses
the common arguments, fills in each model's defaults and writes ``result.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os


def add_arguments(parser):
    from . import recipes

    specs = recipes.available()
    lines = [f"  {name:12s} {spec.summary()}" for name, spec in specs.items()]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "models:\n" + "\n".join(lines)
    parser.add_argument("--model", choices=list(specs), default="cnn",
                        help="architecture (default cnn; see the list below)")
    parser.add_argument("--dataset", default=None,
                        help="digits (shipped), mnist or fashion_mnist (installed by `make data`); "
                             "default: the model's first dataset")
    parser.add_argument("--epochs", type=int, default=None, help="default: per model, below")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: per model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0,
                        help="data-loading worker processes for MNIST-sized data (default 0)")
    parser.add_argument("--out", default=None,
                        help="output directory for checkpoint, plots, result.json "
                             "(default runs/MODEL)")
    parser.add_argument("--plot", action="store_true",
                        help="also write training curves (and, for generative models, sample "
                             "grids) as PNG")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="bf16/fp16: mixed precision (autocast; fp16 adds loss scaling), "
                             f"for {', '.join(DATA_PARALLEL_MODELS)} (default fp32)")
    parser.add_argument("--gradient-penalty", type=float, default=0.0, metavar="WEIGHT",
                        help="gan only: add WEIGHT * a WGAN-GP gradient penalty to the "
                             "discriminator loss (default 0: off)")


def fill_defaults(args):
    """Replace the ``None`` arguments with the model's defaults; check the dataset."""
    from . import recipes

    spec = recipes.get(args.model).SPECS[args.model]
    if args.dataset is None:
        args.dataset = spec.datasets[0]
    elif args.dataset not in spec.datasets:
        raise SystemExit(f"pydl train: model {args.model!r} trains on {', '.join(spec.datasets)}, "
                         f"not {args.dataset!r}")
    for name, value in spec.defaults(args.dataset).items():  # per model and dataset
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.out is None:
        args.out = f"runs/{args.model}"
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"pydl train: --{name.replace('_', '-')} must be at least 1")
    if not args.lr > 0:
        raise SystemExit(f"pydl train: --lr must be positive, got {args.lr:g}")
    gp = getattr(args, "gradient_penalty", 0.0)
    if gp and args.model != "gan":
        raise SystemExit(f"pydl train: --gradient-penalty is for --model gan, not {args.model!r}")
    if not gp >= 0:
        raise SystemExit(f"pydl train: --gradient-penalty must be >= 0, got {gp:g}")
    precision = getattr(args, "precision", "fp32")
    if precision != "fp32" and args.model not in DATA_PARALLEL_MODELS:
        raise SystemExit(
            f"pydl train: --precision {precision} trains {', '.join(DATA_PARALLEL_MODELS)} "
            f"(through Model.fit); --model {args.model} has a loop of its own that runs in fp32")
    check_device(args.device)
    if args.plot:
        check_plotting()
    return args


def check_device(device: str) -> None:
    """Refuse, in one line and before any work, a device that is malformed or not usable here."""
    if device == "auto":
        return
    from .backend import as_device

    try:
        dev = as_device(device)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"pydl train: --device: {exc}") from None
    if dev.type != "cuda":
        return
    from .backend.cuda import ensure_available

    try:
        ensure_available()
    except RuntimeError as exc:
        raise SystemExit(f"pydl train: --device {device}: {exc} (--device cpu or auto trains "
                         "on the CPU)") from None
    from . import cuda

    if dev.index >= cuda.device_count():
        raise SystemExit(f"pydl train: --device {device}: there are only {cuda.device_count()} "
                         "CUDA devices")


# the recipes that train through Model.fit, which is data-parallel under a launcher; the
# others have loops of their own
DATA_PARALLEL_MODELS = ("mlp", "cnn", "lenet", "transformer")


def check_data_parallel(model: str) -> None:
    """Under ``mpiexec -n N`` (N > 1), refuse a model whose recipe is not data-parallel."""
    from .distributed import get_world_size

    if get_world_size() > 1 and model not in DATA_PARALLEL_MODELS:
        raise SystemExit(
            f"pydl train: --model {model} has a training loop of its own that is not "
            f"data-parallel yet; under mpiexec use one of {', '.join(DATA_PARALLEL_MODELS)}, "
            "or run it as one process")


def check_output_dir(out: str) -> None:
    """Create ``--out`` now and make sure it is writable, so a long run cannot die at saving."""
    import os

    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"pydl train: --out {out}: cannot create it ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise SystemExit(f"pydl train: --out {out}: not writable")


def check_plotting() -> None:
    """``--plot`` needs matplotlib: say so before training, not after."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("pydl train: --plot needs matplotlib, which is not installed: "
                         "pip install matplotlib (or pip install 'pydl[plot]'), or drop --plot"
                         ) from None


def parse(argv) -> argparse.Namespace:
    """Parse ``pydl train`` arguments (for tests and scripts), defaults filled in."""
    parser = argparse.ArgumentParser(prog="pydl train")
    add_arguments(parser)
    return fill_defaults(parser.parse_args(argv))


@contextlib.contextmanager
def _quiet_unless_main(is_main_process):
    """Under ``mpiexec -n N`` only rank 0 prints (errors still reach stderr on every rank)."""
    if is_main_process():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def run(args) -> dict:
    """Run the model's recipe; add the settings to its result; write ``result.json``."""
    from . import recipes
    from .distributed import init_process_group, is_main_process
    from .recipes.common import write_result

    fill_defaults(args)
    check_output_dir(args.out)
    init_process_group()  # under mpiexec -n N: join the job (Model.fit trains data-parallel)
    check_data_parallel(args.model)
    with _quiet_unless_main(is_main_process):
        result = recipes.get(args.model).run(args)
    result = {"model": args.model, "dataset": args.dataset, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, **result}
    files = list(result.pop("files", []))
    if is_main_process():  # under mpiexec: one result.json, one report
        files.append(write_result(args, result))
        print("wrote " + ", ".join(files))
    result["files"] = files
    return result
