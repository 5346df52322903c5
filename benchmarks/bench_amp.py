"""Mixed precision: training-step time in bfloat16 (autocast) against float32, and on a GPU the
float16/bfloat16 tensor-core matmul against cuBLAS.

CPU rows: three models (an MLP 784-256-128-10 at batch 256, a LeNet-style CNN at batch 64, a
two-layer Transformer encoder classifier at batch 32 x 64 tokens) each take a full step (zero_grad,
forward and loss under autocast, backward, AdamW step) in float32 and under
``autocast("cpu", bfloat16)``, in pydl and in PyTorch with the same weights. **Validated
first**: each library's bfloat16 loss must be within 2% of its float32 loss, and pydl's
bfloat16 loss within 2% of torch's, else the row says INVALID. Steps are timed taking turns
(common.time_stats_interleaved); the ratios bf16/fp32 say what autocast costs or saves in each
library on this CPU.

GPU rows (only with a CUDA GPU): ``matmul`` of float16 and bfloat16 (M = N = K) with pydl's
kernel (matmul_half.cu) and with CuPy's ``matmul`` (cuBLAS), validated against the float32
product of the same inputs first, reported as TFLOP/s and the ratio pydl / cuBLAS time.

    python benchmarks/bench_amp.py            # --quick: fewer runs
Results: <results folder>/amp.json and .md (see common.results_dir).
"""

from __future__ import annotations

import argparse
import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, print_table, time_stats_interleaved, write_results  # noqa: E402

import pydl  # noqa: E402

LOSS_AGREE = 0.02


def _models(lib):
    nn = lib.nn

    class Tiny(nn.Module):  # Transformer encoder classifier over 64 tokens of width 64
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 64)
            layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            return self.head(self.enc(self.emb(x)).mean(dim=1))

    return {
        "mlp": (lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128),
                                      nn.ReLU(), nn.Linear(128, 10)), (256, 784), "float"),
        "lenet": (lambda: nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
                                        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                                        nn.Flatten(), nn.Linear(256, 120), nn.ReLU(),
                                        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)),
                  (64, 1, 28, 28), "float"),
        "transformer": (Tiny, (32, 64), "tokens"),
    }


def _pair(name, seed=0):
    import torch

    torch.manual_seed(seed)
    make_t, shape, kind = _models(torch)[name]
    make_p, _, _ = _models(pydl)[name]
    tmod, pmod = make_t(), make_p()
    pmod.load_state_dict({k: pydl.tensor(v.detach().numpy()) for k, v in tmod.state_dict().items()})
    rng = np.random.default_rng(seed)
    if kind == "tokens":
        x = rng.integers(0, 100, shape)
    else:
        x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    return tmod, pmod, x, y


def _steps(tmod, pmod, x, y):
    """name -> one training step, for each library and precision."""
    import torch

    topt = torch.optim.AdamW(tmod.parameters(), lr=1e-4)
    popt = pydl.optim.AdamW(pmod.parameters(), lr=1e-4)
    tx, ty, px, py = torch.from_numpy(x), torch.from_numpy(y), pydl.tensor(x), pydl.tensor(y)

    def step_of(opt, model, loss_fn, x, y, region):
        def step():
            opt.zero_grad()
            with region():
                loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss.item()
        return step

    def torch_step(low):
        return step_of(topt, tmod, torch.nn.functional.cross_entropy, tx, ty,
                       lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=low))

    def pydl_step(low):
        return step_of(popt, pmod, pydl.nn.functional.cross_entropy, px, py,
                       lambda: pydl.autocast("cpu", dtype=pydl.bfloat16, enabled=low))

    return {"pydl fp32": pydl_step(False), "pydl bf16": pydl_step(True),
            "torch fp32": torch_step(False), "torch bf16": torch_step(True)}


def validate(name):
    """(ok, losses): the first-step loss of each library and precision, each from a fresh
    copy of the same weights."""
    keys = ("pydl fp32", "pydl bf16", "torch fp32", "torch bf16")
    fresh = {key: _steps(*_pair(name))[key]() for key in keys}
    ok = (abs(fresh["pydl bf16"] / fresh["pydl fp32"] - 1) < LOSS_AGREE
          and abs(fresh["torch bf16"] / fresh["torch fp32"] - 1) < LOSS_AGREE
          and abs(fresh["pydl bf16"] / fresh["torch bf16"] - 1) < LOSS_AGREE
          and abs(fresh["pydl fp32"] / fresh["torch fp32"] - 1) < 1e-4)
    return ok, fresh


def cpu_rows(quick):
    import torch

    torch.set_num_threads(1)
    pydl.set_num_threads(1)
    rows, raw = [], {}
    for name in ("mlp", "lenet", "transformer"):
        ok, losses = validate(name)
        if not ok:
            rows.append([name, "INVALID", *(f"{v:.4f}" for v in losses.values()), "", ""])
            raw[name] = {"valid": False, "losses": losses}
            continue
        stats = time_stats_interleaved(_steps(*_pair(name)), min_runs=3 if quick else 5,
                                       min_time=0.5 if quick else 2.0)
        ms = {k: v["median_ms"] for k, v in stats.items()}
        rows.append([name, "ok", *(f"{ms[k]:.2f}" for k in ms),
                     f"{ms['pydl bf16'] / ms['pydl fp32']:.2f}",
                     f"{ms['torch bf16'] / ms['torch fp32']:.2f}"])
        raw[name] = {"valid": True, "losses": losses, "stats": stats}
    headers = ["model", "valid", "pydl fp32 ms", "pydl bf16 ms", "torch fp32 ms", "torch bf16 ms",
               "pydl bf16/fp32", "torch bf16/fp32"]
    return headers, rows, raw


def gpu_rows(quick):
    import cupy
    import ml_dtypes

    from pydl.backend import cuda as ck

    rows, raw = [], {}
    for dt_name, dt in (("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16)):
        for n in ((1024, 4096) if quick else (1024, 2048, 4096, 8192)):
            rng = np.random.default_rng(n)
            a = cupy.asarray(rng.standard_normal((n, n)).astype(dt))
            b = cupy.asarray(rng.standard_normal((n, n)).astype(dt))
            want = a.astype(np.float32) @ b.astype(np.float32)
            got = ck.matmul(a, b).astype(np.float32)
            err = float(cupy.abs(got - want).max() / cupy.abs(want).max())
            if not err < 2e-2:
                rows.append([dt_name, n, "INVALID", f"{err:.2e}", "", "", ""])
                continue
            stats = time_stats_interleaved(
                {"pydl": lambda a=a, b=b: ck.matmul(a, b),
                 "cublas": lambda a=a, b=b: cupy.matmul(a, b)},
                syncs={"pydl": cupy.cuda.Device().synchronize,
                       "cublas": cupy.cuda.Device().synchronize}, min_runs=5)
            tf = {k: 2 * n ** 3 / (v["median_ms"] * 1e-3) / 1e12 for k, v in stats.items()}
            rows.append([dt_name, n, "ok", f"{err:.1e}", f"{tf['pydl']:.1f}", f"{tf['cublas']:.1f}",
                         f"{stats['pydl']['median_ms'] / stats['cublas']['median_ms']:.2f}"])
            raw[f"{dt_name}-{n}"] = stats
    headers = ["dtype", "M=N=K", "valid", "max rel err", "pydl TFLOP/s", "cuBLAS TFLOP/s",
               "pydl/cuBLAS time"]
    return headers, rows, raw


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    payload, md = {"machine": machine_info()}, []
    headers, rows, raw = cpu_rows(args.quick)
    md.append(print_table(headers, rows, "CPU training step, one thread: float32 vs autocast "
                          "bfloat16 (median ms)"))
    payload["cpu"] = {"headers": headers, "rows": rows, "raw": raw}
    if pydl.cuda.is_available():
        headers, rows, raw = gpu_rows(args.quick)
        md.append(print_table(headers, rows, "GPU matmul, float16 / bfloat16 (pydl vs cuBLAS)"))
        payload["gpu"] = {"headers": headers, "rows": rows, "raw": raw}
    else:
        print("\nno CUDA GPU: the GPU rows (half matmul vs cuBLAS) are skipped")
    write_results("amp", payload, "\n\n".join(md))


if __name__ == "__main__":
    main()
