"""Wall time of training each documented model, on the CPU and (when present) the GPU.

Runs the same recipe ``pydl train --model NAME`` runs, once per device, and records how long
training took and the model's headline result, so the two devices are compared on the same
program with the same seed. By default each model trains with its default settings (what a
user of ``pydl train`` sees); ``--epochs N`` caps every model at N epochs for a quick look
(then the quality numbers are not the models' real ones, only the times compare).

    python benchmarks/bench_models.py                 # every model, default settings
    python benchmarks/bench_models.py --epochs 2 --models mlp,cnn,lstm

Writes benchmarks/results/models.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from common import load_note, machine_info, print_table, write_results  # noqa: E402

# the number each recipe reports as its headline result, in order of preference
HEADLINES = ("test_accuracy", "accuracy", "test_mse", "val_loss", "test_loss",
             "final_loss", "elbo_end", "loss_end")


def _headline(result: dict):
    for key in HEADLINES:
        if isinstance(result.get(key), (int, float)):
            return key, float(result[key])
    for key, value in result.items():  # first numeric entry the recipe reported
        if isinstance(value, (int, float)) and key not in ("seconds", "epochs", "batch_size",
                                                           "lr", "seed"):
            return key, float(value)
    return None, None


def run_model(name: str, device: str, epochs: int | None, seed: int) -> dict:
    from pydl.cli import parse, run

    with tempfile.TemporaryDirectory() as out:
        argv = ["--model", name, "--device", device, "--seed", str(seed), "--quiet",
                "--out", out]
        if epochs is not None:
            argv += ["--epochs", str(epochs)]
        args = parse(argv)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = run(args)
        wall = time.perf_counter() - start
    key, value = _headline(result)
    return {"model": name, "device": device, "epochs": args.epochs, "wall_s": wall,
            "train_s": float(result.get("seconds", wall)), "metric": key, "value": value}


def main(argv=None) -> int:
    import pydl
    from pydl import recipes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--epochs", type=int, default=None, help="cap every model's epochs")
    parser.add_argument("--devices", default=None, help="cpu,cuda (default: cpu, and cuda if any)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else list(recipes.available())
    gpu = pydl.cuda.is_available()
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if gpu else [])
    start_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows, table = [], []
    for name in names:
        per_device = {}
        for device in devices:
            print(f"training {name} on {device} ...", flush=True)
            r = run_model(name, device, args.epochs, args.seed)
            rows.append(r)
            per_device[device] = r
        cpu, cuda = per_device.get("cpu"), per_device.get("cuda")
        ratio = f"{cpu['train_s'] / cuda['train_s']:.1f}x" if cpu and cuda else "-"
        first = cpu or cuda
        table.append([name, first["epochs"],
                      f"{cpu['train_s']:.1f}" if cpu else "-",
                      f"{cuda['train_s']:.1f}" if cuda else "-", ratio,
                      first["metric"] or "-",
                      " / ".join(f"{per_device[d]['value']:.4g}" for d in devices
                                 if per_device[d]["value"] is not None) or "-"])
    headers = ["model", "epochs", "CPU s", "GPU s", "GPU speed-up", "result", "value (per device)"]
    text = print_table(headers, table, title="Training wall time per model (pydl train recipes)")
    info = machine_info(machine_load=load_note(start_load), gpu=_gpu_name() if gpu else None,
                        epochs_cap=args.epochs)
    md = ["# Training each model: CPU vs GPU", ""]
    md += [f"- {k}: {v}" for k, v in info.items()]
    md += ["", "Training time as each recipe measures it (data loading and the final evaluation "
           "excluded), same seed and settings on each device. "
           + ("Epochs capped: results are not the models' full-training quality."
              if args.epochs else "Default settings of `pydl train`."), "", text]
    if not gpu:
        md += ["", "No GPU on this machine: the GPU column is owed."]
    write_results("models", {"machine": info, "rows": rows}, "\n".join(md))
    return 0


def _gpu_name() -> str:
    import pydl

    return pydl.cuda.get_device_name()


if __name__ == "__main__":
    sys.exit(main())
