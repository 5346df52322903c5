"""Recurrent layers: gradchecks, PyTorch parity (outputs, states, every gradient), long unrolls."""

import itertools

import numpy as np
import pytest

import pydl
import pydl.nn as nn
from pydl.testing import assert_close, gradcheck

F64 = pydl.float64


def _t(a, requires_grad=False):
    return pydl.tensor(np.asarray(a), dtype=F64, requires_grad=requires_grad)


def _randn(*shape, requires_grad=False):
    return _t(np.random.standard_normal(shape), requires_grad)


# -- construction --------------------------------------------------------------------------
@pytest.mark.parametrize("cls,gates", [(nn.RNN, 1), (nn.LSTM, 4), (nn.GRU, 3)])
def test_parameter_names_shapes_and_init(cls, gates):
    m = cls(5, 7, num_layers=2, bidirectional=True)
    names = dict(m.named_parameters())
    expected = []
    for layer in range(2):
        for sfx in ("", "_reverse"):
            expected += [f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}",
                         f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}"]
    assert list(names) == expected
    assert names["weight_ih_l0"].shape == (gates * 7, 5)
    assert names["weight_ih_l1_reverse"].shape == (gates * 7, 14)
    assert names["weight_hh_l1"].shape == (gates * 7, 7)
    assert names["bias_hh_l0_reverse"].shape == (gates * 7,)
    bound = 1 / np.sqrt(7)
    for p in m.parameters():
        v = p.detach().numpy()
        assert p.requires_grad and p.dtype == pydl.float32
        assert v.min() >= -bound and v.max() <= bound
        assert v.std() > bound / 4  # really random, not constant
    assert len(m.all_weights) == 4 and len(m.all_weights[0]) == 4


def test_no_bias_and_proj_names():
    m = nn.LSTM(3, 6, bias=False, proj_size=2)
    assert [n for n, _ in m.named_parameters()] == ["weight_ih_l0", "weight_hh_l0",
                                                    "weight_hr_l0"]
    assert m.weight_hh_l0.shape == (24, 2) and m.weight_hr_l0.shape == (2, 6)


def test_dtype_argument_and_repr():
    m = nn.GRU(3, 4, dtype=F64)
    assert all(p.dtype == F64 for p in m.parameters())
    assert "GRU(3, 4" in repr(m)


def test_bad_arguments_and_shapes_are_reported():
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=4)
    m = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="input_size=3"):
        m(pydl.randn(5, 2, 4))
    with pytest.raises(ValueError, match="h_0"):
        m(pydl.randn(5, 2, 3), (pydl.zeros(1, 3, 4), pydl.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="3 dims"):
        m(pydl.randn(5))


# -- gradchecks ----------------------------------------------------------------------------
def _cell_fn(cell, with_state):
    def fn(x, *state_and_params):
        if isinstance(cell, nn.LSTMCell):
            h, c = cell(x, tuple(state_and_params[:2]) if with_state else None)
            return h, c
        return cell(x, state_and_params[0] if with_state else None)
    return fn


@pytest.mark.parametrize("kind", ["tanh", "relu", "lstm", "gru"])
@pytest.mark.parametrize("with_state", [False, True])
def test_cell_gradcheck(kind, with_state):
    if kind in ("tanh", "relu"):
        cell = nn.RNNCell(3, 4, nonlinearity=kind, dtype=F64)
    else:
        cell = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(3, 4, dtype=F64)
    x = _randn(2, 3, requires_grad=True)
    state = []
    if with_state:
        state = [_randn(2, 4, requires_grad=True)]
        if kind == "lstm":
            state.append(_randn(2, 4, requires_grad=True))
    params = list(cell.parameters())
    fn = _cell_fn(cell, with_state)
    assert gradcheck(lambda *a: fn(*a[:1 + len(state)]), [x, *state, *params])


@pytest.mark.parametrize("cls,kw", [
    (nn.RNN, {}), (nn.RNN, {"nonlinearity": "relu"}), (nn.LSTM, {}), (nn.GRU, {}),
    (nn.LSTM, {"num_layers": 2, "bidirectional": True}),
    (nn.GRU, {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    (nn.LSTM, {"proj_size": 2}),
])
def test_layer_gradcheck(cls, kw):
    m = cls(3, 3, dtype=F64, **kw)
    D = 2 if kw.get("bidirectional") else 1
    L = kw.get("num_layers", 1)
    x = _randn(*((2, 3, 3) if kw.get("batch_first") else (3, 2, 3)), requires_grad=True)
    Hout = kw.get("proj_size") or 3
    h0 = _randn(D * L, 2, Hout, requires_grad=True)
    if cls is nn.LSTM:
        c0 = _randn(D * L, 2, 3, requires_grad=True)

        def fn(x, h0, c0, *params):
            out, (h, c) = m(x, (h0, c0))
            return out, h, c
        inputs = [x, h0, c0]
    else:
        def fn(x, h0, *params):
            out, h = m(x, h0)
            return out, h
        inputs = [x, h0]
    assert gradcheck(fn, inputs + list(m.parameters()))


# -- PyTorch parity ------------------------------------------------------------------------
torch = None


def _torch():
    global torch
    torch = pytest.importorskip("torch")
    return torch


def _copy_state(tmod, pmod):
    sd = {k: pydl.tensor(v.detach().numpy(), dtype=F64) for k, v in tmod.state_dict().items()}
    assert set(sd) == set(pmod.state_dict()), "parameter names differ from PyTorch's"
    pmod.load_state_dict(sd)


def _check_grads(tmod, pmod, pairs):
    for name, tp in tmod.named_parameters():
        pp = dict(pmod.named_parameters())[name]
        ref = np.zeros(tuple(tp.shape)) if tp.grad is None else tp.grad.numpy()
        got = np.zeros(pp.shape) if pp.grad is None else pp.grad.numpy()
        assert_close(got, ref, rtol=1e-9, atol=1e-11, msg=f"grad of {name}: ")
    for what, tt, pt in pairs:
        assert_close(pt.grad.numpy(), tt.grad.numpy(), rtol=1e-9, atol=1e-11,
                     msg=f"grad of {what}: ")


def _weighted_loss(outs, weights, lib):
    total = 0
    for o, w in zip(outs, weights, strict=True):
        total = total + (o * (lib.tensor(w) if lib is torch else _t(w))).sum()
    return total


RNN_CONFIGS = list(itertools.product(
    ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"], [1, 2], [False, True], [False, True],
    [False, True]))


@pytest.mark.parametrize("mode,num_layers,bidirectional,batch_first,with_state", RNN_CONFIGS)
def test_layer_matches_torch(mode, num_layers, bidirectional, batch_first, with_state):
    _torch()
    rng = np.random.default_rng(RNN_CONFIGS.index(
        (mode, num_layers, bidirectional, batch_first, with_state)))
    H_in, H, L, N = 4, 5, 6, 3
    D = 2 if bidirectional else 1
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    name = {"RNN_TANH": "RNN", "RNN_RELU": "RNN"}.get(mode, mode)
    if mode.startswith("RNN"):
        kw["nonlinearity"] = "tanh" if mode == "RNN_TANH" else "relu"
    tmod = getattr(torch.nn, name)(H_in, H, dtype=torch.float64, **kw)
    pmod = getattr(nn, name)(H_in, H, **kw).double()
    _copy_state(tmod, pmod)

    xs = rng.standard_normal((N, L, H_in) if batch_first else (L, N, H_in))
    tx, px = torch.tensor(xs, requires_grad=True), _t(xs, True)
    pairs = [("input", tx, px)]
    t_state = p_state = None
    if with_state:
        h0 = rng.standard_normal((D * num_layers, N, H))
        th, ph = torch.tensor(h0, requires_grad=True), _t(h0, True)
        pairs.append(("h_0", th, ph))
        t_state, p_state = th, ph
        if mode == "LSTM":
            c0 = rng.standard_normal((D * num_layers, N, H))
            tc, pc = torch.tensor(c0, requires_grad=True), _t(c0, True)
            pairs.append(("c_0", tc, pc))
            t_state, p_state = (th, tc), (ph, pc)
    tout = tmod(tx, t_state)
    pout = pmod(px, p_state)
    t_flat = [tout[0], *(tout[1] if mode == "LSTM" else (tout[1],))]
    p_flat = [pout[0], *(pout[1] if mode == "LSTM" else (pout[1],))]
    for i, (a, b) in enumerate(zip(p_flat, t_flat, strict=True)):
        assert_close(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12,
                     msg=f"output {i}: ")
    weights = [rng.standard_normal(tuple(o.shape)) for o in t_flat]
    _weighted_loss(t_flat, weights, torch).backward()
    _weighted_loss(p_flat, weights, pydl).backward()
    _check_grads(tmod, pmod, pairs)


@pytest.mark.parametrize("name,kw", [
    ("LSTM", {"proj_size": 3, "num_layers": 2, "bidirectional": True}),
    ("LSTM", {"bias": False}), ("GRU", {"bias": False, "num_layers": 2}),
    ("RNN", {"bias": False, "bidirectional": True}),
])
@pytest.mark.parametrize("unbatched", [False, True])
def test_layer_variants_match_torch(name, kw, unbatched):
    _torch()
    rng = np.random.default_rng(1)
    tmod = getattr(torch.nn, name)(4, 5, dtype=torch.float64, **kw)
    pmod = getattr(nn, name)(4, 5, **kw).double()
    _copy_state(tmod, pmod)
    xs = rng.standard_normal((6, 4) if unbatched else (6, 2, 4))
    tx, px = torch.tensor(xs, requires_grad=True), _t(xs, True)
    tout, pout = tmod(tx), pmod(px)
    t_flat = [tout[0], *(tout[1] if name == "LSTM" else (tout[1],))]
    p_flat = [pout[0], *(pout[1] if name == "LSTM" else (pout[1],))]
    for a, b in zip(p_flat, t_flat, strict=True):
        assert a.shape == tuple(b.shape)
        assert_close(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    weights = [rng.standard_normal(tuple(o.shape)) for o in t_flat]
    _weighted_loss(t_flat, weights, torch).backward()
    _weighted_loss(p_flat, weights, pydl).backward()
    _check_grads(tmod, pmod, [("input", tx, px)])


@pytest.mark.parametrize("name,kw", [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}),
                                     ("LSTMCell", {}), ("GRUCell", {}),
                                     ("GRUCell", {"bias": False}), ("LSTMCell", {"bias": False})])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_cell_matches_torch(name, kw, unbatched, with_state):
    _torch()
    rng = np.random.default_rng(2)
    tmod = getattr(torch.nn, name)(4, 5, dtype=torch.float64, **kw)
    pmod = getattr(nn, name)(4, 5, **kw).double()
    _copy_state(tmod, pmod)
    lead = () if unbatched else (3,)
    xs = rng.standard_normal(lead + (4,))
    tx, px = torch.tensor(xs, requires_grad=True), _t(xs, True)
    pairs = [("input", tx, px)]
    ts = ps = None
    if with_state:
        n_state = 2 if name == "LSTMCell" else 1
        arrs = [rng.standard_normal(lead + (5,)) for _ in range(n_state)]
        tl = [torch.tensor(a, requires_grad=True) for a in arrs]
        pl = [_t(a, True) for a in arrs]
        pairs += [(f"state{i}", a, b) for i, (a, b) in enumerate(zip(tl, pl, strict=True))]
        ts, ps = (tuple(tl), tuple(pl)) if n_state == 2 else (tl[0], pl[0])
    tout, pout = tmod(tx, ts), pmod(px, ps)
    t_flat = list(tout) if name == "LSTMCell" else [tout]
    p_flat = list(pout) if name == "LSTMCell" else [pout]
    for a, b in zip(p_flat, t_flat, strict=True):
        assert a.shape == tuple(b.shape)
        assert_close(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-12)
    weights = [rng.standard_normal(tuple(o.shape)) for o in t_flat]
    _weighted_loss(t_flat, weights, torch).backward()
    _weighted_loss(p_flat, weights, pydl).backward()
    _check_grads(tmod, pmod, pairs)


def test_dropout_between_layers_only_in_training():
    _torch()
    tmod = torch.nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=torch.float64)
    pmod = nn.LSTM(3, 4, num_layers=2, dropout=0.5).double()
    _copy_state(tmod, pmod)
    x = np.random.standard_normal((5, 2, 3))
    pmod.eval()
    tmod.eval()
    out_eval = pmod(_t(x))[0].detach().numpy()
    assert_close(out_eval, tmod(torch.tensor(x))[0].detach().numpy(), rtol=1e-10, atol=1e-12)
    pmod.train()
    a, b = pmod(_t(x))[0].detach().numpy(), pmod(_t(x))[0].detach().numpy()
    assert not np.allclose(a, b) and not np.allclose(a, out_eval)
    # the last layer's output is never dropped: with one layer train == eval
    single = nn.GRU(3, 4, dropout=0.5).double()
    assert_close(single(_t(x))[0].detach().numpy(),
                 single.eval()(_t(x))[0].detach().numpy())


# -- long sequences and training -----------------------------------------------------------
@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU, nn.RNN])
def test_thousand_step_unroll_backpropagates(cls):
    m = cls(3, 8)
    x = pydl.randn(1000, 2, 3, requires_grad=True)
    out, _ = m(x)
    assert out.shape == (1000, 2, 8)
    out[-1].sum().backward()
    g = x.grad.numpy()
    assert g.shape == (1000, 2, 3) and np.isfinite(g).all()
    assert np.abs(g[-1]).sum() > 0
    for p in m.parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()


def _sgd(params, lr):
    with pydl.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


def test_lstm_learns_to_sum_a_sequence():
    pydl.manual_seed(0)
    rng = np.random.default_rng(0)
    lstm = nn.LSTM(1, 16, batch_first=True)
    head = nn.Linear(16, 1)
    params = list(lstm.parameters()) + list(head.parameters())
    xs = rng.uniform(-1, 1, (64, 8, 1)).astype(np.float32)
    ys = xs.sum(axis=1)
    x, y = pydl.tensor(xs), pydl.tensor(ys)
    losses = []
    for _ in range(80):
        out, (h, _) = lstm(x)
        pred = head(h[-1])
        loss = ((pred - y) ** 2).mean()
        loss.backward()
        _sgd(params, 0.1)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_layer_on_device_matches_cpu(device, name):
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, dtype=F64)
    m = getattr(nn, name)(3, 4, **kw)
    md = getattr(nn, name)(3, 4, **kw)
    md.load_state_dict(m.state_dict())
    md.to(device)
    xs = np.random.standard_normal((2, 5, 3))
    x = _t(xs, True)
    xd = pydl.tensor(xs, dtype=F64, device=device, requires_grad=True)
    out, outd = m(x)[0], md(xd)[0]
    assert outd.device == pydl.device(device)
    assert_close(outd.detach().cpu().numpy(), out.detach().numpy(), rtol=1e-9, atol=1e-11)
    out.sum().backward()
    outd.sum().backward()
    assert_close(xd.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-9, atol=1e-11)
    for (n, p), pd in zip(m.named_parameters(), md.parameters(), strict=True):
        assert_close(pd.grad.cpu().numpy(), p.grad.numpy(), rtol=1e-9, atol=1e-11, msg=n)
