"""pydl.optim: every optimizer and option against torch.optim, state dicts, zero_grad, errors.

The parity runs drive both libraries with the same gradient sequence: at step t parameter i
gets ``0.5 * param + noise[t][i]`` (the gradient of a quadratic plus fixed noise), computed
from each library's own current parameter values, so any difference in the update compounds
over the 50 steps.
"""

import copy
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

import pydl
from pydl import optim
from pydl.backend import get_backend

try:
    import torch
except ImportError:  # parity tests need the CPU build of torch (pip install torch)
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="needs torch for parity")

SHAPES = [(3, 4), (5,), (), (2, 1, 3)]
STEPS = 50

OPTIMIZERS = {
    "SGD": (optim.SGD, "SGD"),
    "Adam": (optim.Adam, "Adam"),
    "AdamW": (optim.AdamW, "AdamW"),
    "RMSprop": (optim.RMSprop, "RMSprop"),
    "Adagrad": (optim.Adagrad, "Adagrad"),
}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.5, weight_decay=0.1)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, maximize=True)),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.05, maximize=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, weight_decay=0.2)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1, amsgrad=True, betas=(0.85, 0.95))),
    ("AdamW", dict(lr=0.05, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.05, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.05,
                     maximize=True)),
]
# one case with every option on, per optimizer
FULL = {
    "SGD": CASES[6][1],
    "Adam": CASES[13][1],
    "AdamW": CASES[16][1],
    "RMSprop": CASES[24][1],
    "Adagrad": CASES[29][1],
}


# options without maximize, for tests that need training to converge
CONVERGING = {
    "SGD": dict(lr=0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    "Adam": dict(lr=0.05, amsgrad=True, weight_decay=0.05),
    "AdamW": dict(lr=0.05, weight_decay=0.1, amsgrad=True),
    "RMSprop": dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.05),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1, weight_decay=0.05),
}


def _case_id(case):
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items() if k != "lr")


def problem(seed=0, steps=STEPS, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    noise = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return init, noise


def no_skip(t, i):
    return False


def every_third(t, i):
    """Parameter 1 gets no gradient on steps 0, 3, 6...; parameter 3 only after step 10."""
    return (i == 1 and t % 3 == 0) or (i == 3 and t < 10)


def pydl_params(init, device="cpu", dtype=pydl.float64):
    return [pydl.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in init]


def drive(opt, params, noise, start, stop, skip=no_skip):
    """Steps start..stop-1 of the gradient sequence on pydl parameters."""
    for t in range(start, stop):
        for i, (p, n) in enumerate(zip(params, noise[t], strict=True)):
            if skip(t, i):
                p.grad = None
            else:
                value = 0.5 * p.detach().cpu().numpy() + n
                p.grad = pydl.tensor(value, dtype=p.dtype, device=p.device)
        opt.step()


def run_pydl(make_opt, init, noise, steps, device="cpu", dtype=pydl.float64, skip=no_skip):
    params = pydl_params(init, device, dtype)
    opt = make_opt(params)
    drive(opt, params, noise, 0, steps, skip)
    return params, opt


def run_torch(make_opt, init, noise, steps, dtype=None, skip=no_skip):
    dtype = dtype or torch.float64
    params = [torch.tensor(a, dtype=dtype, requires_grad=True) for a in init]
    opt = make_opt(params)
    for t in range(steps):
        for i, (p, n) in enumerate(zip(params, noise[t], strict=True)):
            if skip(t, i):
                p.grad = None
            else:
                p.grad = torch.tensor(0.5 * p.detach().numpy() + n, dtype=dtype)
        opt.step()
    return params, opt


def numpy_of(params):
    return [np.array(p.detach().cpu().numpy()) for p in params]


def assert_params_close(ours, theirs, atol=1e-8):
    for a, b in zip(numpy_of(ours), numpy_of(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)


def two_groups(name, params):
    first, second = GROUP_OPTIONS[name]
    return [{"params": params[:2], **first}, {"params": params[2:], **second}]


GROUP_OPTIONS = {
    "SGD": ({"lr": 0.02}, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    "Adam": ({"lr": 0.01}, {"lr": 0.1, "betas": (0.5, 0.9), "amsgrad": True}),
    "AdamW": ({"lr": 0.01, "weight_decay": 0.0}, {"lr": 0.1, "weight_decay": 0.3}),
    "RMSprop": ({"lr": 0.001}, {"lr": 0.02, "centered": True, "momentum": 0.5}),
    "Adagrad": ({"lr": 0.02}, {"lr": 0.2, "lr_decay": 0.1}),
}


# ------------------------------------------------------------------------ parity with torch
@requires_torch
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_torch(case):
    name, kwargs = case
    ours_cls, torch_name = OPTIMIZERS[name]
    init, noise = problem()
    ours, opt = run_pydl(lambda p: ours_cls(p, **kwargs), init, noise, STEPS)
    theirs, topt = run_torch(lambda p: getattr(torch.optim, torch_name)(p, **kwargs),
                             init, noise, STEPS)
    assert_params_close(ours, theirs)
    # the per-parameter state has torch's names and values
    ours_state = opt.state_dict()["state"]
    theirs_state = topt.state_dict()["state"]
    assert sorted(ours_state) == sorted(theirs_state)
    for idx, entry in theirs_state.items():
        assert set(ours_state[idx]) == set(entry)
        for key, value in entry.items():
            mine = ours_state[idx][key]
            if key == "step":
                assert mine == int(value)
            else:
                np.testing.assert_allclose(mine.numpy(), value.numpy(), rtol=0, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_skipped_gradients_match_torch(name):
    """Parameters whose grad is None are skipped; their step counts diverge, as in torch."""
    ours_cls, torch_name = OPTIMIZERS[name]
    kwargs = FULL[name]
    init, noise = problem(seed=1)
    ours, opt = run_pydl(lambda p: ours_cls(p, **kwargs), init, noise, STEPS, skip=every_third)
    theirs, _ = run_torch(lambda p: getattr(torch.optim, torch_name)(p, **kwargs),
                          init, noise, STEPS, skip=every_third)
    assert_params_close(ours, theirs)
    if "step" in opt.state[ours[0]]:
        assert opt.state[ours[0]]["step"] == STEPS
        assert opt.state[ours[1]]["step"] == STEPS - 17
        assert opt.state[ours[3]]["step"] == STEPS - 10


@requires_torch
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_param_groups_with_different_options_match_torch(name):
    ours_cls, torch_name = OPTIMIZERS[name]
    init, noise = problem(seed=2)
    ours, opt = run_pydl(lambda p: ours_cls(two_groups(name, p), lr=0.5), init, noise, STEPS)
    first, second = GROUP_OPTIONS[name]
    assert [g["lr"] for g in opt.param_groups] == [first["lr"], second["lr"]]
    theirs, _ = run_torch(lambda p: getattr(torch.optim, torch_name)(two_groups(name, p), lr=0.5),
                          init, noise, STEPS)
    assert_params_close(ours, theirs)


@requires_torch
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_float32_matches_torch(name):
    ours_cls, torch_name = OPTIMIZERS[name]
    kwargs = FULL[name]
    init, noise = problem(seed=3, steps=20)
    ours, _ = run_pydl(lambda p: ours_cls(p, **kwargs), init, noise, 20, dtype=pydl.float32)
    theirs, _ = run_torch(lambda p: getattr(torch.optim, torch_name)(p, **kwargs),
                          init, noise, 20, dtype=torch.float32)
    assert ours[0].dtype == pydl.float32
    assert_params_close(ours, theirs, atol=1e-4)


@requires_torch
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_training_with_autograd_matches_torch(name):
    """Linear regression, gradients from each library's own backward pass."""
    ours_cls, torch_name = OPTIMIZERS[name]
    kwargs = CONVERGING[name]
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((32, 3)), rng.standard_normal((32, 1))
    w0, b0 = rng.standard_normal((3, 1)), np.zeros(1)

    w = pydl.tensor(w0, dtype=pydl.float64, requires_grad=True)
    b = pydl.tensor(b0, dtype=pydl.float64, requires_grad=True)
    xt, yt = pydl.tensor(x, dtype=pydl.float64), pydl.tensor(y, dtype=pydl.float64)
    opt = ours_cls([w, b], **kwargs)
    tw = torch.tensor(w0, requires_grad=True)
    tb = torch.tensor(b0, requires_grad=True)
    topt = getattr(torch.optim, torch_name)([tw, tb], **kwargs)
    tx, ty = torch.tensor(x), torch.tensor(y)
    for _ in range(STEPS):
        opt.zero_grad()
        ((xt @ w + b - yt) ** 2).mean().backward()
        opt.step()
        topt.zero_grad()
        ((tx @ tw + tb - ty) ** 2).mean().backward()
        topt.step()
    assert_params_close([w, b], [tw, tb])


# ------------------------------------------------------------------------------- devices
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_on_device_matches_cpu(device, name):
    """The fused kernel of each device gives the CPU reference's trajectory."""
    ours_cls, _ = OPTIMIZERS[name]
    kwargs = FULL[name]
    init, noise = problem(seed=5, steps=10)
    on_device, opt = run_pydl(lambda p: ours_cls(p, **kwargs), init, noise, 10, device=device)
    for p in on_device:
        assert p.device == pydl.device(device)
    for entry in opt.state.values():
        for value in entry.values():
            if not isinstance(value, (int, float)):
                assert pydl.backend.device_of(value) == pydl.device(device)
    on_cpu, _ = run_pydl(lambda p: ours_cls(p, **kwargs), init, noise, 10)
    for a, b in zip(numpy_of(on_device), numpy_of(on_cpu), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------- fused multi-tensor
def test_one_kernel_call_per_group_device_and_dtype(monkeypatch):
    cpu = get_backend("cpu")
    calls = []
    real = cpu.adam_step

    def counting(params, grads, *states, **hyper):
        calls.append((len(params), params[0].dtype, hyper["step"]))
        return real(params, grads, *states, **hyper)

    monkeypatch.setattr(cpu, "adam_step", counting)
    p64 = [pydl.randn(3, 2, dtype=pydl.float64, requires_grad=True) for _ in range(4)]
    p32 = [pydl.randn(5, requires_grad=True) for _ in range(2)]
    opt = optim.Adam(p64 + p32, lr=0.1)
    for p in p64 + p32:
        p.grad = pydl.ones_like(p)
    opt.step()
    assert sorted(calls, key=str) == sorted([(4, np.dtype("float64"), 1),
                                             (2, np.dtype("float32"), 1)], key=str)
    calls.clear()
    p64[0].grad = None  # a parameter without a gradient is left out of the call
    opt.step()
    assert (3, np.dtype("float64"), 2) in calls


def test_step_bumps_the_version_so_stale_graphs_fail():
    p = pydl.tensor([1.0, 2.0], dtype=pydl.float64, requires_grad=True)
    y = (p * p).sum()
    opt = optim.SGD([p], lr=0.1)
    p.grad = pydl.ones_like(p)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_non_contiguous_parameter_is_updated_in_place():
    a = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    p = pydl.from_numpy(a).requires_grad_()
    assert not p.data.flags.c_contiguous
    q = pydl.tensor(np.arange(6.0).reshape(2, 3), dtype=pydl.float64, requires_grad=True)
    opt_p, opt_q = optim.SGD([p], lr=0.1, momentum=0.9), optim.SGD([q], lr=0.1, momentum=0.9)
    for _ in range(3):
        p.grad = pydl.tensor(p.detach().numpy() ** 2, dtype=pydl.float64)
        q.grad = pydl.tensor(q.detach().numpy() ** 2, dtype=pydl.float64)
        opt_p.step()
        opt_q.step()
    np.testing.assert_array_equal(a, q.detach().numpy())  # the user's array itself changed


# --------------------------------------------------------------------------- state dicts
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_dict_round_trip_resumes_exactly(name):
    ours_cls, _ = OPTIMIZERS[name]
    kwargs = FULL[name]
    init, noise = problem(seed=6)

    def build(params):
        return ours_cls(two_groups(name, params), **kwargs)

    straight, _ = run_pydl(build, init, noise, STEPS, skip=every_third)

    params, opt = run_pydl(build, init, noise, 20, skip=every_third)
    at_20 = numpy_of(params)
    saved = opt.state_dict()
    snapshot = copy.deepcopy(saved)
    saved = pickle.loads(pickle.dumps(saved))  # survives serialization

    # the saved dict is a snapshot: stepping the original on does not change it
    drive(opt, params, noise, 20, 25, skip=every_third)
    for idx, entry in snapshot["state"].items():
        for key, value in entry.items():
            if key != "step":
                np.testing.assert_array_equal(saved["state"][idx][key].numpy(), value.numpy())

    # a fresh optimizer built with other options takes everything from the state dict
    resumed = pydl_params(at_20)
    new_opt = ours_cls([{"params": resumed[:2], "lr": 9.0}, {"params": resumed[2:]}], lr=7.0)
    new_opt.load_state_dict(saved)
    assert new_opt.param_groups[0].keys() == opt.param_groups[0].keys()
    for mine, theirs in zip(new_opt.param_groups, opt.param_groups, strict=True):
        assert {k: v for k, v in mine.items() if k != "params"} == {
            k: v for k, v in theirs.items() if k != "params"}
    drive(new_opt, resumed, noise, 20, STEPS, skip=every_third)
    for a, b in zip(numpy_of(resumed), numpy_of(straight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_dict_layout_is_pytorchs():
    params = pydl_params(problem()[0])
    opt = optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.1}], lr=0.01)
    for p in params:
        p.grad = pydl.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1, 2, 3]]
    assert [g["lr"] for g in sd["param_groups"]] == [0.01, 0.1]
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"]) == {0, 1, 2, 3}
    assert sd["state"][0]["step"] == 1
    assert isinstance(sd["state"][0]["exp_avg"], pydl.Tensor)
    assert sd["state"][0]["exp_avg"].shape == (3, 4)


@requires_torch
def test_loads_a_state_dict_converted_from_torch():
    init, noise = problem(seed=7)
    kwargs = dict(lr=0.05, amsgrad=True)
    theirs, topt = run_torch(lambda p: torch.optim.Adam(p, **kwargs), init, noise, 20)
    tsd = topt.state_dict()
    converted = {
        "state": {i: {k: pydl.tensor(v.numpy()) for k, v in s.items()}
                  for i, s in tsd["state"].items()},
        "param_groups": tsd["param_groups"],
    }
    params = pydl_params(numpy_of(theirs))
    opt = optim.Adam(params, **kwargs)
    opt.load_state_dict(converted)
    assert opt.state[params[0]]["step"] == 20
    drive(opt, params, noise, 20, STEPS)
    for t in range(20, STEPS):
        for p, n in zip(theirs, noise[t], strict=True):
            p.grad = torch.tensor(0.5 * p.detach().numpy() + n)
        topt.step()
    assert_params_close(params, theirs)


def test_load_state_dict_rejects_mismatches():
    params = pydl_params(problem()[0])
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = pydl.ones_like(p)
    opt.step()
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="2 parameter groups.*has 1"):
        optim.SGD(params, lr=0.1).load_state_dict(
            {"state": {}, "param_groups": sd["param_groups"] * 2})
    with pytest.raises(ValueError, match="group 0 has 4 parameters.*has 3"):
        optim.SGD(params[:3], lr=0.1).load_state_dict(sd)
    other = pydl_params([np.zeros(s) for s in [(4, 3), (5,), (), (2, 1, 3)]])
    message = re.escape("'momentum_buffer' of parameter 0 has shape (3, 4)")
    with pytest.raises(ValueError, match=message):
        optim.SGD(other, lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_load_state_dict_moves_state_to_the_parameters_dtype():
    p = pydl.tensor([1.0, 2.0], requires_grad=True)  # float32
    opt = optim.Adam([p])
    sd = {"state": {0: {"step": 3.0, "exp_avg": pydl.tensor([1.0, 1.0], dtype=pydl.float64),
                        "exp_avg_sq": np.ones(2)}},
          "param_groups": opt.state_dict()["param_groups"]}
    opt.load_state_dict(sd)
    assert opt.state[p]["step"] == 3 and isinstance(opt.state[p]["step"], int)
    assert opt.state[p]["exp_avg"].dtype == np.float32
    assert opt.state[p]["exp_avg_sq"].dtype == np.float32
    sd["state"][0]["exp_avg"].data[0] = 5.0  # no aliasing with the loaded dict
    assert opt.state[p]["exp_avg"][0] == 1.0


# ----------------------------------------------------------------------- zero_grad, step
def test_zero_grad_sets_to_none_by_default():
    params = pydl_params(problem()[0])
    opt = optim.SGD(params, lr=0.1)
    for p in params:
        p.grad = pydl.ones_like(p)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_zero_grad_in_place():
    params = pydl_params(problem()[0])
    opt = optim.SGD(params, lr=0.1)
    grads = [pydl.ones_like(p) for p in params]
    arrays = [g.data for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    opt.zero_grad(set_to_none=False)
    for p, g, a in zip(params, grads, arrays, strict=True):
        assert p.grad is g and p.grad.data is a
        assert not np.any(a)


def test_zero_grad_in_place_detaches_a_grad_with_history():
    x = pydl.tensor([1.0, 2.0], requires_grad=True)
    p = pydl.tensor([0.0, 0.0], requires_grad=True)
    p.grad = x * 2
    optim.SGD([p]).zero_grad(set_to_none=False)
    assert p.grad.is_leaf and not p.grad.requires_grad
    assert p.grad.tolist() == [0.0, 0.0]


def test_parameters_without_grad_are_skipped_and_get_no_state():
    a = pydl.tensor([1.0, 2.0], dtype=pydl.float64, requires_grad=True)
    b = pydl.tensor([3.0], dtype=pydl.float64, requires_grad=True)
    frozen = pydl.tensor([4.0], dtype=pydl.float64)  # requires_grad=False, as in fine-tuning
    opt = optim.Adam([a, b, frozen], lr=0.1)
    a.grad = pydl.tensor([1.0, -1.0], dtype=pydl.float64)
    opt.step()
    assert b.tolist() == [3.0] and frozen.tolist() == [4.0]
    assert b not in opt.state and frozen not in opt.state
    np.testing.assert_allclose(a.detach().numpy(), [0.9, 2.1])


def test_step_with_closure_returns_the_loss():
    w = pydl.tensor([1.0, -2.0], dtype=pydl.float64, requires_grad=True)
    opt = optim.SGD([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with pydl.no_grad():  # the closure still records its graph
        loss = opt.step(closure)
    assert loss.item() == 5.0
    np.testing.assert_allclose(w.detach().numpy(), [0.8, -1.6])


def test_repr_lists_group_options():
    opt = optim.SGD([pydl.zeros(2, requires_grad=True)], lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (") and "Parameter Group 0" in text and "momentum: 0.9" in text


def test_named_parameters_are_accepted():
    w = pydl.zeros(2, requires_grad=True)
    opt = optim.SGD([("weight", w)], lr=0.1)
    assert opt.param_groups[0]["params"][0] is w
    assert opt.param_groups[0]["param_names"] == ["weight"]


def test_add_param_group_uses_defaults_and_its_own_options():
    a, b = pydl.zeros(2, requires_grad=True), pydl.zeros(3, requires_grad=True)
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert opt.param_groups[1]["lr"] == 0.01 and opt.param_groups[1]["momentum"] == 0.9
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


# -------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_negative_learning_rate_is_refused(name):
    cls, _ = OPTIMIZERS[name]
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        cls([pydl.zeros(2, requires_grad=True)], lr=-0.1)
    opt = cls([pydl.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.add_param_group({"params": [pydl.zeros(1, requires_grad=True)], "lr": -1.0})


@pytest.mark.parametrize("cls,kwargs,message", [
    (optim.SGD, dict(momentum=-0.1), "Invalid momentum value"),
    (optim.SGD, dict(weight_decay=-1), "Invalid weight_decay value"),
    (optim.SGD, dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov momentum requires"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1"),
    (optim.Adam, dict(eps=-1e-8), "Invalid epsilon value"),
    (optim.AdamW, dict(weight_decay=-0.01), "Invalid weight_decay value"),
    (optim.RMSprop, dict(alpha=-0.5), "Invalid alpha value"),
    (optim.RMSprop, dict(momentum=-0.5), "Invalid momentum value"),
    (optim.Adagrad, dict(lr_decay=-1), "Invalid lr_decay value"),
    (optim.Adagrad, dict(initial_accumulator_value=-1), "Invalid initial_accumulator_value"),
])
def test_invalid_hyperparameters_are_refused(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls([pydl.zeros(2, requires_grad=True)], **kwargs)


def test_invalid_params_are_refused():
    leaf = pydl.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([leaf * 2])
    with pytest.raises(TypeError, match="int64"):
        optim.SGD([pydl.tensor([1, 2])])
    with pytest.raises(TypeError, match="got a Tensor"):
        optim.SGD(leaf)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="not a set"):
        optim.SGD({leaf})
    with pytest.raises(TypeError, match="only optimize Tensors"):
        optim.SGD([np.zeros(2)])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [leaf]}, {"params": [leaf]}])


def test_gradient_of_the_wrong_shape_is_named():
    p = pydl.zeros(2, 3, requires_grad=True)
    opt = optim.Adam([p])
    p.grad = pydl.zeros(3, 2)
    with pytest.raises(RuntimeError, match=re.escape("gradient of shape (3, 2)") + ".*" +
                       re.escape("shape (2, 3)")):
        opt.step()


# ---------------------------------------------------------------------------------- docs
def test_docs_examples_run():
    """Every ```python block of docs/optim.md runs as written."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "optim.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        exec(compile(block, "docs/optim.md", "exec"), {"__name__": "docs_optim"})


def test_state_dict_survives_pydl_save_and_load(tmp_path):
    pytest.importorskip("safetensors")
    init, noise = problem(seed=8, shapes=[(3, 4), (5,), (2, 1, 3), (2,)])
    straight, _ = run_pydl(lambda p: optim.AdamW(two_groups("AdamW", p)), init, noise, STEPS)
    params, opt = run_pydl(lambda p: optim.AdamW(two_groups("AdamW", p)), init, noise, 20)
    pydl.save(opt.state_dict(), tmp_path / "opt.safetensors")
    resumed = pydl_params(numpy_of(params))
    new_opt = optim.AdamW(two_groups("AdamW", resumed))
    new_opt.load_state_dict(pydl.load(tmp_path / "opt.safetensors"))
    drive(new_opt, resumed, noise, 20, STEPS)
    for a, b in zip(numpy_of(resumed), numpy_of(straight), strict=True):
        np.testing.assert_array_equal(a, b)


def test_optimizer_step_calls_registered_hooks_first():
    """The CUDA graph recorder rides on this hook; the optimizer never imports it."""
    from pydl.backend import optimizer_step_hooks, register_optimizer_step_hook

    p = pydl.tensor([1.0, 2.0], requires_grad=True)
    p.grad = pydl.ones_like(p)
    opt = optim.SGD([p], lr=0.5)
    seen = []

    def hook(optimizer):
        seen.append((optimizer, p.detach().numpy().copy()))

    register_optimizer_step_hook(hook)
    register_optimizer_step_hook(hook)  # once per hook
    try:
        opt.step()
    finally:
        optimizer_step_hooks.remove(hook)
    assert len(seen) == 1 and seen[0][0] is opt
    np.testing.assert_array_equal(seen[0][1], [1.0, 2.0])  # called before the update
    np.testing.assert_array_equal(p.detach().numpy(), [0.5, 1.5])
