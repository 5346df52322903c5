"""pydl.optim.lr_scheduler: the same learning-rate (and momentum) sequences as torch's.

Each case builds the scheduler on a pydl optimizer and on a torch one with two parameter
groups, steps both 100 times (optimizer first, as documented) and compares every group's lr
after every step; then checks that a state-dict round trip in the middle resumes exactly.
"""

import pickle
import warnings

import numpy as np
import pytest

import pydl
from pydl import optim
from pydl.optim import lr_scheduler

try:
    import torch
except ImportError:  # parity tests need the CPU build of torch (pip install torch)
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="needs torch for parity")

STEPS = 100
LRS = (0.1, 0.03)


def build_optimizer(lib, kind="SGD"):
    """An optimizer of ``lib`` (pydl.optim or torch.optim) with two groups of lrs LRS."""
    if lib is optim:
        params = [pydl.zeros(3, requires_grad=True), pydl.zeros(2, requires_grad=True)]
    else:
        params = [torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)]
    groups = [{"params": [params[0]], "lr": LRS[0]}, {"params": [params[1]], "lr": LRS[1]}]
    if kind == "SGD":
        return lib.SGD(groups, lr=1.0, momentum=0.9)
    return lib.Adam(groups, lr=1.0)


def lambdas(kind):
    if kind == "one":
        return lambda epoch: 0.95**epoch
    return [lambda epoch: 1.0 / (epoch + 1), lambda epoch: min(1.0, (epoch + 1) / 10)]


def sequential(sched, opt):
    warmup = sched.LinearLR(opt, start_factor=0.1, total_iters=10)
    cosine = sched.CosineAnnealingLR(opt, T_max=90, eta_min=1e-4)
    return sched.SequentialLR(opt, [warmup, cosine], milestones=[10])


# (id, optimizer kind, number of steps, factory(scheduler module, optimizer))
CASES = [
    ("StepLR-7", "SGD", STEPS, lambda s, o: s.StepLR(o, step_size=7, gamma=0.5)),
    ("StepLR-1", "SGD", STEPS, lambda s, o: s.StepLR(o, step_size=1, gamma=0.9)),
    ("MultiStepLR-repeats", "SGD", STEPS,
     lambda s, o: s.MultiStepLR(o, milestones=[10, 30, 30, 60], gamma=0.3)),
    ("MultiStepLR-unsorted", "Adam", STEPS, lambda s, o: s.MultiStepLR(o, milestones=[50, 5])),
    ("ExponentialLR", "SGD", STEPS, lambda s, o: s.ExponentialLR(o, gamma=0.97)),
    ("Cosine-100", "SGD", STEPS, lambda s, o: s.CosineAnnealingLR(o, T_max=100)),
    ("Cosine-30-eta", "SGD", STEPS,
     lambda s, o: s.CosineAnnealingLR(o, T_max=30, eta_min=0.001)),
    ("Cosine-7-periodic", "Adam", STEPS, lambda s, o: s.CosineAnnealingLR(o, T_max=7)),
    ("LinearLR-default", "SGD", STEPS, lambda s, o: s.LinearLR(o)),
    ("LinearLR-warmup", "SGD", STEPS,
     lambda s, o: s.LinearLR(o, start_factor=0.1, total_iters=20)),
    ("LinearLR-decay", "Adam", STEPS,
     lambda s, o: s.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=50)),
    ("LinearLR-to-zero", "SGD", STEPS,
     lambda s, o: s.LinearLR(o, start_factor=0.5, end_factor=0.0, total_iters=100)),
    ("LambdaLR-one", "SGD", STEPS, lambda s, o: s.LambdaLR(o, lambdas("one"))),
    ("LambdaLR-per-group", "SGD", STEPS, lambda s, o: s.LambdaLR(o, lambdas("two"))),
    ("OneCycle-cos-sgd", "SGD", STEPS, lambda s, o: s.OneCycleLR(o, max_lr=0.5, total_steps=100)),
    ("OneCycle-cos-adam", "Adam", STEPS,
     lambda s, o: s.OneCycleLR(o, max_lr=0.5, total_steps=100)),
    ("OneCycle-linear-per-group", "SGD", STEPS,
     lambda s, o: s.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=100, anneal_strategy="linear",
                               base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.95])),
    ("OneCycle-three-phase", "Adam", STEPS,
     lambda s, o: s.OneCycleLR(o, max_lr=0.3, total_steps=100, three_phase=True)),
    ("OneCycle-three-phase-linear", "SGD", STEPS,
     lambda s, o: s.OneCycleLR(o, max_lr=0.3, total_steps=100, three_phase=True,
                               anneal_strategy="linear", pct_start=0.25)),
    ("OneCycle-options", "SGD", STEPS - 1,
     lambda s, o: s.OneCycleLR(o, max_lr=1.0, epochs=10, steps_per_epoch=10, pct_start=0.4,
                               div_factor=10.0, final_div_factor=100.0)),
    ("OneCycle-no-momentum", "Adam", STEPS,
     lambda s, o: s.OneCycleLR(o, max_lr=0.5, total_steps=100, cycle_momentum=False)),
    ("Sequential-warmup-cosine", "SGD", STEPS, sequential),
]


def momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


def run(sched, opt, steps):
    """Step optimizer then scheduler ``steps`` times; the lrs, last lrs and momenta seen."""
    lrs = [[g["lr"] for g in opt.param_groups]]
    last = [list(sched.get_last_lr())]
    moms = [momenta(opt)]
    for _ in range(steps):
        opt.step()
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        last.append(list(sched.get_last_lr()))
        moms.append(momenta(opt))
    return np.array(lrs, dtype=float), np.array(last, dtype=float), np.array(moms, dtype=float)


def assert_same(ours, theirs):
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)


@requires_torch
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(case):
    _, kind, steps, factory = case
    opt, topt = build_optimizer(optim, kind), build_optimizer(torch.optim, kind)
    ours = run(factory(lr_scheduler, opt), opt, steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = run(factory(torch.optim.lr_scheduler, topt), topt, steps)
    for a, b in zip(ours, theirs, strict=True):
        assert_same(a, b)
    assert len(np.unique(ours[0][:, 0])) > 1  # the schedule did change the rate


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_state_dict_round_trip_resumes_exactly(case):
    _, kind, steps, factory = case
    opt = build_optimizer(optim, kind)
    straight = run(factory(lr_scheduler, opt), opt, steps)

    opt = build_optimizer(optim, kind)
    sched = factory(lr_scheduler, opt)
    first = run(sched, opt, 40)
    saved_opt = pickle.loads(pickle.dumps(opt.state_dict()))
    saved_sched = pickle.loads(pickle.dumps(sched.state_dict()))
    opt.step()
    sched.step()  # moving on does not change what was saved

    new_opt = build_optimizer(optim, kind)
    new_sched = factory(lr_scheduler, new_opt)
    new_opt.load_state_dict(saved_opt)
    new_sched.load_state_dict(saved_sched)
    rest = run(new_sched, new_opt, steps - 40)
    for a, b, s in zip(first, rest, straight, strict=True):
        np.testing.assert_array_equal(np.concatenate([a, b[1:]]), s)


# ---------------------------------------------------------------------- ReduceLROnPlateau
def plateau_metrics(seed=0, n=STEPS):
    """A falling loss with long plateaus and a little noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    return 1.0 / (1 + steps // 15) + rng.normal(0, 0.002, n)


PLATEAU_CASES = [
    ("default", dict(), 1),
    ("patience-2-abs-cooldown", dict(factor=0.5, patience=2, threshold=0.01,
                                     threshold_mode="abs", cooldown=3), 1),
    ("max-mode", dict(mode="max", factor=0.5, patience=3), -1),
    ("max-abs", dict(mode="max", threshold_mode="abs", threshold=0.005, patience=1), -1),
    ("patience-0-min-lr-list", dict(patience=0, min_lr=[0.01, 0.001]), 1),
    ("min-lr-eps", dict(factor=0.5, patience=3, cooldown=2, min_lr=0.02, eps=1e-3), 1),
]


def run_plateau(sched, opt, metrics):
    lrs = []
    for m in metrics:
        opt.step()
        sched.step(m)
        lrs.append([g["lr"] for g in opt.param_groups] + list(sched.get_last_lr()))
    return np.array(lrs)


@requires_torch
@pytest.mark.parametrize("case", PLATEAU_CASES, ids=[c[0] for c in PLATEAU_CASES])
def test_reduce_on_plateau_matches_torch(case):
    _, kwargs, sign = case
    metrics = sign * plateau_metrics()
    opt, topt = build_optimizer(optim), build_optimizer(torch.optim)
    ours = run_plateau(lr_scheduler.ReduceLROnPlateau(opt, **kwargs), opt, metrics)
    theirs = run_plateau(torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs), topt, metrics)
    assert_same(ours, theirs)
    assert ours[-1, 0] < LRS[0]  # it did reduce


@pytest.mark.parametrize("case", PLATEAU_CASES, ids=[c[0] for c in PLATEAU_CASES])
def test_reduce_on_plateau_state_dict_round_trip(case):
    _, kwargs, sign = case
    metrics = sign * plateau_metrics(seed=1)
    opt = build_optimizer(optim)
    straight = run_plateau(lr_scheduler.ReduceLROnPlateau(opt, **kwargs), opt, metrics)

    opt = build_optimizer(optim)
    sched = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    first = run_plateau(sched, opt, metrics[:37])
    saved_opt = pickle.loads(pickle.dumps(opt.state_dict()))
    saved_sched = pickle.loads(pickle.dumps(sched.state_dict()))
    new_opt = build_optimizer(optim)
    new_sched = lr_scheduler.ReduceLROnPlateau(new_opt)  # options come from the state dict
    new_opt.load_state_dict(saved_opt)
    new_sched.load_state_dict(saved_sched)
    rest = run_plateau(new_sched, new_opt, metrics[37:])
    np.testing.assert_array_equal(np.concatenate([first, rest]), straight)


def test_reduce_on_plateau_takes_a_tensor_metric():
    opt = build_optimizer(optim)
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    sched.step(pydl.tensor(1.0))
    sched.step(pydl.tensor(2.0))
    assert sched.get_last_lr() == [LRS[0] * 0.5, LRS[1] * 0.5]


def test_reduce_on_plateau_rejects_bad_options():
    opt = build_optimizer(optim)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode 'up' is unknown"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="threshold mode 'pct' is unknown"):
        lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="pct")
    with pytest.raises(ValueError, match="expected 2 values of min_lr"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1])


# -------------------------------------------------------------------------- behaviours
@requires_torch
def test_scheduled_training_matches_torch():
    """Parameters, not only lrs: SGD with momentum under a warm-up + cosine schedule."""
    rng = np.random.default_rng(0)
    w0, grads = rng.standard_normal(4), rng.standard_normal((60, 4))
    w = pydl.tensor(w0, dtype=pydl.float64, requires_grad=True)
    tw = torch.tensor(w0, requires_grad=True)
    opt = optim.SGD([w], lr=0.2, momentum=0.9)
    topt = torch.optim.SGD([tw], lr=0.2, momentum=0.9)
    sched, tsched = sequential(lr_scheduler, opt), sequential(torch.optim.lr_scheduler, topt)
    for g in grads:
        w.grad = pydl.tensor(g + 0.1 * w.detach().numpy(), dtype=pydl.float64)
        tw.grad = torch.tensor(g + 0.1 * tw.detach().numpy())
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), rtol=0, atol=1e-10)


def test_initial_lr_and_get_last_lr():
    opt = build_optimizer(optim)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    assert sched.get_last_lr() == list(LRS)
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS)
    assert sched.base_lrs == list(LRS)
    assert sched.last_epoch == 0
    for _ in range(2):
        opt.step()
        sched.step()
    assert sched.get_last_lr() == [LRS[0] * 0.5, LRS[1] * 0.5]
    sched.get_last_lr().append(1.0)  # a copy: the scheduler is unaffected
    assert len(sched.get_last_lr()) == 2


def test_warns_when_stepped_before_the_optimizer():
    opt = build_optimizer(optim)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()
    opt = build_optimizer(optim)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        sched.step()


def test_one_cycle_refuses_to_step_past_total_steps():
    opt = build_optimizer(optim)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=5)
    for _ in range(5):
        opt.step()
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 6 times.*total steps is 5"):
        sched.step()


def test_one_cycle_needs_a_momentum_to_cycle():
    opt = optim.Adagrad([pydl.zeros(2, requires_grad=True)])
    with pytest.raises(ValueError, match="momentum or beta1"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    with pytest.raises(ValueError, match="total_steps OR"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1, cycle_momentum=False)


def test_lambda_lr_saves_callable_objects_but_not_functions():
    class Decay:
        def __init__(self, rate):
            self.rate = rate

        def __call__(self, epoch):
            return self.rate**epoch

    opt = build_optimizer(optim)
    sched = lr_scheduler.LambdaLR(opt, [Decay(0.5), lambda e: 1.0])
    saved = sched.state_dict()
    assert saved["lr_lambdas"] == [{"rate": 0.5}, None]
    other = lr_scheduler.LambdaLR(build_optimizer(optim), [Decay(0.9), lambda e: 1.0])
    other.load_state_dict(saved)
    assert other.lr_lambdas[0].rate == 0.5


def test_bad_arguments_are_refused():
    opt = build_optimizer(optim)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="Starting multiplicative factor"):
        lr_scheduler.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0])
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(build_optimizer(optim), step_size=1, last_epoch=5)
    with pytest.raises(ValueError, match="one milestone fewer"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.StepLR(opt, 1)], milestones=[3])
