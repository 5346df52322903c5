"""pydl.autocast's op table, GradScaler's algorithm, float32 master weights, their errors."""

import os
import threading

import numpy as np
import pytest

import pydl
import pydl.nn.functional as F
from pydl.amp import GradScaler

BF16, F16, F32, F64 = pydl.bfloat16, pydl.float16, pydl.float32, pydl.float64


# -- autocast: the op table ---------------------------------------------------------------------
@pytest.mark.parametrize("low", [BF16, F16])
def test_op_table(low):
    x = pydl.randn(4, 6, requires_grad=True)
    w = pydl.randn(3, 6, requires_grad=True)
    img = pydl.randn(2, 3, 5, 5)
    k = pydl.randn(4, 3, 3, 3)
    target = pydl.tensor([0, 1, 2, 1])
    with pydl.autocast("cpu", dtype=low):
        assert pydl.is_autocast_enabled() and pydl.amp.get_autocast_dtype("cpu") == low
        y = F.linear(x, w)
        low_ops = [y, x @ w.T, F.conv2d(img, k), pydl.nn.LSTM(6, 5, batch_first=True)(
            x.unsqueeze(0))[0]]
        assert all(t.dtype == low for t in low_ops)
        f32_ops = [y.sum(), y.mean(), y.exp(), y.abs().log(), F.softmax(y, -1),
                   F.log_softmax(y, -1), F.layer_norm(y, (3,)), F.cross_entropy(y, target),
                   F.mse_loss(y, pydl.zeros(4, 3)), y.var(), y ** 2]
        assert all(t.dtype == F32 for t in f32_ops)
        assert (y + x[:, :3]).dtype == F32  # mixed inputs: the widest
        assert (y * 2.0).dtype == low and y.relu().dtype == low  # others: the input's dtype
        assert pydl.cat([y, x[:, :3]]).dtype == F32
        d = pydl.randn(4, 6, dtype=F64)
        assert F.linear(d, w.double()).dtype == F64  # float64 is never narrowed
    assert not pydl.is_autocast_enabled()
    assert (y + x[:, :3]).dtype == F32  # outside autocast elementwise ops promote as well
    with pytest.raises(TypeError, match="differ"):  # but matmul wants one dtype
        y @ w


def test_gradients_come_back_in_each_parameters_dtype():
    model = pydl.nn.Sequential(pydl.nn.Linear(6, 8), pydl.nn.ReLU(), pydl.nn.Linear(8, 3))
    model[2].bfloat16()
    with pydl.autocast("cpu", dtype=BF16):
        loss = F.cross_entropy(model(pydl.randn(5, 6)), pydl.tensor([0, 1, 2, 0, 1]))
    assert loss.dtype == F32
    loss.backward()
    assert model[0].weight.grad.dtype == F32 and model[0].bias.grad.dtype == F32
    assert model[2].weight.grad.dtype == BF16 and model[2].bias.grad.dtype == BF16


def test_decorator_nesting_and_threads():
    @pydl.autocast("cpu", dtype=BF16)
    def forward(a, b):
        return a @ b

    a, b = pydl.randn(3, 4), pydl.randn(4, 2)
    assert forward(a, b).dtype == BF16
    with pydl.autocast("cpu"):
        with pydl.autocast("cpu", enabled=False):
            assert (a @ b).dtype == F32
        assert (a @ b).dtype == BF16
        seen = []
        thread = threading.Thread(target=lambda: seen.append((a @ b).dtype))
        thread.start()
        thread.join()
        assert seen == [F32]  # autocast is per thread, as torch's
    assert (a @ b).dtype == F32


def test_parameter_cast_is_cached_until_the_parameter_changes(monkeypatch):
    from pydl.functions.convert import Cast

    calls = []
    forward = Cast.forward
    monkeypatch.setattr(Cast, "forward", staticmethod(
        lambda ctx, a, dtype: calls.append(dtype) or forward(ctx, a, dtype)))
    lin = pydl.nn.Linear(4, 4, bias=False)
    x = pydl.randn(2, 4)
    with pydl.autocast("cpu", dtype=BF16):
        y1 = lin(lin(x))
        n = len(calls)
        assert n == 2  # x once, the weight once (the second use hits the cache)
        with pydl.no_grad():
            lin.weight.mul_(2.0)
        y2 = lin(lin(x))
        assert len(calls) == n + 2  # the weight changed: cast again (plus x)
    np.testing.assert_allclose(y2.float().detach().numpy(), 4 * y1.float().detach().numpy(),
                               rtol=2 ** -6)


def test_autocast_errors_say_what_to_do():
    with pytest.raises(ValueError, match="bfloat16"):
        pydl.autocast("cpu", dtype=F64)
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        pydl.autocast("tpu")
    if not pydl.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"pydl.autocast\('cpu', dtype=pydl.bfloat16\)"):
            pydl.autocast("cuda", dtype=F16)
    pydl.autocast("cuda", enabled=False)  # disabled: no device needed


# -- GradScaler -----------------------------------------------------------------------------------
def _model_and_opt(lr=0.1, dtype=F32, opt=pydl.optim.SGD):
    pydl.manual_seed(0)
    model = pydl.nn.Linear(3, 2).to(dtype)
    return model, opt(model.parameters(), lr=lr)


def test_scaler_defaults_are_torchs():
    s = GradScaler()
    assert s.get_scale() == 2.0 ** 16 and s.get_growth_factor() == 2.0
    assert s.get_backoff_factor() == 0.5 and s.get_growth_interval() == 2000 and s.is_enabled()
    assert s.state_dict() == {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                              "growth_interval": 2000, "_growth_tracker": 0}


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_huge_loss_skips_the_step_and_backs_off():
    model, opt = _model_and_opt()
    scaler = GradScaler(init_scale=2.0 ** 16)
    before = [p.detach().clone() for p in model.parameters()]
    loss = (model(pydl.ones(1, 3)) * 1e38).sum()  # times 2**16 overflows float32
    scaler.scale(loss).backward()
    assert scaler.step(opt) is None
    scaler.update()
    assert all(np.array_equal(p.detach().numpy(), b.numpy())
               for p, b in zip(model.parameters(), before))
    assert scaler.get_scale() == 2.0 ** 15
    # a clean step then moves the parameters by the unscaled gradient
    opt.zero_grad()
    scaler.scale(model(pydl.ones(1, 3)).sum()).backward()
    scaler.step(opt)
    scaler.update()
    np.testing.assert_allclose(model.weight.detach().numpy(), before[0].numpy() - 0.1,
                               rtol=1e-6)
    assert scaler.get_scale() == 2.0 ** 15


def test_scale_grows_after_growth_interval_clean_steps():
    model, opt = _model_and_opt()
    scaler = GradScaler(init_scale=4.0, growth_interval=3)
    scales = []
    for _ in range(7):
        opt.zero_grad()
        scaler.scale(model(pydl.ones(2, 3)).sum()).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    assert scales == [4.0, 4.0, 8.0, 8.0, 8.0, 16.0, 16.0]


def test_unscale_for_clipping_then_step_unscales_once():
    model, opt = _model_and_opt(lr=1.0)
    scaler = GradScaler(init_scale=1024.0)
    before = model.weight.detach().clone()
    scaler.scale(model(pydl.ones(1, 3)).sum()).backward()
    assert model.weight.grad.numpy().max() == 1024.0
    scaler.unscale_(opt)
    np.testing.assert_array_equal(model.weight.grad.numpy(), np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="already called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    np.testing.assert_allclose(model.weight.detach().numpy(), before.numpy() - 1.0)
    scaler.update()
    with pytest.raises(RuntimeError, match="no inf checks"):
        scaler.update()


def test_scaler_state_dict_roundtrip_and_disabled():
    s = GradScaler(init_scale=8.0, growth_interval=5)
    s._growth_tracker = 3
    t = GradScaler()
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    off = GradScaler(enabled=False)
    model, opt = _model_and_opt()
    loss = model(pydl.ones(1, 3)).sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}
    loss.backward()
    off.step(opt)
    off.update()


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_scaler_matches_torch_over_a_run_with_overflows():
    torch = pytest.importorskip("torch")
    model, opt = _model_and_opt(lr=0.05, opt=pydl.optim.Adam)
    tmodel = torch.nn.Linear(3, 2)
    with torch.no_grad():
        tmodel.weight.copy_(torch.from_numpy(model.weight.detach().numpy()))
        tmodel.bias.copy_(torch.from_numpy(model.bias.detach().numpy()))
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.05)
    scaler = GradScaler(init_scale=2.0 ** 10, growth_interval=2)
    tscaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=2)
    xs = np.random.default_rng(0).standard_normal((9, 4, 3)).astype(np.float32)
    factors = [1, 1, 1e36, 1, 1, 1, 1e37, 1e37, 1]  # huge: the scaled loss overflows
    for x, f in zip(xs, factors):
        opt.zero_grad()
        topt.zero_grad()
        scaler.scale((model(pydl.tensor(x)) ** 2).sum() * f).backward()
        tscaler.scale((tmodel(torch.from_numpy(x)) ** 2).sum() * f).backward()
        scaler.unscale_(opt)
        tscaler.unscale_(topt)
        scaler.step(opt)
        tscaler.step(topt)
        scaler.update()
        tscaler.update()
        assert scaler.get_scale() == tscaler.get_scale()
    np.testing.assert_allclose(model.weight.detach().numpy(), tmodel.weight.detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_scaler_refuses_float16_optimizer_state():
    model, opt = _model_and_opt(opt=pydl.optim.Adam, dtype=F16)
    scaler = GradScaler(init_scale=2.0 ** 8)
    scaler.scale(model(pydl.ones(1, 3, dtype=F16)).float().sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert opt.state[model.weight]["exp_avg"].dtype == np.float32  # pydl keeps float32 state
    opt.state[model.weight]["exp_avg"] = opt.state[model.weight]["exp_avg"].astype(np.float16)
    scaler.scale(model(pydl.ones(1, 3, dtype=F16)).float().sum()).backward()
    with pytest.raises(TypeError, match="float32 optimizer state"):
        scaler.step(opt)


def test_unscaled_gradients_of_float16_parameters_are_float32():
    model, opt = _model_and_opt(dtype=F16)
    scaler = GradScaler(init_scale=2.0 ** 12)
    x = pydl.full((1, 3), 1e-4, dtype=F16)
    scaler.scale(model(x).float().sum()).backward()
    assert model.weight.grad.dtype == F16
    scaler.unscale_(opt)
    g = model.weight.grad
    assert g.dtype == F32  # unscaled in float32: no float16 rounding of the small gradient
    np.testing.assert_array_equal(g.numpy(), np.full((2, 3), np.float16(1e-4), np.float32))
    scaler.step(opt)


# -- float32 master weights -----------------------------------------------------------------------
@pytest.mark.parametrize("low", [BF16, F16])
def test_master_weights_accumulate_updates_below_one_ulp(low):
    p = pydl.nn.Parameter(pydl.ones(4, dtype=low))
    opt = pydl.optim.SGD([p], lr=1e-4)
    for _ in range(100):
        p.grad = pydl.ones(4, dtype=low)
        opt.step()
    # each step is below half an ulp of 1.0 in float16 and bfloat16: a low-precision update
    # would never move; the float32 master copy has moved by 0.01
    master = opt.state[p]["master_param"]
    assert master.dtype == np.float32
    np.testing.assert_allclose(master, 0.99, rtol=1e-5)
    np.testing.assert_array_equal(p.detach().numpy(), np.full(4, 0.99, np.float32).astype(low))


@pytest.mark.parametrize("kind", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_low_precision_step_matches_float32_step_rounded(kind):
    make = getattr(pydl.optim, kind)
    extra = {"momentum": 0.9} if kind == "SGD" else {}
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((5, 7)).astype(BF16)
    grads = rng.standard_normal((4, 5, 7)).astype(np.float32)
    p = pydl.nn.Parameter(pydl.tensor(w0))
    q = pydl.nn.Parameter(pydl.tensor(w0.astype(np.float32)))
    opt_p, opt_q = make([p], lr=0.01, **extra), make([q], lr=0.01, **extra)
    for g in grads:
        p.grad = pydl.tensor(g.astype(BF16))
        q.grad = pydl.tensor(g.astype(BF16).astype(np.float32))
        opt_p.step()
        opt_q.step()
        # the master copy follows the float32 run exactly; the parameter is its rounding
        np.testing.assert_array_equal(opt_p.state[p]["master_param"], q.detach().numpy())
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy().astype(BF16))


def test_checkpoint_resumes_low_precision_training_exactly(tmp_path):
    def make():
        pydl.manual_seed(1)
        model = pydl.nn.Sequential(pydl.nn.Linear(4, 8), pydl.nn.Tanh(),
                                   pydl.nn.Linear(8, 2)).bfloat16()
        return model, pydl.optim.Adam(model.parameters(), lr=1e-2)

    xs = pydl.randn(6, 5, 4).bfloat16()

    def train(model, opt, batches):
        for x in batches:
            opt.zero_grad()
            model(x).float().pow(2).mean().backward()
            opt.step()

    model, opt = make()
    train(model, opt, xs[:3])
    path = os.fspath(tmp_path / "ckpt.safetensors")
    pydl.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
    train(model, opt, xs[3:])
    model2, opt2 = make()
    ckpt = pydl.load(path)
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    train(model2, opt2, xs[3:])
    for a, b in zip(model.parameters(), model2.parameters()):
        assert a.dtype == BF16 and np.array_equal(a.detach().numpy(), b.detach().numpy())
    for p, p2 in zip(model.parameters(), model2.parameters()):
        np.testing.assert_array_equal(opt.state[p]["master_param"], opt2.state[p2]["master_param"])


def test_parameter_written_outside_the_optimizer_is_reread():
    p = pydl.nn.Parameter(pydl.ones(3, dtype=BF16))
    opt = pydl.optim.SGD([p], lr=0.5)
    p.grad = pydl.ones(3, dtype=BF16)
    opt.step()
    with pydl.no_grad():
        p.fill_(4.0)
    opt.step()
    assert p.float().tolist() == [3.5, 3.5, 3.5]


# -- Keras side: compile(mixed_precision=...) and pydl train --precision -----------------------
def _digits_like(n=96, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((3, 10)) * 2
    y = rng.integers(0, 3, n)
    return (centers[y] + rng.standard_normal((n, 10)) * 0.5).astype(np.float32), y


@pytest.mark.parametrize("name,dtype", [("bf16", BF16), ("mixed_bfloat16", BF16),
                                        ("fp16", F16), ("mixed_float16", F16)])
def test_compile_mixed_precision_trains_float32_weights(name, dtype):
    x, y = _digits_like()
    pydl.manual_seed(0)
    model = pydl.Sequential([pydl.nn.Linear(10, 32), pydl.nn.ReLU(), pydl.nn.Linear(32, 3)])
    model.compile(optimizer="adam", lr=1e-2, metrics=["accuracy"], mixed_precision=name)
    assert model.mixed_precision == dtype
    assert (model.scaler is not None) == (dtype == F16)
    seen = []
    model.module[2].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    hist = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert set(seen) == {dtype}  # the matmuls ran in the low dtype
    assert all(p.dtype == F32 for p in model.parameters())  # the weights stayed float32
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert model.evaluate(x, y, verbose=0)["accuracy"] > 0.9
    assert model.predict(x[:5]).dtype == np.float32


def test_compile_mixed_precision_errors_and_fp32_names():
    model = pydl.Sequential([pydl.nn.Linear(2, 2)])
    for name in (None, "fp32", "float32"):
        assert model.compile(mixed_precision=name).mixed_precision is None
    with pytest.raises(ValueError, match="'bf16', 'fp16'"):
        model.compile(mixed_precision="int8")


def test_fp16_training_checkpoint_keeps_the_scaler(tmp_path):
    x, y = _digits_like()
    model = pydl.Sequential([pydl.nn.Linear(10, 3)])
    model.compile(optimizer="sgd", lr=0.1, mixed_precision="fp16")
    model.scaler = GradScaler(init_scale=256.0, growth_interval=2)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)  # 3 clean steps: grows once
    assert model.scaler.get_scale() == 512.0
    path = os.fspath(tmp_path / "ckpt.safetensors")
    model.save_checkpoint(path)
    other = pydl.Sequential([pydl.nn.Linear(10, 3)])
    other.compile(optimizer="sgd", lr=0.1, mixed_precision="fp16")
    other.load_checkpoint(path)
    assert other.scaler.state_dict() == model.scaler.state_dict()


def test_cli_precision_flag():
    from pydl.cli import parse

    assert parse(["--model", "mlp", "--precision", "bf16", "--device", "cpu"]).precision == "bf16"
    assert parse(["--model", "cnn", "--device", "cpu"]).precision == "fp32"
    with pytest.raises(SystemExit, match="--precision bf16 trains"):
        parse(["--model", "gan", "--precision", "bf16", "--device", "cpu"])


def test_conv3d_and_the_exp_family_follow_the_table():
    x = pydl.randn(1, 2, 4, 5, 5)
    w = pydl.randn(3, 2, 2, 2, 2)
    with pydl.autocast("cpu", dtype=BF16):
        assert F.conv3d(x, w).dtype == BF16  # built from conv2d
        y = x.bfloat16()
        assert pydl.exp2(y).dtype == F32 and pydl.logaddexp(y, y).dtype == F32
