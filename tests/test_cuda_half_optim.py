"""The fused optimizer steps with float32 master weights and a float16 / bfloat16 model copy
(csrc/cuda/optim.cu, ``model_params`` of pydl/backend/protocol.py), on a GPU and in the host
emulation (PYDL_CUDA_EMULATE=1), against the float32 CPU reference.

The kernel steps the float32 master copy and writes the half parameter from the same
registers, reading the gradient as the half array itself (or float32, as GradScaler.unscale_
leaves it). So the master copy matches the float32 reference step with the widened gradient
(float32 rounding differences only), and the model copy is exactly the master copy rounded
to nearest even. Model copies are poisoned (NaN) first; sizes are odd, one crosses the
8192-element chunk, one model copy is a transposed view and one tensor's gradient and copy
sit 2 bytes off their vector alignment (the element-by-element path).
"""

from __future__ import annotations

import _cuda_emu
import ml_dtypes
import numpy as np
import pytest
from test_cuda_kernels import NON_NEGATIVE_STATES, OPT_SIZES, OPTIMIZERS, _opt_call

from pydl.backend import cpu
from pydl.backend import cuda as backend
from pydl.backend.cpu import reference as ref
from pydl.backend.cuda import graph, runtime

F16, BF16, F32 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32)
SIZES = OPT_SIZES + [(8193,)]


@pytest.fixture(params=_cuda_emu.KINDS)
def dev(request, monkeypatch):
    if request.param == "gpu":
        backend.precompile(["optim.cu"])
    return _cuda_emu.device(request.param, monkeypatch)


def _offset(dev, a):
    """A device copy of ``a`` one element (2 bytes for a half array) past its allocation's
    start: not 8-byte aligned."""
    buf = dev.put(np.concatenate([np.zeros(1, a.dtype), a.ravel()]))
    return buf[1:].reshape(a.shape)


@pytest.mark.parametrize("low", [F16, BF16], ids=str)
@pytest.mark.parametrize("grad_kind", ["half", "float32"])
@pytest.mark.parametrize("which", list(OPTIMIZERS))
def test_step_writes_master_and_half_copy(dev, low, grad_kind, which):
    _check_steps(dev, low, grad_kind, which)


@pytest.mark.parametrize("low", [F16, BF16], ids=str)
@pytest.mark.parametrize("which", ["sgd_momentum", "adamw_amsgrad", "rmsprop_centered_momentum",
                                   "adagrad"])
def test_step_scalars_from_device(dev, monkeypatch, low, which):
    """As in a CUDA graph replay: the scalar arguments are NaN and the real values come from
    the device slot, so the update is right only if the half-copy instances read it."""
    def slot(values, slot_dtype, key):
        return dev.put(np.asarray(values, slot_dtype))

    launch = runtime.launch

    def nan_scalars(filename, name_expr, grid, block, args):
        if filename == "optim.cu":  # (ptrs, chunks, ntensors, nchunks, dyn, *scalars, flags)
            args = args[:5] + tuple(type(v)(np.nan) for v in args[5:-1]) + args[-1:]
        launch(filename, name_expr, grid, block, args)

    monkeypatch.setattr(graph, "active", lambda: True)
    monkeypatch.setattr(graph, "scalar_slot", slot)
    monkeypatch.setattr(runtime, "launch", nan_scalars)
    _check_steps(dev, low, "half", which)


def _check_steps(dev, low, grad_kind, which):
    """Three steps of ``which`` with half model copies against the float32 reference."""
    name, count, kw = OPTIMIZERS[which]
    rng = np.random.default_rng(len(which) + 7)
    models = [rng.standard_normal(s).astype(low) for s in SIZES]
    masters = [m.astype(F32) for m in models]
    states = [[rng.standard_normal(s).astype(F32) for s in SIZES] for _ in range(count - 2)]
    for i in NON_NEGATIVE_STATES.get(name, ()):
        states[i - 2] = [np.abs(a) for a in states[i - 2]]
    if name == "rmsprop_step":  # centered needs square_avg >= grad_avg^2
        states[0] = [s + g * g for s, g in zip(states[0], states[2], strict=True)]
    host = [masters, None] + states
    devs = [[dev.put(a) for a in lst] if lst is not None else None for lst in host]
    dev_models = [dev.put(np.full(s, np.nan, low)) for s in SIZES]  # poisoned
    dev_models[-2] = dev.put(np.full(SIZES[-2][::-1], np.nan, low)).T  # a transposed view
    dev_models[1] = _offset(dev, dev.get(dev_models[1]))
    for step in (1, 2, 3):
        gdtype = low if grad_kind == "half" else F32
        grads = [rng.standard_normal(s).astype(gdtype) for s in SIZES]
        host[1] = [g.astype(F32) for g in grads]  # the reference: float32 throughout
        devs[1] = [dev.put(g) for g in grads]
        devs[1][1] = _offset(dev, grads[1])
        _opt_call(getattr(ref, name), name, host, kw, step)
        _opt_call(lambda *a, **k: getattr(backend, name)(*a, model_params=dev_models, **k),
                  name, devs, kw, step)
    for i, (want_list, got_list) in enumerate(zip(host, devs, strict=True)):
        if i == 1:
            continue
        for want, got in zip(want_list, got_list, strict=True):
            got = dev.get(got)
            assert got.dtype == F32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for master, model in zip(devs[0], dev_models, strict=True):
        got = dev.get(model)
        assert got.dtype == low
        # bit for bit the kernel's own float32 master, rounded once
        assert np.array_equal(got.view(np.uint16), dev.get(master).astype(low).view(np.uint16))


@pytest.mark.parametrize("module", [cpu, ref], ids=["cpu", "cpu.reference"])
@pytest.mark.parametrize("low", [F16, BF16], ids=str)
def test_cpu_model_params_is_widen_step_round(module, low):
    """The CPU backend's model_params path gives what the optimizers did before it existed:
    widen the gradient, step the float32 master, round it into the parameter."""
    rng = np.random.default_rng(3)
    models = [rng.standard_normal(s).astype(low) for s in [(5,), (3, 7)]]
    grads = [rng.standard_normal(m.shape).astype(low) for m in models]
    masters = [m.astype(F32) for m in models]
    bufs = [np.zeros(m.shape, F32) for m in models]
    want_m, want_b = [m.copy() for m in masters], [b.copy() for b in bufs]
    kw = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True,
              maximize=False, first_step=True)
    module.sgd_step(want_m, [g.astype(F32) for g in grads], want_b, **kw)
    module.sgd_step(masters, grads, bufs, model_params=models, **kw)
    for got, want, model in zip(masters, want_m, models, strict=True):
        assert np.array_equal(got, want)
        assert np.array_equal(model.view(np.uint16), want.astype(low).view(np.uint16))


@pytest.mark.parametrize("module", [cpu, backend], ids=["cpu", "cuda"])
def test_model_params_bad_input(module, monkeypatch):
    if module is backend:
        if not _cuda_emu.EMULATE:
            pytest.skip("set PYDL_CUDA_EMULATE=1 to run the kernels on the CPU")
        _cuda_emu.patch(monkeypatch)
    kw = dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
              maximize=False, first_step=True)
    p, g = np.ones(3, F32), np.ones(3, F32)
    with pytest.raises(TypeError, match="model copy.*float64"):
        module.sgd_step([p], [g], [None], model_params=[np.ones(3, np.float64)], **kw)
    with pytest.raises(TypeError, match="model copy"):
        module.sgd_step([p.astype(np.float64)], [g.astype(np.float64)], [None],
                        model_params=[np.ones(3, F16)], **kw)
    with pytest.raises(ValueError, match="model copies|differ in length"):
        module.sgd_step([p], [g], [None], model_params=[], **kw)


@pytest.mark.parametrize("low", [F16, BF16], ids=str)
def test_optimizer_hands_half_gradients_and_parameters_to_the_kernel(monkeypatch, low):
    """pydl.optim's master-weight path calls the backend step once with the float32 masters,
    the half gradients as they are and the half parameters as ``model_params`` (what lets the
    CUDA kernel write both copies); the real kernel then runs and gives the old result."""
    import pydl

    calls = []
    real = cpu.adam_step

    def spy(params, grads, *states, **hyper):
        calls.append(([p.dtype for p in params], [g.dtype for g in grads],
                      hyper.get("model_params")))
        return real(params, grads, *states, **hyper)

    monkeypatch.setattr(cpu, "adam_step", spy)
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 5)).astype(low)
    g = rng.standard_normal((3, 5)).astype(low)
    p = pydl.nn.Parameter(pydl.tensor(w0))
    opt = pydl.optim.AdamW([p], lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        p.grad = pydl.tensor(g)
        opt.step()
    assert len(calls) == 2
    dtypes, gdtypes, models = calls[-1]
    assert dtypes == [F32] and gdtypes == [low] and models[0] is p.data
    # the same two steps by hand: float32 master, widened gradient, one rounding
    master, m, v = w0.astype(F32), np.zeros((3, 5), F32), np.zeros((3, 5), F32)
    for step in (1, 2):
        real([master], [g.astype(F32)], [m], [v], None, lr=1e-2, beta1=0.9,
                      beta2=0.999, eps=1e-8, weight_decay=0.1, step=step, amsgrad=False,
                      decoupled_weight_decay=True, maximize=False)
    assert np.array_equal(opt.state[p]["master_param"], master)
    assert np.array_equal(p.data.view(np.uint16), master.astype(low).view(np.uint16))
