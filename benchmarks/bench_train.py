"""End-to-end training steps: pydl against PyTorch, the same model with the same weights.

Four models, each written once against the shared ``nn`` API and built twice, with
``lib=torch`` and ``lib=pydl`` (the parameter names match, so PyTorch's ``state_dict`` loads
into the pydl model and both start from identical weights):

- ``mlp``: 784-256-128-10 with ReLU, cross-entropy (the targets.md CPU row at batch 256);
- ``lenet``: LeNet-style CNN on 28x28 images, conv5-pool-conv5-pool-120-84-10
  (the targets.md CPU row at batch 64);
- ``transformer``: a small causal character model, token + position embeddings, two
  pre-norm encoder layers (d_model 64, 4 heads), next-token cross-entropy;
- ``lstm``: a one-layer LSTM over a sequence, a linear head on its last output.

Every configuration is **validated first**: both libraries take ``VALIDATE_STEPS`` full
training steps (AdamW) on the same batch and their losses must agree (float32: 1e-4
relative; float64 in the smoke test: 1e-9), so a broken backward or optimizer step shows up
as INVALID instead of a fast time. Then a full step (zero_grad, forward, loss, backward,
optimizer step) is timed for each library, median of many runs after warm-up, in the same
process, the two libraries taking turns step by step. The table reports ms per step,
samples/s and the ratio pydl time / torch time (below 1: pydl is faster), with the targets
of targets.md (copied into ``TARGETS`` below) and whether they are met.

    python benchmarks/bench_train.py                  # CPU rows (and GPU rows with a GPU)
    python benchmarks/bench_train.py --quick          # one or two batch sizes per model
    python benchmarks/bench_train.py --threads 2      # 2 threads for every library
    python benchmarks/bench_train.py --profile mlp:256   # cProfile of pydl's step only

With PyTorch installed, a last table times one short pydl-only job (an MLP and a CNN through
``Model.fit``) in fresh processes taking turns: alone, with torch imported first, and with
torch imported first then ``gc.freeze()`` (docs/training.md, "pydl beside PyTorch").

Threads: by default every library runs on ONE thread: OpenBLAS (NumPy's matmul, used by
pydl), pydl's C++ kernels and PyTorch (``torch.set_num_threads``). That compares the same
amount of hardware and stays reproducible on a shared machine, where OpenBLAS's spinning
threads stall (see bench_cpu.py). ``--threads N`` gives every library N threads;
``--threads 0`` leaves each library's own default. Results go to
benchmarks/results/train_steps.json and .md.
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv, default: int = 1) -> int:
    """--threads N, read before NumPy loads OpenBLAS (which reads its variable only once)."""
    for i, arg in enumerate(argv):
        if arg.startswith("--threads"):
            return int(arg.split("=", 1)[1] if "=" in arg else argv[i + 1])
    return default


if __name__ == "__main__":
    _threads = _threads_from_argv(sys.argv)
    if _threads > 0:
        for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[_var] = str(_threads)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    load_note,
    machine_info,
    print_table,
    time_stats_interleaved,
    write_results,
)

import pydl  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - torch is the reference, optional for pydl itself
    torch = None

VALIDATE_STEPS = 3
BATCHES_PER_SIDE = 8  # distinct batches each side cycles through (see Side)
TOLERANCE = {"float32": 1e-4, "float64": 1e-9}  # relative, on each step's loss


# ----------------------------------------------------------------------------- models
# Each builder takes the library (``torch`` or ``pydl``) and the model's config and returns an
# ``nn.Module``; the same code runs against both, which makes the weights copyable by name.


def build_mlp(lib, sizes=(784, 256, 128, 10)):
    nn = lib.nn
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def build_lenet(lib, image=28, classes=10):
    nn = lib.nn
    side = ((image - 4) // 2 - 4) // 2  # two valid 5x5 convolutions, each followed by pool(2)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, classes),
    )


def build_transformer(lib, vocab=64, seq=32, d_model=64, heads=4, layers=2):
    nn = lib.nn

    class CharTransformer(nn.Module):
        """Token + learned position embeddings, causal pre-norm encoder layers, a linear head."""

        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d_model)
            self.pos = nn.Embedding(seq, d_model)
            layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Linear(d_model, vocab)
            causal = np.triu(np.full((seq, seq), -np.inf, dtype=np.float32), 1)
            self.register_buffer("mask", lib.tensor(causal), persistent=False)
            self.register_buffer("positions", lib.tensor(np.arange(seq)), persistent=False)

        def forward(self, idx):
            h = self.tok(idx) + self.pos(self.positions)
            return self.head(self.blocks(h, mask=self.mask))

    return CharTransformer()


def build_lstm(lib, features=32, hidden=128, classes=10, **_):
    nn = lib.nn

    class SequenceClassifier(nn.Module):
        """LSTM over (batch, time, features); a linear layer reads the last time step."""

        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(features, hidden, batch_first=True)
            self.head = nn.Linear(hidden, classes)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(out[:, -1])

    return SequenceClassifier()


# ----------------------------------------------------------------------------- inputs
# ``inputs(rng, batch, dtype, **config)`` -> (x, integer class targets) as NumPy arrays. The
# builder and the inputs both receive the model's config and each takes what it needs.


def _images(rng, batch, dtype, shape, classes):
    return rng.standard_normal((batch, *shape)).astype(dtype), rng.integers(0, classes, batch)


def mlp_inputs(rng, batch, dtype, sizes=(784, 256, 128, 10)):
    return _images(rng, batch, dtype, (sizes[0],), sizes[-1])


def lenet_inputs(rng, batch, dtype, image=28, classes=10):
    return _images(rng, batch, dtype, (1, image, image), classes)


def transformer_inputs(rng, batch, dtype, vocab=64, seq=32, **_):
    """Random token sequences; the targets are the inputs shifted by one (next token)."""
    ids = rng.integers(0, vocab, (batch, seq + 1))
    return ids[:, :-1], ids[:, 1:]


def lstm_inputs(rng, batch, dtype, features=32, classes=10, seq=32, **_):
    return _images(rng, batch, dtype, (seq, features), classes)


@dataclass
class Spec:
    name: str
    description: str
    build: object  # build(lib, **config) -> nn.Module
    inputs: object  # inputs(rng, batch, dtype, **config) -> (x, y)
    batches: tuple  # batch sizes on the CPU
    quick: tuple  # with --quick (always containing the targets' batch sizes)
    gpu_batches: tuple = (64, 256, 1024)
    tiny: dict = field(default_factory=dict)  # a much smaller config, for the smoke test


SPECS = {
    "mlp": Spec("mlp", "MLP 784-256-128-10, ReLU, cross-entropy", build_mlp, mlp_inputs,
                (32, 64, 256, 1024), (64, 256), tiny={"sizes": (12, 8, 4)}),
    "lenet": Spec("lenet", "LeNet-5-style CNN, 1x28x28 -> 10 classes", build_lenet,
                  lenet_inputs, (16, 64, 256), (64,), tiny={"image": 16}),
    "transformer": Spec("transformer", "causal Transformer, 2 pre-norm layers, d_model 64, "
                        "4 heads, seq 32, vocab 64, next-token loss", build_transformer,
                        transformer_inputs, (8, 32, 64), (16,),
                        tiny={"vocab": 11, "seq": 5, "d_model": 8, "heads": 2}),
    "lstm": Spec("lstm", "LSTM 32->128 over 32 steps, last step -> 10 classes", build_lstm,
                 lstm_inputs, (16, 64, 256), (32,),
                 tiny={"features": 3, "hidden": 5, "classes": 4, "seq": 4}),
}

# targets.md rows: (model, device, batch) -> (largest allowed pydl/torch time ratio, text)
TARGETS = {
    ("mlp", "cpu", 256): (1.3, "<= 1.3x torch CPU time"),
    ("lenet", "cpu", 64): (2.0, "<= 2.0x torch CPU time"),
    # GPU rows: targets.md asks >= 1.0x torch's speed with the step captured as a CUDA graph
    # at batch 64 (timed here in eager mode, so stricter than the target), >= 0.8x at 1024.
    ("mlp", "cuda", 64): (1.0, ">= 1.0x torch speed (target assumes CUDA graph)"),
    ("lenet", "cuda", 64): (1.0, ">= 1.0x torch speed (target assumes CUDA graph)"),
    ("mlp", "cuda", 1024): (1.25, ">= 0.8x torch speed"),
    ("lenet", "cuda", 1024): (1.25, ">= 0.8x torch speed"),
}


# ----------------------------------------------------------------------------- one pair


class Side:
    """One library's model, optimizer and batches on one device, ready to take steps.

    The steps cycle through a few different batches: a model trained over and over on one
    batch memorizes it within tens of steps (the MLP's loss fell to 2e-4 in 50), and
    near-zero losses and gradients are not what a training step normally computes.
    """

    def __init__(self, lib, model, batches, device):
        self.lib, self.model, self.device = lib, model, device
        self.opt = lib.optim.AdamW(model.parameters(), lr=1e-3)
        # from_numpy keeps the array's dtype in both libraries (pydl.tensor would make a
        # float64 array float32, its default dtype)
        self.batches = [tuple(lib.from_numpy(np.ascontiguousarray(a)).to(device) for a in b)
                        for b in batches]
        self.steps_taken = 0
        self.sync = _synchronizer(lib, device)

    def next_batch(self):
        x, y = self.batches[self.steps_taken % len(self.batches)]
        self.steps_taken += 1
        return x, y

    def step(self):
        """One training step on the next batch; returns the loss tensor."""
        return self.train(*self.next_batch())

    def train(self, x, y):
        """zero_grad, forward, loss, backward, optimizer step; returns the loss tensor."""
        self.opt.zero_grad()
        logits = self.model(x)
        loss = self.lib.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                    y.reshape(-1))
        loss.backward()
        self.opt.step()
        return loss


class GraphSide:
    """pydl's step recorded as a CUDA graph (``pydl.cuda.CUDAGraph``), replayed per batch.

    The first step runs eagerly (the warm-up that creates the optimizer state), then one step
    is recorded on static input tensors; each later step copies the next batch into them and
    replays. The losses follow the same batches as an eager Side, so ``validate`` applies.
    """

    def __init__(self, side):
        self.side, self.sync, self.graph = side, side.sync, None

    def step(self):
        s = self.side
        if self.graph is None:
            loss = s.step()
            x, y = s.batches[0]
            self.x, self.y = x.clone(), y.clone()
            self.graph = pydl.cuda.CUDAGraph()
            with pydl.cuda.graph(self.graph):
                self.loss = s.train(self.x, self.y)
            return loss
        x, y = s.next_batch()
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss


def _synchronizer(lib, device):
    if not str(device).startswith("cuda"):
        return None
    return lib.cuda.synchronize


def torch_runs_on(device) -> bool:
    """Whether PyTorch is installed and can use ``device`` (a CPU build has no CUDA)."""
    return torch is not None and (not str(device).startswith("cuda") or torch.cuda.is_available())


def make_pair(spec, batch, *, device="cpu", dtype="float32", seed=0, tiny=False,
              n_batches=BATCHES_PER_SIDE):
    """(pydl Side, torch Side or None) with identical weights and the same batches."""
    config = spec.tiny if tiny else {}
    rng = np.random.default_rng(seed)
    batches = [spec.inputs(rng, batch, np.dtype(dtype), **config) for _ in range(n_batches)]
    pmodel = spec.build(pydl, **config).to(device=device, dtype=dtype)
    tside = None
    if torch_runs_on(device):
        torch.manual_seed(seed)
        tmodel = spec.build(torch, **config).to(device=device, dtype=getattr(torch, dtype))
        state = {k: v.detach().cpu().numpy() for k, v in tmodel.state_dict().items()}
        pmodel.load_state_dict(state)
        tside = Side(torch, tmodel, batches, device)
    return Side(pydl, pmodel, batches, device), tside


def validate(pside, tside, dtype="float32", steps=VALIDATE_STEPS):
    """Take ``steps`` training steps on both sides; return (ok, max relative loss error,
    pydl losses, torch losses). The first loss checks the forward pass and the weight copy;
    the later ones also check backward and the optimizer step."""
    plosses = [float(pside.step().item()) for _ in range(steps)]
    tlosses = [float(tside.step().item()) for _ in range(steps)]
    err = max(abs(p - t) / max(abs(t), 1e-12) for p, t in zip(plosses, tlosses, strict=True))
    return err <= TOLERANCE[dtype], err, plosses, tlosses


def time_steps(sides: dict, quick=False):
    """Median ms of one full training step for each side, taking turns step by step (see
    ``common.time_stats_interleaved``), after warm-up, the device synchronized each time."""
    kw = {"warmup": 2, "min_runs": 5, "max_runs": 30, "min_time": 0.5} if quick else \
        {"warmup": 3, "min_runs": 10, "max_runs": 200, "min_time": 3.0}
    return time_stats_interleaved({k: s.step for k, s in sides.items()},
                                  syncs={k: s.sync for k, s in sides.items()}, **kw)


# ----------------------------------------------------------------------------- the table


def bench_row(spec, batch, device, quick):
    """Validate then time one (model, batch, device); returns the result dict."""
    pside, tside = make_pair(spec, batch, device=device)
    row = {"model": spec.name, "batch": batch, "device": device, "dtype": "float32"}
    target = TARGETS.get((spec.name, device.split(":")[0], batch))
    row["target"] = target[1] if target else ""
    row["target_max_ratio"] = target[0] if target else None
    if tside is not None:
        ok, err, plosses, tlosses = validate(pside, tside)
        row.update(max_rel_loss_err=err, pydl_losses=plosses, torch_losses=tlosses)
        if not ok:
            row["status"] = "INVALID"
            print(f"  {spec.name} batch {batch} {device}: INVALID, losses pydl {plosses} vs "
                  f"torch {tlosses} (max relative error {err:.2e})", flush=True)
            return row
    sides = {"pydl": pside, "torch": tside} if tside else {"pydl": pside}
    if device.startswith("cuda"):
        sides["pydl_graph"] = _graph_side(spec, batch, device, row)
    stats = time_steps({k: v for k, v in sides.items() if v is not None}, quick)
    for lib, st in stats.items():
        row.update({f"{lib}_ms": st["median_ms"], f"{lib}_min_ms": st["min_ms"],
                    f"{lib}_cpu_time_ms": st["cpu_time_median_ms"], f"{lib}_runs": st["runs"],
                    f"{lib}_samples_per_s": batch / st["median_ms"] * 1e3})
    # both sides took the same number of steps: their losses stay close (float32 rounding
    # drifts a little), a sign the timed steps kept training rather than diverging
    row.update({f"{lib}_loss_after_timing": float(side.step().item())
                for lib, side in (("pydl", pside), ("torch", tside)) if side is not None})
    if tside is not None and "pydl_graph_ms" in row:
        row["graph_ratio"] = row["pydl_graph_ms"] / row["torch_ms"]
    if tside is not None:
        row["ratio"] = row["pydl_ms"] / row["torch_ms"]
        row["ratio_of_min"] = row["pydl_min_ms"] / row["torch_min_ms"]
        row["ratio_of_cpu_time"] = row["pydl_cpu_time_ms"] / row["torch_cpu_time_ms"]
    if target and "ratio" in row:
        if "CUDA graph" in target[1]:  # the batch-64 GPU rows: the recorded step's time
            ratio = row.get("graph_ratio")
            row["status"] = ("MISSED (no graph row)" if ratio is None
                             else "met" if ratio <= target[0] else "MISSED")
        else:
            row["status"] = _status(row["ratio"] <= target[0],
                                    row["ratio_of_cpu_time"] <= target[0])
    else:
        row["status"] = ("validated" if tside is not None
                         else f"not validated (no torch on {device})")
    print(f"  {spec.name:12s} batch {batch:5d} {device:5s} pydl {row['pydl_ms']:9.2f} ms"
          + (f"  torch {row['torch_ms']:9.2f} ms  ratio {row['ratio']:5.2f}x"
             if "ratio" in row else "") + f"  {row['status']}", flush=True)
    return row


def _graph_side(spec, batch, device, row):
    """A GraphSide on fresh copies of the weights, validated against a fresh torch side;
    None (with the reason in ``row``) when it cannot be recorded or gives other losses."""
    pside, tside = make_pair(spec, batch, device=device)
    gside = GraphSide(pside)
    try:
        if tside is None:
            gside.step()
            return gside
        ok, err, plosses, tlosses = validate(gside, tside)
    except pydl.cuda.GraphError as exc:
        row["graph_status"] = f"not recorded: {exc}"
        return None
    row["graph_max_rel_loss_err"] = err
    if not ok:
        row["graph_status"] = "INVALID"
        print(f"  {spec.name} batch {batch} {device} graph: INVALID, losses {plosses} vs "
              f"torch {tlosses}", flush=True)
        return None
    row["graph_status"] = "validated"
    return gside


def _status(wall_ok, cpu_ok):
    """'met' / 'MISSED' when wall time and CPU time agree; otherwise which one meets it."""
    if wall_ok == cpu_ok:
        return "met" if wall_ok else "MISSED"
    return "met by wall time only" if wall_ok else "met by CPU time only (busy machine?)"


HEADERS = ["model", "batch", "device", "pydl ms/step", "torch ms/step", "pydl samples/s",
           "torch samples/s", "pydl/torch time", "(CPU time)", "graph/torch time", "target",
           "status"]


def table_rows(rows):
    def fmt(v, spec):
        return "" if v is None else format(v, spec)

    return [[r["model"], r["batch"], r["device"], fmt(r.get("pydl_ms"), ".2f"),
             fmt(r.get("torch_ms"), ".2f"), fmt(r.get("pydl_samples_per_s"), ",.0f"),
             fmt(r.get("torch_samples_per_s"), ",.0f"),
             fmt(r.get("ratio"), ".2f") + ("x" if "ratio" in r else ""),
             fmt(r.get("ratio_of_cpu_time"), ".2f") + ("x" if "ratio" in r else ""),
             fmt(r.get("graph_ratio"), ".2f") + ("x" if "graph_ratio" in r else
                                                  r.get("graph_status", "")),
             r["target"], r["status"]] for r in rows]


def devices():
    """'cpu', plus 'cuda' when pydl sees a GPU."""
    import pydl.cuda

    return ["cpu", "cuda"] if pydl.cuda.is_available() else ["cpu"]


def set_threads(threads):
    """Give every library ``threads`` threads (0: leave the defaults); return what is in use."""
    from pydl.backend import cpu

    ext = cpu.extension
    if threads > 0:
        if torch is not None:
            torch.set_num_threads(threads)
        if ext is not None:
            ext.set_num_threads(threads)
    return {"threads_requested": threads or "library defaults",
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "pydl_cpp_threads": ext.num_threads() if ext is not None else "no extension"}


# ----------------------------------------------------------------------------- torch first
# The same pydl-only job (an MLP and a small CNN through Model.fit) in fresh interpreters:
# alone, after `import torch`, and after `import torch` plus gc.freeze(). Importing torch adds
# ~150,000 objects that every full collection of Python's cyclic GC walks (~0.1 s each); see
# docs/training.md, "pydl beside PyTorch in one process".
TORCH_FIRST_JOB = """
import json, os, sys, time
exec(sys.argv[1])
import numpy as np, pydl
from pydl import nn
epochs = int(sys.argv[2])
rng = np.random.default_rng(0)
x, y = rng.standard_normal((2048, 64)).astype(np.float32), rng.integers(0, 10, 2048)
xi, yi = rng.standard_normal((512, 1, 16, 16)).astype(np.float32), rng.integers(0, 10, 512)
c0, t0 = time.process_time(), time.perf_counter()
pydl.manual_seed(0)
for layers, data in (([nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)], (x, y)),
                     ([nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                       nn.Linear(512, 10)], (xi, yi))):
    model = pydl.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(*data, epochs=epochs, batch_size=64, verbose=0)
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}))
"""
TORCH_FIRST_CASES = {"pydl alone": "", "torch imported first": "import torch",
                     "torch first, then gc.freeze()": "import torch, gc; gc.freeze()"}


def torch_first_rows(reps=5, epochs=10, cases=tuple(TORCH_FIRST_CASES)):
    """Median wall and CPU seconds of TORCH_FIRST_JOB per case, the cases taking turns in each
    of ``reps`` rounds (so machine load hits all alike); threads as this process's env sets."""
    import json
    import statistics
    import subprocess

    runs = {case: [] for case in cases}
    for _ in range(reps):
        for case in cases:
            out = subprocess.run([sys.executable, "-c", TORCH_FIRST_JOB,
                                  TORCH_FIRST_CASES[case], str(epochs)],
                                 check=True, capture_output=True, text=True).stdout
            runs[case].append(json.loads(out.splitlines()[-1]))
    rows = []
    for case, got in runs.items():
        wall = statistics.median(r["wall_s"] for r in got)
        cpu = statistics.median(r["cpu_s"] for r in got)
        rows.append({"case": case, "wall_s": wall, "cpu_s": cpu, "runs": len(got),
                     "min_wall_s": min(r["wall_s"] for r in got)})
    for r in rows:
        r["wall_ratio"] = r["wall_s"] / rows[0]["wall_s"]
        r["cpu_ratio"] = r["cpu_s"] / rows[0]["cpu_s"]
    return rows


# ----------------------------------------------------------------------------- profile


def profile(spec_name, batch, steps=30, top=20):
    """cProfile ``steps`` pydl training steps (after warm-up); print the top functions by
    own time (file:function, % of the total). The profiler's clock is the process's CPU
    time, so time spent waiting for a core on a busy machine is not charged to anyone."""
    spec = SPECS[spec_name]
    pside, _ = make_pair(spec, batch)
    for _ in range(3):
        pside.step()
    prof = cProfile.Profile(time.process_time)  # CPU time: waiting for a core is not cost
    prof.enable()
    for _ in range(steps):
        pside.step()
    prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    print(f"\ncProfile of {steps} pydl steps, {spec_name} batch {batch}: {total:.2f} s of CPU "
          f"time, {1e3 * total / steps:.2f} ms per step (profiler overhead included)\n")
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    rows = []
    for (path, line, func), (_cc, calls, tottime, cumtime, _callers) in entries:
        short = os.path.relpath(path) if path.startswith(os.sep) else path
        rows.append([f"{short}:{line}:{func}", calls // steps, f"{100 * tottime / total:.1f}%",
                     f"{100 * cumtime / total:.1f}%"])
    print_table(["function (file:line:name)", "calls/step", "own time", "cumulative"], rows)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(15)
    print(out.getvalue())


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes, fewer runs")
    parser.add_argument("--only", default="", help="comma-separated models: " + ",".join(SPECS))
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for every library (default 1; 0: library defaults)")
    parser.add_argument("--device", default="", help="only this device (cpu or cuda)")
    parser.add_argument("--profile", default="", metavar="MODEL:BATCH",
                        help="cProfile pydl's step instead of benchmarking, e.g. mlp:256")
    parser.add_argument("--note", default="", help="a line for the markdown (e.g. the load)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    threads = set_threads(args.threads)
    if args.profile:
        name, _, batch = args.profile.partition(":")
        profile(name, int(batch or 256))
        return 0
    if torch is None:
        print("bench_train: PyTorch is not installed: pydl's steps are timed but not "
              "validated, and there is no reference to compare with (pip install torch).")
    chosen = [s for s in args.only.split(",") if s] or list(SPECS)
    devs = [args.device] if args.device else devices()
    load_before = os.getloadavg()
    rows = []
    for device in devs:
        for name in chosen:
            spec = SPECS[name]
            sizes = spec.quick if args.quick else (
                spec.batches if device == "cpu" else spec.gpu_batches)
            for batch in sizes:
                rows.append(bench_row(spec, batch, device, args.quick))
    table = print_table(HEADERS, table_rows(rows), "Training steps: pydl vs PyTorch, "
                        "same model, same weights, same run (float32)")
    invalid = [r for r in rows if r["status"] == "INVALID"]
    targeted = [r for r in rows if r["target"]]
    compared = [r for r in targeted if "ratio" in r]
    summary = (f"{sum(r['status'] == 'met' for r in compared)} of {len(compared)} compared "
               f"targeted rows meet their target; {len(invalid)} invalid row(s).")
    uncompared = [r for r in rows if "ratio" not in r and r["status"] != "INVALID"]
    if uncompared:
        why = ("PyTorch is not installed (pip install torch)" if torch is None
               else "PyTorch cannot run on that device")
        summary += (f" {len(uncompared)} row(s) not compared with PyTorch, {why}: "
                    + ", ".join(f"{r['model']} batch {r['batch']} {r['device']}"
                                for r in uncompared) + ".")
    print("\n" + summary)
    torch_first, torch_first_table = [], ""
    if torch is not None and "cpu" in devs:
        torch_first = torch_first_rows(reps=3 if args.quick else 5)
        torch_first_table = "\n\n" + print_table(
            ["pydl job, fresh process", "wall s", "CPU s", "wall ratio", "CPU ratio"],
            [[r["case"], f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}", f"{r['wall_ratio']:.2f}x",
              f"{r['cpu_ratio']:.2f}x"] for r in torch_first],
            "With torch imported first: the same pydl-only job (MLP + CNN, Model.fit) in fresh "
            "processes taking turns, medians")
    if args.no_write:
        return 1 if invalid else 0
    info = machine_info(**threads, torch=torch.__version__ if torch is not None else None)
    info["machine_load"] = load_note(load_before[0])
    from pydl.backend import cpu

    if cpu.extension is not None:
        info["extension_build"] = dict(cpu.extension._C.build_info())
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    note = f"\n\n**Note:** {args.note}" if args.note else ""
    markdown = (
        "# Training steps: pydl vs PyTorch\n\n" + machine + note + "\n\n"
        "One full step = zero_grad, forward, cross-entropy, backward, AdamW step. Both "
        "models start from the same weights (PyTorch's initialization copied into pydl) and "
        f"see the same {BATCHES_PER_SIDE} batches in turn; each row was validated first: "
        f"{VALIDATE_STEPS} steps' losses "
        f"agree within {TOLERANCE['float32']:.0e} relative. Times are medians after warm-up; "
        "pydl and PyTorch take turns step by step in the same process, so both see the same "
        "machine load. 'pydl/torch time' below 1 means pydl is faster; '(CPU time)' is the "
        "same ratio of the medians of the process's CPU time per step, which time spent "
        "waiting for a core does not inflate: the steadier figure when other processes "
        "compete for the cores (min times and every loss are in the JSON). Threads: every "
        "library was given "
        f"{threads['threads_requested']} thread(s) (OpenBLAS, pydl's C++ kernels, "
        "torch.set_num_threads).\n\nModels:\n\n"
        + "\n".join(f"- {s.name}: {s.description}" for s in SPECS.values() if s.name in chosen)
        + "\n\n" + table + "\n\n" + summary + torch_first_table + "\n")
    paths = write_results("train_steps", {"machine": info, "note": args.note,
                                          "validate_steps": VALIDATE_STEPS,
                                          "tolerance": TOLERANCE, "rows": rows,
                                          "torch_imported_first": torch_first}, markdown)
    print("\nwrote " + " and ".join(paths))
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
