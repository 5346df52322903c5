"""Tensor gradient hooks and Module backward hooks, checked against PyTorch's behaviour."""

import numpy as np
import pytest

import pydl


def T(a, device, grad=True):
    return pydl.tensor(np.asarray(a, dtype=np.float64), dtype=pydl.float64, device=device,
                       requires_grad=grad)


def test_leaf_hook_sees_total_gradient_and_can_replace_it(device):
    x = T([1.0, 2.0], device)
    seen = []
    h = x.register_hook(lambda g: seen.append(np.asarray(g).tolist()) or g * 2)
    (x * 3 + x * x).sum().backward()  # two uses: the hook sees their sum once
    assert seen == [[5.0, 7.0]]
    assert np.asarray(x.grad).tolist() == [10.0, 14.0]
    h.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert np.asarray(x.grad).tolist() == [3.0, 3.0] and len(seen) == 1


def test_non_leaf_hook_changes_what_flows_on(device):
    x = T([1.0, 2.0], device)
    y = x * x
    y.register_hook(lambda g: g + 1)
    y.sum().backward()
    assert np.asarray(x.grad).tolist() == [4.0, 8.0]  # (1 + 1) * 2x


def test_hook_errors(device):
    x = T([1.0], device, grad=False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        x.register_hook(lambda g: g)
    y = T([1.0, 2.0], device)
    y.register_hook(lambda g: g.sum())
    with pytest.raises(RuntimeError, match=r"must return None or a Tensor of shape \(2,\)"):
        (y * 2).sum().backward()


def test_hooks_under_create_graph(device):
    x = T([1.5], device)
    x.register_hook(lambda g: g * 3)
    (g,) = pydl.autograd.grad((x ** 3).sum(), [x], create_graph=True)
    (x ** 3).sum().backward(create_graph=True)
    assert np.asarray(x.grad.detach()).tolist() == [3 * 3 * 1.5 ** 2]
    assert x.grad.requires_grad


def test_post_accumulate_grad_hook(device):
    x = T([1.0, 2.0], device)
    seen = []
    x.register_post_accumulate_grad_hook(lambda t: seen.append(np.asarray(t.grad).tolist()))
    (x * 2).sum().backward()
    (x * 2).sum().backward()
    assert seen == [[2.0, 2.0], [4.0, 4.0]]
    with pytest.raises(RuntimeError, match="only leaf tensors"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_module_full_backward_hook_matches_torch(device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w, b, xa = rng.standard_normal((2, 3)), rng.standard_normal(2), rng.standard_normal((4, 3))
    lin = pydl.nn.Linear(3, 2).double().to(device)
    with pydl.no_grad():
        lin.weight.copy_(T(w, device, grad=False))
        lin.bias.copy_(T(b, device, grad=False))
    tlin = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        tlin.weight.copy_(torch.tensor(w))
        tlin.bias.copy_(torch.tensor(b))
    ours, theirs = [], []
    lin.register_full_backward_hook(lambda m, gi, go: ours.append((gi, go)))
    tlin.register_full_backward_hook(lambda m, gi, go: theirs.append((gi, go)))
    x, tx = T(xa, device), torch.tensor(xa, requires_grad=True)
    (lin(x) ** 2).sum().backward()
    (tlin(tx) ** 2).sum().backward()
    (gi, go), (tgi, tgo) = ours[0], theirs[0]
    assert len(gi) == len(tgi) == 1 and len(go) == len(tgo) == 1
    np.testing.assert_allclose(np.asarray(gi[0]), tgi[0].numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(go[0]), tgo[0].numpy(), rtol=1e-12)


def test_module_backward_hook_replaces_grad_input_and_is_removable(device):
    lin = pydl.nn.Linear(3, 2).double().to(device)
    h = lin.register_full_backward_hook(lambda m, gi, go: (gi[0] * 0,))
    x = T(np.ones((4, 3)), device)
    lin(x).sum().backward()
    assert not np.asarray(x.grad).any() and lin.weight.grad is not None
    h.remove()
    x.grad = None
    lin(x).sum().backward()
    assert np.asarray(x.grad).any()


def test_module_backward_hook_without_input_grad(device):
    lin = pydl.nn.Linear(3, 2).double().to(device)
    got = []
    lin.register_full_backward_hook(lambda m, gi, go: got.append((gi, go[0].shape)))
    lin(T(np.ones((4, 3)), device, grad=False)).sum().backward()
    assert got == [((None,), (4, 2))]


def test_forward_hooks_share_the_handle_type():
    m = pydl.nn.Linear(2, 2)
    hs = [m.register_forward_hook(lambda *a: None), m.register_forward_pre_hook(lambda *a: None),
          m.register_full_backward_hook(lambda *a: None)]
    assert all(isinstance(h, pydl.nn.RemovableHandle) for h in hs)
    for h in hs:
        h.remove()
    assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks


# -- leaves written during the pass (what DistributedDataParallel overlaps with) -----------
class _Probe(pydl.autograd.Function):
    """Identity whose backward appends "probe" to ``log``: marks a point of the pass."""

    log = []

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, g):
        _Probe.log.append("probe")
        return g


def _two_layers(device, create_graph=False):
    """w2 near the output, w1 near the input, a probe between: returns the event order
    of one backward (post-accumulate hooks and the probe's backward)."""
    x = T(np.arange(6.0).reshape(2, 3), device, grad=False)
    w1, w2 = T(np.ones((3, 3)) * 0.5, device), T(np.ones((3, 1)) * 2.0, device)
    _Probe.log = log = []
    for name, w in (("w1", w1), ("w2", w2)):
        w.register_post_accumulate_grad_hook(
            lambda t, name=name: log.append(f"{name} grad={np.asarray(t.grad.detach()).sum():g}"))
    loss = (_Probe.apply((x @ w1).tanh()) @ w2).sum()
    loss.backward(create_graph=create_graph)
    return log, w1, w2


@pytest.mark.parametrize("create_graph", [False, True])
def test_leaf_grad_is_written_as_soon_as_it_is_final(device, create_graph):
    log, w1, w2 = _two_layers(device, create_graph)
    # w2's gradient is complete before backward reaches the probe (and w1)
    assert [e.split()[0] for e in log] == ["w2", "probe", "w1"]
    assert log[0] == f"w2 grad={np.asarray(w2.grad.detach()).sum():g}"
    assert log[2] == f"w1 grad={np.asarray(w1.grad.detach()).sum():g}"


def test_hook_order_matches_torch():
    torch = pytest.importorskip("torch")
    log = []

    class Probe(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            log.append("probe")
            return g

    x = torch.arange(6.0, dtype=torch.float64).reshape(2, 3)
    w1 = torch.full((3, 3), 0.5, dtype=torch.float64, requires_grad=True)
    w2 = torch.full((3, 1), 2.0, dtype=torch.float64, requires_grad=True)
    for name, w in (("w1", w1), ("w2", w2)):
        w.register_post_accumulate_grad_hook(
            lambda t, name=name: log.append(f"{name} grad={float(t.grad.sum()):g}"))
    (Probe.apply((x @ w1).tanh()) @ w2).sum().backward()
    ours, _, _ = _two_layers("cpu")
    assert ours == log


def test_leaf_used_early_and_late_is_written_once_with_the_total(device):
    w = T([1.0, 2.0], device)
    v = T([3.0, 4.0], device)
    order = []
    w.register_post_accumulate_grad_hook(lambda t: order.append(("w", np.asarray(t.grad).tolist())))
    v.register_post_accumulate_grad_hook(lambda t: order.append(("v", np.asarray(t.grad).tolist())))
    h = (w * 3).exp().log()  # w's first use, far from the loss
    loss = (_Probe.apply(h * v) * w).sum()  # v and w's second use near the loss
    _Probe.log = []
    loss.backward()
    # v is final right after the node next to the loss; w only after its far use
    assert [o[0] for o in order] == ["v", "w"]
    # loss = sum(3 v w^2): d/dw = 6 v w, both uses summed before w's hook ran
    assert order[1][1] == [18.0, 48.0] and np.asarray(w.grad).tolist() == [18.0, 48.0]


def test_early_writes_accumulate_and_keep_retain_graph(device):
    w = T([1.0, -2.0], device)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(np.asarray(t.grad).tolist()))
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert seen == [[2.0, -4.0], [4.0, -8.0]]
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_leaf_behind_a_node_that_gets_no_gradient_is_still_written(device):
    class Block(pydl.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, g):
            return None

    w = T([1.0, 2.0], device)
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(np.asarray(t.grad).tolist()))
    # (w * 2) gets no gradient (Block returns None), so its node is skipped; w is also used
    # directly, and an output that is itself the leaf w adds its gradient at the end
    pydl.autograd.backward([(Block.apply(w * 2) + w * 5).sum(), w],
                           [None, pydl.tensor([1.0, 1.0], dtype=pydl.float64, device=device)])
    assert seen == [[6.0, 6.0]]


def test_queue_callback_runs_after_every_leaf_is_written(device):
    w1, w2 = T([1.0], device), T([2.0], device)
    events = []

    def at_end():
        events.append(("end", np.asarray(w1.grad).tolist(), np.asarray(w2.grad).tolist()))

    def first(t):
        events.append("w2")
        pydl.autograd.queue_callback(at_end)

    w2.register_post_accumulate_grad_hook(first)
    w1.register_post_accumulate_grad_hook(lambda t: events.append("w1"))
    (((w1 * 3).tanh() * w2) * 2).sum().backward()
    assert events[:2] == ["w2", "w1"] and events[2][0] == "end"
    assert events[2][1] is not None and events[2][2] == [2 * np.tanh(3.0)]
    with pytest.raises(RuntimeError, match="no backward pass is running"):
        pydl.autograd.queue_callback(at_end)


def test_queue_callback_does_not_run_when_backward_fails(device):
    class Fails(pydl.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, g):
            raise ValueError("backward fails on purpose")

    w, v = T([1.0], device), T([2.0], device)
    ran = []
    v.register_post_accumulate_grad_hook(
        lambda t: pydl.autograd.queue_callback(lambda: ran.append(True)))
    with pytest.raises(ValueError, match="on purpose"):
        (Fails.apply(w * 2) * v).sum().backward()
    assert ran == [] and v.grad is not None  # v was written before the failure, as in torch
    (v * 2).sum().backward()  # the next pass has a fresh queue
    assert ran == [True]
