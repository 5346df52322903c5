"""Module machinery: registration, traversal, modes, to(), state_dict, hooks, repr, summary,
containers, nn.init and nn.utils."""

import copy
import math
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import pydl
from pydl import nn
from pydl.testing import assert_close


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 5 * 5, 2)

    def forward(self, x):
        x = self.bn(self.conv(x)).relu()
        return self.fc(x.reshape(x.shape[0], -1))


# -- Parameter -----------------------------------------------------------------------------
def test_parameter_basics():
    t = pydl.randn(2, 3)
    p = nn.Parameter(t)
    assert isinstance(p, pydl.Tensor) and p.requires_grad and p.is_leaf
    assert p.data is t.data  # shares the array
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert not nn.Parameter(t, requires_grad=False).requires_grad
    p.tag = "mine"  # a Parameter carries a __dict__
    q = copy.deepcopy(p)
    assert isinstance(q, nn.Parameter) and q.requires_grad and q.data is not p.data
    assert_close(q, p)
    r = pickle.loads(pickle.dumps(p))
    assert isinstance(r, nn.Parameter) and r.requires_grad


def test_registration_and_names():
    m = Block()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in m.named_buffers()] == [
        "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    assert [n for n, _ in m.named_children()] == ["conv", "bn", "fc"]
    assert [n for n, _ in m.named_modules()] == ["", "conv", "bn", "fc"]
    assert len(list(m.parameters(recurse=False))) == 0
    assert m.fc.weight is m._modules["fc"]._parameters["weight"]
    m.extra = nn.Parameter(pydl.zeros(1))
    assert "extra" in dict(m.named_parameters())
    del m.extra
    assert "extra" not in dict(m.named_parameters())
    with pytest.raises(TypeError, match="weight"):
        m.fc.weight = pydl.zeros(2, 100)  # a plain tensor cannot replace a parameter
    m.fc.bias = None
    assert "fc.bias" not in dict(m.named_parameters())


def test_assign_before_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Bad()


def test_shared_parameters_listed_once():
    a = nn.Linear(4, 4)
    b = nn.Linear(4, 4)
    b.weight = a.weight  # tied weights
    seq = nn.Sequential(a, b, a)
    params = list(seq.parameters())
    assert len(params) == 3  # a.weight, a.bias, b.bias
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    # state_dict lists every name, as PyTorch does
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                      "2.weight", "2.bias"]


def test_buffers_persistent_flag():
    m = nn.Module()
    m.register_buffer("a", pydl.ones(2))
    m.register_buffer("b", pydl.zeros(2), persistent=False)
    m.c = nn.Buffer(pydl.ones(1))
    assert [n for n, _ in m.named_buffers()] == ["a", "b", "c"]
    assert list(m.state_dict()) == ["a", "c"]
    m.a = pydl.full((2,), 3.0)  # assigning a tensor to a buffer name replaces the buffer
    assert m.state_dict()["a"].tolist() == [3.0, 3.0]


def test_train_eval_propagates():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert all(x.training for x in m.modules())
    assert m.eval() is m
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())


def test_zero_grad():
    m = nn.Linear(3, 2)
    m(pydl.randn(4, 3)).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    assert np.all(m.weight.grad.numpy() == 0)
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_apply_and_get_submodule():
    m = Block()
    seen = []
    m.apply(lambda mod: seen.append(type(mod).__name__))
    assert seen == ["Conv2d", "BatchNorm2d", "Linear", "Block"]
    assert m.get_submodule("bn") is m.bn
    assert m.get_parameter("fc.bias") is m.fc.bias
    with pytest.raises(AttributeError, match="nope"):
        m.get_submodule("nope")


def test_to_float64_keeps_identity():
    m = Block()
    params = list(m.parameters())
    m(pydl.randn(2, 3, 5, 5)).sum().backward()
    out = m.to(pydl.float64)
    assert out is m
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    assert all(p.dtype == pydl.float64 and p.grad.dtype == pydl.float64 for p in params)
    assert m.bn.running_mean.dtype == pydl.float64
    assert m.bn.num_batches_tracked.dtype == pydl.int64  # integer buffers keep their dtype
    y = m(pydl.randn(2, 3, 5, 5, dtype=pydl.float64))
    assert y.dtype == pydl.float64
    m.float()
    assert m.fc.weight.dtype == pydl.float32
    with pytest.raises(TypeError, match="floating"):
        m.to(pydl.int64)


def test_to_device(device):
    m = Block()
    ref = {k: v.numpy().copy() for k, v in m.state_dict().items()}
    params = list(m.parameters())
    m.to(device)
    assert all(p.device == pydl.Device(device) for p in m.parameters())
    assert all(b.device == pydl.Device(device) for b in m.buffers())
    assert [id(p) for p in m.parameters()] == [id(p) for p in params]
    y = m.eval()(pydl.randn(2, 3, 5, 5, device=device))
    assert y.device == pydl.Device(device)
    m.cpu()
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k])


# -- state_dict ----------------------------------------------------------------------------
def test_state_dict_round_trip():
    a, b = Block(), Block()
    a.train()
    a(pydl.randn(4, 3, 5, 5))  # move the running statistics
    sd = a.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
                        "bn.running_var", "bn.num_batches_tracked", "fc.weight", "fc.bias"]
    assert not any(v.requires_grad for v in sd.values())
    result = b.load_state_dict(sd)
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in b.state_dict().items():
        assert_close(v, sd[k])
    assert int(b.bn.num_batches_tracked.item()) == 1
    a.eval(), b.eval()
    x = pydl.randn(2, 3, 5, 5)
    assert_close(a(x), b(x))
    # loading copies: changing a afterwards leaves b alone, and b keeps its Parameter objects
    w = b.fc.weight
    with pydl.no_grad():
        a.fc.weight.fill_(7.0)
    assert b.fc.weight is w and not np.any(b.fc.weight.detach().numpy() == 7.0)


def test_load_state_dict_accepts_numpy_and_casts():
    m = nn.Linear(3, 2).double()
    sd = {"weight": np.ones((2, 3), dtype=np.float32), "bias": np.zeros(2, dtype=np.float32)}
    m.load_state_dict(sd)
    assert m.weight.dtype == pydl.float64 and m.weight.detach().numpy().sum() == 6


def test_load_state_dict_from_torch_tensors():
    torch = pytest.importorskip("torch")
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    theirs(torch.randn(5, 3))  # move the running statistics
    ours = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ours.load_state_dict(theirs.state_dict())  # torch tensors are accepted as they are
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].numpy(), v.numpy(), rtol=1e-7)


def test_optimizer_survives_module_to():
    m = nn.Linear(3, 1)
    opt = pydl.optim.SGD(m.parameters(), lr=0.1)
    m.to(pydl.float64)
    before = m.weight.detach().numpy().copy()
    m(pydl.randn(4, 3, dtype=pydl.float64)).sum().backward()
    opt.step()
    assert m.weight.dtype == pydl.float64
    assert not np.allclose(m.weight.detach().numpy(), before)


def test_load_state_dict_errors_name_keys():
    m = Block()
    sd = m.state_dict()
    bad = OrderedDict(sd)
    del bad["bn.running_var"]
    bad["fc.extra"] = pydl.zeros(1)
    bad["conv.weight"] = pydl.zeros(4, 3, 5, 5)
    with pytest.raises(RuntimeError) as err:
        m.load_state_dict(bad)
    msg = str(err.value)
    assert "bn.running_var" in msg and "Missing" in msg
    assert "fc.extra" in msg and "Unexpected" in msg
    assert "conv.weight" in msg and "(4, 3, 5, 5)" in msg and "(4, 3, 3, 3)" in msg
    # wrong shapes are refused even when not strict; nothing is half-loaded
    before = m.fc.weight.detach().numpy().copy()
    with pytest.raises(RuntimeError, match="conv.weight"):
        m.load_state_dict(bad, strict=False)
    np.testing.assert_array_equal(m.fc.weight.detach().numpy(), before)
    bad["conv.weight"] = sd["conv.weight"]
    missing, unexpected = m.load_state_dict(bad, strict=False)
    assert missing == ["bn.running_var"] and unexpected == ["fc.extra"]


# -- calling, hooks, repr, summary ---------------------------------------------------------
def test_forward_hooks():
    m = nn.Linear(3, 2)
    calls = []
    h = m.register_forward_hook(lambda mod, inp, out: calls.append((mod, inp[0].shape,
                                                                     out.shape)))
    m(pydl.randn(5, 3))
    assert calls == [(m, (5, 3), (5, 2))]
    h.remove()
    m(pydl.randn(5, 3))
    assert len(calls) == 1
    with m.register_forward_hook(lambda mod, inp, out: out * 0):
        assert np.all(m(pydl.randn(2, 3)).detach().numpy() == 0)
    pre = m.register_forward_pre_hook(lambda mod, inp: (inp[0] * 0,))
    assert np.allclose(m(pydl.randn(2, 3)).detach().numpy(), m.bias.detach().numpy())
    pre.remove()


def test_forward_not_defined():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(pydl.zeros(1))


def test_repr_matches_torch():
    torch = pytest.importorskip("torch")
    tn = torch.nn
    ours = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, bias=False, groups=2), nn.Flatten(),
        nn.Sequential(nn.Linear(32, 10), nn.Dropout(0.25)), nn.LayerNorm(10),
        nn.Embedding(10, 3, padding_idx=0), nn.GELU(approximate="tanh"), nn.LeakyReLU(0.2),
        nn.Softmax(dim=1), nn.GroupNorm(2, 8), nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
    )
    theirs = tn.Sequential(
        tn.Conv2d(3, 8, 3, padding=1), tn.BatchNorm2d(8), tn.ReLU(), tn.MaxPool2d(2),
        tn.Conv2d(8, 8, 3, stride=2, bias=False, groups=2), tn.Flatten(),
        tn.Sequential(tn.Linear(32, 10), tn.Dropout(0.25)), tn.LayerNorm(10),
        tn.Embedding(10, 3, padding_idx=0), tn.GELU(approximate="tanh"), tn.LeakyReLU(0.2),
        tn.Softmax(dim=1), tn.GroupNorm(2, 8), tn.ConvTranspose2d(4, 2, 4, stride=2, padding=1),
    )
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_summary():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    model.train()
    lines = []
    text = model.summary((2, 1, 8, 8), print_fn=lines.append)
    assert lines == [text]
    assert "0 (Conv2d)" in text and "[2, 4, 8, 8]" in text and "40" in text
    assert "3 (Flatten)" in text and "[2, 64]" in text
    assert "4 (Linear)" in text and "[2, 10]" in text and "650" in text
    assert "Total params: 690" in text and "Trainable params: 690" in text
    assert model.training and model[0].training  # modes restored
    model[0].requires_grad_(False)
    assert "Non-trainable params: 40" in model.summary((1, 1, 8, 8), print_fn=None)
    # the hooks are gone afterwards
    assert not model[0]._forward_hooks


def test_summary_memory_and_function_form():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10))
    text = nn.summary(model, (2, 1, 8, 8), print_fn=None)
    conv_row = next(line for line in text.splitlines() if line.startswith("0 (Conv2d)"))
    assert conv_row.endswith("2.00 KB")  # 2*4*8*8 float32 = 2048 bytes
    outputs = 2 * 4 * 8 * 8 * 4 * 3 + 2 * 10 * 4  # conv, relu, flatten, linear
    assert f"Forward pass size (layer outputs): {outputs / 1024:.2f} KB" in text
    assert f"Input size: {2 * 64 * 4} B" in text
    assert f"Params size: {(40 + 2570) * 4 / 1024:.2f} KB" in text
    with pytest.raises(TypeError, match="expects an nn.Module"):
        nn.summary("model", (1, 2))


# -- containers ----------------------------------------------------------------------------
def test_sequential():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c
    assert list(seq) == [a, b, c]
    sub = seq[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    x = pydl.randn(4, 2)
    assert_close(seq(x), c(b(a(x))))
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight",
                                                        "2.bias"]
    named = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert named.fc is named[0] and list(named.state_dict()) == ["fc.weight", "fc.bias"]
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Linear", "Linear", "Sigmoid"]
    assert list(seq._modules) == ["0", "1", "2"]
    with pytest.raises(IndexError):
        seq[5]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    layers.append(nn.Linear(2, 2))
    assert [n for n, _ in layers.named_parameters()][-1] == "3.bias"
    layers.insert(0, nn.Identity())
    assert isinstance(layers[0], nn.Identity) and len(layers) == 5
    assert isinstance(layers[1:3], nn.ModuleList)
    d = nn.ModuleDict({"enc": nn.Linear(2, 3), "dec": nn.Linear(3, 2)})
    assert list(d) == ["enc", "dec"] and "enc" in d
    assert [n for n, _ in d.named_parameters()] == ["enc.weight", "enc.bias", "dec.weight",
                                                     "dec.bias"]
    pl = nn.ParameterList([pydl.zeros(2), nn.Parameter(pydl.ones(3))])
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"] and pl[0].requires_grad


def test_deepcopy_module():
    m = Block()
    m2 = copy.deepcopy(m)
    assert m2.fc.weight is not m.fc.weight
    assert isinstance(m2.fc.weight, nn.Parameter)
    for (k, v), (k2, v2) in zip(m.state_dict().items(), m2.state_dict().items(), strict=True):
        assert k == k2
        assert_close(v, v2)


def test_deep_nesting_no_recursion_limit():
    m = nn.Linear(2, 2)
    for _ in range(2000):
        outer = nn.Module()
        outer.inner = m
        m = outer
    assert len(list(m.parameters())) == 2
    assert len(m.state_dict()) == 2


# -- nn.init -------------------------------------------------------------------------------
def test_calculate_gain():
    assert nn.init.calculate_gain("linear") == 1
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert nn.init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert nn.init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="swish"):
        nn.init.calculate_gain("swish")


def test_init_statistics(device):
    w = pydl.empty(400, 300, device=device)
    fan_in, fan_out = 300, 400
    nn.init.xavier_uniform_(w)
    b = math.sqrt(6 / (fan_in + fan_out))
    a = w.numpy()
    assert a.max() <= b and a.min() >= -b and a.std() == pytest.approx(b / math.sqrt(3), 0.02)
    nn.init.xavier_normal_(w, gain=2.0)
    assert w.numpy().std() == pytest.approx(2 * math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    assert np.abs(w.numpy()).max() <= 1 / math.sqrt(fan_in)
    assert w.numpy().std() == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.02)
    nn.init.normal_(w, 1.0, 0.5)
    assert w.numpy().mean() == pytest.approx(1.0, abs=0.01)
    nn.init.uniform_(w, -2, 3)
    assert w.numpy().min() >= -2 and w.numpy().max() < 3
    nn.init.trunc_normal_(w, std=1.0, a=-0.5, b=0.5)
    assert np.abs(w.numpy()).max() <= 0.5
    nn.init.constant_(w, 0.3)
    assert np.all(w.numpy() == np.float32(0.3))
    nn.init.zeros_(w)
    assert not w.numpy().any()
    nn.init.ones_(w)
    assert np.all(w.numpy() == 1)
    conv_w = pydl.empty(8, 4, 3, 3, device=device)
    assert nn.init._calculate_fan_in_and_fan_out(conv_w) == (36, 72)
    with pytest.raises(ValueError, match="fewer than 2"):
        nn.init.xavier_uniform_(pydl.empty(5))


def test_init_is_in_place_on_parameters_without_graph():
    lin = nn.Linear(20, 30)
    w = lin.weight
    nn.init.orthogonal_(w)
    assert lin.weight is w and w.requires_grad and w.grad_fn is None


@pytest.mark.parametrize("shape", [(6, 6), (4, 9), (9, 4), (4, 2, 3)])
def test_orthogonal(shape, device):
    w = pydl.empty(*shape, dtype=pydl.float64, device=device)
    nn.init.orthogonal_(w, gain=2.0)
    m = w.numpy().reshape(shape[0], -1) / 2.0
    if m.shape[0] <= m.shape[1]:
        np.testing.assert_allclose(m @ m.T, np.eye(m.shape[0]), atol=1e-10)
    else:
        np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-10)


def test_init_reproducible_with_manual_seed():
    pydl.manual_seed(123)
    a = nn.Linear(5, 5).state_dict()
    pydl.manual_seed(123)
    b = nn.Linear(5, 5).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())


def test_default_init_bounds_match_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for ours, theirs in [
        (nn.Linear(50, 40), torch.nn.Linear(50, 40)),
        (nn.Conv2d(6, 12, 3, groups=3), torch.nn.Conv2d(6, 12, 3, groups=3)),
        (nn.ConvTranspose2d(6, 8, 3, groups=2), torch.nn.ConvTranspose2d(6, 8, 3, groups=2)),
    ]:
        for name, p in theirs.named_parameters():
            bound = np.abs(p.detach().numpy()).max()
            mine = dict(ours.named_parameters())[name].detach().numpy()
            # same support: both samples reach nearly the same bound, never beyond it
            fan_in = nn.init._calculate_fan_in_and_fan_out(
                dict(ours.named_parameters())["weight"])[0]
            assert np.abs(mine).max() <= 1 / math.sqrt(fan_in) + 1e-7
            assert bound <= 1 / math.sqrt(fan_in) + 1e-7
            assert np.abs(mine).max() > 0.8 / math.sqrt(fan_in)
    emb = nn.Embedding(1000, 20).weight.detach().numpy()
    assert emb.mean() == pytest.approx(0, abs=0.02) and emb.std() == pytest.approx(1, rel=0.02)
    bn = nn.BatchNorm2d(3)
    assert np.all(bn.weight.detach().numpy() == 1) and not bn.bias.detach().numpy().any()


# -- nn.utils ------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(s) for s in [(3, 4), (5,), (2, 2, 2)]]
    ours = [nn.Parameter(pydl.zeros(*g.shape, dtype=pydl.float64)) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, q, g in zip(ours, theirs, grads, strict=True):
        p.grad = pydl.tensor(g, dtype=pydl.float64)
        q.grad = torch.tensor(g)
    n1 = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    n2 = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert float(n1) == pytest.approx(float(n2), rel=1e-12)
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-12)


def test_clip_grad_value_and_vectors(device):
    m = nn.Linear(3, 2).to(device)
    (m(pydl.randn(4, 3, device=device)) * 100).sum().backward()
    nn.utils.clip_grad_value_(m.parameters(), 0.1)
    assert all(np.abs(p.grad.numpy()).max() <= 0.1 for p in m.parameters())
    vec = nn.utils.parameters_to_vector(m.parameters())
    assert vec.shape == (8,)
    np.testing.assert_array_equal(vec.detach().numpy()[:6], m.weight.detach().numpy().ravel())
    nn.utils.vector_to_parameters(pydl.arange(8.0, device=device), m.parameters())
    np.testing.assert_array_equal(m.bias.detach().numpy(), [6.0, 7.0])
    assert nn.utils.count_parameters(m) == 8


def test_penalties_are_differentiable():
    m = nn.Linear(3, 2).double()
    l1 = nn.utils.l1_penalty(m.parameters())
    l2 = nn.utils.l2_penalty(m.parameters())
    w = m.weight.detach().numpy()
    b = m.bias.detach().numpy()
    assert float(l1) == pytest.approx(np.abs(w).sum() + np.abs(b).sum())
    assert float(l2) == pytest.approx((w**2).sum() + (b**2).sum())
    (l1 + l2).backward()
    np.testing.assert_allclose(m.weight.grad.numpy(), np.sign(w) + 2 * w)
