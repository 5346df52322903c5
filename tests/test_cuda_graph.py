"""CUDA graphs (``pydl.cuda.CUDAGraph``, ``graph``, ``GraphedStep``; pydl/backend/cuda/graph.py).

The tests marked ``gpu`` are the real checks: a recorded training step replayed on new
batches ends with the parameters that eager steps give. They have not yet run (written on
machines without a GPU). The others check, on any machine, the errors and the optimizer
bookkeeping that a replay relies on.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import pydl
from pydl import nn, optim
from pydl.backend.cuda import graph as cuda_graph
from pydl.nn import functional as F


# ----------------------------------------------------------------------------- any machine
def test_replay_before_capture_says_so():
    with pytest.raises(pydl.cuda.GraphError, match="nothing recorded"):
        pydl.cuda.CUDAGraph().replay()


def test_graphed_step_needs_cuda_inputs():
    with pytest.raises(pydl.cuda.GraphError, match="input 0 is not a CUDA tensor"):
        pydl.cuda.GraphedStep(lambda x: x, pydl.zeros(3))
    with pytest.raises(ValueError, match="warm-up"):
        pydl.cuda.GraphedStep(lambda x: x, pydl.zeros(3), warmup=0)


@pytest.mark.skipif(pydl.cuda.is_available(), reason="checks the message without a GPU")
def test_capture_without_gpu_names_what_is_missing():
    with pytest.raises(RuntimeError, match="CuPy|CUDA|cuda"):
        with pydl.cuda.graph(pydl.cuda.CUDAGraph()):
            pass


def _stepped_adam():
    w = pydl.ones(4, requires_grad=True)
    opt = optim.AdamW([w], lr=0.1)
    (w * w).sum().backward()
    opt.step()
    return w, opt


def test_snapshot_rolls_back_step_counts():
    """The capture runs the optimizer's Python once without running its kernels: undone."""
    w, opt = _stepped_adam()
    before = cuda_graph._snapshot(opt)
    opt.step()
    assert opt.state[w]["step"] == 2 and opt._step_count == 2
    assert cuda_graph._restore(opt, before) is None
    assert opt.state[w]["step"] == 1 and opt._step_count == 1


def test_state_made_during_capture_is_refused():
    """State created while recording would be re-initialised by every replay."""
    w = pydl.ones(4, requires_grad=True)
    opt = optim.AdamW([w], lr=0.1)
    before = cuda_graph._snapshot(opt)
    (w * w).sum().backward()
    opt.step()
    message = cuda_graph._restore(opt, before)
    assert message is not None and "warm-up" in message
    assert w not in opt.state and opt._step_count == 0  # never-written state is dropped


def test_restore_drops_state_keys_made_during_capture():
    w = pydl.ones(4, requires_grad=True)
    opt = optim.AdamW([w], lr=0.1, amsgrad=True)
    (w * w).sum().backward()
    opt.step()
    del opt.state[w]["max_exp_avg_sq"]  # as if AMSGrad had been switched on afterwards
    before = cuda_graph._snapshot(opt)
    opt.step()
    assert cuda_graph._restore(opt, before) is not None
    assert set(opt.state[w]) == {"step", "exp_avg", "exp_avg_sq"} and opt.state[w]["step"] == 1


def test_optimizer_hook_is_inert_outside_captures():
    w, opt = _stepped_adam()
    assert cuda_graph._active is None
    cuda_graph.optimizer_step(opt)  # what Optimizer.step calls
    assert cuda_graph.scalar_slot((1.0,), np.float32, (0,)) is None
    assert not cuda_graph.capturing()


# ----------------------------------------------------------------------------- on a GPU
def _mlp():
    pydl.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5)).to("cuda")


def _lenet():
    pydl.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    ).to("cuda")


def _batches(model_kind, n):
    rng = np.random.default_rng(1)
    shape = (64, 20) if model_kind == "mlp" else (64, 1, 8, 8)
    classes = 5 if model_kind == "mlp" else 10
    return [(rng.standard_normal(shape).astype(np.float32),
             rng.integers(0, classes, 64)) for _ in range(n)]


def _make_optimizer(kind, model):
    if kind == "sgd":
        return optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                         weight_decay=1e-4), None
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    return opt, optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


def _train_step(model, opt):
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _assert_same(a, b):
    """Parameters and buffers (BatchNorm's running statistics too) agree."""
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        np.testing.assert_allclose(pa.cpu().numpy(), pb.cpu().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("model_kind", ["mlp", "lenet"])
@pytest.mark.parametrize("opt_kind", ["sgd", "adamw"])
def test_replays_match_eager_steps(model_kind, opt_kind):
    """Warm-up, capture, then replays on new batches: the same parameters as eager steps
    (AdamW with a StepLR scheduler between steps: bias corrections and lr change per step)."""
    eager = _mlp() if model_kind == "mlp" else _lenet()
    graphed = copy.deepcopy(eager)
    batches = _batches(model_kind, 6)
    eager.train(), graphed.train()

    opt, sched = _make_optimizer(opt_kind, eager)
    step = _train_step(eager, opt)
    eager_losses = []
    for x, y in batches:
        eager_losses.append(step(pydl.tensor(x, device="cuda"), pydl.tensor(y, device="cuda"))
                            .item())
        if sched:
            sched.step()

    opt, sched = _make_optimizer(opt_kind, graphed)
    step = _train_step(graphed, opt)
    x_static = pydl.tensor(batches[0][0], device="cuda")
    y_static = pydl.tensor(batches[0][1], device="cuda")
    losses = [step(x_static, y_static).item()]  # the warm-up is the first real step
    if sched:
        sched.step()
    g = pydl.cuda.CUDAGraph()
    with pydl.cuda.graph(g):
        loss = step(x_static, y_static)
    for x, y in batches[1:]:
        x_static.copy_(pydl.tensor(x))
        y_static.copy_(pydl.tensor(y))
        g.replay()
        losses.append(loss.item())
        if sched:
            sched.step()
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-6)
    _assert_same(graphed, eager)
    if opt_kind == "adamw":  # the Python side counted every replay as a step
        assert opt.state[next(iter(graphed.parameters()))]["step"] == len(batches)


@pytest.mark.gpu
def test_graphed_step_matches_eager():
    eager, graphed = _mlp(), _mlp()
    batches = _batches("mlp", 4)
    opt_e, _ = _make_optimizer("sgd", eager)
    opt_g, _ = _make_optimizer("sgd", graphed)
    step_e, step_g = _train_step(eager, opt_e), _train_step(graphed, opt_g)
    for x, y in batches:
        step_e(pydl.tensor(x, device="cuda"), pydl.tensor(y, device="cuda"))
    x0, y0 = batches[0]
    graphed_step = pydl.cuda.GraphedStep(step_g, pydl.tensor(x0, device="cuda"),
                                         pydl.tensor(y0, device="cuda"))
    for x, y in batches[1:]:
        graphed_step(pydl.tensor(x), pydl.tensor(y))
    _assert_same(graphed, eager)


@pytest.mark.gpu
def test_capture_refuses_what_it_cannot_replay():
    model = _mlp()
    x = pydl.randn(64, 20, device="cuda")
    y = pydl.zeros(64, dtype=pydl.int64, device="cuda")
    opt, _ = _make_optimizer("adamw", model)
    step = _train_step(model, opt)
    with pytest.raises(pydl.cuda.GraphError, match="warm-up"):  # no eager step first
        with pydl.cuda.graph(pydl.cuda.CUDAGraph()):
            step(x, y)
    assert opt._step_count == 0
    step(x, y)
    with pytest.raises(pydl.cuda.GraphError, match="host"):
        with pydl.cuda.graph(pydl.cuda.CUDAGraph()):
            step(x, y).item()
    with pytest.raises(pydl.cuda.GraphError, match="random"):
        with pydl.cuda.graph(pydl.cuda.CUDAGraph()):
            F.dropout(model(x), 0.5, training=True)
    with pytest.raises(pydl.cuda.GraphError, match="host-to-device"):
        with pydl.cuda.graph(pydl.cuda.CUDAGraph()):
            x + pydl.tensor(np.arange(20, dtype=np.float32), device="cuda")
    # after the failures, an ordinary capture works and the optimizer counted one step
    assert opt._step_count == 1
    g = pydl.cuda.CUDAGraph()
    with pydl.cuda.graph(g):
        loss = step(x, y)
    g.replay()
    assert np.isfinite(loss.item()) and opt._step_count == 2
