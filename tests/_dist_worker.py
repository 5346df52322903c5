"""Run by tests/test_distributed.py under ``mpiexec -n 2``: ``python _dist_worker.py SCENARIO
OUT_DIR``. Each rank writes what the test compares to ``OUT_DIR/SCENARIO-RANK.npz``."""

import os
import sys
import time

import numpy as np

import pydl
import pydl.distributed as dist
from pydl import nn, optim
from pydl.data import DataLoader, TensorDataset

N, BATCH, STEPS_EPOCHS = 48, 6, 2  # 48 samples, 6 per rank per step, 2 epochs


def data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((N, 5)), rng.integers(0, 3, N)


def net(double=True):
    pydl.manual_seed(3)
    module = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    return module.double() if double else module


def f64(array):
    return pydl.tensor(array, dtype=pydl.float64)


def params(module):
    return {f"p{i}": p.data.copy() for i, p in enumerate(module.parameters())}


def train(module, loader, sampler, wrap=None):
    model = module if wrap is None else wrap
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(STEPS_EPOCHS):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb.to(pydl.float64)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return params(module)


def ddp(out, rank, size):
    """DDP with three bucketings; on rank 0 also one process on the combined batches."""
    x, y = data()
    ds = TensorDataset(x, y)
    result = {}
    for name, cap in (("one_bucket", 25), ("per_param", 0), ("small", 0.0002)):
        sampler = dist.DistributedSampler(ds, seed=5)
        loader = DataLoader(ds, batch_size=BATCH, sampler=sampler)
        module = net()
        if rank == 1:  # different weights on rank 1: the wrap must broadcast rank 0's
            for p in module.parameters():
                p.data += 1.0
        wrapped = dist.DistributedDataParallel(module, bucket_cap_mb=cap)
        result[f"{name}_buckets"] = np.array([len(wrapped.buckets)])
        for k, v in train(module, loader, sampler, wrapped).items():
            result[f"{name}_{k}"] = v
    if rank == 0:
        sampler = dist.DistributedSampler(ds, num_replicas=1, rank=0, seed=5)
        loader = DataLoader(ds, batch_size=BATCH * size, sampler=sampler)
        for k, v in train(net(), loader, sampler).items():
            result[f"single_{k}"] = v
    return result


def accumulate(out, rank, size):
    """no_sync: two half-batches accumulated locally, then one synced backward."""
    x, y = data()
    module = net()
    wrapped = dist.DistributedDataParallel(module)
    opt = optim.SGD(wrapped.parameters(), lr=0.1)
    shard = slice(rank * 12, rank * 12 + 12)
    xs, ys = f64(x[shard]), pydl.tensor(y[shard])
    opt.zero_grad()
    with wrapped.no_sync():
        (nn.functional.cross_entropy(wrapped(xs[:6]), ys[:6]) * 0.5).backward()
    local = {f"local_{i}": p.grad.data.copy() for i, p in enumerate(module.parameters())}
    (nn.functional.cross_entropy(wrapped(xs[6:]), ys[6:]) * 0.5).backward()
    opt.step()
    result = {**local, **params(module)}
    if rank == 0:  # the reference: each rank's whole shard in one process, grads averaged
        grads = []
        for r in range(size):
            ref = net()
            xr, yr = f64(x[r * 12:r * 12 + 12]), pydl.tensor(y[r * 12:r * 12 + 12])
            nn.functional.cross_entropy(ref(xr), yr).backward()
            grads.append([p.grad.data for p in ref.parameters()])
        ref = net()
        for i, p in enumerate(ref.parameters()):
            result[f"single_p{i}"] = p.data - 0.1 * sum(g[i] for g in grads) / size
    return result


class Probe(pydl.autograd.Function):
    """Identity whose backward appends "probe" to ``EVENTS``: a point inside backward."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        EVENTS.append("probe")
        return g


EVENTS = []


def overlap(out, rank, size):
    """One bucket per parameter; record when each bucket's all-reduce starts relative to a
    probe between the two layers, and read the gradients right after backward."""
    from pydl.distributed.parallel import _Bucket

    x, y = data()
    module = net()
    wrapped = dist.DistributedDataParallel(module, bucket_cap_mb=0)
    index = {id(b): k for k, b in enumerate(wrapped._buckets)}
    names = {id(p): f"p{i}" for i, p in enumerate(module.parameters())}
    original = _Bucket.start

    def start(bucket):  # the real start, and a note of when it ran
        EVENTS.append(f"start{index[id(bucket)]}")
        original(bucket)

    _Bucket.start = start
    shard = slice(rank * 6, rank * 6 + 6)
    h = module[1](module[0](f64(x[shard])))
    loss = nn.functional.cross_entropy(module[2](Probe.apply(h)), pydl.tensor(y[shard]))
    loss.backward()
    EVENTS.append("returned")
    _Bucket.start = original
    result = {"events": np.array(EVENTS), "order": np.array(
        [names[id(b.params[0])] for b in wrapped._buckets])}
    result.update({f"grad_p{i}": p.grad.data.copy() for i, p in enumerate(module.parameters())})
    # the reference: the local gradients of every rank's shard (plain module), averaged
    local = net()
    nn.functional.cross_entropy(local(f64(x[shard])), pydl.tensor(y[shard])).backward()
    for i, p in enumerate(local.parameters()):
        result[f"mean_p{i}"] = np.mean([g.numpy() for g in dist.all_gather(p.grad)], axis=0)
    return result


def clip_closure(out, rank, size):
    """Gradient clipping before step() and an optimizer closure, with no sync_gradients()
    call; on rank 0 also one process on the combined batches."""
    x, y = data()
    result = {}

    def run(module, model, shards):
        opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
        for step in range(3):
            xs, ys = shards(step)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xs), ys).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.05)  # the norm of averaged grads
            opt.step()
        for step in range(3, 6):
            xs, ys = shards(step)

            def closure(xs=xs, ys=ys):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(xs), ys)
                loss.backward()
                return loss

            opt.step(closure)
        return params(module)

    def mine(step):
        lo = step * BATCH * size + rank * BATCH
        return f64(x[lo:lo + BATCH]), pydl.tensor(y[lo:lo + BATCH])

    def combined(step):
        lo = step * BATCH * size
        return f64(x[lo:lo + BATCH * size]), pydl.tensor(y[lo:lo + BATCH * size])

    module = net()
    for k, v in run(module, dist.DistributedDataParallel(module, bucket_cap_mb=0.0002),
                    mine).items():
        result[k] = v
    if rank == 0:
        single = net()
        for k, v in run(single, single, combined).items():
            result[f"single_{k}"] = v
    return result


def unused(out, rank, size):
    """A parameter that gets no gradient (on rank 1 only, then on both ranks) must not
    hang the job; the others are averaged."""
    pydl.manual_seed(3)
    a, b, c = nn.Linear(4, 4).double(), nn.Linear(4, 4).double(), nn.Linear(4, 2).double()
    module = nn.ModuleList([a, b, c])
    wrapped = dist.DistributedDataParallel(module, bucket_cap_mb=0)
    x = f64(np.full((3, 4), rank + 1.0))
    result = {"buckets": np.array([len(wrapped.buckets)])}
    for step, skip_b in enumerate((rank == 1, True)):
        module.zero_grad()
        h = a(x).tanh()
        h = h if skip_b else b(h).tanh()
        c(h).sum().backward()
        for i, p in enumerate(module.parameters()):
            result[f"s{step}_p{i}"] = p.grad.numpy() if p.grad is not None else np.zeros(0)
    return result


def double_backward(out, rank, size):
    """backward(create_graph=True) on a wrapped model raises naming the way out; inside
    no_sync it works, and autograd.grad(create_graph=True) (a gradient penalty) too."""
    module = net()
    wrapped = dist.DistributedDataParallel(module)
    x = f64(np.ones((2, 5)) * (rank + 1))
    message = ""
    try:
        (wrapped(x) ** 2).sum().backward(create_graph=True)
    except RuntimeError as exc:
        message = str(exc)
    module.zero_grad()
    with wrapped.no_sync():
        (wrapped(x) ** 2).sum().backward(create_graph=True)
    x.requires_grad = True
    (g,) = pydl.autograd.grad((wrapped(x) ** 2).sum(), [x], create_graph=True)
    module.zero_grad()
    ((g ** 2).sum()).backward()  # second order through the penalty, then averaged
    return {"message": np.array(message), "p0": module[0].weight.grad.numpy()}


def fit(out, rank, size):
    """Model.fit under the launcher (float32, as fit feeds it) vs one process on the
    combined batches."""
    x, y = data()
    model = pydl.Model(net(double=False)).compile(optimizer="sgd", lr=0.1, metrics=["accuracy"])
    ckpt = os.path.join(out, "fit-ckpt.safetensors")
    hist = model.fit(x, y, epochs=2, batch_size=BATCH, shuffle=False, verbose=0,
                     callbacks=[pydl.train.callbacks.ModelCheckpoint(
                         ckpt, monitor="loss", save_training_state=True)])
    result = {"loss": np.array(hist.history["loss"]), "acc": np.array(hist.history["accuracy"])}
    result.update(params(model.module))
    return result


def collectives(out, rank, size):
    t = pydl.tensor(np.arange(4.0) + 10 * rank)
    dist.all_reduce(t)
    m = pydl.tensor(np.arange(4.0) + 10 * rank)
    dist.all_reduce(m, op="mean")
    mx = pydl.tensor(np.array([rank, -rank], dtype=np.float32))
    work = dist.all_reduce(mx, op="max", async_op=True)
    work.wait()
    b = pydl.tensor(np.full((2, 3), float(rank)))
    dist.broadcast(b, src=1)
    view = pydl.tensor(np.arange(12.0).reshape(3, 4) * (rank + 1))
    col = view[:, 1]  # a non-contiguous view: reduced through a contiguous copy
    dist.all_reduce(col)
    gathered = dist.all_gather(pydl.tensor(np.array([rank, rank * 2], dtype=np.int64)))
    dist.barrier()
    return {"sum": t.numpy(), "mean": m.numpy(), "max": mx.numpy(), "bcast": b.numpy(),
            "col": col.numpy(), "gather": np.stack([g.numpy() for g in gathered])}


def fail(out, rank, size):
    """Rank 1 raises; rank 0 waits in an all-reduce that can never finish."""
    if rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    dist.all_reduce(pydl.tensor(np.ones(3)))
    return {}


def stuck(out, rank, size):
    """Rank 1 hangs without failing; rank 0's all-reduce must time out."""
    if rank == 1:
        time.sleep(600)
    dist.all_reduce(pydl.tensor(np.ones(3)))
    return {}


def main():
    scenario, out = sys.argv[1], sys.argv[2]
    dist.init_process_group()
    rank, size = dist.get_rank(), dist.get_world_size()
    result = globals()[scenario](out, rank, size)
    np.savez(os.path.join(out, f"{scenario}-{rank}.npz"), **result)


if __name__ == "__main__":
    main()
