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
