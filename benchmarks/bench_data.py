"""MNIST LeNet-5 training throughput, data loading included: pydl against PyTorch.

Both libraries train the same model (``pydl.models.LeNet5``, rebuilt layer by layer with
``torch.nn`` so PyTorch's weights load into it) with Adam on batches of real MNIST images,
shuffled, and augmented by the same NumPy transform (the ``lenet`` recipe's random affine
moves). Each library feeds its model through its own loader: ``pydl.data.DataLoader`` with
``transform=`` and ``num_workers``, and ``torch.utils.data.DataLoader`` over a dataset that
returns whole augmented batches, with its ``num_workers``. So the table compares the whole
training loop, with and without loader workers, images per second.

**Validated first**: the pydl model with PyTorch's initial weights must give PyTorch's loss
on the same batch, for three Adam steps (relative error below 1e-4). Then each
configuration runs ``--steps`` training steps after a warm-up of a few; configurations take
turns (pydl w0, torch w0, pydl w1, ...) for ``--rounds`` rounds and the best round counts.

    python benchmarks/bench_data.py             # results in benchmarks/results/data_loading.*
    python benchmarks/bench_data.py --quick     # fewer steps, one round (the smoke test)
    python benchmarks/bench_data.py --loader-only   # pydl's loader alone, per-sample dataset

Threads: like bench_train.py, each library computes on ``--threads`` threads (default 1:
``pydl.set_num_threads``, which limits NumPy's BLAS through threadpoolctl, and
``torch.set_num_threads``), so loader workers have the machine's other core(s) to themselves.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from common import cpu_model, load_note, print_table, source_version, write_results  # noqa: E402

import pydl  # noqa: E402
from pydl.data import DataLoader, TensorDataset  # noqa: E402
from pydl.data import transforms as T  # noqa: E402
from pydl.models import LeNet5  # noqa: E402

try:
    import torch
except ImportError:  # the table then has pydl's rows only
    torch = None

BATCH = 128
TOLERANCE = 1e-4


def augmentation(seed=0):
    """The lenet recipe's MNIST augmentation."""
    return T.Compose([T.RandomAffine(5, translate=(0.06, 0.06), scale=(0.95, 1.05))], seed=seed)


def torch_lenet5():
    """``pydl.models.LeNet5()`` in torch.nn, with the same parameter names."""
    nn = torch.nn

    class TorchLeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
            self.classifier = nn.Sequential(
                nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                nn.Dropout(0.0), nn.Linear(84, 10))

        def forward(self, x):
            return self.classifier(self.features(x))

    return TorchLeNet5()


class _TorchBatches:
    """A torch map-style dataset whose items are whole augmented batches (index arrays in)."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __getitem__(self, indices):
        indices = np.sort(np.asarray(indices))
        return (torch.from_numpy(self.transform(self.x[indices])),
                torch.from_numpy(self.y[indices]))

    def __len__(self):
        return len(self.y)


def training_step(lib, model, opt):
    """``step(x, y)``: one Adam step of ``model`` on a batch, in library ``lib``."""

    def step(xb, yb):
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss

    return step


def pydl_side(x, y, workers, kind, state):
    model = LeNet5()
    model.load_state_dict(state)
    opt = pydl.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, seed=0,
                        transform=augmentation(), num_workers=workers, worker_type=kind,
                        persistent_workers=workers > 0)

    return loader, training_step(pydl, model, opt)


def torch_side(x, y, workers, model):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = torch.utils.data.BatchSampler(
        torch.utils.data.RandomSampler(range(len(y)), generator=torch.Generator().manual_seed(0)),
        batch_size=BATCH, drop_last=False)
    loader = torch.utils.data.DataLoader(_TorchBatches(x, y, augmentation()), sampler=sampler,
                                         batch_size=None, num_workers=workers,
                                         persistent_workers=workers > 0)

    return loader, training_step(torch, model, opt)


def validate(x, y):
    """pydl's LeNet5 with torch's weights: the same losses for three Adam steps on a batch."""
    torch.manual_seed(0)
    tmodel = torch_lenet5()
    state = {k: v.detach().numpy().copy() for k, v in tmodel.state_dict().items()}
    pmodel = LeNet5()
    pmodel.load_state_dict(state)
    popt = pydl.optim.Adam(pmodel.parameters(), lr=1e-3)
    topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
    xb, yb = x[:BATCH], y[:BATCH]
    errs = []
    for _ in range(3):
        pl = pydl.nn.functional.cross_entropy(pmodel(pydl.tensor(xb)), pydl.tensor(yb))
        popt.zero_grad()
        pl.backward()
        popt.step()
        tl = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(xb)),
                                               torch.from_numpy(yb))
        topt.zero_grad()
        tl.backward()
        topt.step()
        errs.append(abs(pl.item() - tl.item()) / abs(tl.item()))
    return max(errs), state


def images_per_second(loader, step, steps, warmup):
    """Images per second over ``steps`` training steps fed by ``loader``, after ``warmup``."""
    it = iter(loader)
    for _ in range(warmup):
        step(*next(it))
    t0 = time.perf_counter()
    seen = 0
    for _ in range(steps):
        xb, yb = next(it)
        step(xb, yb)
        seen += len(yb)
    seconds = time.perf_counter() - t0
    del it  # ends the epoch; persistent workers stay for the next round
    return seen / seconds


class PerSampleMNIST(pydl.data.Dataset):
    """A map-style dataset doing Python work per sample (standardises each image), the case
    where worker processes can run ``__getitem__`` in parallel and threads cannot."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = self.x[i]
        return (img - img.mean()) / (img.std() + 1e-6), self.y[i]


def loader_only(x, y, rounds):
    """Samples/s of pydl's loader alone over a per-sample dataset: no workers, 2 processes,
    2 threads, taking turns for ``rounds`` rounds; prints the best of each."""
    configs = {"no workers": {}, "2 processes": {"num_workers": 2},
               "2 threads": {"num_workers": 2, "worker_type": "thread"}}
    best = dict.fromkeys(configs, 0.0)
    for _ in range(rounds):
        for name, kw in configs.items():
            loader = DataLoader(PerSampleMNIST(x, y), batch_size=BATCH, shuffle=True, seed=0,
                                transform=augmentation(), **kw)
            t0 = time.perf_counter()
            n = sum(len(batch[1]) for batch in loader)
            best[name] = max(best[name], n / (time.perf_counter() - t0))
    print_table(["pydl loader, per-sample dataset + augmentation", "samples/s"],
                [[name, f"{v:.0f}"] for name, v in best.items()])
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", default="0,1,2", help="worker counts to compare")
    parser.add_argument("--loader-only", action="store_true",
                        help="time only pydl's loader over a per-sample dataset, no training")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = 6, 1
    if args.threads > 0:
        pydl.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
    (x, y), _ = pydl.data.mnist()
    if args.loader_only:
        loader_only(x[:BATCH * 100], y[:BATCH * 100], args.rounds)
        return
    warmup = 3
    n = BATCH * (args.steps + warmup + 1)  # one pass covers warm-up and timed steps
    x, y = x[:n], y[:n]
    rows, results = [], []
    if torch is not None:
        err, state = validate(x, y)
        ok = err <= TOLERANCE
        print(f"validation: pydl vs torch loss over 3 Adam steps, max relative error {err:.2e} "
              f"({'ok' if ok else 'INVALID'})")
        if not ok:
            raise SystemExit("pydl's LeNet5 does not match PyTorch's: not timing it")
    else:
        state = LeNet5().state_dict()
        err, ok = None, None
    workers = [int(w) for w in args.workers.split(",")]
    configs = [("pydl", w, "process") for w in workers]
    configs += [("pydl", w, "thread") for w in workers if w > 0]
    if torch is not None:
        configs += [("torch", w, "process") for w in workers]
    sides = {}
    for lib, w, kind in configs:
        if lib == "pydl":
            sides[(lib, w, kind)] = pydl_side(x, y, w, kind, state)
        else:
            tmodel = torch_lenet5()
            tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            sides[(lib, w, kind)] = torch_side(x, y, w, tmodel)
    best = {key: 0.0 for key in sides}
    start_load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for key, (loader, step) in sides.items():
            best[key] = max(best[key], images_per_second(loader, step, args.steps, warmup))
    for loader, _ in sides.values():
        if hasattr(loader, "close"):
            loader.close()
    for (lib, w, kind), ips in best.items():
        ref = best.get(("torch", w, "process"))
        ratio = ips / ref if ref else None
        rows.append([lib, str(w), kind if w else "-", f"{ips:.0f}",
                     f"{ratio:.2f}" if ratio else "-"])
        results.append({"library": lib, "workers": w, "worker_type": kind if w else None,
                        "images_per_s": ips, "vs_torch_same_workers": ratio})
    header = ["library", "workers", "worker type", "images/s", "pydl/torch (same workers)"]
    table = print_table(header, rows)
    note = load_note(start_load)
    print(note)
    md = ["# MNIST LeNet-5 training with data loading, pydl vs PyTorch", "",
          f"Batch {BATCH}, Adam, random affine augmentation in the loader, {args.steps} steps "
          f"per configuration, best of {args.rounds} rounds, {args.threads} compute thread(s) "
          f"per library. CPU: {cpu_model()}, {os.cpu_count()} cores. {note}", "",
          f"Validated: max relative loss error {err:.1e} over 3 Adam steps." if err is not None
          else "Not validated (PyTorch not installed).", "", table]
    write_results("data_loading", {"rows": results, "batch": BATCH, "steps": args.steps,
                                   "rounds": args.rounds, "threads": args.threads,
                                   "validation_error": err, "source": source_version(),
                                   "load": note}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
