"""Attention and Transformer layers: gradchecks, PyTorch parity (outputs and all gradients)."""

import itertools
import math

import numpy as np
import pytest

import pydl
import pydl.nn as nn
from pydl.nn.transformer import Transformer, generate_square_subsequent_mask
from pydl.nn.transformer import scaled_dot_product_attention as sdpa
from pydl.testing import assert_close, gradcheck

F64 = pydl.float64
TOL = {"rtol": 1e-9, "atol": 1e-11}


def _t(a, requires_grad=False):
    a = np.asarray(a)
    return pydl.tensor(a, dtype=None if a.dtype == bool else F64, requires_grad=requires_grad)


def _np(t):
    return t.detach().numpy()


def _torch():
    return pytest.importorskip("torch")


def _copy_state(tmod, pmod):
    sd = {k: pydl.tensor(v.detach().numpy(), dtype=F64) for k, v in tmod.state_dict().items()}
    assert set(sd) == set(pmod.state_dict()), (
        f"names differ from PyTorch's: {sorted(set(sd) ^ set(pmod.state_dict()))}")
    pmod.load_state_dict(sd)


def _check_param_grads(tmod, pmod):
    pp = dict(pmod.named_parameters())
    for name, tp in tmod.named_parameters():
        ref = np.zeros(tuple(tp.shape)) if tp.grad is None else tp.grad.numpy()
        got = np.zeros(pp[name].shape) if pp[name].grad is None else pp[name].grad.numpy()
        assert_close(got, ref, msg=f"grad of {name}: ", **TOL)


def _no_full_rows(mask_blocks):
    """Unblock column 0 so no query row is fully masked (a NaN row in both libraries)."""
    mask_blocks[..., 0] = False
    return mask_blocks


# -- scaled_dot_product_attention ----------------------------------------------------------
@pytest.mark.parametrize("case", ["none", "bool", "float", "causal", "scale", "3d"])
def test_sdpa_matches_torch(case):
    torch = _torch()
    rng = np.random.default_rng(0)
    lead = (3,) if case == "3d" else (2, 3)
    L, S = 4, 6
    q = rng.standard_normal(lead + (L, 5))
    k = rng.standard_normal(lead + (S, 5))
    v = rng.standard_normal(lead + (S, 7))
    kw_t, kw_p = {}, {}
    if case == "bool":
        m = ~_no_full_rows(rng.random((L, S)) < 0.4)  # True = take part
        kw_t["attn_mask"], kw_p["attn_mask"] = torch.tensor(m), _t(m)
    elif case == "float":
        m = rng.standard_normal((2, 1, L, S))
        kw_t["attn_mask"], kw_p["attn_mask"] = torch.tensor(m), _t(m)
    elif case == "causal":
        kw_t["is_causal"] = kw_p["is_causal"] = True
    elif case == "scale":
        kw_t["scale"] = kw_p["scale"] = 0.3
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    pq, pk, pv = (_t(a, True) for a in (q, k, v))
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **kw_t)
    pout = sdpa(pq, pk, pv, **kw_p)
    assert_close(_np(pout), tout.detach().numpy(), **TOL)
    w = rng.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(w)).sum().backward()
    (pout * _t(w)).sum().backward()
    for a, b in ((pq, tq), (pk, tk), (pv, tv)):
        assert_close(a.grad.numpy(), b.grad.numpy(), **TOL)


def test_sdpa_gradcheck_and_errors():
    q = _t(np.random.standard_normal((2, 3, 4)), True)
    k = _t(np.random.standard_normal((2, 5, 4)), True)
    v = _t(np.random.standard_normal((2, 5, 3)), True)
    mask = _t(np.random.standard_normal((3, 5)))
    assert gradcheck(lambda q, k, v: sdpa(q, k, v, attn_mask=mask),
                     [q, k, v])
    assert gradcheck(lambda q, k, v: sdpa(q, k, v, is_causal=True),
                     [q, k, v])
    with pytest.raises(ValueError, match="last dim"):
        sdpa(q, v, v)
    out = sdpa(q, k, v, dropout_p=0.5)
    assert out.shape == (2, 3, 3)


def test_square_subsequent_mask():
    m = generate_square_subsequent_mask(4).numpy()
    assert m.dtype == np.float32
    assert np.isneginf(m[np.triu_indices(4, 1)]).all()
    assert (m[np.tril_indices(4)] == 0).all()
    torch = pytest.importorskip("torch")
    ref = torch.nn.Transformer.generate_square_subsequent_mask(4).numpy()
    np.testing.assert_array_equal(m, ref)


# -- MultiheadAttention --------------------------------------------------------------------
def test_mha_parameter_names_and_init():
    m = nn.MultiheadAttention(8, 2)
    assert [n for n, _ in m.named_parameters()] == [
        "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    w = m.in_proj_weight.detach().numpy()
    assert w.shape == (24, 8) and np.abs(w).max() <= math.sqrt(6 / 32)
    assert (m.in_proj_bias.detach().numpy() == 0).all()
    assert (m.out_proj.bias.detach().numpy() == 0).all()
    m2 = nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False, add_bias_kv=True)
    assert sorted(n for n, _ in m2.named_parameters()) == sorted([
        "q_proj_weight", "k_proj_weight", "v_proj_weight", "out_proj.weight", "bias_k",
        "bias_v"])
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(7, 2)


MHA_MASKS = ["none", "kpm", "attn_bool", "attn_float3d", "both_bool", "both_float", "causal"]
MHA_CONFIGS = list(itertools.product(MHA_MASKS, [False, True], [False, True]))


@pytest.mark.parametrize("mask_case,batch_first,average", MHA_CONFIGS)
def test_mha_matches_torch(mask_case, batch_first, average):
    torch = _torch()
    rng = np.random.default_rng(MHA_CONFIGS.index((mask_case, batch_first, average)))
    E, H, L, S, N = 8, 2, 4, 5, 3
    if mask_case == "causal":
        S = L
    tm = torch.nn.MultiheadAttention(E, H, batch_first=batch_first, dtype=torch.float64)
    pm = nn.MultiheadAttention(E, H, batch_first=batch_first).double()
    with torch.no_grad():  # non-zero biases, so their gradients matter
        tm.in_proj_bias.normal_()
        tm.out_proj.bias.normal_()
    _copy_state(tm, pm)
    shp = lambda T: (N, T, E) if batch_first else (T, N, E)
    arrs = [rng.standard_normal(shp(L)), rng.standard_normal(shp(S)),
            rng.standard_normal(shp(S))]
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in arrs)
    pq, pk, pv = (_t(a, True) for a in arrs)
    kw_t, kw_p = {}, {}

    def both(name, a):
        kw_t[name] = torch.tensor(a)
        kw_p[name] = _t(a)

    kpm_b = _no_full_rows(rng.random((N, S)) < 0.4)
    attn_b = _no_full_rows(rng.random((L, S)) < 0.4)
    if mask_case in ("kpm", "both_bool"):
        both("key_padding_mask", kpm_b)
    if mask_case in ("attn_bool", "both_bool"):
        both("attn_mask", attn_b)
    if mask_case == "attn_float3d":
        both("attn_mask", rng.standard_normal((N * H, L, S)))
    if mask_case == "both_float":
        both("attn_mask", rng.standard_normal((L, S)))
        both("key_padding_mask", np.where(kpm_b, -np.inf, rng.standard_normal((N, S))))
    if mask_case == "causal":
        both("attn_mask", np.triu(np.full((L, L), -np.inf), 1))
        kw_t["is_causal"] = kw_p["is_causal"] = True
    tout, tw = tm(tq, tk, tv, average_attn_weights=average, **kw_t)
    pout, pw = pm(pq, pk, pv, average_attn_weights=average, **kw_p)
    assert pout.shape == tuple(tout.shape) and pw.shape == tuple(tw.shape)
    assert_close(_np(pout), tout.detach().numpy(), **TOL)
    assert_close(_np(pw), tw.detach().numpy(), **TOL)
    w1, w2 = rng.standard_normal(tuple(tout.shape)), rng.standard_normal(tuple(tw.shape))
    ((tout * torch.tensor(w1)).sum() + (tw * torch.tensor(w2)).sum()).backward()
    ((pout * _t(w1)).sum() + (pw * _t(w2)).sum()).backward()
    for a, b in ((pq, tq), (pk, tk), (pv, tv)):
        assert_close(a.grad.numpy(), b.grad.numpy(), **TOL)
    _check_param_grads(tm, pm)


MHA_VARIANTS = [
    {}, {"kdim": 3, "vdim": 5}, {"bias": False}, {"add_bias_kv": True},
    {"add_zero_attn": True}, {"add_bias_kv": True, "add_zero_attn": True, "kdim": 3},
]


@pytest.mark.parametrize("kw,self_attention", [
    (kw, sa) for kw in MHA_VARIANTS for sa in (False, True)
    if not (sa and "kdim" in kw)  # self-attention needs kdim == vdim == embed_dim
])
@pytest.mark.parametrize("unbatched", [False, True])
def test_mha_variants_match_torch(kw, self_attention, unbatched):
    torch = _torch()
    rng = np.random.default_rng(3)
    E, H, L, S, N = 8, 4, 4, 5, 2
    tm = torch.nn.MultiheadAttention(E, H, dtype=torch.float64, **kw)
    pm = nn.MultiheadAttention(E, H, **kw).double()
    if kw.get("bias", True):
        with torch.no_grad():
            tm.in_proj_bias.normal_()
    _copy_state(tm, pm)
    lead = () if unbatched else (N,)
    q = rng.standard_normal((L,) + lead + (E,))
    kdim, vdim = kw.get("kdim", E), kw.get("vdim", E)
    k = rng.standard_normal((S,) + lead + (kdim,))
    v = rng.standard_normal((S,) + lead + (vdim,))
    kpm = _no_full_rows(rng.random(lead + (S,)) < 0.3)
    if self_attention:
        tq = torch.tensor(q, requires_grad=True)
        pq = _t(q, True)
        t_args, p_args, pairs = (tq, tq, tq), (pq, pq, pq), [(pq, tq)]
        kpm = _no_full_rows(rng.random(lead + (L,)) < 0.3)
    else:
        tl = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        pl = [_t(a, True) for a in (q, k, v)]
        t_args, p_args, pairs = tuple(tl), tuple(pl), list(zip(pl, tl, strict=True))
    tout, tw = tm(*t_args, key_padding_mask=torch.tensor(kpm), average_attn_weights=False)
    pout, pw = pm(*p_args, key_padding_mask=_t(kpm), average_attn_weights=False)
    assert pout.shape == tuple(tout.shape) and pw.shape == tuple(tw.shape)
    assert_close(_np(pout), tout.detach().numpy(), **TOL)
    assert_close(_np(pw), tw.detach().numpy(), **TOL)
    w1 = rng.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(w1)).sum().backward()
    (pout * _t(w1)).sum().backward()
    for a, b in pairs:
        assert_close(a.grad.numpy(), b.grad.numpy(), **TOL)
    _check_param_grads(tm, pm)


def test_mha_need_weights_false_and_causal_without_mask():
    torch = _torch()
    tm = torch.nn.MultiheadAttention(6, 3, dtype=torch.float64)
    pm = nn.MultiheadAttention(6, 3).double()
    _copy_state(tm, pm)
    x = np.random.standard_normal((5, 2, 6))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    ref = tm(torch.tensor(x), torch.tensor(x), torch.tensor(x), attn_mask=mask)[0]
    px = _t(x)
    out, w = pm(px, px, px, need_weights=False, is_causal=True)
    assert w is None
    assert_close(_np(out), ref.detach().numpy(), **TOL)


def test_mha_gradcheck():
    m = nn.MultiheadAttention(4, 2, dtype=F64)
    with pydl.no_grad():
        m.in_proj_bias.copy_(pydl.randn(12, dtype=F64))
    q = _t(np.random.standard_normal((3, 2, 4)), True)
    kv = _t(np.random.standard_normal((2, 2, 4)), True)
    kpm = _t(np.array([[False, True], [False, False]]))
    assert gradcheck(lambda q, kv, *p: m(q, kv, kv, key_padding_mask=kpm),
                     [q, kv, *m.parameters()])


def test_mha_dropout_only_in_training():
    m = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = pydl.randn(4, 2, 8)
    a = m(x, x, x)[0].detach().numpy()
    b = m(x, x, x)[0].detach().numpy()
    assert not np.allclose(a, b)
    m.eval()
    assert_close(_np(m(x, x, x)[0]), _np(m(x, x, x)[0]))


# -- encoder / decoder layers --------------------------------------------------------------
LAYER_CONFIGS = list(itertools.product([False, True], [False, True], ["relu", "gelu"]))


def _layer_inputs(rng, torch, batch_first, L, S, N, d):
    shp = lambda T: (N, T, d) if batch_first else (T, N, d)
    src, mem = rng.standard_normal(shp(L)), rng.standard_normal(shp(S))
    return ((torch.tensor(src, requires_grad=True), _t(src, True)),
            (torch.tensor(mem, requires_grad=True), _t(mem, True)))


@pytest.mark.parametrize("norm_first,batch_first,activation", LAYER_CONFIGS)
def test_encoder_layer_matches_torch(norm_first, batch_first, activation):
    torch = _torch()
    rng = np.random.default_rng(LAYER_CONFIGS.index((norm_first, batch_first, activation)))
    d, L, N = 8, 5, 3
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation,
              batch_first=batch_first, norm_first=norm_first)
    tm = torch.nn.TransformerEncoderLayer(d, 2, dtype=torch.float64, **kw).eval()
    pm = nn.TransformerEncoderLayer(d, 2, **kw).double().eval()
    with torch.no_grad():
        for p in tm.parameters():
            if p.ndim == 1:
                p.normal_()
    _copy_state(tm, pm)
    (tx, px), _ = _layer_inputs(rng, torch, batch_first, L, L, N, d)
    kpm = _no_full_rows(rng.random((N, L)) < 0.3)
    mask = np.triu(np.ones((L, L), dtype=bool), 1)
    tout = tm(tx, src_mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm))
    pout = pm(px, src_mask=_t(mask), src_key_padding_mask=_t(kpm))
    assert_close(_np(pout), tout.detach().numpy(), **TOL)
    w = rng.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(w)).sum().backward()
    (pout * _t(w)).sum().backward()
    assert_close(px.grad.numpy(), tx.grad.numpy(), **TOL)
    _check_param_grads(tm, pm)


@pytest.mark.parametrize("norm_first,batch_first,activation", LAYER_CONFIGS)
def test_decoder_layer_matches_torch(norm_first, batch_first, activation):
    torch = _torch()
    rng = np.random.default_rng(10 + LAYER_CONFIGS.index((norm_first, batch_first,
                                                          activation)))
    d, L, S, N = 8, 4, 6, 2
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation,
              batch_first=batch_first, norm_first=norm_first)
    tm = torch.nn.TransformerDecoderLayer(d, 2, dtype=torch.float64, **kw).eval()
    pm = nn.TransformerDecoderLayer(d, 2, **kw).double().eval()
    with torch.no_grad():
        for p in tm.parameters():
            if p.ndim == 1:
                p.normal_()
    _copy_state(tm, pm)
    (tx, px), (tmem, pmem) = _layer_inputs(rng, torch, batch_first, L, S, N, d)
    causal = np.triu(np.full((L, L), -np.inf), 1)
    mkpm = _no_full_rows(rng.random((N, S)) < 0.3)
    tkpm = _no_full_rows(rng.random((N, L)) < 0.3)
    mem_mask = rng.standard_normal((L, S))
    tout = tm(tx, tmem, tgt_mask=torch.tensor(causal), memory_mask=torch.tensor(mem_mask),
              tgt_key_padding_mask=torch.tensor(np.where(tkpm, -np.inf, 0.0)),
              memory_key_padding_mask=torch.tensor(np.where(mkpm, -np.inf, 0.0)),
              tgt_is_causal=True)
    pout = pm(px, pmem, tgt_mask=_t(causal), memory_mask=_t(mem_mask),
              tgt_key_padding_mask=_t(np.where(tkpm, -np.inf, 0.0)),
              memory_key_padding_mask=_t(np.where(mkpm, -np.inf, 0.0)), tgt_is_causal=True)
    assert_close(_np(pout), tout.detach().numpy(), **TOL)
    w = rng.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(w)).sum().backward()
    (pout * _t(w)).sum().backward()
    assert_close(px.grad.numpy(), tx.grad.numpy(), **TOL)
    assert_close(pmem.grad.numpy(), tmem.grad.numpy(), **TOL)
    _check_param_grads(tm, pm)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_decoder_stacks_match_torch(norm_first):
    torch = _torch()
    rng = np.random.default_rng(20)
    d, L, S, N = 8, 4, 5, 2
    kw = dict(dim_feedforward=12, dropout=0.0, norm_first=norm_first)
    t_enc = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(d, 2, dtype=torch.float64, **kw), 2,
        norm=torch.nn.LayerNorm(d, dtype=torch.float64), enable_nested_tensor=False).eval()
    t_dec = torch.nn.TransformerDecoder(
        torch.nn.TransformerDecoderLayer(d, 2, dtype=torch.float64, **kw), 2,
        norm=torch.nn.LayerNorm(d, dtype=torch.float64)).eval()
    p_enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 2, **kw), 2,
                                  norm=nn.LayerNorm(d)).double().eval()
    p_dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(d, 2, **kw), 2,
                                  norm=nn.LayerNorm(d)).double().eval()
    assert "layers.1.linear2.weight" in p_enc.state_dict()
    assert "layers.1.multihead_attn.in_proj_weight" in p_dec.state_dict()
    with torch.no_grad():
        for p in itertools.chain(t_enc.parameters(), t_dec.parameters()):
            p.add_(0.1 * torch.randn_like(p))  # layers differ from each other
    _copy_state(t_enc, p_enc)
    _copy_state(t_dec, p_dec)
    (tsrc, psrc), (ttgt, ptgt) = _layer_inputs(rng, torch, False, S, L, N, d)
    kpm = _no_full_rows(rng.random((N, S)) < 0.3)
    causal = np.triu(np.full((L, L), -np.inf), 1)
    tmem = t_enc(tsrc, src_key_padding_mask=torch.tensor(kpm))
    pmem = p_enc(psrc, src_key_padding_mask=_t(kpm))
    assert_close(_np(pmem), tmem.detach().numpy(), **TOL)
    tout = t_dec(ttgt, tmem, tgt_mask=torch.tensor(causal),
                 memory_key_padding_mask=torch.tensor(kpm))
    pout = p_dec(ptgt, pmem, tgt_mask=_t(causal), memory_key_padding_mask=_t(kpm))
    assert_close(_np(pout), tout.detach().numpy(), **TOL)
    w = rng.standard_normal(tuple(tout.shape))
    (tout * torch.tensor(w)).sum().backward()
    (pout * _t(w)).sum().backward()
    assert_close(psrc.grad.numpy(), tsrc.grad.numpy(), **TOL)
    assert_close(ptgt.grad.numpy(), ttgt.grad.numpy(), **TOL)
    _check_param_grads(t_enc, p_enc)
    _check_param_grads(t_dec, p_dec)


def test_full_transformer_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(30)
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=1,
              dim_feedforward=12, dropout=0.0, batch_first=True)
    tm = torch.nn.Transformer(dtype=torch.float64, **kw).eval()
    pm = Transformer(**kw).double().eval()
    _copy_state(tm, pm)
    src, tgt = rng.standard_normal((2, 5, 8)), rng.standard_normal((2, 3, 8))
    mask = torch.nn.Transformer.generate_square_subsequent_mask(3, dtype=torch.float64)
    ref = tm(torch.tensor(src), torch.tensor(tgt), tgt_mask=mask)
    out = pm(_t(src), _t(tgt), tgt_mask=_t(mask.numpy()))
    assert_close(_np(out), ref.detach().numpy(), **TOL)


def test_encoder_layer_gradcheck():
    m = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0,
                                   activation="gelu", dtype=F64)
    x = _t(np.random.standard_normal((3, 2, 4)), True)
    assert gradcheck(lambda x, *p: m(x, is_causal=True), [x, *m.parameters()])


def test_decoder_layer_gradcheck():
    m = nn.TransformerDecoderLayer(4, 2, dim_feedforward=5, dropout=0.0, norm_first=True,
                                   dtype=F64)
    x = _t(np.random.standard_normal((3, 1, 4)), True)
    mem = _t(np.random.standard_normal((2, 1, 4)), True)
    assert gradcheck(lambda x, mem: m(x, mem, tgt_is_causal=True), [x, mem])


def test_clones_are_independent_copies():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    enc = nn.TransformerEncoder(layer, 3)
    assert len(enc.layers) == 3
    w0, w1 = enc.layers[0].linear1.weight, enc.layers[1].linear1.weight
    assert w0 is not w1 and w0.data is not w1.data
    assert_close(w0.detach().numpy(), w1.detach().numpy())  # same init, as PyTorch
    assert len(list(enc.parameters())) == 3 * len(list(layer.parameters()))
    enc64 = nn.TransformerDecoder(nn.TransformerDecoderLayer(4, 2, 8, dtype=F64), 2)
    assert {p.dtype for p in enc64.parameters()} == {F64}  # copies keep the dtype


# -- positions -----------------------------------------------------------------------------
def test_positional_encoding_values_and_buffer():
    pe = nn.PositionalEncoding(7, max_len=20, dropout=0.0)
    assert "pe" in pe.state_dict() and len(list(pe.parameters())) == 0
    table = pe.pe.numpy()
    assert table.shape == (20, 7)
    pos, i = 3, 2
    assert math.isclose(table[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 7)), rel_tol=1e-5)
    assert math.isclose(table[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 7)),
                        rel_tol=1e-5)
    x = pydl.zeros(5, 2, 7)
    out = pe(x).numpy()
    assert_close(out[:, 0], table[:5])
    assert_close(out[:, 1], table[:5])
    pe_bf = nn.PositionalEncoding(7, max_len=20, dropout=0.0, batch_first=True)
    assert_close(pe_bf(pydl.zeros(2, 5, 7)).numpy()[1], table[:5])
    assert_close(pe(pydl.zeros(5, 7)).numpy(), table[:5])
    with pytest.raises(ValueError, match="max_len"):
        pe(pydl.zeros(21, 1, 7))
    assert pe.double().pe.dtype == F64


def test_learned_positional_embedding():
    emb = nn.LearnedPositionalEmbedding(10, 4, batch_first=True)
    assert [n for n, _ in emb.named_parameters()] == ["weight"]
    x = pydl.randn(3, 6, 4, requires_grad=True)
    out = emb(x)
    assert out.shape == (3, 6, 4)
    out.sum().backward()
    g = emb.weight.grad.numpy()
    assert_close(g[:6], np.full((6, 4), 3.0, dtype=np.float32))
    assert (g[6:] == 0).all()


# -- training ------------------------------------------------------------------------------
def test_transformer_encoder_trains():
    pydl.manual_seed(0)
    rng = np.random.default_rng(0)
    d = 16
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(d, 2, dim_feedforward=32, dropout=0.0, batch_first=True), 2)
    inp, head = nn.Linear(1, d), nn.Linear(d, 1)
    params = [*enc.parameters(), *inp.parameters(), *head.parameters()]
    xs = rng.uniform(-1, 1, (32, 6, 1)).astype(np.float32)
    ys = np.broadcast_to(xs.mean(axis=1, keepdims=True), xs.shape).copy()  # needs attention
    x, y = pydl.tensor(xs), pydl.tensor(ys)
    losses = []
    for _ in range(40):
        loss = ((head(enc(inp(x))) - y) ** 2).mean()
        loss.backward()
        with pydl.no_grad():
            for p in params:
                p -= 0.05 * p.grad
                p.grad = None
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_encoder_layer_on_device_matches_cpu(device):
    m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True,
                                   dtype=F64)
    md = nn.TransformerEncoder(m, 1).layers[0].to(device)
    xs = np.random.standard_normal((2, 5, 8))
    kpm = np.array([[False] * 5, [False, False, False, True, True]])
    x = _t(xs, True)
    xd = pydl.tensor(xs, dtype=F64, device=device, requires_grad=True)
    out = m(x, src_key_padding_mask=_t(kpm), is_causal=True)
    outd = md(xd, src_key_padding_mask=pydl.tensor(kpm, device=device), is_causal=True)
    assert_close(outd.detach().cpu().numpy(), _np(out), **TOL)
    out.sum().backward()
    outd.sum().backward()
    assert_close(xd.grad.cpu().numpy(), x.grad.numpy(), **TOL)
    for (n, p), pd in zip(m.named_parameters(), md.parameters(), strict=True):
        assert_close(pd.grad.cpu().numpy(), p.grad.numpy(), msg=n, **TOL)
